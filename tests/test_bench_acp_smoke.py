"""Smoke test of benchmarks/bench_acp.py: a few connections through three gateways (access
control off, on without rules, on with 50 rules), to check the harness works end to end (not
how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_acp_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "acp.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_acp.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert list(result["rows"]) == ["acp off", "no rules", "50 rules"]
    for row in result["rows"].values():
        assert row["best_per_s"] > 0
        assert row["per_cpu_s"] > 0
    # Every connection to the gateway with rules was admitted by the last rule, and logged.
    assert result["decisions_logged"] >= 20
    assert "| 50 rules |" in done.stdout
