"""The card TLS engine: a small TLS 1.2 PSK server written for the card's RAM, sans-IO.

OpenSSL keeps about 13 KiB per connection whatever the record size (its `SSL` object, about
8 KiB before the first byte, then the session, cipher and MAC contexts of the handshake;
benchmarks/bench_tls_ram.py), so with OpenSSL a 1024-byte record limit cannot bring a
channel's memory down to a quarter of what 16 KiB records cost. This engine keeps, between
two calls, only what TLS 1.2 needs: the four record keys, two sequence numbers, a partial
record from the client and the records not yet handed to the channel. Everything else (the
handshake transcript, the PSK, the master secret, cipher and HMAC contexts) lives only for
the handshake or for one record.

Scope: the SCWS PSK-TLS suites of OMA-TS-Smartcard_Web_Server §11.1.1 that AES covers,
TLS_PSK_WITH_AES_128_CBC_SHA (0x008C) and TLS_PSK_WITH_AES_128_CBC_SHA256 (0x00AE, RFC 5487),
in TLS 1.2 (RFC 5246) only, plain PSK key exchange (RFC 4279 §2). No certificates, no
resumption (the session_id is empty), no renegotiation (answered with a no_renegotiation
warning, RFC 5746 §4.2). Extensions: renegotiation_info (RFC 5746), extended_master_secret
(RFC 7627), encrypt_then_mac (RFC 7366), max_fragment_length (RFC 6066 §4: the card echoes a
client's request and keeps to it) and record_size_limit (RFC 8449: the card announces
`record_limit` and keeps to the client's). The 3DES suite stays with GnuTLS
(`openscws.tls.gnutls`).

Unknown identities get `openscws.tls.psk.PskKeys.key`'s decoy, so they fail exactly like a
wrong key (`bad_record_mac` on the client's Finished). Record protection errors (MAC or
padding) all give `bad_record_mac` (RFC 5246 §7.2.2); with encrypt_then_mac (which OpenSSL
and GnuTLS clients offer) the MAC is checked before anything is decrypted. Without it the
MAC is computed whatever the padding said, but Python does not make that constant-time:
Lucky Thirteen-class timing differences remain observable in principle, one more reason the
engine is opt-in.

`CardTlsServerHandler` is a `TlsRecordStream` (the `StreamHandler` contract, timers and
states shared with the OpenSSL and GnuTLS endpoints); the randomness it needs (the server
random, CBC IVs) comes from `random`, so tests can fix it."""

from __future__ import annotations

import enum
import hmac as std_hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openscws.tls.alert import TlsAlert
from openscws.tls.endpoint import MAX_RECORD, TlsRecordStream, TlsState
from openscws.tls.psk import PskKeys

if TYPE_CHECKING:
    from openscws.bip.card import StreamHandler

__all__ = ["SUITES", "CardSuite", "CardTlsServerHandler", "Phase", "prf"]

logger = logging.getLogger(__name__)

# -- wire constants (RFC 5246 unless noted) --------------------------------------------------

TLS12: Final = 0x0303
"""ProtocolVersion {3, 3}, §6.2.1."""


class ContentType(enum.IntEnum):
    """§6.2.1."""

    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(enum.IntEnum):
    """§7.4."""

    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    SERVER_KEY_EXCHANGE = 12
    SERVER_HELLO_DONE = 14
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20


class Alert(enum.IntEnum):
    """AlertDescription, §7.2 (and RFC 5746 / RFC 8449 where noted)."""

    CLOSE_NOTIFY = 0
    UNEXPECTED_MESSAGE = 10
    BAD_RECORD_MAC = 20
    RECORD_OVERFLOW = 22
    HANDSHAKE_FAILURE = 40
    ILLEGAL_PARAMETER = 47
    DECODE_ERROR = 50
    DECRYPT_ERROR = 51
    PROTOCOL_VERSION = 70
    INTERNAL_ERROR = 80
    NO_RENEGOTIATION = 100


