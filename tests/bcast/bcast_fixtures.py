"""BCAST test helpers (a module of its own name: `conftest` is shadowed between test packages
in a full run)."""

from __future__ import annotations

from pathlib import Path

from openscws.bcast.db import BsmDatabase, default_url
from openscws.bcast.store import SqlStore
from openscws.ras.vault import Vault


def make_store(directory: Path, url: str | None = None) -> SqlStore:
    """A migrated BSM store in `directory` (SQLite there unless `url`)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = BsmDatabase(url or default_url(directory))
    db.upgrade()
    return SqlStore(db, Vault.create(directory))
