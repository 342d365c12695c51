"""The card's HTTP engine with no BIP in between: `HttpServerConnection` + `Site` over a card
image, on a plain asyncio TCP server. The benchmark's "direct engine" path.

    .venv/bin/python benchmarks/direct_server.py --data-dir DIR [--port 0]

Prints "DIRECT ready: http://127.0.0.1:PORT/" once listening; stops on SIGTERM/SIGINT.
The site is built like the card's (`build_site`, same `CardLimits`, one shared `RamBudget`),
so the bytes served are the same as through the gateway; only the APDUs are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from openscws.config import CardSettings
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.card import build_site
from openscws.scws.site import Site
from openscws.store.cardimage import CardImage

_clock = time.time


class DirectConnection(asyncio.Protocol):
    def __init__(self, site: Site, settings: CardSettings, budget: RamBudget) -> None:
        self.http = HttpServerConnection(site, settings.limits, budget, now=_clock())
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._arm()

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data, _clock())
        self._flush()

    def eof_received(self) -> bool | None:
        self.http.receive_data(b"", _clock())
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.http.close()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        out = self.http.data_to_send()
        if out:
            transport.write(out)
        if self.http.should_close:
            transport.close()
        else:
            self._arm()

    def _arm(self) -> None:
        due = self.http.get_timer()
        if due is None:
            return
        if self.timer is not None:
            if self.timer.when() <= due:  # an earlier check re-arms itself
                return
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(max(0.0, due - _clock()), self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.http.handle_timer(_clock())
        self._flush()


async def serve(data_dir: Path, host: str, port: int) -> None:
    image = CardImage.open(data_dir)
    settings = CardSettings(data_dir=data_dir)
    site = build_site(image, image.meta.iccid)
    budget = RamBudget.for_limits(settings.limits)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: DirectConnection(site, settings, budget), host, port, backlog=128
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"DIRECT ready: http://{host}:{bound}/", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The SCWS HTTP engine over plain TCP (no BIP).")
    p.add_argument("--data-dir", type=Path, required=True, help="card image directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    args = p.parse_args(argv)
    asyncio.run(serve(args.data_dir, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
