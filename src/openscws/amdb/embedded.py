"""The HTTP messages an administration session carries as bodies: the SCWS command (an HTTP
request, `application/vnd.oma-scws-http-request`) and the SCWS's answer (an HTTP response,
`application/vnd.oma-scws-http-response`, registered with IANA by OMA for the SCWS).

Each body is one complete HTTP/1.1 message (RFC 9112). Decoding takes a body framed by
Content-Length, by chunked transfer coding, or (a response only) by the end of the data; the
framing fields are dropped, the body is what they frame. Encoding always frames with
Content-Length. A hand parser, since the whole message is already in memory and h11 insists on
things an embedded message need not have (Host). Strict: CRLF line ends only, no obs-fold, no
whitespace before a field's colon, nothing after the message. Anything else raises
`AdminProtocolError` with the status to answer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final, NoReturn

from openscws.errors import AdminProtocolError

__all__ = ["EmbeddedRequest", "EmbeddedResponse", "Headers"]

Headers = tuple[tuple[str, str], ...]

# RFC 9112 §3 request-line, §4 status-line, §5 field-line; RFC 9110 §5.6.2 token.
_TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_REQUEST_LINE: Final = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/(\d)\.(\d)")
_STATUS_LINE: Final = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_OTHER_REQUEST_VERSION: Final = re.compile(rb"\S+ \S+ HTTP/(\d+)\.\d+")
_OTHER_STATUS_VERSION: Final = re.compile(rb"HTTP/(\d+)\.\d+ \d{3}(?: .*)?", re.DOTALL)
_BAD_VALUE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Field values: VCHAR, obs-text, SP and HTAB only (RFC 9110 §5.5)."""
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_STR_TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STR_TARGET: Final = re.compile(r"[\x21-\x7e]+")
_STR_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
_NO_BODY: Final = frozenset({204, 304})
"""Statuses that never have a body (RFC 9110 §15.3.5, §15.4.5), besides 1xx."""
_MAX_CHUNK_LINE: Final = 1024
_REASONS: Final = {s.value: s.phrase for s in HTTPStatus}


def _find(headers: Headers, name: str) -> str | None:
    lowered = name.lower()
    for field, value in headers:
        if field.lower() == lowered:
            return value
    return None


@dataclass(frozen=True, slots=True)
class EmbeddedRequest:
    """An SCWS admin command: one HTTP request. `headers` keep their order and spelling,
    without Content-Length / Transfer-Encoding (the body says it all)."""

    method: str
    target: str
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first field called `name` (any case), or None."""
        return _find(self.headers, name)

    def encode(self) -> bytes:
        """The request as HTTP/1.1 bytes, framed with Content-Length. Raises ValueError for
        a method, target or field that cannot go on the wire (header injection)."""
        if not _STR_TOKEN.fullmatch(self.method):
            raise ValueError(f"bad method {self.method!r}")
        if not _STR_TARGET.fullmatch(self.target):
            raise ValueError(f"bad request-target {self.target!r}")
        head = f"{self.method} {self.target} HTTP/1.1\r\n"
        return _encode(head, self.headers, self.body, with_length=True)

    @classmethod
    def decode(cls, data: bytes, *, max_body: int, max_header: int) -> EmbeddedRequest:
        """Parse one complete request; `AdminProtocolError` (400, 413, 431, 501, 505) if not."""
        lines, rest = _split_head(data, max_header)
        match = _REQUEST_LINE.fullmatch(lines[0])
        if match is None:
            _bad_start_line(lines[0], _OTHER_REQUEST_VERSION, "request-line")
        method, target, major, _minor = match.groups()
        _check_version(major)
        headers, framing = _fields(lines)
        body = _body(rest, framing, max_body, max_header, until_end=False)
        return cls(method.decode("ascii"), target.decode("ascii"), headers, body)


@dataclass(frozen=True, slots=True)
class EmbeddedResponse:
    """The SCWS's answer to one command: one HTTP response. `reason` empty means the
    standard phrase of `status`."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    reason: str = ""

    def header(self, name: str) -> str | None:
        """The first field called `name` (any case), or None."""
        return _find(self.headers, name)

    def encode(self) -> bytes:
        """The response as HTTP/1.1 bytes, framed with Content-Length (none for 1xx, 204 and
        304, which must have no body). Raises ValueError if it cannot go on the wire."""
        status = self.status
        if not 100 <= status <= 999:
            raise ValueError(f"bad status {status!r}")
        reason = self.reason or _REASONS.get(status, "")
        if _STR_BAD_VALUE.search(reason):
            raise ValueError(f"bad reason phrase {reason!r}")
        bodiless = status < 200 or status in _NO_BODY
        if bodiless and self.body:
            raise ValueError(f"a {status} response has no body")
        head = f"HTTP/1.1 {status} {reason}\r\n"
        return _encode(head, self.headers, self.body, with_length=not bodiless)

    @classmethod
    def decode(cls, data: bytes, *, max_body: int, max_header: int) -> EmbeddedResponse:
        """Parse one complete response; `AdminProtocolError` (400, 413, 431, 501, 505) if
        not. Without Content-Length or chunked coding the body is the rest of `data`."""
        lines, rest = _split_head(data, max_header)
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            _bad_start_line(lines[0], _OTHER_STATUS_VERSION, "status-line")
        major, _minor, code, reason = match.groups()
        _check_version(major)
        status = int(code)
        if status < 100:
            raise AdminProtocolError(400, f"status {status} out of range")
        headers, framing = _fields(lines)
        if status < 200 or status in _NO_BODY:
            if rest:
                raise AdminProtocolError(400, f"a {status} response has no body")
            body = b""
        else:
            body = _body(rest, framing, max_body, max_header, until_end=True)
        text = (reason or b"").decode("latin-1")
        return cls(status, headers, body, "" if text == _REASONS.get(status) else text)


