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

from openscws.aio.direct import StreamProtocol
from openscws.config import CardSettings
from openscws.http.connection import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.card import build_site
from openscws.store.cardimage import CardImage


async def serve(data_dir: Path, host: str, port: int) -> None:
    image = CardImage.open(data_dir)
    settings = CardSettings(data_dir=data_dir)
    site = build_site(image, image.meta.iccid)
    budget = RamBudget.for_limits(settings.limits)
    loop = asyncio.get_running_loop()

    def connection() -> StreamProtocol:
        return StreamProtocol(HttpServerConnection(site, settings.limits, budget, now=time.time()))

    server = await loop.create_server(connection, host, port, backlog=128)
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
