"""GnutlsPskServerHandler (the card's TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS) and the
TlsDispatcher in front of both stacks: in memory against Python's ssl (AES-128) and GnuTLS's
own client (3DES), and over a socket against a real `gnutls-cli`."""

from __future__ import annotations

import asyncio
import os
import ssl
import warnings
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlspair import NOW, EchoInner, Pki, RawClient, pump, records

from openscws.config import CardSettings
from openscws.http import CardLimits
from openscws.scws.card import handler_factories
from openscws.scws.model import MemoryStore
from openscws.scws.site import Site
from openscws.tls import TlsServerHandler, TlsState, gnutls, psk_client_context, server_context
from openscws.tls.alert import TlsAlert, alert_name
from openscws.tls.context import describe_stack
from openscws.tls.dispatch import TlsDispatcher, openssl_suite_codes
from openscws.tls.gnutls import (
    PSK_3DES_PRIORITY,
    PSK_SPEC_PRIORITY,
    GnutlsPskClientHandler,
    GnutlsPskServerHandler,
    GnutlsUnavailable,
)
from openscws.tls.hello import MAX_HELLO_BYTES
from openscws.tls.psk import PskKeys
from openscws.uicc.keystore import PskTable

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENTITY = "card1"
ALERT = 21
APPLICATION_DATA = 23
THREE_DES = "TLS_PSK_3DES_EDE_CBC_SHA1"
AES = "TLS_PSK_AES_128_CBC_SHA1"


def only(*versions: str) -> str:
    """A 3DES-only client priority pinned to `versions` ("TLS1.0", ...)."""
    vers = ":".join(f"+VERS-{v}" for v in versions)
    return f"NONE:{vers}:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"


@pytest.fixture(autouse=True)
def _need_gnutls() -> None:
    why = gnutls.available()
    if why is not None:
        if os.environ.get("OPENSCWS_REQUIRE_PEERS") == "1":  # CI: never skip silently
            pytest.fail(f"GnuTLS unusable: {why} (apt-get install libgnutls30)")
        pytest.skip(f"GnuTLS unusable: {why}")


def lookup(identity: str | None) -> bytes | None:
    return KEY if identity == IDENTITY else None


def request(path: str = "/index.html", close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/1.1\r\nHost: card\r\n%s\r\n" % (path.encode(), extra)


def server(
    inner: EchoInner | None = None, hint: str | None = None, **kw: object
) -> GnutlsPskServerHandler:
    kw.setdefault("now", NOW)
    keys = PskKeys(lookup, hint)
    return GnutlsPskServerHandler(keys, inner or EchoInner(), **kw)  # type: ignore[arg-type]


def gnutls_pair(
    priority: str = PSK_3DES_PRIORITY,
    key: bytes = KEY,
    identity: str = IDENTITY,
    chunk: int | None = 255,
    client_limit: int | None = None,
    **server_kw: object,
) -> tuple[GnutlsPskClientHandler, EchoInner, GnutlsPskServerHandler, EchoInner]:
    """A GnuTLS client and the card's GnuTLS server, handshake done. The client announces no
    record_size_limit of its own unless `client_limit` says so."""
    client_inner, server_inner = EchoInner(serve=False), EchoInner()
    srv = server(server_inner, **server_kw)
    client = GnutlsPskClientHandler(
        identity, key, client_inner, priority=priority, record_limit=client_limit, now=NOW
    )
    srv.receive_data(client.start(), NOW)
    pump(client, srv, chunk=chunk)
    return client, client_inner, srv, server_inner


def python_client(
    version: ssl.TLSVersion | None = None, key: bytes = KEY, identity: str = IDENTITY
) -> RawClient:
    """Python's ssl as PSK client, offering only PSK-AES128-CBC-SHA (TLS <= 1.2)."""
    ctx = psk_client_context(identity, key, profile="compat", ciphers="PSK-AES128-CBC-SHA")
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
    return RawClient(ctx)


# -- the binding ----------------------------------------------------------------------------


def test_available_and_suites() -> None:
    assert gnutls.available() is None
    assert (gnutls.version() or "").startswith("3.")
    assert gnutls.priority_suites() == [(0x008C, AES), (0x008B, THREE_DES)]
    assert gnutls.priority_suites(PSK_3DES_PRIORITY) == [(0x008B, THREE_DES)]
    assert gnutls.self_test() == (THREE_DES, "TLSv1.2")


def test_priority_enables_plain_psk_only() -> None:
    """NONE + the listed keywords: no certificate, (EC)DHE, RSA-PSK, AEAD or TLS 1.3 suite."""
    names = [name for _, name in gnutls.priority_suites(PSK_SPEC_PRIORITY)]
    assert all(n.startswith("TLS_PSK_") and n.endswith("_CBC_SHA1") for n in names)


def test_bad_priority_is_refused() -> None:
    with pytest.raises(GnutlsUnavailable, match="priority"):
        GnutlsPskServerHandler(PskKeys(lookup), EchoInner(), priority="NONE:+NO-SUCH-THING")


def test_unavailable_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gnutls, "_loaded", [GnutlsUnavailable("libgnutls.so.30 not found")])
    assert gnutls.available() == "libgnutls.so.30 not found"
    assert gnutls.version() is None
    with pytest.raises(GnutlsUnavailable):
        GnutlsPskServerHandler(PskKeys(lookup), EchoInner())
    info = describe_stack()
    assert info["gnutls_3des"] is False
    assert info["gnutls_3des_why"] == "libgnutls.so.30 not found"


