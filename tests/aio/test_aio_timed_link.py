"""`--link iso7816`: a page through the gateway takes the time the ISO/IEC 7816-3 model gives
the APDUs that carried it (within 20 %), on the in-process card made as slow as a UICC."""

from __future__ import annotations

import asyncio
import time

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink, TimedLink
from openscws.apdu.iso7816 import LinkTiming
from openscws.config import CardSettings
from openscws.scws.card import build_card
from openscws.scws.model import MemoryStore, Resource
from openscws.terminal.engine import TerminalEngine

PAGE = (bytes(range(32, 127)) * 108)[: 10 * 1024]


async def get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    return body


def measure(timing: LinkTiming) -> tuple[float, float, int]:
    """(seconds measured for the 10 KB page, the model's seconds for its APDUs, APDUs)."""

    async def main() -> tuple[float, float, int]:
        store = MemoryStore()
        store.put(Resource("/ten.html", PAGE, "text/html", last_modified=1))
        store.put(Resource("/small.html", b"<p>warm</p>", "text/html", last_modified=1))
        card = build_card(store, CardSettings(ports=(3516,)), "8988211000000000003")
        link = TimedLink(InProcessLink(card), timing)
        gw = Gateway(link, TerminalEngine(), GatewayConfig(port_map={3516: 0}))
        await gw.start()
        try:
            await gw.wait_listening()
            port = gw.local_port(3516)
            assert await get(port, "/small.html") == b"<p>warm</p>"
            await asyncio.sleep(0.2)  # the close of the warm-up is over
            apdus, line = link.apdus, link.line_seconds
            started = time.monotonic()
            body = await get(port, "/ten.html")
            measured = time.monotonic() - started
            assert body == PAGE
            return measured, link.line_seconds - line, link.apdus - apdus
        finally:
            await gw.stop()

    return asyncio.run(main())


def test_a_10_kb_page_takes_the_models_time() -> None:
    timing = LinkTiming(fi=512, di=16)  # TA1 = 95 at 3.57 MHz
    measured, model, apdus = measure(timing)
    # The model's figure: at least the page's own bytes at the line's raw rate.
    assert model > len(PAGE) / timing.bytes_per_second
    assert apdus > 2 * len(PAGE) // 240  # a FETCH and a TERMINAL RESPONSE per SEND DATA
    assert 0.8 <= measured / model <= 1.2, (measured, model, apdus)
