"""BCAST fixtures: a migrated SQLite BSM store in a tmp dir, and the RAS tests' throwaway
PostgreSQL cluster (`postgres`, from tests/ras/conftest.py) for the BSM on PostgreSQL."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openscws.bcast.db import BsmDatabase, default_url
from openscws.bcast.store import SqlStore
from openscws.ras.vault import Vault

_spec = importlib.util.spec_from_file_location(
    "_ras_conftest_for_bcast", Path(__file__).parents[1] / "ras" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_ras = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _ras  # its dataclasses look their module up
_spec.loader.exec_module(_ras)
postgres = _ras.postgres


def make_store(directory: Path, url: str | None = None) -> SqlStore:
    directory.mkdir(parents=True, exist_ok=True)
    db = BsmDatabase(url or default_url(directory))
    db.upgrade()
    return SqlStore(db, Vault.create(directory))


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = make_store(tmp_path / "bsm")
    yield store
    store.db.dispose()
