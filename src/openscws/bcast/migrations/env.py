"""Alembic environment of the BSM database: `openscws.ras.db.run_migrations`."""

from __future__ import annotations

from openscws.bcast.models import Base
from openscws.ras.db import run_migrations

run_migrations(Base.metadata, "BSM")