_CONTENT_TYPES: Final = frozenset(int(t) for t in ContentType)
_WARNING: Final = 1
_FATAL: Final = 2


class Ext(enum.IntEnum):
    """Extension types the engine reads or answers (IANA TLS ExtensionType registry)."""

    MAX_FRAGMENT_LENGTH = 1  # RFC 6066 §4
    ENCRYPT_THEN_MAC = 22  # RFC 7366
    EXTENDED_MASTER_SECRET = 23  # RFC 7627
    RECORD_SIZE_LIMIT = 28  # RFC 8449
    RENEGOTIATION_INFO = 0xFF01  # RFC 5746


EMPTY_RENEGOTIATION_INFO_SCSV: Final = 0x00FF
"""RFC 5746 §3.3: the signalling suite that stands for an empty renegotiation_info."""
MFL_SIZES: Final = {1: 512, 2: 1024, 3: 2048, 4: 4096}
"""RFC 6066 §4 MaxFragmentLength values -> plaintext bytes."""
MIN_RECORD_SIZE_LIMIT: Final = 64
"""RFC 8449 §4: smaller values are an illegal_parameter."""
MAX_CIPHERTEXT_EXPANSION: Final = 2048
"""§6.2.3: TLSCiphertext.length is at most 2^14 + 2048."""
MAX_HANDSHAKE: Final = MAX_RECORD
"""Largest handshake message accepted (a PSK ClientHello is a few hundred bytes)."""
VERIFY_DATA_LENGTH: Final = 12
"""§7.4.9."""
BLOCK: Final = 16
"""AES block and IV size, §6.2.3.2."""


@dataclass(frozen=True, slots=True)
class CardSuite:
    """One cipher suite: its code, OpenSSL's name for it, and the MAC (§6.2.3.2; the PRF is
    P_SHA256 for both, §5)."""

    code: int
    name: str
    mac: Callable[[], hashes.HashAlgorithm]
    mac_length: int


SUITES: Final = (
    CardSuite(0x00AE, "PSK-AES128-CBC-SHA256", hashes.SHA256, 32),  # RFC 5487 §3.2
    CardSuite(0x008C, "PSK-AES128-CBC-SHA", hashes.SHA1, 20),  # RFC 4279 §2
)
"""The suites, in the card's order of preference."""
_ENC_KEY: Final = 16  # AES-128


# -- the handshake as a table ----------------------------------------------------------------


class Phase(enum.Enum):
    """Where the engine is in the TLS 1.2 PSK handshake (§7.3, RFC 4279 §2)."""

    CLIENT_HELLO = enum.auto()
    CLIENT_KEY_EXCHANGE = enum.auto()
    CHANGE_CIPHER_SPEC = enum.auto()
    FINISHED = enum.auto()
    OPEN = enum.auto()


_CCS: Final = "change_cipher_spec"
TRANSITIONS: Final[dict[tuple[Phase, HandshakeType | str], Phase]] = {
    (Phase.CLIENT_HELLO, HandshakeType.CLIENT_HELLO): Phase.CLIENT_KEY_EXCHANGE,
    (Phase.CLIENT_KEY_EXCHANGE, HandshakeType.CLIENT_KEY_EXCHANGE): Phase.CHANGE_CIPHER_SPEC,
    (Phase.CHANGE_CIPHER_SPEC, _CCS): Phase.FINISHED,
    (Phase.FINISHED, HandshakeType.FINISHED): Phase.OPEN,
    (Phase.OPEN, HandshakeType.CLIENT_HELLO): Phase.OPEN,  # renegotiation: refused, §4.2
}
"""The allowed (phase, message) -> phase steps; any other message is `unexpected_message`."""


# -- PRF and keys (§5, §6.3, §8.1) -----------------------------------------------------------


