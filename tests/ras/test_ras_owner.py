"""The admin server's lease owner name: kept across restarts in its data directory, one slot
per running process, freed when the process dies (even by SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openscws.ras.db import RasError
from openscws.ras.owner import claim_owner


def test_a_restart_gets_the_same_name(tmp_path: Path) -> None:
    first = claim_owner(tmp_path / "ras")
    name = first.name
    assert first.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ras").stat().st_mode & 0o777 == 0o700
    first.close()
    again = claim_owner(tmp_path / "ras")
    assert again.name == name
    again.close()


def test_running_servers_get_a_slot_each(tmp_path: Path) -> None:
    a = claim_owner(tmp_path)
    b = claim_owner(tmp_path)
    assert a.name != b.name
    assert a.path != b.path
    name_a = a.name
    a.close()
    c = claim_owner(tmp_path)  # the free slot, with the dead holder's name
    assert c.name == name_a
    b.close()
    c.close()


def test_all_slots_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openscws.ras.owner.MAX_SLOTS", 2)
    held = [claim_owner(tmp_path), claim_owner(tmp_path)]
    with pytest.raises(RasError, match="already run"):
        claim_owner(tmp_path)
    for slot in held:
        slot.close()


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from openscws.ras.owner import claim_owner
        slot = claim_owner(Path({str(tmp_path)!r}))
        print(slot.name, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().decode().strip()
        assert name
        live = claim_owner(tmp_path)
        assert live.name != name  # held by the running process
        live.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        after = claim_owner(tmp_path)
        assert after.name == name
        after.close()
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
