"""The push path's small HTTP/1.1 codec (openscws.http.small): message framing, field syntax,
keep-alive, pipelining, the limits, and the typed refusals, for a server and a client end."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.http.small import (
    CLOSED,
    END,
    NEED_DATA,
    PAUSED,
    TRANSITIONS,
    Codec,
    Data,
    Event,
    MessageError,
    RequestHead,
    ResponseHead,
    Role,
    State,
    Step,
)


def events(codec: Codec, *feeds: bytes) -> list[Event]:
    """Every event up to NEED_DATA, PAUSED or CLOSED after the feeds; Data merged."""
    for feed in feeds:
        codec.receive_data(feed)
    out: list[Event] = []
    while True:
        event = codec.next_event()
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
        if event in (NEED_DATA, PAUSED, CLOSED):
            return out


def bytewise(codec: Codec, raw: bytes) -> list[Event]:
    """The events after feeding `raw` one byte at a time (NEED_DATA in between dropped)."""
    out: list[Event] = []
    for i in range(len(raw)):
        for event in events(codec, raw[i : i + 1]):
            if event is NEED_DATA:
                continue
            if isinstance(event, Data) and out and isinstance(out[-1], Data):
                out[-1] = Data(out[-1].data + event.data)
            else:
                out.append(event)
    return out


def state(codec: Codec) -> State:
    """The codec's state, read afresh (mypy would keep an earlier narrowing)."""
    return codec.state


def refusal(codec: Codec, *feeds: bytes) -> int:
    with pytest.raises(MessageError) as caught:
        events(codec, *feeds)
    return caught.value.status


def server(max_body: int = 65536) -> Codec:
    return Codec(Role.SERVER, max_body=max_body)


POST = b"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-In:  two words \r\n\r\nabc"
CHUNKED = (
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;name=value;flag\r\nabc\r\n"
    b"A ; ext\r\n0123456789\r\n"
    b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n"
)


# -- a server end ------------------------------------------------------------------------


def test_a_request_with_content_length() -> None:
    codec = server()
    got = events(codec, POST)
    assert got == [
        RequestHead(
            "POST", "/p?q=1", "1.1", (("host", "a"), ("content-length", "3"), ("x-in", "two words"))
        ),
        Data(b"abc"),
        END,
        PAUSED,
    ]
    assert codec.state is State.DONE
    assert codec.keep_alive
    out = codec.response(201, (("X-Out", "1"),), b"ok")
    assert out == b"HTTP/1.1 201 Created\r\nX-Out: 1\r\nContent-Length: 2\r\n\r\nok"
    assert state(codec) is State.IDLE
    assert events(codec) == [NEED_DATA]


def test_the_same_request_one_byte_at_a_time() -> None:
    assert bytewise(server(), POST) == events(server(), POST)


def test_chunked_with_extensions_and_trailers_one_byte_at_a_time() -> None:
    whole = events(server(), CHUNKED)
    assert whole[1:] == [Data(b"abc0123456789"), END, PAUSED]
    assert bytewise(server(), CHUNKED) == whole


def test_pipelined_requests_are_read_in_order() -> None:
    codec = server()
    second = b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
    got = events(codec, POST + second)
    assert got[-2:] == [END, PAUSED]
    assert codec.buffered == len(second)
    assert events(codec) == [PAUSED]  # nothing more until the first is answered
    codec.response(200)
    head, end, paused = events(codec)
    assert isinstance(head, RequestHead)
    assert head.target == "/two"
    assert (end, paused) == (END, PAUSED)


def test_pipelined_requests_after_connection_close_are_refused() -> None:
    codec = server()
    events(codec, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n")
    out = codec.response(200)
    assert b"\r\nConnection: close\r\n" in out
    assert codec.state is State.CLOSED
    assert events(codec) == [CLOSED]


@pytest.mark.parametrize(
    ("head", "keeps", "says"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True, None),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: te, close\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.0\r\n\r\n", False, b"close"),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True, b"keep-alive"),
    ],
)
def test_keep_alive(head: bytes, keeps: bool, says: bytes | None) -> None:
    codec = server()
    events(codec, head)
    assert codec.keep_alive is keeps
    out = codec.response(200, body=b"x")
    if says is None:
        assert b"Connection:" not in out
    else:
        assert b"\r\nConnection: " + says + b"\r\n" in out
    assert codec.state is (State.IDLE if keeps else State.CLOSED)


