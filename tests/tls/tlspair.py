"""Two TLS peers in memory: a certificate authority for tests, a tiny HTTP-ish inner handler,
a raw stdlib `SSLObject` client, and a pump that moves bytes between the two sides."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = 1_700_000_000.0
CHUNK = 255  # BIP moves at most 255 bytes per RECEIVE DATA / SEND DATA


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    chain_pem: bytes
    key_pem: bytes


def make_pki(hostname: str = "localhost") -> Pki:
    """A CA and a leaf for `hostname`, both EC P-256 (as a card's device certificate)."""
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openscws test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca_pem=ca.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass
class EchoInner:
    """HTTP-ish inner handler: answers each request head with a 200 whose body names the
    path (or, for /big/N, N bytes); `Connection: close` or EOF ends the connection. With
    `timeout`, an idle or half-received connection closes after that long."""

    timeout: float | None = None
    serve: bool = True
    """False: only collect what arrives (a client's inner handler)."""
    received: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    requests: list[bytes] = field(default_factory=list)
    closing: bool = False
    eof: bool = False
    closed: bool = False
    last_rx: float | None = None

    def receive_data(self, data: bytes, now: float) -> None:
        self.last_rx = now
        if not data:
            self.eof = self.closing = True
            return
        self.received += data
        while self.serve and b"\r\n\r\n" in self.received:
            head, _, rest = bytes(self.received).partition(b"\r\n\r\n")
            self.received[:] = rest
            self.requests.append(head)
            path = head.split(b" ")[1] if head.count(b" ") >= 2 else b"/"
            body = b"x" * int(path[5:]) if path.startswith(b"/big/") else b"you asked for " + path
            self.out += b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            if b"connection: close" in head.lower():
                self.closing = True

    def data_to_send(self, limit: int | None = None) -> bytes:
        size = len(self.out) if limit is None else limit
        data = bytes(self.out[:size])
        del self.out[:size]
        return data

    @property
    def should_close(self) -> bool:
        return self.closing

    @property
    def idle(self) -> bool:
        return (not self.serve or not self.received) and not self.out

    def get_timer(self) -> float | None:
        if self.timeout is None or self.last_rx is None or self.closing:
            return None
        return self.last_rx + self.timeout

    def handle_timer(self, now: float) -> None:
        due = self.get_timer()
        if due is not None and now >= due:
            self.closing = True

    def shutdown(self) -> None:
        self.closing = True

    wants_input = True

    def close_after_response(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closed = True


class Side(Protocol):
    """Anything with receive_data / data_to_send (a handler, or a `RawClient`)."""

    def receive_data(self, data: bytes, now: float) -> None: ...
    def data_to_send(self, limit: int | None = None) -> bytes: ...


class RawClient:
    """A stdlib `SSLObject` client over memory BIOs; errors are raised, as a real peer's."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str | None = None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.handshake_done = False

    def receive_data(self, data: bytes, now: float) -> None:
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def data_to_send(self, limit: int | None = None) -> bytes:
        return self.outgoing.read()

    def handshake(self) -> bool:
        """One step; True once done. Raises `ssl.SSLError` as the peer's failure."""
        if not self.handshake_done:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return False
            self.handshake_done = True
        return True

    def read_all(self) -> bytes:
        """Plaintext available now. Raises `ssl.SSLZeroReturnError` on close_notify."""
        out = bytearray()
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk


def pump(
    a: Side,
    b: Side,
    now: float = NOW,
    chunk: int | None = CHUNK,
    step: Callable[[], object] | None = None,
    tap_a: list[bytes] | None = None,
    tap_b: list[bytes] | None = None,
    rounds: int = 50,
) -> None:
    """Move bytes both ways until nothing moves, `chunk` bytes at a time (as BIP does).
    `step` runs after each round (e.g. `RawClient.handshake`); `tap_x` records what x sent."""
    for _ in range(rounds):
        moved = False
        if step is not None:
            step()
        for src, dst, tap in ((a, b, tap_a), (b, a, tap_b)):
            data = src.data_to_send(chunk)
            while data:
                moved = True
                if tap is not None:
                    tap.append(data)
                size = len(data) if chunk is None else chunk
                for at in range(0, len(data), size):
                    dst.receive_data(data[at : at + size], now)
                data = src.data_to_send(chunk)
        if not moved:
            if step is not None:
                step()
            return
    raise AssertionError("pump did not settle")


def records(stream: bytes) -> list[tuple[int, int, int]]:
    """(content type, version, length) of each TLS record in `stream` (RFC 5246 §6.2.1)."""
    out = []
    at = 0
    while at + 5 <= len(stream):
        length = int.from_bytes(stream[at + 3 : at + 5])
        out.append((stream[at], int.from_bytes(stream[at + 1 : at + 3]), length))
        at += 5 + length
    assert at == len(stream), "trailing partial record"
    return out