def test_describe_stack_reports_gnutls() -> None:
    info = describe_stack()
    assert info["gnutls"] == gnutls.version()
    assert info["gnutls_3des"] is True
    assert info["gnutls_3des_why"] == ""


def test_close_frees_the_session() -> None:
    srv = server()
    token = srv._token
    assert gnutls._ENDPOINTS.get(token) is srv
    srv.close()
    assert token not in gnutls._ENDPOINTS
    assert srv._finalizer.alive is False


# -- handshakes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "expected"),
    [(("TLS1.0",), "TLSv1"), (("TLS1.1",), "TLSv1.1"), (("TLS1.2", "TLS1.0"), "TLSv1.2")],
)
def test_3des_handshake_and_http(versions: tuple[str, ...], expected: str) -> None:
    client, client_inner, srv, server_inner = gnutls_pair(only(*versions))
    assert srv.state is TlsState.OPEN
    assert srv.cipher == (THREE_DES, expected, 192)
    assert srv.version == expected
    assert srv.iana_name in (None, "TLS_PSK_WITH_3DES_EDE_CBC_SHA")
    assert client.cipher == srv.cipher
    client_inner.out += request("/a")
    client_inner.out += request("/b", close=True)
    pump(client, srv)
    assert [r.split(b" ")[1] for r in server_inner.requests] == [b"/a", b"/b"]
    assert client_inner.received.endswith(b"you asked for /b")
    assert srv.should_close  # close_notify after the "Connection: close" answer
    assert client_inner.eof
    assert srv.error is None


@pytest.mark.parametrize("chunk", [None, 255, 1])
def test_aes128_with_python_ssl_client(chunk: int | None) -> None:
    inner = EchoInner()
    srv = server(inner)
    client = python_client()
    pump(client, srv, chunk=chunk, step=client.handshake)
    assert client.handshake_done
    assert client.obj.cipher() is not None
    assert client.obj.cipher()[0] == "PSK-AES128-CBC-SHA"  # type: ignore[index]
    assert srv.cipher == (AES, "TLSv1.2", 128)
    assert srv.iana_name in (None, "TLS_PSK_WITH_AES_128_CBC_SHA")
    client.obj.write(request(close=True))
    pump(client, srv, chunk=chunk)
    assert client.read_all().endswith(b"you asked for /index.html")
    assert client.obj.read(1) == b""  # the card's close_notify
    assert srv.should_close


@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")]
)
def test_aes128_legacy_versions_with_python_client(version: ssl.TLSVersion, name: str) -> None:
    srv = server()
    client = python_client(version)
    pump(client, srv, step=client.handshake)
    assert srv.version == name
    assert client.obj.version() == name


def test_hint_reaches_the_client() -> None:
    seen: list[str | None] = []
    ctx = psk_client_context(IDENTITY, KEY, ciphers="PSK-AES128-CBC-SHA")

    def callback(hint: str | None) -> tuple[str, bytes]:
        seen.append(hint)
        return IDENTITY, KEY

    ctx.set_psk_client_callback(callback)
    srv = server(hint="scws")
    client = RawClient(ctx)
    pump(client, srv, step=client.handshake)
    assert client.handshake_done
    assert seen == ["scws"]


