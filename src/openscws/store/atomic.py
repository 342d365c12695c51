"""Crash-safe file replacement, shared by every on-disk store (card image, issuer CA).

A write goes to a ``.tmp-*`` file in the target's directory, is flushed and fsync'ed, renamed
over the target with os.replace, and the directory is fsync'ed: a process killed at any
instant leaves the target wholly old or wholly new."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

__all__ = ["TMP_PREFIX", "StatKey", "atomic_write", "fsync_dir", "stat_key"]

TMP_PREFIX: Final = ".tmp-"

StatKey = tuple[int, int, int]
"""(st_mtime_ns, st_size, st_ino): changes whenever a file is replaced."""


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: Path, chunks: tuple[bytes, ...], mode: int = 0o644) -> StatKey:
    """Write `chunks` to `target` atomically; returns the new file's stat key."""
    directory = target.parent
    tmp = directory / f"{TMP_PREFIX}{target.name}-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
            key = stat_key(os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
    return key
