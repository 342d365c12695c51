"""Free ports for servers started by tests and benchmarks (openscws.aio.freeport)."""

from __future__ import annotations

import socket

from openscws.aio import freeport
from openscws.aio.freeport import free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_free() -> None:
    low = freeport._ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)  # never the same twice
    for port in ports:
        if low - freeport.LOWEST >= 1000:
            assert freeport.LOWEST <= port < low
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_given() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert not freeport._free("127.0.0.1", busy)
        assert busy not in {free_port() for _ in range(50)}
