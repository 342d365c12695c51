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
max_channels = 2
"""


def test_refused_cleanly_when_all_channels_busy(start_up) -> None:  # type: ignore[no-untyped-def]
    sp = start_up(config=BUSY_CONFIG)
    base = sp.base_url
    holders = []
    try:
        # Two clients stuck mid-request hold the card's only two channels (an idle
        # keep-alive connection would be closed by the card to make room).
        for _ in range(2):
            s = connect(base)
            s.sendall(b"GET / HTTP/1.1\r\nHost: card\r\nX-Slow: ")
            holders.append(s)
        time.sleep(0.5)  # let both be bound to channels
        t0 = time.monotonic()
        r = exchange(base, b"GET /style.css HTTP/1.1\r\nHost: card\r\n\r\n", timeout=8)
        waited = time.monotonic() - t0
        assert r.status == 503
        assert r.header("retry-after") is not None
        assert r.header("connection") == "close"
        assert 0.8 <= waited < 5.0, waited
        # The held requests are still alive: finish one and get its page.
        holders[0].sendall(b"1\r\n\r\n")
        done = Reader(holders[0]).response()
        assert done.status == 200
        assert done.body == DEMO["/index.html"]
    finally:
        for s in holders:
            s.close()
    # With the channels free again, the card serves at once.
    r = exchange(base, b"GET /style.css HTTP/1.1\r\nHost: card\r\n\r\n", timeout=8)
    assert r.status == 200
    assert r.body == DEMO["/style.css"]
