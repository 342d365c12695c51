"""The BSM database: `ras.db.RasDatabase` (engine, SQLite WAL + BEGIN IMMEDIATE, PostgreSQL at
READ COMMITTED, transactions) with the BSM's own Alembic migrations and version table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from openscws.ras.db import RasDatabase, RasError

__all__ = ["BsmDatabase", "default_url"]

MIGRATIONS: Final = Path(__file__).parent / "migrations"
VERSION_TABLE: Final = "bsm_alembic_version"
_MIGRATION_LOCK: Final = 0x5CA5_0B5E


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'bsm.db'}"


class BsmDatabase(RasDatabase):
    def __repr__(self) -> str:
        return f"BsmDatabase({self.engine.url.render_as_string(hide_password=True)!r})"

    def _alembic_config(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        config.attributes["connection"] = connection
        return config

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        with self.engine.begin() as connection:
            if self.is_postgresql:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            command.upgrade(self._alembic_config(connection), revision)

    def head_revision(self) -> str | None:
        return ScriptDirectory(str(MIGRATIONS)).get_current_head()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()

    def check_current(self) -> None:
        current, head = self.current_revision(), self.head_revision()
        if current != head:
            raise RasError(
                f"the BSM database is at schema {current or 'none'}, this program needs {head}: "
                "run `openscws bsm init` (it migrates)"
            )
