"""The card agent's side of one administration session (GP Amd B "RAM over HTTP", digest
§2.3 to 2.5), sans-IO: an `openscws.bip.card.StreamHandler` on plaintext, so it runs as the inner
handler of `openscws.tls.endpoint.TlsClientHandler` over a BIP client channel.

The card polls: the first POST has no body; each `200` answer carries one SCWS command (an HTTP
request, `application/vnd.oma-scws-http-request`), which the `CommandExecutor` runs; the next
POST (to X-Admin-Next-URI, or the same URI) carries its result with X-Admin-Script-Status: ok.
A command of another media type is answered `unknown-application` without a body; one over
`max_body` gets an embedded 413 (its body is read and dropped, never held). `204` ends the
session (`Outcome.DONE`, `executor.end(True)`). Any other status, a malformed answer, the
server closing early, the response timeout, `shutdown()` or `close()` before the end:
`Outcome.FAILED`, the reason in `failure`, `executor.end(False)`. The executor hears `end`
exactly once."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final, Protocol

import h11

from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.amdb.wire import (
    PROTOCOL,
    SCWS_HTTP_RESPONSE,
    AdminHeader,
    Payload,
    ScriptStatus,
    classify,
    is_request_target,
)
from openscws.errors import AdminProtocolError
from openscws.scws.paths import AMDB_MAX_COMMAND, AMDB_MAX_HEAD

__all__ = ["AdminSession", "CommandExecutor", "Outcome", "SessionParams"]

logger = logging.getLogger(__name__)

_H_CONTENT_TYPE: Final = b"content-type"
_H_CONTENT_LENGTH: Final = b"content-length"
_H_NEXT_URI: Final = AdminHeader.NEXT_URI.lower().encode("ascii")
_PROTOCOL_FIELD: Final = (AdminHeader.PROTOCOL.encode("ascii"), PROTOCOL.encode("ascii"))
_RESUME_FIELD: Final = (AdminHeader.RESUME.encode("ascii"), b"true")
_STATUS_NAME: Final = AdminHeader.SCRIPT_STATUS.encode("ascii")
_RESULT_FIELDS: Final = (
    (b"Content-Type", SCWS_HTTP_RESPONSE.encode("ascii")),
    (_STATUS_NAME, ScriptStatus.OK.encode("ascii")),
)
_TOO_LARGE: Final = EmbeddedResponse(413).encode()
_UNKNOWN_FIELD: Final = (_STATUS_NAME, ScriptStatus.UNKNOWN_APPLICATION.encode("ascii"))


class CommandExecutor(Protocol):
    """Runs the SCWS commands of one session (e.g. `openscws.agent.commands`)."""

    def execute(self, request: EmbeddedRequest, now: float) -> EmbeddedResponse:
        """Answer one command; errors are answered in HTTP terms, not raised."""
        ...

    def end(self, ok: bool) -> None:
        """The session is over: `ok` after the server's 204, False if it broke off."""
        ...


class Outcome(enum.Enum):
    DONE = enum.auto()
    """The server ended the session with 204."""
    FAILED = enum.auto()
    """The session broke off; see `AdminSession.failure`."""


@dataclass(frozen=True, slots=True)
class SessionParams:
    """Where and who: from the trigger's HTTP POST parameters (tag 89: 8A host, 8B agent id,
    8C admin URI, GP Amendment B §3.8) or the security domain's defaults."""

    host: str
    agent_id: str
    uri: str
    resume: bool = False
    """Send X-Admin-Resume: true on the first POST (a retry after a broken session)."""
    response_timeout: float = 30.0
    """Seconds the server may stay silent while an answer is due."""
    max_body: int = AMDB_MAX_COMMAND
    """Largest command (the embedded request, head and body) held in RAM."""
    max_header: int = AMDB_MAX_HEAD
    """Largest head, of the server's answers and of an embedded request."""

    def __post_init__(self) -> None:
        if not is_request_target(self.uri):
            raise ValueError(f"admin URI cannot go on a request line: {self.uri!r}")
        for name in ("host", "agent_id"):
            value = getattr(self, name)
            if not value or not value.isascii() or not value.isprintable():
                raise ValueError(f"{name} must be printable ASCII: {value!r}")
        if self.response_timeout <= 0 or self.max_body <= 0 or self.max_header <= 0:
            raise ValueError("timeouts and limits must be positive")


class _Answer(enum.Enum):
    """What the response being read calls for."""

    EXECUTE = enum.auto()
    OVERSIZE = enum.auto()
    UNKNOWN = enum.auto()
    END = enum.auto()


