"""Alembic environment of the DM server database. `DmDatabase.upgrade` hands over an open
connection in `config.attributes["connection"]`; there is no alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from openscws.dm.db_models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table="dm_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the DM migrations through openscws.dm.db.DmDatabase.upgrade")
_run(connection)
