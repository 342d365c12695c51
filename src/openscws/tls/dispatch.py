"""One HTTPS port, up to three TLS stacks: OpenSSL for every client, GnuTLS for the 3DES-only
one, and (opt-in) the card TLS engine for PSK clients of its AES suites.

SCWS §11.1.1.1 wants TLS_PSK_WITH_3DES_EDE_CBC_SHA (0x008B). OpenSSL here has no 3DES suite,
GnuTLS does (`openscws.tls.gnutls`). `TlsDispatcher` is a `StreamHandler` that holds the first
bytes of a connection until the ClientHello is complete (`openscws.tls.hello`; at most
`MAX_HELLO_BYTES`, within the same handshake deadline as the handshake itself), then hands
them, and the connection, to one stack for good:

* **GnuTLS** (`GnutlsPskServerHandler`, the card's PSK table) when the client offers 0x008B and
  *none* of the suites the OpenSSL context has enabled (TLS 1.3 ones included);
* **the card TLS engine** (`openscws.tls.card_engine.CardTlsServerHandler`), when enabled
  (`card_engine=True`: `card.tls_engine = "card"`), for a TLS 1.2 client that offers
  TLS_PSK_WITH_AES_128_CBC_SHA or _SHA256 (`wants_card_engine`): it holds far less per
  channel than OpenSSL;
* **OpenSSL** (`TlsServerHandler`) otherwise: every certificate client, every PSK client that
  can use an AES suite, and anything that is not a parseable ClientHello (SSLv2-format hellos,
  garbage, an early EOF), so such input fails exactly as it does without the dispatcher.

After the hand-over the dispatcher only forwards; `state`, `error`, `version`, `cipher` and
`peak_buffer` are the chosen stack's (`stack` says which)."""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING, Final, Literal

from openscws.tls.alert import TlsAlert
from openscws.tls.card_engine import SUITES as CARD_SUITES
from openscws.tls.card_engine import TLS12, CardTlsServerHandler
from openscws.tls.endpoint import TlsServerHandler, TlsState
from openscws.tls.gnutls import (
    PSK_SPEC_PRIORITY,
    SUITE_PSK_3DES_EDE_CBC_SHA,
    GnutlsPskServerHandler,
    GnutlsUnavailable,
)
from openscws.tls.hello import MAX_HELLO_BYTES, ClientHello, ClientHelloReader, HelloError
from openscws.tls.psk import PskKeys

if TYPE_CHECKING:
    from openscws.bip.card import StreamHandler

__all__ = ["TlsDispatcher", "openssl_suite_codes", "wants_card_engine", "wants_gnutls"]

logger = logging.getLogger(__name__)

Stack = Literal["openssl", "gnutls", "card"]
_CARD_CODES: Final = frozenset(s.code for s in CARD_SUITES)
Chosen = TlsServerHandler | GnutlsPskServerHandler | CardTlsServerHandler
_DONE: Final = frozenset({TlsState.SHUTDOWN, TlsState.FAILED, TlsState.CLOSED})


def openssl_suite_codes(context: ssl.SSLContext) -> frozenset[int]:
    """IANA codes of the suites `context` has enabled (`get_ciphers()` ids are 0x0300XXXX)."""
    return frozenset(int(s["id"]) & 0xFFFF for s in context.get_ciphers())


def wants_gnutls(hello: ClientHello, openssl_suites: frozenset[int]) -> bool:
    """True when only GnuTLS can serve `hello`: it offers TLS_PSK_WITH_3DES_EDE_CBC_SHA and
    nothing OpenSSL has enabled."""
    offered = frozenset(hello.cipher_suites)
    return SUITE_PSK_3DES_EDE_CBC_SHA in offered and not offered & openssl_suites


def wants_card_engine(hello: ClientHello) -> bool:
    """True when the card TLS engine can serve `hello`: TLS 1.2 (client_version 0x0303 or
    more) and one of its suites offered."""
    return hello.legacy_version >= TLS12 and bool(_CARD_CODES & frozenset(hello.cipher_suites))


