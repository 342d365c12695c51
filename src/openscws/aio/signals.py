"""The servers' foreground wait: until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["wait_for_stop_signal"]


async def wait_for_stop_signal() -> None:
    """Returns when the process gets SIGINT (Ctrl-C) or SIGTERM; the caller then stops its
    servers in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