# -- encoding -----------------------------------------------------------------------------------


def _encode(head: str, headers: Headers, body: bytes, *, with_length: bool) -> bytes:
    parts = [head]
    for name, value in headers:
        if not _STR_TOKEN.fullmatch(name):
            raise ValueError(f"bad field name {name!r}")
        if name.lower() in _FRAMING:
            continue  # framing is ours
        if _STR_BAD_VALUE.search(value):
            raise ValueError(f"bad value for {name}: {value!r}")
        parts.append(f"{name}: {value}\r\n")
    if with_length:
        parts.append(f"Content-Length: {len(body)}\r\n")
    parts.append("\r\n")
    try:
        encoded = "".join(parts).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"field value not in ISO-8859-1: {exc}") from None
    return encoded + body if body else encoded


# -- decoding -----------------------------------------------------------------------------------


def _split_head(data: bytes, max_header: int) -> tuple[list[bytes], bytes]:
    """Lines of the head (start line first), and what follows the empty line."""
    end = data.find(b"\r\n\r\n", 0, max_header + 4)
    if end < 0:
        if len(data) > max_header:
            raise AdminProtocolError(431, f"message head over {max_header} bytes")
        raise AdminProtocolError(400, "message head incomplete")
    if end + 4 > max_header:
        raise AdminProtocolError(431, f"message head over {max_header} bytes")
    return data[:end].split(b"\r\n"), data[end + 4 :]


def _bad_start_line(line: bytes, other_version: re.Pattern[bytes], what: str) -> NoReturn:
    # Well formed but for a version other than HTTP/1.x: 505 (RFC 9110 §15.6.6); else 400.
    match = other_version.fullmatch(line)
    if match is not None and match.group(1) != b"1":
        raise AdminProtocolError(505, "HTTP version not supported")
    raise AdminProtocolError(400, f"malformed {what}")


def _check_version(major: bytes) -> None:
    if major != b"1":
        raise AdminProtocolError(505, f"HTTP/{major.decode()}.x not supported")


def _fields(lines: list[bytes]) -> tuple[Headers, tuple[list[bytes], list[bytes]]]:
    """(fields without framing ones, (Content-Length values, Transfer-Encoding values))."""
    headers: list[tuple[str, str]] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in lines[1:]:
        name, value = _field(line)
        lowered = name.lower()
        if lowered == b"content-length":
            lengths.append(value)
        elif lowered == b"transfer-encoding":
            codings.append(value)
        else:
            headers.append((name.decode("ascii"), value.decode("latin-1")))
    return tuple(headers), (lengths, codings)


def _field(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise AdminProtocolError(400, "malformed header field")
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise AdminProtocolError(400, f"control character in {name.decode()}")
    return name, value


def _body(
    rest: bytes,
    framing: tuple[list[bytes], list[bytes]],
    max_body: int,
    max_header: int,
    *,
    until_end: bool,
) -> bytes:
    lengths, codings = framing
    if codings:
        if lengths:  # RFC 9112 §6.3: both is a smuggling vector
            raise AdminProtocolError(400, "both Transfer-Encoding and Content-Length")
        coding = [c.strip().lower() for c in b",".join(codings).split(b",")]
        if coding != [b"chunked"]:
            raise AdminProtocolError(501, "transfer coding other than chunked")
        return _dechunk(rest, max_body, max_header)
    if lengths:
        values = {v.strip() for v in b",".join(lengths).split(b",")}
        if len(values) != 1:
            raise AdminProtocolError(400, "conflicting Content-Length")
        (text,) = values
        if not text.isdigit() or len(text) > 18 or not text.isascii():
            raise AdminProtocolError(400, "malformed Content-Length")
        length = int(text)
        if length > max_body:
            raise AdminProtocolError(413, f"body over {max_body} bytes")
        if len(rest) != length:
            why = "body shorter than Content-Length" if len(rest) < length else "data after body"
            raise AdminProtocolError(400, why)
        return rest
    if until_end:
        if len(rest) > max_body:
            raise AdminProtocolError(413, f"body over {max_body} bytes")
        return rest
    if rest:
        raise AdminProtocolError(400, "request data after the head without framing")
    return b""


def _dechunk(data: bytes, max_body: int, max_header: int) -> bytes:
    """RFC 9112 §7.1 chunked coding: size [; ext] CRLF data CRLF ... 0 CRLF trailers CRLF."""
    pieces: list[bytes] = []
    total = 0
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos, pos + _MAX_CHUNK_LINE)
        if eol < 0:
            raise AdminProtocolError(400, "malformed chunk size line")
        size_text, _, ext = data[pos:eol].partition(b";")
        size_text = size_text.rstrip(b" \t")
        if not _HEX.fullmatch(size_text) or _BAD_VALUE.search(ext):
            raise AdminProtocolError(400, "malformed chunk size line")
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            break
        total += size
        if total > max_body:
            raise AdminProtocolError(413, f"body over {max_body} bytes")
        end = pos + size
        if data[end : end + 2] != b"\r\n":
            raise AdminProtocolError(400, "chunk data incomplete")
        pieces.append(data[pos:end])
        pos = end + 2
    trailer_bytes = 0
    while True:  # trailer section: checked, then dropped
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            raise AdminProtocolError(400, "chunked body incomplete")
        line = data[pos:eol]
        pos = eol + 2
        if not line:
            break
        trailer_bytes += len(line) + 2
        if trailer_bytes > max_header:
            raise AdminProtocolError(431, "trailer section too large")
        _field(line)
    if pos != len(data):
        raise AdminProtocolError(400, "data after the chunked body")
    return b"".join(pieces)