class AdminSession:
    """One administration session over one connection; see the module docstring.

    The first POST is queued at construction: send `data_to_send()` once the link (TLS) is
    up. `now` starts the response timer."""

    def __init__(self, params: SessionParams, executor: CommandExecutor, now: float) -> None:
        self._params = params
        self._executor = executor
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=params.max_header)
        self._fields = [
            (b"Host", params.host.encode("ascii")),
            _PROTOCOL_FIELD,
            (AdminHeader.FROM.encode("ascii"), params.agent_id.encode("ascii")),
        ]
        self._uri = params.uri.encode("ascii")
        self._out = bytearray()
        self._deadline = now + params.response_timeout
        self._outcome: Outcome | None = None
        self.failure: str | None = None
        """Why the session failed (`Outcome.FAILED`), else None."""
        self.commands_run = 0
        """Commands handed to the executor so far."""
        self._answer = _Answer.UNKNOWN
        self._body: list[bytes] = []
        self._size = 0
        self._eof = False
        self._post((_RESUME_FIELD,) if params.resume else (), b"")

    # -- StreamHandler ----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the server; `b""` means it closed its side."""
        if self._outcome is not None:
            return
        if data:
            self._deadline = now + self._params.response_timeout
        else:
            self._eof = True
        self._conn.receive_data(data)
        self._process(now)

    def data_to_send(self, limit: int | None = None) -> bytes:
        """The POST(s) to send; at most `limit` bytes at a time."""
        out = self._out
        if limit is None or limit >= len(out):
            data = bytes(out)
            out.clear()
        else:
            data = bytes(out[:limit])
            del out[:limit]
        return data

    @property
    def should_close(self) -> bool:
        """The session is over, DONE or FAILED: close once `data_to_send` is drained."""
        return self._outcome is not None

    @property
    def idle(self) -> bool:
        """Nothing under way: only once the session is over (a client always waits)."""
        return self._outcome is not None and not self._out

    def get_timer(self) -> float | None:
        return None if self._outcome is not None else self._deadline

    def handle_timer(self, now: float) -> None:
        if self._outcome is None and now >= self._deadline:
            self._fail(f"no answer within {self._params.response_timeout:g} s")

    def shutdown(self) -> None:
        self._fail("shut down before the end of the session")

    wants_input = True

    def close_after_response(self) -> None:
        pass  # the client's side: the session ends the connection

    def close(self) -> None:
        self._fail("connection closed before the end of the session")

    # -- results ----------------------------------------------------------------------------

    @property
    def outcome(self) -> Outcome | None:
        """None while the session runs, then DONE or FAILED."""
        return self._outcome

    # -- internals --------------------------------------------------------------------------

    def _post(self, fields: tuple[tuple[bytes, bytes], ...], body: bytes) -> None:
        headers = [*self._fields, *fields, (b"Content-Length", b"%d" % len(body))]
        conn = self._conn
        out = self._out
        out += conn.send(h11.Request(method=b"POST", target=self._uri, headers=headers)) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""

    def _process(self, now: float) -> None:
        conn = self._conn
        while self._outcome is None:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._fail(
                    "server closed the connection mid-answer"
                    if self._eof
                    else f"malformed answer: {exc}"
                )
                return
            if isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.Response):
                self._on_response(event)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end(now)
            elif isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and kin: the final answer follows
            elif isinstance(event, h11.ConnectionClosed):
                self._fail("server closed the connection before the end of the session")
            else:  # NEED_DATA; PAUSED cannot happen: we answer before reading on
                return

    def _on_response(self, event: h11.Response) -> None:
        status = event.status_code
        if status == 204:
            self._answer = _Answer.END
            return
        if status != 200:
            reason = event.reason.decode("latin-1")
            self._fail(f"server answered {status} {reason}".rstrip())
            return
        content_type: bytes | None = None
        length = -1
        for name, value in event.headers:  # h11 gives lower-case names
            if name == _H_CONTENT_TYPE:
                content_type = value
            elif name == _H_CONTENT_LENGTH:
                length = int(value)
            elif name == _H_NEXT_URI:
                if not is_request_target(value.decode("latin-1")):
                    self._fail("unusable X-Admin-Next-URI")
                    return
                self._uri = value
        self._body = []
        self._size = 0
        if classify(content_type) is not Payload.SCWS_REQUEST:
            self._answer = _Answer.UNKNOWN
        elif length > self._params.max_body:
            self._answer = _Answer.OVERSIZE
        else:
            self._answer = _Answer.EXECUTE

    def _on_data(self, data: bytes) -> None:
        if self._answer is not _Answer.EXECUTE:
            return  # dropped unread
        self._size += len(data)
        if self._size > self._params.max_body:
            self._answer = _Answer.OVERSIZE
            self._body = []
            return
        self._body.append(data)

    def _on_end(self, now: float) -> None:
        answer = self._answer
        if answer is _Answer.END:
            self._finish(Outcome.DONE, None)
            return
        conn = self._conn
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            self._fail("server closed the connection before the end of the session")
            return
        if answer is _Answer.UNKNOWN:
            fields: tuple[tuple[bytes, bytes], ...] = (_UNKNOWN_FIELD,)
            body = b""
        else:
            fields = _RESULT_FIELDS
            body = self._result(answer, now)
        self._body = []
        conn.start_next_cycle()
        self._post(fields, body)
        self._deadline = now + self._params.response_timeout

    def _result(self, answer: _Answer, now: float) -> bytes:
        """The encoded embedded response to the command just read."""
        if answer is _Answer.OVERSIZE:
            return _TOO_LARGE
        params = self._params
        try:
            request = EmbeddedRequest.decode(
                b"".join(self._body), max_body=params.max_body, max_header=params.max_header
            )
        except AdminProtocolError as exc:
            return EmbeddedResponse(exc.status).encode()
        self.commands_run += 1
        try:
            return self._executor.execute(request, now).encode()
        except Exception:  # an executor bug answers 500 rather than ending the session
            logger.exception("admin command %s %s failed", request.method, request.target[:200])
            return EmbeddedResponse(500).encode()

    def _fail(self, reason: str) -> None:
        if self._outcome is None:
            self._out.clear()
            self._finish(Outcome.FAILED, reason)

    def _finish(self, outcome: Outcome, reason: str | None) -> None:
        self._outcome = outcome
        self.failure = reason
        self._body = []
        if reason is None:
            logger.debug("admin session done: %d commands", self.commands_run)
        else:
            logger.info("admin session failed after %d commands: %s", self.commands_run, reason)
        self._executor.end(outcome is Outcome.DONE)
