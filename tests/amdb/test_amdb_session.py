"""The card's AdminSession against the server's ServerExchange, in memory: whole sessions cut
into pieces of every size, the failure paths, and the session inside PSK-TLS."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable, Iterator

import h11
import pytest

from openscws.agent.commands import ScwsAdminExecutor
from openscws.amdb.client import AdminSession, Outcome, SessionParams
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.amdb.server import CardPost, Closed, ServerExchange
from openscws.amdb.wire import SCWS_HTTP_REQUEST, ScriptStatus
from openscws.scws.model import MemoryStore
from openscws.tls import TlsClientHandler, TlsState, psk_client_context, psk_server_context
from openscws.tls.psk import PskKeys

NOW = 1_700_000_000.0
PARAMS = SessionParams(
    host="ras.example", agent_id="//se-id/eid/8949;//aa-id/aid/A000000151/000000", uri="/ras"
)
TX = ("X-SCWS-Transaction", "t1")
Pieces = Callable[[bytes], Iterator[bytes]]


class Recorder:
    """A CommandExecutor that records, answering through `inner` or 200 "ok"."""

    def __init__(self, inner: ScwsAdminExecutor | None = None) -> None:
        self.inner = inner
        self.ran: list[EmbeddedRequest] = []
        self.ends: list[bool] = []

    def execute(self, request: EmbeddedRequest, now: float) -> EmbeddedResponse:
        self.ran.append(request)
        if request.target == "/boom":
            raise RuntimeError("executor bug")
        if self.inner is not None:
            return self.inner.execute(request, now)
        return EmbeddedResponse(200, (("Content-Type", "text/plain"),), b"ok")

    def end(self, ok: bool) -> None:
        self.ends.append(ok)
        if self.inner is not None:
            self.inner.end(ok)


def whole(data: bytes) -> Iterator[bytes]:
    if data:
        yield data


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def random_pieces(seed: int) -> Pieces:
    rng = random.Random(seed)

    def cut(data: bytes) -> Iterator[bytes]:
        at = 0
        while at < len(data):
            n = rng.randint(1, 64)
            yield data[at : at + n]
            at += n

    return cut


def converse(
    session: AdminSession,
    script: list[EmbeddedRequest],
    pieces: Pieces = whole,
    server: ServerExchange | None = None,
) -> list[CardPost]:
    """Run the session against a ServerExchange sending `script`, then 204."""
    server = server or ServerExchange()
    posts: list[CardPost] = []
    commands = iter(script)
    for _ in range(10_000):
        events = []
        for piece in pieces(session.data_to_send(limit=97)):
            events += server.receive_data(piece)
        for event in events:
            assert isinstance(event, CardPost), event
            posts.append(event)
            command = next(commands, None)
            if command is None:
                server.send_end()
            else:
                server.send_command(command, f"/ras/{len(posts)}")
        for piece in pieces(server.data_to_send()):
            session.receive_data(piece, NOW)
        if session.should_close:
            return posts
    raise AssertionError("the session did not end")


SCRIPT = [
    EmbeddedRequest("PUT", "/index.html", (("Content-Type", "text/html"), TX), b"<h1>hi</h1>"),
    EmbeddedRequest("GET", "/index.html"),
    EmbeddedRequest("POST", "/.scws/commit", (TX,)),
]


@pytest.mark.parametrize(
    "pieces",
    [whole, byte_by_byte, *(random_pieces(seed) for seed in range(8))],
    ids=["whole", "bytes", *(f"random{seed}" for seed in range(8))],
)
def test_full_session(pieces: Pieces) -> None:
    store = MemoryStore()
    executor = Recorder(ScwsAdminExecutor(store, max_resource=1024))
    session = AdminSession(PARAMS, executor, NOW)
    assert session.outcome is None
    assert not session.idle
    posts = converse(session, SCRIPT, pieces)
    assert session.outcome is Outcome.DONE
    assert session.failure is None
    assert session.commands_run == 3
    assert executor.ends == [True]
    assert [p.uri for p in posts] == ["/ras", "/ras/1", "/ras/2", "/ras/3"]
    first = posts[0]
    assert (first.agent_id, first.resume, first.script_status, first.embedded) == (
        PARAMS.agent_id,
        False,
        None,
        None,
    )
    statuses = [p.embedded.status for p in posts[1:] if p.embedded is not None]
    assert statuses == [201, 200, 200]
    assert all(p.script_status is ScriptStatus.OK for p in posts[1:])
    assert posts[2].embedded is not None
    assert posts[2].embedded.body == b"<h1>hi</h1>"
    assert posts[3].embedded is not None
    assert posts[3].embedded.body == b'{"committed":1}'
    stored = store.get("/index.html")
    assert stored is not None
    assert stored.body == b"<h1>hi</h1>"
    assert session.should_close
    assert session.idle
    assert session.get_timer() is None
    assert session.data_to_send() == b""


def test_resume_and_first_post_fields() -> None:
    params = SessionParams(host="h", agent_id="agent", uri="/start?x=1", resume=True)
    session = AdminSession(params, Recorder(), NOW)
    first = session.data_to_send()
    assert first.startswith(b"POST /start?x=1 HTTP/1.1\r\n")
    for field in (
        b"Host: h\r\n",
        b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\n",
        b"X-Admin-From: agent\r\n",
        b"X-Admin-Resume: true\r\n",
        b"Content-Length: 0\r\n",
    ):
        assert field in first
    posts = converse(AdminSession(params, Recorder(), NOW), [])
    assert posts[0].resume


# -- talking to a raw server --------------------------------------------------------------------


class RawServer:
    """Reads the card's POSTs with h11 and answers with whatever bytes a test gives."""

    def __init__(self, session: AdminSession) -> None:
        self.session = session
        self.conn = h11.Connection(h11.SERVER)

    def post(self) -> tuple[bytes, dict[bytes, bytes], bytes]:
        """The card's next POST: (target, fields, body)."""
        self.conn.receive_data(self.session.data_to_send())
        request = self.conn.next_event()
        assert isinstance(request, h11.Request)
        body = b""
        while True:
            event = self.conn.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            else:
                assert isinstance(event, h11.EndOfMessage)
                break
        return request.target, dict(request.headers), body

    def answer(self, data: bytes, now: float = NOW) -> None:
        """Send raw answer bytes (none: they were fed already) and move on to the next POST."""
        if data:
            self.session.receive_data(data, now)
        self.conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
        self.conn.send(h11.EndOfMessage())
        self.conn.start_next_cycle()


