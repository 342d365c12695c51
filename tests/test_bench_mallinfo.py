"""benchmarks/_mallinfo.py: what a call into the card leaves allocated, as
bench_tls_ram.py counts it. A call that keeps nothing must count nothing however often it
is made (a 32 KiB upload is 139 calls), and one that keeps a block must count it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import _mallinfo

def receive(data, now):
    return None

kept = []

def keep(data, now):
    kept.append(bytearray(data))

cost = _mallinfo.call_cost()
piece = bytes(237)
nothing = 0
for _ in range(139):
    nothing += _mallinfo.measured_call(receive, piece, 1.0, cost=cost)[1]
something = 0
for _ in range(139):
    something += _mallinfo.measured_call(keep, piece, 1.0, cost=cost)[1]
print(json.dumps({"cost": cost, "nothing": nothing, "something": something}))
"""


def _run() -> dict[str, int]:
    env = {**os.environ, "PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(BENCH)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    result: dict[str, int] = json.loads(out)
    return result


def test_a_call_that_keeps_nothing_counts_nothing_however_often() -> None:
    counts = _run()
    assert counts["cost"] > 0  # the first reading's own int object
    assert abs(counts["nothing"]) < 139 * 8, counts
    # each kept bytearray: 237 bytes of data plus the object and malloc's headers
    assert 139 * 237 <= counts["something"] < 139 * 400, counts
