"""TLS terminated on the card, sans-IO: `ssl.MemoryBIO` pairs and `SSLContext.wrap_bio`.

The BIP gateway only relays TLS records between the terminal's browser and the card (SCWS
port 4116), so the card runs TLS itself. `TlsServerHandler` wraps another `StreamHandler`
(the HTTP engine) and is itself one: ciphertext from the channel goes to `receive_data`,
plaintext reaches the inner handler's `receive_data`, and the inner handler's output comes
back out of `data_to_send` as TLS records. `TlsClientHandler` is the same machine on the
client side, for the SCWS administration agent's PSK-TLS link to the remote administration
server (SCWS §11.1.1); its `start()` gives the ClientHello.

Contract (that of `openscws.bip.card.StreamHandler`): send everything `data_to_send()` gives,
then close once `should_close` is true; `receive_data(b"", now)` means the peer closed its
side of the transport. No TLS failure is ever raised out of this module: a bad record, wrong
PSK, unknown identity, a stalled handshake or plain garbage end the connection with the alert
OpenSSL wrote (if any) still waiting in `data_to_send()`, `should_close` true and the reason
in `error` (a `TlsAlert`). Exceptions from the inner handler are its own bugs and propagate.

**Record size.** A card has little RAM, and TLS records are up to 16 KiB (+ overhead) each.
With `record_limit` (default 1024) the inner handler is asked for at most one record of
plaintext at a time, and OpenSSL writes records of at most that size and frees its record
buffers when empty (`openscws.tls._openssl.tune_connection`; a client also asks for RFC 6066
max_fragment_length). A partial record from the peer waits in this layer, at its own size,
until it is whole: OpenSSL only ever gets whole records. `peak_buffer` reports the most bytes
this layer ever held at once (the two memory BIOs, the ciphertext queued for the channel, a
partial record and plaintext being encrypted); OpenSSL's own allocations are not counted
(benchmarks/bench_tls_ram.py measures them).

Timers: until the handshake completes, `get_timer()` is the handshake deadline
(`handshake_timeout` after `now` was first known: the constructor's `now`, `start(now)` or
the first `receive_data`); a client stalled mid-handshake is dropped when it passes. After
the handshake, timers are the inner handler's, plus one of this layer's: a record left
incomplete for `handshake_timeout` also ends the connection (the inner handler cannot see
a partial record, so its own timers would not catch that stall)."""

from __future__ import annotations

import abc
import enum
import logging
import ssl
from typing import TYPE_CHECKING, Final

from openscws.tls._openssl import tune_connection
from openscws.tls.alert import TlsAlert

if TYPE_CHECKING:
    from openscws.bip.card import StreamHandler

__all__ = ["TlsClientHandler", "TlsServerHandler", "TlsState"]

logger = logging.getLogger(__name__)

MAX_RECORD: Final = 16384
"""Largest TLS plaintext fragment, RFC 5246 §6.2.1 / RFC 8446 §5.1."""
_MAX_CIPHERTEXT: Final = MAX_RECORD + 2048
"""Largest TLSCiphertext.length, RFC 5246 §6.2.3."""
_READ_SIZE: Final = MAX_RECORD


class TlsState(enum.Enum):
    HANDSHAKE = enum.auto()
    """Handshake in progress: nothing flows to or from the inner handler."""
    OPEN = enum.auto()
    """Application data both ways."""
    SHUTDOWN = enum.auto()
    """Our close_notify is written: close once it is sent."""
    FAILED = enum.auto()
    """A fatal error: the alert (if any) is written; close once it is sent. See `error`."""
    CLOSED = enum.auto()
    """`close()` was called: the transport is gone."""


_DONE: Final = frozenset({TlsState.SHUTDOWN, TlsState.FAILED, TlsState.CLOSED})


