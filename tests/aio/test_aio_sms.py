"""SMS-PP data download through the real gateway: `Gateway.deliver_sms`, the local HTTP entry
point (`aio/smsc_local.py`) and the remote administration server's `LocalTerminalSender` that
posts to it; the card is in process, with a toolkit app that answers a fixed PoR."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from aio_cardapps import ClientApp, card_with, until

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import CardGone, InProcessLink
from openscws.aio.smsc_local import SmsLocalEndpoint, is_loopback_peer
from openscws.cat.objects import Address
from openscws.errors import ConfigError
from openscws.ota.sms import Iei, SmsDeliver
from openscws.ras.senders import DeliveryStatus, LocalTerminalSender, SendError
from openscws.terminal.engine import SmsResult, SmsStatus, TerminalEngine

# SMS-DELIVER: UDHI, TP-OA "12345", TP-PID 7F, TP-DCS F6, TP-SCTS, UD = 02 70 00 + 4 bytes
TPDU = bytes.fromhex("44 05 81 2143F5 7F F6 52112201000000 07 027000 DEADBEEF")
POR = bytes.fromhex("027100 000B 0A B00010 0000000001 00 00")


@contextlib.asynccontextmanager
async def gateway(app: ClientApp, **config: object) -> AsyncIterator[Gateway]:
    engine = TerminalEngine(sms_retry_interval=0.05)
    gw = Gateway(InProcessLink(card_with(app)), engine, GatewayConfig(**config))  # type: ignore[arg-type]
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def post(
    port: int, body: bytes, *, target: str = "/sms", method: str = "POST", media: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request (not h11: the test checks the wire, not our parser)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += f"Content-Type: {media or 'application/vnd.3gpp.sms'}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + body)
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    top, _, content = raw.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(content)
    return int(lines[0].split()[1]), headers, content


def test_deliver_sms_returns_the_por() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, por=POR)
        async with gateway(app, sms_service_centre="+447700900123") as gw:
            result = await asyncio.wait_for(gw.deliver_sms(TPDU), 5)
            # 91 XX: the SMS made the app want to open its channel (a trigger)
            assert (result.status, result.sw >> 8, result.data) == (SmsStatus.POR, 0x91, POR)
            (sms,) = app.sms
            assert sms.tpdu.tpdu == TPDU
            assert sms.address == Address(0x91, bytes.fromhex("447700091032"))

    asyncio.run(main())


def test_busy_card_is_retried() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, busy=2)
        async with gateway(app) as gw:
            result = await asyncio.wait_for(gw.deliver_sms(TPDU), 5)
        assert result.status is SmsStatus.DELIVERED
        assert len(app.sms) == 1

    asyncio.run(main())


def test_card_busy_for_good_is_reported_busy() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, busy=100)
        async with gateway(app) as gw:
            result = await asyncio.wait_for(gw.deliver_sms(TPDU), 5)
        assert result == SmsResult(SmsStatus.BUSY, 0x9300)

    asyncio.run(main())


def test_stopped_gateway_refuses() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False)
        async with gateway(app) as gw:
            pass
        with pytest.raises(CardGone):
            await gw.deliver_sms(TPDU)

    asyncio.run(main())


def test_local_endpoint_answers_with_the_por() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, por=POR)
        app.open_sent = True  # no client channel: the card answers 90 00
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            try:
                status, headers, body = await post(endpoint.port, TPDU)
                assert (status, body) == (200, POR)
                assert headers["x-sms-status"] == "por"
                assert headers["x-sms-sw"] == "9000"
                app.por = b""
                status, headers, body = await post(endpoint.port, TPDU)
                assert (status, headers["x-sms-status"], body) == (200, "delivered", b"")
            finally:
                await endpoint.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("target", "method", "media", "body", "expected"),
    [
        ("/sms", "POST", "", b"\x44\x05", 400),  # truncated TPDU
        ("/sms", "POST", "", bytes.fromhex("01") + TPDU[1:], 400),  # MTI 01: SMS-SUBMIT
        ("/sms", "POST", "text/plain", TPDU, 415),
        ("/other", "POST", "", TPDU, 404),
        ("/sms", "PUT", "", TPDU, 405),
        ("/sms", "POST", "", TPDU * 10, 413),
    ],
)
def test_local_endpoint_refusals(
    target: str, method: str, media: str, body: bytes, expected: int
) -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            try:
                status, _, _ = await post(
                    endpoint.port, body, target=target, method=method, media=media
                )
            finally:
                await endpoint.close()
        assert status == expected
        assert app.sms == []

    asyncio.run(main())


def test_local_endpoint_after_the_card_is_gone_is_503() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()

            def unplugged(apdu: bytes) -> bytes:
                raise ConnectionError("card removed")

            gw.link.transmit_now = unplugged  # type: ignore[method-assign]
            try:
                status, headers, _ = await post(endpoint.port, TPDU)
                assert status == 503
                assert headers["retry-after"] == "5"
                assert gw.card_lost
                status, _, _ = await post(endpoint.port, TPDU)  # and stays so
                assert status == 503
            finally:
                await endpoint.close()

    asyncio.run(main())


def test_keep_alive_requests() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, por=b"\x99")
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
                request = (
                    b"POST /sms HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/vnd.3gpp.sms\r\nContent-Length: %d\r\n\r\n"
                    % len(TPDU)
                ) + TPDU
                writer.write(request + request)
                for _ in range(2):
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    assert head.startswith(b"HTTP/1.1 200")
                    assert await reader.readexactly(1) == b"\x99"
                writer.close()
            finally:
                await endpoint.close()
        assert len(app.sms) == 2

    asyncio.run(main())


def test_gateway_runs_the_endpoint_when_configured(free_port: Callable[[], int]) -> None:
    async def main(port: int) -> None:
        app = ClientApp(open_on_profile=False, por=POR)
        async with gateway(app, sms_port=port) as gw:
            assert gw.sms_endpoint is not None
            assert gw.sms_endpoint.url == f"http://127.0.0.1:{port}/sms"
            status, _, body = await post(port, TPDU)
            assert (status, body) == (200, POR)

    asyncio.run(main(free_port()))


# -- the remote administration server's local sender ---------------------------------------------


def test_local_terminal_sender_single_sms() -> None:
    packet = bytes(range(40))

    async def main() -> None:
        app = ClientApp(open_on_profile=False, por=POR)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            try:
                sender = LocalTerminalSender(endpoint.url)
                result = await sender.send("+447700900999", packet)
            finally:
                await endpoint.close()
        assert result.status is DeliveryStatus.POR
        assert result.por == POR
        assert result.parts == 1
        (envelope,) = app.sms
        sms = SmsDeliver.decode(envelope.tpdu.tpdu)
        assert (sms.pid, sms.dcs) == (0x7F, 0xF6)
        assert sms.header is not None
        assert sms.header.encode() == b"\x02\x70\x00"
        assert sms.user_data == packet
        assert not sms.more_messages

    asyncio.run(main())


def test_local_terminal_sender_concatenates_a_long_packet() -> None:
    packet = bytes(i % 256 for i in range(300))

    async def main() -> None:
        app = ClientApp(open_on_profile=False)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            try:
                result = await LocalTerminalSender(endpoint.url).send("1", packet)
            finally:
                await endpoint.close()
        assert (result.status, result.parts) == (DeliveryStatus.DELIVERED, 3)
        parts = [SmsDeliver.decode(e.tpdu.tpdu) for e in app.sms]
        headers = [p.header for p in parts]
        assert all(h is not None for h in headers)
        refs = {h.elements[0].data[0] for h in headers if h is not None}
        assert len(refs) == 1
        for i, h in enumerate(headers, 1):
            assert h is not None
            assert h.elements[0].iei == Iei.CONCATENATED_8BIT
            assert h.elements[0].data[1:] == bytes((3, i))
            assert h.has(Iei.COMMAND_PACKET) == (i == 1)
        assert b"".join(p.user_data for p in parts) == packet
        assert [p.more_messages for p in parts] == [True, True, False]
        assert all(len(p.encode()) <= 164 for p in parts)  # TS 23.040: 140 octets of TP-UD

    asyncio.run(main())


def test_local_terminal_sender_reports_a_gone_card() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms)
            await endpoint.start()
            await gw.stop()
            try:
                with pytest.raises(SendError, match="503"):
                    await LocalTerminalSender(endpoint.url).send("1", b"\x00" * 20)
            finally:
                await endpoint.close()

    asyncio.run(main())


def test_local_terminal_sender_without_a_gateway() -> None:
    async def main() -> None:
        endpoint = SmsLocalEndpoint(lambda tpdu: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
        await endpoint.start()
        url = endpoint.url
        await endpoint.close()
        with pytest.raises(SendError):
            await LocalTerminalSender(url, timeout=2).send("1", b"\x00" * 20)

    asyncio.run(main())


def test_triggered_admin_link_after_the_sms() -> None:
    """The SMS wakes the app, which opens its client channel (an admin session's start)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = int(srv.sockets[0].getsockname()[1])
        app = ClientApp(open_on_profile=False, send=b"POST /admin", expect=11)
        try:
            async with gateway(app, connect_map={("192.0.2.1", 7): ("127.0.0.1", port)}) as gw:
                assert app.open_sent is False
                await asyncio.wait_for(gw.deliver_sms(TPDU), 5)
                await until(lambda: app.closed)
        finally:
            srv.close()
        assert bytes(app.received) == b"POST /admin"

    asyncio.run(main())


# -- local only ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "localhost", ""])
def test_local_endpoint_listens_on_loopback_only(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        SmsLocalEndpoint(lambda tpdu: asyncio.sleep(0), host=host)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("192.0.2.7", 5000), False),
        (("::ffff:192.0.2.7", 5000, 0, 0), False),
        (("2001:db8::1", 5000, 0, 0), False),
        (None, False),
        ("/tmp/socket", False),
    ],
)
def test_loopback_peers(peer: object, local: bool) -> None:
    assert is_loopback_peer(peer) is local


