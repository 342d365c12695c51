"""The administration server's sans-IO helpers: parse_card_post, the answers, ServerExchange."""

from __future__ import annotations

import pytest

from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.amdb.server import (
    CardPost,
    Closed,
    ServerExchange,
    command_response,
    end_response,
    parse_card_post,
)
from openscws.amdb.wire import PROTOCOL, ScriptStatus
from openscws.errors import AdminProtocolError

BASE = [(b"x-admin-protocol", PROTOCOL.encode()), (b"x-admin-from", b"agent-7")]
RESULT_TYPE = (b"content-type", b"application/vnd.oma-scws-http-response")
OK = (b"x-admin-script-status", b"ok")
RESULT = EmbeddedResponse(201, (("ETag", '"e"'),)).encode()


def refused(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"", method: str = "POST"
) -> AdminProtocolError:
    with pytest.raises(AdminProtocolError) as info:
        parse_card_post(method, "/ras", headers, body)
    assert info.value.status == status, info.value
    return info.value


def test_first_post() -> None:
    post = parse_card_post(b"POST", b"/ras", BASE, b"")
    assert post == CardPost("/ras", "agent-7", False, None, None)


def test_result_post_with_str_fields_and_dotted_type() -> None:
    headers = [
        ("X-Admin-Protocol", PROTOCOL.upper()),
        ("X-Admin-From", "agent-7"),
        ("X-Admin-Resume", "TRUE"),
        ("X-Admin-Script-Status", "ok"),
        ("Content-Type", "application/vnd.oma.scws-http-response"),
    ]
    post = parse_card_post("POST", "/ras/2", headers, RESULT)
    assert post.resume
    assert post.script_status is ScriptStatus.OK
    assert post.embedded == EmbeddedResponse(201, (("ETag", '"e"'),))


@pytest.mark.parametrize("status", list(ScriptStatus)[1:])
def test_other_script_statuses_carry_no_result(status: ScriptStatus) -> None:
    post = parse_card_post(
        "POST", "/ras", [*BASE, (b"x-admin-script-status", status.encode())], b""
    )
    assert (post.script_status, post.embedded) == (status, None)


def test_refusals() -> None:
    error = refused(405, BASE, method="GET")
    assert error.headers == (("Allow", "POST"),)
    refused(400, BASE[1:])
    refused(400, [(b"x-admin-protocol", b"globalplatform-remote-admin/2.0"), BASE[1]])
    refused(400, BASE[:1])
    refused(400, [*BASE, (b"x-admin-resume", b"maybe")])
    refused(400, [*BASE, (b"x-admin-script-status", b"fine")])
    refused(415, [*BASE, OK, (b"content-type", b"text/html")], b"x")
    refused(415, [*BASE, OK], RESULT)
    refused(
        415,
        [
            *BASE,
            (
                b"content-type",
                b"application/vnd.globalplatform.card-content-mgt-response;version=1.0",
            ),
        ],
    )
    refused(400, [*BASE, OK, RESULT_TYPE], b"")
    refused(400, [*BASE, OK, RESULT_TYPE], b"garbage")
    refused(413, [*BASE, OK, RESULT_TYPE], b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (128 * 1024 + 1))
    with pytest.raises(AdminProtocolError) as info:
        parse_card_post("POST", "/a b", BASE, b"")
    assert info.value.status == 400


def test_answers() -> None:
    command = EmbeddedRequest("DELETE", "/old", (("X-SCWS-Transaction", "t"),))
    status, headers, body = command_response(command, "/ras/next")
    assert status == 200
    assert headers == [
        (b"X-Admin-Protocol", b"globalplatform-remote-admin/1.0"),
        (b"Content-Type", b"application/vnd.oma-scws-http-request"),
        (b"X-Admin-Next-URI", b"/ras/next"),
        (b"Content-Length", b"%d" % len(body)),
    ]
    assert EmbeddedRequest.decode(body, max_body=100, max_header=100) == command
    assert end_response() == (204, [(b"X-Admin-Protocol", b"globalplatform-remote-admin/1.0")], b"")
    with pytest.raises(ValueError, match="next URI"):
        command_response(command, "/bad uri")


# -- ServerExchange -----------------------------------------------------------------------------

HEAD = (
    b"POST /ras HTTP/1.1\r\nHost: ras\r\nX-Admin-Protocol: "
    + PROTOCOL.encode()
    + b"\r\nX-Admin-From: a\r\n"
)