class TlsRecordStream(abc.ABC):
    """What every TLS stack's endpoint shares: the StreamHandler contract, the states, the
    handshake and record-stall timers, the record framing of the peer's bytes, the queue of
    records for the peer and `peak_buffer`. A stack supplies `_feed`, `_held`, `_handshake`,
    `_read`, `_encrypt`, `_shutdown` and `_release`, and moves its output into `_out`."""

    _stack = "TLS"
    """Name in log lines."""

    def __init__(
        self,
        inner: StreamHandler,
        *,
        handshake_timeout: float,
        record_limit: int | None,
        now: float | None,
    ) -> None:
        if record_limit is not None and not 1 <= record_limit <= MAX_RECORD:
            raise ValueError(f"record_limit must be 1..{MAX_RECORD}, not {record_limit}")
        self._inner = inner
        self._handshake_timeout = handshake_timeout
        self._record_limit = record_limit
        self._deadline = None if now is None else now + handshake_timeout
        self._state = TlsState.HANDSHAKE
        self._out = bytearray()  # ciphertext ready for the peer
        self._peer_done = False  # close_notify received: the inner handler got its EOF
        self._peak = 0
        # Record framing of what the peer sent, to see a record left incomplete (the stacks
        # take partial records in): header bytes seen, body bytes still due.
        self._header = bytearray()
        self._body_due = 0
        self._partial_since: float | None = None
        self.error: TlsAlert | None = None
        """Why the connection failed (state FAILED), else None."""

    # -- the stack's part -------------------------------------------------------------------

    @abc.abstractmethod
    def _feed(self, data: bytes) -> None:
        """Give the stack ciphertext from the peer; `b""` is the transport's EOF."""

    @abc.abstractmethod
    def _held(self) -> int:
        """Bytes of ciphertext the stack's buffers and `_out` hold now."""

    @abc.abstractmethod
    def _handshake(self) -> None:
        """Advance the handshake with what `_feed` gave; on success, enter OPEN."""

    @abc.abstractmethod
    def _read(self, now: float) -> None:
        """Decrypt what arrived and hand the plaintext to the inner handler."""

    @abc.abstractmethod
    def _encrypt(self, plain: bytes) -> None:
        """Encrypt `plain` into records for the peer."""

    @abc.abstractmethod
    def _shutdown(self) -> None:
        """Write close_notify and enter SHUTDOWN."""

    def _release(self) -> None:  # noqa: B027 - optional: the stdlib stack frees itself
        """Free what the stack holds (called once, by `close`)."""

    # -- StreamHandler ----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed ciphertext from the peer; `b""` means the transport reached EOF."""
        if self._deadline is None:
            self._deadline = now + self._handshake_timeout
        if self._state in _DONE:
            return
        self._feed(data)
        if data:
            self._frame(data, now)
        self._measure()
        if self._state is TlsState.HANDSHAKE:
            self._handshake()
        if self._state is TlsState.OPEN:
            self._read(now)

    def data_to_send(self, limit: int | None = None) -> bytes:
        """TLS records for the peer. The inner handler is asked for more plaintext (with the
        same `limit`) only when less than `limit` ciphertext is already waiting."""
        if self._state is TlsState.OPEN and (not self._out or (limit and len(self._out) < limit)):
            self._pull_inner(limit)
        if limit is None or limit >= len(self._out):
            data = bytes(self._out)
            self._out.clear()
        else:
            data = bytes(self._out[:limit])
            # A fresh buffer for the rest (at most about a record): deleting from the front
            # of a bytearray keeps its whole allocation, the size of the channel buffer.
            self._out = self._out[limit:]
        return data

    @property
    def should_close(self) -> bool:
        """True once the connection is to be closed after `data_to_send()` is drained."""
        return self._state in _DONE

    @property
    def idle(self) -> bool:
        """Handshake done, nothing half-received or unsent here, and the inner handler idle
        (between requests, or before the first: a connection that says nothing after its
        handshake is reclaimed like a finished keep-alive one when clients wait)."""
        return (
            self._state is TlsState.OPEN
            and not self._out
            and not self._in_record
            and self._inner.idle
        )

    def get_timer(self) -> float | None:
        match self._state:
            case TlsState.HANDSHAKE:
                return self._deadline
            case TlsState.OPEN:
                inner = self._inner.get_timer()
                if self._partial_since is None:
                    return inner
                stall = self._partial_since + self._handshake_timeout
                return stall if inner is None else min(stall, inner)
            case _:
                return None

    def handle_timer(self, now: float) -> None:
        match self._state:
            case TlsState.HANDSHAKE:
                if self._deadline is not None and now >= self._deadline:
                    self.error = TlsAlert("handshake timed out")
                    self._state = TlsState.FAILED
                    logger.debug("%s handshake timed out", self._stack)
            case TlsState.OPEN:
                since = self._partial_since
                if since is not None and now >= since + self._handshake_timeout:
                    self.error = TlsAlert("record stalled")
                    self._state = TlsState.FAILED
                    logger.debug("%s record left incomplete", self._stack)
                    return
                self._inner.handle_timer(now)
            case _:
                pass

    def close(self) -> None:
        """The transport is gone: drop what is queued, free the stack's state and close the
        inner handler."""
        if self._state is TlsState.CLOSED:
            return
        self._state = TlsState.CLOSED
        self._out.clear()
        self._release()
        self._inner.close()

    # -- extras -----------------------------------------------------------------------------

    @property
    def state(self) -> TlsState:
        return self._state

    @property
    def held(self) -> int:
        """Bytes this layer holds now (the stack's buffers it can see, queued ciphertext, a
        partial record from the peer); the stack's own allocations are not included."""
        return self._held()

    @property
    def peak_buffer(self) -> int:
        """Most bytes held here at once: the stack's ciphertext buffers, queued ciphertext
        and plaintext being encrypted (the stack's internal record buffers not included)."""
        return self._peak

    @property
    def wants_input(self) -> bool:
        return self._state is not TlsState.OPEN or self._inner.wants_input

    def close_after_response(self) -> None:
        """The inner handler's next response is its last (HTTP: `Connection: close`);
        close_notify follows it."""
        self._inner.close_after_response()

    def shutdown(self) -> None:
        """Close gracefully now: write close_notify (if the handshake is done) and set
        `should_close`, e.g. before the card drops an idle keep-alive connection."""
        match self._state:
            case TlsState.OPEN:
                self._shutdown()
            case TlsState.HANDSHAKE:
                self._state = TlsState.SHUTDOWN
            case _:
                pass

    # -- internals --------------------------------------------------------------------------

    def _frame(self, data: bytes, now: float) -> None:
        """Follow record boundaries (RFC 5246 §6.2.1: type, version, uint16 length)."""
        at = 0
        while at < len(data):
            if self._body_due:
                take = min(self._body_due, len(data) - at)
                self._body_due -= take
                at += take
            else:
                take = min(5 - len(self._header), len(data) - at)
                self._header += data[at : at + take]
                at += take
                if len(self._header) == 5:
                    self._body_due = int.from_bytes(self._header[3:5])
                    self._header.clear()
        if self._header or self._body_due:
            if self._partial_since is None:
                self._partial_since = now
        else:
            self._partial_since = None

    @property
    def _in_record(self) -> bool:
        return bool(self._header or self._body_due)

    def _measure(self, plaintext: int = 0) -> None:
        self._peak = max(self._peak, self._held() + plaintext)

    def _pull_inner(self, limit: int | None) -> None:
        """Encrypt the inner handler's output until about `limit` bytes are queued; write
        close_notify in the same go once it is done, so it can share the last send."""
        # At most one record's worth of plaintext at a time: the HTTP engine hands a stored
        # or streamed body over in pieces no larger than what one record carries.
        step = self._record_limit or MAX_RECORD
        ask = step if limit is None else min(limit, step)
        while self._state is TlsState.OPEN:
            plain = self._inner.data_to_send(ask)
            if plain:
                self._encrypt(plain)
                if limit is not None and len(self._out) >= limit:
                    return
            else:
                if self._inner.should_close or (self._peer_done and self._inner.idle):
                    self._shutdown()
                return


