"""A sans-IO reader of the TLS ClientHello: which cipher suites does the client offer?

The card's HTTPS port has two TLS stacks (OpenSSL for everything, GnuTLS for the one SCWS
suite OpenSSL lacks; see `openscws.tls.dispatch`), so it must look at the ClientHello before
either stack sees a byte. This module only reads; it never answers.

Layout (RFC 5246 §6.2.1 record layer, §7.4 handshake, §7.4.1.2 ClientHello; RFC 8446 §4.1.2
keeps it for TLS 1.3 with `legacy_` names)::

    TLSPlaintext   type(1) = 22 handshake | version(2) major 3 | length(2) <= 2^14 | fragment
    Handshake      msg_type(1) = 1 client_hello | length(3) | body
    ClientHello    client_version(2) | random(32) | session_id<0..32> (1-byte length)
                   | cipher_suites<2..2^16-2> (2-byte length, 2 bytes each)
                   | compression_methods<1..2^8-1> (1-byte length)
                   | [ extensions<0..2^16-1> (2-byte length): type(2) length(2) data ]

The handshake message may be split over several records (§6.2.1: "client message boundaries
are not preserved in the record layer") and the records over several chunks of the transport;
`ClientHelloReader.feed` takes them as they come. An SSL 2.0-compatible ClientHello
(RFC 5246 Appendix E.2: first byte with the high bit set, msg_type 1 in the third) is reported
as `NotParseable`: it is a different format and no client offers PSK in it. Anything else that
is not a well-formed ClientHello raises `HelloError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from openscws.errors import DecodeError

__all__ = [
    "MAX_HELLO_BYTES",
    "ClientHello",
    "ClientHelloReader",
    "HelloError",
    "NotParseable",
    "parse_client_hello",
]

HANDSHAKE: Final = 22
CLIENT_HELLO: Final = 1
MAX_FRAGMENT: Final = 1 << 14
"""RFC 5246 §6.2.1: TLSPlaintext.length MUST NOT exceed 2^14."""
MAX_HELLO_BYTES: Final = MAX_FRAGMENT + 5
"""Most bytes `ClientHelloReader` buffers: one full record with its header. A ClientHello
longer than that (real ones are a few hundred bytes; post-quantum key shares make them ~2 KB)
is left to OpenSSL undecided."""
EXT_SUPPORTED_VERSIONS: Final = 43
"""RFC 8446 §4.2.1."""


class HelloError(DecodeError):
    """The bytes are not a well-formed TLS ClientHello."""


class NotParseable(HelloError):
    """A format this reader does not decode (an SSL 2.0-compatible ClientHello)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    record_version: int
    """Version of the first record (0x0301 for most clients, RFC 5246 Appendix E.1)."""
    legacy_version: int
    """ClientHello.client_version (0x0303 for TLS 1.2 and 1.3 clients)."""
    cipher_suites: tuple[int, ...]
    """Offered suite codes, in the client's order (SCSVs included)."""
    compression_methods: bytes
    extensions: tuple[int, ...]
    """Extension types, in order."""
    supported_versions: tuple[int, ...] = ()
    """From the supported_versions extension (RFC 8446 §4.2.1), if sent."""
    length: int = 0
    """Bytes of the records that carried the ClientHello, headers included."""


def _u(data: bytes, at: int, size: int, what: str) -> int:
    if at + size > len(data):
        raise HelloError(f"ClientHello truncated in {what}", data, at)
    return int.from_bytes(data[at : at + size])


