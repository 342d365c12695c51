"""Smoke test of benchmarks/bench_conns.py (requests/s at 1, 4 and 64 connections through
the gateway and without BIP): one second a point, the docs section written to a scratch page.
It checks that the harness works and that no request failed, not how fast."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.peer


def test_bench_conns_quick_run(tmp_path: Path, need_tool: Callable[[str, str], str]) -> None:
    need_tool("wrk", "wrk")
    docs = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_conns.py"),
            "--quick",
            "--docs",
            str(docs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = docs.read_text()
    assert "| gateway |" in text
    assert "| direct |" in text
    assert "socket errors and non-2xx answers: 0." in text