class _TlsEndpoint(TlsRecordStream):
    """The stdlib `ssl` (OpenSSL) stack, shared by both sides."""

    def __init__(
        self,
        context: ssl.SSLContext,
        inner: StreamHandler,
        *,
        server_side: bool,
        server_hostname: str | None,
        handshake_timeout: float,
        record_limit: int | None,
        now: float | None,
    ) -> None:
        super().__init__(
            inner, handshake_timeout=handshake_timeout, record_limit=record_limit, now=now
        )
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self.tuning = tune_connection(self._ssl, record_limit)
        """What OpenSSL was told for this connection (buffers released when empty, record
        sizes; see `openscws.tls._openssl.tune_connection`)."""
        self._pending = bytearray()  # the peer's incomplete record, not yet given to OpenSSL

    @property
    def version(self) -> str | None:
        """Negotiated protocol ("TLSv1.2"), once the handshake is done."""
        return self._ssl.version()

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """Negotiated (suite name, protocol, secret bits), once the handshake is done."""
        return self._ssl.cipher()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The underlying `SSLObject`, for peer certificates and channel bindings."""
        return self._ssl

    # -- the stack's part -------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """OpenSSL gets whole records only: a partial one waits here, at its own size, so
        that OpenSSL (read-ahead off, buffers released when empty) allocates its ~16.7 KiB
        read buffer only while it decrypts a complete record, not for as long as a record
        trickles in over the channel. Bytes that do not look like TLS records go through as
        they are, for OpenSSL to refuse at once."""
        if not data:
            if self._pending:
                self._incoming.write(bytes(self._pending))
                self._pending.clear()
            self._incoming.write_eof()
            return
        pending = self._pending
        pending += data
        at = 0
        while len(pending) - at >= 5:
            kind, major = pending[at], pending[at + 1]
            length = int.from_bytes(pending[at + 3 : at + 5])
            if not 20 <= kind <= 24 or major != 3 or length > _MAX_CIPHERTEXT:
                at = len(pending)  # not a TLS record: OpenSSL says so
                break
            if len(pending) - at < 5 + length:
                break
            at += 5 + length
        if at:
            self._incoming.write(bytes(pending[:at]))
            del pending[:at]

    def _held(self) -> int:
        return len(self._pending) + self._incoming.pending + self._outgoing.pending + len(self._out)

    def _collect(self) -> bytes:
        """Move what OpenSSL wrote to the queue for the peer; returns it."""
        self._measure()
        flight = self._outgoing.read()
        self._out += flight
        return flight

    def _fail(self, exc: ssl.SSLError) -> None:
        flight = self._collect()  # the alert, if OpenSSL wrote one, goes out
        self.error = TlsAlert.from_ssl_error(exc, flight)
        self._state = TlsState.FAILED
        logger.debug("TLS failed: %s", self.error)

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._collect()
        except ssl.SSLError as exc:
            self._fail(exc)
        else:
            self._collect()
            self._state = TlsState.OPEN
            logger.debug("TLS handshake done: %s %s", self._ssl.version(), self._ssl.cipher())

    def _read(self, now: float) -> None:
        while self._state is TlsState.OPEN and not self._peer_done:
            try:
                chunk = self._ssl.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                self._collect()
                return
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLEOFError as exc:
                # Transport EOF without close_notify: OpenSSL 3 makes that fatal (and writes
                # a decode_error alert). The inner handler still learns of the EOF.
                self._fail(exc)
                self._inner.receive_data(b"", now)
                return
            except ssl.SSLError as exc:
                self._fail(exc)
                return
            self._collect()  # a read can write too (TLS 1.3 KeyUpdate answer)
            if not chunk:  # close_notify: `SSLObject.read` returns b"" rather than raising
                self._peer_done = True
                self._inner.receive_data(b"", now)
                return
            self._measure(len(chunk))
            self._inner.receive_data(chunk, now)

    def _encrypt(self, plain: bytes) -> None:
        step = self._record_limit or MAX_RECORD
        view = memoryview(plain)
        try:
            for at in range(0, len(plain), step):
                self._ssl.write(view[at : at + step])
        except ssl.SSLError as exc:
            self._fail(exc)
            return
        self._measure(len(plain))
        self._collect()

    def _shutdown(self) -> None:
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify written; we do not wait for the peer's (RFC 5246 §7.2.1)
        except ssl.SSLError as exc:
            logger.debug("TLS shutdown: %s", exc)
        self._collect()
        self._state = TlsState.SHUTDOWN


class TlsServerHandler(_TlsEndpoint):
    """The card's side of one TLS connection (SCWS port 4116), wrapping `inner`.

    `context` comes from `openscws.tls.context.server_context` or `psk_server_context`.
    `record_limit` caps the plaintext per record the card sends (None: 16384)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        inner: StreamHandler,
        *,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
    ) -> None:
        super().__init__(
            context,
            inner,
            server_side=True,
            server_hostname=None,
            handshake_timeout=handshake_timeout,
            record_limit=record_limit,
            now=now,
        )


class TlsClientHandler(_TlsEndpoint):
    """The client side (the administration agent's PSK-TLS link), wrapping `inner`.

    Call `start()` and send what it returns (the ClientHello). `server_hostname` is sent as
    SNI and checked against the certificate when the context checks hostnames (a context with
    `check_hostname` needs it; PSK contexts from `psk_client_context` do not)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        inner: StreamHandler,
        *,
        server_hostname: str | None = None,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
    ) -> None:
        super().__init__(
            context,
            inner,
            server_side=False,
            server_hostname=server_hostname,
            handshake_timeout=handshake_timeout,
            record_limit=record_limit,
            now=now,
        )
        self._started = False

    def start(self, now: float | None = None) -> bytes:
        """Begin the handshake; returns the ClientHello (and starts the handshake timer
        when `now` is given and the constructor had none)."""
        if now is not None and self._deadline is None:
            self._deadline = now + self._handshake_timeout
        if not self._started and self._state is TlsState.HANDSHAKE:
            self._started = True
            self._handshake()
        return self.data_to_send()
