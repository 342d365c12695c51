"""One subscriber from bootstrapping to a SEK in the terminal, over real sockets: the terminal
bootstraps with the BSF (Ub, HTTP Digest AKA with MILENAGE test set 1), the BSM fetches the
NAF keys for its NAF_Id on Zn (HTTP on loopback with its token), the BSP-C's Service Request
gets 401 then 200, and the LTKM arrives over UDP keyed with the MUK: with GBA_ME the terminal
opens it with Ks_NAF; with GBA_U it needs Ks_int_NAF, which only the card and the BSM have."""

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
from openscws.gba.kdf import ks_int_naf, ks_naf
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient
from openscws.ras.vault import Vault

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
BSM = "bsm.example.org"
KEY = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))
SEK = bytes(range(16))


def _bootstrap(service: BsfService) -> tuple[str, bytes, bytes]:
    ub = UbClient(IMPI, service.server_name)
    challenge = service.ub("GET", dict(ub.identity_request().headers)["Authorization"])
    need = ub.receive(401, {k.lower(): v for k, v in challenge.headers}, b"")
    assert isinstance(need, NeedAka)
    aka = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
    assert isinstance(aka, UsimAnswer)
    done = service.ub("GET", dict(ub.answer(aka.res).headers)["Authorization"])
    boot = ub.receive(200, {k.lower(): v for k, v in done.headers}, done.body)
    assert isinstance(boot, Bootstrapped)
    return boot.btid, need.rand, aka.ck + aka.ik


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
    btid, rand, ks = _bootstrap(service)
    naf = bsm_naf_id(BSM)
    ext = ks_naf(ks, rand, IMPI, naf)  # the terminal's (GBA_ME) or the card's Ks_ext_NAF (GBA_U)
    keys = mbms_keys_gba_me(ext) if gba_type is GbaType.GBA_ME else mbms_keys_gba_u(ext)

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
        if gba_type is GbaType.GBA_ME:
            assert keys.muk is not None
            receiver = LtkmReceiver(keys.muk)
        else:
            assert keys.muk is None  # the terminal cannot open it; the card's Ks_int_NAF can
            receiver = LtkmReceiver(ks_int_naf(ks, rand, IMPI, naf))
        receiver.datagram(datagram, 0.0)
        assert receiver.keys == {KEY: SEK}

    try:
        asyncio.run(main())
    finally:
        db.dispose()
