"""A folder mirrored into a card image: what `openscws dev` applies on every change.

`scan` lists the folder's files as the card would serve them (the rules of
`openscws.store.content.install_tree`: each file at "/" + its relative path, hidden files and
folders skipped, editor backups ending in "~" too). `DevMirror.sync` makes the image's
resources equal to the folder's: adds, changes and deletions, all of one sync in one
transaction of the image (`CardImage.begin`), so a reader (the card serving a page) sees
either the site before the sync or after it, and a process killed at any instant leaves the
image consistent: the next start finishes or drops the transaction and syncs again.

A sync compares bodies and content types, not timestamps: saving a file unchanged changes
nothing, and the image's Last-Modified is the file's modification time."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openscws.errors import StoreError
from openscws.scws.model import Resource
from openscws.scws.paths import path_problem
from openscws.scws.sitecheck import SiteFile, SiteProblem, check_site, format_size
from openscws.store.cardimage import CardImage
from openscws.store.content import guess_content_type

__all__ = ["DevChange", "DevMirror", "LocalFile", "check_folder", "scan"]


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One file of the folder: where the card serves it, where it is, how big it is."""

    path: str
    local: Path
    size: int


@dataclass(frozen=True, slots=True)
class DevChange:
    """One change a sync applied to the image."""

    kind: Literal["added", "changed", "deleted"]
    path: str
    size: int = 0

    def __str__(self) -> str:
        if self.kind == "deleted":
            return f"deleted {self.path}"
        return f"{self.kind} {self.path} ({format_size(self.size)})"


def _visible(name: str) -> bool:
    return not name.startswith(".") and not name.endswith("~")


def _walk(directory: Path) -> Iterator[LocalFile]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        rel = Path(dirpath).relative_to(directory)
        for name in sorted(filenames):
            if not _visible(name):
                continue
            local = Path(dirpath) / name
            try:
                st = local.stat()
            except FileNotFoundError:
                continue  # gone since the listing: the next sync sees that
            if not local.is_file():
                continue
            yield LocalFile("/" + "/".join((*rel.parts, name)), local, st.st_size)


def scan(directory: Path) -> list[LocalFile]:
    """Every file the folder serves, sorted by path (paths the card refuses included: see
    `check_folder`)."""
    if not directory.is_dir():
        raise StoreError(f"not a directory: {directory}")
    return sorted(_walk(directory), key=lambda f: f.path)


def check_folder(files: list[LocalFile], *, capacity: int, max_resource: int) -> list[SiteProblem]:
    """`openscws.scws.sitecheck.check_site` on a scanned folder."""
    return check_site(
        (SiteFile(f.path, f.size) for f in files), capacity=capacity, max_resource=max_resource
    )


class DevMirror:
    """Keeps `image`'s resources equal to `directory`'s files (the image is the mirror's
    alone: resources the folder does not have are deleted)."""

    _ids = itertools.count(1)

    def __init__(self, image: CardImage, directory: Path) -> None:
        self.image = image
        self.directory = directory
        self.files: list[LocalFile] = []
        """The folder as the last sync saw it."""

    def sync(self) -> list[DevChange]:
        """Apply the folder's current state to the image, in one transaction; returns what
        changed (nothing: no transaction is committed)."""
        image = self.image
        self.files = files = scan(self.directory)
        txid = f"dev-{os.getpid()}-{next(self._ids)}"
        transaction = image.begin(txid)
        changes: list[DevChange] = []
        try:
            seen: set[str] = set()
            for f in files:
                if path_problem(f.path) is not None:
                    continue
                try:
                    body = f.local.read_bytes()
                    mtime = int(f.local.stat().st_mtime)
                except FileNotFoundError:
                    continue  # deleted meanwhile: deleted below, if it was stored
                except OSError as exc:
                    raise StoreError(f"cannot read {f.local}: {exc.strerror or exc}") from exc
                seen.add(f.path)
                content_type = guess_content_type(f.local.name)
                old = image.get(f.path)
                if old is not None and old.body == body and old.content_type == content_type:
                    continue
                transaction.put(Resource(f.path, body, content_type, last_modified=mtime))
                changes.append(DevChange("added" if old is None else "changed", f.path, len(body)))
            for path in image.paths():
                if path not in seen:
                    transaction.delete(path)
                    changes.append(DevChange("deleted", path))
            if changes:
                transaction.commit()
            else:
                transaction.abort()
        except BaseException:
            transaction.abort()
            raise
        changes.sort(key=lambda c: c.path)
        return changes
