"""The demo site a fresh card image serves: a home page, a stylesheet, a picture of the card,
and a page in the "operator" realm.

The files are package data under ``site/``. The realm's credentials, user ``admin`` and
password ``scws``, are a public demo credential: replace them on any card that matters."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final

from openscws.scws.model import Realm, Resource, ResourceStore

__all__ = ["DEMO_PASSWORD", "DEMO_REALM", "DEMO_USER", "demo_files", "install_demo"]

DEMO_REALM: Final = "operator"
DEMO_USER: Final = "admin"
DEMO_PASSWORD: Final = "scws"
"""Public demo credential, printed in the demo site itself."""

PROTECTED_PREFIX: Final = "/private/"
"""Demo files under this path are put in DEMO_REALM."""

_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found += _walk(entry, f"{prefix}{entry.name}/")
        elif entry.is_file():
            found.append((f"{prefix}{entry.name}", entry))
    return found


def demo_files() -> dict[str, bytes]:
    """URL path to body, for every file of the demo site."""
    site = files(__name__).joinpath("site")
    return {path: entry.read_bytes() for path, entry in sorted(_walk(site, "/"))}


def install_demo(image: ResourceStore, now: int) -> int:
    """Install the demo site and the "operator" realm into a card image that has no
    /index.html yet; returns how many resources were stored (0 if it already had one).

    `image` is any ResourceStore (in practice an openscws.store.CardImage); `now` (Unix
    seconds) becomes each file's Last-Modified."""
    if image.get("/index.html") is not None:
        return 0
    image.put_realm(Realm(name=DEMO_REALM, users={DEMO_USER: DEMO_PASSWORD}))
    count = 0
    # /index.html last: it marks a complete install, so an interrupted one is redone.
    for path, body in sorted(demo_files().items(), key=lambda item: item[0] == "/index.html"):
        suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
        image.put(
            Resource(
                path=path,
                body=body,
                content_type=_CONTENT_TYPES.get(suffix, "application/octet-stream"),
                last_modified=now,
                realm=DEMO_REALM if path.startswith(PROTECTED_PREFIX) else None,
            )
        )
        count += 1
    return count