def _body(body: bytes, record_version: int, length: int) -> ClientHello:
    """Decode a complete ClientHello body (RFC 5246 §7.4.1.2)."""
    legacy_version = _u(body, 0, 2, "client_version")
    if legacy_version >> 8 != 3:
        raise HelloError(f"client_version {legacy_version:#06x} is not TLS", body, 0)
    at = 2 + 32  # random
    sid = _u(body, at, 1, "session_id length")
    if sid > 32:
        raise HelloError("session_id longer than 32 bytes", body, at)
    at += 1 + sid
    n = _u(body, at, 2, "cipher_suites length")
    if n < 2 or n % 2:
        raise HelloError(f"cipher_suites length {n} is not a positive even number", body, at)
    at += 2
    if at + n > len(body):
        raise HelloError("ClientHello truncated in cipher_suites", body, at)
    suites = tuple(int.from_bytes(body[i : i + 2]) for i in range(at, at + n, 2))
    at += n
    m = _u(body, at, 1, "compression_methods length")
    if m < 1:
        raise HelloError("no compression method", body, at)
    at += 1
    if at + m > len(body):
        raise HelloError("ClientHello truncated in compression_methods", body, at)
    compression = body[at : at + m]
    at += m
    extensions: list[int] = []
    versions: tuple[int, ...] = ()
    if at < len(body):  # extensions are optional (§7.4.1.2: "Extensions may be absent")
        total = _u(body, at, 2, "extensions length")
        at += 2
        if at + total != len(body):
            raise HelloError("extensions length does not match the ClientHello", body, at)
        while at < len(body):
            kind = _u(body, at, 2, "extension type")
            size = _u(body, at + 2, 2, "extension length")
            at += 4
            if at + size > len(body):
                raise HelloError(f"extension {kind} overruns the ClientHello", body, at)
            data = body[at : at + size]
            if kind == EXT_SUPPORTED_VERSIONS and data:
                k = data[0]
                if k % 2 or k + 1 != len(data):
                    raise HelloError("malformed supported_versions", body, at)
                versions = tuple(int.from_bytes(data[i : i + 2]) for i in range(1, 1 + k, 2))
            extensions.append(kind)
            at += size
    return ClientHello(
        record_version=record_version,
        legacy_version=legacy_version,
        cipher_suites=suites,
        compression_methods=compression,
        extensions=tuple(extensions),
        supported_versions=versions,
        length=length,
    )


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of `data` (records as sent by the client), or None if
    more bytes are needed. Raises `NotParseable` for an SSL 2.0-compatible hello and
    `HelloError` for anything that is not a ClientHello. Bytes after it are ignored."""
    if not data:
        return None
    if data[0] & 0x80:  # RFC 5246 Appendix E.2: 2-byte length with the high bit, then msg_type
        if len(data) < 3:
            return None
        if data[2] == CLIENT_HELLO:
            raise NotParseable("SSL 2.0-compatible ClientHello", data[:3], 0)
        raise HelloError("not a TLS record", data[:3], 0)
    handshake = bytearray()
    record_version = 0
    at = 0
    while True:
        if at + 5 > len(data):
            if at < len(data) and data[at] != HANDSHAKE:
                raise HelloError(f"record type {data[at]} before the ClientHello", data, at)
            return None
        kind, version, length = data[at], _u(data, at + 1, 2, "record"), _u(data, at + 3, 2, "")
        if kind != HANDSHAKE:
            raise HelloError(f"record type {kind} before the ClientHello", data, at)
        if version >> 8 != 3:
            raise HelloError(f"record version {version:#06x} is not TLS", data, at)
        if length == 0:  # §6.2.1: no zero-length Handshake fragments
            raise HelloError("empty handshake record", data, at)
        if length > MAX_FRAGMENT:
            raise HelloError(f"record length {length} exceeds 2^14", data, at)
        if at == 0:
            record_version = version
        if at + 5 + length > len(data):
            handshake += data[at + 5 :]
            complete = False
        else:
            handshake += data[at + 5 : at + 5 + length]
            complete = True
        at += 5 + length
        if handshake and handshake[0] != CLIENT_HELLO:
            raise HelloError(f"handshake type {handshake[0]} is not client_hello", data, 5)
        if len(handshake) >= 4:
            need = 4 + int.from_bytes(handshake[1:4])
            if need > MAX_HELLO_BYTES:
                raise HelloError(f"ClientHello of {need - 4} bytes is too long", data, 6)
            if len(handshake) >= need and complete:
                return _body(bytes(handshake[4:need]), record_version, at)
            if len(handshake) >= need:
                return None  # the record is still incomplete
        if not complete:
            return None


class ClientHelloReader:
    """Buffers the first bytes of a connection until the ClientHello is complete.

    `feed(data)` returns the `ClientHello` once it is complete, None while more is needed;
    raises `HelloError` / `NotParseable` as `parse_client_hello`, and `HelloError` when more
    than `limit` bytes arrive without a complete ClientHello. `buffered` is everything fed
    so far (to hand on to whichever TLS stack serves the connection)."""

    def __init__(self, limit: int = MAX_HELLO_BYTES) -> None:
        self.limit = limit
        self._buf = bytearray()

    @property
    def buffered(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> ClientHello | None:
        self._buf += data
        hello = parse_client_hello(bytes(self._buf))
        if hello is None and len(self._buf) > self.limit:
            raise HelloError(f"no complete ClientHello in {self.limit} bytes", b"", self.limit)
        return hello
