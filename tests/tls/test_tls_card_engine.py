"""The card TLS engine (`CardTlsServerHandler`): in memory against Python's ssl and GnuTLS's
own client, and over a socket against `openssl s_client -psk` and `gnutls-cli --pskusername`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tlspair import NOW, EchoInner, Pki, RawClient, pump

from openscws.config import CardSettings
from openscws.http import CardLimits
from openscws.scws.card import handler_factories
from openscws.scws.model import MemoryStore
from openscws.scws.site import Site
from openscws.tls import TlsServerHandler, TlsState, gnutls, psk_client_context, server_context
from openscws.tls.card_engine import (
    SUITES,
    TRANSITIONS,
    CardTlsServerHandler,
    Phase,
    prf,
    psk_premaster,
)
from openscws.tls.dispatch import TlsDispatcher
from openscws.tls.psk import PskKeys, decoy_key
from openscws.uicc.keystore import PskTable

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENTITY = "card1"
ALERT, HANDSHAKE, APPLICATION_DATA = 21, 22, 23


def lookup(identity: str | None) -> bytes | None:
    return KEY if identity == IDENTITY else None


def request(path: str = "/index.html", close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/1.1\r\nHost: card\r\n%s\r\n" % (path.encode(), extra)


def server(
    inner: EchoInner | None = None, hint: str | None = None, **kw: object
) -> CardTlsServerHandler:
    kw.setdefault("now", NOW)
    return CardTlsServerHandler(PskKeys(lookup, hint), inner or EchoInner(), **kw)  # type: ignore[arg-type]


def python_client(
    ciphers: str = "PSK-AES128-CBC-SHA",
    key: bytes = KEY,
    identity: str = IDENTITY,
    hint_seen: list[str | None] | None = None,
) -> RawClient:
    ctx = psk_client_context(identity, key, profile="compat", ciphers=ciphers)
    if hint_seen is not None:

        def callback(hint: str | None) -> tuple[str, bytes]:
            hint_seen.append(hint)
            return identity, key

        ctx.set_psk_client_callback(callback)
    return RawClient(ctx)


def records(stream: list[bytes]) -> list[tuple[int, int]]:
    """(content type, length) of each record in what one side sent."""
    data = b"".join(stream)
    out, at = [], 0
    while at + 5 <= len(data):
        length = int.from_bytes(data[at + 3 : at + 5])
        out.append((data[at], length))
        at += 5 + length
    return out


def connect(srv: CardTlsServerHandler, client: RawClient, chunk: int | None = 255) -> list[bytes]:
    tap: list[bytes] = []
    pump(client, srv, chunk=chunk, step=client.handshake, tap_b=tap)
    return tap


# -- the primitives --------------------------------------------------------------------------


def test_prf_sha256_known_answer() -> None:
    """The TLS 1.2 P_SHA256 test vector circulated on the IETF TLS list (100 bytes)."""
    out = prf(
        bytes.fromhex("9bbe436ba940f017b17652849a71db35"),
        b"test label",
        bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"),
        100,
    )
    assert out.hex() == (
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a4"
        "6b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d1"
        "22ee42c5a72e5a5110fff70187347b66"
    )


def test_psk_premaster_layout() -> None:
    """RFC 4279 §2: N, N zeros, N, the key."""
    assert psk_premaster(b"\xaa\xbb") == b"\x00\x02\x00\x00\x00\x02\xaa\xbb"


def test_the_table_reaches_open_in_order() -> None:
    phase = Phase.CLIENT_HELLO
    for message in (1, 16, "change_cipher_spec", 20):
        phase = next(after for (p, m), after in TRANSITIONS.items() if p is phase and m == message)
    assert phase is Phase.OPEN


# -- handshakes with Python's ssl ------------------------------------------------------------


@pytest.mark.parametrize("suite", [s.name for s in SUITES])
@pytest.mark.parametrize("chunk", [None, 255, 1])
def test_handshake_and_http(suite: str, chunk: int | None) -> None:
    inner = EchoInner()
    srv = server(inner)
    client = python_client(suite)
    connect(srv, client, chunk)
    assert client.handshake_done
    assert srv.state is TlsState.OPEN
    assert srv.version == "TLSv1.2"
    assert srv.cipher == (suite, "TLSv1.2", 128)
    assert client.obj.cipher()[0] == suite  # type: ignore[index]
    assert srv.encrypt_then_mac  # OpenSSL offers RFC 7366 and the card takes it
    client.obj.write(request("/a"))
    client.obj.write(request("/big/5000", close=True))
    pump(client, srv, chunk=chunk)
    got = client.read_all()
    assert got.startswith(b"HTTP/1.1 200 OK")
    assert got.endswith(b"x" * 5000)
    assert [r.split(b" ")[1] for r in inner.requests] == [b"/a", b"/big/5000"]
    assert client.obj.read(1) == b""  # the card's close_notify
    assert srv.should_close
    assert srv.error is None


def test_records_follow_record_limit() -> None:
    srv = server(record_limit=512)
    client = python_client()
    tap = connect(srv, client)
    client.obj.write(request("/big/4000"))
    pump(client, srv, tap_b=tap)
    assert len(client.read_all()) > 4000
    data = [n for kind, n in records(tap) if kind == APPLICATION_DATA]
    assert len(data) >= 8
    # 512 plaintext + 16 IV + MAC + padding (RFC 5246 §6.2.3.2)
    assert max(data) <= 512 + 16 + 20 + 16
    assert srv.send_limit == 512


def test_hint_reaches_the_client() -> None:
    seen: list[str | None] = []
    client = python_client(hint_seen=seen)
    srv = server(hint="openscws card")
    connect(srv, client)
    assert client.handshake_done
    assert seen == ["openscws card"]


def test_no_hint_no_server_key_exchange() -> None:
    seen: list[str | None] = []
    client = python_client(hint_seen=seen)
    connect(server(), client)
    assert client.handshake_done
    assert seen == [None]


@pytest.mark.parametrize(("identity", "key"), [(IDENTITY, b"\xff" * 16), ("nobody", KEY)])
def test_wrong_key_and_unknown_identity_look_alike(identity: str, key: bytes) -> None:
    """RFC 4279 §2: an unknown identity fails as a wrong key does (bad_record_mac on the
    client's Finished), so identities cannot be enumerated."""
    srv = server()
    client = python_client(key=key, identity=identity)
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        connect(srv, client)
    assert srv.state is TlsState.FAILED
    assert srv.error is not None
    assert srv.error.description == 20
    assert not srv.error.received


def test_unknown_identity_gets_the_decoy() -> None:
    client = python_client(key=decoy_key("nobody"), identity="nobody")
    srv = server()
    connect(srv, client)  # the decoy is the key the card runs the handshake with
    assert srv.state is TlsState.OPEN


def test_certificate_only_client_gets_handshake_failure() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    srv = server()
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        connect(srv, RawClient(ctx))
    assert srv.error is not None
    assert srv.error.description == 40


def test_tls11_client_gets_protocol_version() -> None:
    ctx = psk_client_context(IDENTITY, KEY, profile="compat", ciphers="PSK-AES128-CBC-SHA")
    with pytest.warns(DeprecationWarning, match="TLSVersion"):
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    srv = server()
    with pytest.raises(ssl.SSLError):
        connect(srv, RawClient(ctx))
    assert srv.error is not None
    assert srv.error.description == 70


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x03\x00\x04\x10\x00\x00\x00",  # a ClientKeyExchange first
        b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x03",  # a truncated ClientHello
        b"\x17\x03\x03\x00\x01x",  # application data before the handshake
        b"\x16\x03\x03\x48\x01" + b"\x00" * 5,  # a record longer than 2^14 + 2048
    ],
)
def test_garbage_gets_an_alert(garbage: bytes) -> None:
    srv = server()
    srv.receive_data(garbage, NOW)
    assert srv.state is TlsState.FAILED
    out = srv.data_to_send()
    assert out[:1] == bytes((ALERT,))
    assert out[5] == 2  # fatal
    assert srv.error is not None
    assert out[6] == srv.error.description
    assert srv.error.description in (10, 22, 50)
    assert srv.should_close