def command(body: bytes, *fields: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: " + SCWS_HTTP_REQUEST.encode() + b"\r\n"
    return (
        head
        + b"".join(f + b"\r\n" for f in fields)
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


END = b"HTTP/1.1 204 No Content\r\n\r\n"


def started() -> tuple[AdminSession, Recorder, RawServer]:
    executor = Recorder()
    session = AdminSession(PARAMS, executor, NOW)
    server = RawServer(session)
    assert server.post()[0] == b"/ras"
    return session, executor, server


def assert_failed(session: AdminSession, executor: Recorder, words: str) -> None:
    assert session.outcome is Outcome.FAILED
    assert session.failure is not None
    assert words in session.failure, session.failure
    assert executor.ends == [False]
    assert session.should_close
    assert session.get_timer() is None


def test_next_uri_is_followed_or_kept() -> None:
    session, executor, server = started()
    get = EmbeddedRequest("GET", "/x").encode()
    server.answer(command(get, b"X-Admin-Next-URI: /ras/step2"))
    target, fields, body = server.post()
    assert target == b"/ras/step2"
    assert fields[b"content-type"] == b"application/vnd.oma-scws-http-response"
    assert fields[b"x-admin-script-status"] == b"ok"
    assert EmbeddedResponse.decode(body, max_body=99, max_header=999).body == b"ok"
    server.answer(command(get))  # no Next-URI: the same again
    assert server.post()[0] == b"/ras/step2"
    server.answer(END)
    assert session.outcome is Outcome.DONE
    assert executor.ends == [True]
    assert session.commands_run == 2


def test_dotted_spelling_and_chunked_command_and_100_continue() -> None:
    _, executor, server = started()
    body = EmbeddedRequest("GET", "/y").encode()
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oma.scws-http-request\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    )
    server.answer(answer)
    _, fields, _ = server.post()
    assert fields[b"x-admin-script-status"] == b"ok"
    assert [r.target for r in executor.ran] == ["/y"]


@pytest.mark.parametrize(
    "content_type",
    [b"text/html", b"application/vnd.globalplatform.card-content-mgt;version=1.0", None],
)
def test_unknown_command_type(content_type: bytes | None) -> None:
    session, executor, server = started()
    field = b"Content-Type: " + content_type + b"\r\n" if content_type else b""
    server.answer(b"HTTP/1.1 200 OK\r\n" + field + b"Content-Length: 4\r\n\r\nblob")
    _, fields, body = server.post()
    assert fields[b"x-admin-script-status"] == b"unknown-application"
    assert b"content-type" not in fields
    assert body == b""
    assert executor.ran == []
    server.answer(END)
    assert session.outcome is Outcome.DONE


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_command_gets_an_embedded_413(chunked: bool) -> None:
    executor = Recorder()
    session = AdminSession(
        SessionParams(host="h", agent_id="a", uri="/", max_body=100), executor, NOW
    )
    server = RawServer(session)
    server.post()
    big = EmbeddedRequest("PUT", "/big", (("Content-Type", "x/y"),), b"z" * 5000).encode()
    if chunked:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oma-scws-http-request\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        pieces = [
            b"%x\r\n%s\r\n" % (len(big[i : i + 50]), big[i : i + 50]) for i in range(0, 5000, 50)
        ]
        data = head + b"".join(pieces) + b"0\r\n\r\n"
    else:
        data = command(big)
    for i in range(0, len(data), 300):
        session.receive_data(data[i : i + 300], NOW)
        assert sum(map(len, session._body)) <= 100  # never held
    server.answer(b"")
    _, fields, body = server.post()
    assert fields[b"x-admin-script-status"] == b"ok"
    assert EmbeddedResponse.decode(body, max_body=99, max_header=999).status == 413
    assert executor.ran == []
    assert session.outcome is None


def test_malformed_embedded_request_gets_an_embedded_400() -> None:
    session, executor, server = started()
    server.answer(command(b"NOT HTTP AT ALL"))
    _, _, body = server.post()
    assert EmbeddedResponse.decode(body, max_body=99, max_header=999).status == 400
    assert session.commands_run == 0
    assert executor.ran == []


def test_executor_bug_answers_500_and_the_session_goes_on() -> None:
    session, _, server = started()
    server.answer(command(EmbeddedRequest("GET", "/boom").encode()))
    _, _, body = server.post()
    assert EmbeddedResponse.decode(body, max_body=99, max_header=999).status == 500
    server.answer(END)
    assert session.outcome is Outcome.DONE


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "500"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "404"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "malformed"),
        (b"garbage\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-Admin-Next-URI: /a b\r\nContent-Length: 0\r\n\r\n", "Next-URI"),
    ],
)
def test_bad_answers_fail(answer: bytes, words: str) -> None:
    session, executor, _ = started()
    session.receive_data(answer, NOW)
    assert_failed(session, executor, words)
    session.receive_data(END, NOW)  # ignored once over
    assert executor.ends == [False]


