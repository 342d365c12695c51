"""SIP messages (RFC 3261 §7, §20, §25), sans-IO: parse a datagram or a TCP stream into typed
requests and responses, write them back, and the few header grammars the push path needs (Via,
name-addr with tag and parameters, CSeq). Anything that does not parse raises `SipError` with
the status to answer (400), never another exception.

The declared codec is small on purpose: the push path sends and receives REGISTER and MESSAGE
outside dialogs, so no route sets, no SDP, no multipart bodies."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Final, Self

from openscws.errors import OpenScwsError

__all__ = [
    "MAX_MESSAGE",
    "CSeq",
    "NameAddr",
    "SipError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "Via",
    "parse_message",
    "response_to",
]

MAX_MESSAGE: Final = 65_535
"""Bytes of one message: a UDP datagram's limit, and the cap on a TCP message."""
MAX_HEADERS: Final = 100
SIP_VERSION: Final = "SIP/2.0"
BRANCH_MAGIC: Final = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branches of RFC 3261 transactions start with it."""

COMPACT: Final[dict[str, str]] = {
    # RFC 3261 §7.3.3 and the registered compact forms.
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "a": "Accept-Contact",
}
_CANONICAL: Final[dict[str, str]] = {
    name.lower(): name
    for name in (
        *COMPACT.values(),
        "CSeq",
        "Max-Forwards",
        "Expires",
        "Authorization",
        "WWW-Authenticate",
        "Proxy-Authorization",
        "Proxy-Authenticate",
        "P-Asserted-Identity",
        "X-Wap-Application-Id",
        "User-Agent",
        "Server",
        "Allow",
        "Record-Route",
        "Route",
        "Min-Expires",
    )
}
_TOKEN: Final = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_STATUS_LINE: Final = re.compile(r"SIP/2\.0 ([1-6][0-9]{2}) ([^\r\n]*)\Z")
_URI: Final = re.compile(r"(sips?|tel):[^\s<>\"]+\Z", re.I)
MANDATORY: Final = ("Via", "From", "To", "Call-ID", "CSeq")


class SipError(OpenScwsError):
    """A message that does not parse; `status` is the response to send (RFC 3261 §21)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"SIP {status}: {reason}")
        self.status = status
        self.reason = reason


def canonical(name: str) -> str:
    lowered = name.lower()
    if lowered in COMPACT:
        return COMPACT[lowered]
    return _CANONICAL.get(lowered, name)


@functools.lru_cache(maxsize=256)
def _wanted(name: str) -> str:
    """`canonical(name).lower()`, kept for the names code asks `header` and `values` for."""
    return canonical(name).lower()


_canonical_seen: Final = functools.lru_cache(maxsize=256)(canonical)
"""`canonical`, kept for the header names seen on the wire."""
_SPECIAL: Final = re.compile(r'[",<>]')


def _split_commas(value: str) -> list[str]:
    """Splits a header value at commas outside quotes and angle brackets (RFC 3261 §7.3.1)."""
    if _SPECIAL.search(value) is None:  # one value, nothing to split (the common case)
        value = value.strip()
        return [value] if value else []
    return _split_by_grammar(value)