def _hello() -> bytes:
    srv_client = python_client()
    srv_client.handshake()
    return srv_client.data_to_send()


HELLO = _hello()


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, len(HELLO)), noise=st.binary(max_size=64), flip=st.integers(0, 400))
def test_mangled_client_hello_never_escapes(cut: int, noise: bytes, flip: int) -> None:
    """Any prefix of a real ClientHello, a flipped byte, then noise: the engine waits or
    ends the connection with an alert, and never raises."""
    data = bytearray(HELLO[:cut])
    if data:
        data[flip % len(data)] ^= 0x5A
    srv = server()
    srv.receive_data(bytes(data) + noise, NOW)
    out = srv.data_to_send()
    if srv.state is TlsState.FAILED:
        assert srv.error is not None
        assert out[-7:-2] == bytes((ALERT, 3, 3, 0, 2))
        assert out[-1] == srv.error.description
    else:
        assert srv.state is TlsState.HANDSHAKE
        assert srv.error is None


def test_tampered_record_after_handshake() -> None:
    srv = server()
    client = python_client()
    connect(srv, client)
    client.obj.write(request())
    record = bytearray(client.data_to_send())
    record[-1] ^= 1
    srv.receive_data(bytes(record), NOW)
    assert srv.state is TlsState.FAILED
    assert srv.error is not None
    assert srv.error.description == 20


