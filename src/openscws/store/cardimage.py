"""The virtual UICC's persistent image: a data directory that survives restarts and crashes.

Layout under the image root::

    card.json            CardMeta as JSON (format version, ICCID, IMSI, creation time)
    realms.json          every protection realm, rewritten whole on change
    content/<sha256>     one file per resource: magic, header length, JSON header, body
    values/<sha256>      one file per application value: same codec, header {"key": ...}
    secure/<name>        the card's secrets (key pair, device certificate chain, PSK table,
                         key-use policy): directory 0700, files 0600, read only through
                         `openscws.uicc.keystore`
    lock                 taken with fcntl.flock(LOCK_EX) by every writer
    journal/             transactions staged and being committed (see openscws.store.journal)
    committed.json       ids of the most recent committed transactions

File names under content/ and values/ are the SHA-256 of the UTF-8 path or key, so any path
maps to a safe name and the header says which path the file holds.

Every write goes to a ``.tmp-*`` file in the same directory, is flushed and fsync'ed, renamed
over the target with os.replace and the directory is fsync'ed: a process killed at any instant
leaves each file wholly old or wholly new. Readers take no lock and skip ``.tmp-*`` files;
writers remove stray ones (from a killed writer) while they hold the lock.

Reads are cached in memory, keyed by the file's (st_mtime_ns, st_size, st_ino): a get() costs
one stat() when nothing changed, and sees at once what another process (the ``content put``
CLI) wrote, since os.replace always brings a new inode.

Transactions (`CardImage.begin`) stage on disk under journal/ and are applied under the writer
lock. While a committed transaction is being applied, readers read through its journal, so
they never see part of it; every writer first finishes (rolls forward) such a transaction.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from openscws.errors import StoreError
from openscws.http.cache import normalize_cache_control
from openscws.scws.model import Realm, Resource
from openscws.scws.paths import MAX_PATH_BYTES, validate_path
from openscws.store.atomic import TMP_PREFIX
from openscws.store.atomic import StatKey as _StatKey
from openscws.store.atomic import atomic_write as _atomic_write
from openscws.store.atomic import fsync_dir as _fsync_dir
from openscws.store.atomic import stat_key as _stat_key

# journal builds on this module's codec, so it is imported where used, not here.
if TYPE_CHECKING:
    from openscws.scws.model import TransactionalStore
    from openscws.store.journal import CardImageTransaction, Pending

__all__ = [
    "FORMAT_VERSION",
    "MAX_PATH_BYTES",
    "CardImage",
    "CardMeta",
    "decode_resource",
    "encode_resource",
    "validate_path",
]

FORMAT_VERSION: Final = 1
MAX_KEY_BYTES: Final = 256
MAX_HEADER_BYTES: Final = 64 * 1024

CONTENT_MAGIC: Final = b"OSCWSRES1\n"
"""First bytes of a content file; then a 4-byte big-endian header length, the header, the body."""
VALUE_MAGIC: Final = b"OSCWSVAL1\n"
"""First bytes of a value file; same framing, header {"key": ..., "length": ...}."""

JOURNAL_DIR: Final = "journal"
"""Transactions' staging directories and the commit marker (openscws.store.journal)."""
COMMIT_MARKER: Final = "COMMIT"
"""In journal/: names the committed transaction being applied; its creation commits."""
COMMITTED_FILE: Final = "committed.json"
"""The ids of the most recent committed transactions (scws.model.COMMITTED_KEPT)."""

_SECRET_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
MAX_SECRET_BYTES: Final = 1024 * 1024
_LEN: Final = struct.Struct(">I")


# --- validation ---------------------------------------------------------------------------


