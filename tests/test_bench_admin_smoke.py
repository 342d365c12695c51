"""Smoke test of the admin-session benchmark harness (benchmarks/bench_admin.py): a handful of
cards, SQLite, one server process, one run. It checks that the harness works end to end
(cards, SMS router, server, campaign, figures), not how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARDS = 5


def test_bench_admin_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "admin.json"
    docs = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_admin.py"),
            *("--quick", "--cards", str(CARDS), "--repeat", "1"),
            *("--db", "sqlite", "--servers", "1"),
            *("--json", str(out), "--docs", str(docs)),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    cells = {(c["db"], c["servers"]): c for c in doc["cells"]}
    assert set(cells) == {("sqlite", 1)}
    for cell in cells.values():
        assert cell["done"] == CARDS
        assert cell["sessions_per_s"] > 0
        assert cell["latency_ms"]["p50"] > 0
        assert cell["loadgen"]["agent_sessions_ok"] == CARDS
    sqlite = cells["sqlite", 1]
    assert sqlite["per_server"]["server0"]["sessions_done"] == CARDS
    assert sqlite["per_server"]["server0"]["service_calls"]["open_session"]["calls"] == CARDS
    assert not docs.exists()  # a partial, quick run never writes the docs
