"""Remote administration under faults, with every party its own process: `openscws gateway`
(the terminal), `openscws card` (the UICC, over vpcd) and `openscws admin serve` (the RAS).
One of them is killed with SIGKILL while a campaign's session runs; after a restart the job
ends done, applied exactly once, and the card image never holds a mix of old and new."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_wire import free_port

from openscws.aio.stack import admin_service
from openscws.config import AdminSettings
from openscws.ras.db import RasDatabase
from openscws.ras.service import RasService
from openscws.store.cardimage import CardImage
from openscws.store.journal import _committed_ids

pytestmark = pytest.mark.e2e

N_RESOURCES = 24
SIZE = 48 * 1024
"""24 x 48 KB: the session takes ~1 s through BIP and PSK-TLS, time to kill a process in it."""
KILL_DELAY = 0.25
"""Seconds into the session before the kill, so that some PUTs are staged on the card."""
PATHS = [f"/faults/r{i}.bin" for i in range(N_RESOURCES)]
CLI = (sys.executable, "-m", "openscws")
SCENARIO_TIMEOUT = 25.0


def _body(gen: str, i: int) -> bytes:
    """Resource i of generation `gen` ("old" or "new"): distinct, recognisable bytes."""
    head = f"{gen}:{i}:".encode()
    return (head * (SIZE // len(head) + 1))[:SIZE]


def _generation(i: int, body: bytes | None) -> str:
    if body == _body("old", i):
        return "old"
    if body == _body("new", i):
        return "new"
    return "missing" if body is None else "torn"


@dataclass
class Rig:
    """Three `openscws` processes with their own config files, sharing one tmp dir."""

    root: Path
    spawn: Callable[..., Any]
    vpcd_port: int = field(default_factory=free_port)
    sms_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    procs: dict[str, Any] = field(default_factory=dict)
    service: RasService | None = None
    db: RasDatabase | None = None

    @property
    def card_dir(self) -> Path:
        return self.root / "card"

    @property
    def admin_dir(self) -> Path:
        return self.root / "ras"

    def config(self, name: str) -> Path:
        return self.root / f"{name}.toml"

    def write_configs(self) -> None:
        gateway = f"""
[gateway]
vpcd_port = {self.vpcd_port}
sms_port = {self.sms_port}
poll_interval = 0.2

[gateway.port_map]
3516 = {self.http_port}
4116 = {self.https_port}
"""
        admin = f"""
[admin]
data_dir = "{self.admin_dir}"
port = {self.admin_port}
api_port = {self.api_port}
sms_url = "http://127.0.0.1:{self.sms_port}/sms"
trigger_interval = 0.1
retry_base = 0.3
retry_max = 2.0
trigger_ttl = 3.0
session_ttl = 5.0
"""
        card = f"""
[card]
data_dir = "{self.card_dir}"