def _validate_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise StoreError(f"value key must be a non-empty string: {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise StoreError(f"value key is not valid Unicode: {key!r}") from None
    if size > MAX_KEY_BYTES or "\x00" in key:
        raise StoreError(f"value key too long or contains NUL: {key[:40]!r}")
    return key


def _validate_token(what: str, value: object, *, allow_empty: bool = False) -> str:
    """A header-safe string: no control characters (which would allow header injection)."""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise StoreError(f"{what} must be a non-empty string: {value!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise StoreError(f"{what} contains control characters: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{what} is not valid Unicode: {value!r}") from None
    return value


def _validate_realm(realm: Realm) -> None:
    _validate_token("realm name", realm.name)
    for user in realm.users:
        _validate_token("user name", user)
    for scheme in realm.schemes:
        _validate_token("auth scheme", scheme)


def _validate_resource(resource: Resource) -> None:
    validate_path(resource.path)
    _validate_token("content type", resource.content_type)
    _validate_token("etag", resource.etag)
    if resource.realm is not None:
        _validate_token("realm name", resource.realm)
    if resource.content_encoding is not None:
        _validate_token("content encoding", resource.content_encoding)
    if resource.content_language is not None:
        _validate_token("content language", resource.content_language)
    if resource.cache_control is not None:
        _validate_cache_control(resource.cache_control)
    lm = resource.last_modified
    if type(lm) is not int or lm < 0:
        raise StoreError(f"last_modified must be a non-negative int: {lm!r}")
    if not isinstance(resource.body, bytes):
        raise StoreError(f"resource body must be bytes, not {type(resource.body).__name__}")


def _validate_cache_control(value: object) -> str:
    if not isinstance(value, str):
        raise StoreError(f"cache control must be a string: {value!r}")
    try:
        normal = normalize_cache_control(value)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    if normal != value:
        raise StoreError(f"cache control not in normal form: {value!r} (use {normal!r})")
    return value


# --- file codec -------------------------------------------------------------------------


def _frame(magic: bytes, header: dict[str, Any]) -> bytes:
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return magic + _LEN.pack(len(head)) + head


def _unframe(magic: bytes, data: bytes, what: str) -> tuple[dict[str, Any], memoryview]:
    """Split a file into its JSON header (a dict) and body; StoreError on anything else."""
    if not data.startswith(magic):
        raise StoreError(f"{what}: bad magic {data[: len(magic)]!r}")
    start = len(magic) + _LEN.size
    if len(data) < start:
        raise StoreError(f"{what}: truncated header length")
    (head_len,) = _LEN.unpack_from(data, len(magic))
    if head_len > MAX_HEADER_BYTES or start + head_len > len(data):
        raise StoreError(f"{what}: header length {head_len} out of range")
    try:
        header = json.loads(data[start : start + head_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{what}: header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise StoreError(f"{what}: header is not a JSON object")
    body = memoryview(data)[start + head_len :]
    length = header.get("length")
    if type(length) is not int or length != len(body):
        raise StoreError(f"{what}: header length {length!r} does not match body ({len(body)})")
    return header, body


def encode_resource(resource: Resource) -> bytes:
    """The head of a content file (magic, header length, header); the body follows it."""
    _validate_resource(resource)
    header: dict[str, Any] = {
        "path": resource.path,
        "content_type": resource.content_type,
        "last_modified": resource.last_modified,
        "realm": resource.realm,
        "etag": resource.etag,
        "length": len(resource.body),
    }
    # Only when set: files without them stay byte-identical to the first format.
    if resource.content_encoding is not None:
        header["content_encoding"] = resource.content_encoding
    if resource.content_language is not None:
        header["content_language"] = resource.content_language
    if resource.cache_control is not None:
        header["cache_control"] = resource.cache_control
    return _frame(CONTENT_MAGIC, header)


def decode_resource(data: bytes, what: str = "content file") -> Resource:
    """Decode a whole content file; any malformation raises StoreError."""
    header, body = _unframe(CONTENT_MAGIC, data, what)
    path = header.get("path")
    try:
        validate_path(path)
        content_type = _validate_token("content type", header.get("content_type"))
        etag = _validate_token("etag", header.get("etag"))
        realm = header.get("realm")
        if realm is not None:
            _validate_token("realm name", realm)
        encoding = header.get("content_encoding")  # absent in older files
        if encoding is not None:
            _validate_token("content encoding", encoding)
        language = header.get("content_language")
        if language is not None:
            _validate_token("content language", language)
        cache_control = header.get("cache_control")  # absent in older files
        if cache_control is not None:
            _validate_cache_control(cache_control)
    except StoreError as exc:
        raise StoreError(f"{what}: {exc}") from None
    last_modified = header.get("last_modified")
    if type(last_modified) is not int or last_modified < 0:
        raise StoreError(f"{what}: bad last_modified {last_modified!r}")
    assert isinstance(path, str)
    return Resource(
        path=path,
        body=bytes(body),
        content_type=content_type,
        last_modified=last_modified,
        realm=realm,
        etag=etag,
        content_encoding=encoding,
        content_language=language,
        cache_control=cache_control,
    )


def _decode_value(data: bytes, what: str) -> tuple[str, bytes]:
    header, body = _unframe(VALUE_MAGIC, data, what)
    key = header.get("key")
    try:
        _validate_key(key)
    except StoreError as exc:
        raise StoreError(f"{what}: {exc}") from None
    assert isinstance(key, str)
    return key, bytes(body)


def _file_name(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


# --- metadata -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardMeta:
    """Identity of the virtual card, kept in card.json."""

    iccid: str
    """ICCID (ITU-T E.118), 19 or 20 decimal digits."""
    imsi: str | None = None
    """IMSI (3GPP TS 23.003), 6 to 15 decimal digits, or None."""
    created: int = 0
    """Unix seconds when the image was created."""
    format_version: int = FORMAT_VERSION
    """Version of this on-disk layout."""

    def __post_init__(self) -> None:
        if not (isinstance(self.iccid, str) and self.iccid.isascii() and self.iccid.isdigit()):
            raise StoreError(f"ICCID must be decimal digits: {self.iccid!r}")
        if len(self.iccid) not in (19, 20):
            raise StoreError(f"ICCID must have 19 or 20 digits, not {len(self.iccid)}")
        if self.imsi is not None and not (
            isinstance(self.imsi, str)
            and self.imsi.isascii()
            and self.imsi.isdigit()
            and 6 <= len(self.imsi) <= 15
        ):
            raise StoreError(f"IMSI must be 6 to 15 decimal digits: {self.imsi!r}")
        if type(self.created) is not int or self.created < 0:
            raise StoreError(f"created must be non-negative Unix seconds: {self.created!r}")
        if self.format_version != FORMAT_VERSION:
            raise StoreError(
                f"unsupported card image format {self.format_version!r} "
                f"(this openscws reads format {FORMAT_VERSION})"
            )

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "iccid": self.iccid,
            "imsi": self.imsi,
            "created": self.created,
        }
        return (json.dumps(doc, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, what: str = "card.json") -> CardMeta:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise StoreError(f"{what} is corrupt: {exc}") from None
        if not isinstance(doc, dict):
            raise StoreError(f"{what} is corrupt: not a JSON object")
        try:
            return cls(
                iccid=doc["iccid"],
                imsi=doc.get("imsi"),
                created=doc.get("created", 0),
                format_version=doc["format_version"],
            )
        except KeyError as exc:
            raise StoreError(f"{what} is corrupt: missing {exc}") from None
        except StoreError as exc:
            raise StoreError(f"{what}: {exc}") from None


def _realms_to_json(realms: dict[str, Realm]) -> bytes:
    doc = {
        name: {"users": dict(realm.users), "schemes": list(realm.schemes)}
        | ({"basic_https_only": True} if realm.basic_https_only else {})
        for name, realm in sorted(realms.items())
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _realms_from_json(data: bytes, what: str) -> dict[str, Realm]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{what} is corrupt: {exc}") from None
    return _realms_from_doc(doc, what)


def _realms_from_doc(doc: object, what: str) -> dict[str, Realm]:
    """Realms from parsed JSON shaped like realms.json (also used by journal manifests)."""
    if not isinstance(doc, dict):
        raise StoreError(f"{what} is corrupt: not a JSON object")
    realms: dict[str, Realm] = {}
    for name, entry in doc.items():
        users = entry.get("users") if isinstance(entry, dict) else None
        schemes = entry.get("schemes") if isinstance(entry, dict) else None
        if (
            not isinstance(users, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in users.items())
            or not isinstance(schemes, list)
            or not all(isinstance(s, str) for s in schemes)
        ):
            raise StoreError(f"{what} is corrupt: bad entry for realm {name!r}")
        https_only = entry.get("basic_https_only", False)
        if not isinstance(https_only, bool):
            raise StoreError(f"{what} is corrupt: bad basic_https_only for realm {name!r}")
        realms[name] = Realm(
            name=name, users=dict(users), schemes=tuple(schemes), basic_https_only=https_only
        )
    return realms


# --- low-level file operations ----------------------------------------------------------


def _read_file(path: Path) -> tuple[_StatKey, bytes] | None:
    """The file's stat key and whole contents, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    return _stat_key(st), data


def _stat(path: Path) -> _StatKey | None:
    try:
        return _stat_key(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot stat {path}: {exc}") from exc


# --- the image ------------------------------------------------------------------------------


class CardImage:
    """A card image directory; implements openscws.scws.model.TransactionalStore.

    Safe to share between processes (writers lock, readers see each rename). Within one
    process, writes through one instance are serialised by a thread lock."""

    def __init__(self, root: Path, meta: CardMeta, meta_key: _StatKey) -> None:
        """Use CardImage.create() or CardImage.open()."""
        self.root = root
        self._content_dir = root / "content"
        self._values_dir = root / "values"
        self._secure_dir = root / "secure"
        self._meta_file = root / "card.json"
        self._realms_file = root / "realms.json"
        self._lock_file = root / "lock"
        self._journal_dir = root / JOURNAL_DIR
        self._commit_file = self._journal_dir / COMMIT_MARKER
        self._commit_path = os.fspath(self._commit_file)
        self._committed_file = root / COMMITTED_FILE
        self._meta = meta
        self._meta_key: _StatKey | None = meta_key
        self._names: dict[str, str] = {}
        self._resources: dict[str, tuple[_StatKey, Resource]] = {}
        self._values: dict[str, tuple[_StatKey, str, bytes]] = {}
        self._realms: dict[str, Realm] = {}
        self._realms_key: _StatKey | None = None
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        # Owned by openscws.store.journal:
        self._pending_view: Pending | None = None
        self._committed_cache: tuple[_StatKey, tuple[str, ...]] | None = None
        self._transactions: weakref.WeakValueDictionary[str, CardImageTransaction] = (
            weakref.WeakValueDictionary()
        )

    # construction

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        iccid: str,
        imsi: str | None = None,
        now: int | None = None,
    ) -> CardImage:
        """Create a new, empty image in `root` (created if needed; must hold no image yet)."""
        root = Path(root)
        created = int(time.time()) if now is None else now
        meta = CardMeta(iccid=iccid, imsi=imsi, created=created)
        try:
            root.mkdir(parents=True, exist_ok=True)
            if (root / "card.json").exists():
                raise StoreError(f"a card image already exists at {root}")
            (root / "content").mkdir(exist_ok=True)
            (root / "values").mkdir(exist_ok=True)
            (root / JOURNAL_DIR).mkdir(exist_ok=True)
            (root / "lock").touch()
            if not (root / "realms.json").exists():
                _atomic_write(root / "realms.json", (_realms_to_json({}),), 0o600)
            # card.json last: its presence marks a complete image.
            key = _atomic_write(root / "card.json", (meta.to_json(),))
        except OSError as exc:
            raise StoreError(f"cannot create card image at {root}: {exc}") from exc
        return cls(root, meta, key)

    @classmethod
    def open(cls, root: Path) -> CardImage:
        """Open an existing image; StoreError if it is missing or corrupt."""
        root = Path(root)
        if not root.is_dir():
            raise StoreError(f"no card image at {root}: not a directory")
        loaded = _read_file(root / "card.json")
        if loaded is None:
            raise StoreError(f"no card image at {root}: card.json is missing")
        key, data = loaded
        meta = CardMeta.from_json(data, str(root / "card.json"))
        for sub in ("content", "values"):
            if not (root / sub).is_dir():
                raise StoreError(f"card image at {root} is corrupt: {sub}/ is missing")
        image = cls(root, meta, key)
        image.realm_names()  # parse realms.json now so corruption shows at open
        image._clean_if_idle()
        return image

    def close(self) -> None:
        """Release the lock file descriptor; the image may still be read afterwards."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CardImage({str(self.root)!r}, iccid={self._meta.iccid!r})"

    # locking and cleaning

    def _open_lock(self) -> int:
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            except OSError as exc:
                raise StoreError(f"cannot open lock file {self._lock_file}: {exc}") from exc
        return self._lock_fd

    @contextlib.contextmanager
    def _writing(self, directory: Path | None = None) -> Iterator[None]:
        """Hold the thread lock and the image's exclusive flock; clean `directory`'s temps.

        First finishes a committed transaction left half-applied (by a crash): a write
        must not be overwritten by rolling that transaction forward later."""
        with self._thread_lock:
            fd = self._open_lock()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if self._commit_exists():
                    from openscws.store import journal

                    journal.roll_forward(self)
                if directory is not None:
                    self._remove_temps(directory)
                yield
            except OSError as exc:
                raise StoreError(f"cannot write card image {self.root}: {exc}") from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _clean_if_idle(self) -> None:
        """Recover transactions and remove stray temp files if no other process is writing
        right now (a busy writer recovers by itself; readers read through a commit)."""
        with self._thread_lock:
            try:
                fd = self._open_lock()
            except StoreError:
                return  # read-only image: nothing to clean, readers skip temps anyway
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            try:
                from openscws.store import journal

                journal.recover(self)
                for directory in (
                    self.root,
                    self._content_dir,
                    self._values_dir,
                    self._secure_dir,
                    self._journal_dir,
                ):
                    self._remove_temps(directory)
            except OSError as exc:
                raise StoreError(f"cannot recover card image {self.root}: {exc}") from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _remove_temps(directory: Path) -> None:
        """Only called with the flock held: no live writer owns a temp file then."""
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    # transactions (openscws.store.journal)

    def _commit_exists(self) -> bool:
        try:
            os.stat(self._commit_path)
        except FileNotFoundError:
            self._pending_view = None
            return False
        except OSError as exc:
            raise StoreError(f"cannot stat {self._commit_path}: {exc}") from exc
        return True

    def _pending(self) -> Pending | None:
        """The committed transaction being applied (or left half-applied by a crash), which
        readers read through; None almost always, for the price of one stat()."""
        if not self._commit_exists():
            return None
        from openscws.store import journal

        return journal.pending(self)

    def begin(self, txid: str) -> CardImageTransaction:
        """Start a transaction staged on disk; an unfinished one with the same id in this
        process is dropped. StoreError for an invalid id (1 to 64 of [A-Za-z0-9._-]) or if a
        transaction with this id is open elsewhere (another process or CardImage instance)."""
        from openscws.store import journal

        return journal.begin(self, txid)

    def committed(self, txid: str) -> bool:
        """Whether transaction `txid` was committed (among the most recent 256)."""
        from openscws.store import journal

        return journal.committed(self, txid)

    # metadata

    @property
    def meta(self) -> CardMeta:
        """The card's identity, re-read if another process changed card.json."""
        key = _stat(self._meta_file)
        if key is None:
            raise StoreError(f"card image at {self.root} lost its card.json")
        if key != self._meta_key:
            loaded = _read_file(self._meta_file)
            if loaded is None:
                raise StoreError(f"card image at {self.root} lost its card.json")
            self._meta_key, data = loaded
            self._meta = CardMeta.from_json(data, str(self._meta_file))
        return self._meta

    def set_meta(self, meta: CardMeta) -> None:
        """Replace card.json atomically."""
        with self._writing(self.root):
            self._meta_key = _atomic_write(self._meta_file, (meta.to_json(),))
            self._meta = meta

    # resources

    def _content_file(self, path: str) -> Path:
        name = self._names.get(path)
        if name is None:
            validate_path(path)
            name = _file_name(path)
            if len(self._names) < 65536:
                self._names[path] = name
        return self._content_dir / name

    def _load(self, file: Path) -> Resource | None:
        """The resource in `file`, from the cache if the file did not change."""
        name = file.name
        key = _stat(file)
        if key is None:
            self._resources.pop(name, None)
            return None
        cached = self._resources.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        loaded = _read_file(file)
        if loaded is None:
            self._resources.pop(name, None)
            return None
        key, data = loaded
        resource = decode_resource(data, f"content file {file}")
        if _file_name(resource.path) != name:
            raise StoreError(f"content file {file} holds {resource.path!r}, not its own path")
        self._resources[name] = (key, resource)
        return resource

    def get(self, path: str) -> Resource | None:
        """The resource at `path`, or None. StoreError for an invalid path or corrupt file."""
        file = self._content_file(path)
        pending = self._pending()
        if pending is not None:
            staged = pending.changes.resources.get(path)
            if staged is False:
                return None
            if staged:
                resource = self._load(pending.content_dir / file.name)
                if resource is not None:
                    return resource
                # Already moved into content/: read it there.
        return self._load(file)

    def put(self, resource: Resource) -> None:
        """Store `resource`, replacing any at its path, atomically."""
        head = encode_resource(resource)  # validates
        file = self._content_file(resource.path)
        with self._writing(self._content_dir):
            key = _atomic_write(file, (head, resource.body))
            self._resources[file.name] = (key, resource)

    def delete(self, path: str) -> bool:
        """Remove the resource at `path`; False if there was none."""
        file = self._content_file(path)
        with self._writing():
            self._resources.pop(file.name, None)
            try:
                os.unlink(file)
            except FileNotFoundError:
                return False
            _fsync_dir(self._content_dir)
        return True

    def paths(self) -> list[str]:
        """Every resource path, sorted."""
        return [r.path for r in self.resources()]

    def resources(self) -> list[Resource]:
        """Every resource, sorted by path (bodies come from the cache or are read once)."""
        try:
            names = [
                e.name for e in os.scandir(self._content_dir) if not e.name.startswith(TMP_PREFIX)
            ]
        except OSError as exc:
            raise StoreError(f"cannot list {self._content_dir}: {exc}") from exc
        pending = self._pending()
        if pending is None:
            found = [r for n in names if (r := self._load(self._content_dir / n)) is not None]
        else:
            found = self._resources_through(pending, names)
        live = {r.path for r in found}
        for stale in [n for n, (_, r) in self._resources.items() if r.path not in live]:
            del self._resources[stale]
        return sorted(found, key=lambda r: r.path)

    def _resources_through(self, pending: Pending, names: list[str]) -> list[Resource]:
        """Every resource as it is once `pending` is applied (`names`: those in content/)."""
        overlay = {_file_name(p): put for p, put in pending.changes.resources.items()}
        present = set(names)
        wanted = [n for n in names if overlay.get(n) is not False]
        wanted += [n for n, put in overlay.items() if put and n not in present]
        found: list[Resource] = []
        for name in wanted:
            resource = self._load(pending.content_dir / name) if overlay.get(name) else None
            if resource is None:  # not staged, or already moved into content/
                resource = self._load(self._content_dir / name)
            if resource is not None:
                found.append(resource)
        return found

    # realms

    def _load_realms(self) -> dict[str, Realm]:
        key = _stat(self._realms_file)
        if key is None:
            self._realms, self._realms_key = {}, None
        elif key != self._realms_key:
            loaded = _read_file(self._realms_file)
            if loaded is None:
                self._realms, self._realms_key = {}, None
            else:
                key, data = loaded
                self._realms = _realms_from_json(data, str(self._realms_file))
                self._realms_key = key
        return self._realms

    def _realms_seen(self) -> dict[str, Realm]:
        """The realms as readers see them: realms.json, and a commit being applied."""
        realms = self._load_realms()
        pending = self._pending()
        if pending is None or not pending.changes.realms:
            return realms
        realms = dict(realms)
        for name, realm in pending.changes.realms.items():
            if realm is None:
                realms.pop(name, None)
            else:
                realms[name] = realm
        return realms

    def realm(self, name: str) -> Realm | None:
        return self._realms_seen().get(name)

    def realm_names(self) -> list[str]:
        return sorted(self._realms_seen())

    def put_realm(self, realm: Realm) -> None:
        """Add or replace a realm (realms.json is rewritten whole, mode 0600)."""
        _validate_realm(realm)
        with self._writing(self.root):
            realms = dict(self._load_realms())
            realms[realm.name] = realm
            self._realms_key = _atomic_write(self._realms_file, (_realms_to_json(realms),), 0o600)
            self._realms = realms

    def delete_realm(self, name: str) -> bool:
        with self._writing(self.root):
            realms = dict(self._load_realms())
            if realms.pop(name, None) is None:
                return False
            self._realms_key = _atomic_write(self._realms_file, (_realms_to_json(realms),), 0o600)
            self._realms = realms
        return True

    # application values

    def get_value(self, key: str) -> bytes | None:
        name = _file_name(_validate_key(key))
        pending = self._pending()
        if pending is not None:
            staged = pending.changes.values.get(key)
            if staged is False:
                return None
            if staged:
                value = self._load_value(pending.values_dir / name, key)
                if value is not None:
                    return value
        return self._load_value(self._values_dir / name, key)

    def _load_value(self, file: Path, key: str) -> bytes | None:
        """The value in `file`, from the cache if the file did not change."""
        stat_key = _stat(file)
        if stat_key is None:
            self._values.pop(key, None)
            return None
        cached = self._values.get(key)
        if cached is not None and cached[0] == stat_key:
            return cached[2]
        loaded = _read_file(file)
        if loaded is None:
            return None
        stat_key, data = loaded
        stored_key, value = _decode_value(data, f"value file {file}")
        if stored_key != key:
            raise StoreError(f"value file {file} holds key {stored_key!r}, not {key!r}")
        self._values[key] = (stat_key, key, value)
        return value

    def set_value(self, key: str, value: bytes) -> None:
        file = self._values_dir / _file_name(_validate_key(key))
        if not isinstance(value, bytes):
            raise StoreError(f"value must be bytes, not {type(value).__name__}")
        head = _frame(VALUE_MAGIC, {"key": key, "length": len(value)})
        with self._writing(self._values_dir):
            stat_key = _atomic_write(file, (head, value), 0o600)
            self._values[key] = (stat_key, key, value)

    def delete_value(self, key: str) -> bool:
        file = self._values_dir / _file_name(_validate_key(key))
        with self._writing():
            self._values.pop(key, None)
            try:
                os.unlink(file)
            except FileNotFoundError:
                return False
            _fsync_dir(self._values_dir)
        return True

    # the secure area (key pair, certificates, PSKs): see openscws.uicc.keystore

    def _secret_file(self, name: str) -> Path:
        if (
            not isinstance(name, str)
            or not name
            or name[0] == "."
            or not _SECRET_NAME_CHARS.issuperset(name)
        ):
            raise StoreError(f"invalid secret name {name!r}")
        return self._secure_dir / name

    def get_secret(self, name: str) -> bytes | None:
        """The secret `name` from secure/, or None. Not cached: secrets are read rarely."""
        loaded = _read_file(self._secret_file(name))
        return None if loaded is None else loaded[1]

    def set_secret(self, name: str, data: bytes) -> None:
        """Store `data` as secure/`name` atomically, mode 0600 in a 0700 directory."""
        file = self._secret_file(name)
        if not isinstance(data, bytes) or len(data) > MAX_SECRET_BYTES:
            raise StoreError(f"secret {name!r} must be bytes of at most {MAX_SECRET_BYTES}")
        with self._writing():
            self._secure_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self._secure_dir, 0o700)
            self._remove_temps(self._secure_dir)
            _atomic_write(file, (data,), 0o600)

    def delete_secret(self, name: str) -> bool:
        file = self._secret_file(name)
        with self._writing():
            try:
                os.unlink(file)
            except FileNotFoundError:
                return False
            _fsync_dir(self._secure_dir)
        return True


if TYPE_CHECKING:

    def _is_transactional_store(image: CardImage) -> TransactionalStore:
        return image  # mypy checks that CardImage conforms
