"""A small, strict HTTP/1.1 message codec (RFC 9112), sans-IO, for one end of one connection:
the push path's small server and client (`openscws.aio.http_small`).

The shell feeds what it receives with `receive_data(data)` (b"" for the peer's end of
stream), takes events with `next_event()` until `NEED_DATA` (or `PAUSED`: a message was read
and the local side has not answered it yet), and sends what `response(...)` / `request(...)`
return. A server answers each request in order; its answer either keeps the connection
(`IDLE` again: a pipelined request already received comes next) or ends it.

What it reads:

* the request line / status line (HTTP/1.1 and HTTP/1.0; another HTTP/1.x version or 2+:
  505 on a server), header fields as RFC 9112 §5 has them: a token name, no whitespace before
  the colon, no obs-fold, no CR, LF or NUL in a value; the head (start line and fields) at
  most `max_head` bytes (431 on a server); an HTTP/1.1 request names exactly one Host
  (RFC 9112 §3.2);
* bodies by Content-Length (one value, repeated equal values allowed) or by
  `Transfer-Encoding: chunked` (RFC 9112 §7.1: chunk extensions ignored, trailer fields
  skipped); both together are refused (RFC 9112 §6.3); another transfer coding is 501; a
  request with neither has no body, a response with neither ends when the connection does
  (none for 1xx, 204, 304 or an answer to HEAD, RFC 9112 §6.3);
* at most `max_body` bytes of body, checked as they come (413 on a server, before the body
  is read, when Content-Length says so already);
* keep-alive (RFC 9112 §9.3): HTTP/1.1 keeps unless `Connection: close`, HTTP/1.0 closes
  unless `Connection: keep-alive`.

Every refusal is a `MessageError` carrying the HTTP status a server answers it with; nothing
else escapes from bad input. Its life cycle is the table `TRANSITIONS` (role, state, step)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, auto
from http import HTTPStatus
from typing import Final

from openscws.errors import HttpError
from openscws.statetable import StateTable, TableEnum

__all__ = [
    "CLOSED",
    "END",
    "MAX_HEAD",
    "NEED_DATA",
    "PAUSED",
    "TRANSITIONS",
    "Closed",
    "Codec",
    "Data",
    "End",
    "Event",
    "MessageError",
    "RequestHead",
    "ResponseHead",
    "Role",
    "State",
    "Step",
    "Wait",
]

MAX_HEAD: Final = 16384
"""Default bound on a message head (start line, fields and the empty line), in bytes."""
_MAX_CHUNK_LINE: Final = 1024
"""Bound on a chunk-size line with its extensions (RFC 9112 §7.1.1)."""
_MAX_DIGITS: Final = 18
"""Longest Content-Length / chunk-size accepted (anything longer is over any body cap)."""


class MessageError(HttpError):
    """An HTTP message this end refuses: `status` is what a server answers it with (400
    malformed, 413 body too large, 431 head too large, 501 unknown transfer coding, 505
    version; 500 when the local side misuses the codec)."""


class Role(TableEnum):
    SERVER = auto()
    """This end reads requests and writes responses."""
    CLIENT = auto()
    """This end writes requests and reads responses."""


class State(TableEnum):
    IDLE = auto()
    """Between messages: a server waits for a request head; a client may send a request."""
    SENT = auto()
    """Client: the request is sent, its response head not yet read."""
    BODY = auto()
    """The peer's message head was read; its body is being read."""
    DONE = auto()
    """The peer's message was read whole; a server answers it, a client may start over."""
    CLOSED = auto()
    """The connection ends: the peer closed it, or a message said so."""
    ERROR = auto()
    """The peer broke the protocol; `next_event` raises that `MessageError` again."""


class Step(TableEnum):
    HEAD = auto()
    """A request or (final) response head was read."""
    INFO = auto()
    """An interim (1xx) response head was read; the final one follows (RFC 9110 §15.2)."""
    DATA = auto()
    END = auto()
    """The peer's message ended."""
    EOF = auto()
    """The peer closed its side."""
    SEND_KEEP = auto()
    """This end sent a message that keeps the connection."""
    SEND_CLOSE = auto()
    """This end sent a message after which the connection ends."""
    NEXT = auto()
    """Client: the response was read; the connection is reused for the next request."""
    FAIL = auto()
    """The peer broke the protocol."""