def _split_by_grammar(value: str) -> list[str]:
    """`_split_commas` character by character: the declared grammar, which the fast path
    for values without quotes, commas or angle brackets is tested against."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [v for v in out if v]


@dataclass(frozen=True, slots=True)
class _Common:
    headers: tuple[tuple[str, str], ...]
    body: bytes
    _index: dict[str, list[str]] | None = field(init=False, repr=False, compare=False)
    """Lower-cased header name -> its values in order, built from `headers` when first asked
    (a message only written, as most responses are, never needs it)."""
    _split: dict[str, list[str]] = field(init=False, repr=False, compare=False)
    """`values` already split at commas, per lower-cased name."""
    _via: Via | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", None)
        object.__setattr__(self, "_split", {})
        object.__setattr__(self, "_via", None)

    def _indexed(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, value in self.headers:
                found = index.get(lowered := key.lower())
                if found is None:
                    index[lowered] = [value]
                else:
                    found.append(value)
            object.__setattr__(self, "_index", index)
        return index

    def header(self, name: str) -> str | None:
        found = (self._index or self._indexed()).get(_wanted(name))
        return None if found is None else found[0]

    def values(self, name: str) -> list[str]:
        """Every value of a header that may repeat or be comma-joined (Via, Contact)."""
        wanted = _wanted(name)
        split = self._split.get(wanted)
        if split is None:
            split = []
            for value in (self._index or self._indexed()).get(wanted, ()):
                split.extend(_split_commas(value))
            self._split[wanted] = split
        return list(split)

    @property
    def top_via(self) -> Via:
        via = self._via
        if via is None:
            vias = self.values("Via")
            if not vias:
                raise SipError("no Via")
            via = Via.parse(vias[0])
            object.__setattr__(self, "_via", via)
        return via

    def _head_and_body(self, start: str) -> bytes:
        lines = [start]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def with_header(self, name: str, value: str, *, first: bool = False) -> Self:
        pair = ((name, value),)
        headers = pair + self.headers if first else self.headers + pair
        return replace(self, headers=headers)

    def without(self, name: str) -> Self:
        wanted = canonical(name).lower()
        kept = tuple((k, v) for k, v in self.headers if k.lower() != wanted)
        return replace(self, headers=kept)


@dataclass(frozen=True, slots=True)
class SipRequest(_Common):
    method: str = ""
    uri: str = ""

    def encode(self) -> bytes:
        return self._head_and_body(f"{self.method} {self.uri} {SIP_VERSION}")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.header("CSeq") or "")


@dataclass(frozen=True, slots=True)
class SipResponse(_Common):
    status: int = 0
    reason: str = ""

    def encode(self) -> bytes:
        return self._head_and_body(f"{SIP_VERSION} {self.status} {self.reason}")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.header("CSeq") or "")


type SipMessage = SipRequest | SipResponse


def request(method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> SipRequest:
    return SipRequest(tuple(headers), body, method, uri)


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        parts = value.split()
        if (
            len(parts) != 2
            or not parts[0].isascii()
            or not parts[0].isdigit()
            or len(parts[0]) > 10
            or not _TOKEN.match(parts[1])
        ):
            raise SipError(f"CSeq {value[:40]!r}")
        number = int(parts[0])
        if number >= 2**31:
            raise SipError("CSeq number out of range")
        return cls(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip()
    return params


def _format_params(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v else f";{k}" for k, v in params.items())


_VIA: Final = re.compile(
    r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?\s*(;.*)?\Z"
)


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        m = _VIA.match(value.strip())
        if m is None:
            raise SipError(f"Via {value[:60]!r}")
        port = int(m.group(3)) if m.group(3) else None
        if port is not None and not 0 < port < 65536:
            raise SipError("Via port out of range")
        return cls(m.group(1).upper(), m.group(2), port, _params(m.group(4) or ""))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"

    def reply_address(self, source: tuple[str, int]) -> tuple[str, int]:
        """Where a response goes (RFC 3261 §18.2.2 with RFC 3581 rport): the `received` and
        `rport` parameters first, else sent-by."""
        host = self.params.get("received") or self.host
        rport = self.params.get("rport")
        if rport and rport.isdigit():
            return host, int(rport)
        if "rport" in self.params:
            return host, source[1]
        return host, self.port or 5060


_NAME_ADDR: Final = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"\s*|([^<"]*?)\s*)?<([^<>]+)>\s*(;.*)?\Z')


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From, To, Contact, P-Asserted-Identity: `["display"] <uri>;params` or a bare `uri;params`."""

    uri: str
    display: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        m = _NAME_ADDR.match(value)
        if m is not None:
            display = m.group(1) if m.group(1) is not None else (m.group(2) or None)
            uri, rest = m.group(3).strip(), m.group(4) or ""
        else:
            uri, _, rest = value.strip().partition(";")
            display = None
            rest = ";" + rest if rest else ""
        if not _URI.match(uri):
            raise SipError(f"address {value[:60]!r} has no sip:, sips: or tel: URI")
        return cls(uri, display, _params(rest))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def uri_user_host(uri: str) -> tuple[str, str]:
    """(`user`, `host[:port]`) of a sip: URI, parameters dropped."""
    if not _URI.match(uri) or "@" not in uri:
        raise SipError(f"URI {uri[:60]!r} has no user")
    rest = uri.split(":", 1)[1].split(";", 1)[0].split("?", 1)[0]
    user, _, host = rest.rpartition("@")
    if not user or not host:
        raise SipError(f"URI {uri[:60]!r}")
    return user, host


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("message head is not UTF-8") from None


