"""The gateway drives an in-process card from socket callbacks when its pump is idle: requests
are served there, and an error there ends the pump as it would have in the pump task."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.config import CardSettings
from openscws.scws.card import build_card
from openscws.scws.model import MemoryStore, Resource
from openscws.terminal.engine import TerminalEngine

PAGE = b"<p>hello</p>" * 100


async def _gateway() -> tuple[Gateway, int]:
    store = MemoryStore()
    store.put(Resource("/index.html", PAGE, "text/html", last_modified=1))
    card = build_card(store, CardSettings(ports=(3516,)), "8988211000000000003")
    gw = Gateway(InProcessLink(card), TerminalEngine(), GatewayConfig(port_map={3516: 0}))
    await gw.start()
    await gw.wait_listening()
    return gw, gw.local_port(3516)


async def _get(
    port: int, reader_writer: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> bytes:
    reader, writer = reader_writer
    writer.write(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def test_keep_alive_requests_served_from_callbacks() -> None:
    async def main() -> None:
        gw, port = await _gateway()
        try:
            conn = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):
                response = await asyncio.wait_for(_get(port, conn), 5)
                assert response.startswith(b"HTTP/1.1 200")
                assert response.endswith(PAGE)
            before = gw.apdu_count
            response = await asyncio.wait_for(_get(port, conn), 5)
            assert response.endswith(PAGE)
            assert gw.apdu_count - before == 15  # ENVELOPE, RECEIVE DATA, six SEND DATA
            conn[1].close()
        finally:
            await gw.stop()

    asyncio.run(main())


def test_error_in_a_callback_ends_the_pump() -> None:
    async def main() -> None:
        gw, port = await _gateway()
        try:
            conn = await asyncio.open_connection("127.0.0.1", port)
            assert (await asyncio.wait_for(_get(port, conn), 5)).endswith(PAGE)
            await asyncio.sleep(0.05)  # the pump is idle again

            def broken(apdu: bytes) -> bytes:
                raise ValueError("card fault")

            gw.link.transmit_now = broken  # type: ignore[method-assign]
            conn[1].write(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            with pytest.raises(ValueError, match="card fault"):
                await asyncio.wait_for(gw.wait(), 5)
            conn[1].close()
        finally:
            with contextlib.suppress(ValueError):  # stop() awaits the ended pump
                await gw.stop()

    asyncio.run(main())


def test_port_in_use_is_reported_to_the_card_and_the_operator() -> None:
    """The gateway binds when the engine asks it to listen (a `Listen` action), before the
    OPEN CHANNEL is answered: a port in use is 3A 10 to the card and a GatewayError here."""
    from openscws.aio.gateway import GatewayError

    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            store = MemoryStore()
            card = build_card(store, CardSettings(ports=(3516,)), "8988211000000000001")
            gw = Gateway(
                InProcessLink(card), TerminalEngine(), GatewayConfig(port_map={3516: port})
            )
            await gw.start()
            try:
                with pytest.raises(GatewayError, match=f"cannot listen on 127.0.0.1:{port}"):
                    await gw.wait_listening(5)
                assert gw.engine.channels.channels == {}
            finally:
                await gw.stop()

    asyncio.run(main())