# -- failures --------------------------------------------------------------------------------


def test_wrong_key_python_client_sees_alert() -> None:
    srv = server()
    client = python_client(key=b"\xff" * 16)
    with pytest.raises(ssl.SSLError) as info:
        pump(client, srv, step=client.handshake)
    assert "alert" in str(info.value)
    assert srv.should_close
    assert srv.state is TlsState.FAILED
    assert isinstance(srv.error, TlsAlert)
    assert srv.error.description is not None
    assert alert_name(srv.error.description) in {"decrypt_error", "bad_record_mac"}
    assert not srv.error.received
    assert srv.data_to_send() == b""  # the alert already went out


def test_wrong_key_gnutls_client() -> None:
    client, _, srv, _ = gnutls_pair(key=b"\x01" * 16)
    assert srv.should_close
    assert client.should_close
    assert srv.error is not None
    assert client.error is not None
    assert client.error.received
    assert client.error.description == srv.error.description


def test_unknown_identity_python_client_same_as_wrong_key() -> None:
    """RFC 4279 §2: an unknown identity fails as a wrong key does (no identity oracle)."""
    answers = []
    for identity, key in (("stranger", KEY), (IDENTITY, b"\xff" * 16)):
        srv = server()
        client = python_client(identity=identity, key=key)
        with pytest.raises(ssl.SSLError) as info:
            pump(client, srv, step=client.handshake)
        assert srv.should_close
        assert srv.error is not None
        answers.append((info.value.reason, srv.error.description, srv.error.reason))
    assert answers[0] == answers[1]
    assert answers[0][1] == 20  # bad_record_mac


def test_unknown_identity_gnutls_client_same_as_wrong_key() -> None:
    seen = []
    for identity, key in (("stranger", KEY), (IDENTITY, b"\x01" * 16)):
        client, _, srv, _ = gnutls_pair(identity=identity, key=key)
        assert srv.error is not None
        assert client.error is not None
        seen.append((srv.error.description, client.error.description, client.error.received))
    assert seen[0] == seen[1]
    assert seen[0] == (20, 20, True)


def test_lookup_that_raises_is_an_unknown_identity() -> None:
    def bad(identity: str | None) -> bytes | None:
        raise RuntimeError("store gone")

    srv = GnutlsPskServerHandler(PskKeys(bad), EchoInner(), now=NOW)
    client = python_client()
    with pytest.raises(ssl.SSLError):
        pump(client, srv, step=client.handshake)
    assert srv.error is not None
    assert srv.error.description == 20


def test_certificate_only_client_refused(pki: Pki) -> None:
    srv = server()
    client = RawClient(ssl.create_default_context(cadata=pki.ca_pem.decode()), "localhost")
    with pytest.raises(ssl.SSLError):
        pump(client, srv, step=client.handshake)
    assert srv.should_close
    assert srv.error is not None
    assert alert_name(srv.error.description or 0) == "handshake_failure"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x17\x03\x03\x00\x02ab",  # application data before the handshake
        b"GET / HTTP/1.1\r\nHost: card\r\n\r\n",
        bytes(20),
        b"\x80\x2e\x01\x00\x02" + bytes(60),
    ],
)
def test_garbage_gives_alert_and_close(garbage: bytes) -> None:
    srv = server()
    srv.receive_data(garbage, NOW)
    out = srv.data_to_send()
    assert [r[0] for r in records(out)] == [ALERT]
    assert out[-2] == 2  # fatal
    assert srv.should_close
    assert srv.error is not None
    assert srv.error.description == out[-1]
    srv.receive_data(b"more", NOW)  # ignored after failure
    assert srv.data_to_send() == b""


def test_bad_record_after_handshake() -> None:
    _, _, srv, server_inner = gnutls_pair()
    srv.receive_data(bytes([APPLICATION_DATA, 3, 3, 0, 40]) + b"\x01" * 40, NOW)
    assert srv.should_close
    assert srv.error is not None
    assert srv.data_to_send()  # the (encrypted) alert
    assert not server_inner.requests


