"""Per-request access checks on a plain-HTTP SCWS connection, reading request heads only
(sans-IO). The gate sits between the client and the card's channel:

- `from_client(data)` -> (bytes for the card, bytes for the client now). Each request head is
  read (RFC 9112 §2-3) and put to `decide(method, target)`; an allowed request goes on to the
  card with its body, a denied one never reaches the card: its body is read and dropped, and
  the client gets a gateway-made 403 naming the reason. The connection goes on.
- `from_card(data)` -> bytes for the client: the card's responses, with each owed 403 put in
  its place, after the responses to the requests the client sent before the denied one
  (pipelining keeps its order: RFC 9112 §9.3.2). To find those places the gate reads the
  framing of the card's responses (status line, Content-Length, chunked).

Bodies are framed by Content-Length or chunked Transfer-Encoding (RFC 9112 §6-7). A request
the gate cannot frame (another transfer coding, both headers, a head over `MAX_HEAD` bytes, a
denied request expecting 100-continue) gets its answer and `closing` is set: the shell closes
the connection once it has written what the gate gave it."""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from openscws.acp.policy import Decision

__all__ = ["MAX_HEAD", "HeadGate", "refusal"]

MAX_HEAD: Final = 16 * 1024
_CHUNK_SIZE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")


def refusal(status: int, reason: str, *, close: bool = False) -> bytes:
    """A gateway-made response; `reason` in the short text/plain body."""
    text = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large"}
    body = (reason.replace("\r", " ").replace("\n", " ") + "\r\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {text.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


class _Body(enum.Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk size"
    CHUNK_DATA = "chunk data"
    CHUNK_END = "chunk CRLF"
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until close"
    CLOSED = "closed"


class FramingError(ValueError):
    """A message the gate cannot frame."""


@dataclass(slots=True)
class _Reader:
    """The framing of one direction's message stream."""

    state: _Body = _Body.HEAD
    left: int = 0
    buf: bytearray = field(default_factory=bytearray)


def _headers(head: bytes) -> tuple[str, dict[str, list[str]]]:
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise FramingError("malformed header line")
        fields.setdefault(name.lower(), []).append(value.strip())
    return lines[0], fields


def _framing(fields: dict[str, list[str]]) -> tuple[_Body, int]:
    te = fields.get("transfer-encoding")
    cl = fields.get("content-length")
    if te is not None:
        if cl is not None:
            raise FramingError("both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for v in te for c in v.split(",")]
        if codings[-1:] != ["chunked"]:
            raise FramingError("a transfer coding other than chunked")
        return _Body.CHUNK_SIZE, 0
    if cl is not None:
        values = {v.strip() for item in cl for v in item.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise FramingError("malformed Content-Length")
        n = int(next(iter(values)))
        return (_Body.LENGTH, n) if n else (_Body.HEAD, 0)
    return _Body.HEAD, 0


class HeadGate:
    def __init__(self, decide: Callable[[str, str], Decision]) -> None:
        self._decide = decide
        self._rx = _Reader()
        self._tx = _Reader()
        self._forwarding = True
        """The request being read goes to the card (else it is dropped)."""
        self._sent = 0
        """Requests forwarded to the card."""
        self._answered = 0
        """Card responses complete."""
        self._methods: deque[str] = deque()
        self._owed: deque[tuple[int, bytes]] = deque()
        self.closing = False
        """No more requests are read: close once `owed` is empty and the answers written."""
        self.denied = 0

    @property
    def owed(self) -> int:
        """403s waiting for the card's earlier responses."""
        return len(self._owed)

    # -- client -> card ----------------------------------------------------------------------

    def from_client(self, data: bytes) -> tuple[bytes, bytes]:
        out = bytearray()
        now = bytearray()
        i = 0
        rx = self._rx
        while i < len(data) and not self.closing:
            if rx.state is _Body.HEAD:
                rx.buf += data[i:]
                i = len(data)
                while not self.closing and rx.state is _Body.HEAD:
                    while rx.buf[:2] == b"\r\n":  # RFC 9112 §2.2: empty lines before a request
                        del rx.buf[:2]
                    end = rx.buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(rx.buf) > MAX_HEAD:
                            now += self._refuse_now(431, "request head too large")
                        break
                    head = bytes(rx.buf[: end + 4])
                    del rx.buf[: end + 4]
                    self._request(head, out, now)
                if rx.state is not _Body.HEAD and rx.buf:
                    rest = bytes(rx.buf)
                    rx.buf.clear()
                    o, n = self.from_client(rest)
                    out += o
                    now += n
                break
            i = self._body(data, i, out)
        return bytes(out), bytes(now)

    def _refuse_now(self, status: int, reason: str) -> bytes:
        self.closing = True
        self._forwarding = False
        if self._answered == self._sent:
            return refusal(status, reason, close=True)
        self._owed.append((self._sent, refusal(status, reason, close=True)))
        return b""

    def _request(self, head: bytes, out: bytearray, now: bytearray) -> None:
        try:
            line, fields = _headers(head)
            parts = line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise FramingError("malformed request line")
            method, target, version = parts
            state, left = _framing(fields)
        except FramingError as e:
            now += self._refuse_now(400, f"the SCWS Gateway cannot read this request: {e}")
            return
        decision = self._decide(method, target)
        self._rx.state, self._rx.left = state, left
        if decision.allow:
            self._forwarding = True
            self._sent += 1
            self._methods.append(method)
            out += head
            return
        self.denied += 1
        self._forwarding = False
        conn = ",".join(fields.get("connection", [])).lower()
        expect = ",".join(fields.get("expect", [])).lower()
        close = (
            "close" in conn
            or version == "HTTP/1.0"
            or ("100-continue" in expect and state is not _Body.HEAD)
        )
        answer = refusal(403, f"SCWS access control: {decision.reason}", close=close)
        if close:
            self.closing = True
        if self._answered == self._sent:
            now += answer
        else:
            self._owed.append((self._sent, answer))

    def _body(self, data: bytes, i: int, out: bytearray) -> int:
        """Consumes body bytes from data[i:]; returns the new offset."""
        rx = self._rx
        start = i
        if rx.state in (_Body.LENGTH, _Body.CHUNK_DATA):
            take = min(rx.left, len(data) - i)
            i += take
            rx.left -= take
            if rx.left == 0:
                rx.state = _Body.HEAD if rx.state is _Body.LENGTH else _Body.CHUNK_END
        else:
            # Line-oriented parts of chunked framing: size line, data CRLF, trailers.
            nl = data.find(b"\n", i)
            if nl < 0:
                rx.buf += data[i:]
                if len(rx.buf) > MAX_HEAD:
                    self.closing = True
                i = len(data)
            else:
                line = bytes(rx.buf) + data[i : nl + 1]
                rx.buf.clear()
                i = nl + 1
                self._chunk_line(line)
        if self._forwarding:
            out += data[start:i]
        return i

    def _chunk_line(self, line: bytes) -> None:
        rx = self._rx
        stripped = line.rstrip(b"\r\n")
        if rx.state is _Body.CHUNK_SIZE:
            size = stripped.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size):
                self.closing = True
                return
            n = int(size, 16)
            rx.state, rx.left = (_Body.CHUNK_DATA, n) if n else (_Body.TRAILERS, 0)
        elif rx.state is _Body.CHUNK_END:
            if stripped:
                self.closing = True
            rx.state = _Body.CHUNK_SIZE
        elif rx.state is _Body.TRAILERS and not stripped:
            rx.state = _Body.HEAD

    # -- card -> client ----------------------------------------------------------------------

    def from_card(self, data: bytes) -> bytes:
        if not self._owed and self._tx.state is _Body.HEAD and not self._methods:
            return data  # nothing forwarded is outstanding (cannot happen for real responses)
        out = bytearray()
        i = 0
        tx = self._tx
        while i < len(data):
            if tx.state is _Body.UNTIL_CLOSE or tx.state is _Body.CLOSED:
                out += data[i:]
                break
            if tx.state is _Body.HEAD:
                joined = bytes(tx.buf) + data[i:]
                end = joined.find(b"\r\n\r\n")
                if end < 0:
                    tx.buf += data[i:]
                    out += data[i:]
                    break
                consumed = end + 4 - len(tx.buf)
                out += data[i : i + consumed]
                i += consumed
                head = joined[: end + 4]
                tx.buf.clear()
                self._response(head)
                self._pay_owed(out)
                continue
            start = i
            if tx.state in (_Body.LENGTH, _Body.CHUNK_DATA):
                take = min(tx.left, len(data) - i)
                i += take
                tx.left -= take
                if tx.left == 0:
                    if tx.state is _Body.LENGTH:
                        self._done()
                    else:
                        tx.state = _Body.CHUNK_END
            else:
                nl = data.find(b"\n", i)
                if nl < 0:
                    tx.buf += data[i:]
                    i = len(data)
                else:
                    line = (bytes(tx.buf) + data[i : nl + 1]).rstrip(b"\r\n")
                    tx.buf.clear()
                    i = nl + 1
                    self._response_chunk_line(line)
            out += data[start:i]
            self._pay_owed(out)
        return bytes(out)

    def _response(self, head: bytes) -> None:
        tx = self._tx
        try:
            line, fields = _headers(head)
            status = int(line.split(" ")[1])
        except (FramingError, IndexError, ValueError):
            tx.state = _Body.UNTIL_CLOSE
            return
        if 100 <= status < 200:
            if status == 101:
                tx.state = _Body.UNTIL_CLOSE
            return  # interim response
        method = self._methods[0] if self._methods else "GET"
        if method == "HEAD" or status in (204, 304):
            self._done()
            return
        try:
            state, left = _framing(fields)
        except FramingError:
            state, left = _Body.UNTIL_CLOSE, 0
        if state is _Body.HEAD and "content-length" not in fields:
            state = _Body.UNTIL_CLOSE
        tx.state, tx.left = state, left
        if state is _Body.HEAD:
            self._done()

    def _response_chunk_line(self, line: bytes) -> None:
        tx = self._tx
        if tx.state is _Body.CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size):
                tx.state = _Body.UNTIL_CLOSE
                return
            n = int(size, 16)
            tx.state, tx.left = (_Body.CHUNK_DATA, n) if n else (_Body.TRAILERS, 0)
        elif tx.state is _Body.CHUNK_END:
            tx.state = _Body.CHUNK_SIZE
        elif tx.state is _Body.TRAILERS and not line:
            self._done()

    def _done(self) -> None:
        self._tx.state = _Body.HEAD
        self._answered += 1
        if self._methods:
            self._methods.popleft()

    def _pay_owed(self, out: bytearray) -> None:
        while self._owed and self._owed[0][0] <= self._answered:
            out += self._owed.popleft()[1]
