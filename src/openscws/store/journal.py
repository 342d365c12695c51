"""Atomic multi-resource transactions on the card image (`CardImage.begin`).

A transaction stages on disk, as a card stages an update in its non-volatile memory: bodies
can be large, so only the list of changes stays in RAM. Layout under the image root::

    journal/COMMIT                  {"txid", "journal"}: names the committed journal being
                                    applied; its atomic creation is the commit point
    journal/tx-<nonce>-<txid>/      one open or committing transaction
        lock                        flock'ed by the live transaction for its whole life
        content/<sha256>            staged resources, same codec as content/
        values/<sha256>             staged values, same codec as values/
        secure/<name>               staged secrets (the admin agent's new keys), 0600
        manifest.json               every change (last word per path, key, realm), at commit
    committed.json                  the ids of the most recent COMMITTED_KEPT commits

Commit, under the image's writer lock: write the manifest, fsync, write journal/COMMIT
atomically (the commit point), then apply: os.replace each staged file over its target, unlink
deletes, rewrite realms.json, add the id to committed.json; then unlink COMMIT and remove the
journal. Applying is idempotent (a staged file already moved is skipped, a delete already done
is a no-op, realm changes are assignments), so it can be re-run after a crash part-way.

Recovery: every writer first rolls forward the journal COMMIT names; opening the image and
each begin/commit also remove dead journals, i.e. those whose lock nobody holds (a killed
process's flocks go with it). A crash at any point thus leaves the whole set of changes
all-old (no COMMIT) or all-new (after roll-forward); each file is whole by os.replace.

Readers take no lock. While COMMIT exists they read through the journal it names: a resource
it puts comes from the staged file, or from content/ once moved there; one it deletes is
absent. So no reader, in this process or another, sees part of a committed transaction, even
while it is applied or before a crashed apply is rolled forward; the price is one stat() of
COMMIT per read. Each read stands alone: a reader reading two resources may get the first
from before a commit and the second from after it, never the first new and the second old.

The nonce in a journal's name keeps a reader holding an old COMMIT from reading the staging
of a later transaction with the same id. A transaction object is not thread-safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from openscws.errors import StoreError
from openscws.scws.model import COMMITTED_KEPT, Realm, Resource
from openscws.store.atomic import TMP_PREFIX, atomic_write, fsync_dir
from openscws.store.cardimage import (
    _SECRET_NAME_CHARS,
    COMMIT_MARKER,
    MAX_SECRET_BYTES,
    VALUE_MAGIC,
    CardImage,
    _decode_value,
    _file_name,
    _frame,
    _read_file,
    _realms_from_doc,
    _realms_to_json,
    _stat,
    _validate_key,
    _validate_realm,
    decode_resource,
    encode_resource,
    validate_path,
)

__all__ = ["CardImageTransaction", "Changes", "Pending", "validate_txid"]

MANIFEST: Final = "manifest.json"
LOCK: Final = "lock"
CONTENT: Final = "content"
VALUES: Final = "values"
SECURE: Final = "secure"
JOURNAL_PREFIX: Final = "tx-"
"""Journal directories are named tx-<16 hex nonce>-<txid>."""

_TXID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE_HEX: Final = 16


def validate_txid(txid: object) -> str:
    """Return `txid` if it is 1 to 64 of [A-Za-z0-9._-], else raise StoreError."""
    if not isinstance(txid, str) or _TXID.fullmatch(txid) is None:
        raise StoreError(f"transaction id must be 1 to 64 of [A-Za-z0-9._-]: {txid!r}")
    return txid


def _journal_txid(name: str) -> str | None:
    """The txid in a journal directory's name, or None if `name` is not one."""
    if not name.startswith(JOURNAL_PREFIX):
        return None
    nonce, sep, txid = name[len(JOURNAL_PREFIX) :].partition("-")
    if not sep or len(nonce) != _NONCE_HEX or _TXID.fullmatch(txid) is None:
        return None
    return txid


# --- the manifest ---------------------------------------------------------------------------


