from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from openscws.store import CardImage

ICCID = "8949440000001234567"


@pytest.fixture
def image(tmp_path: Path) -> Iterator[CardImage]:
    with CardImage.create(
        tmp_path / "card", iccid=ICCID, imsi="001010123456789", now=1_700_000_000
    ) as image:
        yield image
