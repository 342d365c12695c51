"""The terminal's BSP-C beside a card (shell): the part of `openscws up --bcast` on the
terminal's side.

- `TerminalBcast.subscribe` bootstraps with the BSF through the card (GBA_U when the USIM has
  the GBA context, else GBA_ME: `openscws.gba.client.GbaClient`), takes the NAF key for the
  BSM's NAF_Id (TS 33.220 Annex H.3, the MBMS Ua protocol id), derives the MRK and sends the
  Service Request with the Digest retry (`openscws.bcast.bspc.BspcExchange`).
- The LTKM listener (UDP, the terminal's LTKM port, 4359 by default) hands each LTKM to the card
  with GBA_U (AUTHENTICATE in the MBMS security context, TS 31.102 §7.1.2.5: the SEK/PEK and
  the MUK never leave the card) or opens it here with the MUK with GBA_ME
  (`LtkmReceiver`), and sends the verification message back when the BSM asked for one.
- `send` takes any of the five messages (an LTKM Request for keys the terminal misses, say).

The card is reached through the gateway's card link, one APDU at a time like the gateway's own
exchanges."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final, Literal

from openscws.aio.links import CardLink
from openscws.bcast.bspc import BspcExchange, HttpRequest, LtkmReceiver
from openscws.bcast.keys import mbms_keys_gba_me, mrk_from_naf_key
from openscws.bcast.ltkm import Ltkm, peek
from openscws.bcast.mikey import LTKM_UDP_PORT, MikeyDecodeError, MikeyError
from openscws.bcast.sprov import KeyId, MessageKind, Request, Response, StatusCode
from openscws.gba.client import CardAka, GbaClient, GbaError, http_request
from openscws.gba.kdf import UA_MBMS
from openscws.gba.uicc import CardRefused, read_binary, select_ef, status_of
from openscws.uicc.csim import CSIM_AID, EF_NAI, P2_BCAST_KEYS, P2_RK

__all__ = ["CardRk", "LtkmOutcome", "TerminalBcast", "card_msk_update"]

log = logging.getLogger(__name__)

AUTHENTICATE_MBMS: Final = bytes((0x00, 0x88, 0x00, 0x85))
"""AUTHENTICATE, P2 85: the USIM's MBMS security context (TS 31.102 §7.1.2.5)."""
MSK_UPDATE: Final = b"\x01"
AUTHENTICATE_CSIM_KEYS: Final = bytes((0x00, 0x88, 0x00, P2_BCAST_KEYS))
"""AUTHENTICATE in the CSIM-like application's BCAST key context (project's reading)."""
AUTHENTICATE_RK: Final = bytes((0x00, 0x88, 0x00, P2_RK, 0x00))
SELECT_CSIM: Final = bytes((0x00, 0xA4, 0x04, 0x00, 7)) + CSIM_AID[:7]


def card_msk_update(ltkm: bytes, *, csim: bool = False) -> bytes:
    """The AUTHENTICATE APDU handing one LTKM to the USIM (P2 85) or to the CSIM-like
    application (P2 91); short Lc: up to 254 bytes of LTKM. The data coding is
    `openscws.uicc.mbms`'s."""
    data = MSK_UPDATE + ltkm
    if len(data) > 255:
        raise MikeyDecodeError(f"LTKM of {len(ltkm)} bytes does not fit one short APDU")
    head = AUTHENTICATE_CSIM_KEYS if csim else AUTHENTICATE_MBMS
    return head + bytes((len(data),)) + data + b"\x00"