def test_eof_mid_handshake() -> None:
    srv = server()
    client = GnutlsPskClientHandler(IDENTITY, KEY, EchoInner(serve=False), now=NOW)
    srv.receive_data(client.start(), NOW)
    srv.receive_data(b"", NOW)
    srv.data_to_send()
    assert srv.should_close
    assert srv.error is not None


def test_inner_handler_exceptions_propagate() -> None:
    class Boom(EchoInner):
        def receive_data(self, data: bytes, now: float) -> None:
            raise ZeroDivisionError("the inner handler's own bug")

    srv = GnutlsPskServerHandler(PskKeys(lookup), Boom(), now=NOW)
    peer_inner = EchoInner(serve=False)
    peer = GnutlsPskClientHandler(IDENTITY, KEY, peer_inner, now=NOW)
    srv.receive_data(peer.start(), NOW)
    pump(peer, srv)
    peer_inner.out += request()
    with pytest.raises(ZeroDivisionError):
        pump(peer, srv)


# -- timers ----------------------------------------------------------------------------------


def test_truncated_client_hello_waits_then_times_out() -> None:
    srv = GnutlsPskServerHandler(PskKeys(lookup), EchoInner(), handshake_timeout=5.0)
    assert srv.get_timer() is None  # no `now` yet
    hello = GnutlsPskClientHandler(IDENTITY, KEY, EchoInner(serve=False)).start()
    srv.receive_data(hello[:-1], NOW)
    assert srv.data_to_send() == b""
    assert not srv.should_close
    assert srv.get_timer() == NOW + 5.0
    srv.handle_timer(NOW + 4.9)
    assert not srv.should_close
    srv.handle_timer(NOW + 5.0)
    assert srv.should_close
    assert srv.error is not None
    assert srv.error.reason == "handshake timed out"


def test_handshake_stall_closes() -> None:
    srv = server(handshake_timeout=10.0)
    assert srv.get_timer() == NOW + 10.0
    client = GnutlsPskClientHandler(IDENTITY, KEY, EchoInner(serve=False), now=NOW)
    srv.receive_data(client.start(), NOW + 1)
    assert srv.data_to_send()  # ServerHello ... ServerHelloDone; the client never answers
    assert srv.state is TlsState.HANDSHAKE
    srv.handle_timer(NOW + 10.0)
    assert srv.should_close
    assert srv.get_timer() is None


@pytest.mark.parametrize("cut", [1, 6, 30])
def test_truncated_record_after_handshake_then_stall_timer(cut: int) -> None:
    client, client_inner, srv, server_inner = gnutls_pair(handshake_timeout=8.0)
    assert srv.idle  # no request yet: quiet
    assert srv.get_timer() is None
    client_inner.out += request()
    record = client.data_to_send()
    srv.receive_data(record[:cut], NOW + 1)
    assert not srv.should_close
    assert not srv.idle
    assert srv.get_timer() == NOW + 9
    srv.handle_timer(NOW + 8.5)
    assert not srv.should_close
    srv.handle_timer(NOW + 9)
    assert srv.should_close
    assert srv.error is not None
    assert srv.error.reason == "record stalled"
    assert server_inner.requests == []


def test_record_completed_before_stall_timer() -> None:
    client, client_inner, srv, server_inner = gnutls_pair(handshake_timeout=8.0)
    server_inner.timeout = 30.0
    client_inner.out += request()
    record = client.data_to_send()
    srv.receive_data(record[:-1], NOW + 1)
    srv.receive_data(record[-1:], NOW + 2)
    assert server_inner.requests
    assert srv.get_timer() == NOW + 32  # the inner handler's again
    srv.handle_timer(NOW + 32)
    close_notify = srv.data_to_send()
    assert records(close_notify)[-1][0] == ALERT  # TLS <= 1.2: an (encrypted) alert record
    assert srv.should_close
    assert srv.error is None


# -- closing ---------------------------------------------------------------------------------


def test_client_close_notify() -> None:
    inner = EchoInner()
    srv = server(inner)
    client = python_client()
    pump(client, srv, step=client.handshake)
    with pytest.raises(ssl.SSLWantReadError):
        client.obj.unwrap()
    pump(client, srv)
    assert inner.eof
    assert srv.should_close
    client.obj.unwrap()  # the card's close_notify arrived


