"""The gateway under slow, silent and greedy clients, with the card, its image and TLS in this
process over real sockets: slow and silent clients hold no channel while normal requests are
served; a refusal reaches the client (no reset); a client that pipelines and never reads
cannot make the process grow; the accept loop stops at its cap and backs off on errors."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from openscws.aio.freeport import free_port
from openscws.aio.stack import Stack, start_stack, under
from openscws.config import Settings
from openscws.scws.model import Resource

SLOWLORIS_SECONDS = float(os.environ.get("OPENSCWS_SLOWLORIS_SECONDS", "8"))
"""How long the slowloris test runs (the figure to report is from a 30 s run)."""


@asynccontextmanager
async def _stack(tmp: Path, **gateway: object) -> AsyncIterator[Stack]:
    s = under(Settings(), tmp)
    settings = replace(
        s,
        gateway=replace(
            s.gateway, port_map={3516: free_port(), 4116: free_port()}, sms_port=0, **gateway
        ),
    )
    stack = await start_stack(settings, demo=True, admin=False, api=False)
    try:
        yield stack
    finally:
        await stack.stop()


async def _get(port: int, path: str = "/", timeout: float = 10) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: card\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]), data


# -- slowloris ----------------------------------------------------------------------------------


async def _slow_client(port: int, until: float) -> None:
    """Sends a request head a byte a second, never finishing it; reconnects when dropped."""
    loop = asyncio.get_running_loop()
    head = b"GET / HTTP/1.1\r\nHost: card\r\nX-Slow: " + b"a" * 200
    while loop.time() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            for byte in head:
                if loop.time() >= until or reader.at_eof():
                    break
                writer.write(bytes((byte,)))
                await asyncio.sleep(1.0)
        except OSError:
            pass
        finally:
            writer.close()


async def _silent_client(port: int, until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            await asyncio.wait_for(reader.read(), max(0.1, until - loop.time()))
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


def test_slowloris_and_silent_clients_do_not_hold_the_card(tmp_path: Path) -> None:
    """100 clients sending a byte a second and 20 silent ones on 3516, while a normal client
    GETs a page every second: each GET is answered within 2 s."""

    async def main() -> None:
        async with _stack(tmp_path) as stack:
            port = stack.gateway.local_port(3516)
            loop = asyncio.get_running_loop()
            until = loop.time() + SLOWLORIS_SECONDS + 1
            attackers = [asyncio.create_task(_slow_client(port, until)) for _ in range(100)]
            attackers += [asyncio.create_task(_silent_client(port, until)) for _ in range(20)]
            await asyncio.sleep(1.0)  # all of them connected and dribbling
            answered = []
            for _ in range(int(SLOWLORIS_SECONDS)):
                t0 = loop.time()
                status, _ = await _get(port, "/style.css", timeout=5)
                took = loop.time() - t0
                answered.append(status == 200 and took < 2.0)
                await asyncio.sleep(max(0.0, 1.0 - took))
            await asyncio.gather(*attackers)
            assert all(answered), answered

    asyncio.run(main())


# -- a refusal is read, not reset ---------------------------------------------------------------


def test_refused_client_reads_its_503_despite_unread_input(tmp_path: Path) -> None:
    """Every channel of 3516 busy: a queued client that sent its request and more gets the
    whole 503 (the gateway reads and drops its input before closing), not a reset."""

    async def main() -> None:
        async with _stack(tmp_path, busy_timeout=0.5) as stack:
            port = stack.gateway.local_port(3516)
            holders = []
            # Requests whose bodies never come hold every channel 3516 can get.
            for _ in range(6):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /app/info HTTP/1.1\r\nHost: card\r\nContent-Length: 9\r\n\r\n")
                holders.append(writer)
            await asyncio.sleep(0.5)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: card\r\n\r\n" + b"GET / HTTP/1.1\r\n" * 2000)
            data = await asyncio.wait_for(reader.read(), 10)  # raises on a reset
            writer.close()
            assert data.startswith(b"HTTP/1.1 503 ")
            assert b"\r\nRetry-After: " in data
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert len(body) == length
            for w in holders:
                w.close()

    asyncio.run(main())


# -- write backpressure --------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_pipelining_clients_that_never_read_cannot_grow_the_process(tmp_path: Path) -> None:
    """Three clients each pipeline 300 requests for a 64 KB resource, with large heads, and
    never read: the process grows by less than 10 MB (unbounded, it would queue 57 MB)."""

    async def main() -> None:
        async with _stack(tmp_path) as stack:
            stack.image.put(Resource("/big.bin", os.urandom(64 * 1024), "application/octet-stream"))
            port = stack.gateway.local_port(3516)
            status, _ = await _get(port, "/big.bin")  # warm up: caches, buffers
            assert status == 200
            before = _rss()
            request = b"GET /big.bin HTTP/1.1\r\nHost: card\r\nX-Pad: " + b"p" * 1500 + b"\r\n\r\n"
            socks = []
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port))
                # Small socket buffers: the kernel does not absorb the flood either.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                sock.setblocking(False)
                socks.append(sock)
            data = request * 300
            sent = [0, 0, 0]
            deadline = asyncio.get_running_loop().time() + 15
            while asyncio.get_running_loop().time() < deadline:
                for i, sock in enumerate(socks):
                    if sent[i] < len(data):
                        try:
                            sent[i] += sock.send(data[sent[i] : sent[i] + 65536])
                        except BlockingIOError:
                            pass
                await asyncio.sleep(0.01)
            grown = _rss() - before
            for sock in socks:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            await asyncio.sleep(0.5)
            after = _rss() - before
            assert grown < 10 * 1024 * 1024, f"grew {grown / 1e6:.1f} MB"
            assert after < 10 * 1024 * 1024, f"{after / 1e6:.1f} MB after the clients left"
            status, _ = await _get(port, "/style.css")
            assert status == 200

    asyncio.run(main())


# -- the accept loop ---------------------------------------------------------------------------


def test_connection_cap_drops_silent_clients_first(tmp_path: Path) -> None:
    async def main() -> None:
        async with _stack(tmp_path) as stack:
            stack.gateway.config = replace(stack.gateway.config, max_connections=10)
            port = stack.gateway.local_port(3516)
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
            await asyncio.sleep(0.2)
            # At the cap: a client with a request still gets in, the oldest silent one goes.
            status, _ = await _get(port, "/style.css", timeout=5)
            assert status == 200
            first = await asyncio.wait_for(silent[0][0].read(), 5)
            assert first.startswith(b"HTTP/1.1 408 ")
            for _, writer in silent:
                writer.close()

    asyncio.run(main())


class _FailingSocket:
    """A listening socket whose accept() fails with EMFILE `failures` times."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock = sock
        self.failures = failures
        self.calls = 0

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self.sock.accept()

    def __getattr__(self, name: str) -> Callable[..., object]:
        return getattr(self.sock, name)  # type: ignore[no-any-return]