def test_eof_mid_handshake() -> None:
    srv = server()
    client = python_client()
    client.handshake()
    srv.receive_data(client.data_to_send(), NOW)
    srv.receive_data(b"", NOW)
    assert srv.state is TlsState.FAILED


def test_eof_without_close_notify_reaches_the_inner_handler() -> None:
    inner = EchoInner()
    srv = server(inner)
    connect(srv, python_client())
    srv.receive_data(b"", NOW)
    assert inner.eof
    assert srv.should_close


def test_client_close_notify() -> None:
    inner = EchoInner()
    srv = server(inner)
    client = python_client()
    connect(srv, client)
    with pytest.raises(ssl.SSLWantReadError):
        client.obj.unwrap()
    pump(client, srv)
    assert inner.eof
    assert srv.should_close
    assert srv.error is None


def test_handshake_timer() -> None:
    srv = server(handshake_timeout=5.0)
    assert srv.get_timer() == NOW + 5.0
    srv.handle_timer(NOW + 5.0)
    assert srv.state is TlsState.FAILED


def test_close_drops_everything() -> None:
    inner = EchoInner()
    srv = server(inner)
    connect(srv, python_client())
    srv.close()
    assert inner.closed
    assert srv.held == 0
    srv.receive_data(b"\x17\x03\x03\x00\x01x", NOW)
    assert srv.data_to_send() == b""


# -- GnuTLS's client, in memory: RFC 8449 and MAC-then-encrypt ------------------------------


@pytest.fixture
def need_gnutls() -> None:
    why = gnutls.available()
    if why is not None:
        pytest.skip(f"GnuTLS unusable: {why} (apt-get install libgnutls30)")


AES_PRIORITY = "NONE:+VERS-TLS1.2:+PSK:+AES-128-CBC:+SHA1:+SHA256:+COMP-NULL:+SIGN-ALL"


@pytest.mark.usefixtures("need_gnutls")
@pytest.mark.parametrize("etm", [True, False])
def test_gnutls_client_and_record_size_limit(etm: bool) -> None:
    """GnuTLS announces record_size_limit (RFC 8449): the card answers with its record_limit
    and keeps to the client's; without encrypt_then_mac the card MACs then encrypts."""
    client_inner, server_inner = EchoInner(serve=False), EchoInner()
    srv = server(server_inner, record_limit=512)
    priority = AES_PRIORITY + ("" if etm else ":%NO_ETM")
    client = gnutls.GnutlsPskClientHandler(
        IDENTITY, KEY, client_inner, priority=priority, record_limit=1024, now=NOW
    )
    srv.receive_data(client.start(), NOW)
    up: list[bytes] = []
    down: list[bytes] = []
    pump(client, srv, tap_a=up, tap_b=down)
    assert srv.state is TlsState.OPEN, srv.error
    assert srv.encrypt_then_mac is etm
    assert srv.cipher is not None
    client_inner.out += b"P" * 3000 + request("/big/3000", close=True)
    pump(client, srv, tap_a=up, tap_b=down)
    assert client_inner.received.endswith(b"x" * 3000)
    # the card announced 512: the client's records carry at most 512 bytes of plaintext
    sent = [n for kind, n in records(up) if kind == APPLICATION_DATA]
    assert max(sent) <= 512 + 16 + 32 + 16
    got = [n for kind, n in records(down) if kind == APPLICATION_DATA]
    assert max(got) <= 512 + 16 + 32 + 16
    assert srv.error is None