def test_shutdown_sends_close_notify() -> None:
    client, client_inner, srv, _ = gnutls_pair()
    srv.shutdown()
    assert srv.should_close
    pump(client, srv)
    assert client_inner.eof


def test_shutdown_during_handshake() -> None:
    srv = server()
    srv.shutdown()
    assert srv.should_close
    assert srv.state is TlsState.SHUTDOWN


def test_transport_eof_without_close_notify() -> None:
    _, _, srv, inner = gnutls_pair()
    srv.receive_data(b"", NOW)
    assert inner.eof
    assert srv.should_close
    assert srv.error is not None
    assert "PREMATURE_TERMINATION" in srv.error.reason


def test_after_close_everything_is_inert() -> None:
    _, _, srv, inner = gnutls_pair()
    srv.close()
    assert inner.closed
    assert srv.state is TlsState.CLOSED
    srv.receive_data(b"\x17\x03\x03\x00\x01x", NOW)
    srv.shutdown()
    srv.handle_timer(NOW + 100)
    srv.close()
    assert srv.data_to_send() == b""
    assert srv.get_timer() is None
    assert srv.cipher is not None  # what was negotiated stays readable


# -- record size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "limit"),
    [(only("TLS1.0"), 256), (only("TLS1.2"), 256), (only("TLS1.2"), 1024)],
)
def test_record_limit_bounds_records(priority: str, limit: int) -> None:
    client, client_inner, srv, _ = gnutls_pair(priority, record_limit=limit)
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, srv, chunk=None, tap_b=sent)
    assert client_inner.received.endswith(b"x" * 5000)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert len(app) >= 5000 // limit
    # 3DES-CBC-SHA1 overhead: explicit IV 8 (TLS >= 1.1) + MAC 20 + padding 1..8
    assert max(length for _, _, length in app) <= limit + 8 + 20 + 8


def test_no_record_limit_sends_big_records() -> None:
    client, client_inner, srv, _ = gnutls_pair(record_limit=None)
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, srv, chunk=None, tap_b=sent)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert max(length for _, _, length in app) > 5000


def test_client_record_size_limit_bounds_the_cards_records() -> None:
    """A client announcing RFC 8449 record_size_limit 1024 gets records that small from a
    card without a limit of its own."""
    client, client_inner, srv, _ = gnutls_pair(client_limit=1024, record_limit=None)
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, srv, chunk=None, tap_b=sent)
    assert client_inner.received.endswith(b"x" * 5000)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert max(length for _, _, length in app) <= 1024 + 36


def test_record_limit_validated() -> None:
    with pytest.raises(ValueError, match="record_limit"):
        GnutlsPskServerHandler(PskKeys(lookup), EchoInner(), record_limit=0)
    with pytest.raises(ValueError, match="record_limit"):
        GnutlsPskServerHandler(PskKeys(lookup), EchoInner(), record_limit=16385)


def test_data_to_send_respects_limit() -> None:
    client, client_inner, srv, _ = gnutls_pair()
    client_inner.out += request("/big/3000")
    srv.receive_data(client.data_to_send(), NOW)
    pieces = []
    while piece := srv.data_to_send(200):
        assert len(piece) <= 200
        pieces.append(piece)
    client.receive_data(b"".join(pieces), NOW)
    assert client_inner.received.endswith(b"x" * 3000)
    assert srv.peak_buffer < 3000  # pulled from the inner handler bit by bit


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    srv = server()
    for chunk in chunks:
        srv.receive_data(chunk, NOW)
        srv.data_to_send()
    srv.handle_timer(NOW + 60)
    assert srv.should_close
    srv.close()


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.binary(min_size=1, max_size=4))
def test_corrupted_handshake_never_raises(offset: int, junk: bytes) -> None:
    srv = server()
    client = GnutlsPskClientHandler(IDENTITY, KEY, EchoInner(serve=False), now=NOW)
    hello = bytearray(client.start())
    at = offset % len(hello)
    hello[at : at + len(junk)] = junk
    srv.receive_data(bytes(hello), NOW)
    client.receive_data(srv.data_to_send(), NOW)
    srv.receive_data(client.data_to_send(), NOW)
    srv.data_to_send()
    srv.close()
    client.close()


