"""The C heap in use, from glibc's mallinfo2(): what malloc has handed out and not yet had
back (main arena plus mmapped chunks). Python hands allocations above 512 bytes to malloc
(smaller ones come from its own arenas, which it maps directly), and OpenSSL allocates with
malloc, so a change of `in_use()` across a call is what that call left allocated in C.
Run with PYTHONMALLOC=malloc, Python's small objects go to malloc too and are counted."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable
from typing import Any

SMALL = 512
"""Python's small-object threshold: larger blocks come from malloc."""


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.mallinfo2.restype = _Mallinfo2


def in_use() -> int:
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def all_python_objects() -> bool:
    """True when Python itself allocates with malloc (PYTHONMALLOC=malloc): then `in_use()`
    counts Python's small objects too, not only blocks above `SMALL`."""
    return os.environ.get("PYTHONMALLOC") == "malloc"


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    gc.collect()  # also empties Python's free lists: what they keep is no one's
    before = in_use()  # a local that dies at return: alive at the second reading only
    result = fn(*args)
    gc.collect()
    return result, in_use() - before


def _noop() -> None:
    return None


def call_cost() -> int:
    """What measuring a call as `measured_call` does counts for a call that allocates
    nothing: the first reading's own int object, alive at the second reading and not at the
    first (48 bytes with glibc). Summed over many calls (a 32 KiB upload arrives in 139
    RECEIVE DATA pieces) it would read as memory the caller holds. The most common reading of
    a few tries: one try may also see some unrelated block freed meanwhile (a reading below
    zero), which the smallest would have taken."""
    readings = [_call(_noop)[1] for _ in range(9)]
    return max(set(readings), key=lambda r: (readings.count(r), r))


def measured_call(fn: Callable[..., Any], *args: Any, cost: int) -> tuple[Any, int]:
    """`fn(*args)` and what it left allocated (`in_use()` after less before, with a full
    garbage collection before each reading), less `cost` (`call_cost()`, measured once)."""
    result, delta = _call(fn, *args)
    return result, delta - cost
