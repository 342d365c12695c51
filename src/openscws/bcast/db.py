"""The BSM database: `ras.db.RasDatabase` (engine, SQLite WAL + BEGIN IMMEDIATE, PostgreSQL at
READ COMMITTED, transactions, migrations) with the BSM's own Alembic migrations and version
table."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

from openscws.ras.db import RasDatabase

__all__ = ["BsmDatabase", "default_url"]

MIGRATIONS: Final = Path(__file__).parent / "migrations"
VERSION_TABLE: Final = "bsm_alembic_version"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'bsm.db'}"


class BsmDatabase(RasDatabase):
    migrations: ClassVar[Path] = MIGRATIONS
    version_table: ClassVar[str] = VERSION_TABLE
    migration_lock: ClassVar[int] = 0x5CA5_0B5E
    schema_name: ClassVar[tuple[str, str]] = ("BSM", "openscws bsm init")

    def __repr__(self) -> str:
        return f"BsmDatabase({self.engine.url.render_as_string(hide_password=True)!r})"