# -- the dispatcher --------------------------------------------------------------------------


def dispatcher(pki: Pki, inner: EchoInner | None = None, **kw: object) -> TlsDispatcher:
    ctx = server_context(pki.chain_pem, pki.key_pem, profile="compat", psk=PskKeys(lookup))
    kw.setdefault("now", NOW)
    return TlsDispatcher(ctx, inner or EchoInner(), PskKeys(lookup), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", [None, 255, 1])
def test_dispatch_3des_only_client_to_gnutls(pki: Pki, chunk: int | None) -> None:
    inner = EchoInner()
    disp = dispatcher(pki, inner)
    client_inner = EchoInner(serve=False)
    client = GnutlsPskClientHandler(IDENTITY, KEY, client_inner, priority=only("TLS1.0"))
    disp.receive_data(client.start(NOW), NOW)
    pump(client, disp, chunk=chunk)
    assert disp.stack == "gnutls"
    assert disp.cipher == (THREE_DES, "TLSv1", 192)
    assert disp.version == "TLSv1"
    client_inner.out += request(close=True)
    pump(client, disp, chunk=chunk)
    assert client_inner.received.endswith(b"you asked for /index.html")
    assert disp.should_close
    assert disp.error is None
    assert disp.peak_buffer > 0
    disp.close()
    assert inner.closed


def test_dispatch_client_offering_aes_too_stays_with_openssl(pki: Pki) -> None:
    disp = dispatcher(pki)
    client = GnutlsPskClientHandler(
        IDENTITY, KEY, EchoInner(serve=False), priority=PSK_SPEC_PRIORITY
    )
    disp.receive_data(client.start(NOW), NOW)
    pump(client, disp)
    assert disp.stack == "openssl"
    assert disp.cipher is not None
    assert disp.cipher[0] == "PSK-AES128-CBC-SHA"
    assert client.cipher is not None
    assert client.cipher[0] == AES


def test_dispatch_python_clients_stay_with_openssl(pki: Pki) -> None:
    disp = dispatcher(pki)
    client = python_client()
    pump(client, disp, step=client.handshake)
    assert disp.stack == "openssl"
    assert disp.cipher is not None
    assert disp.cipher[0] == "PSK-AES128-CBC-SHA"
    cert = dispatcher(pki)
    client = RawClient(ssl.create_default_context(cadata=pki.ca_pem.decode()), "localhost")
    pump(client, cert, step=client.handshake)
    assert cert.stack == "openssl"
    assert cert.version == "TLSv1.3"
    client.obj.write(request(close=True))
    pump(client, cert)
    assert client.read_all().endswith(b"you asked for /index.html")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x17\x03\x03\x00\x02ab",
        b"GET / HTTP/1.1\r\nHost: card\r\n\r\n",
        b"\x80\x2e\x01\x00\x02" + bytes(60),  # SSLv2-format header
    ],
)
def test_dispatch_garbage_fails_exactly_as_openssl(pki: Pki, garbage: bytes) -> None:
    disp = dispatcher(pki)
    disp.receive_data(garbage, NOW)
    plain = TlsServerHandler(disp._context, EchoInner(), now=NOW)
    plain.receive_data(garbage, NOW)
    assert disp.stack == "openssl"
    assert disp.data_to_send() == plain.data_to_send()
    assert disp.should_close
    assert disp.error is not None
    assert plain.error is not None
    assert disp.error.reason == plain.error.reason


def test_dispatch_eof_before_hello(pki: Pki) -> None:
    disp = dispatcher(pki)
    disp.receive_data(b"\x16\x03\x01", NOW)
    disp.receive_data(b"", NOW)
    assert disp.stack == "openssl"
    assert disp.should_close


def test_dispatch_waits_within_the_handshake_deadline(pki: Pki) -> None:
    disp = dispatcher(pki, handshake_timeout=10.0, now=None)
    assert disp.get_timer() is None
    hello = GnutlsPskClientHandler(IDENTITY, KEY, EchoInner(serve=False)).start()
    disp.receive_data(hello[:20], NOW)
    assert disp.stack is None
    assert disp.state is TlsState.HANDSHAKE
    assert not disp.idle
    assert disp.data_to_send() == b""
    assert disp.get_timer() == NOW + 10.0
    disp.handle_timer(NOW + 9)
    assert not disp.should_close
    disp.receive_data(hello[20:], NOW + 5)
    assert disp.stack == "gnutls"
    assert disp.get_timer() == NOW + 10.0  # the same deadline, not a fresh one
    disp.handle_timer(NOW + 10.0)
    assert disp.should_close
    assert disp.error is not None
    assert disp.error.reason == "handshake timed out"


