"""The HTTP/1.1 connection: methods, persistence, pipelining, chunking, limits, caching."""

from __future__ import annotations

import pytest
from httpwire import (
    INDEX,
    LAST_MODIFIED_DATE,
    NOW,
    NOW_DATE,
    TEST_LIMITS,
    exchange,
    get,
    make_conn,
    make_site,
    parse_responses,
    post,
)

from openscws.errors import HttpError, StoreError
from openscws.http import CardLimits, HttpServerConnection, RamBudget, split_target
from openscws.scws.apps import AppContext, Request, Response
from openscws.scws.model import MemoryStore, Resource
from openscws.scws.site import Site

# -- GET / HEAD and the static resources --------------------------------------------------------


def test_get_root_serves_index(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/"), ["GET"])
    assert r.status == 200
    assert r.body == INDEX
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert r.header("content-length") == str(len(INDEX))
    assert r.header("etag") is not None
    assert r.header("etag").startswith('"')
    assert r.header("last-modified") == LAST_MODIFIED_DATE
    assert r.header("date") == NOW_DATE
    assert r.header("server") == "openscws-SCWS"
    assert not conn.should_close


def test_directory_index_and_plain_resource(conn: HttpServerConnection) -> None:
    docs, css = exchange(conn, get("/docs/") + get("/style.css"), ["GET", "GET"])
    assert (docs.status, docs.body) == (200, b"<p>docs</p>")
    assert (css.status, css.header("content-type"), css.body) == (200, "text/css", b"body{}")
    assert css.header("last-modified") is None  # last_modified 0: unknown


def test_head_has_get_headers_without_body(conn: HttpServerConnection) -> None:
    g, h = exchange(conn, get("/index.html") + get("/index.html", method="HEAD"), ["GET", "HEAD"])
    assert h.status == 200
    assert h.body == b""
    assert dict(h.headers) | {"date": ""} == dict(g.headers) | {"date": ""}
    assert h.header("content-length") == str(len(INDEX))


def test_date_follows_now(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/"), ["GET"], now=NOW + 86400)
    assert r.header("date") == "Wed, 15 Nov 2023 22:13:20 GMT"


def test_unknown_path_is_404_and_keeps_alive(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/nope") + get("/"), ["GET", "GET"])
    assert a.status == 404
    assert b.status == 200
    assert not conn.should_close


def test_percent_encoding_and_dot_segments(conn: HttpServerConnection) -> None:
    a, b, c = exchange(
        conn,
        get("/%69ndex.html") + get("/docs/../index.html") + get("/./docs/./"),
        ["GET"] * 3,
    )
    assert a.body == INDEX
    assert b.body == INDEX
    assert c.body == b"<p>docs</p>"


def test_absolute_form_target(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("http://card/index.html?x=1"), ["GET"])
    assert r.body == INDEX


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/a/b?c=d", ("/a/b", "c=d")),
        ("*", ("*", "")),
        ("http://host", ("/", "")),
        ("HTTP://host?q", ("/", "q")),
        ("https://host/x/../y", ("/y", "")),
        ("/a/./b/../c/.", ("/a/c/", "")),
        ("/%E2%82%AC", ("/\u20ac", "")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", ["host:443", "/%FF", "/%00", "mailto:x"])
def test_split_target_rejects(target: str) -> None:
    with pytest.raises(HttpError) as info:
        split_target(target)
    assert info.value.status == 400


# -- methods ------------------------------------------------------------------------------------


def test_post_to_static_is_405_with_allow(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, post("/index.html", b"abc") + get("/"), ["POST", "GET"])
    assert a.status == 405
    assert a.header("allow") == "GET, HEAD, OPTIONS"
    assert b.status == 200  # the body was skipped, the connection kept
    assert not conn.should_close


@pytest.mark.parametrize("method", ["PUT", "DELETE", "TRACE"])
def test_known_methods_not_allowed_on_static(conn: HttpServerConnection, method: str) -> None:
    (r,) = exchange(conn, get("/index.html", "Content-Length: 0", method=method), [method])
    assert r.status == 405
    assert r.header("allow") == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("method", ["BREW", "PATCH", "PROPFIND", "CONNECT"])
def test_unknown_methods_are_501(conn: HttpServerConnection, method: str) -> None:
    a, b = exchange(conn, get("/index.html", method=method) + get("/"), [method, "GET"])
    assert a.status == 501
    assert b.status == 200


def test_options(conn: HttpServerConnection) -> None:
    star, static, app = exchange(
        conn,
        get("*", method="OPTIONS")
        + get("/index.html", method="OPTIONS")
        + get("/echo", method="OPTIONS"),
        ["OPTIONS"] * 3,
    )
    assert star.status == 200
    assert star.header("allow") == "GET, HEAD, POST, OPTIONS"
    assert star.header("content-length") == "0"
    assert static.header("allow") == "GET, HEAD, OPTIONS"
    assert app.header("allow") == "GET, HEAD, POST, PUT, OPTIONS"


def test_asterisk_only_for_options(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("*"), ["GET"])
    assert r.status == 400


def test_app_method_not_allowed(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/cardinfo", method="DELETE"), ["DELETE"])
    assert r.status == 405
    assert r.header("allow") == "GET, HEAD, POST, OPTIONS"


def test_post_to_app_echoes_body(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, post("/echo/x?a=1", b"hello card"), ["POST"])
    assert (r.status, r.body, r.header("x-query")) == (200, b"hello card", "a=1")


# -- persistence ----------------------------------------------------------------------------------


def test_keep_alive_by_default_sequential(conn: HttpServerConnection) -> None:
    for _ in range(3):
        (r,) = exchange(conn, get("/"), ["GET"])
        assert r.status == 200
        assert r.header("connection") is None
    assert not conn.should_close


def test_connection_close(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/", "Connection: close"), ["GET"])
    assert r.status == 200
    assert r.header("connection") == "close"
    assert conn.should_close
    conn.receive_data(get("/"), NOW)  # ignored once closing
    assert conn.data_to_send() == b""


def test_http10_closes_by_default(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/", version="1.0"), ["GET"])
    assert r.status == 200
    assert r.header("connection") == "close"
    assert conn.should_close


def test_http10_keep_alive(conn: HttpServerConnection) -> None:
    req = get("/", "Connection: keep-alive", version="1.0")
    a, b, c = exchange(conn, req + req + get("/style.css", version="1.0"), ["GET"] * 3)
    assert a.header("connection") == "keep-alive"
    assert a.body == INDEX
    assert b.header("connection") == "keep-alive"
    assert b.body == INDEX
    assert c.header("connection") == "close"
    assert c.body == b"body{}"
    assert conn.should_close


def test_http10_keep_alive_survives_byte_at_a_time(conn: HttpServerConnection) -> None:
    req = get("/", "Connection: keep-alive", version="1.0")
    rs = exchange(conn, req + req, ["GET", "GET"], split=1)
    assert [r.header("connection") for r in rs] == ["keep-alive", "keep-alive"]
    assert not conn.should_close


def test_http10_keep_alive_streamed_response_closes(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo/stream", "Connection: keep-alive", version="1.0"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"], eof=True)
    assert r.header("transfer-encoding") is None
    assert r.header("connection") == "close"
    assert r.body == b"".join(f"chunk {i}\n".encode() for i in range(5))
    assert conn.should_close


# -- pipelining -------------------------------------------------------------------------------

PIPELINE = get("/") + post("/echo", b"one") + get("/style.css", method="HEAD") + get("/nope")
PIPELINE_METHODS = ["GET", "POST", "HEAD", "GET"]


def _check_pipeline(rs: list[object]) -> None:
    statuses = [r.status for r in rs]  # type: ignore[attr-defined]
    bodies = [r.body for r in rs]  # type: ignore[attr-defined]
    assert statuses == [200, 200, 200, 404]
    assert bodies[:3] == [INDEX, b"one", b""]


@pytest.mark.parametrize("split", [None, 1, 2, 7, 255])
def test_pipelined_requests_answered_in_order(
    conn: HttpServerConnection, split: int | None
) -> None:
    _check_pipeline(exchange(conn, PIPELINE, PIPELINE_METHODS, split=split))  # type: ignore[arg-type]
    assert not conn.should_close


def test_pipeline_with_trailer_keeps_partial_request(conn: HttpServerConnection) -> None:
    trailer = get("/style.css")
    conn.receive_data(PIPELINE + trailer[:10], NOW)
    _check_pipeline(parse_responses(conn.data_to_send(), PIPELINE_METHODS))  # type: ignore[arg-type]
    conn.receive_data(trailer[10:], NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.body == b"body{}"


def test_pipeline_stops_at_close(conn: HttpServerConnection) -> None:
    data = get("/", "Connection: close") + get("/style.css")
    (r,) = exchange(conn, data, ["GET"])
    assert r.body == INDEX
    assert conn.should_close


def test_pipeline_behind_streamed_response(conn: HttpServerConnection) -> None:
    data = get("/echo/stream") + get("/") + get("/echo/stream")
    rs = exchange(conn, data, ["GET"] * 3)
    assert [r.status for r in rs] == [200, 200, 200]
    assert rs[0].body == rs[2].body
    assert rs[1].body == INDEX


def test_pipeline_flood_behind_stream_closes() -> None:
    conn = make_conn()
    conn.receive_data(get("/echo/stream"), NOW)
    conn.receive_data(get("/") * 40, NOW)  # over max_pipeline_bytes while streaming
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 200
    assert conn.should_close


def test_data_to_send_limit_pulls_stream_lazily(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo/stream") + get("/"), NOW)
    first = conn.data_to_send(limit=16)
    assert first == b"HTTP/1.1 200 OK\r"  # never more than the limit
    assert b"chunk 4" not in first
    rest = b""
    while chunk := conn.data_to_send(limit=1):
        assert len(chunk) == 1
        rest += chunk
    a, b = parse_responses(first + rest, ["GET", "GET"])
    assert b"chunk 4" in a.body
    assert b.body == INDEX


class _BigChunks:
    """GET streams four 1000-byte chunks (a card application's answer)."""

    methods = frozenset({"GET"})

    def handle(self, request: Request, ctx: AppContext) -> Response:
        return Response(200, (), (bytes([65 + i]) * 1000 for i in range(4)))


@pytest.mark.parametrize("limit", [300, 600, 1024])
def test_streamed_chunk_past_the_limit_is_not_held_whole(limit: int) -> None:
    """What of a streamed chunk is past `limit` waits for the next call as its own bytes:
    between calls the connection holds only what it still has to send, not the whole
    chunk (card RAM per channel); the body comes out whole and in order."""
    site = make_site()
    site.register_app("/big", _BigChunks())
    conn = make_conn(site, limits=CardLimits())
    conn.receive_data(get("/big/"), NOW)
    raw = b""
    while chunk := conn.data_to_send(limit):
        assert len(chunk) <= limit
        raw += chunk
        pending = sum(map(len, conn._out))
        held = sum(len(p.obj) if isinstance(p, memoryview) else len(p) for p in conn._out)
        assert held == pending
    (r,) = parse_responses(raw, ["GET"])
    assert r.body == b"A" * 1000 + b"B" * 1000 + b"C" * 1000 + b"D" * 1000


# -- chunked --------------------------------------------------------------------------------


CHUNKED_POST = (
    b"POST /echo HTTP/1.1\r\nHost: card\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n4\r\ncard\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize("split", [None, 1, 3])
def test_chunked_request_body(conn: HttpServerConnection, split: int | None) -> None:
    a, b = exchange(conn, CHUNKED_POST + get("/"), ["POST", "GET"], split=split)
    assert (a.status, a.body) == (200, b"hello card")
    assert b.status == 200


def test_chunked_response_to_http11(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo/stream"), NOW)
    raw = conn.data_to_send()
    assert b"Transfer-Encoding: chunked" in raw
    assert raw.endswith(b"0\r\n\r\n")
    (r,) = parse_responses(raw, ["GET"])
    assert r.body == b"".join(f"chunk {i}\n".encode() for i in range(5))
    assert not conn.should_close


def test_stream_to_http10_is_close_delimited(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo/stream", version="1.0"), NOW)
    raw = conn.data_to_send()
    assert b"chunked" not in raw.lower()
    assert b"content-length" not in raw.lower()
    (r,) = parse_responses(raw, ["GET"], eof=True)
    assert r.body.startswith(b"chunk 0\n")
    assert conn.should_close


def test_head_of_stream_has_no_body(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/echo/stream", method="HEAD") + get("/"), ["HEAD", "GET"])
    assert a.header("transfer-encoding") == "chunked"
    assert a.body == b""
    assert b.body == INDEX


# -- errors and limits ------------------------------------------------------------------------


def test_post_without_length_is_411(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/echo", method="POST"), ["POST"])
    assert r.status == 411
    assert conn.should_close


def test_content_length_over_max_body_is_413_before_reading() -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    conn = make_conn(budget=budget)
    conn.receive_data(get("/echo", "Content-Length: 5000", method="POST"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 413
    assert r.header("connection") == "close"
    assert conn.should_close
    assert budget.used == 0


def test_chunked_over_max_body_is_413() -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    conn = make_conn(budget=budget)
    head = b"POST /echo HTTP/1.1\r\nHost: card\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"200\r\n" + b"x" * 0x200 + b"\r\n"
    conn.receive_data(head + chunk + chunk + chunk, NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 413
    assert conn.should_close
    assert budget.used == 0


def test_long_target_is_414(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/" + "a" * 300) + get("/"), ["GET", "GET"])
    assert a.status == 414
    assert b.status == 200


def test_huge_head_is_431(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/", "X-Big: " + "b" * 2000), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 431
    assert conn.should_close


def test_unterminated_huge_head_is_431(conn: HttpServerConnection) -> None:
    conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"y" * 1500, NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 431
    assert conn.should_close


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_is_400(conn: HttpServerConnection, raw: bytes) -> None:
    conn.receive_data(raw + get("/"), NOW)
    responses = parse_responses(conn.data_to_send(), ["GET"])
    assert responses[0].status == 400
    assert conn.should_close or responses[0].header("connection") is None


def test_framing_error_closes(conn: HttpServerConnection) -> None:
    conn.receive_data(b"GARBAGE\r\n\r\n" + get("/"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 400
    assert r.header("connection") == "close"
    assert conn.should_close


def test_unsupported_transfer_coding_is_501(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo", "Transfer-Encoding: gzip", method="POST"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 501
    assert conn.should_close


def test_budget_exhausted_is_503_with_retry_after() -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    assert budget.reserve(TEST_LIMITS.ram_budget - 10)  # other connections hold the RAM
    conn = make_conn(budget=budget)
    conn.receive_data(post("/echo", b"x" * 100), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 503
    assert r.header("retry-after") == "5"
    assert conn.should_close
    assert budget.used == TEST_LIMITS.ram_budget - 10


def test_budget_exhausted_while_chunked_is_503() -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    assert budget.reserve(TEST_LIMITS.ram_budget - 8)
    conn = make_conn(budget=budget)
    conn.receive_data(CHUNKED_POST, NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 503
    assert r.header("retry-after") == "5"
    assert budget.used == TEST_LIMITS.ram_budget - 8


def test_budget_is_shared_and_released() -> None:
    site = make_site()
    budget = RamBudget(TEST_LIMITS.ram_budget)
    a = make_conn(site, budget=budget)
    b = make_conn(site, budget=budget)
    head = get("/echo", "Content-Length: 1000", method="POST")
    a.receive_data(head + b"x" * 10, NOW)
    b.receive_data(head, NOW)
    assert budget.used == 2000
    a.receive_data(b"x" * 990, NOW)
    (r,) = parse_responses(a.data_to_send(), ["POST"])
    assert r.status == 200
    assert len(r.body) == 1000
    assert budget.used == 1000
    b.close()  # the channel dropped mid-body
    assert budget.used == 0


def test_early_error_skips_body_and_keeps_alive(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, post("/missing", b"z" * 500) + get("/"), ["POST", "GET"], split=64)
    assert (a.status, b.status) == (404, 200)
    assert not conn.should_close


def test_expect_100_continue(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo", "Content-Length: 4", "Expect: 100-continue", method="POST"), NOW)
    assert conn.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.receive_data(b"body", NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.body == b"body"


def test_expect_100_continue_rejected_closes(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/nope", "Content-Length: 4", "Expect: 100-continue", method="POST"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 404
    assert r.interim == []
    assert conn.should_close


# -- applications failing --------------------------------------------------------------------


def test_app_exception_is_500(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/echo/boom") + get("/"), ["GET", "GET"])
    assert a.status == 500
    assert b.status == 200


def test_app_http_error(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/echo/teapot"), ["GET"])
    assert r.status == 418
    assert b"short and stout" in r.body


def test_app_bad_header_is_500(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/echo/badheader"), ["GET"])
    assert r.status == 500
    assert r.header("injected") is None


def test_stream_failure_aborts_connection(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/echo/badstream") + get("/"), NOW)
    raw = conn.data_to_send()
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert not raw.endswith(b"0\r\n\r\n")
    assert conn.should_close


# -- conditional requests ------------------------------------------------------------------


def _etag(conn: HttpServerConnection) -> str:
    (r,) = exchange(conn, get("/"), ["GET"])
    etag = r.header("etag")
    assert etag is not None
    return etag


def test_if_none_match_304(conn: HttpServerConnection) -> None:
    etag = _etag(conn)
    (r,) = exchange(conn, get("/", f"If-None-Match: {etag}"), ["GET"])
    assert r.status == 304
    assert r.body == b""
    assert r.header("etag") == etag
    assert r.header("last-modified") == LAST_MODIFIED_DATE
    assert r.header("content-length") is None
    assert r.header("date") == NOW_DATE


@pytest.mark.parametrize(
    "value",
    ["*", "W/{etag}", '"other", {etag}', '"a",W/"b" ,  {etag} '],
)
def test_if_none_match_forms(conn: HttpServerConnection, value: str) -> None:
    etag = _etag(conn)
    header = f"If-None-Match: {value.format(etag=etag)}"
    get_r, head_r = exchange(
        conn, get("/", header) + get("/", header, method="HEAD"), ["GET", "HEAD"]
    )
    assert get_r.status == 304
    assert head_r.status == 304


def test_if_none_match_mismatch_is_200(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/", 'If-None-Match: "nope", W/"nope2"'), ["GET"])
    assert r.status == 200
    assert r.body == INDEX


def test_if_modified_since(conn: HttpServerConnection) -> None:
    same, later, earlier, bogus = exchange(
        conn,
        get("/", f"If-Modified-Since: {LAST_MODIFIED_DATE}")
        + get("/", "If-Modified-Since: Sun, 13 Sep 2020 12:26:41 GMT")
        + get("/", "If-Modified-Since: Sun, 13 Sep 2020 12:26:39 GMT")
        + get("/", "If-Modified-Since: yesterday"),
        ["GET"] * 4,
    )
    assert (same.status, later.status, earlier.status, bogus.status) == (304, 304, 200, 200)
    assert same.header("etag") is not None


def test_if_none_match_beats_if_modified_since(conn: HttpServerConnection) -> None:
    (r,) = exchange(
        conn, get("/", 'If-None-Match: "other"', f"If-Modified-Since: {NOW_DATE}"), ["GET"]
    )
    assert r.status == 200


def test_if_modified_since_ignored_without_last_modified(conn: HttpServerConnection) -> None:
    (r,) = exchange(conn, get("/style.css", f"If-Modified-Since: {NOW_DATE}"), ["GET"])
    assert r.status == 200


# -- EOF and timers -------------------------------------------------------------------------


def test_eof_when_idle_closes(conn: HttpServerConnection) -> None:
    conn.receive_data(b"", NOW)
    assert conn.should_close
    assert conn.data_to_send() == b""


def test_eof_after_request_answers_then_closes(conn: HttpServerConnection) -> None:
    conn.receive_data(get("/") + get("/style.css"), NOW)
    conn.receive_data(b"", NOW)
    a, b = parse_responses(conn.data_to_send(), ["GET", "GET"])
    assert a.status == b.status == 200
    assert conn.should_close


def test_eof_mid_request(conn: HttpServerConnection) -> None:
    conn.receive_data(b"GET / HTTP/1.1\r\nHost", NOW)
    conn.receive_data(b"", NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 400
    assert conn.should_close


def test_idle_timeout_closes_silently(conn: HttpServerConnection) -> None:
    assert conn.get_timer() == NOW + TEST_LIMITS.idle_timeout
    exchange(conn, get("/"), ["GET"], now=NOW + 5)
    assert conn.get_timer() == NOW + 5 + TEST_LIMITS.idle_timeout
    conn.handle_timer(NOW + 6)
    assert not conn.should_close
    conn.handle_timer(NOW + 5 + TEST_LIMITS.idle_timeout)
    assert conn.should_close
    assert conn.data_to_send() == b""
    assert conn.get_timer() is None


def test_stalled_request_gets_408() -> None:
    budget = RamBudget(TEST_LIMITS.ram_budget)
    conn = make_conn(budget=budget)
    conn.receive_data(get("/echo", "Content-Length: 10", method="POST") + b"abc", NOW)
    assert budget.used == 10
    assert conn.get_timer() == NOW + TEST_LIMITS.request_timeout
    conn.handle_timer(NOW + TEST_LIMITS.request_timeout)
    (r,) = parse_responses(conn.data_to_send(), ["POST"])
    assert r.status == 408
    assert conn.should_close
    assert budget.used == 0


def test_no_timer_without_now() -> None:
    conn = HttpServerConnection(make_site(), CardLimits(), RamBudget(1024))
    assert conn.get_timer() is None
    conn.handle_timer(NOW)
    assert not conn.should_close


def test_idle_between_requests(conn: HttpServerConnection) -> None:
    assert conn.idle
    conn.receive_data(get("/")[:10], NOW)
    assert not conn.idle
    conn.receive_data(get("/")[10:], NOW)
    assert not conn.idle  # the answer is not sent yet
    conn.data_to_send()
    assert conn.idle


@pytest.mark.parametrize("limit", [1, 240, 1000, 8192])
def test_data_to_send_limit_bounds_stored_bodies(conn: HttpServerConnection, limit: int) -> None:
    """A stored body comes out in `limit`-sized pieces, so the channel queue and the TLS layer
    never hold more than about `limit` of a response (card RAM)."""
    conn.receive_data(get("/") + get("/"), NOW)
    pieces = []
    while chunk := conn.data_to_send(limit=limit):
        assert len(chunk) <= limit
        pieces.append(chunk)
    a, b = parse_responses(b"".join(pieces), ["GET", "GET"])
    assert a.body == b.body == INDEX


# -- paths no card resource can have -------------------------------------------------------------

BAD_PATHS = ["//", "/%23", "/a//b", "/a%5Cb", "/a\\b", "/a%01b", "/a%7Fb", "/%3F", "/" + "x" * 1500]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_invalid_path_is_400_and_keeps_alive(path: str) -> None:
    conn = make_conn(limits=CardLimits())  # a target of 1,500 bytes is within its bounds
    a, b = exchange(conn, get(path) + get("/"), ["GET", "GET"])
    assert a.status == 400
    assert b.status == 200
    assert not conn.should_close


@pytest.mark.parametrize("path", ["/", "/docs/", "/a/../index.html", "/" + "x" * 1000])
def test_valid_paths_pass_the_path_check(path: str) -> None:
    assert split_target(path)[0].startswith("/")


class _FailingStore(MemoryStore):
    """A store whose reads fail as a card image does on a path it refuses or a corrupt file."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get(self, path: str) -> Resource | None:
        raise self.error


@pytest.mark.parametrize("error", [StoreError("resource path is not normalised"), KeyError("x")])
def test_store_failure_is_500_not_an_exception(error: Exception) -> None:
    conn = make_conn(Site(_FailingStore(error)))
    a, b = exchange(conn, get("/index.html") + get("/"), ["GET", "GET"])
    assert (a.status, b.status) == (500, 500)


# -- the card wants its channel back -------------------------------------------------------------


def test_close_after_response_says_connection_close() -> None:
    conn = make_conn()
    conn.close_after_response()  # between requests: the next response is the last
    assert not conn.should_close
    conn.receive_data(get("/"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 200
    assert r.header("connection") == "close"
    assert conn.should_close


def test_close_after_a_queued_response_rewrites_its_head() -> None:
    conn = make_conn()
    conn.receive_data(get("/"), NOW)  # answered at once, not sent yet
    conn.close_after_response()
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.header("connection") == "close"
    assert conn.should_close


def test_close_after_response_during_a_request() -> None:
    conn = make_conn()
    conn.receive_data(get("/")[:10], NOW)
    conn.close_after_response()
    conn.receive_data(get("/")[10:] + get("/style.css"), NOW)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])  # the pipelined one is not answered
    assert r.header("connection") == "close"
    assert conn.should_close


def test_request_deadline_is_total_not_per_byte() -> None:
    """A client sending a byte a second gets its 408 `request_timeout` after its first byte."""
    conn = make_conn()
    request = get("/")
    for i in range(int(TEST_LIMITS.request_timeout)):
        conn.receive_data(request[i : i + 1], NOW + i)
        assert conn.get_timer() == NOW + TEST_LIMITS.request_timeout
    conn.handle_timer(NOW + TEST_LIMITS.request_timeout)
    (r,) = parse_responses(conn.data_to_send(), ["GET"])
    assert r.status == 408
    assert conn.should_close


def test_no_request_timer_while_the_response_is_sent() -> None:
    conn = make_conn()
    conn.receive_data(get("/"), NOW)
    assert conn.get_timer() is None  # answered, not sent: the client is not late
    conn.data_to_send()
    assert conn.get_timer() == NOW + TEST_LIMITS.idle_timeout


def test_pipelined_requests_wait_for_the_output_to_drain() -> None:
    """A client that pipelines and does not read: answers are made only as they are sent,
    and the connection asks for no more input meanwhile."""
    limits = CardLimits()
    site = make_site()
    site.store.put(Resource("/big.bin", b"b" * 40_000, "application/octet-stream"))
    conn = make_conn(site, limits=limits)
    conn.receive_data(get("/big.bin") * 50, NOW)
    assert not conn.wants_input
    out = conn._out_size()
    assert out < 3 * 40_000  # not 50 answers
    total = b""
    while chunk := conn.data_to_send(8192):
        total += chunk
    assert total.count(b"HTTP/1.1 200 OK") == 50
    assert conn.wants_input


def test_http10_keep_alive_request_deadline_starts_with_each_request() -> None:
    conn = make_conn()
    conn.receive_data(get("/", "Connection: keep-alive", version="1.0"), NOW)
    conn.data_to_send()
    later = NOW + 3 * TEST_LIMITS.request_timeout
    conn.receive_data(b"GET / HTTP/1.0\r\n", later)
    assert conn.get_timer() == later + TEST_LIMITS.request_timeout