@dataclass(slots=True)
class Changes:
    """A transaction's changes, as its manifest keeps them: the last word per name."""

    txid: str
    resources: dict[str, bool] = field(default_factory=dict)
    """Path -> True (staged under content/) or False (deleted)."""
    values: dict[str, bool] = field(default_factory=dict)
    """Key -> True (staged under values/) or False (deleted)."""
    realms: dict[str, Realm | None] = field(default_factory=dict)
    """Realm name -> the new realm, or None (deleted)."""
    secrets: dict[str, bool] = field(default_factory=dict)
    """Secret name -> True (staged under secure/; secrets are only ever replaced)."""

    def to_json(self) -> bytes:
        put = {n: r for n, r in self.realms.items() if r is not None}
        doc = {
            "txid": self.txid,
            "resources": self.resources,
            "values": self.values,
            "secrets": self.secrets,
            "realms": json.loads(_realms_to_json(put)),
            "realms_deleted": sorted(n for n, r in self.realms.items() if r is None),
        }
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, what: str) -> Changes:
        """Parse a manifest; StoreError for anything malformed."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise StoreError(f"{what} is corrupt: {exc}") from None
        if not isinstance(doc, dict):
            raise StoreError(f"{what} is corrupt: not a JSON object")
        resources, values, deleted = (
            doc.get("resources"),
            doc.get("values"),
            doc.get("realms_deleted"),
        )
        secrets = doc.get("secrets", {})  # manifests of older versions have none
        try:
            txid = validate_txid(doc.get("txid"))
            for flags, check in (
                (resources, validate_path),
                (values, _validate_key),
                (secrets, _validate_secret_name),
            ):
                if not isinstance(flags, dict):
                    raise StoreError("bad change list")
                for name, put in flags.items():
                    check(name)
                    if type(put) is not bool:
                        raise StoreError(f"bad change for {name!r}")
            if not isinstance(deleted, list) or not all(isinstance(n, str) for n in deleted):
                raise StoreError("bad realms_deleted")
        except StoreError as exc:
            raise StoreError(f"{what} is corrupt: {exc}") from None
        assert isinstance(resources, dict)
        assert isinstance(values, dict)
        assert isinstance(secrets, dict)
        if not all(secrets.values()):
            raise StoreError(f"{what} is corrupt: a secret can only be replaced")
        realms: dict[str, Realm | None] = dict(_realms_from_doc(doc.get("realms"), what))
        realms.update(dict.fromkeys(deleted))
        return cls(txid, resources, values, realms, secrets)


def _validate_secret_name(name: str) -> str:
    if not name or name[0] == "." or not _SECRET_NAME_CHARS.issuperset(name):
        raise StoreError(f"invalid secret name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Pending:
    """A committed journal not yet (wholly) applied: readers read through it."""

    name: str
    changes: Changes
    content_dir: Path
    values_dir: Path


def _read_commit(image: CardImage) -> str | None:
    """The journal name in journal/COMMIT, or None if there is no COMMIT."""
    loaded = _read_file(image._commit_file)
    if loaded is None:
        return None
    what = f"card image {image.root}: {COMMIT_MARKER}"
    try:
        doc = json.loads(loaded[1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{what} is corrupt: {exc}") from None
    name = doc.get("journal") if isinstance(doc, dict) else None
    txid = _journal_txid(name) if isinstance(name, str) else None
    if txid is None or txid != doc.get("txid"):
        raise StoreError(f"{what} is corrupt: {doc!r}")
    return name


def _load_changes(directory: Path) -> Changes | None:
    loaded = _read_file(directory / MANIFEST)
    return None if loaded is None else Changes.from_json(loaded[1], str(directory / MANIFEST))


def pending(image: CardImage) -> Pending | None:
    """The transaction being applied, read for readers (cached while COMMIT names it)."""
    name = _read_commit(image)
    if name is None:
        image._pending_view = None
        return None
    view = image._pending_view
    if view is not None and view.name == name:
        return view
    directory = image._journal_dir / name
    changes = _load_changes(directory)
    if changes is None:
        return None  # finished since COMMIT was read: content/ holds it all
    view = Pending(name, changes, directory / CONTENT, directory / VALUES)
    image._pending_view = view
    return view


# --- committed ids --------------------------------------------------------------------------


def _committed_ids(image: CardImage) -> tuple[str, ...]:
    file = image._committed_file
    key = _stat(file)
    if key is None:
        return ()
    cached = image._committed_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    loaded = _read_file(file)
    if loaded is None:
        return ()
    key, data = loaded
    try:
        doc = json.loads(data.decode("utf-8"))
        ids = doc["committed"]
        if not isinstance(ids, list):
            raise TypeError("not a list")
        result = tuple(validate_txid(i) for i in ids)
    except (UnicodeDecodeError, ValueError, RecursionError, TypeError, KeyError) as exc:
        raise StoreError(f"{file} is corrupt: {exc}") from None
    except StoreError as exc:
        raise StoreError(f"{file} is corrupt: {exc}") from None
    image._committed_cache = (key, result)
    return result


def committed(image: CardImage, txid: str) -> bool:
    """Whether `txid` was committed: recorded, or past its commit point and being applied."""
    validate_txid(txid)
    view = image._pending()
    if view is not None and view.changes.txid == txid:
        return True
    return txid in _committed_ids(image)


# --- applying and recovery (all with the image's writer lock held) ---------------------------


def _apply_files(staged_dir: Path, target_dir: Path, changes: dict[str, bool]) -> None:
    for name, put in changes.items():
        target = target_dir / name
        try:
            if put:
                os.replace(staged_dir / name, target)
            else:
                os.unlink(target)
        except FileNotFoundError:
            continue  # moved by an interrupted earlier apply, or nothing to delete
    if changes:
        fsync_dir(target_dir)


def _apply(image: CardImage, directory: Path, changes: Changes) -> None:
    """Make the image hold `changes`. Idempotent, so a crash part-way is rolled forward."""
    resources = {_file_name(p): put for p, put in changes.resources.items()}
    _apply_files(directory / CONTENT, image._content_dir, resources)
    values = {_file_name(k): put for k, put in changes.values.items()}
    _apply_files(directory / VALUES, image._values_dir, values)
    if changes.secrets:
        image._secure_dir.mkdir(mode=0o700, exist_ok=True)
        _apply_files(directory / SECURE, image._secure_dir, changes.secrets)
    if changes.realms:
        current = image._load_realms()
        realms = dict(current)
        for name, realm in changes.realms.items():
            if realm is None:
                realms.pop(name, None)
            else:
                realms[name] = realm
        if realms != current:
            data = _realms_to_json(realms)
            image._realms_key = atomic_write(image._realms_file, (data,), 0o600)
            image._realms = realms
    ids = _committed_ids(image)
    if changes.txid not in ids:
        ids = (*ids, changes.txid)[-COMMITTED_KEPT:]
        doc = {"committed": list(ids)}
        data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")
        image._committed_cache = (atomic_write(image._committed_file, (data,), 0o600), ids)


def _finish(image: CardImage, directory: Path) -> None:
    """After a complete apply: un-name the journal, then remove it."""
    os.unlink(image._commit_file)
    fsync_dir(image._journal_dir)
    image._pending_view = None
    _remove_tree(directory)


def roll_forward(image: CardImage) -> None:
    """Finish the committed transaction named by journal/COMMIT, if any."""
    name = _read_commit(image)
    if name is None:
        return
    directory = image._journal_dir / name
    changes = _load_changes(directory)
    if changes is None or changes.txid != _journal_txid(name):
        raise StoreError(f"card image {image.root} is corrupt: {COMMIT_MARKER} names {name}")
    _apply(image, directory, changes)
    _finish(image, directory)


def _is_live(directory: Path) -> bool:
    """Whether a transaction still owns this journal (holds its lock)."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # half created or half removed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the lock just taken
    return False


