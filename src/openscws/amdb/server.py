"""The administration server's side of GP Amd B "RAM over HTTP" for the SCWS (the reverse-HTTP
exchange and its headers, Amd B §3.4), sans-IO: what the server's shell (sockets, TLS, the
command queue in the database) needs to read a card's POST and answer it.

Two levels: `parse_card_post` / `command_response` / `end_response` for a shell whose HTTP
server is someone else's (it hands over method, target, fields and the whole body), and
`ServerExchange`, one connection's worth of HTTP over h11 (Expect: 100-continue, chunked
POSTs, limits) for a shell that only moves bytes. Every refusal is an `AdminProtocolError`
carrying the status to answer."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

import h11

from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.amdb.wire import (
    PROTOCOL,
    SCWS_HTTP_REQUEST,
    AdminHeader,
    Payload,
    ScriptStatus,
    classify,
    is_request_target,
)
from openscws.errors import AdminProtocolError

__all__ = [
    "CardPost",
    "Closed",
    "ExchangeEvent",
    "RawHeaders",
    "ServerExchange",
    "command_response",
    "end_response",
    "parse_card_post",
]

logger = logging.getLogger(__name__)

MAX_BODY: Final = 128 * 1024
"""Default bound on a POST body (an embedded response with a resource read back)."""
MAX_HEADER: Final = 8192
"""Default bound on a head, outer or embedded."""

RawHeaders = Iterable[tuple[bytes | str, bytes | str]]
"""Header fields as any HTTP server library gives them."""

_PROTOCOL_FIELD: Final = (AdminHeader.PROTOCOL.encode("ascii"), PROTOCOL.encode("ascii"))
_ALLOW_POST: Final = (("Allow", "POST"),)
_REASONS: Final = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_RESUME: Final = {"true": True, "false": False}
_STATUSES: Final = {s.value: s for s in ScriptStatus}
_H_PROTOCOL: Final = AdminHeader.PROTOCOL.lower()
_H_FROM: Final = AdminHeader.FROM.lower()
_H_RESUME: Final = AdminHeader.RESUME.lower()
_H_STATUS: Final = AdminHeader.SCRIPT_STATUS.lower()


@dataclass(frozen=True, slots=True)
class CardPost:
    """One POST of the card: who, where, and the result of the previous command."""

    uri: str
    """The request-target: the admin URI, or the X-Admin-Next-URI the server gave."""
    agent_id: str
    """X-Admin-From."""
    resume: bool
    """X-Admin-Resume: true (the card retries a session that broke)."""
    script_status: ScriptStatus | None
    """None on the first POST of a session."""
    embedded: EmbeddedResponse | None
    """The SCWS's answer to the previous command (script status ok), else None."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: the card closed it, or its POST was refused (`error`, already
    answered) and the exchange closes."""

    reason: str
    error: AdminProtocolError | None = None


ExchangeEvent = CardPost | Closed


@dataclass(frozen=True, slots=True)
class _Head:
    uri: str
    agent_id: str
    resume: bool
    script_status: ScriptStatus | None
    content_type: str | None


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _parse_head(method: bytes | str, target: bytes | str, headers: RawHeaders) -> _Head:
    if _text(method) != "POST":
        raise AdminProtocolError(405, "the card only POSTs", _ALLOW_POST)
    uri = _text(target)
    if not is_request_target(uri):
        raise AdminProtocolError(400, "bad request-target")
    fields: dict[str, str] = {}
    for name, value in headers:
        fields.setdefault(_text(name).lower(), _text(value).strip())
    if fields.get(_H_PROTOCOL, "").lower() != PROTOCOL:
        raise AdminProtocolError(400, f"X-Admin-Protocol is not {PROTOCOL}")
    agent_id = fields.get(_H_FROM, "")
    if not agent_id:
        raise AdminProtocolError(400, "X-Admin-From missing")
    resume = _RESUME.get(fields.get(_H_RESUME, "false").lower())
    if resume is None:
        raise AdminProtocolError(400, "X-Admin-Resume is neither true nor false")
    status_text = fields.get(_H_STATUS)
    status = None
    if status_text is not None:
        status = _STATUSES.get(status_text.lower())
        if status is None:
            raise AdminProtocolError(400, f"unknown X-Admin-Script-Status {status_text[:40]!r}")
    content_type = fields.get("content-type")
    if content_type is not None and classify(content_type) is not Payload.SCWS_RESPONSE:
        raise AdminProtocolError(415, f"Content-Type {content_type[:80]!r} is not an SCWS result")
    return _Head(uri, agent_id, resume, status, content_type)


def _with_body(head: _Head, body: bytes, max_body: int, max_header: int) -> CardPost:
    status = head.script_status
    embedded = None
    if status is ScriptStatus.OK or (status is None and body):
        if not body:
            raise AdminProtocolError(400, "script status ok without a result")
        if head.content_type is None:
            raise AdminProtocolError(415, "a result without Content-Type")
        embedded = EmbeddedResponse.decode(body, max_body=max_body, max_header=max_header)
    return CardPost(head.uri, head.agent_id, head.resume, status, embedded)


def parse_card_post(
    method: bytes | str,
    target: bytes | str,
    headers: RawHeaders,
    body: bytes,
    *,
    max_body: int = MAX_BODY,
    max_header: int = MAX_HEADER,
) -> CardPost:
    """Read one complete POST of the card. Raises `AdminProtocolError`: 405 (not POST), 400
    (X-Admin-* missing or wrong, malformed embedded response), 415 (a body that is not an
    SCWS response), 413 / 431 (embedded message over the limits)."""
    return _with_body(_parse_head(method, target, headers), body, max_body, max_header)


def command_response(
    req: EmbeddedRequest, next_uri: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, fields, body) of the answer carrying command `req`; the card POSTs its
    result to `next_uri`. Content-Length included. ValueError if either cannot be sent."""
    if not is_request_target(next_uri):
        raise ValueError(f"next URI cannot go on a request line: {next_uri!r}")
    body = req.encode()
    return (
        200,
        [
            _PROTOCOL_FIELD,
            (b"Content-Type", SCWS_HTTP_REQUEST.encode("ascii")),
            (AdminHeader.NEXT_URI.encode("ascii"), next_uri.encode("ascii")),
            (b"Content-Length", b"%d" % len(body)),
        ],
        body,
    )


