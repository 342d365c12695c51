"""BCAST fixtures: a migrated SQLite BSM store in a tmp dir, and the RAS tests' throwaway
PostgreSQL cluster (`postgres`, from tests/ras/conftest.py) for the BSM on PostgreSQL."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bcast_fixtures import make_store

from openscws.bcast.store import SqlStore

_spec = importlib.util.spec_from_file_location(
    "_ras_conftest_for_bcast", Path(__file__).parents[1] / "ras" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_ras = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _ras  # its dataclasses look their module up
_spec.loader.exec_module(_ras)
postgres = _ras.postgres


@pytest.fixture
def sql_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = make_store(tmp_path / "bsm")
    yield store
    store.db.dispose()
