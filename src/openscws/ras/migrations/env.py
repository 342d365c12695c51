"""Alembic environment of the RAS database. `RasDatabase.upgrade` hands over an open connection
in `config.attributes["connection"]`; there is no alembic.ini and no logging set-up here (only
the entry point configures logging)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from openscws.ras.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: later migrations copy the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the RAS migrations through openscws.ras.db.RasDatabase.upgrade")
_run(connection)
