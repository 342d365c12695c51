"""benchmarks/bench_dm.py --quick as a smoke test: the harness (devices, jobs, the server
process, PSK-TLS sessions, the jobs' results) works end to end; never touches the docs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_dm_quick(tmp_path: Path) -> None:
    out = tmp_path / "dm.json"
    docs = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dm.py"), "--quick", "--devices", "6",
         "--json", str(out), "--docs", str(docs)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cells = json.loads(out.read_text())["cells"]
    assert [c["db"] for c in cells] == ["sqlite"]
    assert cells[0]["sessions"] == 6
    assert cells[0]["jobs_done"] == 6
    assert cells[0]["sessions_per_s"] > 0
    assert "sessions/s" in done.stdout
    assert not docs.exists()
