"""TlsServerHandler / TlsClientHandler against in-memory peers (no sockets)."""

from __future__ import annotations

import ssl
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlspair import NOW, EchoInner, Pki, RawClient, pump, records

from openscws.tls import (
    TlsAlert,
    TlsClientHandler,
    TlsServerHandler,
    TlsState,
    psk_client_context,
    psk_server_context,
    server_context,
)
from openscws.tls.alert import alert_name
from openscws.tls.psk import PskKeys

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENTITY = "card-admin-01"
ALERT = 21
APPLICATION_DATA = 23


def cert_client(pki: Pki, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca_pem.decode())
    for name, version in versions.items():
        setattr(ctx, name, version)
    return ctx


def legacy_client(pki: Pki, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that only speaks `version` (TLS 1.0/1.1 need security level 0 in OpenSSL 3)."""
    ctx = cert_client(pki)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    pin(ctx, version)
    return ctx


def pin(ctx: ssl.SSLContext, version: ssl.TLSVersion) -> None:
    with warnings.catch_warnings():  # Python deprecates TLS 1.0/1.1: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = version


def lookup(identity: str | None) -> bytes | None:
    return KEY if identity == IDENTITY else None


def request(path: str = "/index.html", close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/1.1\r\nHost: card\r\n%s\r\n" % (path.encode(), extra)


def client_pair(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    hostname: str | None = None,
    client_limit: int | None = None,
    **server_kw: object,
) -> tuple[TlsClientHandler, EchoInner, TlsServerHandler, EchoInner]:
    """Both sides as handlers, handshake done. The client asks for no max_fragment_length
    unless `client_limit` says so."""
    client_inner, server_inner = EchoInner(serve=False), EchoInner()
    server = TlsServerHandler(server_ctx, server_inner, now=NOW, **server_kw)  # type: ignore[arg-type]
    client = TlsClientHandler(
        client_ctx, client_inner, server_hostname=hostname, record_limit=client_limit, now=NOW
    )
    server.receive_data(client.start(), NOW)
    pump(client, server)
    return client, client_inner, server, server_inner


# -- certificate handshake -----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 255, 1])
def test_certificate_handshake_and_http_exchange(pki: Pki, chunk: int | None) -> None:
    inner = EchoInner()
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), inner, now=NOW)
    assert not server.idle
    client = RawClient(cert_client(pki), server_hostname="localhost")
    pump(client, server, chunk=chunk, step=client.handshake)
    assert client.handshake_done
    assert server.state is TlsState.OPEN
    assert server.version == "TLSv1.3"
    # Quiet after its handshake: the card may reclaim it when clients wait.
    assert server.idle
    client.obj.write(request())
    pump(client, server, chunk=chunk)
    assert inner.requests == [request().removesuffix(b"\r\n\r\n")]
    answer = client.read_all()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"you asked for /index.html")
    assert server.idle
    assert not server.should_close
    assert server.peak_buffer > 0


def test_tls12_certificate_handshake(pki: Pki) -> None:
    client, _, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem),
        cert_client(pki, maximum_version=ssl.TLSVersion.TLSv1_2),
        hostname="localhost",
    )
    assert server.version == client.version == "TLSv1.2"
    assert server.cipher is not None
    assert server.cipher[0].startswith("ECDHE-ECDSA-")


def test_client_handler_http_exchange(pki: Pki) -> None:
    client, client_inner, server, server_inner = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    assert client.state is server.state is TlsState.OPEN
    client_inner.out += request("/a") + request("/b")
    pump(client, server)
    assert len(server_inner.requests) == 2
    assert client_inner.received.count(b"HTTP/1.1 200 OK") == 2
    assert client.ssl_object.getpeercert() is not None


def test_client_rejects_unknown_ca(pki: Pki) -> None:
    from tlspair import make_pki

    other = make_pki()
    client_inner = EchoInner(serve=False)
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), EchoInner(), now=NOW)
    client = TlsClientHandler(cert_client(other), client_inner, server_hostname="localhost")
    server.receive_data(client.start(NOW), NOW)
    pump(client, server)
    assert client.state is TlsState.FAILED
    assert client.error is not None
    assert client.error.reason == "CERTIFICATE_VERIFY_FAILED"
    assert server.should_close  # it got our alert
    assert server.error is not None
    assert server.error.received


# -- PSK-TLS (SCWS §11.1.1) -----------------------------------------------------------------


def test_psk_aes128_cbc_sha(pki: Pki) -> None:
    client, client_inner, server, server_inner = client_pair(
        psk_server_context(PskKeys(lookup, "scws"), profile="compat"),
        psk_client_context(IDENTITY, KEY, ciphers="PSK-AES128-CBC-SHA"),
    )
    assert server.cipher is not None
    assert server.cipher[0] == "PSK-AES128-CBC-SHA"
    assert server.version == "TLSv1.2"
    client_inner.out += request("/admin", close=True)
    pump(client, server)
    assert server_inner.requests
    assert client_inner.received.endswith(b"you asked for /admin")
    # server sent its close_notify after the answer; the client's inner got EOF
    assert server.should_close
    assert client_inner.eof


def test_psk_default_suites_prefer_aead() -> None:
    _, _, server, _ = client_pair(
        psk_server_context(PskKeys(lookup)), psk_client_context(IDENTITY, KEY)
    )
    assert server.cipher is not None
    assert server.cipher[0] in {"PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384"}
    assert server.version == "TLSv1.2"  # PSK contexts are capped at TLS 1.2


def test_wrong_psk_key_client_sees_alert() -> None:
    server = TlsServerHandler(psk_server_context(PskKeys(lookup)), EchoInner(), now=NOW)
    client = RawClient(psk_client_context(IDENTITY, b"\xff" * 16))
    with pytest.raises(ssl.SSLError) as info:
        pump(client, server, step=client.handshake)
    assert "alert" in str(info.value)
    assert server.should_close
    assert server.state is TlsState.FAILED
    assert isinstance(server.error, TlsAlert)
    assert server.error.description is not None
    assert alert_name(server.error.description) in {"decrypt_error", "bad_record_mac"}
    assert server.data_to_send() == b""  # the alert already went out


def test_unknown_psk_identity_alert_is_the_wrong_key_one() -> None:
    """RFC 4279 §2: the card answers an unknown identity as if its key were wrong, so the
    alerts cannot tell which identities exist."""
    seen = []
    for identity, key in (("stranger", KEY), (IDENTITY, b"\xff" * 16)):
        server = TlsServerHandler(psk_server_context(PskKeys(lookup)), EchoInner(), now=NOW)
        client = RawClient(psk_client_context(identity, key))
        with pytest.raises(ssl.SSLError) as info:
            pump(client, server, step=client.handshake)
        assert server.should_close
        assert server.error is not None
        assert not server.error.received
        seen.append((info.value.reason, server.error.description, server.error.reason))
    assert seen[0] == seen[1]
    assert seen[0][1] == 20  # bad_record_mac


def test_psk_server_refuses_certificate_only_client(pki: Pki) -> None:
    server = TlsServerHandler(psk_server_context(PskKeys(lookup)), EchoInner(), now=NOW)
    client = RawClient(cert_client(pki), server_hostname="localhost")
    with pytest.raises(ssl.SSLError):
        pump(client, server, step=client.handshake)
    assert server.should_close
    assert server.error is not None


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "description"),
    [
        (b"\x16\x03\x01\x00\x05hello", 10),  # a "handshake" record that is no ClientHello
        (b"\x17\x03\x03\x00\x02ab", 10),  # application data before the handshake
        (b"\x80\x2e\x01\x00\x02" + bytes(60), 50),  # SSLv2-style header, bad length
    ],
)
def test_garbage_gives_alert_and_close(garbage: bytes, description: int) -> None:
    server = TlsServerHandler(psk_server_context(PskKeys(lookup)), EchoInner(), now=NOW)
    server.receive_data(garbage, NOW)
    out = server.data_to_send()
    assert records(out) == [(ALERT, 0x0303, 2)]
    assert out[-2:] == bytes([2, description])  # fatal
    assert server.should_close
    assert server.error is not None
    assert server.error.description == description
    server.receive_data(b"more", NOW)  # ignored after failure
    assert server.data_to_send() == b""


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: card\r\n\r\n", "HTTP_REQUEST"),
        (bytes(20), "WRONG_VERSION_NUMBER"),
    ],
)
def test_non_tls_input_closes_without_alert(garbage: bytes, reason: str) -> None:
    """OpenSSL writes no alert when it cannot tell a TLS version: nothing to send, close."""
    server = TlsServerHandler(psk_server_context(PskKeys(lookup)), EchoInner(), now=NOW)
    server.receive_data(garbage, NOW)
    assert server.data_to_send() == b""
    assert server.should_close
    assert server.error is not None
    assert server.error.reason == reason
    assert server.error.description is None


def test_bad_record_after_handshake(pki: Pki) -> None:
    _, _, server, server_inner = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    # an application_data record whose ciphertext is garbage
    server.receive_data(bytes([APPLICATION_DATA, 3, 3, 0, 40]) + b"\x01" * 40, NOW)
    assert server.should_close
    assert server.error is not None
    assert server.data_to_send()  # the (encrypted) alert
    assert not server_inner.requests


def test_eof_mid_handshake(pki: Pki) -> None:
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), EchoInner(), now=NOW)
    client = RawClient(cert_client(pki), server_hostname="localhost")
    client.handshake()
    server.receive_data(client.data_to_send(), NOW)
    server.receive_data(b"", NOW)
    server.data_to_send()
    assert server.should_close
    assert server.error is not None


def test_truncated_client_hello_waits_then_times_out(pki: Pki) -> None:
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem), EchoInner(), handshake_timeout=5.0
    )
    assert server.get_timer() is None  # no `now` yet
    client = RawClient(cert_client(pki), server_hostname="localhost")
    client.handshake()
    hello = client.data_to_send()
    server.receive_data(hello[:-1], NOW)
    assert server.data_to_send() == b""
    assert not server.should_close
    assert server.get_timer() == NOW + 5.0
    server.handle_timer(NOW + 4.9)
    assert not server.should_close
    server.handle_timer(NOW + 5.0)
    assert server.should_close
    assert server.error is not None
    assert server.error.reason == "handshake timed out"


@pytest.mark.parametrize("cut", [1, 6, 30])
def test_truncated_record_after_handshake_waits_then_stall_timer(pki: Pki, cut: int) -> None:
    server_inner = EchoInner()  # no timers of its own
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem), server_inner, handshake_timeout=8.0, now=NOW
    )
    client = RawClient(cert_client(pki), server_hostname="localhost")
    pump(client, server, step=client.handshake)
    assert server.idle  # no request yet: quiet
    assert server.get_timer() is None
    client.obj.write(request())
    record = client.data_to_send()
    server.receive_data(record[:cut], NOW + 1)
    assert not server.should_close
    assert not server.idle
    assert server_inner.requests == []
    assert server.get_timer() == NOW + 9
    server.handle_timer(NOW + 8.5)
    assert not server.should_close
    server.handle_timer(NOW + 9)
    assert server.should_close
    assert server.error is not None
    assert server.error.reason == "record stalled"


def test_record_completed_before_stall_timer(pki: Pki) -> None:
    server_inner = EchoInner(timeout=30.0)
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem), server_inner, handshake_timeout=8.0, now=NOW
    )
    client = RawClient(cert_client(pki), server_hostname="localhost")
    pump(client, server, step=client.handshake)
    client.obj.write(request())
    record = client.data_to_send()
    server.receive_data(record[:-1], NOW + 1)
    server.receive_data(record[-1:], NOW + 2)
    assert server_inner.requests
    assert server.get_timer() == NOW + 32  # the inner handler's again
    server.handle_timer(NOW + 32)
    close_notify = server.data_to_send()
    assert [r[0] for r in records(close_notify)][-1] == APPLICATION_DATA  # TLS 1.3: encrypted
    assert server.should_close
    assert server.error is None


def test_handshake_stall_closes(pki: Pki) -> None:
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem), EchoInner(), handshake_timeout=10.0, now=NOW
    )
    assert server.get_timer() == NOW + 10.0
    client = RawClient(cert_client(pki), server_hostname="localhost")
    client.handshake()
    server.receive_data(client.data_to_send(), NOW + 1)
    assert server.data_to_send()  # ServerHello ... Finished; the client never answers
    assert server.state is TlsState.HANDSHAKE
    assert server.get_timer() == NOW + 10.0
    server.handle_timer(NOW + 10.0)
    assert server.should_close
    assert server.get_timer() is None


# -- closing ---------------------------------------------------------------------------------


def test_client_close_notify(pki: Pki) -> None:
    inner = EchoInner()
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), inner, now=NOW)
    client = RawClient(cert_client(pki), server_hostname="localhost")
    pump(client, server, step=client.handshake)
    with pytest.raises(ssl.SSLWantReadError):
        client.obj.unwrap()
    pump(client, server)
    assert inner.eof
    assert server.should_close
    client.obj.unwrap()  # the server's close_notify arrived: completes now


def test_server_close_notify_after_response(pki: Pki) -> None:
    inner = EchoInner()
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), inner, now=NOW)
    client = RawClient(cert_client(pki), server_hostname="localhost")
    pump(client, server, step=client.handshake)
    client.obj.write(request(close=True))
    pump(client, server)
    assert server.should_close
    assert client.read_all().endswith(b"you asked for /index.html")
    assert client.obj.read(1) == b""  # close_notify (SSLObject.read does not raise for it)
    assert client.obj.get_channel_binding() is not None
    server.close()
    assert inner.closed
    assert server.state is TlsState.CLOSED


def test_shutdown_sends_close_notify(pki: Pki) -> None:
    client, client_inner, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    server.shutdown()
    assert server.should_close
    pump(client, server)
    assert client_inner.eof
    assert client.should_close  # the client answered with its own close_notify


def test_transport_eof_without_close_notify(pki: Pki) -> None:
    _, _, server, inner = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    server.receive_data(b"", NOW)
    assert inner.eof
    assert server.should_close  # OpenSSL 3: EOF without close_notify is fatal
    assert server.error is not None
    assert server.error.reason == "UNEXPECTED_EOF_WHILE_READING"
    assert server.data_to_send()  # its (encrypted) decode_error alert


# -- record size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "limit"),
    [
        (ssl.TLSVersion.TLSv1_3, 256),
        (ssl.TLSVersion.TLSv1_2, 256),
        (ssl.TLSVersion.TLSv1_2, 1024),
    ],
)
def test_record_limit_bounds_records(pki: Pki, maximum: ssl.TLSVersion, limit: int) -> None:
    client, client_inner, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem),
        cert_client(pki, maximum_version=maximum),
        hostname="localhost",
        record_limit=limit,
    )
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, server, chunk=None, tap_b=sent)
    assert client_inner.received.endswith(b"x" * 5000)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert len(app) >= 5000 // limit
    # overhead: TLS 1.3 AEAD tag 16 + type 1; TLS 1.2 GCM nonce 8 + tag 16
    assert max(length for _, _, length in app) <= limit + 64


def test_no_record_limit_sends_big_records(pki: Pki) -> None:
    client, client_inner, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem),
        cert_client(pki),
        hostname="localhost",
        record_limit=None,
    )
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, server, chunk=None, tap_b=sent)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert max(length for _, _, length in app) > 5000


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_asks_for_small_records_and_server_honours_it(
    pki: Pki, maximum: ssl.TLSVersion
) -> None:
    """RFC 6066 max_fragment_length: a client with record_limit 1024 (the card's admin agent)
    asks for it; a server without a limit of its own (the admin server) then sends records of
    at most 1024 bytes of plaintext."""
    client, client_inner, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem),
        cert_client(pki, maximum_version=maximum),
        hostname="localhost",
        client_limit=1024,
        record_limit=None,
    )
    assert client.tuning.max_fragment_length == 1024
    assert client.tuning.max_send_fragment == 1024
    assert client.tuning.release_buffers
    assert server.tuning.max_fragment_length is None  # only a client can ask
    client_inner.out += request("/big/5000")
    sent: list[bytes] = []
    pump(client, server, chunk=None, tap_b=sent)
    assert client_inner.received.endswith(b"x" * 5000)
    app = [r for r in records(b"".join(sent)) if r[0] == APPLICATION_DATA]
    assert max(length for _, _, length in app) <= 1024 + 64


def test_inner_handler_is_asked_for_one_record_at_a_time(pki: Pki) -> None:
    """The HTTP engine hands over at most one record's worth of plaintext per call, however
    much room the channel has."""
    asked: list[int | None] = []

    class Recording(EchoInner):
        def data_to_send(self, limit: int | None = None) -> bytes:
            asked.append(limit)
            return super().data_to_send(limit)

    client_inner, server_inner = EchoInner(serve=False), Recording()
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem), server_inner, record_limit=512, now=NOW
    )
    client = TlsClientHandler(cert_client(pki), client_inner, server_hostname="localhost", now=NOW)
    server.receive_data(client.start(), NOW)
    pump(client, server)
    client_inner.out += request("/big/6000")
    pump(client, server, chunk=None)
    assert client_inner.received.endswith(b"x" * 6000)
    assert asked
    assert all(a is not None and a <= 512 for a in asked)


def test_partial_records_wait_outside_openssl(pki: Pki) -> None:
    """A record that trickles in is held at its own size until complete; OpenSSL gets whole
    records only (so its read buffer lives only while it decrypts one)."""
    client, client_inner, server, server_inner = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    client_inner.out += request("/x")
    wire = client.data_to_send()
    assert len(wire) > 10
    server.receive_data(wire[:7], NOW)
    assert server._incoming.pending == 0
    assert len(server._pending) == 7
    server.receive_data(wire[7:], NOW)
    assert not server._pending
    assert server_inner.requests


def test_record_limit_validated(pki: Pki) -> None:
    ctx = server_context(pki.chain_pem, pki.key_pem)
    with pytest.raises(ValueError, match="record_limit"):
        TlsServerHandler(ctx, EchoInner(), record_limit=0)
    with pytest.raises(ValueError, match="record_limit"):
        TlsServerHandler(ctx, EchoInner(), record_limit=16385)


def test_data_to_send_respects_limit(pki: Pki) -> None:
    client, client_inner, server, _ = client_pair(
        server_context(pki.chain_pem, pki.key_pem), cert_client(pki), hostname="localhost"
    )
    client_inner.out += request("/big/3000")
    server.receive_data(client.data_to_send(), NOW)
    pieces = []
    while piece := server.data_to_send(200):
        assert len(piece) <= 200
        pieces.append(piece)
    client.receive_data(b"".join(pieces), NOW)
    assert client_inner.received.endswith(b"x" * 3000)
    assert server.peak_buffer < 3000  # pulled from the inner handler bit by bit


# -- protocol versions -----------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_compat_profile_negotiates_legacy_tls(pki: Pki, version: ssl.TLSVersion) -> None:
    try:
        client_ctx = legacy_client(pki, version)
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot make a {version.name} client: {exc}")
    server = TlsServerHandler(
        server_context(pki.chain_pem, pki.key_pem, profile="compat"), EchoInner(), now=NOW
    )
    client = RawClient(client_ctx, server_hostname="localhost")
    try:
        pump(client, server, step=client.handshake)
    except ssl.SSLError as exc:
        pytest.skip(f"this OpenSSL refuses {version.name} even at security level 0: {exc}")
    assert server.version == {"TLSv1": "TLSv1", "TLSv1_1": "TLSv1.1"}[version.name]
    client.obj.write(request())
    pump(client, server)
    assert client.read_all().endswith(b"you asked for /index.html")


def test_compat_psk_over_tls10() -> None:
    server = TlsServerHandler(
        psk_server_context(PskKeys(lookup), profile="compat"), EchoInner(), now=NOW
    )
    client_ctx = psk_client_context(IDENTITY, KEY, profile="compat", ciphers="PSK-AES128-CBC-SHA")
    pin(client_ctx, ssl.TLSVersion.TLSv1)
    client = RawClient(client_ctx)
    pump(client, server, step=client.handshake)
    assert server.version == "TLSv1"
    assert server.cipher is not None
    assert server.cipher[0] == "PSK-AES128-CBC-SHA"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_modern_profile_refuses_legacy_client(pki: Pki, version: ssl.TLSVersion) -> None:
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), EchoInner(), now=NOW)
    client = RawClient(legacy_client(pki, version), server_hostname="localhost")
    with pytest.raises(ssl.SSLError):
        pump(client, server, step=client.handshake)
    assert server.should_close
    assert server.error is not None
    assert server.error.reason == "UNSUPPORTED_PROTOCOL"
    assert server.error.description is not None
    assert alert_name(server.error.description) == "protocol_version"


# -- robustness ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    server = TlsServerHandler(_PSK_CTX, EchoInner(), now=NOW)
    for chunk in chunks:
        server.receive_data(chunk, NOW)
        server.data_to_send(255)
        _ = server.should_close, server.idle, server.get_timer()
    server.handle_timer(NOW + 100)
    server.data_to_send()
    assert server.should_close or not chunks or server.state is TlsState.HANDSHAKE
    server.close()


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=2000))
def test_corrupted_handshake_never_raises(junk: bytes, offset: int) -> None:
    server = TlsServerHandler(_PSK_CTX, EchoInner(), now=NOW)
    client = RawClient(psk_client_context(IDENTITY, KEY))
    client.handshake()
    hello = bytearray(client.data_to_send())
    at = offset % len(hello)
    hello[at : at + len(junk)] = junk
    server.receive_data(bytes(hello), NOW)
    server.data_to_send()


_PSK_CTX = psk_server_context(PskKeys(lookup))


def test_after_close_everything_is_inert(pki: Pki) -> None:
    inner = EchoInner()
    server = TlsServerHandler(server_context(pki.chain_pem, pki.key_pem), inner, now=NOW)
    server.close()
    server.close()
    assert inner.closed
    server.receive_data(b"\x16\x03\x01", NOW)
    assert server.data_to_send() == b""
    assert server.should_close
    assert server.get_timer() is None
