"""Client-mode channels through the real gateway: a card application opens "TCP, UICC in client
mode" to 192.0.2.1 (the gateway's `connect_map` sends it to a server on 127.0.0.1), and bytes
go both ways over real sockets, every one of them through APDUs to the in-process card."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aio_cardapps import ClientApp, card_with, until

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.cat.objects import GeneralResult
from openscws.terminal.engine import TerminalEngine

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(srv.sockets[0].getsockname()[1])
    finally:
        srv.close()


@contextlib.asynccontextmanager
async def gateway(app: ClientApp, port: int, **config: float) -> AsyncIterator[Gateway]:
    cfg = GatewayConfig(connect_map={("192.0.2.1", 7): ("127.0.0.1", port)}, **config)  # type: ignore[arg-type]
    gw = Gateway(InProcessLink(card_with(app)), TerminalEngine(poll_interval=0.05), cfg)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def test_echo_through_a_client_channel() -> None:
    payload = bytes(range(256)) * 12  # 3072 bytes: several SEND DATA, two buffer flushes

    async def main() -> None:
        app = ClientApp(send=payload, expect=len(payload))
        async with server(echo) as port, gateway(app, port):
            await until(lambda: app.closed)
            await until(lambda: app.channel is None)
        assert app.open_response is not None
        assert app.open_response.result.general == GeneralResult.OK
        status = app.open_response.channel_status
        assert status is not None
        assert status.bits == 2  # link established
        assert bytes(app.received) == payload
        assert app.failures == []

    asyncio.run(main())


def test_ipv6_destination() -> None:
    async def main() -> None:
        app = ClientApp("::1", 7, send=b"ping", expect=4)
        srv = await asyncio.start_server(echo, "::1", 0)
        port = int(srv.sockets[0].getsockname()[1])
        cfg = GatewayConfig(connect_map={("::1", 7): ("::1", port)})
        gw = Gateway(InProcessLink(card_with(app)), TerminalEngine(poll_interval=0.05), cfg)
        await gw.start()
        try:
            await until(lambda: app.closed)
        finally:
            await gw.stop()
            srv.close()
        assert bytes(app.received) == b"ping"

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        asyncio.run(main())
    except OSError as e:  # a kernel without ::1
        pytest.skip(f"IPv6 loopback unavailable: {e}")


def test_refused_connection_is_remote_not_reachable() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        app = ClientApp()
        async with gateway(app, closed_port):
            await until(lambda: app.open_response is not None)
        assert app.open_response is not None
        assert app.open_response.result.general == GeneralResult.BIP_ERROR
        assert app.open_response.result.additional == b"\x07"
        assert app.channel is None

    asyncio.run(main())


def test_connect_timeout_answers_the_open_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def never(*args: object, **kwargs: object) -> object:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        monkeypatch.setattr(loop, "create_connection", never)
        app = ClientApp()
        async with gateway(app, 9, connect_timeout=0.2):
            await until(lambda: app.open_response is not None, timeout=3)
        assert app.open_response is not None
        assert app.open_response.result.additional == b"\x07"

    asyncio.run(main())


def test_server_close_delivers_its_last_bytes_then_link_dropped() -> None:
    async def greet_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello, and goodbye\r\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        app = ClientApp()
        async with server(greet_and_close) as port, gateway(app, port):
            await until(lambda: app.dropped is not None)
            await until(lambda: app.channel is None)  # the app closed the channel
        assert bytes(app.received) == b"220 hello, and goodbye\r\n"
        assert app.dropped == 0x05

    asyncio.run(main())


def test_bulk_download_is_flow_controlled() -> None:
    blob = bytes(i * 7 % 251 for i in range(40_000))

    async def send_blob(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(blob)
        await writer.drain()
        await reader.read()  # until the card closes
        writer.close()

    async def main() -> None:
        app = ClientApp(buffer_size=1024, expect=len(blob))
        async with server(send_blob) as port, gateway(app, port) as gw:
            await until(lambda: app.closed, timeout=20)
            await until(lambda: app.channel is None)
            assert gw.engine.channels.channels == {}  # CLOSE CHANNEL freed it
        assert bytes(app.received) == blob

    asyncio.run(main())


def test_server_mode_and_client_mode_share_the_gateway() -> None:
    """An SMS triggers the client channel while the card also serves HTTP on 3516."""
    from openscws.config import CardSettings
    from openscws.scws.card import build_card
    from openscws.scws.model import MemoryStore, Resource

    async def main() -> None:
        store = MemoryStore()
        store.put(Resource("/index.html", b"<p>hi</p>", "text/html", last_modified=1))
        card = build_card(store, CardSettings(ports=(3516,)), "8988211000000000003")
        app = ClientApp(send=b"admin hello", expect=11, open_on_profile=False, por=b"\x01\x02")
        card.toolkit.register(app)
        async with server(echo) as port:
            cfg = GatewayConfig(
                port_map={3516: 0}, connect_map={("192.0.2.1", 7): ("127.0.0.1", port)}
            )
            gw = Gateway(InProcessLink(card), TerminalEngine(), cfg)
            await gw.start()
            try:
                await gw.wait_listening()
                tpdu = bytes.fromhex("440581214305 7FF6 52112201000000 05 027000AABB")
                result = await asyncio.wait_for(gw.deliver_sms(tpdu), 5)
                assert result.data == b"\x01\x02"
                reader, writer = await asyncio.open_connection("127.0.0.1", gw.local_port(3516))
                writer.write(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"<p>hi</p>"), 5)
                assert head.startswith(b"HTTP/1.1 200")
                writer.close()
                await until(lambda: app.closed)
            finally:
                await gw.stop()
        assert bytes(app.received) == b"admin hello"

    asyncio.run(main())
