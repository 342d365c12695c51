"""One process runs a card image at a time (openscws.store.running)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from openscws.store.running import RUNNING_LOCK, ImageInUse, RunningLock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with RunningLock.take(tmp_path) as first:
        assert first.held
        assert (tmp_path / RUNNING_LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(ImageInUse, match=f"process {os.getpid()}") as caught:
            RunningLock.take(tmp_path)
        assert caught.value.pid == os.getpid()
    assert not first.held
    RunningLock.take(tmp_path).release()  # free again once released


def test_the_lock_goes_with_its_process(tmp_path: Path) -> None:
    """A process that dies holding the lock leaves none behind (the kernel drops flocks)."""
    code = (
        "import sys; from openscws.store.running import RunningLock; "
        f"RunningLock.take({str(tmp_path)!r}); print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(ImageInUse, match=f"process {holder.pid}"):
                RunningLock.take(tmp_path)
        finally:
            holder.kill()
    RunningLock.take(tmp_path).release()
