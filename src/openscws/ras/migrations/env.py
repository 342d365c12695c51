"""Alembic environment of the admin server's database: `openscws.ras.db.run_migrations`."""

from __future__ import annotations

from openscws.ras.db import run_migrations
from openscws.ras.models import Base

run_migrations(Base.metadata, "RAS")
