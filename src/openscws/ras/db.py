"""The RAS database: one SQLAlchemy engine, transactions, and the Alembic migrations run in
code (no alembic.ini at run time).

SQLite (the embedded default, `sqlite:///<data dir>/ras.db`) runs in WAL mode with a busy
timeout and foreign keys on, and every write transaction starts with BEGIN IMMEDIATE: writers
queue on the database lock at BEGIN instead of failing when a read lock cannot be upgraded,
which is how SQLite serialises the job claims. PostgreSQL (`postgresql+psycopg://...`) runs at
READ COMMITTED; the service takes row locks (FOR UPDATE [SKIP LOCKED]) where it needs them."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from openscws.errors import NotFoundError, OpenScwsError

__all__ = ["Conflict", "NotFound", "RasDatabase", "RasError", "default_url", "run_migrations"]

log = logging.getLogger(__name__)

MIGRATIONS: Final = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
_READ_ONLY: Final = "openscws_read_only"
_MIGRATION_LOCK: Final = 0x5CA5_0001  # pg_advisory_xact_lock key: one migrator at a time
IDLE_PING_S: Final = 5.0
"""A pooled connection idle for longer is pinged before use (a database restart or an idle
timeout may have closed it); one in steady use is not: a ping is a round trip."""


class RasError(OpenScwsError):
    """A RAS request that cannot be carried out (bad input, or a state that forbids it)."""


class NotFound(RasError, NotFoundError):
    """No such card, content version, campaign or job."""


class TooLarge(RasError):
    """A body over what a card accepts (openscws.scws.paths.MAX_ADMIN_RESOURCE)."""


class Conflict(RasError):
    """The request clashes with what is stored (an ICCID or PSK identity already in use)."""


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'ras.db'}"


def _normalise(url: str) -> str:
    # SQLAlchemy's bare postgresql:// means psycopg2, which this project does not ship.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class RasDatabase:
    """The engine and its transactions. `write()` and `read()` give a Session inside one
    transaction, committed when the block ends and rolled back if it raises."""

    def __init__(self, url: str, *, echo: bool = False, idle_ping: float = IDLE_PING_S) -> None:
        try:
            parsed = make_url(_normalise(url))
        except ArgumentError:
            raise RasError(
                "not a database URL: use sqlite:///<file> or "
                "postgresql+psycopg://<user>@<host>/<database>"
            ) from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise RasError(f"unsupported database {backend!r}: use sqlite or postgresql")
        try:
            # LIFO: under load the same few connections stay busy (and need no ping); the
            # rest idle out and are pinged when they come back.
            self.engine: Engine = create_engine(parsed, echo=echo, pool_use_lifo=True)
        except (ImportError, NoSuchModuleError) as exc:
            raise RasError(
                f"no driver for {parsed.drivername!r} ({exc}): use sqlite or postgresql+psycopg"
            ) from None
        self.dialect: str = self.engine.dialect.name
        _ping_when_idle(self.engine, idle_ping)
        if self.dialect == "sqlite":
            _private_sqlite_files(parsed.database)
            _sqlite_setup(self.engine)
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        read_engine = self.engine.execution_options(**{_READ_ONLY: True})
        self._read = sessionmaker(read_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        # The URL may carry a password.
        return f"RasDatabase({self.engine.url.render_as_string(hide_password=True)!r})"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    # -- migrations ------------------------------------------------------------------------

    # A database of another server (the BSF's) sets these four to its own.
    migrations: ClassVar[Path] = MIGRATIONS
    version_table: ClassVar[str] = "alembic_version"
    migration_lock: ClassVar[int] = _MIGRATION_LOCK
    schema_name: ClassVar[tuple[str, str]] = ("RAS", "openscws admin init")
    """Who owns the schema, and the command that migrates it (for `check_current`)."""

    def _alembic_config(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.migrations).replace("%", "%%"))
        config.attributes["connection"] = connection
        config.attributes["version_table"] = self.version_table
        return config

    def upgrade(self, revision: str = "head") -> None:
        """`alembic upgrade head`, in one transaction (both databases have transactional DDL)."""
        with self.engine.begin() as connection:
            if self.is_postgresql:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.migration_lock}
                )
            command.upgrade(self._alembic_config(connection), revision)

    def head_revision(self) -> str | None:
        return ScriptDirectory(str(self.migrations)).get_current_head()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(
                connection, opts={"version_table": self.version_table}
            ).get_current_revision()

    def check_current(self) -> None:
        """Raises RasError unless the schema is at the newest migration."""
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            owner, command_ = self.schema_name
            raise RasError(
                f"the {owner} database is at schema {current or 'none'}, this program needs "
                f"{head}: run `{command_}` (it migrates)"
            )


def _ping_when_idle(engine: Engine, idle: float) -> None:
    """SQLAlchemy's pool_pre_ping, but only for connections that sat idle over `idle`
    seconds. A failed ping raises DisconnectionError, on which the pool drops the connection
    and checks out (or opens) another."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < idle:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"a pooled connection is gone: {exc}") from exc
        if alive is False:
            raise DisconnectionError("a pooled connection is gone")


SQLITE_FILE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def _private_sqlite_files(database: str | None) -> None:
    """Creates the database file 0600 before SQLite does (it gives its -wal, -shm and
    -journal files the database file's mode), and takes group and other access away from
    files an older version made. The database holds sealed card keys and session logs."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return  # SQLite reports it (a missing directory, no permission) in its own words
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in SQLITE_FILE_SUFFIXES[1:]:
        with contextlib.suppress(OSError):  # missing, or not ours: SQLite will say
            extra = Path(f"{database}{suffix}")
            if extra.stat().st_mode & 0o077:
                extra.chmod(0o600)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver, so that _begin below decides its kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed job survives a power cut too, not only a process crash.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def run_migrations(metadata: MetaData, owner: str) -> None:
    """The body of every migrations folder's Alembic env.py: runs the migrations on the open
    connection that `RasDatabase.upgrade` (or a subclass's) hands over in the Alembic config's
    attributes, with that database's version table. There is no alembic.ini and no logging
    set-up (only the entry point configures logging). `owner` names the database in the
    error raised when env.py is run any other way."""
    from alembic import context

    attributes = context.config.attributes
    connection = attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(f"run the {owner} migrations through its database's upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later migrations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table=attributes.get("version_table", "alembic_version"),
    )
    with context.begin_transaction():
        context.run_migrations()
