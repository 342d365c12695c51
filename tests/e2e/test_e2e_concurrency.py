"""Many clients at once through the gateway's few BIP channels, and a clean refusal when every
channel stays busy."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_wire import Reader, connect, exchange

from openscws.demo import demo_files

pytestmark = pytest.mark.e2e

DEMO = demo_files()
CLIENTS = 50


def test_fifty_concurrent_clients(scws_server: tuple[str, Path, object]) -> None:
    base = scws_server[0]
    start = threading.Barrier(CLIENTS, timeout=30)

    def client(i: int) -> list[tuple[str, int, bytes]]:
        start.wait()
        got = []
        order = ["/img/card.png", "/"] if i % 2 else ["/", "/img/card.png"]
        for path in order:
            with urllib.request.urlopen(base + path, timeout=45) as r:
                got.append((path, r.status, r.read()))
        return got

    t0 = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS), timeout=60))
    elapsed = time.monotonic() - t0
    assert elapsed < 60
    assert len(results) == CLIENTS
    for got in results:
        assert len(got) == 2
        for path, status, body in got:
            want = DEMO["/index.html" if path == "/" else path]
            assert status == 200, path
            assert len(body) == len(want), path
            assert body == want, path


BUSY_CONFIG = """\
[gateway]
busy_timeout = 1.0

[card]
max_channels = 3
"""


def test_refused_cleanly_when_all_channels_busy(start_up) -> None:  # type: ignore[no-untyped-def]
    # Three terminal channels: one stays free for the admin agent, one each for 3516 and 4116.
    sp = start_up(config=BUSY_CONFIG)
    base = sp.base_url
    holders = []
    try:
        # A client still sending its request head holds no channel: a GET is served.
        slow = connect(base)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: card\r\nX-Slow: ")
        holders.append(slow)
        r = exchange(base, b"GET /style.css HTTP/1.1\r\nHost: card\r\n\r\n", timeout=8)
        assert r.status == 200
        # One whose head is in and whose body is still arriving holds 3516's one channel.
        s = connect(base)
        s.sendall(b"POST /app/info HTTP/1.1\r\nHost: card\r\nContent-Length: 4\r\n\r\nab")
        holders.append(s)
        time.sleep(0.5)  # let it be bound
        t0 = time.monotonic()
        r = exchange(base, b"GET /style.css HTTP/1.1\r\nHost: card\r\n\r\n", timeout=8)
        waited = time.monotonic() - t0
        assert r.status == 503
        assert r.header("retry-after") is not None
        assert r.header("connection") == "close"
        assert 0.8 <= waited < 5.0, waited
        # The held request is still alive: finish it and get its answer.
        s.sendall(b"cd")
        done = Reader(s).response()
        assert done.status < 500
        assert done.header("connection") == "close"  # clients waited meanwhile
    finally:
        for h in holders:
            h.close()
    # With the channel free again, the card serves at once.
    r = exchange(base, b"GET /style.css HTTP/1.1\r\nHost: card\r\n\r\n", timeout=8)
    assert r.status == 200
    assert r.body == DEMO["/style.css"]
