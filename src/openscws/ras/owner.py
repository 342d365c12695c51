"""A stable name for an admin server process in job leases, kept in its data directory, so
that a server restarted after a crash knows which leases were its own and releases them at
once instead of waiting for them to run out.

The data directory holds slots `owner-<n>.id`, each one line: the owner name (host name and
a random id, made when the slot is). A starting server takes the first slot no running
process holds (an exclusive `flock` kept open while it runs) and uses its name. A slot is free
only when the process that held it is gone, so whatever leases carry its name belong to a
dead process: releasing them can never take a job from a live session. Several servers on one
data directory (PostgreSQL, shared master key) get a slot each."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from openscws.ras.db import RasError

__all__ = ["MAX_SLOTS", "OwnerSlot", "claim_owner"]

log = logging.getLogger(__name__)

MAX_SLOTS: Final = 64
_PREFIX: Final = "owner-"


@dataclass
class OwnerSlot:
    """A held slot: `name` goes into leases; `close()` (or the process's end) frees it."""

    name: str
    path: Path
    fd: int | None

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # drops the flock
            self.fd = None


def _new_name() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:16]}"


def _read_name(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 512).decode("utf-8", "replace").strip()
    return text if text and len(text) <= 255 and text.isprintable() else ""


def claim_owner(directory: Path) -> OwnerSlot:
    """Takes the first free slot in `directory`, making one when all are held; RasError when
    none of MAX_SLOTS is free."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for n in range(MAX_SLOTS):
        path = directory / f"{_PREFIX}{n}.id"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RasError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a running server holds it
        except OSError:
            os.close(fd)
            raise
        name = _read_name(fd)
        if not name:
            # A new slot (or one whose write a crash cut short): named now, under the lock.
            name = _new_name()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{name}\n".encode())
            os.fsync(fd)
        return OwnerSlot(name, path, fd)
    raise RasError(f"{MAX_SLOTS} admin servers already run on {directory}")
