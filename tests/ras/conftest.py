"""RAS fixtures: a vault in a tmp dir, a migrated SQLite database, and a real PostgreSQL
cluster (Debian's postgresql package) made for the test session in a tmp dir.

PostgreSQL refuses to run as root, so as root the cluster's directory belongs to the
`postgres` user and initdb / pg_ctl run through `runuser -u postgres --` (or setpriv). The
server listens on 127.0.0.1 on a free port, with its unix socket in the same tmp dir, and is
stopped at the end of the session."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openscws.aio.freeport import free_port
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.vault import Vault

PG_MISSING = "needs Debian package postgresql"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault.create(tmp_path / "ras")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[RasDatabase]:
    directory = tmp_path / "ras"
    directory.mkdir(exist_ok=True)
    db = RasDatabase(default_url(directory))
    db.upgrade()
    yield db
    db.dispose()


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all((candidate / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


@dataclass(frozen=True)
class PgCluster:
    port: int
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"ras_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres() -> list[str]:
    """The command prefix that runs a program as the postgres user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(f"{PG_MISSING} (no postgres user to run the server as)")
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    pytest.skip(f"{PG_MISSING} (and runuser or setpriv to drop root)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(PG_MISSING)
    prefix = _as_postgres()
    # Not under pytest's tmp dir: its parents are root-only (0700), which the postgres user
    # cannot traverse.
    root = Path(tempfile.mkdtemp(prefix="openscws-pg-"))
    data, log = root / "data", root / "server.log"
    if prefix:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}\n{server_log}")

    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield PgCluster(port=port, socket_dir=root)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


@pytest.fixture
def pg_db(postgres: PgCluster) -> Iterator[RasDatabase]:
    """A fresh, migrated database in the session's cluster."""
    name = postgres.create_database()
    db = RasDatabase(postgres.url(name))
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()
        postgres.drop_database(name)
