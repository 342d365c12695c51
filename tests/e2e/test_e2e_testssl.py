"""testssl against the card's HTTPS port (4116) and the admin server's PSK-TLS port, per
profile, with a bounded run: protocols (-p), cipher categories (-s) and every suite per
protocol (-E), the two ports scanned at the same time.

* "modern": no finding rated LOW or worse, on either port.
* "compat": exactly the suites docs/tls.md lists (`openscws.tls.suites`, from handshakes)
  within what testssl tries, and no finding but the documented ones (`COMPAT_FINDINGS`:
  TLS 1.0/1.1, the SCWS 3DES PSK suite, the CBC suites).

testssl's blind spots, which the per-suite s_client test (test_e2e_tls_suites.py) and the
gnutls-cli tests cover instead: it never tries a SHA-256/SHA-384, GCM, CCM or ChaCha20 suite
below TLS 1.2, and its protocol probes offer no PSK suite, so on the PSK-only admin port it
sees TLS 1.2 only."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_wire import Card, start_card

from openscws.tls.suites import negotiable

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

Tool = Callable[[str, str], str]
WEAK = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_PROTO = {"TLS 1": "TLSv1", "TLS 1.1": "TLSv1.1", "TLS 1.2": "TLSv1.2", "TLS 1.3": "TLSv1.3"}
_TLS12_ONLY = ("SHA256", "SHA384", "GCM", "CCM", "CHACHA20")

COMPAT_FINDINGS = {
    "card": {
        "TLS1": "LOW",  # offered (deprecated): SCWS §11.1.2's TLS 1.0
        "TLS1_1": "LOW",
        "cipherlist_3DES_IDEA": "MEDIUM",  # TLS_PSK_WITH_3DES_EDE_CBC_SHA, SCWS §11.1.1.1
        "cipherlist_AVERAGE": "LOW",  # CBC suites: TLS 1.0/1.1 have no other
    },
    "admin": {
        "cipherlist_3DES_IDEA": "MEDIUM",
        "cipherlist_AVERAGE": "LOW",  # TLS_PSK_WITH_AES_128_CBC_SHA and kin
    },
}
"""The findings rated LOW or worse that "compat" shows, and why (docs/tls-audit.md)."""


@pytest.fixture(scope="module", params=["modern", "compat"])
def card(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Card]:
    profile = request.param
    root = tmp_path_factory.mktemp(f"testssl-{profile}")
    yield from start_card(
        root,
        root / "ca",
        f'[card]\ntls_profile = "{profile}"\n',
        psk=True,
        admin_profile=profile,
    )


def run_testssl(tool: str, port: int, out: Path) -> list[dict[str, str]]:
    cmd = [
        tool, "--quiet", "--warnings", "off", "--color", "0", "--nodns", "none", "--sneaky",
        "--connect-timeout", "10", "--openssl-timeout", "10", "-p", "-s", "-E",
        "--jsonfile", str(out), f"127.0.0.1:{port}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.exists(), done.stdout + done.stderr
    findings: list[dict[str, str]] = json.loads(out.read_text() or "[]")
    assert findings, done.stdout
    return findings


def suites(findings: list[dict[str, str]]) -> set[tuple[str, str]]:
    out = set()
    for f in findings:
        if f["id"].startswith("cipher-"):
            m = re.match(r"^(TLS 1(?:\.\d)?|SSLv\d)\s+x[0-9a-f]+\s+(\S+)", f["finding"])
            assert m, f
            out.add((_PROTO.get(m.group(1), m.group(1)), m.group(2)))
    return out


def weak(findings: list[dict[str, str]]) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in findings if f["severity"] in WEAK}


@pytest.mark.timeout(300)  # testssl -E on both ports: about 1-2 minutes per profile
def test_testssl_per_profile(card: Card, need_tool: Tool, tmp_path: Path) -> None:
    tool = need_tool("testssl", "testssl.sh")
    assert card.admin_port is not None
    text = card.stdout.read_text()
    profile = "compat" if "through GnuTLS" in card.log() + text else "modern"
    ports = {"card": card.tls_port, "admin": card.admin_port}
    with ThreadPoolExecutor(2) as pool:
        scans = dict(
            zip(
                ports,
                pool.map(
                    lambda kv: run_testssl(tool, kv[1], tmp_path / f"{kv[0]}.json"), ports.items()
                ),
                strict=True,
            )
        )
    for endpoint, findings in scans.items():
        table = negotiable(endpoint, profile)  # type: ignore[arg-type]
        documented = {(v, n) for v, row in table.versions.items() for n, _, _ in row}
        seen = suites(findings)
        assert seen <= documented, (endpoint, sorted(seen - documented))
        # what testssl does not try (see the module docstring)
        unseen = documented - seen
        for version, name in unseen:
            below12 = version in ("TLSv1", "TLSv1.1") and any(t in name for t in _TLS12_ONLY)
            psk_probe = endpoint == "admin" and version in ("TLSv1", "TLSv1.1")
            assert below12 or psk_probe, (endpoint, version, name)
        found = weak(findings)
        if profile == "modern":
            assert not found, (endpoint, found)
        else:
            assert found == COMPAT_FINDINGS[endpoint], (endpoint, found)
