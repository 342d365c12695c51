"""One subscriber from bootstrapping to a SEK, over real sockets: the terminal bootstraps with
the BSF (Ub, HTTP Digest AKA with MILENAGE test set 1), the BSM fetches the NAF keys for its
NAF_Id on Zn (HTTP on loopback with its token), the BSP-C's Service Request gets 401 then 200,
and the LTKM arrives over UDP keyed with the MUK. With GBA_ME the terminal opens it with
Ks_NAF. With GBA_U the virtual card runs the AKA and the NAF derivation, the terminal gets only
Ks_ext_NAF (for the MRK), and the card takes the LTKM (AUTHENTICATE in the MBMS context): its
EF_MSK then lists the SEK's id, and the SEK stays in the card."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from openscws.aka.milenage import Milenage
from openscws.aka.vector import SqnState, UsimAnswer, check_autn
from openscws.bcast.bsm import BsmCore, MemoryStore
from openscws.bcast.bspc import BspcExchange, HttpRequest, LtkmReceiver
from openscws.bcast.keys import bsm_naf_id, mbms_keys_gba_me, mbms_keys_gba_u
from openscws.bcast.server import ZnKeys, start_bsm
from openscws.bcast.sprov import KeyId, MessageKind, Request, Response, StatusCode
from openscws.bsf.db import BsfDatabase, default_url
from openscws.bsf.hss import SqlHss, SubscriberKeys
from openscws.bsf.models import GbaType
from openscws.bsf.server import start_bsf
from openscws.bsf.service import BsfService
from openscws.gba.client import http_request
from openscws.gba.kdf import ks_naf
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient
from openscws.gba.uicc import gba_bootstrap, gba_naf, parse_naf, select_ef, update_gbabp
from openscws.ras.vault import Vault
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.mbms import EF_MSK
from openscws.uicc.usim import UsimApp, UsimKeys, UsimSecrets

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
BSM = "bsm.example.org"
KEY = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))
SEK = bytes(range(16))


class Secrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


def _apdu(card: VirtualUicc, apdu: bytes) -> bytes:
    answer = card.transmit(apdu, 0.0)
    assert answer[-2:] == b"\x90\x00", answer.hex()
    return answer


def _bootstrap(service: BsfService, card: VirtualUicc | None) -> tuple[str, bytes, bytes]:
    """B-TID, RAND and Ks (GBA_ME: the terminal's; GBA_U: b"", Ks stays in the card)."""
    ub = UbClient(IMPI, service.server_name)
    challenge = service.ub("GET", dict(ub.identity_request().headers)["Authorization"])
    need = ub.receive(401, {k.lower(): v for k, v in challenge.headers}, b"")
    assert isinstance(need, NeedAka)
    if card is None:
        aka = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
        assert isinstance(aka, UsimAnswer)
        res, ks = aka.res, aka.ck + aka.ik
    else:
        answer = _apdu(card, gba_bootstrap(need.rand, need.autn))
        res, ks = answer[2 : 2 + answer[1]], b""
    done = service.ub("GET", dict(ub.answer(res).headers)["Authorization"])
    boot = ub.receive(200, {k.lower(): v for k, v in done.headers}, done.body)
    assert isinstance(boot, Bootstrapped)
    if card is not None:
        _apdu(card, select_ef(0x6FD6))
        _apdu(card, update_gbabp(16, boot.btid, "2099-01-01T00:00:00Z"))
    return boot.btid, need.rand, ks


def _card() -> VirtualUicc:
    secrets = Secrets()
    UsimSecrets(secrets).set_keys(UsimKeys("001010123456789", K, OPC))
    card = VirtualUicc(
        CardIdentity("8988211000000000001"), usim=UsimApp.from_secrets(UsimSecrets(secrets))
    )
    card.power_on()
    _apdu(card, bytes.fromhex("00A4040407A0000000871002"))
    return card


class Terminal(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.put_nowait(data)


@pytest.mark.parametrize("gba_type", [GbaType.GBA_ME, GbaType.GBA_U])
def test_bootstrap_to_sek(tmp_path: Path, gba_type: GbaType) -> None:
    vault = Vault.create(tmp_path)
    db = BsfDatabase(default_url(tmp_path))
    db.upgrade()
    hss = SqlHss(db, vault)
    hss.add(SubscriberKeys(IMPI, K, OPC, gba_type=gba_type))
    service = BsfService(db, vault, hss, server_name="bsf.example.net")
    token = service.add_naf(BSM)
    card = _card() if gba_type is GbaType.GBA_U else None
    btid, rand, ks = _bootstrap(service, card)
    naf = bsm_naf_id(BSM)
    if card is None:
        keys = mbms_keys_gba_me(ks_naf(ks, rand, IMPI, naf))
    else:
        keys = mbms_keys_gba_u(parse_naf(_apdu(card, gba_naf(naf, IMPI))))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bsf = await start_bsf(service, zn_port=0)
        transport, terminal = await loop.create_datagram_endpoint(
            Terminal, local_addr=("127.0.0.1", 0)
        )
        assert bsf.zn_url is not None
        store = MemoryStore(items={"urn:pi:news": (KEY,)}, keys={KEY: SEK})
        core = BsmCore(BSM, store, ZnKeys(bsf.zn_url, token, BSM, loop), ack=False)
        bsm = await start_bsm(core, ltkm_port=transport.get_extra_info("sockname")[1])
        try:
            exchange = BspcExchange(
                Request(MessageKind.SERVICE, "r1", ("urn:pi:news",)), btid, keys.mrk
            )
            http: HttpRequest | Response = exchange.start()
            statuses = []
            while isinstance(http, HttpRequest):
                answer = await http_request(
                    bsm.url.rstrip("/") + http.path, http.method, http.headers, http.body
                )
                statuses.append(answer.status)
                http = exchange.receive(answer.status, tuple(answer.headers.items()), answer.body)
            assert statuses == [401, 200]
            assert http.status is StatusCode.SUCCESS
            datagram = await asyncio.wait_for(terminal.datagrams.get(), 10)
        finally:
            await bsm.stop()
            await bsf.stop()
            transport.close()
        if card is None:
            assert keys.muk is not None
            receiver = LtkmReceiver(keys.muk)
            receiver.datagram(datagram, 0.0)
            assert receiver.keys == {KEY: SEK}
            return
        assert keys.muk is None  # the terminal cannot open it; the card can
        data = b"\x01" + datagram
        card_answer = _apdu(card, bytes((0x00, 0x88, 0x00, 0x85, len(data))) + data + b"\x00")
        assert SEK not in card_answer
        _apdu(card, select_ef(EF_MSK))
        record = _apdu(card, bytes.fromhex("00B2010400"))
        assert record[:12] == KEY.key_domain + b"\x01" + KEY.key_id + (1).to_bytes(4)
        assert card.usim is not None
        assert card.usim.mbms.msk(KEY.key_domain, KEY.key_id) == SEK

    try:
        asyncio.run(main())
    finally:
        db.dispose()