def test_server_closing_early_fails() -> None:
    session, executor, _ = started()
    session.receive_data(b"", NOW)
    assert_failed(session, executor, "closed")


def test_server_closing_mid_answer_fails() -> None:
    session, executor, _ = started()
    session.receive_data(command(EmbeddedRequest("GET", "/").encode())[:-5], NOW)
    assert session.outcome is None
    session.receive_data(b"", NOW)
    assert_failed(session, executor, "closed")


def test_server_ending_keep_alive_fails() -> None:
    session, executor, _ = started()
    get = EmbeddedRequest("GET", "/").encode()
    session.receive_data(command(get, b"Connection: close"), NOW)
    assert_failed(session, executor, "closed")


def test_response_timeout() -> None:
    session, executor, _ = started()
    assert session.get_timer() == NOW + 30
    session.handle_timer(NOW + 29)
    assert session.outcome is None
    # Progress re-arms the timer.
    session.receive_data(b"HTTP/1.1 200 OK\r\n", NOW + 20)
    assert session.get_timer() == NOW + 50
    session.handle_timer(NOW + 50)
    assert_failed(session, executor, "no answer within 30 s")


def test_close_and_shutdown_before_the_end() -> None:
    session, executor, _ = started()
    session.close()
    assert_failed(session, executor, "connection closed")
    session.close()
    assert executor.ends == [False]
    session, executor, _ = started()
    session.shutdown()
    assert_failed(session, executor, "shut down")