def test_dispatch_times_out_on_partial_hello(pki: Pki) -> None:
    inner = EchoInner()
    disp = dispatcher(pki, inner, handshake_timeout=3.0)
    disp.receive_data(b"\x16\x03\x01\x00\x40\x01", NOW)
    disp.handle_timer(NOW + 3.0)
    assert disp.should_close
    assert disp.state is TlsState.FAILED
    assert disp.error is not None
    assert disp.error.reason == "handshake timed out"
    assert disp.get_timer() is None
    disp.receive_data(b"more", NOW + 4)  # inert
    assert disp.stack is None
    disp.close()
    assert inner.closed


def test_dispatch_shutdown_and_close_before_hello(pki: Pki) -> None:
    inner = EchoInner()
    disp = dispatcher(pki, inner)
    disp.shutdown()
    assert disp.should_close
    assert disp.state is TlsState.SHUTDOWN
    disp.close()
    disp.close()
    assert inner.closed
    assert disp.state is TlsState.CLOSED


def test_dispatch_is_bounded(pki: Pki) -> None:
    """No complete ClientHello within 16 KiB + 5 bytes: OpenSSL decides (and refuses)."""
    disp = dispatcher(pki)
    message = b"\x01" + (16000).to_bytes(3) + bytes(16000)  # announces 16000 bytes
    wire = b"".join(
        b"\x16\x03\x01\x00\x64" + message[at : at + 100] for at in range(0, len(message), 100)
    )  # in records of 100 bytes: 16 KiB + 5 are used up before the hello is complete
    fed = 0
    while disp.stack is None:
        disp.receive_data(wire[fed : fed + 1000], NOW)
        fed += 1000
    assert disp.stack == "openssl"
    assert MAX_HELLO_BYTES < fed <= MAX_HELLO_BYTES + 1000
    assert disp.peak_buffer >= MAX_HELLO_BYTES


# -- the card's wiring -----------------------------------------------------------------------


def factories(pki: Pki, profile: str, psk: PskTable | None) -> Callable[[int, float], object]:
    site = Site(MemoryStore(), card={"ICCID": "8988211000000000003"}, secret=b"0" * 32)
    settings_ = CardSettings(tls_profile=profile, limits=CardLimits())
    ctx = server_context(pki.chain_pem, pki.key_pem, profile=profile)  # type: ignore[arg-type]
    return handler_factories(site, settings_, ctx, psk)[4116]


TABLE = PskTable(True, "scws", {IDENTITY: KEY})


def test_card_uses_dispatcher_only_with_compat_and_psk(pki: Pki) -> None:
    assert isinstance(factories(pki, "compat", TABLE)(1, 0.0), TlsDispatcher)
    assert isinstance(factories(pki, "modern", TABLE)(1, 0.0), TlsServerHandler)
    assert isinstance(factories(pki, "compat", None)(1, 0.0), TlsServerHandler)
    assert isinstance(
        factories(pki, "compat", PskTable(False, None, {IDENTITY: KEY}))(1, 0.0), TlsServerHandler
    )
    assert isinstance(factories(pki, "compat", PskTable(True, None, {}))(1, 0.0), TlsServerHandler)


def test_card_without_gnutls_keeps_openssl(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gnutls, "_loaded", [GnutlsUnavailable("no libgnutls here")])
    assert isinstance(factories(pki, "compat", TABLE)(1, 0.0), TlsServerHandler)


def test_openssl_suite_codes(pki: Pki) -> None:
    ctx = server_context(pki.chain_pem, pki.key_pem, profile="compat", psk=PskKeys(lookup))
    codes = openssl_suite_codes(ctx)
    assert 0x008C in codes  # PSK-AES128-CBC-SHA
    assert 0x1301 in codes  # TLS 1.3 suites count too
    assert 0x008B not in codes


