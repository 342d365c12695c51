"""What the SCWS serves, and the storage interface behind it.

The card image (openscws.store.cardimage) and the in-memory store both implement
`ResourceStore`; the HTTP engine only ever sees this protocol."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Resource:
    """One static resource on the card. `path` is absolute ("/index.html")."""

    path: str
    body: bytes
    content_type: str = "application/octet-stream"
    last_modified: int = 0
    """Unix seconds, whole: HTTP dates have one-second resolution."""
    realm: str | None = None
    """Name of the protection realm, or None for a public resource."""
    etag: str = ""
    """Strong entity tag, quoted. Computed from the body when left empty."""
    content_encoding: str | None = None
    """Content-Encoding set by the admin server (SCWS V1.1), sent back as is on GET."""
    content_language: str | None = None
    """Content-Language set by the admin server (SCWS V1.1), sent back as is on GET."""
    cache_control: str | None = None
    """This resource's cache policy, a Cache-Control value (RFC 9111 §5.2), normalised by
    `openscws.http.cache.normalize_cache_control`; None: the site default."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"resource path must be absolute: {self.path!r}")
        if not self.etag:
            digest = hashlib.sha256(self.body).hexdigest()[:20]
            object.__setattr__(self, "etag", f'"{digest}"')


@dataclass(frozen=True, slots=True)
class Realm:
    """A protection realm: users and their passwords, and the schemes offered."""

    name: str
    users: dict[str, str] = field(default_factory=dict)
    schemes: tuple[str, ...] = ("Digest", "Basic")
    """Offered in this order; Digest challenges are sent for SHA-256 and MD5."""
    basic_https_only: bool = False
    """Basic (the password in the clear) is neither offered nor taken on plain HTTP."""


class ResourceStore(Protocol):
    """Static resources, realms and small persistent values of the card's applications."""

    def get(self, path: str) -> Resource | None: ...

    def put(self, resource: Resource) -> None: ...

    def delete(self, path: str) -> bool: ...

    def paths(self) -> list[str]: ...

    def realm(self, name: str) -> Realm | None: ...

    def put_realm(self, realm: Realm) -> None: ...

    def get_value(self, key: str) -> bytes | None: ...

    def set_value(self, key: str, value: bytes) -> None: ...


class StoreTransaction(Protocol):
    """Changes staged under one transaction id: invisible to readers of the store until
    `commit`, which applies all of them or (on a crash at any point) none. Reads through the
    transaction see the store as it will be after commit."""

    @property
    def txid(self) -> str: ...

    def get(self, path: str) -> Resource | None: ...

    def put(self, resource: Resource) -> None: ...

    def delete(self, path: str) -> bool: ...

    def delete_tree(self, prefix: str) -> int:
        """Delete every resource whose path starts with `prefix` (ending in "/"); the count."""
        ...

    def paths(self) -> list[str]: ...

    def realm(self, name: str) -> Realm | None: ...

    def put_realm(self, realm: Realm) -> None: ...

    def delete_realm(self, name: str) -> bool: ...

    def get_value(self, key: str) -> bytes | None: ...

    def set_value(self, key: str, value: bytes) -> None: ...

    def delete_value(self, key: str) -> bool: ...

    def commit(self) -> None:
        """Apply every staged change at once; durable when it returns. Records `txid` as
        committed. The transaction is finished afterwards."""
        ...

    def abort(self) -> None:
        """Drop every staged change. The transaction is finished afterwards."""
        ...


@runtime_checkable
class SecretTransaction(StoreTransaction, Protocol):
    """A transaction that also replaces files of the card's secure area (the admin agent's
    keys), committed with the rest."""

    def get_secret(self, name: str) -> bytes | None: ...

    def set_secret(self, name: str, data: bytes) -> None: ...


class TransactionalStore(ResourceStore, Protocol):
    """A store whose changes can be grouped: the admin agent's multi-command updates."""

    def begin(self, txid: str) -> StoreTransaction:
        """A new transaction; any earlier unfinished one with the same id is dropped."""
        ...

    def committed(self, txid: str) -> bool:
        """Whether a transaction with this id was committed (the most recent 256 are kept)."""
        ...

    def delete_realm(self, name: str) -> bool: ...

    def delete_value(self, key: str) -> bool: ...


COMMITTED_KEPT = 256
"""Committed transaction ids a store remembers, so a retried session is not applied twice."""


