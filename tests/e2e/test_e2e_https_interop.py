"""HTTPS on the card's port 4116 against real TLS peers: curl, openssl s_client, gnutls-cli and
Python's own `ssl`. TLS ends inside the card; the BIP gateway only relays the records.

Certificate handshakes verify against the issuer CA that `up` creates (here in an explicit
`[ca] dir`), with the host names and the IP address in the device certificate. PSK handshakes
use an identity provisioned with `openscws card psk add/enable` before the start. The "compat"
profile adds TLS 1.0/1.1 (SCWS §11.1.2's TLS 1.0), which the default "modern" one refuses.

One `up` per profile serves the whole module."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_wire import PSK_IDENTITY, PSK_KEY, Card, start_card

from openscws.demo import demo_files

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

DEMO = demo_files()
INDEX = DEMO["/index.html"]
RAW_GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
# Peers must find no CA bundle, proxy or rc file of the machine's: only what a test passes.
CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in {"CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_HOME"}
    and not k.lower().endswith("_proxy")
}

Tool = Callable[[str, str], str]


# -- one `openscws up` per module ------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("https-ca") / "ca"


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> Iterator[Card]:
    """The default ("modern") profile, PSK enabled next to the certificate suites."""
    yield from start_card(tmp_path_factory.mktemp("modern"), ca_dir, psk=True)


@pytest.fixture(scope="module")
def compat_card(
    tmp_path_factory: pytest.TempPathFactory, ca_dir: Path, card: Card
) -> Iterator[Card]:
    """The "compat" profile (also TLS 1.0/1.1), PSK enabled; same issuer CA as `card` (which
    it depends on, so that one creates the CA and this one only opens it)."""
    yield from start_card(
        tmp_path_factory.mktemp("compat"), ca_dir, '[card]\ntls_profile = "compat"\n', psk=True
    )


# -- peers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")


def _run(args: list[str], *, stdin: bytes | None = None, timeout: float = 20.0) -> Done:
    p = subprocess.run(
        args, input=stdin, capture_output=True, timeout=timeout, env=CLEAN_ENV, check=False
    )
    return Done(p.returncode, p.stdout, p.stderr.decode(errors="replace"))


def curl(exe: str, url: str, *args: str) -> tuple[int, bytes, Done]:
    """(HTTP status, body, the run) of one curl request; -q: no ~/.curlrc."""
    cmd = [exe, "-q", "-sS", "--noproxy", "*", "--max-time", "15", "-w", "\n%{http_code}"]
    done = _run([*cmd, *args, url])
    body, _, status = done.out.rpartition(b"\n")
    return int(status or 0), body, done


def s_client(exe: str, port: int, *args: str, stdin: bytes = RAW_GET) -> Done:
    """`openssl s_client`; -ign_eof keeps it reading until the card closes."""
    return _run([exe, "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *args], stdin=stdin)


def http_response(raw: bytes) -> tuple[str, bytes]:
    """(status line, body) of the one HTTP/1.1 response in a peer's output (the body cut by
    Content-Length: s_client prints more after it)."""
    at = raw.find(b"HTTP/1.1 ")
    assert at >= 0, raw[-3000:]
    head, sep, rest = raw[at:].partition(b"\r\n\r\n")
    assert sep, raw[at:][:500]
    match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    assert match is not None, head
    return head.split(b"\r\n", 1)[0].decode(), rest[: int(match.group(1))]


@pytest.fixture
def curl_exe(need_tool: Tool) -> str:
    return need_tool("curl", "curl")


@pytest.fixture
def openssl(need_tool: Tool) -> str:
    return need_tool("openssl", "openssl")


# -- curl ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_curl_https_index_byte_exact(curl_exe: str, card: Card, host: str) -> None:
    status, plain, _ = curl(curl_exe, f"http://127.0.0.1:{card.port}/")
    assert status == 200
    assert plain == INDEX
    url = f"https://{host}:{card.tls_port}/"
    status, body, done = curl(curl_exe, url, "--cacert", str(card.ca), "-v")
    assert done.code == 0, done.err
    assert status == 200
    assert body == plain  # the same page, byte for byte, over HTTPS
    assert "SSL certificate verify ok." in done.err
    assert re.search(r"SSL connection using TLSv1\.3 / TLS_", done.err), done.err
    # The certificate names both: a host name check, or an IP address one.
    assert f'subjectAltName: host "{host}" matched cert' in done.err


def test_curl_https_card_application(curl_exe: str, card: Card) -> None:
    base = f"https://localhost:{card.tls_port}"
    status, body, done = curl(curl_exe, base + "/app/info", "--cacert", str(card.ca))
    assert status == 200, done.err
    page = body.decode()
    assert "<h1>Card information</h1>" in page
    assert "<td>8988211000000000003</td>" in page  # the ICCID, from the card application
    status, body, _ = curl(curl_exe, base + "/app/info/json", "--cacert", str(card.ca))
    assert status == 200
    assert isinstance(json.loads(body)["visits"], int)
    # The card's HTTP engine behind TLS knows it serves https (its access log says so).
    assert "openscws.access: https GET /app/info/json 200" in card.log()


def test_curl_without_the_ca_fails_verification(curl_exe: str, card: Card) -> None:
    status, body, done = curl(curl_exe, f"https://127.0.0.1:{card.tls_port}/")
    assert done.code == 60, done  # CURLE_PEER_FAILED_VERIFICATION
    assert "SSL certificate problem" in done.err, done.err
    assert body == b""
    assert status == 0


# -- HTTP and HTTPS at once ------------------------------------------------------------------


def test_http_and_https_served_at_the_same_time(curl_exe: str, card: Card) -> None:
    """curl and Python, each on 3516 and on 4116, started together, each fetching three
    resources; every body arrives intact.

    Two clients per port: the card's 7 channels then always keep one listening on each port,
    so it never reclaims a connection (see test_https_connection_not_reclaimed_before_request
    for what happens to HTTPS connections when it does)."""
    ctx = ssl.create_default_context(cafile=str(card.ca))
    start = threading.Barrier(4, timeout=30)
    paths = ["/", "/img/card.png", "/style.css"]

    def by_curl(scheme: str, port: int) -> list[tuple[int, bytes]]:
        start.wait()
        got = []
        for path in paths:
            url = f"{scheme}://localhost:{port}{path}"
            status, body, _ = curl(curl_exe, url, "--cacert", str(card.ca))
            got.append((status, body))
        return got

    def by_python(secure: bool) -> list[tuple[int, bytes]]:
        conn: http.client.HTTPConnection
        if secure:
            conn = http.client.HTTPSConnection("localhost", card.tls_port, context=ctx, timeout=30)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", card.port, timeout=30)
        start.wait()
        got = []
        try:
            for path in paths:  # one keep-alive connection
                conn.request("GET", path)
                r = conn.getresponse()
                got.append((r.status, r.read()))
        finally:
            conn.close()
        return got

    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(by_curl, "https", card.tls_port),
            pool.submit(by_curl, "http", card.port),
            pool.submit(by_python, True),
            pool.submit(by_python, False),
        ]
        results = [f.result(timeout=60) for f in futures]
    for got in results:
        assert got == [(200, DEMO["/index.html" if p == "/" else p]) for p in paths]


@pytest.fixture(scope="module")
def small_card(
    tmp_path_factory: pytest.TempPathFactory, ca_dir: Path, card: Card
) -> Iterator[Card]:
    """A card with only three channels, one per port and one left for the admin agent:
    every client saturates its port."""
    config = "[card]\ninitial_channels = 1\nlistening_channels = 1\nmax_channels = 3\n"
    yield from start_card(tmp_path_factory.mktemp("small"), ca_dir, config, psk=False)


def _get_after(sock: socket.socket, pause: float) -> bytes:
    """Waits `pause` s on an open connection, then sends a GET and reads to the end."""
    time.sleep(pause)
    sock.settimeout(10)
    sock.sendall(RAW_GET)
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def test_https_connection_not_reclaimed_before_request(small_card: Card) -> None:
    """HTTP control first: a connection that waits before its request is served."""
    with socket.create_connection(("127.0.0.1", small_card.port), timeout=10) as plain:
        status, body = http_response(_get_after(plain, 0.3))
    assert (status, body) == ("HTTP/1.1 200 OK", INDEX)
    ctx = ssl.create_default_context(cafile=str(small_card.ca))
    raw = socket.create_connection(("127.0.0.1", small_card.tls_port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:  # handshake done here
        data = _get_after(tls, 0.3)
    assert data, "the card closed the HTTPS connection before the client's first request"
    status, body = http_response(data)
    assert (status, body) == ("HTTP/1.1 200 OK", INDEX)


# -- openssl s_client ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "version"), [((), "TLSv1.3"), (("-tls1_2",), "TLSv1.2")], ids=["default", "tls1_2"]
)
def test_openssl_s_client_verifies_and_gets_the_page(
    openssl: str, card: Card, pin: tuple[str, ...], version: str
) -> None:
    done = s_client(
        openssl, card.tls_port, "-CAfile", str(card.ca), "-verify_ip", "127.0.0.1", *pin
    )
    assert done.code == 0, done.err
    assert "Verify return code: 0 (ok)" in done.text
    assert f"New, {version}, Cipher is " in done.text, done.text
    assert "subject=O = openscws SCWS, CN = localhost, serialNumber = 8988211000000000003" in (
        done.text
    )
    status, body = http_response(done.out)
    assert status == "HTTP/1.1 200 OK"
    assert body == INDEX


def test_openssl_s_client_hostname_mismatch(openssl: str, card: Card) -> None:
    """Control: the chain verifies, the name does not: s_client reports it."""
    done = s_client(
        openssl, card.tls_port, "-CAfile", str(card.ca), "-verify_hostname", "example.com"
    )
    assert "Verify return code: 62 (hostname mismatch)" in done.text, done.text


def test_openssl_psk_spec_suite(openssl: str, compat_card: Card) -> None:
    """SCWS §11.1.1.1's TLS_PSK_WITH_AES_128_CBC_SHA, over TLS 1.2: no certificate at all
    (a CBC suite: the compat profile)."""
    done = s_client(
        openssl,
        compat_card.tls_port,
        "-psk",
        PSK_KEY,
        "-psk_identity",
        PSK_IDENTITY,
        "-tls1_2",
        "-cipher",
        "PSK-AES128-CBC-SHA",
    )
    assert done.code == 0, done.err
    assert "Cipher is PSK-AES128-CBC-SHA" in done.text, done.text
    assert "Cipher    : PSK-AES128-CBC-SHA" in done.text
    assert "Protocol  : TLSv1.2" in done.text
    assert f"PSK identity: {PSK_IDENTITY}" in done.text
    assert "no peer certificate available" in done.text
    status, body = http_response(done.out)
    assert status == "HTTP/1.1 200 OK"
    assert body == INDEX


def test_openssl_tls12_session_is_not_resumed(openssl: str, card: Card, tmp_path: Path) -> None:
    """No tickets and no server session cache: the card keeps no session state (a TLS 1.2
    handshake gets no ticket and an empty session ID, so there is nothing to resume)."""
    session = tmp_path / "session.pem"
    first = s_client(
        openssl, card.tls_port, "-CAfile", str(card.ca), "-tls1_2", "-sess_out", str(session)
    )
    assert first.code == 0, first.err
    assert "New, TLSv1.2" in first.text
    assert "TLS session ticket" not in first.text
    session_ids = [line for line in first.text.splitlines() if "Session-ID:" in line]
    assert session_ids
    assert session_ids[0].split("Session-ID:")[1].strip() == ""
    if session.exists():  # some s_client versions write the empty session anyway
        again = s_client(
            openssl, card.tls_port, "-CAfile", str(card.ca), "-tls1_2", "-sess_in", str(session)
        )
        assert again.code == 0, again.err
        assert "Reused," not in again.text


# -- gnutls-cli ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "description"),
    [
        ("NORMAL:-KX-ALL:+PSK:-VERS-TLS1.3", "(PSK)-(AES-128-GCM)"),
        (
            "NONE:+VERS-TLS1.2:+PSK:+AES-128-CBC:+SHA1:+COMP-NULL:+SIGN-ALL:+CTYPE-ALL",
            "(PSK)-(AES-128-CBC)-(SHA1)",  # the spec's TLS_PSK_WITH_AES_128_CBC_SHA
        ),
    ],
    ids=["normal-psk", "spec-suite"],
)
def test_gnutls_psk(
    need_tool: Tool, request: pytest.FixtureRequest, priority: str, description: str
) -> None:
    """The spec suite is CBC: the compat card; an AEAD PSK suite: the modern one."""
    card: Card = request.getfixturevalue("compat_card" if "CBC" in description else "card")
    exe = need_tool("gnutls-cli", "gnutls-bin")
    args = [exe, "--port", str(card.tls_port), "127.0.0.1", "--priority", priority]
    args += ["--pskusername", PSK_IDENTITY, "--pskkey", PSK_KEY]
    done = _run(args, stdin=RAW_GET)  # the request comes from stdin
    assert done.code == 0, done.text + done.err
    assert "- Handshake was completed" in done.text, done.text
    assert f"- PSK authentication. Connected as '{PSK_IDENTITY}'" in done.text
    assert f"- Description: (TLS1.2-X.509)-{description}" in done.text, done.text
    status, body = http_response(done.out)
    assert status == "HTTP/1.1 200 OK"
    assert body == INDEX


# -- Python's ssl ----------------------------------------------------------------------------


def test_python_ssl_client(card: Card) -> None:
    ctx = ssl.create_default_context(cafile=str(card.ca))
    for host in ("localhost", "127.0.0.1"):
        conn = http.client.HTTPSConnection(host, card.tls_port, context=ctx, timeout=20)
        try:
            conn.request("GET", "/")
            r = conn.getresponse()
            assert r.status == 200
            assert r.read() == INDEX
            sock = conn.sock
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.version() == "TLSv1.3"
            cert = sock.getpeercert()
            assert ("DNS", "localhost") in cert["subjectAltName"]
            assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
            # HTTP on 3516 in the middle of the HTTPS keep-alive connection...
            plain = http.client.HTTPConnection("127.0.0.1", card.port, timeout=20)
            plain.request("GET", "/style.css")
            assert plain.getresponse().read() == DEMO["/style.css"]
            plain.close()
            # ...which then carries on, on the same TLS session.
            conn.request("GET", "/app/info/json")
            r = conn.getresponse()
            assert r.status == 200
            assert r.getheader("content-type", "").startswith("application/json")
            assert isinstance(json.loads(r.read())["visits"], int)
            assert conn.sock is sock
        finally:
            conn.close()


def test_python_ssl_client_tls12(card: Card) -> None:
    ctx = ssl.create_default_context(cafile=str(card.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection("localhost", card.tls_port, context=ctx, timeout=20)
    try:
        conn.request("GET", "/img/card.png")
        r = conn.getresponse()
        assert r.status == 200
        assert r.read() == DEMO["/img/card.png"]
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.version() == "TLSv1.2"
        assert conn.sock.cipher()[0].startswith("ECDHE-")  # a certificate suite, not PSK
    finally:
        conn.close()


# -- profiles: "compat" has TLS 1.0 / 1.1, "modern" refuses them -------------------------------


@pytest.mark.parametrize(("flag", "version"), [("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")])
def test_compat_profile_tls10_tls11_certificate(
    openssl: str, compat_card: Card, flag: str, version: str
) -> None:
    # OpenSSL 3 clients, too, need security level 0 for TLS 1.0/1.1's MD5+SHA-1 signatures.
    args = ["-CAfile", str(compat_card.ca), "-verify_ip", "127.0.0.1", flag]
    done = s_client(openssl, compat_card.tls_port, *args, "-cipher", "DEFAULT@SECLEVEL=0")
    assert done.code == 0, done.err
    assert f"Protocol  : {version}\n" in done.text, done.text
    assert "Verify return code: 0 (ok)" in done.text
    assert re.search(r"New, TLSv1\.0, Cipher is ECDHE-RSA-AES(128|256)-SHA", done.text), done.text
    status, body = http_response(done.out)
    assert status == "HTTP/1.1 200 OK"
    assert body == INDEX


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_modern_profile_refuses_tls10_tls11(openssl: str, card: Card, flag: str) -> None:
    args = ["-CAfile", str(card.ca), flag, "-cipher", "DEFAULT@SECLEVEL=0"]
    done = s_client(openssl, card.tls_port, *args, stdin=b"")
    assert done.code != 0
    assert "tlsv1 alert protocol version" in done.err, done.err
    assert "SSL alert number 70" in done.err
    assert "Cipher is (NONE)" in done.text


def test_compat_profile_tls10_psk(openssl: str, compat_card: Card) -> None:
    args = [
        "-psk",
        PSK_KEY,
        "-psk_identity",
        PSK_IDENTITY,
        "-tls1",
        "-cipher",
        "PSK-AES128-CBC-SHA",
    ]
    done = s_client(openssl, compat_card.tls_port, *args)
    assert done.code == 0, done.err
    assert "Protocol  : TLSv1\n" in done.text, done.text
    assert "Cipher    : PSK-AES128-CBC-SHA" in done.text
    status, body = http_response(done.out)
    assert status == "HTTP/1.1 200 OK"
    assert body == INDEX


def test_modern_profile_refuses_tls10_psk(openssl: str, card: Card) -> None:
    args = [
        "-psk",
        PSK_KEY,
        "-psk_identity",
        PSK_IDENTITY,
        "-tls1",
        "-cipher",
        "PSK-AES128-CBC-SHA",
    ]
    done = s_client(openssl, card.tls_port, *args, stdin=b"")
    assert done.code != 0
    assert "tlsv1 alert protocol version" in done.err, done.err


# -- the CA's default place --------------------------------------------------------------------


def test_default_ca_lands_under_xdg_data_home(start_up, curl_exe: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Without [ca] dir, `up` makes the CA under $XDG_DATA_HOME/openscws/ca (conftest's spawn
    points XDG_DATA_HOME at <tmp_path>/logs/xdg-data), and prints where it is."""
    sp = start_up()
    ca = tmp_path / "logs" / "xdg-data" / "openscws" / "ca" / "ca.pem"
    line = sp.wait_for("HTTPS issuer CA: ")
    assert line.startswith(f"HTTPS issuer CA: {ca} "), line
    assert ca.is_file()
    status, body, done = curl(curl_exe, f"https://localhost:{sp.tls_port}/", "--cacert", str(ca))
    assert status == 200, done.err
    assert body == INDEX