_S, _C = Role.SERVER, Role.CLIENT
_I, _T, _B, _D = State.IDLE, State.SENT, State.BODY, State.DONE
_X, _E = State.CLOSED, State.ERROR

TRANSITIONS: dict[tuple[Role, State, Step], State | None] = {
    (_S, _I, Step.HEAD): _B,
    (_S, _I, Step.EOF): _X,
    (_S, _I, Step.FAIL): _E,
    (_S, _B, Step.DATA): _B,
    (_S, _B, Step.END): _D,
    (_S, _B, Step.FAIL): _E,
    (_S, _D, Step.SEND_KEEP): _I,
    (_S, _D, Step.SEND_CLOSE): _X,
    (_S, _E, Step.SEND_CLOSE): _X,  # the error answer
    (_C, _I, Step.SEND_KEEP): _T,
    (_C, _I, Step.SEND_CLOSE): _T,
    (_C, _I, Step.EOF): _X,  # a kept connection the server closed
    (_C, _I, Step.FAIL): _E,  # bytes nobody asked for
    (_C, _T, Step.INFO): _T,
    (_C, _T, Step.HEAD): _B,
    (_C, _T, Step.EOF): _X,  # closed before answering
    (_C, _T, Step.FAIL): _E,
    (_C, _B, Step.DATA): _B,
    (_C, _B, Step.END): _D,
    (_C, _B, Step.FAIL): _E,
    (_C, _D, Step.NEXT): _I,
    (_C, _D, Step.EOF): _X,
}
"""Every allowed (role, state, step) and the state it leads to."""

LIFE_CYCLE: StateTable[tuple[Role, State, Step], State] = StateTable(
    TRANSITIONS,
    lambda _subject, key: MessageError(
        500, f"{key[0].name.lower()}: {key[2].name} not allowed in {key[1].name}"
    ),
)


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    """"1.1" or "1.0"."""
    headers: tuple[tuple[str, str], ...]
    """Field names in lower case, values as received (latin-1)."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: str
    version: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The message ended."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed the connection between messages."""


class Wait(Enum):
    NEED_DATA = auto()
    """Nothing more until more bytes (or the end of stream) arrive."""
    PAUSED = auto()
    """A message was read: nothing more until this end answers it (server) or starts over
    (client)."""


END: Final = End()
CLOSED: Final = Closed()
NEED_DATA: Final = Wait.NEED_DATA
PAUSED: Final = Wait.PAUSED

type Event = RequestHead | ResponseHead | Data | End | Closed | Wait

# RFC 9110 §5.6.2 token; §5.5 field-value (field-vchar, SP/HTAB inside, no CR/LF/NUL).
_TOKEN_CHARS: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN: Final = re.compile(_TOKEN_CHARS + rb"+")
_FIELD: Final = re.compile(
    rb"(" + _TOKEN_CHARS + rb"+):[ \t]*"
    rb"((?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*"
)
# RFC 9112 §3: method SP request-target SP HTTP-version (target: visible ASCII).
_REQUEST_LINE: Final = re.compile(
    rb"(" + _TOKEN_CHARS + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])"
)
# RFC 9112 §4: HTTP-version SP status-code SP [ reason-phrase ].
_STATUS_LINE: Final = re.compile(
    rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?"
)
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,18})[ \t]*(?:;[\t \x21-\x7e\x80-\xff]*)?")
_TARGET: Final = re.compile(r"[\x21-\x7e]+")
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
_VERSIONS: Final = {(b"1", b"1"): "1.1", (b"1", b"0"): "1.0"}
_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY_STATUS: Final = frozenset({204, 304})
_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "connection"})

_LENGTH, _CHUNKED, _TO_CLOSE = 0, 1, 2
"""Body framings."""
_SIZE, _CHUNK, _CHUNK_END, _TRAILER = 0, 1, 2, 3
"""Where a chunked body is: a chunk-size line, chunk data, the CRLF after it, trailers."""


