"""The whole push path in process, over real sockets: PapClient -> PPG (its registrar, digest)
-> SIP MESSAGE -> PushClient (REGISTERed with the feature tag) -> PUSH-CAI -> SCWS Push Gateway
-> SCWS-6 -> Gateway.deliver_sms -> the card's SMS-PP download; and the refusals on the way."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_cardapps import ClientApp, card_with

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.aio.pap_client import PapClient
from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.push_client import PushClient, PushClientConfig, Scws6Endpoint, ScwsPushGateway
from openscws.aio.sip_endpoint import new_branch
from openscws.ota import KeyRef
from openscws.ota.sms import SmsDeliver, command_packet_of
from openscws.push.content import SCWS_APP_ID, build_push
from openscws.push.pap import Address, PushResponse, StatusQueryResponse
from openscws.push.ppg import DeliveryPolicy, Initiator
from openscws.push.sip import SipResponse, parse_message
from openscws.ras.trigger import CardOtaKeys, build_trigger
from openscws.terminal.engine import SmsResult, SmsStatus, TerminalEngine

KEYS = CardOtaKeys(
    tar=bytes.fromhex("B20100"),
    kic=KeyRef(1, 2),
    kid=KeyRef(1, 2),
    kic_key=bytes(range(16)),
    kid_key=bytes(range(16, 32)),
)
PACKET = build_trigger(
    KEYS,
    3,
    admin_host="127.0.0.1",
    admin_port=29443,
    admin_uri="/scws/admin",
    agent_id=None,
    psk_identity="scws01",
)
AOR = "sip:device1@scws.test"
PPG_ID = "sip:ppg@scws.test"


@contextlib.asynccontextmanager
async def path(
    tmp_path: Path, transport: str = "UDP"
) -> AsyncIterator[tuple[Ppg, PushClient, ClientApp, PapClient]]:
    ppg = Ppg(
        PpgConfig(
            database_url=f"sqlite:///{tmp_path / 'ppg.db'}",
            initiators=(Initiator("ras", "s3cret"),),
            registrar_users={"device1": "pw"},
            policy=DeliveryPolicy(max_attempts=3, backoff=0.1, backoff_cap=0.2),
            poll=0.05,
        )
    )
    await ppg.start()
    app = ClientApp(open_on_profile=False)
    engine = TerminalEngine(sms_retry_interval=0.05)
    gw = Gateway(InProcessLink(card_with(app)), engine, GatewayConfig())
    await gw.start()
    scws6 = Scws6Endpoint(gw.deliver_sms)
    await scws6.start()
    client = PushClient(
        PushClientConfig(
            aor=AOR,
            registrar=f"sip:127.0.0.1:{ppg.sip.port};transport={transport.lower()}",
            trusted_ppg=frozenset({PPG_ID}),
            username="device1",
            password="pw",
            transport=transport,
        )
    )
    await client.start()
    spg = ScwsPushGateway(client.cai_url, scws6.url)
    await spg.start()
    try:
        async with asyncio.timeout(10):
            while not (client.ready and client.apps):
                await asyncio.sleep(0.05)
        yield ppg, client, app, PapClient(ppg.pap_url, username="ras", password="s3cret")
    finally:
        await spg.close()
        await client.close()
        await scws6.close()
        await gw.stop()
        await ppg.close()


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_push_reaches_the_card_as_an_sms_pp_download(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with path(tmp_path, transport) as (_ppg, _client, app, pi):
            answer = await asyncio.to_thread(pi.push, "t1", Address.sip(AOR), PACKET)
            assert isinstance(answer, PushResponse)
            assert answer.code == 1001
            async with asyncio.timeout(10):
                while not app.sms:
                    await asyncio.sleep(0.05)
            (sms,) = app.sms
            deliver = SmsDeliver.decode(sms.tpdu.tpdu)
            assert command_packet_of(deliver).encode() == PACKET
            assert (deliver.pid, deliver.dcs) == (0x7F, 0xF6)
            async with asyncio.timeout(10):
                while True:
                    status = await asyncio.to_thread(pi.status, "t1")
                    assert isinstance(status, StatusQueryResponse)
                    if status.results[0].code == 1000:
                        break
                    await asyncio.sleep(0.05)

    asyncio.run(main())


async def send_raw(port: int, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
        async with asyncio.timeout(5):
            return await loop.sock_recv(sock, 65535)
    finally:
        sock.close()


GARBAGE = (
    b"MESSAGE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bKx\r\n"
    b"CSeq: 1 MESSAGE\r\n\r\n"
)


def test_push_client_refusals(tmp_path: Path) -> None:
    async def main() -> None:
        async with path(tmp_path) as (_ppg, client, app, _pi):

            def message(ppg_id: str, app_id: str = SCWS_APP_ID) -> bytes:
                req = build_push(
                    target=AOR,
                    ppg=ppg_id,
                    packet=PACKET,
                    via_host="127.0.0.1",
                    via_port=9,
                    transport="UDP",
                    branch=new_branch(),
                    from_tag="t",
                    call_id=new_branch(),
                    request_uri=client.contact_uri,
                    app_id=app_id,
                )
                # rport and received: the answer comes back to the sending socket
                return req.encode().replace(b";rport", b";rport;received=127.0.0.1")

            for sender, status in (("sip:mallory@evil.test", 403), (PPG_ID, 200)):
                answer = parse_message(await send_raw(client.sip.port, message(sender)))
                assert isinstance(answer, SipResponse)
                assert answer.status == status
            garbage = await send_raw(client.sip.port, GARBAGE)
            assert garbage.startswith(b"SIP/2.0 400 ")
            async with asyncio.timeout(10):
                while not app.sms:
                    await asyncio.sleep(0.05)
            assert len(app.sms) == 1  # only the trusted PPG's push reached the card

    asyncio.run(main())


def test_scws6_takes_well_formed_local_pushes_only() -> None:
    async def main() -> None:
        delivered: list[bytes] = []

        async def deliver(tpdu: bytes) -> SmsResult:
            delivered.append(tpdu)
            return SmsResult(SmsStatus.DELIVERED, 0x9000)

        endpoint = Scws6Endpoint(deliver)
        await endpoint.start()

        def post(body: bytes, media: str) -> int:
            req = urllib.request.Request(
                endpoint.url, data=body, method="POST", headers={"Content-Type": media}
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return int(r.status)
            except urllib.error.HTTPError as e:
                e.close()
                return int(e.code)

        try:
            assert await asyncio.to_thread(post, PACKET, "application/octet-stream") == 200
            assert await asyncio.to_thread(post, PACKET[:-1], "application/octet-stream") == 400
            assert await asyncio.to_thread(post, PACKET, "text/plain") == 415
            assert await asyncio.to_thread(post, bytes(2000), "application/octet-stream") == 413
        finally:
            await endpoint.close()
        assert len(delivered) == 1

    asyncio.run(main())
