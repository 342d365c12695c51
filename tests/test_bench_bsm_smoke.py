"""Smoke test of the BSM benchmark harness (benchmarks/bench_bsm.py): a few Service Requests
with their LTKMs against `openscws bsm` on SQLite. It checks that the harness works end to
end, not how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_bsm_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "bsm.json"
    docs = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_bsm.py"),
            *("--quick", "--requests", "6", "--clients", "2"),
            *("--json", str(out), "--docs", str(docs)),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cells = json.loads(out.read_text())["cells"]
    assert [c["db"] for c in cells] == ["sqlite"]
    assert cells[0]["requests"] == 6
    assert cells[0]["requests_per_s"] > 0
    assert cells[0]["server_cpu_ms_per_request"] > 0
    assert not docs.exists()  # a quick run never writes the docs
