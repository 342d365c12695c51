"""Alembic environment of the DM server database: `openscws.ras.db.run_migrations`."""

from __future__ import annotations

from openscws.dm.db_models import Base
from openscws.ras.db import run_migrations

run_migrations(Base.metadata, "DM server")
