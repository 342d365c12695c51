"""Garbage in gives HTTP error responses, never an exception (h11 fuzz/afl-server.py)."""

from __future__ import annotations

import h11
from httpwire import NOW, TEST_LIMITS, get, make_conn, make_site, post
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.http import RamBudget

SITE = make_site()

FRAGMENTS = [
    get("/"),
    get("/", "Connection: close"),
    get("/echo/stream"),
    get("/index.html", method="HEAD"),
    get("/dir/index.html"),
    post("/echo", b"abc"),
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\n",
    b"Content-Length: 5\r\n",
    b"GET /%zz HTTP/1.1\r\n",
    b"\x00\xff",
]


def _check_output(raw: bytes) -> None:
    """The output is a sequence of complete HTTP/1.1 responses, or empty."""
    rest = raw
    while rest:
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
        client.send(h11.EndOfMessage())
        client.receive_data(rest)
        client.receive_data(b"")  # the server may close after its last response
        while True:
            event = client.next_event()
            assert event is not h11.NEED_DATA
            if isinstance(event, h11.Response):
                assert 200 <= event.status_code < 600
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        rest = client.trailing_data[0]
        if isinstance(event, h11.ConnectionClosed):
            break


def _run(pieces: list[bytes], eof: bool) -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    conn = make_conn(SITE, budget=budget)
    out = b""
    for i, piece in enumerate(pieces):
        conn.receive_data(piece, NOW + i)
        out += conn.data_to_send()
    if eof:
        conn.receive_data(b"", NOW + len(pieces))
    conn.handle_timer(NOW + 1000)
    out += conn.data_to_send()
    conn.close()
    assert budget.used == 0
    # Responses to HEAD have no body, so only parse when no HEAD was involved.
    if b"HEAD" not in b"".join(pieces):
        _check_output(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_random_bytes_never_raise(pieces: list[bytes], eof: bool) -> None:
    _run(pieces, eof)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=16), max_size=8),
    st.data(),
    st.booleans(),
)
def test_random_splits_of_plausible_input(
    parts: list[bytes], data: st.DataObject, eof: bool
) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    _run([p for p in pieces if p], eof)