class TlsDispatcher:
    """The card's side of one TLS connection on a port with both stacks (see the module).

    `context` is the endpoint's OpenSSL server context, `psk` its PSK table and hint (the
    same `PskKeys` the OpenSSL context has); `openssl_suites` defaults to
    `openssl_suite_codes(context)` (pass it in to compute it once per port)."""

    def __init__(
        self,
        context: ssl.SSLContext,
        inner: StreamHandler,
        psk: PskKeys,
        *,
        openssl_suites: frozenset[int] | None = None,
        gnutls_priority: str = PSK_SPEC_PRIORITY,
        card_engine: bool = False,
        handshake_timeout: float = 10.0,
        record_limit: int | None = 1024,
        now: float | None = None,
    ) -> None:
        self._context = context
        self._inner = inner
        self._psk = psk
        self._suites = openssl_suite_codes(context) if openssl_suites is None else openssl_suites
        self._priority = gnutls_priority
        self._card_engine = card_engine
        self._timeout = handshake_timeout
        self._record_limit = record_limit
        self._start = now
        self._reader: ClientHelloReader | None = ClientHelloReader(MAX_HELLO_BYTES)
        self._chosen: Chosen | None = None
        self._stack: Stack | None = None
        self._state = TlsState.HANDSHAKE
        self._peak = 0
        self._error: TlsAlert | None = None

    # -- StreamHandler ----------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self._chosen is not None:
            self._chosen.receive_data(data, now)
            return
        if self._start is None:
            self._start = now
        if self._state in _DONE or self._reader is None:
            return
        if not data:  # EOF before a whole ClientHello: OpenSSL ends it as it always did
            self._hand_over("openssl", now)
            self._forward(b"", now)
            return
        try:
            hello = self._reader.feed(data)
        except HelloError as exc:
            logger.debug("no ClientHello to dispatch on (%s): OpenSSL", exc.reason)
            self._hand_over("openssl", now)
            return
        self._peak = max(self._peak, len(self._reader.buffered))
        if hello is not None:
            if self._card_engine and wants_card_engine(hello):
                self._hand_over("card", now)
            else:
                gnutls = wants_gnutls(hello, self._suites)
                self._hand_over("gnutls" if gnutls else "openssl", now)

    def data_to_send(self, limit: int | None = None) -> bytes:
        return b"" if self._chosen is None else self._chosen.data_to_send(limit)

    @property
    def should_close(self) -> bool:
        return self._state in _DONE if self._chosen is None else self._chosen.should_close

    @property
    def idle(self) -> bool:
        return False if self._chosen is None else self._chosen.idle

    def get_timer(self) -> float | None:
        if self._chosen is not None:
            return self._chosen.get_timer()
        if self._state is not TlsState.HANDSHAKE or self._start is None:
            return None
        return self._start + self._timeout

    def handle_timer(self, now: float) -> None:
        if self._chosen is not None:
            self._chosen.handle_timer(now)
            return
        due = self.get_timer()
        if due is not None and now >= due:
            self._error = TlsAlert("handshake timed out")
            self._state = TlsState.FAILED
            self._reader = None
            logger.debug("TLS handshake timed out before a complete ClientHello")

    @property
    def wants_input(self) -> bool:
        return True if self._chosen is None else self._chosen.wants_input

    def close_after_response(self) -> None:
        self._inner.close_after_response()

    def shutdown(self) -> None:
        if self._chosen is not None:
            self._chosen.shutdown()
        elif self._state is TlsState.HANDSHAKE:
            self._state = TlsState.SHUTDOWN
            self._reader = None

    def close(self) -> None:
        if self._chosen is not None:
            self._chosen.close()
            return
        if self._state is TlsState.CLOSED:
            return
        self._state = TlsState.CLOSED
        self._reader = None
        self._inner.close()

    # -- extras -----------------------------------------------------------------------------

    @property
    def stack(self) -> Stack | None:
        """Which TLS stack serves the connection, once the ClientHello is read."""
        return self._stack

    @property
    def state(self) -> TlsState:
        return self._state if self._chosen is None else self._chosen.state

    @property
    def error(self) -> TlsAlert | None:
        return self._error if self._chosen is None else self._chosen.error

    @property
    def version(self) -> str | None:
        return None if self._chosen is None else self._chosen.version

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        return None if self._chosen is None else self._chosen.cipher

    @property
    def peak_buffer(self) -> int:
        """Most bytes held at once: the buffered ClientHello, or the chosen stack's peak."""
        return max(self._peak, 0 if self._chosen is None else self._chosen.peak_buffer)

    # -- internals --------------------------------------------------------------------------

    def _hand_over(self, stack: Stack, now: float) -> None:
        assert self._reader is not None
        buffered = self._reader.buffered
        self._reader = None
        chosen: Chosen | None = None
        if stack == "card":
            chosen = CardTlsServerHandler(
                self._psk,
                self._inner,
                handshake_timeout=self._timeout,
                record_limit=self._record_limit,
                now=self._start,
            )
        elif stack == "gnutls":
            try:
                chosen = GnutlsPskServerHandler(
                    self._psk,
                    self._inner,
                    priority=self._priority,
                    handshake_timeout=self._timeout,
                    record_limit=self._record_limit,
                    now=self._start,
                )
            except GnutlsUnavailable as exc:
                logger.warning("GnuTLS failed (%s): the 3DES client goes to OpenSSL", exc)
                stack = "openssl"
        if chosen is None:
            chosen = TlsServerHandler(
                self._context,
                self._inner,
                handshake_timeout=self._timeout,
                record_limit=self._record_limit,
                now=self._start,
            )
        self._chosen = chosen
        self._stack = stack
        logger.debug("ClientHello dispatched to %s", stack)
        if buffered:
            self._forward(buffered, now)

    def _forward(self, data: bytes, now: float) -> None:
        assert self._chosen is not None
        self._chosen.receive_data(data, now)
