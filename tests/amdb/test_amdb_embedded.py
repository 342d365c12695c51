"""The embedded HTTP messages: vectors, round trips, limits, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.amdb.wire import (
    SCWS_HTTP_REQUEST,
    SCWS_HTTP_RESPONSE,
    Payload,
    classify,
    is_request_target,
)
from openscws.errors import AdminProtocolError, HttpError, OpenScwsError

LIMITS = {"max_body": 1024, "max_header": 512}


def req(data: bytes, **limits: int) -> EmbeddedRequest:
    return EmbeddedRequest.decode(data, **{**LIMITS, **limits})


def resp(data: bytes, **limits: int) -> EmbeddedResponse:
    return EmbeddedResponse.decode(data, **{**LIMITS, **limits})


def refused(status: int, data: bytes, *, response: bool = False, **limits: int) -> None:
    with pytest.raises(AdminProtocolError) as info:
        (resp if response else req)(data, **limits)
    assert info.value.status == status, info.value


# -- vectors ------------------------------------------------------------------------------------


def test_request_vector_encode() -> None:
    r = EmbeddedRequest(
        "PUT", "/portal/index.html", (("Content-Type", "text/html"), ("X-A", "1")), b"<p>"
    )
    assert r.encode() == (
        b"PUT /portal/index.html HTTP/1.1\r\n"
        b"Content-Type: text/html\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n<p>"
    )


def test_request_without_body_still_gets_content_length() -> None:
    assert EmbeddedRequest("GET", "/").encode() == b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"


def test_response_vectors_encode() -> None:
    assert EmbeddedResponse(201, (("ETag", '"x"'),)).encode() == (
        b'HTTP/1.1 201 Created\r\nETag: "x"\r\nContent-Length: 0\r\n\r\n'
    )
    # RFC 9110 §8.6: no Content-Length on 204 (nor 1xx, 304).
    assert EmbeddedResponse(204).encode() == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert (
        EmbeddedResponse(599, body=b"x").encode() == b"HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\nx"
    )
    assert EmbeddedResponse(200, reason="Fine").encode().startswith(b"HTTP/1.1 200 Fine\r\n")


def test_encode_drops_framing_fields_the_caller_gave() -> None:
    r = EmbeddedRequest("PUT", "/a", (("content-length", "99"), ("Transfer-Encoding", "x")), b"ab")
    assert r.encode() == b"PUT /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"


@pytest.mark.parametrize(
    "bad",
    [
        EmbeddedRequest("GET", "/a b"),
        EmbeddedRequest("G T", "/"),
        EmbeddedRequest("GET", ""),
        EmbeddedRequest("GET", "/", (("X-A", "1\r\nX-Injected: 2"),)),
        EmbeddedRequest("GET", "/", (("X A", "1"),)),
        EmbeddedRequest("GET", "/", (("X-A", "\u20ac"),)),
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire(bad: EmbeddedRequest) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the reason varies
        bad.encode()


def test_encode_refuses_bad_responses() -> None:
    for bad in (
        EmbeddedResponse(204, body=b"x"),
        EmbeddedResponse(42),
        EmbeddedResponse(200, reason="a\r\nb"),
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            bad.encode()


def test_decode_request_with_content_length() -> None:
    r = req(
        b"PUT /a.txt HTTP/1.1\r\nHost: card\r\ncontent-type:  text/plain \r\n"
        b"Content-Length: 2\r\n\r\nhi"
    )
    assert r == EmbeddedRequest(
        "PUT", "/a.txt", (("Host", "card"), ("content-type", "text/plain")), b"hi"
    )
    assert r.header("CONTENT-TYPE") == "text/plain"
    assert r.header("content-length") is None  # framing is not kept
    assert r.header("missing") is None


def test_decode_request_without_host_and_http10() -> None:
    assert req(b"GET /x HTTP/1.0\r\n\r\n") == EmbeddedRequest("GET", "/x")


def test_decode_chunked_with_extensions_and_trailers() -> None:
    data = (
        b"PUT /c HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"3;name=value\r\nabc\r\nA \r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    assert req(data) == EmbeddedRequest("PUT", "/c", (), b"abc0123456789")


def test_decode_response_forms() -> None:
    assert resp(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n") == EmbeddedResponse(404)
    assert resp(b"HTTP/1.1 200 Okay then\r\n\r\nto the end") == EmbeddedResponse(
        200, (), b"to the end", "Okay then"
    )
    assert resp(b"HTTP/1.1 204\r\n\r\n") == EmbeddedResponse(204)
    assert resp(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n") == EmbeddedResponse(304)
    assert resp(b"HTTP/1.0 200 \r\nContent-Length: 1\r\n\r\nx").body == b"x"


def test_media_types_both_spellings() -> None:
    assert classify(SCWS_HTTP_REQUEST) is Payload.SCWS_REQUEST
    assert classify(b"Application/VND.OMA.SCWS-HTTP-REQUEST ; charset=x") is Payload.SCWS_REQUEST
    assert classify(SCWS_HTTP_RESPONSE) is Payload.SCWS_RESPONSE
    assert classify("application/vnd.oma.scws-http-response") is Payload.SCWS_RESPONSE
    assert (
        classify("application/vnd.globalplatform.card-content-mgt;version=1.0")
        is Payload.GP_COMMAND
    )
    assert classify("text/html") is None
    assert classify(None) is None
    assert is_request_target("/ras/next?x=1")
    assert not is_request_target("/a b")
    assert not is_request_target("")


# -- refusals -----------------------------------------------------------------------------------


def test_error_is_an_http_error_of_the_tree() -> None:
    assert issubclass(AdminProtocolError, HttpError)
    assert issubclass(AdminProtocolError, OpenScwsError)


@pytest.mark.parametrize(
    ("status", "data"),
    [
        (400, b""),
        (400, b"GET / HTTP/1.1\r\n"),  # head incomplete
        (400, b"GET / HTTP/1.1\n\n"),  # bare LF
        (400, b"GET  / HTTP/1.1\r\n\r\n"),
        (400, b"GET / HTTP/1.1 \r\n\r\n"),
        (400, b"get\x00 / HTTP/1.1\r\n\r\n"),
        (400, b"GET / HTTP/1.1\r\nX-A : 1\r\n\r\n"),  # space before the colon
        (400, b"GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n"),  # obs-fold
        (400, b"GET / HTTP/1.1\r\nX-A: 1\x01\r\n\r\n"),
        (400, b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n"),
        (400, b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
        (400, b"GET / HTTP/1.1\r\n\r\nbody without framing"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: 1\r\n\r\nab"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\na"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\n"),
        (400, b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (400, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"),
        (400, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        (400, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"),
        (400, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nextra"),
        (501, b"PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        (505, b"GET / HTTP/2.0\r\n\r\n"),
        (505, b"GET / HTTP/11.0\r\n\r\n"),
        (413, b"PUT / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"),
        (413, b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n" + b"a" * 1025),
        (431, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600 + b"\r\n\r\n"),
        (431, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 600),  # incomplete, already too long
    ],
)
def test_request_refusals(status: int, data: bytes) -> None:
    refused(status, data)


@pytest.mark.parametrize(
    ("status", "data"),
    [
        (400, b"HTTP/1.1 20 OK\r\n\r\n"),
        (400, b"HTTP/1.1 099 Low\r\n\r\n"),
        (400, b"HTTP/1.1 204 No Content\r\n\r\nbody"),
        (400, b"HTTP/1.1 OK\r\n\r\n"),
        (505, b"HTTP/2.0 200 OK\r\n\r\n"),
        (413, b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 1025),
    ],
)
def test_response_refusals(status: int, data: bytes) -> None:
    refused(status, data, response=True)


def test_trailer_section_is_bounded() -> None:
    data = (
        b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X-T: a\r\n" * 100 + b"\r\n"
    )
    refused(431, data)


def test_limits_are_inclusive() -> None:
    body = b"b" * 1024
    assert req(EmbeddedRequest("PUT", "/", (), body).encode()).body == body
    head = b"GET / HTTP/1.1\r\nX: " + b"a" * (512 - 23) + b"\r\n\r\n"
    assert len(head) == 512
    assert req(head).header("x") == "a" * (512 - 23)
    refused(431, head, max_header=511)


# -- round trips and fuzzing --------------------------------------------------------------------

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=12)
values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=30,
).map(lambda v: v.strip(" \t"))
fields = st.lists(
    st.tuples(tokens, values).filter(
        lambda f: f[0].lower() not in {"content-length", "transfer-encoding"}
    ),
    max_size=6,
).map(tuple)
targets = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)


@given(tokens, targets, fields, st.binary(max_size=300))
def test_request_round_trip(
    method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    r = EmbeddedRequest(method, target, headers, body)
    assert req(r.encode()) == r


@given(st.integers(200, 599).filter(lambda s: s not in (204, 304)), fields, st.binary(max_size=300))
def test_response_round_trip(
    status: int, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    r = EmbeddedResponse(status, headers, body)
    assert resp(r.encode()) == r


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=8))
def test_chunked_equals_joined(chunks: list[bytes]) -> None:
    coded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    data = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + coded
    assert req(data).body == b"".join(chunks)


def _decode_or_typed_error(data: bytes) -> None:
    for decode in (EmbeddedRequest.decode, EmbeddedResponse.decode):
        status = 0
        try:
            decode(data, max_body=256, max_header=256)
        except AdminProtocolError as exc:
            status = exc.status
        assert status in {0, 400, 413, 431, 501, 505}


@settings(max_examples=400)
@given(st.binary(max_size=400))
@example(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n")
@example(b"GET / HTTP/1.1\r\n\xff\xfe: x\r\n\r\n")
def test_fuzz_garbage_only_raises_the_typed_error(data: bytes) -> None:
    _decode_or_typed_error(data)


_SEED = (
    b"PUT /a HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
)


@settings(max_examples=400)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_SEED)), st.binary(max_size=4), st.integers(0, 4)), max_size=6
    )
)
def test_fuzz_mutated_messages(edits: list[tuple[int, bytes, int]]) -> None:
    data = bytearray(_SEED)
    for at, insert, cut in edits:
        data[at : at + cut] = insert
    _decode_or_typed_error(bytes(data))
    _decode_or_typed_error(b"HTTP/1.1 200 OK\r\n" + bytes(data).partition(b"\r\n")[2])