def _hmac(key: bytes, algorithm: hashes.HashAlgorithm, *parts: bytes) -> bytes:
    mac = hmac.HMAC(key, algorithm)
    for part in parts:
        mac.update(part)
    return mac.finalize()


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """TLS 1.2 PRF with P_SHA256 (§5): P_hash(secret, label + seed) cut to `length`."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = _hmac(secret, hashes.SHA256(), a)
        out += _hmac(secret, hashes.SHA256(), a, seed)
    return bytes(out[:length])


def psk_premaster(psk: bytes) -> bytes:
    """RFC 4279 §2: uint16 N, N zero octets, uint16 N, the PSK (N = its length)."""
    n = len(psk).to_bytes(2)
    return n + bytes(len(psk)) + n + psk


class _TlsFailure(Exception):
    """Internal: end the connection with this fatal alert."""

    def __init__(self, alert: Alert, reason: str) -> None:
        super().__init__(reason)
        self.alert = alert
        self.reason = reason


class _Reader:
    """Bounds-checked reads of a handshake body; a short body is a decode_error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise _TlsFailure(Alert.DECODE_ERROR, "handshake message truncated")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n))

    def vector(self, n: int) -> bytes:
        return self.take(self.uint(n))

    def done(self) -> bool:
        return self.at == len(self.data)


@dataclass(slots=True)
class _Direction:
    """One direction's record protection: what the engine holds per direction after the
    handshake (keys and the sequence number; contexts are made per record)."""

    enc_key: bytes
    mac_key: bytes
    seq: int = 0


@dataclass(slots=True)
class _Handshake:
    """What only the handshake needs; dropped once it is done."""

    transcript: hashes.Hash
    client_random: bytes = b""
    server_random: bytes = b""
    suite: CardSuite | None = None
    ems: bool = False
    master: bytes = b""
    identity: str | None = None


