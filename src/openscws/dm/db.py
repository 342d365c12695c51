"""The DM server's database and its store: `ras.db.RasDatabase` (engine, SQLite WAL + BEGIN
IMMEDIATE, PostgreSQL at READ COMMITTED, migrations) with the DM server's own Alembic
migrations and version table, and `DmStore`, the devices and jobs over it. Secrets are sealed
with the vault (`ras.vault.Vault`), the associated data naming the row and column
(`dm/device/<DevId>/app_secret`), and never leave `DmStore` but as a `DeviceSecrets` the
server uses in memory."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Final, cast

from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from openscws.dm import auth
from openscws.dm.db_models import Device, DigestNonceUse, HttpAuth, Job, JobState
from openscws.dm.session import DeviceAccount
from openscws.ras.db import _READ_ONLY, Conflict, NotFound, RasDatabase
from openscws.ras.vault import Vault

__all__ = [
    "JOB_OPS",
    "DeviceInfo",
    "DeviceSecrets",
    "DmDatabase",
    "DmStore",
    "JobInfo",
    "default_url",
]

MIGRATIONS: Final = Path(__file__).parent / "migrations"
VERSION_TABLE: Final = "dm_alembic_version"
JOB_OPS: Final = ("Get", "Replace", "Add", "Delete", "Exec")
"""The management commands a job may hold (OMA-TS-SyncML_RepPro's commands that DM uses)."""
APP_AUTH: Final = {"basic": auth.AUTH_BASIC, "md5": auth.AUTH_MD5, "hmac": auth.AUTH_MAC}
"""The application-level schemes by their short names (OMA-TS-DM_Security §5.1, as in
`openscws.dm.session`)."""
MAX_COMMANDS: Final = 100
MSISDN: Final = re.compile(r"\+?[0-9]{1,15}")
"""An E.164 number (ITU-T E.164 §6: at most 15 digits)."""


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'dm.db'}"


class DmDatabase(RasDatabase):
    migrations: ClassVar[Path] = MIGRATIONS
    version_table: ClassVar[str] = VERSION_TABLE
    migration_lock: ClassVar[int] = 0x0D4D_5E4F
    schema_name: ClassVar[tuple[str, str]] = ("DM server", "openscws dm init")

    def __repr__(self) -> str:
        return f"DmDatabase({self.engine.url.render_as_string(hide_password=True)!r})"

    @cached_property
    def _read_engine(self) -> Engine:
        if self.is_postgresql:
            # A single statement needs no transaction around it: autocommit spares the round
            # trip of the COMMIT (the statement sees one snapshot all the same).
            return self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self.engine.execution_options(**{_READ_ONLY: True})

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on a pooled connection (BEGIN IMMEDIATE on SQLite), for the
        session path's SQL core statements (no ORM unit of work); committed when the block
        ends, rolled back if it raises."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read on a pooled connection, for a single statement: a plain BEGIN on SQLite,
        autocommit on PostgreSQL."""
        with self._read_engine.begin() as connection:
            yield connection


# The session path's statements, built once (SQL core: one round trip each, no ORM).
_DEVICES: Final = cast(Table, Device.__table__)
_JOBS: Final = cast(Table, Job.__table__)
_NONCES: Final = cast(Table, DigestNonceUse.__table__)
# A used (nonce, nc) pair is recorded by one INSERT whose primary key decides: a pair some
# server process recorded before inserts nothing and returns no row (a replay).
_USE_NONCE_PG: Final = (
    postgresql.insert(_NONCES).on_conflict_do_nothing().returning(_NONCES.c.nonce)
)
_USE_NONCE_SQLITE: Final = (
    sqlite.insert(_NONCES).on_conflict_do_nothing().returning(_NONCES.c.nonce)
)
_PURGE_NONCES: Final = delete(_NONCES).where(_NONCES.c.issued_ms < bindparam("b_before"))
_DEVICE_BY_ID: Final = select(*_DEVICES.c).where(_DEVICES.c.dev_id == bindparam("dev_id"))
_PSK_BY_IDENTITY: Final = select(_DEVICES.c.dev_id, _DEVICES.c.psk_key).where(
    _DEVICES.c.psk_identity == bindparam("identity")
)
_SAVE_NONCES: Final = (
    update(_DEVICES)
    .where(_DEVICES.c.dev_id == bindparam("b_dev_id"))
    .values(app_nonce=bindparam("b_app_nonce"), server_nonce=bindparam("b_server_nonce"))
)
_JOB_COLUMNS: Final = (
    _JOBS.c.id,
    _JOBS.c.dev_id,
    _JOBS.c.state,
    _JOBS.c.commands,
    _JOBS.c.results,
    _JOBS.c.created_ms,
    _JOBS.c.finished_ms,
)
_CLAIM: Final = (
    update(_JOBS)
    .where(
        _JOBS.c.id
        == select(_JOBS.c.id)
        .where(_JOBS.c.dev_id == bindparam("b_dev_id"), _JOBS.c.state == str(JobState.PENDING))
        .order_by(_JOBS.c.id)
        .limit(1)
        # PostgreSQL: a job another server process is claiming is skipped, not waited for
        # (SQLite serialises writers at BEGIN IMMEDIATE and renders no FOR UPDATE).
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    .values(state=str(JobState.RUNNING))
    .returning(*_JOB_COLUMNS)
)
_FINISH: Final = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("b_job_id"))
    .values(
        state=bindparam("b_state"),
        results=bindparam("b_results"),
        finished_ms=bindparam("b_finished_ms"),
    )
)


def _save_nonces(c: Connection, dev_id: str, app_nonce: bytes, server_nonce: bytes) -> None:
    c.execute(
        _SAVE_NONCES, {"b_dev_id": dev_id, "b_app_nonce": app_nonce, "b_server_nonce": server_nonce}
    )


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What may be shown of a device (no secret)."""

    dev_id: str
    app_auth: str
    app_username: str
    server_id: str
    http_auth: str
    http_username: str | None
    cert_sha256: str | None
    psk_identity: str | None
    msisdn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dev_id": self.dev_id,
            "app_auth": self.app_auth,
            "app_username": self.app_username,
            "server_id": self.server_id,
            "http_auth": self.http_auth,
            "http_username": self.http_username,
            "cert_sha256": self.cert_sha256,
            "psk_identity": self.psk_identity,
            "msisdn": self.msisdn,
        }


