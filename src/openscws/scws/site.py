"""Routing of one card's web site: static resources from the `ResourceStore`, dynamic card
applications on URL prefixes, access control by realm, and conditional requests."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from openscws.errors import HttpError
from openscws.http._dates import format_http_date, parse_http_date
from openscws.http.cache import SITE_CACHE_CONTROL_KEY, effective_cache_control
from openscws.scws.apps import AppContext, CardApp, Request, RequestCounters, Response
from openscws.scws.auth import Authenticator
from openscws.scws.guard import GUESSES, HostPolicy, RealmThrottle
from openscws.scws.model import Realm, Resource, ResourceStore

__all__ = ["KNOWN_METHODS", "STATIC_METHODS", "Handler", "Site"]

logger = logging.getLogger(__name__)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE"})
"""Methods the server knows (RFC 9110 §9); any other method is answered 501."""
STATIC_METHODS = ("GET", "HEAD", "OPTIONS")
_STATIC_ALLOW = ", ".join(STATIC_METHODS)
_SERVER_ALLOW = "GET, HEAD, POST, OPTIONS"

Handler = Callable[[Request, float], Response]
"""Completes a request once its body is in: `handler(request, now)`."""


@dataclass(frozen=True, slots=True)
class _Mount:
    prefix: str
    app: CardApp
    realm: str | None
    allow: frozenset[str]
    allow_header: str


@dataclass(frozen=True, slots=True)
class _StaticEntry:
    resource: Resource
    site_default: str | None  # the site's Cache-Control default this entry was made with
    headers: tuple[tuple[str, str], ...]  # Content-Type[, -Encoding, -Language], validators
    validators: tuple[tuple[str, str], ...]  # ETag[, Last-Modified], Cache-Control (for 304)
    opaque_tag: str  # the ETag without quotes, for If-None-Match


def _etag_matches(header: str, opaque: str) -> bool:
    """If-None-Match against a resource's entity tag, weak comparison (RFC 9110 §13.1.2)."""
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"' and tag[1:-1] == opaque:
            return True
    return False


