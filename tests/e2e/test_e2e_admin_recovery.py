"""Fast recovery: `openscws up` killed with SIGKILL in the middle of a campaign's session,
then started again on the same data. The restarted admin server knows its own name in job
leases (kept in its data directory) and releases them at once, so the campaign finishes
within seconds, not after the 120 s session lease runs out."""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_wire import free_port

from openscws.aio.stack import admin_service
from openscws.config import AdminSettings
from openscws.ras.db import RasDatabase
from openscws.ras.service import RasService

pytestmark = pytest.mark.e2e

N_RESOURCES = 48
SIZE = 48 * 1024
"""48 x 48 KB: the session takes long enough to stop the process in it."""
PATHS = [f"/recovery/r{i}.bin" for i in range(N_RESOURCES)]
RECOVERY_BOUND = 10.0
"""Seconds the campaign may take to finish once the restarted server is up."""


def _body(i: int) -> bytes:
    head = f"new:{i}:".encode()
    return (head * (SIZE // len(head) + 1))[:SIZE]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RasDatabase, RasService]]:
    db, ras = admin_service(AdminSettings(data_dir=tmp_path / "ras"))
    try:
        yield db, ras
    finally:
        db.dispose()


def test_kill_9_of_up_mid_session_then_restart_finishes_fast(
    tmp_path: Path,
    openscws_proc: Callable[..., Any],
    service: tuple[RasDatabase, RasService],
) -> None:
    _, ras = service
    http_port = free_port()
    config = tmp_path / "up.toml"
    # Default session_ttl (120 s), trigger_ttl and retry delays: only the release helps.
    config.write_text(
        f"""
[card]
data_dir = "{tmp_path / "card"}"

[ca]
dir = "{tmp_path / "ca"}"

[admin]
data_dir = "{tmp_path / "ras"}"
port = {free_port()}
api_port = {free_port()}
trigger_interval = 0.1

[gateway]
sms_port = {free_port()}
poll_interval = 0.2

[gateway.port_map]
3516 = {http_port}
4116 = {free_port()}
"""
    )

    def up() -> Any:
        sp = openscws_proc("up", "--no-demo", "--config", config, name="up")
        sp.wait_for("admin console:", timeout=60)
        return sp

    first = up()
    for i, path in enumerate(PATHS):
        ras.put_content(path, _body(i), "application/octet-stream")
    campaign = ras.create_campaign("recovery").id

    def job() -> Any:
        (row,) = ras.campaign_cards(campaign)
        return row

    deadline = time.monotonic() + 30
    while job().state != "in_session":
        assert job().state not in ("done", "failed"), job()
        assert time.monotonic() < deadline, f"no session: {job()}\n{first.stderr}"
        time.sleep(0.005)
    # Frozen at once, so the session cannot end between this check and the kill.
    first.proc.send_signal(signal.SIGSTOP)
    assert job().state == "in_session", "the session ended before the kill"
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop()
    held = job()
    assert held.state == "in_session", held  # the dead process's lease is still there

    second = up()
    started = time.monotonic()
    while job().state != "done":
        assert job().state != "failed", job()
        assert time.monotonic() - started < RECOVERY_BOUND, (
            f"not done {RECOVERY_BOUND} s after the restart: {job()}\n{second.stderr[-4000:]}"
        )
        time.sleep(0.05)
    done = job()
    assert done.attempts > 1
    assert "released 1 job(s) leased by this server" in second.stderr

    for i in (0, N_RESOURCES - 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{PATHS[i]}", timeout=10) as r:
            assert r.read() == _body(i)
