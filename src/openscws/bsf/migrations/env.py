"""Alembic environment of the BSF database: `openscws.ras.db.run_migrations`."""

from __future__ import annotations

from openscws.bsf.models import Base
from openscws.ras.db import run_migrations

run_migrations(Base.metadata, "BSF")
