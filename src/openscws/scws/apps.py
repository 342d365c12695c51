"""The card application API: what a dynamic SCWS application sees and returns.

An application is registered on a URL prefix with `Site.register_app`. The HTTP engine parses
and de-chunks the request, checks access (realm) and methods, then calls
`CardApp.handle(request, ctx)` once the whole body is in. The application answers with a
`Response` whose body is either `bytes` (sent with Content-Length) or an iterable of `bytes`
chunks (sent chunked to HTTP/1.1 clients, close-delimited to HTTP/1.0 ones). It may raise
`openscws.errors.HttpError` to answer with an error status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from openscws.scws.model import ResourceStore

__all__ = ["AppContext", "CardApp", "Request", "RequestCounters", "Response"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, as an application sees it."""

    method: str
    """Upper-case method token, e.g. "GET"."""
    target: str
    """The request-target exactly as received ("/app/x?y=1"), or "*" for `OPTIONS *`."""
    path: str
    """Percent-decoded absolute path with dot-segments removed ("/app/x")."""
    query: str = ""
    """The raw query, without the "?" ("y=1")."""
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    """Header fields as received: lower-case names, values without surrounding whitespace."""
    body: bytes = b""
    """The request body, de-chunked."""
    http_version: str = "1.1"
    scheme: str = "http"
    user: str | None = None
    """The authenticated user name when the resource is protected by a realm."""

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive); repeated fields joined by ", "."""
        key = name.lower().encode("ascii")
        values = [v for n, v in self.raw_headers if n == key]
        if not values:
            return None
        return b", ".join(values).decode("latin-1")

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Header fields decoded to `str` (names lower-case)."""
        return tuple((n.decode("ascii"), v.decode("latin-1")) for n, v in self.raw_headers)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response. Content-Length, Transfer-Encoding and Connection are set by the
    engine from `body`; any such fields given in `headers` are ignored."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | Iterable[bytes] = b""
    """`bytes` for a body of known length, or an iterable of chunks for a streamed body."""
    reason: str = ""
    """Reason phrase; the standard one for `status` when empty."""

    @classmethod
    def html(
        cls, text: str, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        """A `text/html; charset=utf-8` response."""
        return cls(status, (("Content-Type", "text/html; charset=utf-8"), *headers), text.encode())

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        """A `text/plain; charset=utf-8` response."""
        return cls(status, (("Content-Type", "text/plain; charset=utf-8"), *headers), text.encode())

    @classmethod
    def json(
        cls, text: str, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        """An `application/json` response from already-serialised JSON."""
        return cls(status, (("Content-Type", "application/json"), *headers), text.encode())


@dataclass(slots=True)
class RequestCounters:
    """What a card's site has answered since the card started (kept in RAM, not in the
    image). Every request the site dispatches counts once in `requests`, and in at most one
    of `applications`, `not_modified` and `errors`."""

    started: float | None = None
    """Unix seconds at which the card started serving (the first request's time if the
    shell did not say)."""
    requests: int = 0
    https: int = 0
    """Requests that came over TLS."""
    applications: int = 0
    """Requests handed to a card application."""
    not_modified: int = 0
    """Conditional requests answered 304 Not Modified."""
    errors: int = 0
    """Requests refused with a 4xx or 5xx status by the site or an application."""

    def uptime(self, now: float) -> float:
        """Seconds since `started` (0 before the first request)."""
        return max(0.0, now - self.started) if self.started is not None else 0.0


@dataclass(frozen=True, slots=True)
class AppContext:
    """What an application may use besides the request."""

    store: ResourceStore = field(repr=False)
    card: Mapping[str, str]
    """Facts about the card (ICCID, IMSI, ...), as passed to `Site`."""
    now: float
    """Unix seconds at which the request completed."""
    prefix: str
    """The URL prefix the application is registered on ("/app")."""
    counters: RequestCounters = field(default_factory=RequestCounters)
    """The site's request counters and start time (read them; the site updates them)."""

    def get_value(self, key: str) -> bytes | None:
        """A small persistent value of the card's applications (`ResourceStore.get_value`)."""
        return self.store.get_value(key)

    def set_value(self, key: str, value: bytes) -> None:
        """Store a small persistent value (`ResourceStore.set_value`)."""
        self.store.set_value(key, value)


@runtime_checkable
class CardApp(Protocol):
    """A dynamic card application."""

    @property
    def methods(self) -> frozenset[str]:
        """Methods the application accepts; others get 405 with an Allow header. OPTIONS is
        answered by the engine; HEAD is passed to `handle` when GET is accepted (the engine
        drops the body)."""
        ...

    def handle(self, request: Request, ctx: AppContext) -> Response:
        """Answer one request. May raise `HttpError`."""
        ...