# -- real peers over a socket ----------------------------------------------------------------


async def _peer_get(
    cmd: list[str], factory: Callable[[], CardTlsServerHandler]
) -> tuple[str, list[CardTlsServerHandler]]:
    from openscws.aio.direct import DirectServer

    made: list[CardTlsServerHandler] = []

    def make(channel: int, now: float) -> CardTlsServerHandler:
        made.append(factory())
        return made[-1]

    srv = DirectServer("127.0.0.1", {4116: make}, {4116: 0})  # type: ignore[dict-item]
    await srv.start()
    try:
        port = str(srv.local_port(4116))
        proc = await asyncio.create_subprocess_exec(
            *[part.replace("PORT", port) for part in cmd],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(request("/peer", close=True))
        await proc.stdin.drain()
        out = await asyncio.wait_for(proc.stdout.read(), 30)
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        await srv.stop()
    return out.decode(errors="replace"), made


@pytest.mark.peer
@pytest.mark.parametrize(
    ("suite", "extra"),
    [
        ("PSK-AES128-CBC-SHA", ("-tls1_2",)),
        ("PSK-AES128-CBC-SHA", ("-tls1_2", "-no_etm")),
        ("PSK-AES128-CBC-SHA256", ("-tls1_2", "-maxfraglen", "512")),
        ("PSK-AES128-CBC-SHA", ()),  # offers TLS 1.3 too: the card answers TLS 1.2
    ],
)
def test_openssl_s_client(
    need_tool: Callable[[str, str], str], suite: str, extra: tuple[str, ...]
) -> None:
    openssl = need_tool("openssl", "openssl")
    cmd = [openssl, "s_client", "-connect", "127.0.0.1:PORT", "-ign_eof"]
    cmd += ["-psk", KEY.hex(), "-psk_identity", IDENTITY, "-cipher", suite, *extra]
    out, made = asyncio.run(_peer_get(cmd, lambda: server(now=None)))
    assert "HTTP/1.1 200 OK" in out, out
    assert "you asked for /peer" in out
    assert f"Cipher is {suite}" in out
    assert made[0].cipher is not None
    assert made[0].cipher[0] == suite
    assert made[0].encrypt_then_mac is ("-no_etm" not in extra)
    if "-maxfraglen" in extra:
        assert made[0].send_limit == 512


@pytest.mark.peer
@pytest.mark.parametrize("wrong", ["key", "identity"])
def test_openssl_s_client_refused_alike(need_tool: Callable[[str, str], str], wrong: str) -> None:
    openssl = need_tool("openssl", "openssl")
    key = "ff" * 16 if wrong == "key" else KEY.hex()
    identity = "nobody" if wrong == "identity" else IDENTITY
    cmd = [openssl, "s_client", "-connect", "127.0.0.1:PORT", "-tls1_2", "-ign_eof"]
    cmd += ["-psk", key, "-psk_identity", identity, "-cipher", "PSK-AES128-CBC-SHA"]
    out, made = asyncio.run(_peer_get(cmd, lambda: server(now=None)))
    assert "HTTP/1.1" not in out
    assert "alert bad record mac" in out, out
    assert made[0].error is not None
    assert made[0].error.description == 20


@pytest.mark.peer
@pytest.mark.parametrize("priority", [AES_PRIORITY, AES_PRIORITY + ":%NO_ETM"])
def test_gnutls_cli(need_tool: Callable[[str, str], str], priority: str) -> None:
    cli = need_tool("gnutls-cli", "gnutls-bin")
    cmd = [cli, "-p", "PORT", "127.0.0.1", "--pskusername", IDENTITY, "--pskkey", KEY.hex()]
    cmd += ["--priority", priority]
    out, made = asyncio.run(_peer_get(cmd, lambda: server(now=None)))
    assert "(TLS1.2-X.509)-(PSK)-(AES-128-CBC)-(SHA256)" in out, out
    assert "extended master secret, safe renegotiation" in out
    assert "you asked for /peer" in out
    assert made[0].encrypt_then_mac is ("NO_ETM" not in priority)


# -- opt-in: the dispatcher and the card's HTTPS port ----------------------------------------


def dispatcher(pki: Pki, inner: EchoInner | None = None, **kw: object) -> TlsDispatcher:
    ctx = server_context(pki.chain_pem, pki.key_pem, profile="compat", psk=PskKeys(lookup))
    kw.setdefault("now", NOW)
    return TlsDispatcher(ctx, inner or EchoInner(), PskKeys(lookup), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("card_engine", [True, False])
def test_dispatcher_sends_psk_aes_clients_to_the_card_engine(pki: Pki, card_engine: bool) -> None:
    inner = EchoInner()
    disp = dispatcher(pki, inner, card_engine=card_engine)
    client = python_client("PSK-AES128-CBC-SHA256")
    pump(client, disp, step=client.handshake)
    assert disp.stack == ("card" if card_engine else "openssl")
    assert disp.cipher is not None
    assert disp.cipher[0] == "PSK-AES128-CBC-SHA256"
    client.obj.write(request("/x"))
    pump(client, disp)
    assert client.read_all().endswith(b"you asked for /x")


def test_dispatcher_keeps_certificate_and_old_clients_on_openssl(pki: Pki) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=pki.ca_pem.decode())
    client = RawClient(ctx, "localhost")
    disp = dispatcher(pki, card_engine=True)
    pump(client, disp, step=client.handshake)
    assert disp.stack == "openssl"
    assert client.handshake_done
    old = psk_client_context(IDENTITY, KEY, profile="compat", ciphers="PSK-AES128-CBC-SHA")
    with pytest.warns(DeprecationWarning, match="TLSVersion"):
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    client = RawClient(old)
    disp = dispatcher(pki, card_engine=True)
    pump(client, disp, step=client.handshake)
    assert disp.stack == "openssl"  # TLS 1.1: not the card engine's
    assert client.handshake_done


TABLE = PskTable(True, "scws", {IDENTITY: KEY})


def https_handler(pki: Pki, engine: str, profile: str, table: PskTable | None) -> object:
    site = Site(MemoryStore(), card={"ICCID": "8988211000000000003"}, secret=b"0" * 32)
    settings = CardSettings(tls_profile=profile, tls_engine=engine, limits=CardLimits())
    ctx = server_context(
        pki.chain_pem, pki.key_pem, profile=profile, psk=table and table.psk_keys()
    )  # type: ignore[arg-type]
    return handler_factories(site, settings, ctx, table)[4116](1, NOW)


def test_card_https_port_uses_the_engine_when_asked(pki: Pki) -> None:
    handler = https_handler(pki, "card", "compat", TABLE)
    assert isinstance(handler, TlsDispatcher)
    client = python_client()
    pump(client, handler, step=client.handshake)
    assert handler.stack == "card"
    assert isinstance(https_handler(pki, "openssl", "modern", TABLE), TlsServerHandler)
    assert isinstance(https_handler(pki, "card", "compat", None), TlsServerHandler)


def test_card_engine_without_gnutls(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gnutls, "_loaded", [gnutls.GnutlsUnavailable("no libgnutls here")])
    handler = https_handler(pki, "card", "compat", TABLE)
    assert isinstance(handler, TlsDispatcher)
    client = python_client()
    pump(client, handler, step=client.handshake)
    assert handler.stack == "card"
