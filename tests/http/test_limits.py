from __future__ import annotations

import pytest

from openscws.http import CardLimits, RamBudget


def test_defaults() -> None:
    limits = CardLimits()
    assert (limits.max_request_target, limits.max_header_bytes) == (2048, 8192)
    assert (limits.max_body, limits.ram_budget) == (64 * 1024, 256 * 1024)
    assert RamBudget.for_limits(limits).total == 256 * 1024


@pytest.mark.parametrize(
    "kwargs",
    [{"max_body": 0}, {"ram_budget": -1}, {"idle_timeout": 0}, {"max_pipeline_bytes": -1}],
)
def test_invalid_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        CardLimits(**kwargs)  # type: ignore[arg-type]


def test_budget_reserve_release() -> None:
    budget = RamBudget(100)
    assert budget.reserve(60)
    assert budget.used == 60
    assert budget.available == 40
    assert not budget.reserve(41)
    assert budget.used == 60
    assert budget.reserve(40)
    assert budget.available == 0
    budget.release(100)
    assert budget.used == 0
    with pytest.raises(ValueError, match="release"):
        budget.release(1)
    with pytest.raises(ValueError, match="negative"):
        budget.reserve(-1)
    assert "RamBudget" in repr(budget)