# -- a real gnutls-cli over a socket ---------------------------------------------------------


@pytest.fixture
def gnutls_cli(need_tool: Callable[[str, str], str]) -> str:
    return need_tool("gnutls-cli", "gnutls-bin")


async def _gnutls_cli_get(
    gnutls_cli: str, factory: Callable[[int, float], object], *args: str
) -> tuple[bytes, object]:
    from openscws.aio.direct import DirectServer

    made: list[object] = []

    def make(channel: int, now: float) -> object:
        made.append(factory(channel, now))
        return made[-1]

    srv = DirectServer("127.0.0.1", {4116: make}, {4116: 0})  # type: ignore[dict-item]
    await srv.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            gnutls_cli,
            "-p",
            str(srv.local_port(4116)),
            "127.0.0.1",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(request("/3des", close=True))
        await proc.stdin.drain()
        # stdin stays open: gnutls-cli would say goodbye at its EOF; it exits when we close
        out = await asyncio.wait_for(proc.stdout.read(), 30)
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        await srv.stop()
    return out, made[0] if made else None


PSK_ARGS = ("--pskusername", IDENTITY, "--pskkey", KEY.hex())


@pytest.mark.parametrize(("versions", "shown"), [(("TLS1.0",), "TLS1.0"), (("TLS1.2",), "TLS1.2")])
def test_gnutls_cli_3des(gnutls_cli: str, versions: tuple[str, ...], shown: str) -> None:
    out, handler = asyncio.run(
        _gnutls_cli_get(
            gnutls_cli, lambda ch, now: server(now=None), *PSK_ARGS, "--priority", only(*versions)
        )
    )
    text = out.decode(errors="replace")
    assert f"({shown}-X.509)-(PSK)-(3DES-CBC)-(SHA1)" in text, text
    assert "HTTP/1.1 200 OK" in text
    assert "you asked for /3des" in text
    assert isinstance(handler, GnutlsPskServerHandler)
    assert handler.cipher is not None
    assert handler.cipher[0] == THREE_DES


def test_gnutls_cli_through_dispatcher(gnutls_cli: str, pki: Pki) -> None:
    out, handler = asyncio.run(
        _gnutls_cli_get(
            gnutls_cli,
            lambda ch, now: dispatcher(pki, now=None),
            *PSK_ARGS,
            "--priority",
            only("TLS1.2", "TLS1.1", "TLS1.0"),
        )
    )
    assert "(TLS1.2-X.509)-(PSK)-(3DES-CBC)-(SHA1)" in out.decode(errors="replace")
    assert b"you asked for /3des" in out
    assert isinstance(handler, TlsDispatcher)
    assert handler.stack == "gnutls"


def test_gnutls_cli_wrong_key(gnutls_cli: str) -> None:
    out, handler = asyncio.run(
        _gnutls_cli_get(
            gnutls_cli,
            lambda ch, now: server(now=None),
            "--pskusername",
            IDENTITY,
            "--pskkey",
            "ff" * 16,
            "--priority",
            only("TLS1.2"),
        )
    )
    assert b"HTTP/1.1" not in out
    assert isinstance(handler, GnutlsPskServerHandler)
    assert handler.error is not None


def test_card_asks_gnutls_clients_for_small_records() -> None:
    """RFC 8449 record_size_limit: the card's GnuTLS server answers a client that sends the
    extension with its record_limit, and the client then sends records that small."""
    srv = GnutlsPskServerHandler(PskKeys(lookup), EchoInner(), record_limit=1024, now=NOW)
    assert srv.asked_record_size == 1024
    client = GnutlsPskClientHandler(
        IDENTITY, KEY, EchoInner(serve=False), priority=PSK_3DES_PRIORITY, record_limit=None
    )
    srv.receive_data(client.start(NOW), NOW)
    pump(client, srv)
    assert srv.state is TlsState.OPEN
    client._encrypt(b"A" * 15000)  # one 15000-byte write: the stack splits it
    wire = client.data_to_send()
    sizes = [length for kind, _, length in records(wire) if kind == 23]
    assert sum(sizes) > 15000
    # 3DES-CBC: explicit IV 8 + MAC 20 + padding up to 8
    assert max(sizes) <= 1024 + 36
