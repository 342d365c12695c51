"""The card side of one HTTP/1.1 connection (one BIP channel), sans-IO, on top of h11.

The SCWS shell feeds received bytes with `receive_data(data, now)`, sends what
`data_to_send()` returns, closes the channel once `should_close` is true and everything was
sent, and arms one timer from `get_timer()`, calling `handle_timer(now)` when it fires.
Nothing here raises on bad input: every problem becomes an HTTP error response."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

import h11

from openscws.errors import HttpError, StoreError
from openscws.http._dates import DateCache
from openscws.http.limits import CardLimits, RamBudget
from openscws.scws.apps import Request, Response
from openscws.scws.guard import GUESSES, PER_CONNECTION

if TYPE_CHECKING:
    from openscws.scws.site import Handler, Site

__all__ = ["HttpServerConnection"]

logger = logging.getLogger(__name__)
access_log = logging.getLogger("openscws.access")
"""One line per response: scheme, method, target, status."""

_REASONS: Final = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
# Framing and connection-management fields are the engine's business, not the app's.
_ENGINE_FIELDS: Final = frozenset({"content-length", "transfer-encoding", "connection", "date"})
_NO_BODY_STATUS: Final = frozenset({204, 304})
_VERSIONS: Final = {b"1.1": "1.1", b"1.0": "1.0"}
_DATES = DateCache()
_OUTPUT_HIGH: Final = 64 * 1024
"""Output queued past which pipelined requests wait to be answered until it is sent."""
_INPUT_HIGH: Final = 16 * 1024
"""Unparsed input past which the connection asks for no more (`wants_input`)."""
_SPLIT_PIECES: Final = 4
"""A streamed chunk's rest past `data_to_send`'s limit is cut into at most this many
limit-sized pieces of its own (a bigger rest is kept as one)."""


_ENCODED: dict[tuple[tuple[str, str], ...], list[tuple[bytes, bytes]]] = {}


def _encode_headers(fields: tuple[tuple[str, str], ...]) -> list[tuple[bytes, bytes]]:
    """Response fields as bytes, minus the engine's own; memoised (static resources reuse
    one tuple per resource, so their fields are encoded once)."""
    try:
        encoded = _ENCODED.get(fields)
    except TypeError:  # unhashable: an application passed a list
        encoded = None
    if encoded is None:
        encoded = [
            (name.encode("ascii"), value.encode("latin-1"))
            for name, value in fields
            if name.lower() not in _ENGINE_FIELDS
        ]
        if isinstance(fields, tuple):
            if len(_ENCODED) >= 256:
                _ENCODED.clear()
            _ENCODED[fields] = encoded
    return encoded


def _with_close(head: bytes) -> bytes:
    """A response head (bytes, CRLF-terminated) saying `Connection: close`."""
    if b"\r\nConnection: " in head:
        start = head.index(b"\r\nConnection: ") + 2
        end = head.index(b"\r\n", start)
        return head[:start] + b"Connection: close" + head[end:]
    return head[:-2] + b"Connection: close\r\n\r\n"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def split_target(target: str) -> tuple[str, str]:
    """(decoded path, raw query) of a request-target (RFC 9112 §3.2); raises `HttpError(400)`
    for forms a server cannot take. The asterisk-form gives ("*", "")."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif target == "*":
        return "*", ""
    else:
        lowered = target[:8].lower()
        if lowered.startswith("http://") or lowered.startswith("https://"):
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            query_at = rest.find("?")
            if slash < 0 or (0 <= query_at < slash):
                rest_path = "/" + (rest[query_at:] if query_at >= 0 else "")
            else:
                rest_path = rest[slash:]
            path, _, query = rest_path.partition("?")
        else:
            raise HttpError(400, "unsupported request-target form")
    if "%" in path:
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "request path is not UTF-8") from None
        if "\x00" in path or not path.startswith("/"):
            raise HttpError(400, "bad request path")
    if "/." in path:
        path = _remove_dot_segments(path)
    check_path(path)
    return path, query


MAX_PATH_BYTES: Final = 1024
"""Longest decoded request path a card resource can have (the card image's limit)."""
_FORBIDDEN_IN_PATH: Final = frozenset("\\?#") | frozenset(map(chr, [*range(0x20), 0x7F]))


