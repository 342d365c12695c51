"""Bad TLS clients on the card's port 4116: wrong PSK key, unknown PSK identity, garbage,
truncated records and stalled handshakes. Each ends that one connection (with the alert the
card's OpenSSL wrote, if any); the card keeps serving everyone else, on 3516 and on 4116.

`card.tls_handshake_timeout` is 1 s here so that stalls are dropped quickly; the tests give
the card a generous `CLOSE_WITHIN` and never check exact timings."""

from __future__ import annotations

import os
import random
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from e2e_wire import PSK_IDENTITY, PSK_KEY, Card, start_card

from openscws.demo import demo_files

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

DEMO = demo_files()
INDEX = DEMO["/index.html"]
WRONG_KEY = "ffeeddccbbaa99887766554433221100"
HANDSHAKE_TIMEOUT = 1.0
CLOSE_WITHIN = 8.0
"""A stalled client must be gone this long after it stalled (the timeout is 1 s)."""
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in {"CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_HOME"}
    and not k.lower().endswith("_proxy")
}
ALERT = 0x15  # TLS ContentType.alert
FATAL = 2

Tool = Callable[[str, str], str]


# -- one `openscws up` for the module ----------------------------------------------------------


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Card]:
    """`up` with a 1 s TLS handshake timeout, PSK identity `card1` enabled."""
    root = tmp_path_factory.mktemp("https-negative")
    config = (
        f"[card]\ntls_handshake_timeout = {HANDSHAKE_TIMEOUT}\n"
        f"[gateway]\nhead_timeout = {HANDSHAKE_TIMEOUT}\n"
    )
    for sp in start_card(root, root / "ca", config, psk=True):
        yield sp
        assert "Traceback" not in sp.log(), sp.log()


@pytest.fixture
def serves(need_tool: Tool, card: Card) -> Callable[[], None]:
    """`serves()` checks the card still answers a normal curl on both ports."""
    exe = need_tool("curl", "curl")

    def check() -> None:
        assert card.proc.poll() is None, card.log()
        for url in (
            f"http://127.0.0.1:{card.port}/",
            f"https://127.0.0.1:{card.tls_port}/",
        ):
            p = _run([exe, "-q", "-sS", "--noproxy", "*", "--max-time", "10"], url, card)
            assert p.returncode == 0, (url, p.stderr)
            assert p.stdout == INDEX, url

    return check


def _run(args: list[str], url: str, card: Card) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*args, "--cacert", str(card.ca), url],
        capture_output=True,
        timeout=15,
        env=CLEAN_ENV,
        check=False,
    )


# -- raw sockets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    data: bytes  # everything the card sent before closing
    elapsed: float  # seconds from the last byte we sent to the close

    def alerts(self) -> list[tuple[int, int]]:
        """(level, description) of each plaintext alert record in `data`."""
        found, at = [], 0
        while at + 5 <= len(self.data):
            length = int.from_bytes(self.data[at + 3 : at + 5])
            if self.data[at] == ALERT and length == 2:
                found.append((self.data[at + 5], self.data[at + 6]))
            at += 5 + length
        return found


def wait_closed(
    sock: socket.socket, t0: float, data: bytes = b"", within: float = CLOSE_WITHIN
) -> Closed:
    """Reads until the card closes the connection; fails if it is open `within` s after t0."""
    sock.settimeout(max(0.1, t0 + within - time.monotonic()))
    got = bytearray(data)
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the card kept the connection open {within} s; got {bytes(got)!r}")
    return Closed(bytes(got), time.monotonic() - t0)


def send_and_wait_closed(card: Card, payload: bytes, within: float = CLOSE_WITHIN) -> Closed:
    with socket.create_connection(("127.0.0.1", card.tls_port), timeout=within) as s:
        if payload:
            s.sendall(payload)
        return wait_closed(s, time.monotonic(), within=within)


def client_hello() -> bytes:
    """A real ClientHello (Python's default client), as records on the wire."""
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert hello[0] == 0x16
    return hello


@dataclass
class Handshake:
    sock: socket.socket
    obj: ssl.SSLObject
    wire: bytes  # every byte the card sent during the handshake
    error: ssl.SSLError | None


def tls_handshake(card: Card, ctx: ssl.SSLContext, hostname: str | None = "localhost") -> Handshake:
    """A sans-IO client handshake over a raw socket, so that the test sees the raw bytes."""
    sock = socket.create_connection(("127.0.0.1", card.tls_port), timeout=CLOSE_WITHIN)
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname=hostname)
        wire = bytearray()
        error = None
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if flight := outgoing.read():
                    sock.sendall(flight)
                chunk = sock.recv(65536)
                if not chunk:
                    incoming.write_eof()
                wire += chunk
                incoming.write(chunk)
            except ssl.SSLError as exc:
                error = exc
                break
        if flight := outgoing.read():  # our Finished, or our own alert
            sock.sendall(flight)
    except BaseException:
        sock.close()
        raise
    return Handshake(sock, obj, bytes(wire), error)


