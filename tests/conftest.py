"""Shared fixtures: third-party peer programs, and `openscws` run as a real subprocess.

Peers (curl, tshark, chromium, pcscd, ...) are skipped when missing, except in CI: with
OPENSCWS_REQUIRE_PEERS=1 a missing peer fails the test, so nothing is silently skipped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openscws.aio.freeport import free_port

READY = "SCWS ready: "
READY_TIMEOUT = 20.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: runs openscws as a subprocess and talks to it over real sockets"
    )


def peers_required() -> bool:
    return os.environ.get("OPENSCWS_REQUIRE_PEERS") == "1"


def need_tool(cmd: str, package: str) -> str:
    """The path of program `cmd`; skips the test when it is missing (fails in CI, where
    OPENSCWS_REQUIRE_PEERS=1)."""
    path = shutil.which(cmd)
    if path is None:
        missing = f"{cmd} not installed: apt-get install {package}"
        if peers_required():
            pytest.fail(missing + " (OPENSCWS_REQUIRE_PEERS=1)")
        pytest.skip(missing)
    return path


def need_file(path: str | Path, package: str) -> Path:
    """Like `need_tool`, for a file a peer package installs (a driver, a config file)."""
    p = Path(path)
    if not p.exists():
        missing = f"{p} not found: apt-get install {package}"
        if peers_required():
            pytest.fail(missing + " (OPENSCWS_REQUIRE_PEERS=1)")
        pytest.skip(missing)
    return p


@pytest.fixture(name="need_tool")
def _need_tool_fixture() -> Callable[[str, str], str]:
    """`need_tool("curl", "curl")` inside a test (conftest modules are not importable)."""
    return need_tool


@pytest.fixture(name="need_file")
def _need_file_fixture() -> Callable[[str | Path, str], Path]:
    return need_file


def peer_unavailable(reason: str) -> None:
    """Skips (fails in CI) a test whose peer is installed but cannot run here, e.g. because
    the fixed port it needs is taken."""
    if peers_required():
        pytest.fail(reason + " (OPENSCWS_REQUIRE_PEERS=1)")
    pytest.skip(reason)


@pytest.fixture(name="peer_unavailable")
def _peer_unavailable_fixture() -> Callable[[str], None]:
    return peer_unavailable


def openscws_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "openscws", *map(str, args)]


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    return int(proc.returncode)


@dataclass
class ScwsProcess:
    """One `openscws` subprocess; stdout and stderr go to files (the trace can be large)."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    base_url: str = ""
    data_dir: Path | None = None
    port: int = 0
    tls_port: int = 0
    _files: list[object] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = READY_TIMEOUT) -> str:
        """Waits for a stdout line containing `text`; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stdout.splitlines():
                if text in line:
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"openscws exited ({self.proc.returncode}) before printing {text!r}\n"
                    f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {text!r} within {timeout} s\nstdout:\n{self.stdout}\n"
                    f"stderr:\n{self.stderr}"
                )
            time.sleep(0.05)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        line = self.wait_for(READY, timeout)
        self.base_url = line.split(READY, 1)[1].strip().rstrip("/")
        return self.base_url

    def stop(self, grace: float = 5.0) -> int:
        try:
            return stop_process(self.proc, grace)
        finally:
            for f in self._files:
                f.close()  # type: ignore[attr-defined]
            self._files.clear()


def spawn(args: Sequence[str | Path], log_dir: Path, name: str) -> ScwsProcess:
    """Starts `python -m openscws ARGS...`, logging to LOG_DIR/NAME.{out,err}."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    out, err = out_path.open("wb"), err_path.open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(log_dir / "xdg-data")}
    proc = subprocess.Popen(
        openscws_cmd(*args), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
    )
    return ScwsProcess(proc, out_path, err_path, _files=[out, err])


UpFactory = Callable[..., ScwsProcess]


@pytest.fixture(name="free_port")
def _free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture
def openscws_proc(tmp_path: Path) -> Iterator[Callable[..., ScwsProcess]]:
    """`openscws_proc(*args, name="x")` starts `python -m openscws ARGS...` (logs in
    tmp_path/logs) and returns the ScwsProcess at once; all are stopped at teardown."""
    started: list[ScwsProcess] = []

    def start(*args: str | Path, name: str = "openscws") -> ScwsProcess:
        sp = spawn(list(args), tmp_path / "logs", f"{name}{len(started)}")
        started.append(sp)
        return sp

    try:
        yield start
    finally:
        for sp in started:
            sp.stop()


@pytest.fixture
def start_up(tmp_path: Path) -> Iterator[UpFactory]:
    """`start_up(*extra_args, config=None)` runs `openscws up` on a fresh data dir and a free
    port, waits for "SCWS ready", and returns the ScwsProcess; all are stopped at teardown.
    `config` is TOML text written to a file and passed with --config."""
    started: list[ScwsProcess] = []

    def start(*extra: str | Path, config: str | None = None, data_dir: Path | None = None):
        n = len(started)
        data = data_dir or tmp_path / f"card{n}"
        port, tls_port = free_port(), free_port()
        args: list[str | Path] = ["up", "--no-admin", "--data-dir", data]
        args += ["--port-map", f"3516={port}", "--port-map", f"4116={tls_port}"]
        if config is not None:
            cfg = tmp_path / f"openscws{n}.toml"
            cfg.write_text(config)
            args += ["--config", cfg]
        sp = spawn([*args, *extra], tmp_path / "logs", f"up{n}")
        started.append(sp)
        sp.data_dir, sp.port, sp.tls_port = data, port, tls_port
        sp.wait_ready()
        return sp

    try:
        yield start
    finally:
        for sp in started:
            sp.stop()


@pytest.fixture(scope="session")
def scws_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """One `openscws up` for the whole session, with the demo site: (base_url, data_dir,
    process). base_url has no trailing slash ("http://127.0.0.1:PORT")."""
    root = tmp_path_factory.mktemp("scws-session")
    data = root / "card"
    port, tls_port = free_port(), free_port()
    maps = ["--port-map", f"3516={port}", "--port-map", f"4116={tls_port}"]
    sp = spawn(["up", "--no-admin", "--data-dir", data, *maps], root, "up")
    try:
        sp.wait_ready()
        assert sp.base_url == f"http://127.0.0.1:{port}"
        yield sp.base_url, data, sp.proc
    finally:
        sp.stop()