def test_accept_errors_back_off_and_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with _stack(tmp_path) as stack:
            gw = stack.gateway
            failing = _FailingSocket(gw._sockets[3516], failures=5)
            gw._sockets[3516] = failing  # type: ignore[assignment]
            port = gw.local_port(3516)
            t0 = time.monotonic()
            status, _ = await _get(port, "/style.css", timeout=20)
            assert status == 200
            # Backing off (0.1 s, doubling), not retrying in a busy loop.
            assert failing.calls <= 8  # 5 failures, the client, the empty queue
            assert time.monotonic() - t0 > 1.0
            gw._sockets[3516] = failing.sock

    with caplog.at_level(logging.INFO, logger="openscws.aio.gateway"):
        asyncio.run(main())
    storms = [r for r in caplog.records if "cannot accept clients" in r.getMessage()]
    assert len(storms) == 1
    assert any("accepts clients again" in r.getMessage() for r in caplog.records)


# -- as many keep-alive clients as channels --------------------------------------------------


async def _keep_alive_client(port: int, until: float, closes: list[int]) -> int:
    """GETs on one keep-alive connection until `until`, a request every 20 ms; counts the
    answers, and in `closes` those that said `Connection: close` (then reconnects)."""
    loop = asyncio.get_running_loop()
    answered = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while loop.time() < until:
            writer.write(b"GET / HTTP/1.1\r\nHost: card\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200 "), head
            lowered = head.lower()
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), 10)
            answered += 1
            if b"connection: close" in lowered:
                closes.append(1)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.02)
    finally:
        writer.close()
    return answered


def test_clients_that_fit_the_channels_keep_them_until_someone_waits(tmp_path: Path) -> None:
    """Four keep-alive clients on 3516 (its four channels while HTTPS is idle) are never told
    to close: nobody waits. A fifth client waits, is served, and the rotation it caused ends
    with it."""

    async def main() -> None:
        async with _stack(tmp_path) as stack:
            port = stack.gateway.local_port(3516)
            loop = asyncio.get_running_loop()
            closes: list[int] = []
            until = loop.time() + 2.0
            answered = await asyncio.gather(
                *(_keep_alive_client(port, until, closes) for _ in range(4))
            )
            assert min(answered) > 5
            assert closes == []  # no rotation: every channel's client kept it
            # The same four again, and a fifth that has to wait for one of their channels.
            until = loop.time() + 3.0
            four = [
                asyncio.ensure_future(_keep_alive_client(port, until, closes)) for _ in range(4)
            ]
            await asyncio.sleep(0.3)
            status, _ = await _get(port)
            assert status == 200
            await asyncio.gather(*four)
            assert closes  # a channel was taken back for the waiting client

    asyncio.run(main())
