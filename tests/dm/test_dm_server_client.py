"""The terminal's DM client (`openscws dm client`) against the DM server: TLS 1.2 PSK-TLS,
HTTP Digest at the transport, syncml:auth-md5 in the session; the job's results stored."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dm_server_env import Env, add_device, run_env

from openscws.dm.db_models import HttpAuth

KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from run_env(tmp_path_factory.mktemp("dms-client"))


def openscws(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openscws", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_dm_client_runs_a_job_over_psk_and_digest(env: Env, tmp_path: Path) -> None:
    add_device(
        env, "IMEI:CLIENT", http_auth=HttpAuth.DIGEST, http_username="hu", http_password="hp",
        psk_identity="client-psk", psk_key=bytes.fromhex(KEY),
    )  # fmt: skip
    job = env.store.create_job(
        "IMEI:CLIENT",
        [{"op": "Get", "uri": "./DevInfo/Mod"}, {"op": "Replace", "uri": "./DMAcc/1/Name",
                                                 "data": "Operator"}],
    )  # fmt: skip
    tree = str(tmp_path / "tree.json")
    init = openscws(
        "dm", "client", "init", "--tree", tree, "--dev-id", "IMEI:CLIENT",
        "--server", f"https://127.0.0.1:{env.port}/dm", "--server-id", "openscws-dm",
        "--user", "dev", "--password", "s3cret", "--auth", "DIGEST", "--http", "digest",
        "--http-user", "hu", "--http-password", "hp", "--psk-identity", "client-psk",
        "--psk-key", KEY,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    run = openscws("dm", "client", "run", "--tree", tree)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "TLSv1.2 PSK-" in run.stdout
    done = env.store.job(job.id)
    assert done is not None
    assert done.state == "done"
    assert [r["status"] for r in done.results] == [200, 200]
    assert done.results[0]["data"]