class CardRk:
    """The CSIM-like application through a card link (`openscws.uicc.csim`): its NAI and the
    Auth-Key it derives from its RK (TK stays in the card)."""

    def __init__(self, link: CardLink) -> None:
        self.link = link

    async def _send(self, apdu: bytes, what: str) -> bytes:
        response = await self.link.transmit(apdu)
        _, sw = status_of(response)
        if sw >> 8 == 0x61:  # T=0: the answer waits behind GET RESPONSE
            response = await self.link.transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        data, sw = status_of(response)
        if sw != 0x9000:
            raise CardRefused(what, sw)
        return data

    async def select(self) -> None:
        await self._send(SELECT_CSIM, "SELECT the CSIM")

    async def nai(self) -> str:
        await self.select()
        await self._send(select_ef(EF_NAI), "SELECT EF_NAI")
        raw = await self._send(read_binary(0), "READ BINARY EF_NAI")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise GbaError("EF_NAI is not UTF-8") from None

    async def auth_key(self) -> bytes:
        await self.select()
        data = await self._send(AUTHENTICATE_RK, "AUTHENTICATE (RK context)")
        if len(data) < 2 or data[0] != 0xDB or len(data) != 2 + data[1]:
            raise GbaError("the CSIM's RK context answer is not DB L Auth-Key")
        return data[2:]


@dataclass(frozen=True, slots=True)
class LtkmOutcome:
    """What became of one datagram: the key it carried (None when refused) and why not."""

    key: KeyId | None
    counter: int = 0
    refused: str = ""