def test_local_endpoint_refuses_a_caller_from_the_network() -> None:
    """A connection whose peer is not loopback (as a wildcard listener would see one) is closed
    without an answer and nothing reaches the card."""

    async def main() -> None:
        delivered: list[bytes] = []

        async def deliver(tpdu: bytes) -> SmsResult:
            delivered.append(tpdu)
            return SmsResult(SmsStatus.DELIVERED, 0x9000, b"")

        endpoint = SmsLocalEndpoint(deliver)
        written: list[bytes] = []

        class FarTransport(asyncio.Transport):
            closed = False

            def get_extra_info(self, name: str, default: object = None) -> object:
                return ("192.0.2.7", 40000) if name == "peername" else default

            def write(self, data: bytes | bytearray | memoryview) -> None:
                written.append(bytes(data))

            def close(self) -> None:
                self.closed = True

        writer = FarTransport()
        connection = endpoint.http._connection()
        connection.connection_made(writer)
        connection.data_received(b"POST /sms HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        connection.eof_received()
        await asyncio.sleep(0)
        assert writer.closed
        assert written == []
        assert delivered == []
        assert endpoint.refused == 1

    asyncio.run(main())


def test_local_endpoint_caps_its_connections() -> None:
    async def main() -> None:
        app = ClientApp(open_on_profile=False, por=POR)
        async with gateway(app) as gw:
            endpoint = SmsLocalEndpoint(gw.deliver_sms, max_connections=2)
            await endpoint.start()
            try:
                held = [await asyncio.open_connection("127.0.0.1", endpoint.port) for _ in range(2)]
                await until(lambda: endpoint.http.connections == 2)
                reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
                answer = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 503 ")
                assert b"Retry-After: 1" in answer
                assert endpoint.refused == 1
                # One held connection goes: a new one is served again.
                held[0][1].close()
                await until(lambda: endpoint.http.connections == 1)
                status, headers, body = await post(endpoint.port, TPDU)
                assert (status, headers["x-sms-status"], body) == (200, "por", POR)
                held[1][1].close()
            finally:
                await endpoint.close()

    asyncio.run(main())


# -- routing by MSISDN (openscws up --cards N) -----------------------------------------------


def _recorder(name: str, log: list[tuple[str, bytes]]) -> Callable[[bytes], object]:
    async def deliver(tpdu: bytes) -> SmsResult:
        log.append((name, tpdu))
        return SmsResult(SmsStatus.DELIVERED, 0x9000, name.encode())

    return deliver


def test_local_endpoint_routes_by_msisdn() -> None:
    """Each card's trigger reaches that card: `?msisdn=` picks the route (with or without the
    '+'), an MSISDN no card here has is 404 and reaches no card, none at all is card 1's."""

    async def main() -> None:
        got: list[tuple[str, bytes]] = []
        one, two = _recorder("one", got), _recorder("two", got)
        endpoint = SmsLocalEndpoint(
            one,  # type: ignore[arg-type]
            routes={"+15550100001": one, "+15550100002": two},  # type: ignore[dict-item]
        )
        await endpoint.start()
        try:
            status, _, body = await post(endpoint.port, TPDU, target="/sms?msisdn=%2B15550100002")
            assert (status, body) == (200, b"two")
            status, _, body = await post(endpoint.port, TPDU, target="/sms?msisdn=15550100001")
            assert (status, body) == (200, b"one")
            status, _, body = await post(endpoint.port, TPDU, target="/sms?msisdn=15550100009")
            assert status == 404
            assert b"15550100009" in body
            status, _, body = await post(endpoint.port, TPDU)
            assert (status, body) == (200, b"one")
        finally:
            await endpoint.close()
        assert [name for name, _ in got] == ["two", "one", "one"]

    asyncio.run(main())


def test_local_terminal_sender_names_the_msisdn() -> None:
    async def main() -> None:
        got: list[tuple[str, bytes]] = []
        one, two = _recorder("one", got), _recorder("two", got)
        endpoint = SmsLocalEndpoint(
            one,  # type: ignore[arg-type]
            routes={"+15550100001": one, "+15550100002": two},  # type: ignore[dict-item]
        )
        await endpoint.start()
        try:
            sender = LocalTerminalSender(endpoint.url, timeout=5)
            result = await sender.send("+15550100002", b"\x00" * 20)
            assert result.status is DeliveryStatus.DELIVERED
            with pytest.raises(SendError, match="404"):
                await sender.send("+15550100003", b"\x00" * 20)
        finally:
            await endpoint.close()
        assert [name for name, _ in got] == ["two"]

    asyncio.run(main())


def test_local_terminal_sender_url() -> None:
    sender = LocalTerminalSender("http://127.0.0.1:3517/sms?msisdn=1&x=y")
    assert sender.url_for("+15550100002") == "http://127.0.0.1:3517/sms?x=y&msisdn=%2B15550100002"
    assert sender.url_for("") == "http://127.0.0.1:3517/sms?x=y"
