"""Listings on the command line: every `ls`-like command prints its rows through
`print_listing`, so an empty listing says "none" instead of printing nothing, which a user
cannot tell from a command that did not run."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Final, TextIO

__all__ = ["EMPTY", "print_listing"]

EMPTY: Final = "none"


def print_listing(
    rows: Iterable[str], *, header: str | None = None, indent: str = "", out: TextIO | None = None
) -> int:
    """Prints `header` (when given) and the rows, each after `indent`; when there are no rows,
    one line `indent` + "none" and no header. Returns the number of rows."""
    stream = out if out is not None else sys.stdout
    count = 0
    for row in rows:
        if count == 0 and header is not None:
            print(header, file=stream)
        print(indent + row, file=stream)
        count += 1
    if count == 0:
        print(indent + EMPTY, file=stream)
    return count
