"""Who may call the REST API and the console, and what guards every request on the way in.

- `Guard.need(role, action)` is the dependency every route declares next to itself: it takes
  an API token (`Authorization: Bearer oscws_...`) or the console's session cookie, answers
  401 without a valid one and 403 when the role is too low, and for a state-changing request
  refuses (403) an `Origin` other than the server's own, and a cookie without the session's
  CSRF token in `X-CSRF-Token`. The role also goes into the OpenAPI document
  (`x-openscws-role`), and the two schemes into its `securitySchemes`.
- `HostCheck`: only configured host names in `Host` (DNS rebinding gets 421).
- `BodyCap`: each route's body limit (`x-max-body-bytes`, default `DEFAULT_BODY_LIMIT`) is
  enforced on Content-Length before anything is read, and on the bytes as they stream in.
- `AuditTrail`: every state-changing request, allowed or refused, is written to the audit
  table (who, what, when, from where, the result) before its answer leaves.

Token and cookie checks read the database, so `need`'s dependency is a plain `def`: FastAPI
runs it in its thread pool, never on the event loop."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openscws.ras.accounts import Accounts, Principal
from openscws.ras.models import Role

__all__ = [
    "CSRF_HEADER",
    "DEFAULT_BODY_LIMIT",
    "ROLE_KEY",
    "SESSION_COOKIE",
    "SESSION_ONLY_KEY",
    "AuditTrail",
    "BodyCap",
    "Guard",
    "HostCheck",
    "default_hosts",
    "host_name",
]

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "openscws_session"
CSRF_HEADER: Final = "X-CSRF-Token"
ROLE_KEY: Final = "x-openscws-role"
"""The OpenAPI operation field naming the role a route needs ("none": no login)."""
SESSION_ONLY_KEY: Final = "x-openscws-session-only"
"""Set on operations a console session may call but an API token may not."""
BODY_KEY: Final = "x-max-body-bytes"
DEFAULT_BODY_LIMIT: Final = 64 * 1024
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_PROBLEM: Final = b"application/problem+json"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiToken",
    description="An API token (`openscws admin token create`, or the console's Tokens page): "
    "`Authorization: Bearer oscws_...`",
)
cookie_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="consoleSession",
    description="The console's session cookie (POST /api/v1/auth/login). State-changing "
    f"requests with it also need the session's CSRF token in {CSRF_HEADER}.",
)


def default_hosts(bind: str) -> tuple[str, ...]:
    """The host names accepted by default: loopback names and the bind address."""
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    if bind and bind not in ("0.0.0.0", "::"):
        hosts.append(f"[{bind}]" if ":" in bind else bind)
    return tuple(dict.fromkeys(hosts))


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


async def _send_problem(scope: Scope, send: Send, status: int, detail: str) -> None:
    _state(scope).setdefault("audit_detail", detail)
    body = json.dumps(
        {"title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", _PROBLEM),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _own_origin(scope: Scope) -> str:
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{(_header(scope, b'host') or '').lower()}"


def same_origin(request: Request) -> bool:
    """The request's Origin is the server's own (a browser sends it with every POST, PUT and
    DELETE; scripts and curl may leave it out)."""
    origin = request.headers.get("origin")
    return origin is None or origin.lower() == _own_origin(request.scope)


class Guard:
    """Authentication and roles over `accounts` (see the module docstring)."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def principal(self, request: Request) -> Principal | None:
        """The request's principal from its token or session cookie, or None."""
        auth = request.headers.get("authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return self.accounts.authenticate_token(token.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return None if cookie is None else self.accounts.session(cookie)

    def need(self, role: Role, action: str, *, session_only: bool = False) -> dict[str, Any]:
        """What a route declares: `@app.post(path, **guard.need(Role.OPERATOR, "x.y"))`.
        `session_only`: a logged-in person only, never an API token (making tokens: a token
        that could make tokens would outlive its own expiry and revocation)."""

        def check(
            request: Request,
            _token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
            _cookie: Annotated[str | None, Security(cookie_scheme)],
        ) -> Principal:
            state = _state(request.scope)
            state["audit_action"] = action
            principal = self.principal(request)
            if principal is None:
                raise HTTPException(
                    401,
                    "log in, or send an API token: Authorization: Bearer oscws_...",
                    headers={"WWW-Authenticate": 'Bearer realm="openscws"'},
                )
            state["principal"] = principal
            if request.method not in SAFE_METHODS:
                check_unsafe(request, principal)
            if not principal.role.allows(role):
                raise HTTPException(403, f"{action} needs the {role} role ({principal.role})")
            if session_only and principal.via != "session":
                raise HTTPException(403, f"{action} needs a console session, not an API token")
            return principal

        extra: dict[str, Any] = {ROLE_KEY: role.value}
        if session_only:
            extra[SESSION_ONLY_KEY] = True
        return {"dependencies": [Depends(check)], "openapi_extra": extra}


def check_unsafe(request: Request, principal: Principal | None) -> None:
    """A state-changing request: its Origin must be ours, and with a session cookie it must
    carry the session's CSRF token (a bearer token is never sent by a browser by itself)."""
    if not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    if principal is not None and principal.via == "session":
        sent = request.headers.get(CSRF_HEADER)
        if not sent or not hmac.compare_digest(sent, principal.csrf_token or ""):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER}")


