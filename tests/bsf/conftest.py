"""BSF fixtures (bsf_fixtures.py has the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bsf_fixtures import Bsf, make_bsf


@pytest.fixture
def bsf(tmp_path: Path) -> Iterator[Bsf]:
    b = make_bsf(tmp_path / "bsf")
    yield b
    b.db.dispose()
