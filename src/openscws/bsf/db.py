"""The BSF database: `ras.db.RasDatabase` (engine, SQLite WAL + BEGIN IMMEDIATE, PostgreSQL at
READ COMMITTED, transactions, migrations) with the BSF's own Alembic migrations and version
table. Ub's per-request work runs on `transaction()`: a bare connection inside one write
transaction, for SQL core statements without the ORM's unit of work (a bootstrap's hot path)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Final

from sqlalchemy import Connection

from openscws.ras.db import RasDatabase

__all__ = ["BsfDatabase", "default_url"]

MIGRATIONS: Final = Path(__file__).parent / "migrations"
VERSION_TABLE: Final = "bsf_alembic_version"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'bsf.db'}"


class BsfDatabase(RasDatabase):
    migrations: ClassVar[Path] = MIGRATIONS
    version_table: ClassVar[str] = VERSION_TABLE
    migration_lock: ClassVar[int] = 0x5CA5_0B5F
    schema_name: ClassVar[tuple[str, str]] = ("BSF", "openscws bsf init")

    def __repr__(self) -> str:
        return f"BsfDatabase({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on a pooled connection (BEGIN IMMEDIATE on SQLite), committed
        when the block ends and rolled back if it raises."""
        with self.engine.begin() as connection:
            yield connection
