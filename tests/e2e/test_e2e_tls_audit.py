"""sslscan against the card's HTTPS port (4116) of a live `openscws up`, for both TLS profiles.

What the card offers is checked from the outside, by a scanner that enumerates protocols and
cipher suites itself: never SSLv2/SSLv3, never an RC4, NULL, export, anonymous, single-DES,
3DES or MD5 suite; "modern" offers exactly TLS 1.2 and 1.3, "compat" adds TLS 1.0 and 1.1.

One deliberate exception: with the "compat" profile and PSK-TLS enabled, the card also serves
TLS_PSK_WITH_3DES_EDE_CBC_SHA (SCWS §11.1.1.1) through GnuTLS to a client that offers only that
suite (`openscws.tls.dispatch`). That suite, and no other weak one, is tolerated there (TLS <= 1.2
only); modern and compat without PSK must show no 3DES at all. sslscan's own client cannot
offer the AES PSK suites, so those are checked by scripts/tls-audit (testssl's raw
ClientHellos) and the handshake tests. The full audit: scripts/tls-audit -> docs/tls-audit.md."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_wire import run

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

WEAK = ("RC4", "NULL", "EXP", "anon", "ADH", "AECDH", "DES-CBC", "3DES", "MD5")
"""Substrings of suite names (OpenSSL's and IANA's spellings) that must never be accepted."""
PSK_KEY = "00112233445566778899aabbccddeeff"
SPEC_3DES = "TLS_PSK_WITH_3DES_EDE_CBC_SHA"
"""SCWS §11.1.1.1's suite: served (through GnuTLS) only by compat with PSK-TLS enabled."""

_PROTOCOL = re.compile(r"^(SSLv2|SSLv3|TLSv1\.[0-3])\s+(\S.*?)\s*$")
_CIPHER = re.compile(r"^(?:Preferred|Accepted)\s+(\S+)\s+\d+\s+bits\s+(\S+)")


@dataclass(frozen=True)
class Scan:
    protocols: dict[str, str]  # "TLSv1.2" -> "enabled" / "disabled" / sslscan's words
    accepted: list[tuple[str, str]]  # (protocol, suite)
    text: str

    def enabled(self) -> set[str]:
        return {p for p, state in self.protocols.items() if state == "enabled"}


def parse_sslscan(text: str) -> Scan:
    protocols: dict[str, str] = {}
    accepted: list[tuple[str, str]] = []
    section = ""
    for line in text.splitlines():
        if line.startswith("  ") and line.strip().endswith(":"):
            section = line.strip()
            continue
        if section == "SSL/TLS Protocols:" and (m := _PROTOCOL.match(line)):
            protocols[m.group(1)] = m.group(2)
        elif section == "Supported Server Cipher(s):" and (m := _CIPHER.match(line)):
            accepted.append((m.group(1), m.group(2)))
    return Scan(protocols, accepted, text)


def sslscan(tool: str, port: int) -> Scan:
    proc = run(
        [
            tool,
            "--no-colour",
            "--no-fallback",
            "--no-renegotiation",
            "--no-compression",
            "--no-heartbleed",
            "--no-groups",
            f"127.0.0.1:{port}",
        ],
        timeout=60,
    )
    text = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, f"sslscan failed:\n{text}\n{proc.stderr.decode()}"
    return parse_sslscan(text)


def psk_image(root: Path) -> Path:
    """A fresh card image with PSK-TLS enabled (identity card1), made with the CLI."""
    data = root / "card-psk"
    for args in (
        ["init", "--no-demo"],
        ["card", "psk", "add", "card1", "--key", PSK_KEY],
        ["card", "psk", "enable"],
    ):
        argv = [sys.executable, "-m", "openscws", *args, "-q", "--data-dir", str(data)]
        proc = run(argv, timeout=60)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return data


@pytest.mark.parametrize(
    ("profile", "psk"),
    [("modern", False), ("compat", False), ("compat", True)],
    ids=["modern", "compat", "compat-psk"],
)
def test_sslscan_offers_no_weak_protocol_or_suite(
    profile: str,
    psk: bool,
    start_up: Callable[..., object],
    need_tool: Callable[[str, str], str],
    tmp_path: Path,
) -> None:
    tool = need_tool("sslscan", "sslscan")
    data_dir = psk_image(tmp_path) if psk else None
    up = start_up(config=f'[card]\ntls_profile = "{profile}"\n', data_dir=data_dir)
    scan = sslscan(tool, up.tls_port)  # type: ignore[attr-defined]

    for old in ("SSLv2", "SSLv3"):
        assert old in scan.protocols, f"sslscan did not report {old}:\n{scan.text}"
        assert scan.protocols[old] != "enabled", scan.text
    expected = {"TLSv1.2", "TLSv1.3"}
    if profile == "compat":
        expected |= {"TLSv1.0", "TLSv1.1"}
    assert scan.enabled() == expected, scan.text

    assert scan.accepted, f"sslscan found no accepted suite:\n{scan.text}"
    assert {p for p, _ in scan.accepted} == expected, scan.text
    spec = [(p, s) for p, s in scan.accepted if s == SPEC_3DES]
    if profile == "compat" and psk:
        assert all(p != "TLSv1.3" for p, _ in spec), scan.text
        accepted = [(p, s) for p, s in scan.accepted if s != SPEC_3DES]
    else:
        assert not spec, f"{SPEC_3DES} without compat + PSK:\n{scan.text}"
        accepted = scan.accepted
    weak = [(p, s) for p, s in accepted if any(w.lower() in s.lower() for w in WEAK)]
    assert not weak, f"weak suites accepted: {weak}\n{scan.text}"
