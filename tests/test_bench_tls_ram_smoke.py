"""Smoke test of benchmarks/bench_tls_ram.py --quick: the harness runs a 64 KiB HTTPS download
through the card's handler with and without a record limit and reports the C heap per
channel (not how much: no figure is asserted but the record sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tls_ram_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "ram.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_tls_ram.py"),
            "--quick",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    rows = {(r["tls"], r["record_limit"]): r for r in result["rows"]}
    assert set(rows) == {("tls13", None), ("tls13", 1024), ("none", None)}
    for key in (("tls13", None), ("tls13", 1024)):
        assert rows[key]["malloc_held_peak"] > 0
        assert rows[key]["client_largest_record"] > 0
    assert rows[("tls13", 1024)]["largest_response_record"] <= 1024 + 17
    assert rows[("tls13", None)]["largest_response_record"] > 1024
    assert rows[("none", None)]["malloc_held_peak"] is None
    assert "| static |" in done.stdout
