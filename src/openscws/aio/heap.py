"""The heap of a long-running process once it has started."""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]


def settle_heap() -> None:
    """For a long-running process once it has started: collects what start-up left behind,
    then moves every object alive (card images, a fleet's terminals, the servers and their
    caches) out of the cyclic garbage collector's reach (`gc.freeze`). They live as long as
    the process; with a fleet of cards every full collection would otherwise walk them all
    again (benchmarks/bench_push.py measures the difference). Not for code that starts and
    stops stacks over and over in one process (tests): what is frozen is never collected."""
    gc.collect()
    gc.freeze()