def check_path(path: str) -> None:
    """Raises `HttpError(400)` unless `path` (decoded, dot segments removed) can name a card
    resource: at most 1024 UTF-8 bytes, no empty segment (a single trailing "/" aside), no
    backslash, control character, "?" or "#". Such a path never reaches the site or its
    store, so a browser's `//` or an encoded `%23` is a plain client error."""
    if len(path) > MAX_PATH_BYTES // 4 and len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise HttpError(400, f"request path over {MAX_PATH_BYTES} bytes")
    if "//" in path or not _FORBIDDEN_IN_PATH.isdisjoint(path):
        raise HttpError(400, "request path is not a resource path")


class HttpServerConnection:
    """One HTTP/1.1 server connection of the card's SCWS.

    Persistent connections and pipelining are supported (HTTP/1.1 by default, HTTP/1.0 with
    `Connection: keep-alive` for responses of known length). Request bodies are buffered
    against the card-wide `RamBudget`; responses to pipelined requests go out in order.
    `now` (optional) starts the idle timer before the first byte arrives."""

    def __init__(
        self,
        site: Site,
        limits: CardLimits,
        budget: RamBudget,
        *,
        scheme: str = "http",
        now: float | None = None,
    ) -> None:
        self._site = site
        self._limits = limits
        self._budget = budget
        self._scheme = scheme
        self._server = site.server_name.encode("ascii", "replace")
        self._conn = self._new_h11()
        self._out: list[bytes | memoryview] = []
        self._now = 0.0 if now is None else now
        self._last_rx = now
        self._request_start: float | None = None  # first byte of the request being received
        self._closing = False  # no more requests: close once the output is sent
        self._close_after = False  # the next response says Connection: close, then close
        self._held_input = False  # requests wait in h11 until the output queue drains
        self._last_head: bytes | None = None  # of the latest response, as queued
        self._eof = False
        # the request being read
        self._request: Request | None = None
        self._line: tuple[bytes, bytes] = (b"-", b"-")  # method and target, for the access log
        self._handler: Handler | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._reserved = 0
        self._chunked = False
        self._discarding = False  # answered already; reading and dropping the body
        self._discarded = 0
        self._keep10 = False  # HTTP/1.0 request with Connection: keep-alive
        self._is_head = False
        # a streamed response being sent
        self._stream: Iterator[bytes] | None = None
        self._held = 0  # bytes received while streaming
        self._stop_reading = False
        self._auth_failures = 0

    def _new_h11(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._limits.max_header_bytes)

    # -- public API ---------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes received from the client; `b""` means it closed its sending side."""
        self._now = now
        if self._eof:
            return
        if data:
            self._last_rx = now
            if self._request_start is None:
                self._request_start = now
        else:
            self._eof = True
        if self._closing:
            return
        if self._stream is not None:
            # Busy sending a streamed response: hold pipelined input in h11, bounded.
            self._held += len(data)
            if self._held > self._limits.max_pipeline_bytes:
                self._stop_reading = True
            if not self._stop_reading:
                self._conn.receive_data(data)
            return
        self._conn.receive_data(data)
        self._process()

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Bytes to send to the client: all of them, or at most `limit` (a streamed body is
        then only pulled from the application until about `limit` bytes are ready, and a
        stored body is handed out in `limit`-sized pieces without copying the rest); call
        again for more. So what the layers below hold per connection (the channel's queue,
        TLS records being built) is bounded by `limit`, not by the response size."""
        if self._held_input and not self._out and self._stream is None:
            self._held_input = False
            self._process()  # pipelined requests held back while the output queue was full
        if self._stream is not None:
            self._pump(limit)
        out = self._out
        if not out:
            return b""
        if limit is None or sum(map(len, out)) <= limit:
            data = b"".join(out)
            out.clear()
            return data
        pieces: list[bytes | memoryview] = []
        room = limit
        while out and room > 0:
            chunk = out[0]
            if len(chunk) <= room:
                pieces.append(chunk)
                room -= len(chunk)
                del out[0]
            else:
                view = memoryview(chunk)
                pieces.append(view[:room])
                out[0] = view[room:]
                room = 0
        return b"".join(pieces)

    @property
    def should_close(self) -> bool:
        """True once the connection is to be closed after `data_to_send()` is drained."""
        return self._closing

    @property
    def wants_input(self) -> bool:
        """False while pipelined requests wait for the output to drain, or many bytes of
        them wait unparsed: no more should be fed until they are answered."""
        return not self._held_input and len(self._conn.trailing_data[0]) < _INPUT_HIGH

    @property
    def idle(self) -> bool:
        """True between requests: nothing half-received, nothing left to answer or send."""
        return self._stream is None and not self._out and not self._in_progress()

    def get_timer(self) -> float | None:
        """When `handle_timer` should next be called (unix seconds), or None.

        A request must arrive whole (head and body) within `request_timeout` of its first
        byte: a total deadline, so a client sending a byte a second cannot hold the
        connection. While a response goes out there is no timer; between requests the
        connection may stay `idle_timeout`."""
        if self._closing or self._stream is not None or self._last_rx is None:
            return None
        if self._receiving():
            start = self._request_start if self._request_start is not None else self._last_rx
            return start + self._limits.request_timeout
        if self._in_progress() or self._out:
            return None  # the request is in; its response is being sent
        return self._last_rx + self._limits.idle_timeout

    def handle_timer(self, now: float) -> None:
        """Close an idle connection, or answer 408 to a stalled request and close."""
        self._now = now
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self._receiving() and self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._respond_error(HttpError(408, "request timed out"), close=True)
        self._close()

    def shutdown(self) -> None:
        """Close after what is queued (the card needs the channel for another client)."""
        self._closing = True

    def close_after_response(self) -> None:
        """The card wants the channel back: the next response says `Connection: close` and
        the connection closes after it (requests pipelined behind it are not answered, as
        RFC 9112 §9.6 allows). A response already complete in the queue is the last one."""
        if self._closing:
            return
        if self._out and not self._in_progress() and self._stream is None:
            # The last response is complete and queued: if its head is unsent, it says so.
            self._closing = True
            head = self._last_head
            for i, piece in enumerate(self._out):
                if piece is head:
                    self._out[i] = _with_close(head)
                    break
            return
        self._close_after = True

    def close(self) -> None:
        """The channel is gone: give back the RAM held for this connection."""
        self._close()
        if self._stream is not None:
            self._drop_stream()

    # -- input --------------------------------------------------------------------------------

    def _in_progress(self) -> bool:
        conn = self._conn
        return conn.their_state is not h11.IDLE or bool(conn.trailing_data[0])

    def _receiving(self) -> bool:
        """A request is partly in: its head, or its body, is still arriving."""
        conn = self._conn
        theirs = conn.their_state
        if theirs is h11.IDLE:
            return bool(conn.trailing_data[0])
        return theirs is h11.SEND_BODY

    def _out_size(self) -> int:
        return sum(map(len, self._out))

    def _process(self) -> None:
        while not self._closing and self._stream is None:
            if self._out and self._out_size() > _OUTPUT_HIGH and self._conn.our_state is h11.IDLE:
                # A client that pipelines and does not read: answer the rest once the
                # responses already queued are sent, so the output held stays bounded.
                self._held_input = True
                return
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._on_protocol_error(exc)
                return
            if isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
            else:  # NEED_DATA or PAUSED
                return

    def _on_protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        # The framing is lost: answer if a response can still start, then close.
        if self._conn.our_state is h11.IDLE:
            self._is_head = False
            self._keep10 = False
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status = exc.error_status_hint
            self._respond_error(HttpError(status, str(exc)), close=True)
        self._close()

    def _on_request(self, event: h11.Request) -> None:
        limits = self._limits
        raw_headers = tuple(event.headers)
        content_length = -1
        chunked = False
        keep10 = False
        version = _VERSIONS.get(event.http_version, "1.1")
        head_size = len(event.method) + len(event.target) + 12
        for name, value in raw_headers:
            head_size += len(name) + len(value) + 4
            if name == b"content-length":
                content_length = int(value)  # h11 has validated it
            elif name == b"transfer-encoding":
                chunked = True  # h11 accepts only "chunked"
            elif name == b"connection" and version == "1.0":
                tokens = {t.strip() for t in value.lower().split(b",")}
                keep10 = b"keep-alive" in tokens and b"close" not in tokens
        self._keep10 = keep10
        self._chunked = chunked
        self._is_head = event.method == b"HEAD"
        self._line = (event.method, event.target)
        has_body = chunked or content_length > 0
        method = event.method.decode("ascii")
        target_bytes = event.target
        if head_size > limits.max_header_bytes:
            # h11 bounds only incomplete heads; a complete one can arrive in one piece.
            self._respond_error(HttpError(431, "request head too large"), close=True)
            self._close()
            return
        try:
            if len(target_bytes) > limits.max_request_target:
                raise HttpError(414, "request-target too long")
            if not chunked and content_length < 0 and method in ("POST", "PUT"):
                raise HttpError(411, "Content-Length required")
            if content_length > limits.max_body:
                raise HttpError(413, f"body over {limits.max_body} bytes")
            try:
                target = target_bytes.decode("ascii")
            except UnicodeDecodeError:
                raise HttpError(400, "request-target is not ASCII") from None
            path, query = split_target(target)
            request = Request(method, target, path, query, raw_headers, b"", version, self._scheme)
            prepared = self._prepare(request)
        except HttpError as exc:
            # Keep the connection only if the rest of the request can be skipped cheaply.
            close = exc.status in (411, 413) or (
                has_body and (chunked or self._conn.client_is_waiting_for_100_continue)
            )
            if exc.status == 401 and exc.reason in GUESSES:
                # Wrong passwords: a few per connection (scws.guard), then it is closed.
                self._auth_failures += 1
                close = close or self._auth_failures >= PER_CONNECTION
            self._respond_error(exc, close=close)
            self._discarding = True
            return
        if isinstance(prepared, Response):
            close = has_body and (chunked or self._conn.client_is_waiting_for_100_continue)
            self._respond(prepared, close=close)
            self._discarding = True
            return
        if content_length > 0:
            if not self._budget.reserve(content_length):
                self._respond_busy()
                return
            self._reserved = content_length
        self._request = request
        self._handler = prepared
        if self._conn.client_is_waiting_for_100_continue:
            self._out.append(
                self._conn.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )

    def _prepare(self, request: Request) -> Response | Handler:
        """`Site.prepare`, with whatever else it raises (a store that cannot read a resource,
        an application's bug) answered 500 and logged: nothing leaves the engine."""
        try:
            return self._site.prepare(request, self._now)
        except HttpError:
            raise
        except StoreError as exc:
            logger.warning("card storage error on %s %s: %s", request.method, request.path, exc)
            raise HttpError(500, "card storage error") from None
        except Exception:
            logger.exception("card site failed on %s %s", request.method, request.path)
            raise HttpError(500, "site error") from None

    def _respond_busy(self) -> None:
        retry = str(self._limits.retry_after)
        self._respond_error(
            HttpError(503, "card RAM budget exhausted", (("Retry-After", retry),)), close=True
        )
        self._discarding = True
        self._close()

    def _on_data(self, data: bytes) -> None:
        n = len(data)
        if self._discarding:
            self._discarded += n
            if self._discarded > self._limits.max_body:
                self._close()
            return
        total = self._body_len + n
        if total > self._limits.max_body:
            self._release()
            self._respond_error(HttpError(413, "request body too large"), close=True)
            self._close()
            return
        if self._chunked:
            if not self._budget.reserve(n):
                self._release()
                self._respond_busy()
                return
            self._reserved += n
        self._body.append(data)
        self._body_len = total

    def _on_end(self) -> None:
        if self._discarding:
            self._discarding = False
            self._discarded = 0
            self._after_response()
            return
        handler, request = self._handler, self._request
        if handler is None or request is None:  # pragma: no cover - h11 orders the events
            self._close()
            return
        if self._body:
            body = bytes(self._body[0]) if len(self._body) == 1 else b"".join(self._body)
            request = Request(
                request.method,
                request.target,
                request.path,
                request.query,
                request.raw_headers,
                body,
                request.http_version,
                request.scheme,
                request.user,
            )
        self._handler = None
        self._request = None
        try:
            response = handler(request, self._now)
        except HttpError as exc:
            response = self._site.error_response(exc)
        except Exception:
            logger.exception("card application failed on %s %s", request.method, request.path)
            response = self._site.error_response(HttpError(500, "application error"))
        finally:
            self._release()
        self._respond(response)

    def _release(self) -> None:
        if self._reserved:
            self._budget.release(self._reserved)
            self._reserved = 0
        self._body = []
        self._body_len = 0

    def _close(self) -> None:
        self._closing = True
        self._release()
        self._handler = None
        self._request = None

    # -- output -------------------------------------------------------------------------------

    def _respond_error(self, error: HttpError, *, close: bool) -> None:
        self._respond(self._site.error_response(error), close=close)

    def _respond(self, response: Response, *, close: bool = False, fallback: bool = False) -> None:
        conn = self._conn
        status = response.status
        if access_log.isEnabledFor(logging.INFO):
            method, target = self._line
            access_log.info(
                "%s %s %s %d",
                self._scheme,
                method.decode("latin-1"),
                target[:200].decode("latin-1"),
                status,
            )
        headers: list[tuple[bytes, bytes]] = [
            (b"Date", _DATES.get(self._now)),
            (b"Server", self._server),
        ]
        body = response.body
        payload = b""
        stream: Iterator[bytes] | None = None
        try:
            headers += _encode_headers(response.headers)
            if isinstance(body, bytes | bytearray | memoryview):
                payload = bytes(body)
                if status not in _NO_BODY_STATUS:
                    headers.append((b"Content-Length", str(len(body)).encode("ascii")))
            else:
                stream = iter(body)
        except (UnicodeError, TypeError, AttributeError):
            self._invalid_response(status, close=close, fallback=fallback)
            return
        no_body = self._is_head or status in _NO_BODY_STATUS
        keep10 = False
        if self._close_after:
            close = True
        if close:
            self._keep10 = False
            headers.append((b"Connection", b"close"))
        elif self._keep10:
            # HTTP/1.0 keep-alive needs a length; a streamed body is close-delimited.
            keep10 = self._keep10 = stream is None or no_body
        reason = response.reason.encode("latin-1") if response.reason else _REASONS.get(status)
        try:
            event = h11.Response(status_code=status, headers=headers, reason=reason or b"")
        except (h11.LocalProtocolError, UnicodeError, TypeError):
            if stream is not None:
                self._drop_stream(stream)
            self._invalid_response(status, close=close, fallback=fallback)
            return
        head = conn.send(event)
        if keep10:
            head = head.replace(b"\r\nConnection: close\r\n", b"\r\nConnection: keep-alive\r\n", 1)
        out = self._out
        out.append(head)
        self._last_head = head
        if no_body:
            if stream is not None:
                self._drop_stream(stream)
        elif stream is not None:
            self._stream = stream
            self._held = 0
            return
        elif payload:
            out.append(conn.send(h11.Data(data=payload)))
        out.append(conn.send(h11.EndOfMessage()))
        self._after_response()

    def _invalid_response(self, status: int, *, close: bool, fallback: bool) -> None:
        if fallback:  # pragma: no cover - our own error pages are valid
            raise RuntimeError("the site's error response is invalid")
        logger.error("invalid response from the application (status %s)", status)
        error = self._site.error_response(HttpError(500, "invalid response"))
        self._respond(error, close=close, fallback=True)

    def _drop_stream(self, stream: Iterator[bytes] | None = None) -> None:
        stream = stream if stream is not None else self._stream
        self._stream = None
        close = getattr(stream, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                logger.exception("closing a streamed body failed")

    def _pump(self, limit: int | None) -> None:
        out = self._out
        size = sum(map(len, out)) if limit is not None else 0
        while self._stream is not None:
            if limit is not None and size >= limit:
                return
            try:
                chunk = next(self._stream)
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(f"streamed body yielded {type(chunk).__name__}, not bytes")
            except StopIteration:
                self._stream = None
                out.append(self._conn.send(h11.EndOfMessage()))
                self._after_response()
                if self._stop_reading:
                    self._close()
                elif not self._closing:
                    self._process()
                continue
            except Exception:
                logger.exception("streamed body failed; aborting the response")
                self._stream = None
                self._conn.send_failed()
                self._close()
                return
            if chunk:
                data = self._conn.send(h11.Data(data=bytes(chunk)))
                size += len(data)
                if limit is not None and size > limit:
                    # The chunk crosses `limit`: what is past it waits for the next calls as
                    # bytes of its own, in `limit`-sized pieces that they take whole (a few
                    # at most; a bigger rest stays one piece), so no view keeps the whole
                    # chunk (the application's piece, framed) alive between calls.
                    view = memoryview(data)
                    cut = len(data) - (size - limit)
                    out.append(view[:cut])
                    rest = len(data) - cut
                    step = limit if rest <= _SPLIT_PIECES * limit else rest
                    out.extend(bytes(view[at : at + step]) for at in range(cut, len(data), step))
                else:
                    out.append(data)

    def _after_response(self) -> None:
        """The response is out: start the next cycle, switch connections or close."""
        conn = self._conn
        ours, theirs = conn.our_state, conn.their_state
        if ours is h11.DONE:
            if theirs is h11.DONE:
                conn.start_next_cycle()
                self._is_head = False
                self._keep10 = False
                self._last_rx = self._now
                self._request_start = self._now if conn.trailing_data[0] else None
                if self._close_after:
                    self._close()  # a streamed response whose head went out before
            # else: still reading (and dropping) the request body
            return
        if ours is h11.MUST_CLOSE and self._keep10 and not self._closing:
            if theirs is h11.SEND_BODY:
                return  # drop the rest of the body first
            if theirs is h11.MUST_CLOSE:
                # h11 has no HTTP/1.0 keep-alive: carry on with a fresh parser.
                data, closed = conn.trailing_data
                self._conn = self._new_h11()
                self._is_head = False
                self._keep10 = False
                self._last_rx = self._now
                self._request_start = self._now if data else None
                if data:
                    self._conn.receive_data(data)
                if closed:
                    self._conn.receive_data(b"")
                return
        self._close()
