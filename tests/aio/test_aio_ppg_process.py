"""The PPG in a process of its own: the start line, the ready answer, a stop when the parent's
end of the pipe closes, and the refusals of a child that cannot start."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from openscws.aio.freeport import free_port
from openscws.aio.ppg import PpgConfig
from openscws.aio.ppg_process import (
    PpgProcess,
    _ready,
    config_from_wire,
    config_to_wire,
    start_ppg_process,
)
from openscws.push.ppg import DeliveryPolicy, Initiator


def _config(tmp_path: Path, **changes: object) -> PpgConfig:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'ppg.db'}",
        "initiators": (Initiator("ras", "s3cret-initiator"),),
        "pap_port": free_port(),
        "registrar_users": {"+15550100001": "s3cret-user"},
        "policy": DeliveryPolicy(max_attempts=3, backoff=1.0, backoff_cap=4.0),
    }
    values.update(changes)
    return PpgConfig(**values)  # type: ignore[arg-type]


def test_config_goes_over_the_wire_whole(tmp_path: Path) -> None:
    config = _config(tmp_path, proxy="sip:127.0.0.1:5060", plmn_domain="scws.test")
    assert config_from_wire(json.loads(json.dumps(config_to_wire(config)))) == config
    with pytest.raises(ValueError, match="PPG configuration"):
        config_from_wire({"database_url": "sqlite://"})


def _unauthenticated_post(url: str) -> int:
    request = urllib.request.Request(url, data=b"x", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_child_serves_pap_and_stops_with_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSCWS_ADMIN_PAP_PASSWORD", "env-s3cret")

    async def main() -> None:
        ppg = await start_ppg_process(_config(tmp_path))
        try:
            # the settings came over the pipe: none of the environment's goes to the child
            environ = Path(f"/proc/{ppg.pid}/environ").read_bytes()
            assert b"OPENSCWS_" not in environ
            assert b"PATH=" in environ
            assert ppg.pap_url.startswith("http://127.0.0.1:")
            assert ppg.sip_port > 0
            # its own process, and it asks push initiators for their credentials
            assert await asyncio.to_thread(_unauthenticated_post, ppg.pap_url) == 401
            pid = ppg.pid
        finally:
            await ppg.close()
        assert ppg.restarts == 0
        assert not Path(f"/proc/{pid}").exists()  # stopped and reaped

    asyncio.run(main())


def test_child_that_cannot_listen_is_a_clear_error(tmp_path: Path) -> None:
    async def main() -> None:
        first = await start_ppg_process(_config(tmp_path))
        try:
            port = int(first.pap_url.split(":")[2].split("/")[0])
            second = PpgProcess(_config(tmp_path / "2", pap_port=port))
            (tmp_path / "2").mkdir()
            with pytest.raises(OSError, match="the PPG process did not start: cannot listen"):
                await second.start()
        finally:
            await first.close()

    asyncio.run(main())


def test_child_refuses_a_bad_start_line_and_exits_when_its_input_closes(
    tmp_path: Path,
) -> None:
    child = [sys.executable, "-m", "openscws.aio.ppg_process"]
    bad = subprocess.run(child, input=b"not json\n", capture_output=True, timeout=60)
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"].startswith("bad start line")
    # a good start line, then the parent's end closes: the child stops in order
    line = json.dumps({"config": config_to_wire(_config(tmp_path)), "log_level": 10})
    with subprocess.Popen(
        child, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
        ready = json.loads(proc.stdout.readline())
        assert set(ready) == {"pap_url", "sip_port"}
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        logged = proc.stderr.read()
    # the secrets came over the pipe and never reach the log
    assert b"s3cret" not in logged


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b'{"error": "cannot listen: port taken"}\n', "did not start: cannot listen"),
        (b"[1, 2]\n", "answered"),
        (b'{"pap_url": "http://x/pap"}\n', "answered"),
        (b'{"pap_url": 5, "sip_port": 5060}\n', "answered"),
        (b"\xff\xfe garbage\n", "answered"),
    ],
)
def test_an_answer_that_is_not_ready_is_an_oserror(answer: bytes, message: str) -> None:
    with pytest.raises(OSError, match=message):
        _ready(answer)
    assert _ready(b'{"pap_url": "http://127.0.0.1:1/pap", "sip_port": 5060}\n') == (
        "http://127.0.0.1:1/pap",
        5060,
    )


def test_modules_in_the_working_directory_do_not_reach_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("json", "signal", "secrets"):
        (work / f"{name}.py").write_text(
            "raise SystemExit('shadowed from the working directory')\n"
        )
    monkeypatch.chdir(work)

    async def main() -> None:
        ppg = await start_ppg_process(_config(tmp_path))
        await ppg.close()

    asyncio.run(main())


def test_a_child_that_stops_in_order_is_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        ppg = await start_ppg_process(_config(tmp_path))
        try:
            os.kill(ppg.pid, signal.SIGTERM)  # as a stop sent to the whole process group
            async with asyncio.timeout(30):
                while "stopped; not restarted" not in caplog.text:
                    await asyncio.sleep(0.05)
            assert ppg.restarts == 0
        finally:
            await ppg.close()

    with caplog.at_level("WARNING", logger="openscws.aio.ppg_process"):
        asyncio.run(main())
