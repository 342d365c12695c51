"""The terminal's GBA client, the shell around `gba.ub`, `gba.ua` and `gba.uicc`: it talks HTTP
(h11 over asyncio, HTTP or HTTPS) to the BSF and to NAFs, and APDUs to the card through a card
link (in-process, vpcd or PC/SC: `aio.links.CardLink`).

* GBA_U: AUTHENTICATE in the GBA bootstrapping context (the USIM keeps Ks), the B-TID and key
  lifetime written to EF_GBABP, then Ks_ext_NAF from the GBA NAF derivation context per NAF.
  Ks and Ks_int_NAF never leave the card.
* GBA_ME: AUTHENTICATE in the 3G context; the client keeps Ks = CK || IK in memory and derives
  Ks_NAF itself (TS 33.220 §4.5.2).
* "auto" uses GBA_U when the USIM answers the GBA context, else GBA_ME.

It bootstraps again when the key lifetime is over or when a NAF rejects the B-TID, and answers
the card's AUTS to the BSF. `fetch_naf_keys` is the NAF's side of Zn."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import h11

from openscws.errors import OpenScwsError
from openscws.gba.bootstrap_xml import format_lifetime
from openscws.gba.digest import Challenge, DigestError
from openscws.gba.kdf import UA_HTTP_DIGEST, ks_naf, naf_id
from openscws.gba.ua import naf_host_of_realm, ua_credentials
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient, UbFailure, UbRequest
from openscws.gba.uicc import (
    EF_GBABP,
    EF_IMSI,
    SELECT_USIM,
    AkaAuts,
    AkaMacFailure,
    AkaNotSupported,
    AkaOk,
    CardRefused,
    authenticate_3g,
    decode_imsi,
    gba_bootstrap,
    gba_naf,
    impi_of_imsi,
    parse_aka,
    parse_naf,
    read_binary,
    select_ef,
    status_of,
    update_gbabp,
)

if TYPE_CHECKING:
    from openscws.aio.links import CardLink

__all__ = [
    "Bootstrap",
    "CardAka",
    "GbaClient",
    "GbaError",
    "GbaMode",
    "HttpResponse",
    "fetch_naf_keys",
    "http_request",
]

log = logging.getLogger(__name__)

GbaMode = Literal["auto", "GBA_U", "GBA_ME"]
MAX_RESPONSE: Final = 1 << 20
TIMEOUT_S: Final = 30.0


class GbaError(OpenScwsError):
    """A bootstrapping or NAF access that did not succeed (the reason in its own terms)."""


# -- HTTP/1.1 client (one request per connection) -----------------------------------------


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    """Lower-case names; repeated fields joined with ", "."""
    body: bytes


async def http_request(
    url: str,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = TIMEOUT_S,
) -> HttpResponse:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GbaError(f"not an http(s) URL: {url!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if https and ssl_context is None:
        ssl_context = ssl.create_default_context()
    try:
        return await asyncio.wait_for(
            _exchange(parts.hostname, port, ssl_context if https else None, method, target,
                      host, headers, body),
            timeout,
        )  # fmt: skip
    except (OSError, h11.ProtocolError, TimeoutError) as exc:
        raise GbaError(f"{method} {url}: {exc or type(exc).__name__}") from None


async def _exchange(
    hostname: str,
    port: int,
    context: ssl.SSLContext | None,
    method: str,
    target: str,
    host: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
) -> HttpResponse:
    reader, writer = await asyncio.open_connection(hostname, port, ssl=context)
    try:
        conn = h11.Connection(h11.CLIENT)
        fields = [("Host", host), *headers, ("Content-Length", str(len(body))),
                  ("Connection", "close")]  # fmt: skip
        writer.write(conn.send(h11.Request(method=method, target=target, headers=fields)) or b"")
        if body:
            writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        status, data = 0, bytearray()
        got: dict[str, str] = {}
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await reader.read(65536)
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    key = name.decode("latin-1").lower()
                    text = value.decode("latin-1")
                    got[key] = f"{got[key]}, {text}" if key in got else text
            elif isinstance(event, h11.Data):
                data += event.data
                if len(data) > MAX_RESPONSE:
                    raise GbaError("response body too large")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return HttpResponse(status, got, bytes(data))
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


# -- the card --------------------------------------------------------------------------------


class CardAka:
    """The USIM through a card link: AKA in both contexts, EF_GBABP, NAF derivation."""

    def __init__(self, link: CardLink) -> None:
        self.link = link
        self._selected = False

    async def _send(self, apdu: bytes) -> bytes:
        response = await self.link.transmit(apdu)
        _, sw = status_of(response)
        if sw >> 8 == 0x61:  # T=0: the answer waits behind GET RESPONSE
            response = await self.link.transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
        return response

    async def select(self) -> None:
        if self._selected:
            return
        _, sw = status_of(await self._send(SELECT_USIM))
        if sw != 0x9000:
            raise CardRefused("SELECT the USIM", sw)
        self._selected = True

    async def imsi(self) -> str:
        await self.select()
        _, sw = status_of(await self._send(select_ef(EF_IMSI)))
        if sw != 0x9000:
            raise CardRefused("SELECT EF_IMSI", sw)
        data, sw = status_of(await self._send(read_binary(9)))
        if sw != 0x9000:
            raise CardRefused("READ BINARY EF_IMSI", sw)
        return decode_imsi(data)

    async def aka(
        self, rand: bytes, autn: bytes, *, gba_u: bool
    ) -> AkaOk | AkaAuts | AkaMacFailure | AkaNotSupported:
        await self.select()
        apdu = gba_bootstrap(rand, autn) if gba_u else authenticate_3g(rand, autn)
        return parse_aka(await self._send(apdu), context="GBA" if gba_u else "3G")

    async def write_gbabp(self, rand_len: int, btid: str, lifetime: str) -> None:
        await self.select()
        for apdu, what in (
            (select_ef(EF_GBABP), "SELECT EF_GBABP"),
            (update_gbabp(rand_len, btid, lifetime), "UPDATE BINARY EF_GBABP"),
        ):
            _, sw = status_of(await self._send(apdu))
            if sw != 0x9000:
                raise CardRefused(what, sw)

    async def naf_key(self, naf: bytes, impi: str) -> bytes:
        await self.select()
        return parse_naf(await self._send(gba_naf(naf, impi)))


# -- the GBA client ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bootstrap:
    btid: str
    lifetime: datetime
    gba: Literal["GBA_U", "GBA_ME"]
    rand: bytes
    ks: bytes = field(default=b"", repr=False)
    """GBA_ME only: CK || IK, kept in the terminal's memory."""