def test_expect_100_continue_and_chunked_post() -> None:
    exchange = ServerExchange()
    head = (
        HEAD
        + b"X-Admin-Script-Status: ok\r\nContent-Type: application/vnd.oma-scws-http-response\r\n"
    )
    head += b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert exchange.receive_data(head) == []
    assert exchange.data_to_send() == b"HTTP/1.1 100 Continue\r\n\r\n"
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(RESULT[i : i + 7]), RESULT[i : i + 7])
        for i in range(0, len(RESULT), 7)
    )
    (post,) = exchange.receive_data(chunks + b"0\r\n\r\n")
    assert isinstance(post, CardPost)
    assert post.embedded is not None
    assert post.embedded.status == 201
    exchange.send_end()
    out = exchange.data_to_send()
    assert out.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n" in out
    assert exchange.should_close


def test_oversized_post_is_refused_before_it_is_read() -> None:
    exchange = ServerExchange(max_body=10)
    head = (
        HEAD + b"Expect: 100-continue\r\nContent-Type: application/vnd.oma-scws-http-response\r\n"
    )
    (closed,) = exchange.receive_data(head + b"Content-Length: 11\r\n\r\n")
    assert isinstance(closed, Closed)
    assert closed.error is not None
    assert closed.error.status == 413
    out = exchange.data_to_send()
    assert out.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in out
    assert b"Connection: close\r\n" in out
    assert exchange.should_close
    assert exchange.receive_data(b"more") == []


def test_oversized_chunked_post() -> None:
    exchange = ServerExchange(max_body=10)
    head = (
        HEAD
        + b"Content-Type: application/vnd.oma-scws-http-response\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n"
    )
    (closed,) = exchange.receive_data(head + b"b\r\n01234567890\r\n")
    assert isinstance(closed, Closed)
    assert closed.error is not None
    assert closed.error.status == 413


def test_bad_posts_are_answered_and_close() -> None:
    exchange = ServerExchange()
    (closed,) = exchange.receive_data(b"POST /ras HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(closed, Closed)
    assert closed.error is not None
    assert closed.error.status == 400
    assert exchange.data_to_send().startswith(b"HTTP/1.1 400 ")
    exchange = ServerExchange()
    (closed,) = exchange.receive_data(b"\x00\x01garbage\r\n\r\n")
    assert isinstance(closed, Closed)
    assert exchange.data_to_send().startswith(b"HTTP/1.1 400 ")
    exchange = ServerExchange()
    (closed,) = exchange.receive_data(
        HEAD + b"X-Admin-Script-Status: ok\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(closed, Closed)
    assert closed.error is not None
    assert closed.error.status == 400


def test_keep_alive_cycle_and_send_error() -> None:
    exchange = ServerExchange()
    first = HEAD + b"Content-Length: 0\r\n\r\n"
    (post,) = exchange.receive_data(first)
    assert isinstance(post, CardPost)
    with pytest.raises(RuntimeError, match="no card POST"):
        ServerExchange().send_command(EmbeddedRequest("GET", "/"), "/n")
    exchange.send_command(EmbeddedRequest("GET", "/"), "/ras/2")
    assert not exchange.awaiting_answer
    assert exchange.data_to_send().startswith(b"HTTP/1.1 200 ")
    second = first.replace(b"/ras ", b"/ras/2 ", 1).replace(
        b"Content-Length: 0", b"X-Admin-Script-Status: unknown-application\r\nContent-Length: 0"
    )
    (post,) = exchange.receive_data(second)
    assert isinstance(post, CardPost)
    assert (post.uri, post.script_status) == ("/ras/2", ScriptStatus.UNKNOWN_APPLICATION)
    exchange.send_error(503, "database busy")
    out = exchange.data_to_send()
    assert out.startswith(b"HTTP/1.1 503 ")
    assert exchange.should_close


def test_card_closing_between_posts() -> None:
    exchange = ServerExchange()
    (post,) = exchange.receive_data(HEAD + b"Content-Length: 0\r\n\r\n")
    assert isinstance(post, CardPost)
    exchange.send_command(EmbeddedRequest("GET", "/"), "/ras/2")
    (closed,) = exchange.receive_data(b"")
    assert closed == Closed("card closed the connection")
