"""`openscws content put` killed with SIGKILL at random instants, through the real CLI: the
resource is always wholly the old version or wholly the new one, never torn."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SIZE = 2 * 1024 * 1024
RUNS = 12
MAX_RUNS = 40
SEED = 20261122
CLI = (sys.executable, "-m", "openscws")


def cli(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_kill_content_put(tmp_path: Path) -> None:
    data = tmp_path / "card"
    init = cli("init", "--data-dir", data, "--no-demo")
    assert init.returncode == 0, init.stderr
    sources = {}
    for letter in "AB":
        sources[letter] = tmp_path / f"big_{letter}.bin"
        sources[letter].write_bytes(letter.encode() * SIZE)

    # One uninterrupted put (elsewhere) first, to time a whole run of the CLI here.
    t0 = time.monotonic()
    calib = cli("content", "put", sources["B"], "/calibrate", "--data-dir", data)
    duration = time.monotonic() - t0
    assert calib.returncode == 0, calib.stderr
    assert cli("content", "rm", "/calibrate", "--data-dir", data).returncode == 0

    content = data / "content"
    rng = random.Random(SEED)
    committed: str | None = None  # the letter of the last put known to have finished
    written: set[str] = set()  # letters of every put started (killed ones may have landed)
    outcomes: list[str] = []
    i = 0
    # At least RUNS kills, and on until two have provably hit a write (at most MAX_RUNS).
    while i < RUNS or (outcomes.count("killed mid-write") < 2 and i < MAX_RUNS):
        letter = "AB"[i % 2]
        written.add(letter)
        put = subprocess.Popen(
            [*CLI, "content", "put", str(sources[letter]), "/big", "--data-dir", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if i % 3 == 2:
                # Most of a run is Python starting up: a kill at any instant of it.
                time.sleep(rng.uniform(0.3, 1.1) * duration)
            else:
                # Aim at the write itself: wait for its temp file, then kill soon after.
                deadline = time.monotonic() + 10
                while put.poll() is None and time.monotonic() < deadline:
                    if any(n.startswith(".tmp-") for n in os.listdir(content)):
                        time.sleep(rng.choice((0.0, rng.uniform(0.0, 0.004))))
                        break
            put.send_signal(signal.SIGKILL)
        finally:
            rc = put.wait(30)
        if rc == 0:
            committed = letter
            outcomes.append("done")
        elif any(n.startswith(".tmp-") for n in os.listdir(content)):
            outcomes.append("killed mid-write")  # its temp file is left (until next open)
        else:
            outcomes.append("killed")

        out = tmp_path / "got.bin"
        out.unlink(missing_ok=True)
        got = cli("content", "get", "/big", "--data-dir", data, "-o", out)
        if got.returncode != 0:
            # Absent is only fine while no put has ever finished.
            assert committed is None, (i, got.stderr)
            assert not out.exists()
        else:
            body = out.read_bytes()
            assert len(body) == SIZE, (i, len(body))
            first = body[:1].decode()
            assert first in written, (i, first)
            assert body.count(body[:1]) == SIZE, f"run {i}: torn resource"
            if rc == 0:
                assert first == letter, (i, first)  # a finished put is what is there

        ls = cli("content", "ls", "--data-dir", data)
        assert ls.returncode == 0, ls.stderr
        lines = ls.stdout.decode().splitlines()
        listed = [] if lines == ["none"] else [line.split()[-1] for line in lines]
        assert listed == (["/big"] if got.returncode == 0 else []), ls.stdout
        i += 1

    # The loop really interrupted writes (else the timing above needs retuning).
    print(f"seed {SEED}, put {duration:.2f} s: {outcomes}", file=sys.stderr)
    assert any(o.startswith("killed") for o in outcomes), outcomes
    assert outcomes.count("killed mid-write") >= 2, outcomes