[gateway]
vpcd_port = {self.vpcd_port}
"""
        self.config("gateway").write_text(gateway)
        self.config("admin").write_text(admin)
        self.config("card").write_text(card)

    def cli(self, *args: str | Path, timeout: float = 30) -> str:
        done = subprocess.run(
            [*CLI, *map(str, args)], capture_output=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout.decode(errors="replace")

    def admin_cli(self, *args: str | Path) -> str:
        return self.cli("admin", *args, "--config", self.config("admin"))

    # -- processes -------------------------------------------------------------------------

    def start_gateway(self) -> None:
        sp = self.spawn("gateway", "--config", self.config("gateway"), name="gateway")
        self.procs["gateway"] = sp
        sp.wait_for("waiting for a card")

    def start_card(self) -> None:
        sp = self.spawn(
            "card", "--config", self.config("card"), "--data-dir", self.card_dir, name="card"
        )
        self.procs["card"] = sp

    def start_admin(self) -> None:
        sp = self.spawn(
            "admin", "serve", "--no-api", "--config", self.config("admin"), name="admin"
        )
        self.procs["admin"] = sp
        _wait_port(self.admin_port, 20, sp)

    def wait_gateway_ready(self) -> None:
        self.procs["gateway"].wait_ready()

    def kill(self, name: str) -> None:
        sp = self.procs[name]
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(10)
        sp.stop()  # closes its log files

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "logs").glob("*.*")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        self.write_configs()
        self.cli("init", "--data-dir", self.card_dir, "--no-demo", "--config", self.config("card"))
        # Generation "old", straight into the card image (one CLI run for the whole folder).
        old = self.root / "old"
        old.mkdir()
        for i, path in enumerate(PATHS):
            (old / path.rsplit("/", 1)[1]).write_bytes(_body("old", i))
        self.cli("content", "put", old, "/faults/", "--data-dir", self.card_dir)
        self.admin_cli("init")
        self.admin_cli("enrol", self.card_dir, "--port", str(self.admin_port))
        self.db, self.service = admin_service(
            AdminSettings(data_dir=self.admin_dir, trigger_ttl=3.0, session_ttl=5.0)
        )
        self.start_gateway()
        self.start_card()
        self.wait_gateway_ready()
        self.start_admin()
        assert self.card_generations_http() == ["old"] * N_RESOURCES

    def campaign(self, gen: str) -> int:
        """Puts generation `gen` in the repository and creates a campaign for it. The first
        resource goes through `openscws admin content put`; the others through the service
        on the same database (each CLI run costs ~1 s of start-up)."""
        src = self.root / f"{gen}0.bin"
        src.write_bytes(_body(gen, 0))
        self.admin_cli("content", "put", "--type", "application/octet-stream", src, PATHS[0])
        for i, path in enumerate(PATHS[1:], 1):
            self.svc.put_content(path, _body(gen, i), "application/octet-stream")
        out = self.admin_cli("campaign", "create", gen)
        found = [c.id for c in self.svc.list_campaigns() if c.name == gen]
        assert len(found) == 1, out
        return found[0]

    @property
    def svc(self) -> RasService:
        assert self.service is not None
        return self.service

    # -- state -----------------------------------------------------------------------------

    def job_state(self, campaign: int) -> tuple[str, int]:
        (row,) = self.svc.campaign_cards(campaign)
        return row.state, row.attempts

    def wait_state(self, campaign: int, states: set[str], timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            state, _ = self.job_state(campaign)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in states:
                return state
            assert state not in ("done", "failed"), f"job ended {state} too soon: {seen}"
            assert time.monotonic() < deadline, f"job never {states}: {seen}\n{self.logs()}"
            time.sleep(0.01)

    def wait_done(self, campaign: int, timeout: float = SCENARIO_TIMEOUT) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while True:
            progress = self.svc.campaign_progress(campaign)
            assert progress.get("failed", 0) == 0, (progress, self.svc.campaign_cards(campaign))
            if progress.get("done", 0) == sum(progress.values()):
                return progress
            assert time.monotonic() < deadline, (
                f"campaign stuck: {progress} {self.svc.campaign_cards(campaign)}\n{self.logs()}"
            )
            time.sleep(0.05)

    def card_generations_http(self) -> list[str]:
        base = f"http://127.0.0.1:{self.http_port}"
        return [_generation(i, _http_get(base + p)) for i, p in enumerate(PATHS)]

    def card_image_state(self) -> tuple[list[str], list[str]]:
        """Generations of the resources and the committed transaction ids, read from the
        image on disk (no card process running)."""
        image = CardImage.open(self.card_dir)
        try:
            gens = []
            for i, path in enumerate(PATHS):
                r = image.get(path)
                gens.append(_generation(i, None if r is None else r.body))
            committed = list(_committed_ids(image))
        finally:
            image.close()
        return gens, committed


def _http_get(url: str) -> bytes | None:
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return bytes(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        except (ConnectionError, http.client.HTTPException):
            if attempt == 2:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _wait_port(port: int, timeout: float, sp: Any) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert sp.proc.poll() is None, f"exited early\n{sp.stdout}\n{sp.stderr}"
            assert time.monotonic() < deadline, f"nothing on {port}\n{sp.stdout}\n{sp.stderr}"
            time.sleep(0.05)


def _uniform(gens: list[str]) -> str:
    assert len(set(gens)) == 1, f"mixed card image: {gens}"
    assert gens[0] in ("old", "new"), f"card image: {gens}"
    return gens[0]


@pytest.fixture
def rig(tmp_path: Path, openscws_proc: Callable[..., Any]) -> Iterator[Rig]:
    r = Rig(tmp_path, openscws_proc)
    try:
        r.setup()
        yield r
    finally:
        if r.db is not None:
            r.db.dispose()


def _kill_mid_session(rig: Rig, campaign: int, victim: str) -> str:
    """Waits for the job's session, lets it run KILL_DELAY s, SIGKILLs `victim`; returns the
    generation the card image holds right after (all-old or all-new, never mixed)."""
    rig.wait_state(campaign, {"in_session"})
    time.sleep(KILL_DELAY)
    assert rig.job_state(campaign)[0] == "in_session", "the session ended before the kill"
    rig.kill(victim)
    return _uniform(rig.card_image_state()[0])


def _finish(rig: Rig, campaign: int) -> None:
    """The job ends done after a retry, no job failed, the campaign is {done: 1}; the card
    serves all-new; with the card stopped, its image is all-new and the job id is in its
    committed list exactly once."""
    progress = rig.wait_done(campaign)
    assert progress["done"] == 1, progress
    assert sum(progress.values()) == 1, progress
    assert progress["failed"] == 0
    (row,) = rig.svc.campaign_cards(campaign)
    assert row.state == "done"
    assert row.attempts > 1, row
    assert all(j.state == "done" for j in rig.svc.card_jobs(row.iccid)), rig.svc.card_jobs(
        row.iccid
    )
    assert rig.card_generations_http() == ["new"] * N_RESOURCES
    rig.procs["card"].stop()
    gens, committed = rig.card_image_state()
    assert gens == ["new"] * N_RESOURCES
    assert committed.count(row.job_id) == 1, committed


def test_kill_card_mid_session(rig: Rig) -> None:
    campaign = rig.campaign("new")
    _kill_mid_session(rig, campaign, "card")
    # The gateway sees its card go and exits: both come back, on the same image and ports.
    assert rig.procs["gateway"].proc.wait(15) != 0
    assert "card link lost" in rig.procs["gateway"].stderr
    rig.start_gateway()
    rig.start_card()
    rig.wait_gateway_ready()
    _finish(rig, campaign)


def test_kill_admin_server_mid_session(rig: Rig) -> None:
    campaign = rig.campaign("new")
    _kill_mid_session(rig, campaign, "admin")
    # The dead server's lease stays in the database until it runs out (session_ttl) or
    # the server starts again (it releases its own leases at once).
    state, _ = rig.job_state(campaign)
    assert state == "in_session"
    rig.start_admin()
    _finish(rig, campaign)


@pytest.mark.parametrize(
    "restart_card",
    [
        pytest.param(True, id="card-restarted"),
        pytest.param(False, id="card-reconnects"),
    ],
)
def test_kill_gateway_mid_session(rig: Rig, restart_card: bool) -> None:
    campaign = rig.campaign("new")
    _kill_mid_session(rig, campaign, "gateway")
    # The card process stays up, and reconnects to the reader once it is back.
    time.sleep(0.5)
    card = rig.procs["card"]
    assert card.proc.poll() is None, card.stderr
    if restart_card:
        card.stop()
    rig.start_gateway()
    if restart_card:
        rig.start_card()
    rig.wait_gateway_ready()
    _finish(rig, campaign)
