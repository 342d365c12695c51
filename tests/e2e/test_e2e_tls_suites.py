"""SCWS §11.1.2's TLS 1.0 server authentication, against real peers through the BIP gateway,
and every row of docs/tls.md's "what negotiates" tables checked with `openssl s_client`, one
suite and version at a time (plus every suite the table does not list, which must fail).

* "compat": `openssl s_client -tls1 -cipher AES128-SHA` (TLS_RSA_WITH_AES_128_CBC_SHA) and
  `-cipher DHE-RSA-AES128-SHA` get 200 with the card's device certificate, and so does a
  TLS 1.0-only gnutls-cli; "modern" refuses them with alert 70 or 40.
* The tables come from in-memory handshakes (`openscws.tls.suites`); here the card itself
  answers each s_client."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_wire import PSK_IDENTITY, PSK_KEY, Card, start_card

from openscws.tls.suites import GNUTLS_3DES, TLS13, VERSIONS, negotiable

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

Tool = Callable[[str, str], str]
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
_FLAG = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("suites-ca") / "ca"


@pytest.fixture(scope="module")
def modern(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path) -> Iterator[Card]:
    yield from start_card(tmp_path_factory.mktemp("modern"), ca_dir, psk=True)


@pytest.fixture(scope="module")
def compat(tmp_path_factory: pytest.TempPathFactory, ca_dir: Path, modern: Card) -> Iterator[Card]:
    yield from start_card(
        tmp_path_factory.mktemp("compat"), ca_dir, '[card]\ntls_profile = "compat"\n', psk=True
    )


def s_client(
    openssl: str, card: Card, version: str, suite: str, *, data: bytes = b""
) -> tuple[int, str]:
    cmd = [openssl, "s_client", "-connect", f"127.0.0.1:{card.tls_port}", _FLAG[version]]
    cmd += ["-CAfile", str(card.ca), "-servername", "localhost"]
    if version == TLS13:
        cmd += ["-ciphersuites", suite]
    else:
        cmd += ["-cipher", suite + ":@SECLEVEL=0"]
    if "PSK" in suite:
        cmd += ["-psk", PSK_KEY, "-psk_identity", PSK_IDENTITY]
    if data:
        cmd += ["-quiet", "-ign_eof"]
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=20, check=False)
    return p.returncode, (p.stdout + p.stderr).decode("latin-1")


def negotiated(out: str) -> str | None:
    """The suite s_client reports ("Cipher is X" / "Cipher    : X"), if any."""
    found = re.search(r"Cipher is (\S+)", out) or re.search(r"Cipher\s+: (\S+)", out)
    if found is None or found.group(1) in ("(NONE)", "0000"):
        return None
    return found.group(1)


@pytest.mark.parametrize("suite", ["AES128-SHA", "DHE-RSA-AES128-SHA"])
def test_tls1_0_server_authentication_openssl(need_tool: Tool, compat: Card, suite: str) -> None:
    openssl = need_tool("openssl", "openssl")
    _, out = s_client(openssl, compat, "TLSv1", suite, data=GET)
    assert "HTTP/1.1 200 OK" in out, out
    assert "verify error" not in out


@pytest.mark.parametrize("kx", ["RSA", "DHE-RSA"])
def test_tls1_0_server_authentication_gnutls(need_tool: Tool, compat: Card, kx: str) -> None:
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    priority = (
        f"NORMAL:-VERS-ALL:+VERS-TLS1.0:-KX-ALL:+{kx}:-CIPHER-ALL:+AES-128-CBC:"
        "%VERIFY_ALLOW_SIGN_WITH_SHA1"
    )
    cmd = [gnutls, "-p", str(compat.tls_port), "127.0.0.1", "--x509cafile", str(compat.ca)]
    cmd += ["--priority", priority]
    p = subprocess.run(cmd, input=GET, capture_output=True, timeout=20, check=False)
    out = (p.stdout + p.stderr).decode("latin-1")
    assert f"(TLS1.0-X.509)-({kx if kx == 'RSA' else 'DHE-FFDHE2048'})-(AES-128-CBC)" in out, out
    assert "HTTP/1.1 200 OK" in out, out


@pytest.mark.parametrize("suite", ["AES128-SHA", "DHE-RSA-AES128-SHA"])
def test_modern_refuses_tls1_0(need_tool: Tool, modern: Card, suite: str) -> None:
    openssl = need_tool("openssl", "openssl")
    code, out = s_client(openssl, modern, "TLSv1", suite, data=GET)
    assert code != 0
    assert "HTTP/1.1" not in out
    assert re.search(r"SSL alert number (70|40)\b", out), out


def test_modern_refuses_rsa_key_exchange_in_tls1_2(need_tool: Tool, modern: Card) -> None:
    openssl = need_tool("openssl", "openssl")
    code, out = s_client(openssl, modern, "TLSv1.2", "AES128-SHA", data=GET)
    assert code != 0
    assert "SSL alert number 40" in out, out


def _offerable(openssl: str) -> dict[str, list[str]]:
    """Per version, the suites this s_client can offer (`openssl ciphers -s -<version>`)."""
    out: dict[str, list[str]] = {}
    for version, _ in VERSIONS:
        p = subprocess.run(
            [openssl, "ciphers", "-s", "-psk", _FLAG[version], "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
            capture_output=True,
            text=True,
            check=True,
        )
        out[version] = [s for s in p.stdout.strip().split(":") if not s.startswith("TLS_")]
    p = subprocess.run(
        [openssl, "ciphers", "-s", "-tls1_3"], capture_output=True, text=True, check=True
    )
    out[TLS13] = [s for s in p.stdout.strip().split(":") if s.startswith("TLS_")]
    out[TLS13] += ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
    return out


@pytest.mark.parametrize("profile", ["modern", "compat"])
def test_every_documented_row_negotiates_and_nothing_else(
    need_tool: Tool, request: pytest.FixtureRequest, profile: str
) -> None:
    openssl = need_tool("openssl", "openssl")
    card: Card = request.getfixturevalue(profile)
    table = negotiable("card", profile)  # type: ignore[arg-type]
    expected = {
        (version, name)
        for version, row in table.versions.items()
        for name, _, stack in row
        if stack == "openssl"
    }
    tries = [
        (version, suite)
        for version, suites in _offerable(openssl).items()
        for suite in dict.fromkeys(suites)
    ]

    def attempt(job: tuple[str, str]) -> tuple[str, str, str | None]:
        version, suite = job
        _, out = s_client(openssl, card, version, suite)
        return version, suite, negotiated(out)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, tries))
    got = {(v, s) for v, s, n in results if n == s}
    wrong = [(v, s, n) for v, s, n in results if n not in (None, s)]
    assert not wrong, wrong
    assert got == expected, (sorted(got - expected), sorted(expected - got))
    gnutls_rows = {v for v, row in table.versions.items() for n, _, _ in row if n == GNUTLS_3DES}
    assert gnutls_rows == ({"TLSv1", "TLSv1.1", "TLSv1.2"} if profile == "compat" else set())
