"""Card applications as plug-ins: the API a dynamic SCWS application is written against.

A card application answers HTTP requests on a URL prefix of the card's site, inside the card:
it gets a parsed `Request` and returns a `Response`, and it may keep small values in the card
image (`Values`). It does no I/O of its own (no files, sockets or clocks: `Context.now` is
the time), so it runs the same on the virtual card, under `openscws dev` and in tests.

Write a class with a `prefix`, the `methods` it takes and a `handle` method::

    from openscws.cardapp import Context, Request, Response

    class Hello:
        prefix = "/hello"
        methods = frozenset({"GET"})

        def handle(self, request: Request, ctx: Context) -> Response:
            n = int(ctx.values.get("count") or b"0") + 1
            ctx.values.set("count", str(n).encode())
            return Response.html(f"<p>Hello, visitor {n}</p>")

and make it known to the card in either of two ways (docs/card-apps.md):

- as a package, with an entry point in the group ``openscws.card_apps`` (its name is the
  application's name, its object the class or a function returning the application);
- by module path, in the settings: ``[card] apps = ["mymodule:Hello"]`` (the module must be
  importable).

The card calls the object with no arguments once at start. An application that raises, or
returns something that is not a `Response`, answers that request with 500 and a log line
naming it; the card keeps serving. Raising `HttpError(404, "...")` answers with that status."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Final, Protocol, runtime_checkable

from openscws.errors import HttpError
from openscws.scws.apps import AppContext, Request, Response
from openscws.scws.model import ResourceStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_KEY",
    "MAX_VALUE",
    "CardApplication",
    "Context",
    "HttpError",
    "LoadedApp",
    "PluginMount",
    "Request",
    "Response",
    "Values",
    "load_card_apps",
]

log = logging.getLogger("openscws.card_apps")

ENTRY_POINT_GROUP: Final = "openscws.card_apps"
MAX_KEY: Final = 128
"""Longest key (characters) of an application's value."""
MAX_VALUE: Final = 16 * 1024
"""Largest value (bytes): the card keeps small state, not files."""
_NAMESPACE: Final = "apps/"


@dataclass(frozen=True, slots=True)
class Values:
    """An application's own small persistent key-value store, kept in the card image (each
    application sees only its own keys). A `set` is durable when it returns. An empty value
    is the same as none."""

    _store: ResourceStore = field(repr=False)
    _namespace: str

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            raise ValueError(f"a value's key is 1 to {MAX_KEY} characters: {key!r}")
        return self._namespace + key

    def get(self, key: str) -> bytes | None:
        """The value of `key`, or None."""
        return self._store.get_value(self._key(key)) or None

    def set(self, key: str, value: bytes) -> None:
        """Store `value` (at most `MAX_VALUE` bytes) under `key`."""
        if not isinstance(value, bytes):
            raise TypeError(f"a value is bytes, not {type(value).__name__}")
        if len(value) > MAX_VALUE:
            raise ValueError(f"a value is at most {MAX_VALUE} bytes, not {len(value)}")
        self._store.set_value(self._key(key), value)

    def delete(self, key: str) -> None:
        """Remove `key`'s value (nothing if it has none)."""
        full = self._key(key)
        remove = getattr(self._store, "delete_value", None)
        if callable(remove):
            remove(full)
        else:
            self._store.set_value(full, b"")


@dataclass(frozen=True, slots=True)
class Context:
    """What an application may use besides the request."""

    values: Values
    """The application's own persistent values."""
    card: Mapping[str, str]
    """Facts about the card ("ICCID", ...)."""
    now: float
    """Unix seconds at which the request completed."""
    prefix: str
    """The URL prefix the application is mounted on ("/guestbook")."""
    name: str
    """The application's name (its entry point's, or its module path)."""


@runtime_checkable
class CardApplication(Protocol):
    """A card application plug-in."""

    @property
    def prefix(self) -> str:
        """The URL prefix it serves: "/app" takes "/app", "/app/..." and "/app?..."."""
        ...

    @property
    def methods(self) -> frozenset[str]:
        """The methods it takes; others get 405. OPTIONS is answered for it; HEAD is passed
        as a GET whose body is dropped."""
        ...

    def handle(self, request: Request, ctx: Context) -> Response:
        """Answer one request (its body already read). May raise `HttpError`."""
        ...


class PluginMount:
    """A `CardApplication` as the site mounts it (`openscws.scws.apps.CardApp`): its values
    namespaced by name, its failures contained (500 and a log line)."""

    def __init__(self, name: str, app: CardApplication) -> None:
        self.name = name
        self.app = app
        self.methods = frozenset(m.upper() for m in app.methods)

    def handle(self, request: Request, ctx: AppContext) -> Response:
        context = Context(
            Values(ctx.store, f"{_NAMESPACE}{self.name}/"), ctx.card, ctx.now, ctx.prefix, self.name
        )
        try:
            response = self.app.handle(request, context)
        except HttpError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plug-in's bug answers 500, the card goes on
            log.error(
                "card application %s failed on %s %s: %s: %s",
                self.name,
                request.method,
                request.path,
                type(exc).__name__,
                exc,
            )
            raise HttpError(500, "application error") from None
        if not isinstance(response, Response):
            log.error(
                "card application %s returned %s, not a Response, for %s %s",
                self.name,
                type(response).__name__,
                request.method,
                request.path,
            )
            raise HttpError(500, "application error")
        return response


@dataclass(frozen=True, slots=True)
class LoadedApp:
    """One plug-in as found at start: mounted (`app`) or not (`error` says why)."""

    name: str
    source: str
    """Where it came from: "entry point <dist> <version>" or "settings card.apps"."""
    target: str
    """The object's "module:attribute"."""
    app: PluginMount | None = None
    prefix: str | None = None
    error: str | None = None


def _resolve(target: str) -> object:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{target!r} is not module:attribute")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _loader(target: str) -> Callable[[], object]:
    return lambda: _resolve(target)


def _make(name: str, source: str, target: str, load: Callable[[], object]) -> LoadedApp:
    try:
        factory = load()
        if not callable(factory):
            raise TypeError(f"{target} is not a class or function")
        app = factory()
        if not isinstance(app, CardApplication):
            raise TypeError(f"{target}() has no prefix, methods and handle(request, ctx)")
        prefix = app.prefix
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"its prefix must be an absolute path: {prefix!r}")
        mount = PluginMount(name, app)
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is reported, the card starts
        log.error(
            "card application %s (%s) not loaded: %s: %s", name, target, type(exc).__name__, exc
        )
        return LoadedApp(name, source, target, error=f"{type(exc).__name__}: {exc}")
    return LoadedApp(name, source, target, mount, prefix.rstrip("/") or "/")


def load_card_apps(
    modules: Iterable[str] = (), *, group: str = ENTRY_POINT_GROUP
) -> list[LoadedApp]:
    """Every card application installed (entry points of `group`) and named in `modules`
    ("module:attribute", from the `card.apps` setting), in that order. One that fails to
    load is returned with its `error` and logged; the others load."""
    found: list[LoadedApp] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        dist = ep.dist
        source = f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point"
        found.append(_make(ep.name, source, ep.value, ep.load))
    for target in modules:
        name = target.replace(":", ".")
        found.append(_make(name, "settings card.apps", target, _loader(target)))
    return found
