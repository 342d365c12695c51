"""Remote administration while HTTP and HTTPS keep-alive clients hammer the card: a campaign
started during a burst finishes within 10 s of its end, and every client request is answered
or cleanly refused (benchmarks/burst_admin.py; its default runs 20 bursts of 30 s with 200 HTTP
and 50 HTTPS clients, this runs three short ones)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import burst_admin

pytestmark = pytest.mark.e2e


def test_campaign_finishes_during_bursts_of_keep_alive_clients() -> None:
    outcomes = asyncio.run(burst_admin.runs(3, 5.0, 40, 10, seed=7, log=None))
    assert len(outcomes) == 3
    for o in outcomes:
        assert o.finished_after_burst is not None, o
        assert o.finished_after_burst <= 10.0
        assert o.campaign.get("done") == 1, o.campaign
        for tally in (o.http, o.https):
            assert tally.failed == 0, tally.failures
            assert tally.ok > 0
