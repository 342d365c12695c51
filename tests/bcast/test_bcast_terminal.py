"""The terminal's BSP-C beside a card (`openscws.bcast.terminal`), over real sockets with the
BSF and the BSM in this process: GBA_U through the card, the Service Request's 401 then 200,
the LTKM handed to the USIM and its verification message acknowledged at the BSM; an LTKM with
a bad MAC or one that is not MIKEY is refused with the card's status word or the MIKEY error,
and nothing reaches the card's key store."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from bcast_fixtures import make_store

from openscws.aio.links import InProcessLink
from openscws.bcast.bsm import BsmCore, MemoryStore
from openscws.bcast.bspc import BspcError
from openscws.bcast.ltkm import Ltkm, build_ltkm
from openscws.bcast.mikey import MikeyError
from openscws.bcast.server import ZnKeys, start_bsm
from openscws.bcast.sprov import KeyId, MessageKind, Request, StatusCode
from openscws.bcast.terminal import TerminalBcast, card_msk_update
from openscws.bsf.db import BsfDatabase, default_url
from openscws.bsf.hss import SqlHss, SubscriberKeys
from openscws.bsf.models import GbaType
from openscws.bsf.server import start_bsf
from openscws.bsf.service import BsfService
from openscws.ras.vault import Vault
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.csim import CsimApp, CsimKeys, CsimSecrets
from openscws.uicc.usim import UsimApp, UsimKeys, UsimSecrets

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010123456789"
IMPI = f"{IMSI}@ims.mnc001.mcc001.3gppnetwork.org"
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


def _card() -> VirtualUicc:
    secrets = Secrets()
    UsimSecrets(secrets).set_keys(UsimKeys(IMSI, K, OPC))
    return VirtualUicc(
        CardIdentity("8988211000000000001"), usim=UsimApp.from_secrets(UsimSecrets(secrets))
    )


def test_card_msk_update_fits_one_short_apdu() -> None:
    assert card_msk_update(b"\xaa" * 254)[:6] == bytes.fromhex("00880085ff01")
    with pytest.raises(MikeyError):
        card_msk_update(b"\xaa" * 255)


def test_service_request_and_ltkm_into_the_card(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path)
    db = BsfDatabase(default_url(tmp_path))
    db.upgrade()
    SqlHss(db, vault).add(SubscriberKeys(IMPI, K, OPC, gba_type=GbaType.GBA_U))
    service = BsfService(db, vault, SqlHss(db, vault), server_name="bsf.example.net")
    token = service.add_naf(BSM)
    card = _card()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bsf = await start_bsf(service, zn_port=0)
        assert bsf.zn_url is not None
        link = InProcessLink(card)
        await link.power_on()
        terminal = TerminalBcast(link, bsf.ub_url, "", BSM, ltkm_port=0)
        port = await terminal.listen()
        store = MemoryStore(items={"urn:pi:news": (KEY,)}, keys={KEY: SEK})
        core = BsmCore(BSM, store, ZnKeys(bsf.zn_url, token, BSM, loop))
        bsm = await start_bsm(core, ltkm_port=port, resend_s=30.0)
        terminal.bsm_url = bsm.url
        try:
            response = await terminal.subscribe(("urn:pi:news",))
            assert response.status is StatusCode.SUCCESS
            assert terminal.gba.current is not None
            assert terminal.gba.current.gba == "GBA_U"
            outcome = await asyncio.wait_for(terminal.received.get(), 10)
            assert outcome.key == KEY
            assert outcome.counter == 1
            for _ in range(200):
                if bsm.pusher.acknowledged:
                    break
                await asyncio.sleep(0.01)
            assert bsm.pusher.acknowledged == 1
            assert not bsm.pusher.pending
            btid = terminal.gba.current.btid
            assert store.subscriptions(btid) == frozenset({"urn:pi:news"})
            assert card.usim is not None
            assert card.usim.mbms.msk(KEY.key_domain, KEY.key_id) == SEK
            before = card.usim.mbms.to_json()
            forged = build_ltkm(Ltkm(KEY.key_domain, KEY.key_id, b"\x77" * 16, 9,
                                     BSM.encode(), btid.encode(), True), b"\x01" * 32)  # fmt: skip
            sender, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
            )
            try:
                sender.sendto(forged)
                refused = await asyncio.wait_for(terminal.received.get(), 10)
                assert refused.key is None
                assert refused.refused == "the card answered 9862"
                sender.sendto(b"\x01\x02\x03")
                garbage = await asyncio.wait_for(terminal.received.get(), 10)
                assert garbage.key is None
                assert garbage.refused
            finally:
                sender.close()
            assert card.usim.mbms.to_json() == before
            renewal = await terminal.send(Request(MessageKind.RENEWAL, "r2", ("urn:pi:news",)))
            assert renewal.status is StatusCode.SUCCESS
            fresh = await asyncio.wait_for(terminal.received.get(), 10)
            assert fresh.counter == 2
            assert card.usim.mbms.to_json() != before
        finally:
            terminal.close()
            await bsm.stop()
            await bsf.stop()

    try:
        asyncio.run(main())
    finally:
        db.dispose()


NAI = "user@ruim.example.org"
RK = bytes.fromhex("00112233445566778899aabbccddeeff")
RAND = bytes.fromhex("0a0b0c")


def _csim_card(nai: str = NAI) -> VirtualUicc:
    secrets = Secrets()
    CsimSecrets(secrets).set_keys(CsimKeys(nai, RK, RAND))
    return VirtualUicc(
        CardIdentity("8988211000000000002"), csim=CsimApp.from_secrets(CsimSecrets(secrets))
    )


def test_ruim_path_nai_and_rk_into_the_card(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """(R-)UIM: the NAI is the username, the card's Auth-Key the password, the BSM checks the
    NAI against its RK store (401, then 200) and the LTKM under TK goes into the card; a card
    whose NAI the BSM does not know gets 401 twice and no subscription."""
    store = make_store(tmp_path / "bsm")
    store.add_key(KEY, SEK)
    store.add_item("urn:pi:news", [KEY])
    store.add_rk_subscriber(NAI, RK, RAND)
    card, stranger = _csim_card(), _csim_card("nobody@ruim.example.org")
    caplog.set_level(logging.INFO, logger="openscws.bcast.terminal")

    async def main() -> None:
        link = InProcessLink(card)
        await link.power_on()
        terminal = TerminalBcast(link, "", "", BSM, ltkm_port=0, via="csim")
        port = await terminal.listen()
        core = BsmCore(BSM, store, store.rk_user_keys)
        bsm = await start_bsm(core, ltkm_port=port, resend_s=30.0)
        terminal.bsm_url = bsm.url
        try:
            response = await terminal.subscribe(("urn:pi:news",))
            assert response.status is StatusCode.SUCCESS
            outcome = await asyncio.wait_for(terminal.received.get(), 10)
            assert outcome.key == KEY
            for _ in range(200):
                if bsm.pusher.acknowledged:
                    break
                await asyncio.sleep(0.01)
            assert bsm.pusher.acknowledged == 1
            other_link = InProcessLink(stranger)
            await other_link.power_on()
            other = TerminalBcast(other_link, "", bsm.url, BSM, ltkm_port=0, via="csim")
            with pytest.raises(BspcError) as refused:
                await other.subscribe(("urn:pi:news",))
            assert refused.value.status == 401
        finally:
            terminal.close()
            await bsm.stop()

    try:
        asyncio.run(main())
        assert store.subscriptions(NAI) == frozenset({"urn:pi:news"})
        assert store.subscriptions("nobody@ruim.example.org") == frozenset()
    finally:
        store.db.dispose()
    lines = [r.getMessage() for r in caplog.records]
    statuses = [line.rsplit(": ", 1)[1] for line in lines if "/bcast/" in line]
    assert statuses == ["401", "200", "401", "401"]
    assert card.csim is not None
    assert card.csim.state.msk(KEY.key_domain, KEY.key_id) == SEK
    assert stranger.csim is not None
    assert stranger.csim.state.msk(KEY.key_domain, KEY.key_id) is None


class _LossyRelay(asyncio.DatagramProtocol):
    """Between the BSM and the terminal's LTKM port: drops the first `drop` LTKMs (a lossy
    network), forwards the others, and the terminal's acknowledgements back."""

    def __init__(self, terminal_port: int, drop: int) -> None:
        self.terminal = ("127.0.0.1", terminal_port)
        self.drop = drop
        self.bsm: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.terminal:
            if self.bsm is not None:
                self.transport.sendto(data, self.bsm)
            return
        self.bsm = addr
        if self.drop:
            self.drop -= 1
            return
        self.transport.sendto(data, self.terminal)


