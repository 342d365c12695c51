"""Smoke test of benchmarks/bench_pcsc.py: a few APDUs and pages through the real pcscd with
the vpcd driver, to check the harness works end to end (not how fast)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.peer


def test_bench_pcsc_quick_run(
    need_tool: Callable[[str, str], str],
    need_file: Callable[[str, str], Path],
    peer_unavailable: Callable[[str], None],
    tmp_path: Path,
) -> None:
    need_tool("pcscd", "pcscd")
    need_file("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd")
    if Path("/run/pcscd/pcscd.comm").exists():
        peer_unavailable("a pcscd is already running (/run/pcscd/pcscd.comm)")
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", 35963))
        except OSError:
            peer_unavailable("port 35963 is in use")
    out = tmp_path / "pcsc.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_pcsc.py"),
            *("--apdus", "5", "--pages", "2", "--no-docs", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["in-process", "pcscd", "pcscd, no quick ACK"]
    for row in rows.values():
        assert row["apdu"]["median_ms"] > 0
        assert row["page"]["median_ms"] > 0
    assert "| pcscd |" in done.stdout
