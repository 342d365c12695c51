"""Card keys at rest: AES-256-GCM under one master key kept in a file beside the server's data.

A sealed value is `01 || nonce(12) || ciphertext || tag(16)`. The associated data names the
row and column it belongs to (`card/<iccid>/psk_key`), so a blob copied into another row or
column does not open. Key material never reaches a repr, a log line or an exception message."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openscws.ras.db import RasError
from openscws.store.atomic import atomic_write, fsync_dir

__all__ = ["MASTER_KEY_FILE", "Vault", "VaultError"]

MASTER_KEY_FILE: Final = "master.key"
_MAGIC: Final = b"openscws-ras-master-key-v1\n"
_KEY_LENGTH: Final = 32
_VERSION: Final = 0x01
_NONCE: Final = 12


class VaultError(RasError):
    """A master key that cannot be used, or a sealed value that does not open."""


class Vault:
    """Seals and opens values with the master key. Build it with `open` or `create`."""

    __slots__ = ("_aead", "path")

    def __init__(self, key: bytes, path: Path | None = None) -> None:
        if len(key) != _KEY_LENGTH:
            raise VaultError(f"the master key must be {_KEY_LENGTH} bytes")
        self._aead = AESGCM(key)
        self.path = path

    def __repr__(self) -> str:
        return f"Vault({str(self.path) if self.path else '<memory>'!r})"

    @classmethod
    def create(cls, directory: Path) -> Vault:
        """Makes `directory/master.key` (mode 0600) if it is missing, else opens it. Safe when
        two processes race: exactly one key is ever published."""
        path = directory / MASTER_KEY_FILE
        if path.exists():
            return cls.open(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # atomic_write gives a whole, fsync'ed file under a private name; link() then
        # publishes it and, unlike rename, never replaces a key another process published.
        staging = directory / f".{MASTER_KEY_FILE}-{os.getpid()}-{os.urandom(4).hex()}"
        body = _MAGIC + os.urandom(_KEY_LENGTH).hex().encode() + b"\n"
        try:
            atomic_write(staging, (body,), mode=0o600)
            with contextlib.suppress(FileExistsError):
                os.link(staging, path)
        finally:
            with contextlib.suppress(OSError):
                staging.unlink()
        fsync_dir(directory)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: Path) -> Vault:
        path = directory / MASTER_KEY_FILE
        try:
            st = path.stat()
            raw = path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"no master key at {path}: run `openscws admin init` first") from None
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
        return cls(key, path)

    def seal(self, plaintext: bytes, where: str) -> bytes:
        """Encrypts `plaintext` for the place named by `where` (e.g. "card/<iccid>/psk_key")."""
        nonce = os.urandom(_NONCE)
        return bytes((_VERSION,)) + nonce + self._aead.encrypt(nonce, plaintext, where.encode())

    def unseal(self, blob: bytes, where: str) -> bytes:
        if len(blob) < 1 + _NONCE + 16 or blob[0] != _VERSION:
            raise VaultError(f"sealed value for {where} is malformed")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], where.encode())
        except InvalidTag:
            raise VaultError(
                f"sealed value for {where} does not open: another master key, or the row was "
                "altered or moved"
            ) from None