def test_the_answer_may_close_a_kept_connection() -> None:
    codec = server()
    events(codec, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    out = codec.response(200, (("Connection", "close"), ("Content-Length", "99")), b"x")
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
    assert codec.state is State.CLOSED


def test_no_body_for_204() -> None:
    codec = server()
    events(codec, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert codec.response(204, (), b"ignored") == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_empty_lines_before_a_request_line_are_ignored() -> None:
    head, *_ = events(server(), b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead)


def test_equal_repeated_content_lengths() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok"
    assert events(server(), raw)[1:] == [Data(b"ok"), END, PAUSED]


def test_a_request_without_framing_has_no_body() -> None:
    got = events(server(), b"POST / HTTP/1.1\r\nHost: a\r\n\r\nGET")
    assert got[1:] == [END, PAUSED]


def test_the_client_leaving_between_requests() -> None:
    codec = server()
    assert events(codec, b"") == [CLOSED]
    assert codec.state is State.CLOSED


def test_a_half_close_after_the_request_still_gets_the_answer() -> None:
    codec = server()
    assert events(codec, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"")[-1] is PAUSED
    codec.response(200)
    assert events(codec) == [CLOSED]


H = b"Host: a\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # whitespace before the colon
        (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\n" + H + b"X: a\nb\r\n\r\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),  # bare CR
        (b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),  # NUL
        (b"GET / HTTP/1.1\r\n" + H + b"X(y): 1\r\n\r\n", 400),  # not a token
        (b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n", 400),  # no name
        (b"GET / HTTP/1.1\r\n" + H + b"no colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),  # bare LF ending the request line
        (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
        (b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
        (b"G\xe9T / HTTP/1.1\r\n" + H + b"\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
        (b"GET / HTTX/1.1\r\n" + H + b"\r\n", 400),
        (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
        (b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 §3.2)
        (b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),  # two
        (
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n", 413),  # over max_body=10
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nb\r\n", 413),
        (
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n3\r\n",
            413,
        ),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n", 400),
        (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nT : x\r\n\r\n", 400),
    ],
)
def test_refusals(raw: bytes, status: int) -> None:
    assert refusal(server(max_body=10), raw) == status


def test_a_body_over_the_cap_is_refused_before_it_is_read() -> None:
    codec = server(max_body=10)
    assert refusal(codec, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n") == 413


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-",
    ],
)
def test_the_client_leaving_inside_a_request(raw: bytes) -> None:
    assert refusal(server(), raw, b"") == 400


def test_the_head_limit() -> None:
    long = b"X-Long: " + b"x" * 16400 + b"\r\n"
    assert refusal(server(), b"GET / HTTP/1.1\r\nHost: a\r\n" + long) == 431  # no end yet
    assert refusal(server(), b"GET / HTTP/1.1\r\nHost: a\r\n" + long + b"\r\n") == 431
    fits = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 16000 + b"\r\n\r\n"
    assert isinstance(events(server(), fits)[0], RequestHead)
    trailers = b"X: " + b"y" * 1000 + b"\r\n"
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + trailers * 17
    assert refusal(server(), raw) == 431


def test_an_error_stays_and_gets_a_closing_answer() -> None:
    codec = server()
    first = refusal(codec, b"BAD\r\n\r\n")
    assert first == refusal(codec) == 400
    assert codec.state is State.ERROR
    out = codec.response(400, (), b"malformed request\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nConnection: close\r\n" in out
    assert state(codec) is State.CLOSED


def test_local_mistakes_are_typed_errors() -> None:
    codec = server()
    with pytest.raises(MessageError) as caught:
        codec.response(200)  # no request read yet
    assert caught.value.status == 500
    events(codec, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    for bad in ((("X", "a\r\nSet-Cookie: b"),), (("X Y", "1"),), (("X", "a\x00"),)):
        with pytest.raises(MessageError):
            codec.response(200, bad)
    with pytest.raises(MessageError):
        codec.request("GET", "/", ())
    with pytest.raises(MessageError):
        codec.start_next_cycle()


# -- a client end ------------------------------------------------------------------------


def client(max_body: int = 65536) -> Codec:
    codec = Codec(Role.CLIENT, max_body=max_body)
    out = codec.request("POST", "/x", (("Host", "a:1"), ("Content-Length", "9")), b"body")
    assert out == b"POST /x HTTP/1.1\r\nHost: a:1\r\nContent-Length: 4\r\n\r\nbody"
    assert codec.state is State.SENT
    return codec


def test_a_response_and_the_next_cycle() -> None:
    codec = client()
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok"
    assert events(codec, raw) == [
        ResponseHead(200, "OK", "1.1", (("content-length", "2"), ("x-a", "b"))),
        Data(b"ok"),
        END,
        PAUSED,
    ]
    assert codec.keep_alive
    codec.start_next_cycle()
    assert codec.state is State.IDLE
    assert bytewise(client(), raw) == events(client(), raw)


def test_a_response_read_to_the_end_of_the_stream() -> None:
    codec = client()
    got = events(codec, b"HTTP/1.1 200 OK\r\n\r\nsome", b" more")
    assert got[1:] == [Data(b"some more"), NEED_DATA]
    assert events(codec, b"") == [END, CLOSED]
    assert not codec.keep_alive


def test_interim_responses_are_skipped() -> None:
    codec = client()
    head, *rest = events(codec, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert isinstance(head, ResponseHead)
    assert head.status == 204
    assert rest == [END, PAUSED]


def test_a_chunked_response_with_trailers() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=1\r\nok\r\n0\r\nT: 1\r\n\r\n"
    assert events(client(), raw)[1:] == [Data(b"ok"), END, PAUSED]


@pytest.mark.parametrize(
    ("raw", "keeps"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", True),  # no reason phrase
    ],
)
def test_client_keep_alive(raw: bytes, keeps: bool) -> None:
    codec = client()
    events(codec, raw)
    assert codec.keep_alive is keeps


def test_a_request_saying_close_ends_the_connection() -> None:
    codec = Codec(Role.CLIENT)
    out = codec.request("POST", "/", (("Host", "a"), ("Connection", "close")), b"")
    assert b"\r\nConnection: close\r\n" in out
    events(codec, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not codec.keep_alive
    with pytest.raises(MessageError):
        codec.start_next_cycle()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"HTTP/1.1 2000 OK\r\n\r\n", 400),
        (b"HTTP/1.1 099 Odd\r\n\r\n", 400),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 400),
        (b"HTTP/3.0 200 OK\r\n\r\n", 505),
        (b"ICY 200 OK\r\n\r\n", 400),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 413),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11, 413),
        (b"HTTP/1.1 200 OK\r\nX: " + b"x" * 17000, 431),
    ],
)
def test_client_refusals(raw: bytes, status: int) -> None:
    assert refusal(client(max_body=10), raw) == status


def test_the_server_closing_before_answering() -> None:
    codec = client()
    assert events(codec, b"") == [CLOSED]
    assert refusal(client(), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", b"") == 400


def test_bytes_nobody_asked_for() -> None:
    codec = Codec(Role.CLIENT)
    assert refusal(codec, b"HTTP/1.1 200 OK\r\n\r\n") == 400


def test_a_kept_connection_closed_by_the_server() -> None:
    codec = client()
    events(codec, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    codec.start_next_cycle()
    assert events(codec, b"") == [CLOSED]


# -- the table ---------------------------------------------------------------------------


def test_the_table_refuses_what_it_does_not_declare() -> None:
    assert (Role.SERVER, State.IDLE, Step.NEXT) not in TRANSITIONS
    codec = server()
    events(codec, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    codec.response(200)
    with pytest.raises(MessageError) as caught:
        codec.start_next_cycle()  # a server's cycle restarts with its answer
    assert caught.value.status == 500
    assert "NEXT not allowed in IDLE" in caught.value.reason


# -- fuzz --------------------------------------------------------------------------------

PIECES = [
    POST,
    CHUNKED,
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"1a;x\r\n",
    b"0\r\n\r\n",
    b"\r\n",
    b"\n",
    b" ",
    b"\x00\xff",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=st.sampled_from(list(Role)),
    parts=st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=64)), max_size=12),
    eof=st.booleans(),
    cap=st.integers(min_value=0, max_value=100),
)
def test_arbitrary_bytes_give_events_or_typed_errors(
    role: Role, parts: list[bytes], eof: bool, cap: int
) -> None:
    codec = Codec(role, max_body=cap, max_head=256)
    if role is Role.CLIENT:
        codec.request("POST", "/", (("Host", "a"),), b"")
    try:
        for part in [*parts, *([b""] if eof else [])]:
            if codec.state is State.CLOSED:
                break
            codec.receive_data(part)
            for _ in range(10_000):
                event = codec.next_event()
                if event is PAUSED and role is Role.SERVER:
                    codec.response(200)
                elif event is PAUSED and codec.keep_alive:
                    codec.start_next_cycle()
                    codec.request("POST", "/", (("Host", "a"),), b"")
                elif event in (NEED_DATA, PAUSED, CLOSED):
                    break
                else:
                    assert isinstance(event, RequestHead | ResponseHead | Data | type(END))
            else:
                pytest.fail("no NEED_DATA after 10,000 events")
    except MessageError as e:
        refused: MessageError | None = e
    else:
        refused = None
    if refused is not None:
        assert 400 <= refused.status < 600
        assert codec.state is State.ERROR


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CHUNKED)), max_size=8))
def test_any_split_gives_the_same_message(cuts: list[int]) -> None:
    raw = POST + CHUNKED
    bounds = [0, *sorted(cuts), len(raw)]
    codec = server()
    seen: list[Event] = []
    for start, stop in itertools.pairwise(bounds):
        if start == stop:
            continue  # b"" would say the end of stream
        codec.receive_data(raw[start:stop])
        while (event := codec.next_event()) is not NEED_DATA:
            if event is PAUSED:
                codec.response(200)
            else:
                seen.append(event)
    bodies = b"".join(e.data for e in seen if isinstance(e, Data))
    assert bodies == b"abc" + b"abc0123456789"
    assert [type(e) for e in seen if not isinstance(e, Data)] == [RequestHead, type(END)] * 2