def test_close_after_done_changes_nothing() -> None:
    session, executor, server = started()
    server.answer(END)
    session.close()
    session.receive_data(b"", NOW)
    assert session.outcome is Outcome.DONE
    assert executor.ends == [True]


def test_session_params_are_checked() -> None:
    with pytest.raises(ValueError, match="URI"):
        SessionParams(host="h", agent_id="a", uri="/a b")
    with pytest.raises(ValueError, match="host"):
        SessionParams(host="h\r\nX: y", agent_id="a", uri="/")
    with pytest.raises(ValueError, match="positive"):
        SessionParams(host="h", agent_id="a", uri="/", response_timeout=0)


# -- the session inside PSK-TLS -----------------------------------------------------------------

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENTITY = "card-admin-01"
CHUNK = 255  # BIP moves at most 255 bytes per SEND DATA / RECEIVE DATA


def test_session_as_the_inner_handler_of_tls() -> None:
    store = MemoryStore()
    executor = Recorder(ScwsAdminExecutor(store, max_resource=1024))
    session = AdminSession(PARAMS, executor, NOW)
    tls = TlsClientHandler(psk_client_context(IDENTITY, KEY), session, now=NOW)
    server_ctx = psk_server_context(PskKeys(lambda identity: KEY if identity == IDENTITY else None))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
    exchange = ServerExchange()
    posts: list[CardPost] = []
    commands = iter(SCRIPT)
    handshake_done = False
    peer_closed = False
    to_server = tls.start(NOW)
    for _ in range(1000):
        incoming.write(to_server)
        if not handshake_done:
            try:
                server.do_handshake()
                handshake_done = True
            except ssl.SSLWantReadError:
                pass
        if handshake_done and not peer_closed:
            plain = b""
            while True:
                try:
                    chunk = server.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    chunk = b""
                if not chunk:  # close_notify (read gives b"" rather than raising)
                    peer_closed = True
                    break
                plain += chunk
            for event in exchange.receive_data(plain) if plain else []:
                assert isinstance(event, CardPost)
                posts.append(event)
                step = next(commands, None)
                if step is None:
                    exchange.send_end()
                else:
                    exchange.send_command(step, f"/ras/{len(posts)}")
            answer = exchange.data_to_send()
            if answer:
                server.write(answer)
        back = outgoing.read()
        for at in range(0, len(back), CHUNK):
            tls.receive_data(back[at : at + CHUNK], NOW)
        to_server = tls.data_to_send(CHUNK)
        if tls.should_close and not to_server:
            break
    assert session.outcome is Outcome.DONE, session.failure
    assert tls.state is TlsState.SHUTDOWN
    assert peer_closed  # the card said close_notify after the 204
    assert len(posts) == 4
    assert posts[3].embedded is not None
    assert posts[3].embedded.body == b'{"committed":1}'
    assert executor.ends == [True]
    assert store.get("/index.html") is not None


def test_closed_event_reaches_the_server_shell() -> None:
    exchange = ServerExchange()
    session = AdminSession(PARAMS, Recorder(), NOW)
    events = exchange.receive_data(session.data_to_send())
    assert isinstance(events[0], CardPost)
    assert exchange.awaiting_answer
    # The card goes away while the shell is still choosing its answer.
    (closed,) = exchange.receive_data(b"")
    assert isinstance(closed, Closed)
    assert closed.error is None
    assert exchange.should_close
