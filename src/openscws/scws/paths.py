"""What a resource path is, and how big a resource may be: one definition, used by the card
(its image, its HTTP engine, its admin agent) and by the admin server's repository, so the
server never accepts what the card would refuse.

Path rules (a card resource path, as the SCWS serves it):

- absolute: starts with "/"; at most `MAX_PATH_BYTES` bytes of UTF-8;
- normalised: no empty, "." or ".." segment;
- no control character, no backslash, no "?" or "#" (those end a request-target's path);
- a trailing "/" names a directory, never a stored resource: `is_directory`.

The admin server's repository adds (`admin_path_problem`): printable ASCII without spaces
(its paths travel inside embedded HTTP request lines, GP Amendment B §3.3), not under the
card's own admin namespace `/.scws/`, and not a directory.

Size: one administration command (the embedded request the card's agent holds in RAM,
head and body) is at most `AMDB_MAX_COMMAND` bytes, its head at most `AMDB_MAX_HEAD`; so a
resource the admin server can deliver is at most `MAX_ADMIN_RESOURCE` bytes."""

from __future__ import annotations

import re
from typing import Final

from openscws.errors import StoreError

__all__ = [
    "ADMIN_RESERVED_PREFIX",
    "AMDB_MAX_COMMAND",
    "AMDB_MAX_HEAD",
    "MAX_ADMIN_RESOURCE",
    "MAX_PATH_BYTES",
    "admin_path_problem",
    "is_directory",
    "path_problem",
    "validate_path",
]

MAX_PATH_BYTES: Final = 1024
AMDB_MAX_COMMAND: Final = 64 * 1024
"""Largest administration command (embedded request, head and body) the card's agent holds."""
AMDB_MAX_HEAD: Final = 8192
"""Largest head of an embedded request or of the server's answers the agent reads."""
MAX_ADMIN_RESOURCE: Final = AMDB_MAX_COMMAND - AMDB_MAX_HEAD
"""Largest resource body one administration command carries to the card (56 KiB)."""
ADMIN_RESERVED_PREFIX: Final = "/.scws/"
"""The card's own admin endpoints (transactions, commit, realms): never repository content."""

_FORBIDDEN: Final = frozenset("\\?#") | frozenset(map(chr, [*range(0x20), 0x7F]))
_PRINTABLE: Final = re.compile(r"/[\x21-\x7e]*")


def path_problem(path: object) -> str | None:
    """Why `path` is not a card resource path (see the module's rules), or None."""
    if not isinstance(path, str):
        return f"resource path must be a string, not {type(path).__name__}"
    if not path.startswith("/"):
        return f"resource path must be absolute: {path!r}"
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        return f"resource path is not valid Unicode: {path!r}"
    if size > MAX_PATH_BYTES:
        return f"resource path longer than {MAX_PATH_BYTES} bytes: {path[:40]!r}..."
    bad = _FORBIDDEN.intersection(path)
    if bad:
        return f"resource path {path!r} contains forbidden characters {sorted(bad)!r}"
    segments = path[1:].split("/")
    if segments[-1] == "":
        segments.pop()  # "/" or a trailing slash: a directory
    for segment in segments:
        if segment in ("", ".", ".."):
            return f"resource path is not normalised (no empty, '.' or '..' segment): {path!r}"
    return None


def validate_path(path: object) -> str:
    """`path` if it is a card resource path (a directory's, with its trailing "/", too),
    else StoreError with the reason."""
    problem = path_problem(path)
    if problem is not None:
        raise StoreError(problem)
    assert isinstance(path, str)
    return path


def is_directory(path: str) -> bool:
    """A trailing "/" names a directory: "/", "/app/"."""
    return path.endswith("/")


def admin_path_problem(path: str) -> str | None:
    """Why the admin server's repository cannot hold `path`, or None: a card resource path
    that is printable ASCII without spaces, outside /.scws/, and not a directory."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    if not _PRINTABLE.fullmatch(path):
        return f"a repository path is '/' then printable ASCII without spaces: {path!r}"
    if path.startswith(ADMIN_RESERVED_PREFIX):
        return f"{path!r}: {ADMIN_RESERVED_PREFIX} is the card's own admin namespace"
    if is_directory(path):
        return f"{path!r} ends with '/', which names a directory, not a resource"
    return None