class MemoryStore:
    """A `ResourceStore` held in memory: for tests and for the direct-engine benchmark."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}
        self._realms: dict[str, Realm] = {}
        self._values: dict[str, bytes] = {}
        self._committed: dict[str, None] = {}  # insertion-ordered: oldest first

    def get(self, path: str) -> Resource | None:
        return self._resources.get(path)

    def put(self, resource: Resource) -> None:
        self._resources[resource.path] = resource

    def delete(self, path: str) -> bool:
        return self._resources.pop(path, None) is not None

    def paths(self) -> list[str]:
        return sorted(self._resources)

    def realm(self, name: str) -> Realm | None:
        return self._realms.get(name)

    def put_realm(self, realm: Realm) -> None:
        self._realms[realm.name] = realm

    def get_value(self, key: str) -> bytes | None:
        return self._values.get(key)

    def set_value(self, key: str, value: bytes) -> None:
        self._values[key] = value

    def delete_realm(self, name: str) -> bool:
        return self._realms.pop(name, None) is not None

    def delete_value(self, key: str) -> bool:
        return self._values.pop(key, None) is not None

    def begin(self, txid: str) -> MemoryTransaction:
        return MemoryTransaction(self, txid)

    def committed(self, txid: str) -> bool:
        return txid in self._committed


_GONE = object()
"""Marks a key deleted in a transaction's overlay."""


class MemoryTransaction:
    """A `StoreTransaction` over a `MemoryStore`: overlays applied in one step on commit."""

    def __init__(self, store: MemoryStore, txid: str) -> None:
        self._store = store
        self._txid = txid
        self._resources: dict[str, Resource | object] = {}
        self._realms: dict[str, Realm | object] = {}
        self._values: dict[str, bytes | object] = {}
        self._done = False

    @property
    def txid(self) -> str:
        return self._txid

    def _open(self) -> None:
        if self._done:
            raise RuntimeError(f"transaction {self._txid} is finished")

    def get(self, path: str) -> Resource | None:
        staged = self._resources.get(path)
        if staged is None:
            return self._store.get(path)
        return staged if isinstance(staged, Resource) else None

    def put(self, resource: Resource) -> None:
        self._open()
        self._resources[resource.path] = resource

    def delete(self, path: str) -> bool:
        self._open()
        existed = self.get(path) is not None
        self._resources[path] = _GONE
        return existed

    def delete_tree(self, prefix: str) -> int:
        doomed = [p for p in self.paths() if p.startswith(prefix)]
        for path in doomed:
            self.delete(path)
        return len(doomed)

    def paths(self) -> list[str]:
        live = set(self._store.paths())
        for path, staged in self._resources.items():
            if isinstance(staged, Resource):
                live.add(path)
            else:
                live.discard(path)
        return sorted(live)

    def realm(self, name: str) -> Realm | None:
        staged = self._realms.get(name)
        if staged is None:
            return self._store.realm(name)
        return staged if isinstance(staged, Realm) else None

    def put_realm(self, realm: Realm) -> None:
        self._open()
        self._realms[realm.name] = realm

    def delete_realm(self, name: str) -> bool:
        self._open()
        existed = self.realm(name) is not None
        self._realms[name] = _GONE
        return existed

    def get_value(self, key: str) -> bytes | None:
        staged = self._values.get(key)
        if staged is None:
            return self._store.get_value(key)
        return staged if isinstance(staged, bytes) else None

    def set_value(self, key: str, value: bytes) -> None:
        self._open()
        self._values[key] = value

    def delete_value(self, key: str) -> bool:
        self._open()
        existed = self.get_value(key) is not None
        self._values[key] = _GONE
        return existed

    def commit(self) -> None:
        self._open()
        store = self._store
        for path, resource in self._resources.items():
            if isinstance(resource, Resource):
                store.put(resource)
            else:
                store.delete(path)
        for name, realm in self._realms.items():
            if isinstance(realm, Realm):
                store.put_realm(realm)
            else:
                store.delete_realm(name)
        for key, value in self._values.items():
            if isinstance(value, bytes):
                store.set_value(key, value)
            else:
                store.delete_value(key)
        store._committed[self._txid] = None
        while len(store._committed) > COMMITTED_KEPT:
            del store._committed[next(iter(store._committed))]
        self._done = True

    def abort(self) -> None:
        self._done = True