class Site:
    """One card's web site, shared by all HTTP connections of that card.

    `secret` keys the Digest nonces (random when None); `card` holds facts about the card
    shown to applications (`AppContext.card`); `started` is when the card started serving
    (unix seconds; the first request's time when None), for `counters`."""

    def __init__(
        self,
        store: ResourceStore,
        *,
        server_name: str = "openscws-SCWS",
        secret: bytes | None = None,
        card: Mapping[str, str] | None = None,
        nonce_lifetime: float = 300.0,
        started: float | None = None,
        host_policy: HostPolicy | None = None,
        throttle: RealmThrottle | None = None,
    ) -> None:
        self.store = store
        self.counters = RequestCounters(started=started)
        self.server_name = server_name
        self.card: Mapping[str, str] = dict(card or {})
        self.auth = Authenticator(
            secret if secret is not None else os.urandom(32), nonce_lifetime=nonce_lifetime
        )
        self._mounts: list[_Mount] = []
        self._static: dict[str, _StaticEntry] = {}
        self.host_policy = host_policy
        """Host and Origin checks (`scws.guard`); None: none (a site built for tests)."""
        self.throttle = throttle or RealmThrottle()

    # -- applications -------------------------------------------------------------------------

    def register_app(self, prefix: str, app: CardApp, *, realm: str | None = None) -> None:
        """Serve `app` on `prefix` and everything below it ("/app" takes "/app", "/app/x" and
        "/app?x"). The longest matching prefix wins; applications shadow static resources."""
        if not prefix.startswith("/"):
            raise ValueError(f"application prefix must be absolute: {prefix!r}")
        prefix = prefix.rstrip("/") or "/"
        methods = frozenset(m.upper() for m in app.methods)
        allow = methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        order: list[str] = [
            m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS") if m in allow
        ]
        order += sorted(allow - set(order))
        mount = _Mount(prefix, app, realm, frozenset(allow), ", ".join(order))
        self._mounts = [m for m in self._mounts if m.prefix != prefix] + [mount]
        self._mounts.sort(key=lambda m: len(m.prefix), reverse=True)

    def _mount_for(self, path: str) -> _Mount | None:
        for mount in self._mounts:
            p = mount.prefix
            if path == p or p == "/" or (path.startswith(p) and path[len(p)] == "/"):
                return mount
        return None

    # -- responses ----------------------------------------------------------------------------

    def error_response(self, error: HttpError) -> Response:
        """The response sent for `error`: a short plain-text page and the error's headers."""
        try:
            phrase = HTTPStatus(error.status).phrase
        except ValueError:
            phrase = "Error"
        body = f"{error.status} {phrase}\n"
        if error.status >= 500 or error.status in (400, 401, 403, 404, 405, 501):
            text = body
        else:
            text = body + (error.reason + "\n" if error.reason else "")
        return Response(
            error.status,
            (("Content-Type", "text/plain; charset=utf-8"), *error.headers),
            text.encode(),
        )

    def _check_realm(self, realm_name: str, request: Request, now: float) -> str:
        realm = self.store.realm(realm_name)
        if realm is None:
            logger.warning("realm %r is not configured; refusing %s", realm_name, request.path)
            raise HttpError(403, "realm not configured")
        if realm.basic_https_only and request.scheme != "https" and "Basic" in realm.schemes:
            schemes = tuple(s for s in realm.schemes if s != "Basic")
            if not schemes:
                raise HttpError(403, "this realm takes passwords over HTTPS only")
            realm = Realm(realm.name, realm.users, schemes, realm.basic_https_only)
        authorization = request.header("authorization")
        if authorization is not None:
            self.throttle.check(realm.name, now)
        try:
            return self.auth.authenticate(realm, request.method, request.target, authorization, now)
        except HttpError as e:
            if e.status == 401 and e.reason in GUESSES:
                self.throttle.failed(realm.name, now)
                logger.info("realm %r: failed authentication for %s", realm.name, request.path)
            raise

    def site_cache_control(self) -> str | None:
        """The site's default Cache-Control, from the card image (None: the built-in one)."""
        raw = self.store.get_value(SITE_CACHE_CONTROL_KEY)
        return raw.decode("ascii", "replace") if raw else None

    def _static_entry(self, resource: Resource) -> _StaticEntry:
        site_default = None if resource.cache_control else self.site_cache_control()
        entry = self._static.get(resource.path)
        if entry is not None and entry.resource is resource and entry.site_default == site_default:
            return entry
        validators: tuple[tuple[str, str], ...] = (("ETag", resource.etag),)
        if resource.last_modified > 0:
            validators += (("Last-Modified", format_http_date(resource.last_modified)),)
        # Cache-Control goes on the 304 too (RFC 9110 §15.4.5): the cache refreshes by it.
        policy = effective_cache_control(
            resource.cache_control, site_default, protected=resource.realm is not None
        )
        validators += (("Cache-Control", policy),)
        headers: tuple[tuple[str, str], ...] = (("Content-Type", resource.content_type),)
        if resource.content_encoding is not None:
            headers += (("Content-Encoding", resource.content_encoding),)
        if resource.content_language is not None:
            headers += (("Content-Language", resource.content_language),)
        entry = _StaticEntry(
            resource,
            site_default,
            headers + validators,
            validators,
            resource.etag.removeprefix("W/").strip('"'),
        )
        if len(self._static) >= 512:
            self._static.clear()
        self._static[resource.path] = entry
        return entry

    # -- dispatch -----------------------------------------------------------------------------

    def prepare(self, request: Request, now: float) -> Response | Handler:
        """Decide on a request from its head: either the final `Response` (static resources,
        OPTIONS, errors) or a `Handler` to call once the body is in (applications).

        Raises `HttpError` for 401, 404, 405, 501 and the like. Counts the request in
        `counters`."""
        counters = self.counters
        if counters.started is None:
            counters.started = now
        counters.requests += 1
        if request.scheme == "https":
            counters.https += 1
        try:
            answer = self._prepare(request, now)
        except HttpError:
            counters.errors += 1
            raise
        if isinstance(answer, Response):
            if answer.status == 304:
                counters.not_modified += 1
        else:
            counters.applications += 1
        return answer

    def _prepare(self, request: Request, now: float) -> Response | Handler:
        method = request.method
        if method not in KNOWN_METHODS:
            raise HttpError(501, f"method {method} not implemented")
        guard = self.host_policy
        if guard is not None:
            guard.check_host(request.scheme, request.header("host"), request.http_version)
        path = request.path
        if request.target == "*":
            if method != "OPTIONS":
                raise HttpError(400, "asterisk-form is only for OPTIONS")
            return Response(200, (("Allow", _SERVER_ALLOW),))
        if self._mounts:
            mount = self._mount_for(path)
            if mount is not None:
                return self._prepare_app(mount, request, now)
        store = self.store
        resource = store.get(path)
        if resource is None and path.endswith("/"):
            resource = store.get(path + "index.html")
        if resource is None:
            raise HttpError(404, "no such resource")
        if resource.realm is not None:
            self._check_realm(resource.realm, request, now)
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":
                return Response(200, (("Allow", _STATIC_ALLOW),))
            raise HttpError(405, f"{method} not allowed here", (("Allow", _STATIC_ALLOW),))
        entry = self._static_entry(resource)
        inm = request.header("if-none-match")
        if inm is not None:
            if _etag_matches(inm, entry.opaque_tag):
                return Response(304, entry.validators)
        elif resource.last_modified > 0:
            ims = request.header("if-modified-since")
            if ims is not None:
                since = parse_http_date(ims)
                if since is not None and resource.last_modified <= since:
                    return Response(304, entry.validators)
        return Response(200, entry.headers, resource.body)

    def _prepare_app(self, mount: _Mount, request: Request, now: float) -> Response | Handler:
        method = request.method
        guard = self.host_policy
        if guard is not None:
            guard.check_origin(
                request.scheme, method, request.header("origin"), request.header("host")
            )
        user = self._check_realm(mount.realm, request, now) if mount.realm is not None else None
        if method == "OPTIONS":
            return Response(200, (("Allow", mount.allow_header),))
        if method not in mount.allow:
            raise HttpError(405, f"{method} not allowed here", (("Allow", mount.allow_header),))
        app = mount.app
        prefix = mount.prefix
        store = self.store
        card = self.card
        counters = self.counters

        def handler(req: Request, when: float) -> Response:
            if user is not None:
                req = _with_user(req, user)
            try:
                response = app.handle(req, AppContext(store, card, when, prefix, counters))
            except HttpError:
                counters.errors += 1
                raise
            if response.status >= 400:
                counters.errors += 1
            return response

        return handler


def _with_user(request: Request, user: str) -> Request:
    return Request(
        request.method,
        request.target,
        request.path,
        request.query,
        request.raw_headers,
        request.body,
        request.http_version,
        request.scheme,
        user,
    )
