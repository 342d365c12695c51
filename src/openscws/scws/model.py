"""What the SCWS serves, and the storage interface behind it.

The card image (openscws.store.cardimage) and the in-memory store both implement
`ResourceStore`; the HTTP engine only ever sees this protocol."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol


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


class MemoryStore:
    """A `ResourceStore` held in memory: for tests and for the direct-engine benchmark."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}
        self._realms: dict[str, Realm] = {}
        self._values: dict[str, bytes] = {}

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