# -- ASGI middleware -------------------------------------------------------------------------


def host_name(host: str) -> str:
    """The name in a Host header, lower-cased, without its port ("[::1]" keeps brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.split(":", 1)[0]


class HostCheck:
    """421 for a Host header not in `hosts` (names, with or without a port)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    def accepts(self, host: str | None) -> bool:
        if not host:
            return False
        return host_name(host) in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.accepts(_header(scope, b"host")):
            _state(scope)["audit_action"] = "request.host"
            await _send_problem(
                scope,
                send,
                421,
                "not a host name of this server (those are in admin.api_hosts)",
            )
            return
        await self.app(scope, receive, send)


class _TooLarge(HTTPException):
    pass


class BodyCap:
    """Request bodies over the route's limit get 413, before (Content-Length) or while
    (streamed bytes) they are read; nothing over the limit is ever buffered."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any], default: int = DEFAULT_BODY_LIMIT):
        self.app = app
        self._routes = routes
        self.default = default

    def limit(self, scope: Scope) -> int:
        for route in self._routes:
            if not isinstance(route, Route):
                continue
            match, _ = route.matches(scope)
            if match is Match.FULL:
                extra = getattr(route, "openapi_extra", None) or {}
                return int(extra.get(BODY_KEY, self.default))
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_problem(scope, send, 400, "malformed Content-Length")
                return
            if int(declared) > limit:
                _state(scope).setdefault("audit_action", "request.body")
                await _send_problem(scope, send, 413, f"this request's body may have {limit} bytes")
                return
        seen = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(413, f"this request's body may have {limit} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracked_send)
        except _TooLarge as exc:
            if started:
                raise
            await _send_problem(scope, send, 413, str(exc.detail))


class AuditTrail:
    """Writes one audit entry per state-changing request (any method but GET, HEAD and
    OPTIONS), with the status it got, before the answer's body leaves."""

    def __init__(self, app: ASGIApp, accounts: Accounts) -> None:
        self.app = app
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        state = _state(scope)
        start: Message | None = None
        written = False

        async def record(status: int) -> None:
            nonlocal written
            if written:
                return
            written = True
            principal = state.get("principal")
            actor = principal.actor if isinstance(principal, Principal) else "-"
            if "audit_actor" in state and not isinstance(principal, Principal):
                actor = f"-({state['audit_actor']})"
            result = "ok" if status < 400 else f"{status} {_phrase(status)}"
            target = scope.get("path", "")
            try:
                await anyio.to_thread.run_sync(
                    lambda: self.accounts.audit(
                        actor,
                        str(state.get("audit_action") or f"{scope['method']} request"),
                        str(state.get("audit_target") or target),
                        result,
                        address=client_address(scope),
                        detail=str(state.get("audit_detail", "")),
                    )
                )
            except Exception:
                log.exception("audit: cannot write the entry for %s %s", scope["method"], target)

        async def audited_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body" and start is not None:
                if not message.get("more_body", False):
                    await record(int(start["status"]))
                await send(start)
                start = None
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except BaseException:
            await record(500)
            raise


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"
