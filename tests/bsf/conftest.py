"""BSF fixtures (bsf_fixtures.py has the helpers), and the RAS tests' throwaway PostgreSQL
cluster (`postgres`, from tests/ras/conftest.py) for the BSF on PostgreSQL."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bsf_fixtures import Bsf, make_bsf

_spec = importlib.util.spec_from_file_location(
    "_ras_conftest_for_bsf", Path(__file__).parents[1] / "ras" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_ras = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _ras  # its dataclasses look their module up
_spec.loader.exec_module(_ras)
postgres = _ras.postgres


@pytest.fixture
def bsf(tmp_path: Path) -> Iterator[Bsf]:
    b = make_bsf(tmp_path / "bsf")
    yield b
    b.db.dispose()