@dataclass
class GbaClient:
    card: CardAka
    bsf_url: str
    impi: str | None = None
    mode: GbaMode = "auto"
    ssl_context: ssl.SSLContext | None = None
    clock: Callable[[], float] = time.time
    current: Bootstrap | None = field(default=None, repr=False)
    _naf_keys: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    async def identity(self) -> str:
        if self.impi is None:
            self.impi = impi_of_imsi(await self.card.imsi())
        return self.impi

    async def bootstrap(self) -> Bootstrap:
        """Runs Ub to the end (AUTS included) and returns the new B-TID."""
        impi = await self.identity()
        parts = urlsplit(self.bsf_url)
        ub = UbClient(impi, parts.hostname or "")
        gba_u = self.mode != "GBA_ME"
        request = ub.identity_request()
        ck_ik = b""
        for _ in range(8):
            answer = await self._ub_send(request)
            try:
                got = ub.receive(answer.status, answer.headers, answer.body)
            except UbFailure as exc:
                raise GbaError(f"bootstrapping with {self.bsf_url}: {exc}") from None
            if isinstance(got, Bootstrapped):
                return await self._bootstrapped(got, gba_u, ck_ik, impi)
            assert isinstance(got, NeedAka)
            result = await self.card.aka(got.rand, got.autn, gba_u=gba_u)
            if isinstance(result, AkaNotSupported) and gba_u and self.mode == "auto":
                log.info("the USIM has no GBA context (SW %04X): GBA_ME", result.sw)
                gba_u = False
                result = await self.card.aka(got.rand, got.autn, gba_u=False)
            match result:
                case AkaOk(res=res, ck=ck, ik=ik):
                    ck_ik = ck + ik
                    request = ub.answer(res)
                case AkaAuts(auts=auts):
                    log.info("the USIM finds SQN out of range: AUTS to the BSF")
                    try:
                        request = ub.answer_auts(auts)
                    except UbFailure as exc:
                        raise GbaError(str(exc)) from None
                case AkaMacFailure():
                    ub.mac_failure()
                    raise GbaError("the USIM refused AUTN (MAC failure): not our network's BSF")
                case AkaNotSupported(sw=sw):
                    raise GbaError(f"the USIM has no {'GBA' if gba_u else '3G'} context ({sw:04X})")
        raise GbaError("bootstrapping did not end")

    async def _ub_send(self, request: UbRequest) -> HttpResponse:
        url = self.bsf_url.rstrip("/") + request.target
        return await http_request(
            url, request.method, request.headers, ssl_context=self.ssl_context
        )

    async def _bootstrapped(
        self, got: Bootstrapped, gba_u: bool, ck_ik: bytes, impi: str
    ) -> Bootstrap:
        if gba_u:
            await self.card.write_gbabp(len(got.rand), got.btid, format_lifetime(got.lifetime))
            boot = Bootstrap(got.btid, got.lifetime, "GBA_U", got.rand)
        else:
            boot = Bootstrap(got.btid, got.lifetime, "GBA_ME", got.rand, ck_ik)
        self.current = boot
        self._naf_keys.clear()
        log.info("bootstrapped %s: B-TID %s until %s", boot.gba, boot.btid,
                 format_lifetime(boot.lifetime))  # fmt: skip
        return boot

    async def valid_bootstrap(self) -> Bootstrap:
        """The current B-TID, or a new one when there is none or its lifetime is over."""
        boot = self.current
        if boot is None or boot.lifetime.timestamp() <= self.clock():
            if boot is not None:
                log.info("B-TID %s expired: bootstrapping again", boot.btid)
            boot = await self.bootstrap()
        return boot

    async def naf_key(self, fqdn: str, ua_protocol: bytes = UA_HTTP_DIGEST) -> bytes:
        """Ks_ext_NAF from the card (GBA_U) or Ks_NAF derived here (GBA_ME)."""
        boot = await self.valid_bootstrap()
        naf = naf_id(fqdn, ua_protocol)
        key = self._naf_keys.get(naf)
        if key is None:
            impi = await self.identity()
            if boot.gba == "GBA_U":
                key = await self.card.naf_key(naf, impi)
            else:
                key = ks_naf(boot.ks, boot.rand, impi, naf)
            self._naf_keys[naf] = key
        return key

    async def ua_request(
        self,
        url: str,
        method: str = "GET",
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> HttpResponse:
        """A request to a NAF with HTTP Digest on Ua: answers the NAF's GBA challenge with the
        B-TID and NAF key; bootstraps again once if the NAF rejects them."""
        parts = urlsplit(url)
        uri = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        first = await http_request(url, method, headers, body, ssl_context=self.ssl_context)
        response = first
        for attempt in range(2):
            if response.status != 401:
                return response
            try:
                challenge = Challenge.parse(response.headers.get("www-authenticate", ""))
            except DigestError as exc:
                raise GbaError(f"the NAF's challenge: {exc}") from None
            fqdn = naf_host_of_realm(challenge.realm)
            if fqdn is None:
                raise GbaError(f"the NAF's realm {challenge.realm!r} does not ask for GBA")
            if attempt == 1:
                log.info("the NAF rejected B-TID %s: bootstrapping again",
                         self.current.btid if self.current else "-")  # fmt: skip
                self.current = None
            key = await self.naf_key(fqdn)
            boot = self.current
            assert boot is not None
            creds = ua_credentials(
                challenge, btid=boot.btid, naf_key=key, method=method, uri=uri, body=body
            )
            response = await http_request(
                url, method, (*headers, ("Authorization", creds.format())), body,
                ssl_context=self.ssl_context,
            )  # fmt: skip
        return response


# -- the NAF's side of Zn -------------------------------------------------------------------


async def fetch_naf_keys(
    zn_url: str,
    token: str,
    btid: str,
    naf_fqdn: str,
    ua_protocol: bytes = UA_HTTP_DIGEST,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Mapping[str, str] | None:
    """The BSF's answer for `btid` (JSON fields, keys in hex), or None: unknown or expired."""
    body = json.dumps(
        {"btid": btid, "naf_fqdn": naf_fqdn, "ua_protocol": ua_protocol.hex()}
    ).encode()
    answer = await http_request(
        zn_url,
        "POST",
        (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")),
        body,
        ssl_context=ssl_context,
    )
    if answer.status == 404:
        return None
    if answer.status != 200:
        raise GbaError(f"Zn: the BSF answered {answer.status}")
    try:
        got = json.loads(answer.body)
    except ValueError:
        raise GbaError("Zn: the BSF's answer is not JSON") from None
    if not isinstance(got, dict):
        raise GbaError("Zn: the BSF's answer is not a JSON object")
    return {str(k): str(v) for k, v in got.items()}