def psk_context(identity: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("PSK-AES128-GCM-SHA256")
    ctx.set_psk_client_callback(lambda hint: (identity, bytes.fromhex(key)))
    return ctx


# -- wrong key, unknown identity ---------------------------------------------------------------


def _s_client_psk(
    exe: str, card: Card, identity: str, key: str
) -> subprocess.CompletedProcess[str]:
    args = [exe, "s_client", "-connect", f"127.0.0.1:{card.tls_port}", "-tls1_2"]
    args += ["-cipher", "PSK-AES128-GCM-SHA256", "-psk", key, "-psk_identity", identity]
    return subprocess.run(
        args, input="", capture_output=True, text=True, timeout=15, env=CLEAN_ENV, check=False
    )


def _gnutls_psk(exe: str, card: Card, identity: str, key: str) -> subprocess.CompletedProcess[str]:
    args = [exe, "--port", str(card.tls_port), "127.0.0.1"]
    args += ["--priority", "NORMAL:-KX-ALL:+PSK:-VERS-TLS1.3"]
    args += ["--pskusername", identity, "--pskkey", key]
    request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    return subprocess.run(
        args, input=request, capture_output=True, text=True, timeout=15, env=CLEAN_ENV, check=False
    )


def test_wrong_psk_key_openssl(need_tool: Tool, card: Card, serves: Callable[[], None]) -> None:
    exe = need_tool("openssl", "openssl")
    p = _s_client_psk(exe, card, PSK_IDENTITY, WRONG_KEY)
    assert p.returncode != 0
    # The card cannot check the client's Finished under its own key: bad_record_mac (20).
    assert "sslv3 alert bad record mac" in p.stderr, p.stderr
    assert "SSL alert number 20" in p.stderr
    assert "HTTP/1.1" not in p.stdout
    serves()


def test_unknown_psk_identity_openssl(
    need_tool: Tool, card: Card, serves: Callable[[], None]
) -> None:
    """RFC 4279 §2: an unknown identity gets the wrong-key alert (no identity oracle)."""
    exe = need_tool("openssl", "openssl")
    p = _s_client_psk(exe, card, "nobody", PSK_KEY)
    assert p.returncode != 0
    assert "sslv3 alert bad record mac" in p.stderr, p.stderr
    assert "SSL alert number 20" in p.stderr
    assert "unknown psk identity" not in p.stderr
    assert "HTTP/1.1" not in p.stdout
    serves()


@pytest.mark.parametrize(
    ("identity", "key", "alert"),
    [
        (PSK_IDENTITY, WRONG_KEY, "*** Received alert [20]: Bad record MAC"),
        ("nobody", PSK_KEY, "*** Received alert [20]: Bad record MAC"),
    ],
    ids=["wrong-key", "unknown-identity"],
)
def test_bad_psk_gnutls(
    need_tool: Tool, card: Card, serves: Callable[[], None], identity: str, key: str, alert: str
) -> None:
    exe = need_tool("gnutls-cli", "gnutls-bin")
    p = _gnutls_psk(exe, card, identity, key)
    assert p.returncode != 0
    assert alert in p.stdout + p.stderr, p.stdout + p.stderr
    assert "*** Fatal error: A TLS fatal alert has been received." in p.stdout + p.stderr
    assert "HTTP/1.1" not in p.stdout
    serves()


@pytest.mark.parametrize(
    ("identity", "key", "alert", "message"),
    [
        (PSK_IDENTITY, WRONG_KEY, "BAD_RECORD_MAC", "sslv3 alert bad record mac"),
        ("nobody", PSK_KEY, "BAD_RECORD_MAC", "sslv3 alert bad record mac"),
    ],
    ids=["wrong-key", "unknown-identity"],
)
def test_bad_psk_alert_on_the_wire(
    card: Card, serves: Callable[[], None], identity: str, key: str, alert: str, message: str
) -> None:
    """The alert record itself: plaintext (the card never got to its ChangeCipherSpec), fatal,
    and then the card closes the connection."""
    hs = tls_handshake(card, psk_context(identity, key), hostname=None)
    with hs.sock:
        assert hs.error is not None
        assert message in str(hs.error)  # Python's OpenSSL, as the client, names it too
        closed = wait_closed(hs.sock, time.monotonic(), hs.wire)
    code = ssl.AlertDescription["ALERT_DESCRIPTION_" + alert].value
    assert closed.alerts() == [(FATAL, code)], closed.data.hex()
    serves()


# -- garbage -----------------------------------------------------------------------------------

RANDOM = random.Random(4116).randbytes(64)


@pytest.mark.parametrize(
    ("payload", "alert"),
    [
        # Not TLS at all: OpenSSL sends no alert to what does not look like TLS (its
        # SSL_R_HTTP_REQUEST / WRONG_VERSION_NUMBER), the card just closes.
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (RANDOM, None),
        # TLS-shaped: the RFC 5246 alerts.
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "DECODE_ERROR"),  # a 1-byte ClientHello
        (b"\x16\x03\x03\xff\xff" + bytes(100), "RECORD_OVERFLOW"),  # 65535 > 2^14 + 2048
        (b"\x17\x03\x03\x00\x10" + bytes(16), "UNEXPECTED_MESSAGE"),  # data before handshake
    ],
    ids=["plain-http", "random-bytes", "bad-client-hello", "oversized-record", "early-data"],
)
def test_garbage_is_closed(
    card: Card, serves: Callable[[], None], payload: bytes, alert: str | None
) -> None:
    assert RANDOM[0] not in range(20, 25)  # not a TLS content type (seeded: always so)
    closed = send_and_wait_closed(card, payload)
    if alert is None:
        assert closed.data == b"", closed.data.hex()
    else:
        code = ssl.AlertDescription["ALERT_DESCRIPTION_" + alert].value
        assert closed.data[:1] == bytes([ALERT]), closed.data.hex()
        assert closed.alerts() == [(FATAL, code)], closed.data.hex()
    serves()