_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    text = _decode(head)
    if _CONTROL.search(text.replace("\r\n", "")):
        raise SipError("control character in the message head")
    lines = text.split("\r\n")
    start = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # RFC 3261 §7.3.1 folding
            if not headers:
                raise SipError("continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipError(f"header line {line[:40]!r}")
        headers.append((_canonical_seen(name), value.strip()))
        if len(headers) > MAX_HEADERS:
            raise SipError("too many headers")
    return start, headers


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    values = [v for k, v in headers if k == "Content-Length"]
    if not values:
        return None
    if len(set(values)) != 1 or not values[0].isascii() or not values[0].isdigit():
        raise SipError("Content-Length")
    length = int(values[0])
    if length > MAX_MESSAGE:
        raise SipError("Content-Length too large")
    return length


def _build(start: str, headers: list[tuple[str, str]], body: bytes) -> SipMessage:
    # Content-Length is framing: checked by the caller, written again by encode().
    headers = [(k, v) for k, v in headers if k != "Content-Length"]
    status = _STATUS_LINE.match(start)
    if status is not None:
        message: SipMessage = SipResponse(
            tuple(headers), body, int(status.group(1)), status.group(2)
        )
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != SIP_VERSION or not _TOKEN.match(parts[0]):
            raise SipError(f"start line {start[:60]!r}")
        if not _URI.match(parts[1]):
            raise SipError(f"Request-URI {parts[1][:60]!r}")
        message = SipRequest(tuple(headers), body, parts[0].upper(), parts[1])
    for name in MANDATORY:
        if message.header(name) is None:
            raise SipError(f"no {name}")
    cseq = CSeq.parse(message.header("CSeq") or "")
    if isinstance(message, SipRequest) and cseq.method != message.method:
        raise SipError("CSeq method differs from the request method")
    vias = message.values("Via")
    message.top_via  # noqa: B018 - parses the first, kept for the transaction layer
    for via in vias[1:]:
        Via.parse(via)
    NameAddr.parse(message.header("From") or "")
    NameAddr.parse(message.header("To") or "")
    return message


def parse_message(data: bytes) -> SipMessage:
    """One message from a datagram (RFC 3261 §18.3: bytes past Content-Length are dropped; a
    body shorter than Content-Length is an error)."""
    if len(data) > MAX_MESSAGE:
        raise SipError("message too large", 513)
    data = data.lstrip(b"\r\n")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipError("no end of headers")
    start, headers = _parse_head(head)
    length = _content_length(headers)
    if length is not None:
        if len(body) < length:
            raise SipError("body shorter than Content-Length")
        body = body[:length]
    return _build(start, headers, body)


class StreamFramer:
    """Messages out of a TCP byte stream (RFC 3261 §18.3: Content-Length is mandatory there).
    Keep-alive CRLFs (RFC 5626 §3.5.1) between messages are skipped."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[SipMessage]:
        self._buffer += data
        out: list[SipMessage] = []
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise SipError("header section too large", 513)
                return out
            start, headers = _parse_head(bytes(self._buffer[:end]))
            length = _content_length(headers)
            if length is None:
                raise SipError("no Content-Length on a stream")
            total = end + 4 + length
            if len(self._buffer) < total:
                return out
            body = bytes(self._buffer[end + 4 : total])
            del self._buffer[:total]
            out.append(_build(start, headers, body))


REASONS: Final[dict[int, str]] = {
    100: "Trying",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
    513: "Message Too Large",
}


def response_to(
    req: SipRequest,
    status: int,
    *,
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    reason: str | None = None,
) -> SipResponse:
    """A response to `req` (RFC 3261 §8.2.6.2): every Via in order, From, To (with `to_tag`
    added unless it has one), Call-ID and CSeq copied."""
    headers: list[tuple[str, str]] = [("Via", v) for v in req.values("Via")]
    to = req.header("To") or ""
    if to_tag is not None and status > 100 and NameAddr.parse(to).tag is None:
        to = f"{to};tag={to_tag}"
    headers += [
        ("From", req.header("From") or ""),
        ("To", to),
        ("Call-ID", req.header("Call-ID") or ""),
        ("CSeq", req.header("CSeq") or ""),
    ]
    headers += extra
    return SipResponse(tuple(headers), body, status, reason or REASONS.get(status, "Unknown"))


def uri_target(uri: str) -> tuple[str, int, str]:
    """(host, port, transport) to send a request for a sip: URI to (RFC 3263 without DNS:
    the URI's host and port, 5060 by default, `transport` parameter or UDP)."""
    if not _URI.match(uri) or not uri.lower().startswith("sip:"):
        raise SipError(f"URI {uri[:60]!r} is not a sip: URI")
    rest = uri.split(":", 1)[1]
    main, _, params = rest.partition(";")
    hostport = main.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host or (port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536)):
        raise SipError(f"URI {uri[:60]!r} has no usable host and port")
    transport = _params(params).get("transport", "udp").upper()
    if transport not in ("UDP", "TCP"):
        raise SipError(f"transport {transport[:10]!r} is not supported")
    return host, int(port_text or 5060), transport


def aor_of(uri: str) -> str:
    """`sip:user@host` of a URI: the registrar's key (parameters, port and case of the host
    dropped)."""
    user, host = uri_user_host(uri)
    host = host.split(":")[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return f"sip:{user}@{host.lower()}"
