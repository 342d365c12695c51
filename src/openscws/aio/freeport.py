"""A local port that is free now, for a server the caller starts right after (tests,
benchmarks, the peer programs `dm scr` runs).

The kernel's own pick (bind to port 0) comes from the ephemeral range, the range every
outgoing connection also takes its source port from, so a port picked that way may be taken
by some client's connection before the server binds it. The port given here is drawn at
random below that range (read from /proc/sys/net/ipv4/ip_local_port_range), where only an
explicit bind can take it; it is free for TCP and UDP at the moment of the call, and never
handed out twice by one process."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

__all__ = ["free_port"]

LOWEST: Final = 20000
"""The bottom of the range drawn from (above the registered ports most services use)."""
TRIES: Final = 64
_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")

_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` for TCP and UDP now (see the module's docstring)."""
    top = _ephemeral_low()
    if top - LOWEST >= 1000:
        for _ in range(TRIES):
            port = random.randrange(LOWEST, top)
            if port not in _given and _free(host, port):
                _given.add(port)
                return port
    while True:  # no room below the ephemeral range: the kernel's pick
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