# -- stalls ------------------------------------------------------------------------------------


def test_truncated_record_in_handshake(card: Card, serves: Callable[[], None]) -> None:
    """A handshake record header announcing 300 bytes, then 10, then nothing: dropped when the
    handshake deadline passes."""
    closed = send_and_wait_closed(card, b"\x16\x03\x01\x01\x2c" + bytes(10))
    assert closed.data == b""
    assert closed.elapsed >= HANDSHAKE_TIMEOUT / 2  # the timeout closed it, not an error
    serves()


def test_truncated_record_after_handshake(card: Card, serves: Callable[[], None]) -> None:
    """After a complete handshake, an application-data record header announcing 300 bytes,
    then 10, then nothing: the card's record-stall timer drops it (the HTTP engine never sees
    a partial record, so its own timers cannot)."""
    hs = tls_handshake(card, ssl.create_default_context(cafile=str(card.ca)))
    with hs.sock:
        assert hs.error is None, hs.error
        assert hs.obj.version() == "TLSv1.3"
        hs.sock.sendall(b"\x17\x03\x03\x01\x2c" + bytes(10))
        closed = wait_closed(hs.sock, time.monotonic())
    assert closed.elapsed >= HANDSHAKE_TIMEOUT / 2
    serves()


def test_half_client_hello_stall(card: Card, serves: Callable[[], None]) -> None:
    hello = client_hello()
    closed = send_and_wait_closed(card, hello[: len(hello) // 2])
    assert closed.data == b""
    assert closed.elapsed >= HANDSHAKE_TIMEOUT / 2
    serves()


def test_silent_client_is_dropped(card: Card) -> None:
    send_and_wait_closed(card, b"", within=5 * HANDSHAKE_TIMEOUT)


def test_stalled_clients_do_not_block_others(card: Card, need_tool: Tool) -> None:
    """Three stalled clients hold channels on 4116 while curl fetches pages on both ports:
    curl is served before the card drops the stalled ones, which it then does."""
    exe = need_tool("curl", "curl")
    hello = client_hello()
    stalls = [hello[: len(hello) // 2], b"\x16\x03\x01\x01\x2c" + bytes(10), hello[:5]]
    socks = [socket.create_connection(("127.0.0.1", card.tls_port), timeout=5) for _ in stalls]
    try:
        t0 = time.monotonic()
        for s, payload in zip(socks, stalls, strict=True):
            s.sendall(payload)
        urls = [f"https://localhost:{card.tls_port}/", f"http://127.0.0.1:{card.port}/"] * 2
        with ThreadPoolExecutor(len(socks) + len(urls)) as pool:
            # Each stalled socket is watched from now on: when does the card close it?
            watches = [pool.submit(wait_closed, s, t0) for s in socks]
            runs = list(
                pool.map(lambda u: _run([exe, "-q", "-sS", "--noproxy", "*"], u, card), urls)
            )
            served = time.monotonic() - t0
            closes = [w.result(timeout=CLOSE_WITHIN + 5) for w in watches]
        for url, p in zip(urls, runs, strict=True):
            assert p.returncode == 0, (url, p.stderr)
            assert p.stdout == INDEX, url
        for closed in closes:
            assert closed.data == b""
            assert closed.elapsed > served, ([c.elapsed for c in closes], served)
    finally:
        for s in socks:
            s.close()