def _tokens(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    """The comma-separated tokens of every `name` field, in lower case."""
    return [
        token.strip().lower() for key, value in headers if key == name for token in value.split(",")
    ]


def _says_close(headers: tuple[tuple[str, str], ...]) -> bool:
    """Whether outgoing fields (names in any case) say `Connection: close`."""
    return any(
        key.lower() == "connection" and "close" in (t.strip().lower() for t in value.split(","))
        for key, value in headers
    )


def _check_fields(headers: tuple[tuple[str, str], ...]) -> None:
    """Refuses (500: the local side's own mistake) a field this end is about to send that
    would break the message: a name not a token, a value with CR, LF or NUL."""
    for name, value in headers:
        if not _TOKEN.fullmatch(name.encode("latin-1", "replace")):
            raise MessageError(500, f"field name {name!r} is not a token")
        if "\r" in value or "\n" in value or "\0" in value:
            raise MessageError(500, f"field {name}: CR, LF or NUL in its value")


class Codec:
    """One end of one HTTP/1.1 connection (`role`): parses what the peer sends, builds what
    this end sends, and keeps the connection's state (`state`, `keep_alive`)."""

    __slots__ = (
        "_buf",
        "_chunk_part",
        "_eof",
        "_error",
        "_framing",
        "_head_method",
        "_keep",
        "_remaining",
        "_scan",
        "_seen",
        "_version",
        "max_body",
        "max_head",
        "role",
        "state",
    )

    def __init__(self, role: Role, *, max_body: int = 65536, max_head: int = MAX_HEAD) -> None:
        self.role = role
        self.max_body = max_body
        self.max_head = max_head
        self.state = State.IDLE
        self._buf = bytearray()
        self._scan = 0
        self._eof = False
        self._error: MessageError | None = None
        self._framing = _LENGTH
        self._remaining = 0
        self._seen = 0
        self._chunk_part = _SIZE
        self._keep = True
        self._head_method = ""
        self._version = "1.1"

    # -- the table --------------------------------------------------------------------------

    def _step(self, step: Step) -> None:
        self.state = LIFE_CYCLE.next(0, (self.role, self.state, step)) or State.CLOSED

    def _fail(self, status: int, reason: str) -> MessageError:
        error = MessageError(status, reason)
        self._error = error
        self._step(Step.FAIL)
        return error

    # -- reading ----------------------------------------------------------------------------

    @property
    def keep_alive(self) -> bool:
        """Whether the connection outlives the current exchange, as far as the messages so far
        say (either side's `Connection: close`, HTTP/1.0 without keep-alive, a body read to
        the end of the stream)."""
        return self._keep

    @property
    def buffered(self) -> int:
        """Bytes received and not consumed yet (a pipelined request, say)."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" when the peer closed its side."""
        if data:
            if self._eof:
                raise MessageError(500, "data after the end of stream")
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next event from what was received; raises `MessageError` on bad input (and
        again on every call after it)."""
        state = self.state
        if state is State.BODY:
            return self._body()
        if state is (State.IDLE if self.role is Role.SERVER else State.SENT):
            return self._head()
        if state is State.DONE:
            if self.role is Role.SERVER or not self._eof:
                return PAUSED
            self._step(Step.EOF)
            return CLOSED
        if state is State.ERROR:
            assert self._error is not None
            raise self._error
        if state is State.IDLE:  # a client between requests
            if self._buf:
                raise self._fail(400, "bytes received with no request outstanding")
            if self._eof:
                self._step(Step.EOF)
                return CLOSED
            return NEED_DATA
        return CLOSED

    def _head(self) -> Event:
        buf = self._buf
        if self.role is Role.SERVER:
            # RFC 9112 §2.2: empty lines before a request line are ignored.
            while buf[:2] == b"\r\n":
                del buf[:2]
                self._scan = 0
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            if len(buf) > self.max_head:
                raise self._fail(431, f"message head over {self.max_head} bytes")
            if self._eof:
                if not buf:
                    self._step(Step.EOF)
                    return CLOSED
                raise self._fail(400, "connection closed in a message head")
            self._scan = max(0, len(buf) - 3)
            return NEED_DATA
        if end + 4 > self.max_head:
            raise self._fail(431, f"message head over {self.max_head} bytes")
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        self._scan = 0
        headers = self._fields(lines, 1)
        if self.role is Role.SERVER:
            return self._request(lines[0], headers)
        return self._response(lines[0], headers)

    def _fields(self, lines: list[bytes], start: int) -> tuple[tuple[str, str], ...]:
        fields = []
        fullmatch = _FIELD.fullmatch
        for line in lines[start:]:
            match = fullmatch(line)
            if match is None:
                if line[:1] in (b" ", b"\t"):
                    raise self._fail(400, "obs-fold line in the header (RFC 9112 §5.2)")
                raise self._fail(400, f"malformed header field line {line[:40]!r}")
            fields.append((match[1].decode("ascii").lower(), match[2].decode("latin-1")))
        return tuple(fields)

    def _request(self, line: bytes, headers: tuple[tuple[str, str], ...]) -> Event:
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise self._fail(400, f"malformed request line {line[:40]!r}")
        version = _VERSIONS.get((match[3], match[4]))
        if version is None:
            raise self._fail(505, f"HTTP/{match[3].decode()}.{match[4].decode()} not supported")
        if version == "1.1" and sum(1 for key, _ in headers if key == "host") != 1:
            raise self._fail(400, "an HTTP/1.1 request names exactly one Host (RFC 9112 §3.2)")
        self._keep = self._keeps(version, headers)
        self._version = version
        self._frame(headers, version, request=True)
        self._step(Step.HEAD)
        return RequestHead(match[1].decode("ascii"), match[2].decode("ascii"), version, headers)

    def _response(self, line: bytes, headers: tuple[tuple[str, str], ...]) -> Event:
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise self._fail(400, f"malformed status line {line[:40]!r}")
        version = _VERSIONS.get((match[1], match[2]))
        if version is None:
            raise self._fail(505, f"HTTP/{match[1].decode()}.{match[2].decode()} not supported")
        status = int(match[3])
        if status < 100:
            raise self._fail(400, f"status {status}")
        head = ResponseHead(status, (match[4] or b"").decode("latin-1"), version, headers)
        if status < 200:
            if status == 101:
                raise self._fail(400, "101 Switching Protocols was not asked for")
            self._step(Step.INFO)
            return self._head()
        self._keep = self._keep and self._keeps(version, headers)
        if status in _NO_BODY_STATUS or self._head_method == "HEAD":
            self._framing, self._remaining = _LENGTH, 0
        else:
            self._frame(headers, version, request=False)
        self._step(Step.HEAD)
        return head

    @staticmethod
    def _keeps(version: str, headers: tuple[tuple[str, str], ...]) -> bool:
        options = _tokens(headers, "connection")
        if version == "1.1":
            return "close" not in options
        return "keep-alive" in options and "close" not in options

    def _frame(self, headers: tuple[tuple[str, str], ...], version: str, *, request: bool) -> None:
        """The body's framing from the head (RFC 9112 §6.3)."""
        codings = _tokens(headers, "transfer-encoding")
        lengths = _tokens(headers, "content-length")
        self._seen = 0
        if codings:
            if lengths:
                raise self._fail(400, "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)")
            if version == "1.0":
                raise self._fail(400, "Transfer-Encoding in an HTTP/1.0 message (RFC 9112 §6.1)")
            if codings.count("chunked") > 1 or (request and codings[-1] != "chunked"):
                raise self._fail(400, f"Transfer-Encoding {', '.join(codings)} (RFC 9112 §6.3)")
            if codings != ["chunked"]:
                raise self._fail(501, f"transfer coding {', '.join(codings)} not supported")
            self._framing, self._chunk_part = _CHUNKED, _SIZE
            return
        if lengths:
            if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0].encode("latin-1")):
                raise self._fail(400, f"Content-Length {', '.join(lengths)!r}")
            length = int(lengths[0])
            if length > self.max_body:
                raise self._fail(413, f"a body of {length} bytes, over {self.max_body}")
            self._framing, self._remaining = _LENGTH, length
            return
        if request:
            self._framing, self._remaining = _LENGTH, 0
        else:
            self._framing = _TO_CLOSE
            self._keep = False

    def _body(self) -> Event:
        buf = self._buf
        framing = self._framing
        if framing == _LENGTH:
            if self._remaining == 0:
                self._step(Step.END)
                return END
            if not buf:
                if self._eof:
                    raise self._fail(
                        400, f"connection closed with {self._remaining} body bytes due"
                    )
                return NEED_DATA
            part = bytes(buf[: self._remaining])
            del buf[: len(part)]
            self._remaining -= len(part)
            self._step(Step.DATA)
            return Data(part)
        if framing == _TO_CLOSE:
            if buf:
                part = bytes(buf)
                buf.clear()
                return self._count(part)
            if self._eof:
                self._step(Step.END)
                return END
            return NEED_DATA
        return self._chunked()

    def _count(self, part: bytes) -> Event:
        self._seen += len(part)
        if self._seen > self.max_body:
            raise self._fail(413, f"a body over {self.max_body} bytes")
        self._step(Step.DATA)
        return Data(part)

    def _chunked(self) -> Event:
        """RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... last-chunk
        trailer-section CRLF."""
        buf = self._buf
        while True:
            part = self._chunk_part
            if part == _CHUNK:
                if not buf:
                    break
                piece = bytes(buf[: self._remaining])
                del buf[: len(piece)]
                self._remaining -= len(piece)
                if self._remaining == 0:
                    self._chunk_part = _CHUNK_END
                return self._count(piece)
            if part == _CHUNK_END:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise self._fail(400, "chunk data not followed by CRLF")
                del buf[:2]
                self._chunk_part = _SIZE
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                limit = _MAX_CHUNK_LINE if part == _SIZE else self.max_head
                if len(buf) > limit:
                    raise self._fail(400 if part == _SIZE else 431, "chunk line too long")
                break
            line = bytes(buf[:end])
            del buf[: end + 2]
            if part == _SIZE:
                match = _CHUNK_LINE.fullmatch(line)
                if match is None or end > _MAX_CHUNK_LINE:
                    raise self._fail(400, f"malformed chunk-size line {line[:40]!r}")
                size = int(match[1], 16)
                if size == 0:
                    self._chunk_part, self._remaining = _TRAILER, 0
                    continue
                if self._seen + size > self.max_body:
                    raise self._fail(413, f"a body over {self.max_body} bytes")
                self._chunk_part, self._remaining = _CHUNK, size
                continue
            # Trailer fields: checked, counted against the head limit, and skipped.
            if not line:
                self._step(Step.END)
                return END
            self._remaining += end + 2
            if self._remaining > self.max_head:
                raise self._fail(431, f"trailer section over {self.max_head} bytes")
            self._fields([line], 0)
        if self._eof:
            raise self._fail(400, "connection closed in a chunked body")
        return NEED_DATA

    # -- writing ----------------------------------------------------------------------------

    def response(
        self, status: int, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> bytes:
        """Server: the answer to the request just read (state DONE), or to the error just
        raised (state ERROR: always `Connection: close`). `Content-Length`,
        `Transfer-Encoding` and `Connection` are this codec's business: such fields in
        `headers` are dropped, except that a `Connection: close` ends the connection."""
        if self.role is not Role.SERVER:
            raise MessageError(500, "a client sends no responses")
        _check_fields(headers)
        close = not self._keep or self.state is not State.DONE or _says_close(headers)
        self._step(Step.SEND_CLOSE if close else Step.SEND_KEEP)
        out = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"]
        out.extend(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in _FRAMING)
        if close:
            out.append("Connection: close\r\n")
        elif self._version == "1.0":  # keep-alive asked for and granted (RFC 9112 §9.3)
            out.append("Connection: keep-alive\r\n")
        if status in _NO_BODY_STATUS or status < 200:
            body = b""
        else:
            out.append(f"Content-Length: {len(body)}\r\n")
        out.append("\r\n")
        self._keep = not close
        return "".join(out).encode("latin-1") + body

    def request(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes = b""
    ) -> bytes:
        """Client: a request (state IDLE) with its body by Content-Length. Framing fields
        in `headers` are dropped, except that a `Connection: close` ends the connection
        after the answer (and is sent once)."""
        if self.role is not Role.CLIENT:
            raise MessageError(500, "a server sends no requests")
        if not _TOKEN.fullmatch(method.encode("latin-1", "replace")) or not _TARGET.fullmatch(
            target
        ):
            raise MessageError(500, f"request line {method} {target!r}")
        _check_fields(headers)
        close = _says_close(headers)
        self._step(Step.SEND_CLOSE if close else Step.SEND_KEEP)
        self._keep = not close
        self._head_method = method.upper()
        out = [f"{method} {target} HTTP/1.1\r\n"]
        out.extend(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in _FRAMING)
        if close:
            out.append("Connection: close\r\n")
        if body or method.upper() not in ("GET", "HEAD"):
            out.append(f"Content-Length: {len(body)}\r\n")
        out.append("\r\n")
        return "".join(out).encode("latin-1") + body

    def start_next_cycle(self) -> None:
        """Client: the response was read whole and the connection is kept; the next request
        may go."""
        if not self._keep:
            raise MessageError(500, "the connection ends after this exchange")
        self._step(Step.NEXT)
