"""What the ``openscws content put|get|ls|rm`` commands do, as functions returning data.

The CLI parses arguments, calls these and prints; nothing here prints or reads argv.

Where `put` stores a SOURCE (the rules of openscws.scws.paths: a trailing "/" names a
directory, never a resource):

- a file, no PATH: ``/<file name>``; PATH ending in "/" (a directory, "/" too): the file
  keeps its name inside it (``put page.html /`` stores /page.html); another PATH: exactly
  there.
- a folder: its files under PATH, which names a directory so must end in "/" (``put site
  /x.html`` is refused: write ``/x.html/`` if that is meant); no PATH: "/". With `delete`,
  resources under PATH that the folder no longer has are removed (a mirror).
- a resource a put would hide is named in `PutResult.warnings`: a stored ``<dir>/index.html``
  while a resource named ``<dir>/`` exists (the SCWS answers ``<dir>/`` with that one)."""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from openscws.errors import NotFoundError, StoreError
from openscws.http.cache import SITE_CACHE_CONTROL_KEY, normalize_cache_control
from openscws.scws.model import Resource, ResourceStore
from openscws.scws.paths import is_directory, validate_path

__all__ = [
    "PutResult",
    "ResourceRow",
    "get_resource",
    "guess_content_type",
    "install_tree",
    "list_resources",
    "put",
    "put_file",
    "remove",
    "set_site_cache_control",
    "site_cache_control",
]

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

# Only Python's built-in table, not /etc/mime.types: the same file gets the same type everywhere.
_MIME: Final = mimetypes.MimeTypes()
_EXTRA_TYPES: Final = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".ico": "image/vnd.microsoft.icon",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".md": "text/markdown",
}
_UTF8_TYPES: Final = frozenset({"application/json", "image/svg+xml", "application/xml"})


def guess_content_type(name: str) -> str:
    """A Content-Type for a file name, from its extension; text types get charset=utf-8.

    Uses Python's built-in table only, so the answer does not depend on the host."""
    suffix = PurePosixPath(name).suffix.lower()
    ctype = _EXTRA_TYPES.get(suffix) or _MIME.guess_type("x" + suffix, strict=False)[0]
    if ctype is None:
        return DEFAULT_CONTENT_TYPE
    if ctype.startswith("text/") or ctype in _UTF8_TYPES:
        return f"{ctype}; charset=utf-8"
    return ctype


@dataclass(frozen=True, slots=True)
class ResourceRow:
    """One line of ``content ls``."""

    path: str
    size: int
    content_type: str
    last_modified: int
    realm: str | None
    etag: str
    cache_control: str | None = None