@dataclass(slots=True)
class TerminalBcast:
    link: CardLink
    bsf_url: str
    bsm_url: str
    bsm_fqdn: str
    host: str = "127.0.0.1"
    ltkm_port: int = LTKM_UDP_PORT
    via: Literal["usim", "csim"] = "usim"
    """The card application keyed with: the USIM (GBA, username the B-TID) or the CSIM-like
    application ((R-)UIM, its RK; username the NAI)."""
    gba: GbaClient = field(init=False)
    received: asyncio.Queue[LtkmOutcome] = field(default_factory=asyncio.Queue)
    _card: CardAka = field(init=False)
    _rk: CardRk = field(init=False)
    _receiver: LtkmReceiver | None = field(default=None, repr=False)
    _transport: asyncio.DatagramTransport | None = None
    _requests: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    accepted: set[KeyId] = field(default_factory=set)
    """The keys whose LTKM the card (or the terminal, GBA_ME) has taken."""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._card = CardAka(self.link)
        self._rk = CardRk(self.link)
        self.gba = GbaClient(self._card, self.bsf_url)

    # -- the LTKM listener --------------------------------------------------------------------

    async def listen(self) -> int:
        """Starts the LTKM listener; returns its UDP port."""
        loop = asyncio.get_running_loop()
        terminal = self

        class Listener(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = loop.create_task(terminal._ltkm(data, addr))
                terminal._tasks.add(task)
                task.add_done_callback(terminal._tasks.discard)

        transport, _ = await loop.create_datagram_endpoint(
            Listener, local_addr=(self.host, self.ltkm_port)
        )
        self._transport = transport
        port = int(transport.get_extra_info("sockname")[1])
        log.info("BSP-C: LTKMs on UDP %s:%d", self.host, port)
        return port

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def _ltkm(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            outcome, ack = await self._open(data)
        except Exception:
            log.exception("BSP-C: the LTKM from %s could not be handled", addr[0])
            return
        if outcome.key is not None:
            self.accepted.add(outcome.key)
            self._arrived.set()
            log.info("BSP-C: LTKM for %s/%s (counter %d) accepted", outcome.key.key_domain.hex(),
                     outcome.key.key_id.hex(), outcome.counter)  # fmt: skip
        else:
            log.warning("BSP-C: LTKM from %s refused: %s", addr[0], outcome.refused)
        if ack and self._transport is not None:
            self._transport.sendto(ack, addr)
        self.received.put_nowait(outcome)

    async def _open(self, data: bytes) -> tuple[LtkmOutcome, bytes]:
        if self._receiver is not None:  # GBA_ME: the terminal holds the MUK
            try:
                ltkm, ack = self._receiver.datagram(data, asyncio.get_running_loop().time())
            except MikeyError as exc:
                return LtkmOutcome(None, refused=exc.reason), b""
            return _outcome(ltkm), ack or b""
        try:
            apdu = card_msk_update(data, csim=self.via == "csim")
            domain, key_id, counter = peek(data)
        except MikeyError as exc:
            return LtkmOutcome(None, refused=exc.reason), b""
        if self.via == "csim":
            await self._rk.select()
        else:
            self._card._selected = False  # the CSIM or another application may be selected
            await self._card.select()
        answer, sw = status_of(await self.link.transmit(apdu))
        if sw != 0x9000:
            return LtkmOutcome(None, refused=f"the card answered {sw:04X}"), b""
        ack = answer[2:] if len(answer) >= 2 and answer[0] == 0xDB else b""
        return LtkmOutcome(KeyId(domain, key_id), counter), ack

    # -- provisioning ---------------------------------------------------------------------------

    async def _srk(self) -> tuple[str, bytes]:
        if self.via == "csim":
            self._receiver = None
            nai = await self._rk.nai()
            return nai, await self._rk.auth_key()
        boot = await self.gba.valid_bootstrap()
        naf_key = await self.gba.naf_key(self.bsm_fqdn, UA_MBMS)
        if boot.gba == "GBA_ME":
            keys = mbms_keys_gba_me(naf_key)
            assert keys.muk is not None
            if self._receiver is None or self._receiver.smk != keys.muk:
                self._receiver = LtkmReceiver(keys.muk)
            return boot.btid, keys.mrk
        self._receiver = None
        return boot.btid, mrk_from_naf_key(naf_key)

    async def send(self, request: Request) -> Response:
        """One provisioning message, with the Digest retry; the response."""
        btid, srk = await self._srk()
        exchange = BspcExchange(request, btid, srk)
        http: HttpRequest | Response = exchange.start()
        base = self.bsm_url.rstrip("/")
        while isinstance(http, HttpRequest):
            answer = await http_request(base + http.path, http.method, http.headers, http.body)
            log.info("BSP-C: %s %s %s: %d", request.kind.value, request.request_id, http.path,
                     answer.status)  # fmt: skip
            http = exchange.receive(answer.status, tuple(answer.headers.items()), answer.body)
        return http

    def _request_id(self) -> str:
        self._requests += 1
        return f"up-{self._requests}"

    async def subscribe(self, items: tuple[str, ...]) -> Response:
        """A Service Request for `items` (implicit registration; the LTKMs follow on UDP)."""
        return await self.send(Request(MessageKind.SERVICE, self._request_id(), items))

    async def _until_taken(self, keys: tuple[KeyId, ...], seconds: float) -> tuple[KeyId, ...]:
        """Waits up to `seconds` for the LTKMs of `keys`; the keys still missing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while missing := tuple(k for k in keys if k not in self.accepted):
            left = deadline - loop.time()
            if left <= 0:
                return missing
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass
        return ()

    async def ensure_ltkms(self, keys: tuple[KeyId, ...], retry_after: float) -> tuple[KeyId, ...]:
        """Waits `retry_after` seconds for the LTKMs of `keys`; asks once for the ones still
        missing with an LTKM Request (OMA BCAST Service and Content Protection: a terminal
        asks for the LTKMs it lacks) and waits as long again. The keys that never came."""
        missing = await self._until_taken(keys, retry_after)
        if not missing:
            return ()
        log.info("BSP-C: no LTKM after %g s for %s: LTKM Request", retry_after,
                 " ".join(f"{k.key_domain.hex()}/{k.key_id.hex()}" for k in missing))  # fmt: skip
        answer = await self.send(Request(MessageKind.LTKM, self._request_id(), keys=missing))
        if answer.status is not StatusCode.SUCCESS:
            log.warning("BSP-C: LTKM Request answered %s", answer.status.name)
        return await self._until_taken(missing, retry_after)


def _outcome(ltkm: Ltkm) -> LtkmOutcome:
    return LtkmOutcome(KeyId(ltkm.key_domain, ltkm.key_id), ltkm.counter)
