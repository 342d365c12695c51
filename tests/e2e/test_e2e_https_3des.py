"""TLS_PSK_WITH_3DES_EDE_CBC_SHA (SCWS §11.1.1.1) end to end: `openscws up` with the "compat"
profile and PSK-TLS enabled on the card, a real `gnutls-cli` offering only the 3DES suite, every
byte through the BIP gateway to the card, where GnuTLS terminates the TLS. The same card keeps
serving certificate clients and PSK-AES128-CBC-SHA clients through OpenSSL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

IDENTITY = "card1"
KEY = "00112233445566778899aabbccddeeff"
COMPAT = '[card]\ntls_profile = "compat"\n'
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def only_3des(*versions: str) -> str:
    vers = ":".join(f"+VERS-{v}" for v in versions)
    return f"NONE:{vers}:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"


def psk_image(tmp_path: Path) -> Path:
    """A card image with PSK identity `card1` enabled, made by the CLI."""
    data = tmp_path / "card"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg-data")}
    for args in (
        ["init"],
        ["card", "psk", "add", IDENTITY, "--key", KEY],
        ["card", "psk", "enable", "--hint", "scws"],
    ):
        cmd = [sys.executable, "-m", "openscws", *args, "--data-dir", str(data)]
        done = subprocess.run(cmd, capture_output=True, timeout=60, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    return data


def gnutls_cli(tool: str, port: int, priority: str, key: str = KEY) -> str:
    """One GET with `gnutls-cli`; its stdout and stderr. Its stdin stays open until it exits
    (gnutls-cli says goodbye at stdin EOF, possibly before the answer has arrived)."""
    proc = subprocess.Popen(
        [
            tool,
            "-p",
            str(port),
            "127.0.0.1",
            "--pskusername",
            IDENTITY,
            "--pskkey",
            key,
            "--priority",
            priority,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        proc.stdin.write(REQUEST)
        proc.stdin.flush()
        out = proc.stdout.read()  # until gnutls-cli exits: the card closes after the answer
        proc.wait(10)
    finally:
        watchdog.cancel()
        proc.stdin.close()
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return out.decode(errors="replace")


def s_client(tool: str, port: int, *args: str) -> str:
    done = subprocess.run(
        [tool, "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *args],
        input=REQUEST,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


@pytest.fixture
def gnutls(need_tool: Callable[[str, str], str]) -> str:
    return need_tool("gnutls-cli", "gnutls-bin")


@pytest.fixture
def openssl(need_tool: Callable[[str, str], str]) -> str:
    return need_tool("openssl", "openssl")


def test_3des_psk_through_gnutls(
    gnutls: str, start_up: Callable[..., object], tmp_path: Path
) -> None:
    card = start_up("-v", config=COMPAT, data_dir=psk_image(tmp_path))
    port = card.tls_port  # type: ignore[attr-defined]
    for versions, shown in ((("TLS1.0",), "TLS1.0"), (("TLS1.2", "TLS1.1", "TLS1.0"), "TLS1.2")):
        out = gnutls_cli(gnutls, port, only_3des(*versions))
        assert f"({shown}-X.509)-(PSK)-(3DES-CBC)-(SHA1)" in out, out
        assert f"PSK authentication. Connected as '{IDENTITY}'" in out, out
        assert "HTTP/1.1 200 OK" in out, out
        assert "Smart Card Web Server" in out  # the demo site's index page
    log = card.stderr  # type: ignore[attr-defined]
    assert "through GnuTLS" in log
    assert "GnuTLS handshake done: TLSv1 ('TLS_PSK_3DES_EDE_CBC_SHA1', 'TLSv1', 192)" in log
    assert "('TLS_PSK_3DES_EDE_CBC_SHA1', 'TLSv1.2', 192)" in log
    # a wrong key fails that connection only
    out = gnutls_cli(gnutls, port, only_3des("TLS1.2"), key="ff" * 16)
    assert "HTTP/1.1" not in out
    assert "Handshake was completed" not in out
    out = gnutls_cli(gnutls, port, only_3des("TLS1.0"))
    assert "HTTP/1.1 200 OK" in out, out


def test_same_card_serves_openssl_clients(
    gnutls: str, openssl: str, start_up: Callable[..., object], tmp_path: Path
) -> None:
    card = start_up(config=COMPAT, data_dir=psk_image(tmp_path))
    port = card.tls_port  # type: ignore[attr-defined]
    line = card.wait_for("HTTPS issuer CA: ")  # type: ignore[attr-defined]
    ca = Path(line.split("HTTPS issuer CA: ", 1)[1].split(" (", 1)[0])
    # a certificate client (TLS 1.3, verified against the issuer CA)
    out = s_client(openssl, port, "-CAfile", str(ca), "-servername", "localhost")
    assert "Verify return code: 0 (ok)" in out, out
    assert "HTTP/1.1 200 OK" in out, out
    # the spec's AES PSK suite, through OpenSSL
    out = s_client(
        openssl,
        port,
        "-tls1_2",
        "-cipher",
        "PSK-AES128-CBC-SHA",
        "-psk",
        KEY,
        "-psk_identity",
        IDENTITY,
    )
    assert "Cipher is PSK-AES128-CBC-SHA" in out, out
    assert "HTTP/1.1 200 OK" in out, out
    # a GnuTLS client offering both spec suites: OpenSSL serves it, with AES
    both = "NONE:+VERS-TLS1.2:+PSK:+AES-128-CBC:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"
    out = gnutls_cli(gnutls, port, both)
    assert "(TLS1.2-X.509)-(PSK)-(AES-128-CBC)-(SHA1)" in out, out
    assert "HTTP/1.1 200 OK" in out, out


def test_modern_profile_offers_no_3des(
    gnutls: str, start_up: Callable[..., object], tmp_path: Path
) -> None:
    card = start_up(data_dir=psk_image(tmp_path))
    out = gnutls_cli(gnutls, card.tls_port, only_3des("TLS1.2", "TLS1.0"))  # type: ignore[attr-defined]
    assert "Handshake was completed" not in out
    assert "HTTP/1.1" not in out
    assert "through GnuTLS" not in card.stderr  # type: ignore[attr-defined]