def _read_local(local_path: Path) -> bytes:
    try:
        return Path(local_path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {local_path}: {exc.strerror or exc}") from exc


def put_file(
    image: ResourceStore,
    local_path: Path,
    url_path: str,
    *,
    content_type: str | None = None,
    realm: str | None = None,
    cache_control: str | None = None,
    now: int,
) -> Resource:
    """Store the local file at `url_path`; returns the stored resource.

    The content type is guessed from `local_path`'s name unless given. `now` (Unix seconds)
    becomes Last-Modified. `cache_control` is the resource's own cache policy (a
    Cache-Control value; None: the site default)."""
    validate_path(url_path)
    policy = _cache_control(cache_control)
    body = _read_local(local_path)
    resource = Resource(
        path=url_path,
        body=body,
        content_type=content_type or guess_content_type(Path(local_path).name),
        last_modified=now,
        realm=realm,
        cache_control=policy,
    )
    image.put(resource)
    return resource


def _cache_control(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_cache_control(value)
    except ValueError as exc:
        raise StoreError(f"bad cache policy: {exc}") from None


def site_cache_control(image: ResourceStore) -> str | None:
    """The site's default cache policy stored in the image, or None (the built-in one)."""
    raw = image.get_value(SITE_CACHE_CONTROL_KEY)
    return raw.decode("ascii") if raw else None


def set_site_cache_control(image: ResourceStore, value: str | None) -> str | None:
    """Store the site's default cache policy (None or "": back to the built-in one); returns
    it in normal form. Resources with their own policy keep it."""
    policy = _cache_control(value) if value else None
    image.set_value(SITE_CACHE_CONTROL_KEY, (policy or "").encode("ascii"))
    return policy


def get_resource(image: ResourceStore, url_path: str) -> Resource:
    """The resource at `url_path`; StoreError if there is none."""
    validate_path(url_path)
    resource = image.get(url_path)
    if resource is None:
        raise MissingResource(f"no resource at {url_path}")
    return resource


class MissingResource(StoreError, NotFoundError):
    """No resource at the path asked for."""


def list_resources(image: ResourceStore, prefix: str = "/") -> list[ResourceRow]:
    """Every resource whose path starts with `prefix`, sorted by path."""
    rows = []
    for path in image.paths():
        if not path.startswith(prefix):
            continue
        resource = image.get(path)
        if resource is None:  # removed meanwhile by another process
            continue
        rows.append(
            ResourceRow(
                path=resource.path,
                size=len(resource.body),
                content_type=resource.content_type,
                last_modified=resource.last_modified,
                realm=resource.realm,
                etag=resource.etag,
                cache_control=resource.cache_control,
            )
        )
    return rows


def remove(image: ResourceStore, url_path: str, *, recursive: bool = False) -> list[str]:
    """Remove the resource at `url_path`, or with `recursive` every resource under it
    (`url_path` taken as a folder). Returns the removed paths; empty if none matched."""
    validate_path(url_path)
    if not recursive:
        return [url_path] if image.delete(url_path) else []
    folder = url_path if url_path.endswith("/") else url_path + "/"
    targets = [p for p in image.paths() if p == url_path or p.startswith(folder)]
    return [p for p in targets if image.delete(p)]


def install_tree(
    image: ResourceStore,
    directory: Path,
    prefix: str = "/",
    *,
    realm: str | None = None,
    cache_control: str | None = None,
    now: int,
) -> list[Resource]:
    """Store every file under `directory` at `prefix` + its relative path, sorted by path.

    Hidden files and folders (name starting with ".") are skipped. All paths are checked
    before anything is written, so a bad file name stores nothing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise StoreError(f"not a directory: {directory}")
    validate_path(prefix)
    base = prefix if prefix.endswith("/") else prefix + "/"
    plan: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(directory)
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            url_path = base + "/".join((*rel.parts, filename))
            plan.append((Path(dirpath) / filename, validate_path(url_path)))
    policy = _cache_control(cache_control)
    return [
        put_file(image, local, url, realm=realm, cache_control=policy, now=now)
        for local, url in plan
    ]


@dataclass(frozen=True, slots=True)
class PutResult:
    """What `put` did: the resources stored, the paths removed (`delete`), and warnings."""

    stored: list[Resource]
    removed: list[str]
    warnings: list[str]


def put(
    image: ResourceStore,
    source: Path,
    path: str | None = None,
    *,
    content_type: str | None = None,
    realm: str | None = None,
    cache_control: str | None = None,
    delete: bool = False,
    now: int,
) -> PutResult:
    """Stores the file or folder `source` at `path` by the module's rules."""
    source = Path(source)
    if path is not None:
        validate_path(path)
    if source.is_dir():
        if content_type is not None:
            raise StoreError("--type names one file's type; a folder's files get theirs by name")
        folder = "/" if path is None else path
        if not is_directory(folder):
            raise StoreError(
                f"{source} is a folder, so PATH names a directory and must end with '/' "
                f"(refused: {path}; did you mean {path}/ ?)"
            )
        stored = install_tree(
            image, source, folder, realm=realm, cache_control=cache_control, now=now
        )
        removed: list[str] = []
        if delete:
            kept = {r.path for r in stored}
            gone = [p for p in image.paths() if p.startswith(folder) and p not in kept]
            removed = [p for p in gone if image.delete(p)]
        return PutResult(stored, removed, _hidden(image, stored))
    if delete:
        raise StoreError("--delete mirrors a folder's deletions; SOURCE is a single file")
    if not source.exists():
        raise StoreError(f"cannot read {source}: no such file or directory")
    if path is None:
        url = "/" + source.name
    elif is_directory(path):
        url = path + source.name
    else:
        url = path
    stored = [
        put_file(
            image,
            source,
            url,
            content_type=content_type,
            realm=realm,
            cache_control=cache_control,
            now=now,
        )
    ]
    return PutResult(stored, [], _hidden(image, stored))


def _hidden(image: ResourceStore, stored: list[Resource]) -> list[str]:
    out = []
    for r in stored:
        if r.path.endswith("/index.html"):
            folder = r.path.removesuffix("index.html")
            if image.get(folder) is not None:
                out.append(
                    f"the resource named {folder} hides {r.path}: the card answers {folder} "
                    f"with it (`openscws content rm {folder}` to serve the index)"
                )
    return out