def _remove_tree(directory: Path) -> None:
    """Remove a journal directory; what is gone already is fine."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_tree(Path(entry.path))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)


def _sweep(image: CardImage) -> None:
    """Remove the journals of transactions that died uncommitted, and stray temp files."""
    keep = _read_commit(image)
    try:
        entries = list(os.scandir(image._journal_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        elif (
            entry.name != keep
            and _journal_txid(entry.name) is not None
            and not _is_live(Path(entry.path))
        ):
            _remove_tree(Path(entry.path))


def recover(image: CardImage) -> None:
    """Roll forward a committed journal and drop dead ones; the writer lock must be held."""
    roll_forward(image)
    _sweep(image)


@contextlib.contextmanager
def _io(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StoreError(f"cannot {what}: {exc}") from exc


# --- transactions ---------------------------------------------------------------------------


def begin(image: CardImage, txid: str) -> CardImageTransaction:
    """Start a transaction on `image`; see `CardImage.begin`."""
    validate_txid(txid)
    journal = image._journal_dir
    with image._writing(journal):
        journal.mkdir(exist_ok=True)  # images made before transactions have none
        old = image._transactions.pop(txid, None)
        if old is not None:
            old._drop()
        _sweep(image)
        with os.scandir(journal) as entries:
            clash = any(_journal_txid(e.name) == txid for e in entries)
        if clash:
            raise StoreError(f"transaction {txid} is open elsewhere (another process?)")
        directory = journal / f"{JOURNAL_PREFIX}{os.urandom(_NONCE_HEX // 2).hex()}-{txid}"
        os.mkdir(directory, 0o700)
        try:
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.mkdir(directory / CONTENT, 0o700)
                os.mkdir(directory / VALUES, 0o700)
                os.mkdir(directory / SECURE, 0o700)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            _remove_tree(directory)
            raise
        transaction = CardImageTransaction(image, txid, directory, fd)
        image._transactions[txid] = transaction
    return transaction


class CardImageTransaction:
    """A `StoreTransaction` on a `CardImage`, staged under journal/; use `CardImage.begin`.

    Puts are written (and fsync'ed) to the journal at once; reads see the staged changes over
    the image. Every method raises RuntimeError once the transaction is finished."""

    def __init__(self, image: CardImage, txid: str, directory: Path, lock_fd: int) -> None:
        self._image = image
        self._txid = txid
        self._dir = directory
        self._content = directory / CONTENT
        self._values = directory / VALUES
        self._changes = Changes(txid)
        self._done = False
        # Closing the fd is what marks the journal dead: also when the object is dropped.
        self._release = weakref.finalize(self, os.close, lock_fd)

    def __repr__(self) -> str:
        state = "finished" if self._done else "open"
        return f"CardImageTransaction({self._txid!r}, {state})"

    @property
    def txid(self) -> str:
        return self._txid

    def _check(self) -> None:
        if self._done:
            raise RuntimeError(f"transaction {self._txid} is finished")

    def _forget(self) -> None:
        """Finished: release the journal's lock; called with the image's thread lock held."""
        self._done = True
        self._release()
        if self._image._transactions.get(self._txid) is self:
            del self._image._transactions[self._txid]

    def _drop(self) -> None:
        """Superseded by a new transaction with the same id (writer lock held)."""
        _remove_tree(self._dir)
        self._forget()

    # resources

    def get(self, path: str) -> Resource | None:
        self._check()
        validate_path(path)
        staged = self._changes.resources.get(path)
        if staged is None:
            return self._image.get(path)
        if not staged:
            return None
        file = self._content / _file_name(path)
        loaded = _read_file(file)
        if loaded is None:
            raise StoreError(f"staged file {file} is missing")
        return decode_resource(loaded[1], f"staged file {file}")

    def put(self, resource: Resource) -> None:
        self._check()
        head = encode_resource(resource)  # validates
        with _io(f"stage {resource.path!r}"):
            atomic_write(self._content / _file_name(resource.path), (head, resource.body))
        self._changes.resources[resource.path] = True

    def _unstage(self, directory: Path, name: str) -> None:
        with _io(f"drop staged {name}"), contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)

    def delete(self, path: str) -> bool:
        existed = self.get(path) is not None  # checks and validates
        if self._changes.resources.get(path):
            self._unstage(self._content, _file_name(path))
        self._changes.resources[path] = False
        return existed

    def delete_tree(self, prefix: str) -> int:
        """Delete every resource whose path starts with `prefix` (absolute, ending in "/")."""
        if not isinstance(prefix, str) or not prefix.startswith("/") or not prefix.endswith("/"):
            raise StoreError(f"tree prefix must be absolute and end in '/': {prefix!r}")
        doomed = [p for p in self.paths() if p.startswith(prefix)]
        for path in doomed:
            if self._changes.resources.get(path):
                self._unstage(self._content, _file_name(path))
            self._changes.resources[path] = False
        return len(doomed)

    def paths(self) -> list[str]:
        self._check()
        live = set(self._image.paths())
        for path, staged in self._changes.resources.items():
            if staged:
                live.add(path)
            else:
                live.discard(path)
        return sorted(live)

    # realms

    def realm(self, name: str) -> Realm | None:
        self._check()
        if name in self._changes.realms:
            return self._changes.realms[name]
        return self._image.realm(name)

    def put_realm(self, realm: Realm) -> None:
        self._check()
        _validate_realm(realm)
        # A copy: the manifest holds what was put, whatever the caller does to `users` later.
        self._changes.realms[realm.name] = Realm(
            realm.name, dict(realm.users), realm.schemes, realm.basic_https_only
        )

    def delete_realm(self, name: str) -> bool:
        existed = self.realm(name) is not None
        self._changes.realms[name] = None
        return existed

    # application values

    def get_value(self, key: str) -> bytes | None:
        self._check()
        staged = self._changes.values.get(_validate_key(key))
        if staged is None:
            return self._image.get_value(key)
        if not staged:
            return None
        file = self._values / _file_name(key)
        loaded = _read_file(file)
        if loaded is None:
            raise StoreError(f"staged file {file} is missing")
        return _decode_value(loaded[1], f"staged file {file}")[1]

    def set_value(self, key: str, value: bytes) -> None:
        self._check()
        _validate_key(key)
        if not isinstance(value, bytes):
            raise StoreError(f"value must be bytes, not {type(value).__name__}")
        head = _frame(VALUE_MAGIC, {"key": key, "length": len(value)})
        with _io(f"stage value {key!r}"):
            atomic_write(self._values / _file_name(key), (head, value), 0o600)
        self._changes.values[key] = True

    def delete_value(self, key: str) -> bool:
        existed = self.get_value(key) is not None  # checks and validates
        if self._changes.values.get(key):
            self._unstage(self._values, _file_name(key))
        self._changes.values[key] = False
        return existed

    # secrets (the card's secure area): replaced together with the rest, or not at all

    def get_secret(self, name: str) -> bytes | None:
        self._check()
        if self._changes.secrets.get(_validate_secret_name(name)):
            loaded = _read_file(self._dir / SECURE / name)
            if loaded is None:
                raise StoreError(f"staged secret {name!r} is missing")
            return loaded[1]
        return self._image.get_secret(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self._check()
        _validate_secret_name(name)
        if not isinstance(data, bytes) or len(data) > MAX_SECRET_BYTES:
            raise StoreError(f"secret {name!r} must be bytes of at most {MAX_SECRET_BYTES}")
        secure = self._dir / SECURE
        with _io(f"stage secret {name!r}"):
            secure.mkdir(mode=0o700, exist_ok=True)  # journals of older versions lack it
            atomic_write(secure / name, (data,), 0o600)
        self._changes.secrets[name] = True

    # the end

    def commit(self) -> None:
        """Apply every staged change at once, durably; records the id as committed.

        A StoreError raised before the commit point leaves the transaction open (abort it or
        retry); one raised after it means committed (`CardImage.committed` says so, readers
        see it) but not wholly applied: the image's next writer finishes the apply."""
        self._check()
        image = self._image
        manifest = self._changes.to_json()
        marker = json.dumps({"txid": self._txid, "journal": self._dir.name}).encode()
        with image._writing(image._journal_dir):  # rolls forward an earlier commit first
            try:
                _sweep(image)
                atomic_write(self._dir / MANIFEST, (manifest,), 0o600)
                fsync_dir(image._journal_dir)  # this journal's own entry, before COMMIT
                try:
                    atomic_write(image._commit_file, (marker,), 0o600)  # the commit point
                except OSError:
                    if _read_commit(image) != self._dir.name:
                        raise  # not committed: still open
                self._done = True
                _apply(image, self._dir, self._changes)
                _finish(image, self._dir)
            finally:
                if self._done:
                    self._forget()

    def abort(self) -> None:
        """Drop every staged change; a no-op on a finished transaction."""
        if self._done:
            return
        image = self._image
        with image._writing():
            try:
                _remove_tree(self._dir)
            finally:
                self._forget()
