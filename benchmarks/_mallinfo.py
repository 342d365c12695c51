"""The C heap in use, from glibc's mallinfo2(): what malloc has handed out and not yet had
back (main arena plus mmapped chunks). Python hands allocations above 512 bytes to malloc
(smaller ones come from its own arenas, which it maps directly), and OpenSSL allocates with
malloc, so a change of `in_use()` across a call is what that call left allocated in C.
Run with PYTHONMALLOC=malloc, Python's small objects go to malloc too and are counted."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

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
