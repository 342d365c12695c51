"""Alembic environment of the BSM database. `BsmDatabase.upgrade` hands over an open
connection in `config.attributes["connection"]`; there is no alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from openscws.bcast.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table="bsm_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the BSM migrations through openscws.bcast.db.BsmDatabase.upgrade")
_run(connection)
