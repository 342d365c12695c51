"""Package #0 over the SMS path: the WAP push codec, the DM client's SMS hook, and the gateway
handing the terminal's own SMS to it while every other SMS still goes to the card."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.aio.gateway import Gateway
from openscws.dm import auth, client_store
from openscws.dm.client import DmClient
from openscws.dm.client_push import package0_of, package0_sms
from openscws.dm.client_store import AccountSettings
from openscws.dm.scr_server import MiniDmServer, make_pki, server_context
from openscws.dm.session import DeviceAccount
from openscws.dm.transport import TlsSettings
from openscws.errors import DecodeError
from openscws.ota.sms import ServiceCentreTimeStamp, SmsAddress, SmsDeliver
from openscws.terminal.engine import SmsResult, SmsStatus


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


def test_gateway_hands_package0_to_dm_client(tmp_path: Path) -> None:
    pki = make_pki()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    server = MiniDmServer(account=account, context=server_context(pki))
    gateway = Gateway.__new__(Gateway)  # only deliver_sms's terminal hook is exercised
    gateway.terminal_sms = None
    gateway.card_lost = True  # the card is gone: what reaches it raises CardGone

    async def go() -> tuple[SmsResult, SmsResult | None]:
        await server.start()
        try:
            path = tmp_path / "tree.json"
            _tree(path, server.url, ca)
            client = DmClient(path, timeout=10)
            gateway.terminal_sms = client.handle_sms
            result = await gateway.deliver_sms(package0_sms(account().package0(0xBEEF)))
            await client.wait_idle()
            other = await client.handle_sms(b"\x04\x05\x81\x21\x43\xf5\x7f\xf6" + bytes(8))
            return result, other
        finally:
            await server.close()

    result, other = asyncio.run(go())
    assert result.status is SmsStatus.DELIVERED
    assert other is None
    assert "BEEF" in server.sessions  # the session the notification asked for
    served = server.sessions["BEEF"]
    assert served.core.devinfo["Ext/TLS/Version"] == "TLSv1.2"
