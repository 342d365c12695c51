"""Who runs a card image: one process at a time.

A card image holds one card's state: its ICCID, secure area, SQN and OTA counter. Two
processes running it at once would answer as one card with two diverging states, so a process
that runs the card (`openscws up`, `openscws card`) holds an advisory lock on
``<image>/running.lock`` (fcntl.flock, exclusive, never waiting) for as long as it runs, with
its pid written inside. The kernel drops the lock when the process ends, however it ends, so a
crash leaves no stale lock. Commands that only provision the image (`openscws content put`)
do not take it: their writes are atomic and the running card sees them."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final, Self

from openscws.errors import StoreError

__all__ = ["RUNNING_LOCK", "ImageInUse", "RunningLock"]

RUNNING_LOCK: Final = "running.lock"


class ImageInUse(StoreError):
    """Another process runs this card image."""

    def __init__(self, root: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the card image {root} is already running in {holder}; stop it first, or give "
            "this one its own image (--data-dir)"
        )
        self.pid = pid


class RunningLock:
    """The held lock on a card image; `release` (or process exit) lets it go."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self._fd: int | None = fd

    @classmethod
    def take(cls, root: Path) -> Self:
        """Takes the lock on the image at `root`; ImageInUse when another process holds it."""
        path = Path(root) / RUNNING_LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise ImageInUse(Path(root), pid) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(Path(root), fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
