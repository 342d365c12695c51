"""The REST API and console over TLS, checked from the outside: `openscws admin serve
--api-tls ca` answered by curl and openssl s_client, scanned by Debian's testssl.sh (no weak
protocol or suite on the API port), and a non-loopback address without TLS refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_wire import free_port, run

pytestmark = pytest.mark.e2e

CLI = (sys.executable, "-m", "openscws")
WEAK_CATEGORIES = (
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",
)
"""testssl's cipher categories that must all be "not offered" (AVERAGE: the CBC suites)."""


def _config(root: Path) -> tuple[Path, int]:
    api_port = free_port()
    cfg = root / "admin.toml"
    cfg.write_text(
        f'[admin]\ndata_dir = "{root / "ras"}"\nport = {free_port()}\napi_port = {api_port}\n'
        f'sms_url = "http://127.0.0.1:{free_port()}/sms"\n\n[ca]\ndir = "{root / "ca"}"\n'
    )
    return cfg, api_port


def _wait_port(port: int, sp: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert sp.proc.poll() is None, f"exited early\n{sp.stdout}\n{sp.stderr}"
            assert time.monotonic() < deadline, f"nothing on {port}\n{sp.stdout}\n{sp.stderr}"
            time.sleep(0.05)


@pytest.fixture
def tls_api(tmp_path: Path, openscws_proc: Callable[..., Any]) -> tuple[int, Path, Any]:
    """`openscws admin serve --api-tls ca`: (API port, issuer CA file, process)."""
    cfg, port = _config(tmp_path)
    sp = openscws_proc("admin", "serve", "--config", cfg, "--api-tls", "ca", name="admin")
    sp.wait_for("admin console CA:")
    _wait_port(port, sp)
    line = sp.wait_for("admin console:")
    assert line.strip() == f"admin console: https://127.0.0.1:{port}/", line
    ca = tmp_path / "ca" / "ca.pem"
    assert ca.is_file()
    return port, ca, sp


@pytest.mark.parametrize("command", ["up", "admin-serve"])
def test_plain_http_on_a_network_address_is_refused(tmp_path: Path, command: str) -> None:
    cfg, _ = _config(tmp_path)
    args = ["up", "--no-demo"] if command == "up" else ["admin", "serve"]
    done = subprocess.run(
        [*CLI, *args, "--config", str(cfg), "--api-host", "0.0.0.0"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")},
    )
    err = done.stderr.decode()
    assert done.returncode == 2, (done.stdout, err)
    assert err.count("\n") == 1, err
    assert err.startswith("openscws: ")
    assert 'admin.api_tls = "ca"' in err
    assert "--insecure-bind" in err
    assert not (tmp_path / "ras" / "ras.db").exists(), "refused before anything was made"
    assert not (tmp_path / "xdg").exists(), "refused before anything was made"


@pytest.mark.peer
def test_curl_and_openssl_see_strict_tls(
    tls_api: tuple[int, Path, Any], need_tool: Callable[[str, str], str]
) -> None:
    curl = need_tool("curl", "curl")
    openssl = need_tool("openssl", "openssl")
    port, ca, _ = tls_api
    for host in ("localhost", "127.0.0.1"):
        done = run(
            [curl, "-sS", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code} %{scheme}",
             f"https://{host}:{port}/api/v1/openapi.json"],
            timeout=30,
        )  # fmt: skip
        # 200 today; 401 once the document needs a login: either way TLS verified the name.
        assert done.returncode == 0, done.stderr
        code, scheme = done.stdout.decode().split()
        assert (code, scheme.lower()) in {("200", "https"), ("401", "https")}, done.stdout
    old = run(
        [curl, "-sS", "--cacert", str(ca), "--tlsv1.1", "--tls-max", "1.1", f"https://localhost:{port}/"],
        timeout=30,
    )  # fmt: skip
    assert old.returncode != 0, old.stdout

    def s_client(*options: str) -> str:
        done = run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca), *options],
            timeout=30,
            stdin=b"",
        )
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

    strong = s_client("-tls1_2")
    assert "Verify return code: 0 (ok)" in strong, strong
    assert "Cipher is ECDHE-ECDSA-AES256-GCM-SHA384" in strong, strong
    for weak in ("AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "AES256-GCM-SHA384"):
        refused = s_client("-tls1_2", "-cipher", weak)
        assert "Cipher is (NONE)" in refused or "handshake failure" in refused, refused


@pytest.mark.peer
def test_testssl_finds_no_weak_protocol_or_suite(
    tls_api: tuple[int, Path, Any], need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    testssl = need_tool("testssl", "testssl.sh")
    port, _, _ = tls_api
    report = tmp_path / "testssl.json"
    done = run(
        [testssl, "--quiet", "--warnings", "off", "--color", "0", "--nodns", "none", "--sneaky",
         "--connect-timeout", "10", "--openssl-timeout", "10", "-p", "-s", "-E",
         "--jsonfile", str(report), f"127.0.0.1:{port}"],
        timeout=240,
    )  # fmt: skip
    text = done.stdout.decode(errors="replace")
    findings = {f["id"]: f["finding"] for f in json.loads(report.read_text() or "[]")}
    for protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings.get(protocol) == "not offered", (protocol, text)
    assert findings.get("TLS1_2") == "offered", text
    assert str(findings.get("TLS1_3", "")).startswith("offered"), text
    for category in WEAK_CATEGORIES:
        assert findings.get(category) == "not offered", (category, text)
    suites = [f for fid, f in findings.items() if fid.startswith("cipher-")]
    assert suites, text
    for suite in suites:
        protocol, _, rest = suite.partition("   ")
        assert protocol in ("TLS 1.2", "TLS 1.3"), suite
        assert "AESGCM" in rest or "ChaCha20" in rest, suite
        assert "ECDH" in rest, suite