@dataclass(frozen=True, slots=True)
class DeviceSecrets:
    """A device with its secrets opened, for the server's session (in memory only)."""

    info: DeviceInfo
    account: DeviceAccount
    http_password: str | None
    psk_key: bytes | None

    def __repr__(self) -> str:
        return f"DeviceSecrets({self.info.dev_id!r})"


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: int
    dev_id: str
    state: str
    commands: list[dict[str, Any]]
    results: list[dict[str, Any]]
    created_ms: int
    finished_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dev_id": self.dev_id,
            "state": self.state,
            "commands": self.commands,
            "results": self.results,
            "created_ms": self.created_ms,
            "finished_ms": self.finished_ms,
        }


def check_commands(commands: object) -> list[dict[str, Any]]:
    """A job's commands as given (JSON, CLI), checked: a list of {"op", "uri", "data"}
    with op one of `JOB_OPS`; ValueError otherwise."""
    if not isinstance(commands, list) or not 1 <= len(commands) <= MAX_COMMANDS:
        raise ValueError(f"a job holds 1 to {MAX_COMMANDS} commands")
    out = []
    for c in commands:
        if not isinstance(c, dict) or set(c) - {"op", "uri", "data"}:
            raise ValueError('each command is {"op": ..., "uri": ..., "data": ...}')
        op, uri, data = c.get("op"), c.get("uri"), c.get("data")
        if op not in JOB_OPS:
            raise ValueError(f"op {op!r}: one of {', '.join(JOB_OPS)}")
        if not isinstance(uri, str) or not uri.startswith("./") or len(uri) > 1024:
            raise ValueError(f"uri {uri!r}: a management tree URI starting with ./")
        if data is not None and not isinstance(data, str):
            raise ValueError("data must be a string")
        if op in ("Replace", "Add") and data is None:
            raise ValueError(f"{op} needs data")
        out.append({"op": op, "uri": uri, "data": data})
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class DmStore:
    """Devices and jobs in the DM server's database."""

    def __init__(self, db: DmDatabase, vault: Vault) -> None:
        self.db = db
        self.vault = vault

    def _seal(self, dev_id: str, column: str, value: bytes) -> bytes:
        return self.vault.seal(value, f"dm/device/{dev_id}/{column}")

    def _open(self, dev_id: str, column: str, blob: bytes) -> bytes:
        return self.vault.unseal(blob, f"dm/device/{dev_id}/{column}")

    # -- devices --

    def add_device(
        self,
        dev_id: str,
        *,
        app_auth: str,
        app_username: str,
        app_password: str,
        server_id: str,
        server_password: str,
        server_auth: str | None = None,
        http_auth: HttpAuth = HttpAuth.NONE,
        http_username: str | None = None,
        http_password: str | None = None,
        cert_sha256: str | None = None,
        psk_identity: str | None = None,
        psk_key: bytes | None = None,
        msisdn: str | None = None,
        nonce: bytes = b"",
    ) -> DeviceInfo:
        if not dev_id or len(dev_id) > 255:
            raise ValueError("a DevId of 1 to 255 characters")
        if app_auth not in APP_AUTH.values():
            raise ValueError(f"application auth {app_auth!r}")
        if server_auth is not None and server_auth not in APP_AUTH.values():
            raise ValueError(f"server auth {server_auth!r}")
        if http_auth in (HttpAuth.BASIC, HttpAuth.DIGEST) and not (http_username and http_password):
            raise ValueError(f"HTTP {http_auth} needs a user name and a password")
        if http_username is not None and ":" in http_username:
            raise ValueError("an HTTP user name has no ':'")
        if http_auth is HttpAuth.CERT:
            if cert_sha256 is None or len(cert_sha256) != 64:
                raise ValueError("certificate authentication needs the certificate's SHA-256")
            cert_sha256 = cert_sha256.lower()
        if http_auth is HttpAuth.PSK and not (psk_identity and psk_key and len(psk_key) >= 16):
            raise ValueError("PSK-TLS needs an identity and a key of at least 16 bytes")
        if (psk_identity is None) != (psk_key is None):
            raise ValueError("a PSK identity goes with a PSK key")
        if msisdn is not None and not MSISDN.fullmatch(msisdn):
            raise ValueError("an MSISDN is 1 to 15 digits, with an optional leading +")
        with self.db.write() as s:
            if s.get(Device, dev_id) is not None:
                raise Conflict(f"device {dev_id} exists")
            if psk_identity is not None and s.scalar(
                select(Device.dev_id).where(Device.psk_identity == psk_identity)
            ):
                raise Conflict(f"PSK identity {psk_identity} is another device's")
            s.add(
                Device(
                    dev_id=dev_id,
                    app_auth=app_auth,
                    app_username=app_username,
                    app_secret=self._seal(dev_id, "app_secret", app_password.encode()),
                    app_nonce=nonce,
                    server_id=server_id,
                    server_auth=server_auth,
                    server_secret=self._seal(dev_id, "server_secret", server_password.encode()),
                    server_nonce=b"",
                    http_auth=str(http_auth),
                    http_username=http_username,
                    http_secret=(
                        None
                        if http_password is None
                        else self._seal(dev_id, "http_secret", http_password.encode())
                    ),
                    cert_sha256=cert_sha256,
                    psk_identity=psk_identity,
                    psk_key=None if psk_key is None else self._seal(dev_id, "psk_key", psk_key),
                    msisdn=msisdn,
                    created_ms=_now_ms(),
                )
            )
        info = self.device(dev_id)
        assert info is not None
        return info

    @staticmethod
    def _info(d: Any) -> DeviceInfo:
        """Of a `Device` or a row of its table."""
        return DeviceInfo(
            d.dev_id,
            d.app_auth,
            d.app_username,
            d.server_id,
            d.http_auth,
            d.http_username,
            d.cert_sha256,
            d.psk_identity,
            d.msisdn,
        )

    def device(self, dev_id: str) -> DeviceInfo | None:
        with self.db.read() as s:
            d = s.get(Device, dev_id)
            return None if d is None else self._info(d)

    def devices(self) -> list[DeviceInfo]:
        with self.db.read() as s:
            return [self._info(d) for d in s.scalars(select(Device).order_by(Device.dev_id))]

    def remove_device(self, dev_id: str) -> None:
        with self.db.write() as s:
            s.execute(delete(Job).where(Job.dev_id == dev_id))
            if _rowcount(s.execute(delete(Device).where(Device.dev_id == dev_id))) == 0:
                raise NotFound(f"no device {dev_id}")

    def secrets(self, dev_id: str) -> DeviceSecrets | None:
        with self.db.reading() as c:
            row = c.execute(_DEVICE_BY_ID, {"dev_id": dev_id}).first()
        if row is None:
            return None
        d: Any = row
        account = DeviceAccount(
            username=d.app_username,
            password=self._open(dev_id, "app_secret", d.app_secret).decode(),
            auth_type=d.app_auth,
            nonce=d.app_nonce,
            server_id=d.server_id,
            server_password=self._open(dev_id, "server_secret", d.server_secret).decode(),
            server_auth_type=d.server_auth,
            server_nonce=d.server_nonce,
        )
        http = (
            None
            if d.http_secret is None
            else self._open(dev_id, "http_secret", d.http_secret).decode()
        )
        psk = None if d.psk_key is None else self._open(dev_id, "psk_key", d.psk_key)
        return DeviceSecrets(self._info(d), account, http, psk)

    def psk_key(self, identity: str | None) -> bytes | None:
        """The PSK of a device's identity (the PSK-TLS key table), or None."""
        if identity is None:
            return None
        with self.db.reading() as c:
            row = c.execute(_PSK_BY_IDENTITY, {"identity": identity}).first()
        if row is None or row.psk_key is None:
            return None
        return self._open(row.dev_id, "psk_key", row.psk_key)

    def save_nonces(self, dev_id: str, app_nonce: bytes, server_nonce: bytes) -> None:
        """The nonces after a message: the next session starts from them (rollover)."""
        with self.db.transaction() as c:
            _save_nonces(c, dev_id, app_nonce, server_nonce)

    def use_digest_nonce(
        self, nonce: str, nc: str, issued_ms: int, *, purge_before: int | None = None
    ) -> bool:
        """Records an HTTP Digest (nonce, nc) pair as used, in one INSERT: True the first
        time, False if any server process on this database recorded it before (a replayed
        request, RFC 7616 §5.5). `purge_before` (ms): the records of nonces issued before
        then are deleted first, in the same transaction (an indexed range: the nonces that
        expired since the last purge)."""
        statement = _USE_NONCE_PG if self.db.is_postgresql else _USE_NONCE_SQLITE
        with self.db.transaction() as c:
            if purge_before is not None:
                c.execute(_PURGE_NONCES, {"b_before": purge_before})
            row = c.execute(statement, {"nonce": nonce, "nc": nc, "issued_ms": issued_ms})
            return row.first() is not None

    def digest_nonce_count(self) -> int:
        """How many used (nonce, nc) pairs are recorded (for tests and monitoring)."""
        with self.db.reading() as c:
            return int(c.execute(select(func.count()).select_from(_NONCES)).scalar_one())

    # -- jobs --

    def create_job(self, dev_id: str, commands: object) -> JobInfo:
        checked = check_commands(commands)
        with self.db.write() as s:
            if s.get(Device, dev_id) is None:
                raise NotFound(f"no device {dev_id}")
            job = Job(
                dev_id=dev_id,
                state=str(JobState.PENDING),
                commands=json.dumps(checked),
                results="[]",
                created_ms=_now_ms(),
            )
            s.add(job)
            s.flush()
            return self._job(job)

    @staticmethod
    def _job(j: Any) -> JobInfo:
        """Of a `Job` or a row of its table."""
        return JobInfo(
            j.id,
            j.dev_id,
            j.state,
            json.loads(j.commands),
            json.loads(j.results),
            j.created_ms,
            j.finished_ms,
        )

    def job(self, job_id: int) -> JobInfo | None:
        with self.db.read() as s:
            j = s.get(Job, job_id)
            return None if j is None else self._job(j)

    def jobs(self, dev_id: str | None = None) -> list[JobInfo]:
        with self.db.read() as s:
            q = select(Job).order_by(Job.id)
            if dev_id is not None:
                q = q.where(Job.dev_id == dev_id)
            return [self._job(j) for j in s.scalars(q)]

    def claim_job(
        self, dev_id: str, *, nonces: tuple[bytes, bytes] | None = None
    ) -> JobInfo | None:
        """The device's oldest pending job, now running (one server process claims it).
        `nonces` (the device's and the server's, after the message that authenticated the
        device) are saved in the same transaction."""
        with self.db.transaction() as c:
            if nonces is not None:
                _save_nonces(c, dev_id, *nonces)
            row = c.execute(_CLAIM, {"b_dev_id": dev_id}).first()
        return None if row is None else self._job(row)

    def finish_job(
        self,
        job_id: int,
        results: list[dict[str, Any]],
        *,
        ok: bool,
        nonces: tuple[str, bytes, bytes] | None = None,
    ) -> None:
        """The job's results; `nonces` (DevId, the device's and the server's nonce after the
        session's last message) are saved in the same transaction."""
        with self.db.transaction() as c:
            if nonces is not None:
                _save_nonces(c, *nonces)
            c.execute(
                _FINISH,
                {
                    "b_job_id": job_id,
                    "b_state": str(JobState.DONE if ok else JobState.FAILED),
                    "b_results": json.dumps(results),
                    "b_finished_ms": _now_ms(),
                },
            )

    def requeue_job(self, job_id: int) -> None:
        """A session that ended before its job ran: the job waits for the next one."""
        with self.db.write() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == str(JobState.RUNNING))
                .values(state=str(JobState.PENDING))
            )


def _rowcount(result: object) -> int:
    count: int = getattr(result, "rowcount", 0)
    return count