class CardTlsServerHandler(TlsRecordStream):
    """The card's side of one PSK-TLS 1.2 connection through the card TLS engine, wrapping
    `inner` (the HTTP engine). `keys` is the PSK table and hint (`PskKeys`); `record_limit`
    (None: 16384) caps the plaintext per record the card sends and is the record_size_limit
    it announces. A handshake message is buffered whole (at most 16 KiB); records are
    processed one at a time, each decrypted from and encrypted into its own buffer."""

    _stack = "card TLS"

    def __init__(
        self,
        keys: PskKeys,
        inner: StreamHandler,
        *,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        super().__init__(
            inner, handshake_timeout=handshake_timeout, record_limit=record_limit, now=now
        )
        self._keys = keys
        self._random = random
        self._pending = bytearray()  # the client's bytes not yet processed (partial record)
        self._hs_buf = bytearray()  # handshake bytes not yet a whole message
        self._hs: _Handshake | None = _Handshake(hashes.Hash(hashes.SHA256()))
        self._phase = Phase.CLIENT_HELLO
        self._suite: CardSuite | None = None
        self._etm = False
        self._read_dir: _Direction | None = None  # after the client's ChangeCipherSpec
        self._write_dir: _Direction | None = None  # after ours
        self._pending_write: _Direction | None = None  # between the two
        self._send_limit = record_limit or MAX_RECORD  # plaintext per record the card sends
        self._recv_limit = MAX_RECORD  # plaintext per record the client may send
        self._eof = False

    # -- what the handshake negotiated ------------------------------------------------------

    @property
    def version(self) -> str | None:
        """ "TLSv1.2" once the handshake is done."""
        return "TLSv1.2" if self._phase is Phase.OPEN else None

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """(suite name, protocol, secret bits) once the handshake is done, like `ssl`'s."""
        if self._phase is not Phase.OPEN or self._suite is None:
            return None
        return (self._suite.name, "TLSv1.2", 128)

    @property
    def send_limit(self) -> int:
        """Largest plaintext per record the card sends (record_limit, or less if the client
        asked for less with max_fragment_length or record_size_limit)."""
        return self._send_limit

    @property
    def encrypt_then_mac(self) -> bool:
        return self._etm

    # -- TlsRecordStream --------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if data:
            self._pending += data
        else:
            self._eof = True

    def _held(self) -> int:
        return len(self._pending) + len(self._hs_buf) + len(self._out)

    def _handshake(self) -> None:
        self._process(None)

    def _read(self, now: float) -> None:
        self._process(now)

    def _encrypt(self, plain: bytes) -> None:
        step = self._send_limit
        for at in range(0, len(plain), step):
            self._write_record(ContentType.APPLICATION_DATA, plain[at : at + step])
        self._measure(len(plain))

    def _shutdown(self) -> None:
        self._write_record(ContentType.ALERT, bytes((_WARNING, Alert.CLOSE_NOTIFY)))
        self._state = TlsState.SHUTDOWN

    def _release(self) -> None:
        self._pending.clear()
        self._hs_buf.clear()
        self._hs = None
        self._read_dir = self._write_dir = None

    # -- records in -------------------------------------------------------------------------

    def _process(self, now: float | None) -> None:
        """Take whole records off `_pending` while the connection is up."""
        try:
            while self._state in (TlsState.HANDSHAKE, TlsState.OPEN) and not self._peer_done:
                if len(self._pending) < 5:
                    break
                kind, major = self._pending[0], self._pending[1]
                length = int.from_bytes(self._pending[3:5])
                if major != 3 or kind not in _CONTENT_TYPES:
                    raise _TlsFailure(Alert.UNEXPECTED_MESSAGE, "not a TLS record")
                if length > self._recv_limit + MAX_CIPHERTEXT_EXPANSION:
                    raise _TlsFailure(Alert.RECORD_OVERFLOW, f"record of {length} bytes")
                if len(self._pending) < 5 + length:
                    break
                body = bytes(self._pending[5 : 5 + length])
                self._pending = self._pending[5 + length :]  # right-sized, not the old one
                self._record(ContentType(kind), body, now)
                if now is None and self._state is TlsState.OPEN:
                    break  # the handshake is done: `_read` takes the rest with the time
            if self._eof and self._state in (TlsState.HANDSHAKE, TlsState.OPEN):
                if not self._peer_done:
                    raise _TlsFailure(Alert.DECODE_ERROR, "EOF without close_notify")
        except _TlsFailure as exc:
            self._fail(exc.alert, exc.reason)
            if self._eof and now is not None and not self._peer_done:
                self._inner.receive_data(b"", now)

    def _record(self, kind: ContentType, body: bytes, now: float | None) -> None:
        if self._read_dir is not None:
            body = self._unprotect(self._read_dir, kind, body)
        if len(body) > self._recv_limit:
            raise _TlsFailure(Alert.RECORD_OVERFLOW, f"plaintext of {len(body)} bytes")
        match kind:
            case ContentType.HANDSHAKE:
                self._handshake_bytes(body)
            case ContentType.CHANGE_CIPHER_SPEC:
                if body != b"\x01" or self._hs_buf:
                    raise _TlsFailure(Alert.UNEXPECTED_MESSAGE, "bad ChangeCipherSpec")
                self._step(_CCS)
                self._client_ccs()
            case ContentType.ALERT:
                self._alert(body, now)
            case ContentType.APPLICATION_DATA:
                if self._phase is not Phase.OPEN:
                    raise _TlsFailure(Alert.UNEXPECTED_MESSAGE, "data before the handshake")
                if body and now is not None:
                    self._measure(len(body))
                    self._inner.receive_data(body, now)

    def _alert(self, body: bytes, now: float | None) -> None:
        if len(body) != 2:
            raise _TlsFailure(Alert.DECODE_ERROR, "malformed alert")
        level, description = body
        if description == Alert.CLOSE_NOTIFY:
            self._peer_done = True
            if self._state is TlsState.HANDSHAKE:
                self.error = TlsAlert("close_notify during the handshake", 0, received=True)
                self._state = TlsState.FAILED
            elif now is not None:
                self._inner.receive_data(b"", now)
            return
        if level == _FATAL or self._state is TlsState.HANDSHAKE:
            self.error = TlsAlert("peer's alert", description, received=True)
            self._state = TlsState.FAILED
            self._peer_done = True
            logger.debug("card TLS: %s", self.error)

    def _step(self, message: HandshakeType | str) -> None:
        after = TRANSITIONS.get((self._phase, message))
        if after is None:
            name = message.name.lower() if isinstance(message, HandshakeType) else message
            raise _TlsFailure(Alert.UNEXPECTED_MESSAGE, f"{name} in phase {self._phase.name}")
        self._phase = after

    def _handshake_bytes(self, data: bytes) -> None:
        self._hs_buf += data
        while len(self._hs_buf) >= 4:
            size = int.from_bytes(self._hs_buf[1:4])
            if size > MAX_HANDSHAKE:
                raise _TlsFailure(Alert.HANDSHAKE_FAILURE, f"handshake message of {size} bytes")
            if len(self._hs_buf) < 4 + size:
                return
            message = bytes(self._hs_buf[: 4 + size])
            del self._hs_buf[: 4 + size]
            try:
                kind = HandshakeType(message[0])
            except ValueError:
                raise _TlsFailure(
                    Alert.UNEXPECTED_MESSAGE, f"handshake type {message[0]}"
                ) from None
            self._step(kind)
            self._message(kind, message)

    def _message(self, kind: HandshakeType, message: bytes) -> None:
        if self._phase is Phase.OPEN and kind is HandshakeType.CLIENT_HELLO:
            # RFC 5746 §4.2 / RFC 5246 §7.2.2: renegotiation is refused with a warning
            self._write_record(ContentType.ALERT, bytes((_WARNING, Alert.NO_RENEGOTIATION)))
            return
        hs = self._hs
        if hs is None:  # pragma: no cover - the table allows nothing else after the handshake
            raise _TlsFailure(Alert.INTERNAL_ERROR, "handshake state gone")
        body = _Reader(message[4:])
        match kind:
            case HandshakeType.CLIENT_HELLO:
                hs.transcript.update(message)
                self._client_hello(hs, body)
            case HandshakeType.CLIENT_KEY_EXCHANGE:
                hs.transcript.update(message)
                self._client_key_exchange(hs, body)
            case HandshakeType.FINISHED:
                self._client_finished(hs, body, message)
            case _:
                raise _TlsFailure(Alert.UNEXPECTED_MESSAGE, f"{kind.name.lower()} from a client")

    # -- the handshake ----------------------------------------------------------------------

    def _client_hello(self, hs: _Handshake, body: _Reader) -> None:
        """§7.4.1.2; answer ServerHello, [ServerKeyExchange], ServerHelloDone."""
        version = body.uint(2)
        hs.client_random = body.take(32)
        if len(body.vector(1)) > 32:
            raise _TlsFailure(Alert.DECODE_ERROR, "session_id longer than 32 bytes")
        raw_suites = body.vector(2)
        compression = body.vector(1)
        if len(raw_suites) < 2 or len(raw_suites) % 2:
            raise _TlsFailure(Alert.DECODE_ERROR, "malformed cipher_suites")
        extensions: dict[int, bytes] = {}
        if not body.done():
            ext = _Reader(body.vector(2))
            while not ext.done():
                kind = ext.uint(2)
                if kind in extensions:  # §7.4.1.4: at most one of each
                    raise _TlsFailure(Alert.ILLEGAL_PARAMETER, f"extension {kind} twice")
                extensions[kind] = ext.vector(2)
        if not body.done():
            raise _TlsFailure(Alert.DECODE_ERROR, "bytes after the ClientHello")
        if version < TLS12:
            raise _TlsFailure(Alert.PROTOCOL_VERSION, f"client_version {version:#06x}")
        if 0 not in compression:
            raise _TlsFailure(Alert.ILLEGAL_PARAMETER, "no null compression")
        offered = {int.from_bytes(raw_suites[i : i + 2]) for i in range(0, len(raw_suites), 2)}
        suite = next((s for s in SUITES if s.code in offered), None)
        if suite is None:
            raise _TlsFailure(Alert.HANDSHAKE_FAILURE, "no PSK-AES128-CBC suite offered")
        hs.suite = suite
        reneg = extensions.get(Ext.RENEGOTIATION_INFO)
        if reneg is not None and reneg != b"\x00":  # RFC 5746 §3.6
            raise _TlsFailure(Alert.HANDSHAKE_FAILURE, "non-empty renegotiation_info")
        secure_reneg = reneg is not None or EMPTY_RENEGOTIATION_INFO_SCSV in offered

        answer: list[tuple[int, bytes]] = []
        if secure_reneg:
            answer.append((Ext.RENEGOTIATION_INFO, b"\x00"))
        if Ext.EXTENDED_MASTER_SECRET in extensions:
            if extensions[Ext.EXTENDED_MASTER_SECRET]:
                raise _TlsFailure(Alert.DECODE_ERROR, "extended_master_secret with data")
            hs.ems = True
            answer.append((Ext.EXTENDED_MASTER_SECRET, b""))
        if Ext.ENCRYPT_THEN_MAC in extensions:
            if extensions[Ext.ENCRYPT_THEN_MAC]:
                raise _TlsFailure(Alert.DECODE_ERROR, "encrypt_then_mac with data")
            self._etm = True
            answer.append((Ext.ENCRYPT_THEN_MAC, b""))
        if Ext.RECORD_SIZE_LIMIT in extensions:  # RFC 8449 §5: it wins over max_fragment_length
            raw = extensions[Ext.RECORD_SIZE_LIMIT]
            if len(raw) != 2:
                raise _TlsFailure(Alert.DECODE_ERROR, "malformed record_size_limit")
            theirs = int.from_bytes(raw)
            if theirs < MIN_RECORD_SIZE_LIMIT:
                raise _TlsFailure(Alert.ILLEGAL_PARAMETER, f"record_size_limit {theirs}")
            self._send_limit = min(self._send_limit, theirs)
            ours = max(self._record_limit or MAX_RECORD, MIN_RECORD_SIZE_LIMIT)
            self._recv_limit = ours
            answer.append((Ext.RECORD_SIZE_LIMIT, ours.to_bytes(2)))
        elif Ext.MAX_FRAGMENT_LENGTH in extensions:
            raw = extensions[Ext.MAX_FRAGMENT_LENGTH]
            if len(raw) != 1 or raw[0] not in MFL_SIZES:  # RFC 6066 §4
                raise _TlsFailure(Alert.ILLEGAL_PARAMETER, "bad max_fragment_length")
            size = MFL_SIZES[raw[0]]
            self._send_limit = min(self._send_limit, size)
            self._recv_limit = size
            answer.append((Ext.MAX_FRAGMENT_LENGTH, raw))

        hs.server_random = self._random(32)
        exts = b"".join(k.to_bytes(2) + len(v).to_bytes(2) + v for k, v in answer)
        hello = (
            TLS12.to_bytes(2)
            + hs.server_random
            + b"\x00"  # empty session_id: nothing to resume
            + suite.code.to_bytes(2)
            + b"\x00"  # null compression
            + (len(exts).to_bytes(2) + exts if answer else b"")
        )
        flight = self._handshake_message(hs, HandshakeType.SERVER_HELLO, hello)
        hint = self._keys.hint
        if hint is not None:  # RFC 4279 §2: ServerKeyExchange only to carry a hint
            raw_hint = hint.encode("utf-8")
            flight += self._handshake_message(
                hs, HandshakeType.SERVER_KEY_EXCHANGE, len(raw_hint).to_bytes(2) + raw_hint
            )
        flight += self._handshake_message(hs, HandshakeType.SERVER_HELLO_DONE, b"")
        self._write_record(ContentType.HANDSHAKE, flight)

    def _client_key_exchange(self, hs: _Handshake, body: _Reader) -> None:
        """RFC 4279 §2: the client's PSK identity; derive the master secret (§8.1, RFC 7627)."""
        raw = body.vector(2)
        if not body.done():
            raise _TlsFailure(Alert.DECODE_ERROR, "bytes after the PSK identity")
        try:
            identity: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            identity = None  # gets a decoy like any unknown identity
        hs.identity = identity
        premaster = psk_premaster(self._keys.key(identity))
        if hs.ems:
            seed, label = hs.transcript.copy().finalize(), b"extended master secret"
        else:
            seed, label = hs.client_random + hs.server_random, b"master secret"
        hs.master = prf(premaster, label, seed, 48)

    def _client_ccs(self) -> None:
        """Keys from the master secret (§6.3): the client's records are protected from now."""
        hs = self._hs
        if hs is None or hs.suite is None:  # pragma: no cover - the table orders the steps
            raise _TlsFailure(Alert.INTERNAL_ERROR, "ChangeCipherSpec before the keys")
        suite = hs.suite
        size = 2 * suite.mac_length + 2 * _ENC_KEY
        block = prf(hs.master, b"key expansion", hs.server_random + hs.client_random, size)
        m = suite.mac_length
        client_mac, server_mac = block[:m], block[m : 2 * m]
        client_key = block[2 * m : 2 * m + _ENC_KEY]
        server_key = block[2 * m + _ENC_KEY :]
        self._suite = suite
        self._read_dir = _Direction(client_key, client_mac)
        self._pending_write = _Direction(server_key, server_mac)

    def _client_finished(self, hs: _Handshake, body: _Reader, message: bytes) -> None:
        """§7.4.9: check the client's verify_data, then send ChangeCipherSpec and Finished."""
        verify = body.take(VERIFY_DATA_LENGTH)
        if not body.done():
            raise _TlsFailure(Alert.DECODE_ERROR, "Finished too long")
        expected = prf(
            hs.master, b"client finished", hs.transcript.copy().finalize(), VERIFY_DATA_LENGTH
        )
        if not std_hmac.compare_digest(verify, expected):
            raise _TlsFailure(Alert.DECRYPT_ERROR, "client Finished does not verify")
        hs.transcript.update(message)
        server_verify = prf(
            hs.master, b"server finished", hs.transcript.copy().finalize(), VERIFY_DATA_LENGTH
        )
        self._write_record(ContentType.CHANGE_CIPHER_SPEC, b"\x01")
        self._write_dir = self._pending_write
        finished = bytes((HandshakeType.FINISHED,)) + VERIFY_DATA_LENGTH.to_bytes(3)
        self._write_record(ContentType.HANDSHAKE, finished + server_verify)
        identity = hs.identity
        self._hs = None  # the transcript, PSK-derived secrets and randoms are gone
        self._pending_write = None
        self._state = TlsState.OPEN
        logger.debug("card TLS handshake done: %s for %r", self._suite, identity)

    def _handshake_message(self, hs: _Handshake, kind: HandshakeType, body: bytes) -> bytes:
        message = bytes((kind,)) + len(body).to_bytes(3) + body
        hs.transcript.update(message)
        return message

    # -- record protection (§6.2.3.2, RFC 7366) ---------------------------------------------

    def _mac(self, direction: _Direction, kind: int, content: bytes) -> bytes:
        assert self._suite is not None
        header = direction.seq.to_bytes(8) + bytes((kind,)) + TLS12.to_bytes(2)
        return _hmac(
            direction.mac_key, self._suite.mac(), header + len(content).to_bytes(2), content
        )

    def _protect(self, direction: _Direction, kind: int, content: bytes) -> bytes:
        iv = self._random(BLOCK)
        enc = Cipher(algorithms.AES(direction.enc_key), modes.CBC(iv)).encryptor()
        if self._etm:
            pad = BLOCK - (len(content) + 1) % BLOCK
            padded = content + bytes((pad,)) * (pad + 1)
            sealed = iv + enc.update(padded) + enc.finalize()
            out = sealed + self._mac(direction, kind, sealed)
        else:
            mac = self._mac(direction, kind, content)
            pad = BLOCK - (len(content) + len(mac) + 1) % BLOCK
            padded = content + mac + bytes((pad,)) * (pad + 1)
            out = iv + enc.update(padded) + enc.finalize()
        direction.seq += 1
        return out

    def _unprotect(self, direction: _Direction, kind: int, body: bytes) -> bytes:
        assert self._suite is not None
        m = self._suite.mac_length
        if self._etm:
            if len(body) < BLOCK + BLOCK + m or (len(body) - m) % BLOCK:
                raise _TlsFailure(Alert.BAD_RECORD_MAC, "record too short or not whole blocks")
            sealed, tag = body[:-m], body[-m:]
            if not std_hmac.compare_digest(self._mac(direction, kind, sealed), tag):
                raise _TlsFailure(Alert.BAD_RECORD_MAC, "record MAC does not verify")
            dec = Cipher(algorithms.AES(direction.enc_key), modes.CBC(sealed[:BLOCK])).decryptor()
            plain = dec.update(sealed[BLOCK:]) + dec.finalize()
            pad = plain[-1]
            if pad + 1 > len(plain) or plain[-pad - 1 :] != bytes((pad,)) * (pad + 1):
                raise _TlsFailure(Alert.BAD_RECORD_MAC, "bad padding")
            direction.seq += 1
            return plain[: -pad - 1]
        if len(body) % BLOCK or len(body) - BLOCK < m + 1:
            raise _TlsFailure(Alert.BAD_RECORD_MAC, "record too short or not whole blocks")
        dec = Cipher(algorithms.AES(direction.enc_key), modes.CBC(body[:BLOCK])).decryptor()
        plain = dec.update(body[BLOCK:]) + dec.finalize()
        pad = plain[-1]
        good = pad + 1 + m <= len(plain) and plain[-pad - 1 :] == bytes((pad,)) * (pad + 1)
        cut = pad + 1 if good else 0  # bad padding: the MAC is still computed (§6.2.3.2)
        content, tag = plain[: len(plain) - cut - m], plain[len(plain) - cut - m : len(plain) - cut]
        ok = std_hmac.compare_digest(self._mac(direction, kind, content), tag)
        if not (ok and good):
            raise _TlsFailure(Alert.BAD_RECORD_MAC, "record MAC or padding does not verify")
        direction.seq += 1
        return content

    # -- records out ------------------------------------------------------------------------

    def _write_record(self, kind: ContentType, content: bytes) -> None:
        """One record per `send_limit` of content (handshake flights too)."""
        step = self._send_limit
        for at in range(0, max(len(content), 1), step):
            piece = content[at : at + step]
            if self._write_dir is not None:
                piece = self._protect(self._write_dir, kind, piece)
            self._out += bytes((kind,)) + TLS12.to_bytes(2) + len(piece).to_bytes(2) + piece
        self._measure()

    def _fail(self, alert: Alert, reason: str) -> None:
        self._write_record(ContentType.ALERT, bytes((_FATAL, alert)))
        self.error = TlsAlert(reason, int(alert))
        self._state = TlsState.FAILED
        self._pending.clear()
        self._hs_buf.clear()
        self._hs = None
        logger.debug("card TLS failed: %s", self.error)
