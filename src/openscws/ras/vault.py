"""Card keys at rest: AES-256-GCM under one master key kept in a file beside the server's data.

A sealed value is `01 || nonce(12) || ciphertext || tag(16)`. The associated data names the
row and column it belongs to (`card/<iccid>/psk_key`), so a blob copied into another row or
column does not open. Key material never reaches a repr, a log line or an exception message.

Rotation (`openscws admin vault rotate`) uses a second file, `master.key.next`:

1. the new key is written to `master.key.next` (0600, fsync'ed; an existing one is kept: a
   rotation cut short resumes with the same key);
2. one database transaction opens every sealed value and seals it again under the new key;
3. after the commit, `master.key.next` is renamed over `master.key` (atomic), and the old key
   is gone.

While `master.key.next` exists, a vault opens values under either key and seals new ones
under the next key, so a crash at any point leaves every value readable: before the commit
the rows are under the old key (the next key seals only what was written since), after it
under the new one, and running the rotation again finishes it. A running server notices the
files changing (`refresh`) before it seals and when a value does not open."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openscws.errors import ConfigError
from openscws.ras.db import RasDatabase, RasError
from openscws.store.atomic import atomic_write, fsync_dir

__all__ = ["MASTER_KEY_FILE", "NEXT_KEY_FILE", "Vault", "VaultError"]

MASTER_KEY_FILE: Final = "master.key"
NEXT_KEY_FILE: Final = "master.key.next"
"""The key a rotation moves to, until it is renamed over master.key."""
_MAGIC: Final = b"openscws-ras-master-key-v1\n"
_KEY_LENGTH: Final = 32
_VERSION: Final = 0x01
_NONCE: Final = 12


class VaultError(RasError):
    """A master key that cannot be used, or a sealed value that does not open."""


_Stamp = tuple[tuple[int, int, int] | None, ...]


class Vault:
    """Seals and opens values with the master key (and, during a rotation, the next key).
    Build it with `open` or `create`."""

    __slots__ = ("_keys", "_lock", "_stamp", "path")

    def __init__(self, key: bytes, path: Path | None = None, *, next_key: bytes | None = None):
        self.path = path
        """The master key file, or None for a vault in memory only."""
        self._lock = threading.Lock()
        self._stamp: _Stamp = ()
        self._keys = _ring(key, next_key)

    def __repr__(self) -> str:
        return f"Vault({str(self.path) if self.path else '<memory>'!r})"

    @property
    def rotating(self) -> bool:
        """Whether a rotation is under way (a next key is known)."""
        return len(self._keys) > 1

    @classmethod
    def create(cls, directory: Path) -> Vault:
        """Makes `directory/master.key` (mode 0600) if it is missing, else opens it. Safe when
        two processes race: exactly one key is ever published."""
        path = directory / MASTER_KEY_FILE
        if path.exists():
            return cls.open(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _publish(path)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: Path) -> Vault:
        path = directory / MASTER_KEY_FILE
        vault = cls(bytes(_KEY_LENGTH), path)
        vault._load()
        return vault

    def _load(self) -> None:
        assert self.path is not None
        stamp = _stamp(self.path)
        key = _read_key(self.path)
        next_path = self.path.with_name(NEXT_KEY_FILE)
        try:
            next_key: bytes | None = _read_key(next_path)
        except VaultError:
            if next_path.exists():
                raise
            next_key = None
        with self._lock:
            self._keys = _ring(key, next_key)
            self._stamp = stamp

    def refresh(self) -> bool:
        """Reads the key files again when they changed on disk (a rotation by another
        process); True when they had. A vault in memory never changes."""
        if self.path is None or _stamp(self.path) == self._stamp:
            return False
        self._load()
        return True

    # -- rotation (the file side; RasService.reseal does the database side) -----------------

    def begin_rotation(self) -> None:
        """Makes master.key.next (0600) unless a rotation cut short left one, which is then
        used again; from now on this vault seals under it."""
        if self.path is None:
            raise VaultError("a vault in memory cannot rotate its key")
        next_path = self.path.with_name(NEXT_KEY_FILE)
        if not next_path.exists():
            _publish(next_path)
        self._load()

    def finish_rotation(self) -> None:
        """Renames master.key.next over master.key: call it only once every sealed value is
        under the next key and committed. The old key is gone afterwards."""
        if self.path is None:
            raise VaultError("a vault in memory cannot rotate its key")
        next_path = self.path.with_name(NEXT_KEY_FILE)
        _read_key(next_path)  # whole and private, or no swap
        os.replace(next_path, self.path)
        fsync_dir(self.path.parent)
        self._load()

    # -- sealing ------------------------------------------------------------------------------

    def seal(self, plaintext: bytes, where: str) -> bytes:
        """Encrypts `plaintext` for the place named by `where` (e.g. "card/<iccid>/psk_key"),
        under the next key during a rotation, else the master key."""
        nonce = os.urandom(_NONCE)
        aead = self._keys[-1]
        return bytes((_VERSION,)) + nonce + aead.encrypt(nonce, plaintext, where.encode())

    def unseal(self, blob: bytes, where: str) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[0] != _VERSION:
            raise VaultError(f"sealed value for {where} is malformed")
        for attempt in range(2):
            for aead in reversed(self._keys):
                try:
                    return aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], where.encode())
                except InvalidTag:
                    continue
            if attempt or not self.refresh():
                break
        raise VaultError(
            f"sealed value for {where} does not open: another master key, or the row was "
            "altered or moved"
        )

    def sealed_by_next(self, blob: bytes, where: str) -> bool:
        """Whether `blob` opens under the key this vault seals with."""
        if len(blob) < 1 + _NONCE + 16 or blob[0] != _VERSION:
            return False
        try:
            self._keys[-1].decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], where.encode())
        except InvalidTag:
            return False
        return True


def _ring(key: bytes, next_key: bytes | None) -> tuple[AESGCM, ...]:
    for k in (key, next_key):
        if k is not None and len(k) != _KEY_LENGTH:
            raise VaultError(f"the master key must be {_KEY_LENGTH} bytes")
    if next_key is None or next_key == key:
        return (AESGCM(key),)
    return AESGCM(key), AESGCM(next_key)


def _stamp(path: Path) -> _Stamp:
    out: list[tuple[int, int, int] | None] = []
    for p in (path, path.with_name(NEXT_KEY_FILE)):
        try:
            st = p.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _publish(path: Path) -> None:
    """Writes a new random key to `path` (0600) unless a file is there already."""
    directory = path.parent
    # atomic_write gives a whole, fsync'ed file under a private name; link() then
    # publishes it and, unlike rename, never replaces a key another process published.
    staging = directory / f".{path.name}-{os.getpid()}-{os.urandom(4).hex()}"
    body = _MAGIC + os.urandom(_KEY_LENGTH).hex().encode() + b"\n"
    try:
        atomic_write(staging, (body,), mode=0o600)
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        with contextlib.suppress(OSError):
            staging.unlink()
    fsync_dir(directory)


def _read_key(path: Path) -> bytes:
    try:
        st = path.stat()
        raw = path.read_bytes()
    except FileNotFoundError:
        if path.name == MASTER_KEY_FILE:
            raise VaultError(f"no master key at {path}: run `openscws admin init` first") from None
        raise VaultError(f"no key at {path}") from None
    except OSError as exc:
        raise VaultError(f"cannot read the master key {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultError(f"{path} is open to group or others: chmod 600 it")
    if not raw.startswith(_MAGIC):
        raise VaultError(f"{path} is not an openscws master key file")
    try:
        key = bytes.fromhex(raw[len(_MAGIC) :].decode("ascii").strip())
    except ValueError:
        raise VaultError(f"{path} is damaged") from None
    if len(key) != _KEY_LENGTH:
        raise VaultError(f"{path} is damaged")
    return key


def open_server_state[DB: RasDatabase](
    database: type[DB], data_dir: Path, url: str, *, create: bool, server: str, init: str
) -> tuple[Vault, DB]:
    """A server's sealed state: the vault key in `data_dir` and its database at `url`, with
    `create` the folder (0700), a new vault key if none and the schema brought up to date;
    otherwise both must exist already (`init` names the command that makes them) and the
    schema must be current."""
    if create:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        vault = Vault.create(data_dir)
    elif not (data_dir / "master.key").exists():
        raise ConfigError(f"no {server} state in {data_dir}: run `{init}` first")
    else:
        vault = Vault.open(data_dir)
    db = database(url)
    try:
        if create:
            db.upgrade()
        else:
            db.check_current()
    except BaseException:
        db.dispose()
        raise
    return vault, db
