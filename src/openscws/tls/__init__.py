"""TLS and PSK-TLS terminated on the card (OMA SCWS §11), sans-IO over `ssl.MemoryBIO`; plus
TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS (`openscws.tls.gnutls`, chosen per connection by
`openscws.tls.dispatch` from the ClientHello, `openscws.tls.hello`); and, opt-in, the card TLS
engine for the PSK AES suites (`openscws.tls.card_engine`), which holds far less per channel."""

from openscws.tls.alert import TlsAlert
from openscws.tls.card_engine import CardTlsServerHandler
from openscws.tls.context import (
    describe_stack,
    psk_client_context,
    psk_server_context,
    server_context,
)
from openscws.tls.endpoint import TlsClientHandler, TlsServerHandler, TlsState

__all__ = [
    "CardTlsServerHandler",
    "TlsAlert",
    "TlsClientHandler",
    "TlsServerHandler",
    "TlsState",
    "describe_stack",
    "psk_client_context",
    "psk_server_context",
    "server_context",
]