def end_response() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, fields, body) of the answer that ends the session: 204 No Content."""
    return 204, [_PROTOCOL_FIELD], b""


class ServerExchange:
    """One connection of the administration server, sans-IO over h11.

    Feed the card's bytes to `receive_data` (`b""` at EOF); it returns the events: a
    `CardPost` per complete POST, `Closed` at the end. Answer each `CardPost` with
    `send_command` or `send_end` (or `send_error`), send `data_to_send()` and close once
    `should_close` is true. The card never sends a POST before the previous answer, so input
    that arrives early waits in h11 until `events()` is called after the answer.

    Bad POSTs are answered here (status of the `AdminProtocolError`, Connection: close) and
    reported as `Closed(reason, error)`; so are bodies over `max_body` (413, before they are
    read when Content-Length says so, without sending 100 Continue)."""

    def __init__(self, *, max_body: int = MAX_BODY, max_header: int = MAX_HEADER) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header)
        self._max_body = max_body
        self._max_header = max_header
        self._out = bytearray()
        self._head: _Head | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._pending = False  # a CardPost is out, its answer not yet sent
        self._closing = False
        self._done = False  # Closed reported

    # -- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ExchangeEvent]:
        """Feed the card's bytes (`b""`: it closed); the events they complete."""
        if self._done:
            return []
        self._conn.receive_data(data)
        if not data and self._pending:  # gone while the shell was choosing its answer
            events: list[ExchangeEvent] = []
            self._report(Closed("card closed the connection"), events)
            return events
        return self.events()

    def events(self) -> list[ExchangeEvent]:
        """Events from input already received (after an answer, for early input)."""
        events: list[ExchangeEvent] = []
        conn = self._conn
        while not self._done and not self._pending:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(AdminProtocolError(exc.error_status_hint, str(exc)), events)
                break
            if isinstance(event, h11.Request):
                self._on_request(event, events)
            elif isinstance(event, h11.Data):
                self._on_data(event.data, events)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end(events)
            elif isinstance(event, h11.ConnectionClosed):
                self._report(Closed("card closed the connection"), events)
            else:  # NEED_DATA, PAUSED
                break
        return events

    # -- output -----------------------------------------------------------------------------

    def send_command(self, req: EmbeddedRequest, next_uri: str) -> None:
        """Answer the pending POST with command `req`; the card POSTs its result to
        `next_uri`."""
        self._respond(*command_response(req, next_uri))

    def send_end(self) -> None:
        """Answer the pending POST with 204: the session is over; close after sending."""
        self._respond(*end_response())
        self._closing = True

    def send_error(self, status: int, reason: str = "") -> None:
        """Answer the pending POST with an error (e.g. 500, 503) and close."""
        if not self._done:
            self._reject(AdminProtocolError(status, reason), [])

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def should_close(self) -> bool:
        return self._closing

    @property
    def awaiting_answer(self) -> bool:
        """A `CardPost` was reported and not answered yet."""
        return self._pending

    # -- internals --------------------------------------------------------------------------

    def _on_request(self, event: h11.Request, events: list[ExchangeEvent]) -> None:
        try:
            head = _parse_head(event.method, event.target, event.headers)
            for name, value in event.headers:
                if name == b"content-length" and int(value) > self._max_body:
                    raise AdminProtocolError(413, f"body over {self._max_body} bytes")
        except AdminProtocolError as exc:
            self._reject(exc, events)
            return
        self._head = head
        self._body = []
        self._size = 0
        if self._conn.client_is_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self._out += self._conn.send(go_on) or b""

    def _on_data(self, data: bytes, events: list[ExchangeEvent]) -> None:
        self._size += len(data)
        if self._size > self._max_body:
            self._reject(AdminProtocolError(413, f"body over {self._max_body} bytes"), events)
            return
        self._body.append(data)

    def _on_end(self, events: list[ExchangeEvent]) -> None:
        head = self._head
        if head is None:  # pragma: no cover - h11 orders the events
            return
        body = b"".join(self._body)
        self._head, self._body = None, []
        try:
            post = _with_body(head, body, self._max_body, self._max_header)
        except AdminProtocolError as exc:
            self._reject(exc, events)
            return
        self._pending = True
        events.append(post)

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        if not self._pending:
            raise RuntimeError("no card POST is waiting for an answer")
        self._pending = False
        conn = self._conn
        out = self._out
        reason = _REASONS.get(status, b"")
        out += conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self._closing = True

    def _reject(self, error: AdminProtocolError, events: list[ExchangeEvent]) -> None:
        conn = self._conn
        self._pending = False
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            headers = [
                _PROTOCOL_FIELD,
                *((n.encode("ascii"), v.encode("latin-1")) for n, v in error.headers),
                (b"Connection", b"close"),
                (b"Content-Length", b"0"),
            ]
            out = self._out
            status = error.status if 200 <= error.status <= 999 else 500
            reason = _REASONS.get(status, b"")
            event = h11.Response(status_code=status, headers=headers, reason=reason)
            out += conn.send(event) or b""
            out += conn.send(h11.EndOfMessage()) or b""
        logger.info("refused a card POST: %d %s", error.status, error.reason)
        self._report(Closed(error.reason, error), events)

    def _report(self, closed: Closed, events: list[ExchangeEvent]) -> None:
        self._closing = True
        self._done = True
        self._head, self._body = None, []
        events.append(closed)
