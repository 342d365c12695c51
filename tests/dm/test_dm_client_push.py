"""Package #0 over the SMS path: the WAP push codec, the DM client's SMS hook, and the gateway
handing the terminal's own SMS to it while every other SMS still goes to the card."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.cat.envelopes import SmsPpDownload
from openscws.dm import auth, client_store
from openscws.dm.client import DmClient
from openscws.dm.client_push import package0_of, package0_sms
from openscws.dm.client_store import AccountSettings
from openscws.dm.scr_server import MiniDmServer, make_pki, server_context
from openscws.dm.session import DeviceAccount
from openscws.dm.transport import TlsSettings
from openscws.errors import DecodeError
from openscws.gba.client import HttpResponse, http_request
from openscws.ota.sms import ServiceCentreTimeStamp, SmsAddress, SmsDeliver
from openscws.terminal.engine import TerminalEngine
from openscws.uicc.card import CardIdentity, VirtualUicc


def account() -> DeviceAccount:
    return DeviceAccount(
        "dev",
        "s3cret",
        auth.AUTH_MD5,
        b"N0",
        server_id="srv",
        server_password="srvpw",
        server_auth_type=auth.AUTH_MD5,
    )


def test_wap_push_round_trip() -> None:
    pkg0 = account().package0(0x42)
    tpdu = package0_sms(pkg0)
    sms = SmsDeliver.decode(tpdu)
    assert sms.pid == 0x00
    assert sms.header is not None
    assert sms.header.elements[0].data == bytes.fromhex("0B8423F0")  # ports 2948 <- 9200
    assert sms.user_data[:5] == bytes.fromhex("000603C4AF")[:5]
    assert package0_of(tpdu) == pkg0


def test_other_sms_are_not_ours() -> None:
    ota = SmsDeliver(
        originating=SmsAddress.from_digits("12345"),
        scts=ServiceCentreTimeStamp(bytes(7)),
        user_data=b"\x02\x70\x00rest",
    )
    assert package0_of(ota.encode()) is None  # the card's SMS-PP download, untouched
    assert package0_of(b"\x01garbage") is None
    # A push for another application on the push port is not the DM client's either.
    tpdu = bytearray(package0_sms(b"x" * 30))
    tpdu[tpdu.index(0xAF) + 1] = 0x82
    assert package0_of(bytes(tpdu)) is None


def test_malformed_wsp_on_push_port() -> None:
    tpdu = bytearray(package0_sms(b"y" * 30))
    tpdu[tpdu.index(0x06, 20)] = 0x07  # not a Push PDU
    with pytest.raises(DecodeError):
        package0_of(bytes(tpdu))


@given(st.binary(max_size=160))
def test_fuzz_never_raises_untyped(data: bytes) -> None:
    try:
        package0_of(data)
    except DecodeError:
        pass


def _tree(path: Path, url: str, ca: Path) -> None:
    tree = client_store.new_tree("IMEI:1")
    client_store.add_account(
        tree,
        "1",
        AccountSettings(
            server_id="srv",
            server_url=url,
            client_name="dev",
            client_secret="s3cret",
            server_secret="srvpw",
            tls=TlsSettings(ca_file=ca),
        ),
    )
    client_store.save(tree, path)


class _PorApp:
    """A card application that answers every SMS-PP download with a PoR."""

    def __init__(self) -> None:
        self.tpdus: list[bytes] = []

    def on_terminal_profile(self, profile: object, now: float) -> None:
        pass

    def on_envelope(self, envelope: object, now: float) -> bytes | None:
        if isinstance(envelope, SmsPpDownload):
            self.tpdus.append(envelope.tpdu.tpdu)
            return POR
        return None

    def next_command(self, number: int, now: float) -> None:
        return None

    def on_terminal_response(self, command: object, response: object, now: float) -> None:
        pass

    def next_timer(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        pass


OTA = bytes.fromhex("44 05 81 2143F5 7F F6 52112201000000 07 027000 DEADBEEF")
POR = bytes.fromhex("027100 000B 0A B00010 0000000001 00 00")


def test_sms_entry_point_hands_package0_to_dm_client(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """The gateway's local SMS entry point (as `up --dm` wires it): the DM push starts a
    session and never reaches the card; the OTA SMS still goes to the card and gets its PoR."""
    pki = make_pki()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    server = MiniDmServer(account=account, context=server_context(pki))
    app = _PorApp()
    card = VirtualUicc(CardIdentity("89882390000012345678"))
    card.toolkit.register(app)  # type: ignore[arg-type]

    async def go() -> tuple[HttpResponse, HttpResponse, HttpResponse]:
        await server.start()
        gw = Gateway(InProcessLink(card), TerminalEngine(), GatewayConfig(sms_port=free_port()))
        await gw.start()
        try:
            path = tmp_path / "tree.json"
            _tree(path, server.url, ca)
            client = DmClient(path, timeout=10)
            gw.terminal_sms = client.handle_sms
            assert gw.sms_endpoint is not None
            url = gw.sms_endpoint.url
            sms = (("Content-Type", "application/vnd.3gpp.sms"),)
            push = await http_request(url, "POST", sms, package0_sms(account().package0(0xBEEF)))
            await client.wait_idle()
            ota = await http_request(url, "POST", sms, OTA)
            forged = bytes(16) + account().package0(0xBEF0)[16:]
            bad = await http_request(url, "POST", sms, package0_sms(forged))
            await client.wait_idle()
            return push, ota, bad
        finally:
            await gw.stop()
            await server.close()

    push, ota, bad = asyncio.run(go())
    assert (push.status, push.headers["x-sms-status"]) == (200, "delivered")
    assert "BEEF" in server.sessions  # the session the notification asked for
    assert server.sessions["BEEF"].core.devinfo["Ext/TLS/Version"] == "TLSv1.2"
    assert (ota.status, ota.headers["x-sms-status"], ota.body) == (200, "por", POR)
    assert app.tpdus == [OTA]  # only the OTA SMS reached the card
    assert bad.headers["x-sms-status"] == "delivered"  # taken by the terminal, but ...
    assert "BEF0" not in server.sessions  # ... a forged notification opens nothing