@pytest.mark.parametrize("drop", [1, 100])
def test_a_lost_ltkm_is_asked_for_again(tmp_path: Path, drop: int) -> None:
    """The Service Request's LTKM is lost on the way: after the wait the terminal asks for it
    with an LTKM Request and the card gets it; when every LTKM is lost, the key is named as
    never come."""
    store = make_store(tmp_path / "bsm")
    store.add_key(KEY, SEK)
    store.add_item("urn:pi:news", [KEY])
    store.add_rk_subscriber(NAI, RK, RAND)
    card = _csim_card()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        link = InProcessLink(card)
        await link.power_on()
        terminal = TerminalBcast(link, "", "", BSM, ltkm_port=0, via="csim")
        port = await terminal.listen()
        relay_transport, relay = await loop.create_datagram_endpoint(
            lambda: _LossyRelay(port, drop), local_addr=("127.0.0.1", 0)
        )
        relay_port = int(relay_transport.get_extra_info("sockname")[1])
        core = BsmCore(BSM, store, store.rk_user_keys)
        bsm = await start_bsm(core, ltkm_port=relay_port, resend_s=30.0)
        terminal.bsm_url = bsm.url
        try:
            response = await terminal.subscribe(("urn:pi:news",))
            assert response.status is StatusCode.SUCCESS
            lacking = await terminal.ensure_ltkms((KEY,), 0.5)
            if drop == 1:
                assert lacking == ()
                assert KEY in terminal.accepted
                assert relay.drop == 0
            else:
                assert lacking == (KEY,)
                assert KEY not in terminal.accepted
                assert relay.drop == 100 - 2  # the first send and the one asked for
        finally:
            terminal.close()
            relay_transport.close()
            await bsm.stop()

    try:
        asyncio.run(main())
    finally:
        store.db.dispose()
    assert card.csim is not None
    want = SEK if drop == 1 else None
    assert card.csim.state.msk(KEY.key_domain, KEY.key_id) == want
