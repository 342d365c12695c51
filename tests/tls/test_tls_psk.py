"""One definition of what a PSK-TLS server answers (`openscws.tls.psk`): the card's port 4116
(OpenSSL certificate+PSK context, GnuTLS for 3DES) and the admin server's endpoint (OpenSSL PSK
context, and the dispatcher in "compat") take the same `PskKeys`: the same hint reaches the
client, a known identity's key opens the session, and an unknown identity fails exactly as a
wrong key (RFC 4279 §2)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from tlspair import EchoInner, Pki, RawClient, pump

from openscws.tls.context import psk_client_context, psk_server_context, server_context
from openscws.tls.dispatch import TlsDispatcher
from openscws.tls.endpoint import TlsServerHandler
from openscws.tls.gnutls import GnutlsPskServerHandler
from openscws.tls.psk import DECOY_BYTES, PskKeys, decoy_key, server_key
from openscws.uicc.keystore import PskTable

NOW = 1000.0
KEY = bytes(range(16))
IDENTITY = "scws-8988211000000000001"
HINT = "scws"

Server = TlsServerHandler | GnutlsPskServerHandler | TlsDispatcher
Build = Callable[[Pki, PskKeys], Server]


def _card_openssl(pki: Pki, keys: PskKeys) -> Server:
    ctx = server_context(pki.chain_pem, pki.key_pem, profile="compat", psk=keys)
    return TlsServerHandler(ctx, EchoInner(), now=NOW)


def _card_gnutls(pki: Pki, keys: PskKeys) -> Server:
    return GnutlsPskServerHandler(keys, EchoInner(), now=NOW)


def _admin_openssl(pki: Pki, keys: PskKeys) -> Server:
    return TlsServerHandler(psk_server_context(keys, profile="compat"), EchoInner(), now=NOW)


def _admin_dispatch(pki: Pki, keys: PskKeys) -> Server:
    ctx = psk_server_context(keys, profile="compat")
    return TlsDispatcher(ctx, EchoInner(), keys, now=NOW)


ENDPOINTS = {
    "card-4116-openssl": _card_openssl,
    "card-4116-gnutls": _card_gnutls,
    "admin-openssl": _admin_openssl,
    "admin-compat-dispatch": _admin_dispatch,
}


def _client(identity: str, key: bytes, hints: list[str | None]) -> RawClient:
    # TLS_PSK_WITH_AES_128_CBC_SHA, the SCWS suite every endpoint has in "compat"
    ctx = psk_client_context(identity, key, profile="compat", ciphers="PSK-AES128-CBC-SHA")

    def callback(hint: str | None) -> tuple[str, bytes]:
        hints.append(hint)
        return identity, key

    ctx.set_psk_client_callback(callback)
    return RawClient(ctx)


@pytest.mark.parametrize("build", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_same_table_and_hint_on_every_endpoint(pki: Pki, build: Build) -> None:
    keys = PskTable(True, HINT, {IDENTITY: KEY}).psk_keys()
    hints: list[str | None] = []
    srv = build(pki, keys)
    client = _client(IDENTITY, KEY, hints)
    pump(client, srv, step=client.handshake)
    assert client.handshake_done
    assert hints == [HINT]


@pytest.mark.parametrize("build", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_unknown_identity_fails_as_a_wrong_key(pki: Pki, build: Build) -> None:
    keys = PskTable(True, HINT, {IDENTITY: KEY}).psk_keys()
    seen = []
    for identity, key in (("scws-8988211000000000999", KEY), (IDENTITY, b"\xff" * 16)):
        srv = build(pki, keys)
        client = _client(identity, key, [])
        with pytest.raises(ssl.SSLError) as info:
            pump(client, srv, step=client.handshake)
        assert srv.error is not None
        seen.append((info.value.reason, srv.error.description))
    assert seen[0] == seen[1]
    assert seen[0][1] == 20  # bad_record_mac


def test_decoy_keys() -> None:
    assert decoy_key("a") == decoy_key("a")
    assert decoy_key("a") != decoy_key("b")
    assert decoy_key(None) != decoy_key("")
    assert len(decoy_key("a")) == DECOY_BYTES
    table = PskTable(True, None, {IDENTITY: KEY})
    assert server_key(table.lookup, IDENTITY) == KEY
    assert server_key(table.lookup, "nobody") == decoy_key("nobody")
    disabled = PskTable(False, None, {IDENTITY: KEY})
    assert server_key(disabled.lookup, IDENTITY) == decoy_key(IDENTITY)

    def broken(identity: str | None) -> bytes | None:
        raise RuntimeError("store gone")

    assert PskKeys(broken).key(IDENTITY) == decoy_key(IDENTITY)
