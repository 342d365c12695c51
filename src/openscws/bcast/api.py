"""The BSM's management API (FastAPI, OpenAPI at /api/v1/openapi.json) and its console page.

Operators manage the catalogue (services, SEK/PEKs, purchase items) and see and end the
terminals' subscriptions. Who may do what is the admin server's: the same accounts, API tokens
and console sessions (`openscws.ras.accounts`, over the admin database), the same `Guard`
(401 without a token or session, 403 for a role too low, a foreign Origin, or a session
without its CSRF token), Host check, body caps and audit trail. Reads need the viewer role,
catalogue and subscription changes the operator role, a new SEK/PEK the admin role. SEK/PEK
values and RKs appear in no answer.

The console (`/`) is one server-rendered page listing services, purchase items and
subscriptions, behind a login form; it runs no script (its CSP allows none) and changes
nothing: changes go through the REST API. Errors are RFC 9457 problem documents."""

from __future__ import annotations

import html
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Final
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from openscws.bcast.sprov import KeyId, SprovError
from openscws.bcast.store import SqlStore
from openscws.ras.accounts import SESSION_TTL, Accounts, LoginThrottle, Principal
from openscws.ras.api_auth import (
    SESSION_COOKIE,
    AuditTrail,
    BodyCap,
    Guard,
    HostCheck,
    client_address,
    default_hosts,
    same_origin,
)
from openscws.ras.db import Conflict, NotFound, RasError
from openscws.ras.models import Role
from openscws.ras.web_headers import SecurityHeaders

__all__ = ["API_PREFIX", "create_bsm_api"]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1/bsm"
PROBLEM_JSON: Final = "application/problem+json"
_CONSOLE_CSP: Final = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_MAX_LOGIN_FORM: Final = 4096


class ServiceIn(BaseModel):
    service_id: str = Field(min_length=1, max_length=255, description="its globalServiceID")
    name: str = Field(default="", max_length=255, description="for operators (default: the id)")


class ServiceOut(BaseModel):
    service_id: str
    name: str
    created_at: datetime


class KeyIn(BaseModel):
    key: str = Field(description="Key Domain ID / SEK/PEK ID in hex, e.g. 00f110/00010002")
    size: int = Field(default=16, description="16 or 32 bytes; the value is random, never shown")


class ItemIn(BaseModel):
    ref: str = Field(min_length=1, max_length=255, description="its globalIDRef")
    keys: list[str] = Field(default_factory=list, description="DOMAIN/ID of its SEK/PEKs")
    services: list[str] = Field(default_factory=list, description="globalServiceIDs bundled")


class ItemOut(BaseModel):
    ref: str
    keys: list[str]
    services: list[str]
    subscribers: int
    created_at: datetime


class SubscriptionOut(BaseModel):
    user: str = Field(description="the terminal's B-TID or NAI")
    item: str
    created_at: datetime


class SubscriberOut(BaseModel):
    user: str
    tokens: int
    ltkms: int = Field(description="LTKMs issued to it (its last MIKEY counter)")
    subscriptions: list[str]
    created_at: datetime


class Problem(BaseModel):
    title: str
    status: int
    detail: str


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _key_text(key: KeyId) -> str:
    return f"{key.key_domain.hex()}/{key.key_id.hex()}"


def _key_id(text: str) -> KeyId:
    domain, _, key_id = text.partition("/")
    try:
        return KeyId(bytes.fromhex(domain), bytes.fromhex(key_id))
    except (ValueError, SprovError):
        raise RasError(f"{text!r}: DOMAIN/ID, 6 and 8 hex digits") from None


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail)
    return JSONResponse(
        body.model_dump(), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def create_bsm_api(
    store: SqlStore,
    accounts: Accounts,
    *,
    hosts: Iterable[str] | None = None,
    throttle: LoginThrottle | None = None,
) -> FastAPI:
    """The management API and console over `store`, guarded by `accounts` (the admin
    server's). `hosts`: the names accepted in Host (default: loopback)."""
    app = FastAPI(
        title="openscws BSM management",
        description=(
            "The BCAST BSM's catalogue (services, SEK/PEKs, purchase items) and the terminals' "
            "subscriptions. Every operation needs an API token of the admin server "
            "(Authorization: Bearer) or a console session, with the role in its "
            "`x-openscws-role`."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    guard = Guard(accounts)
    app.add_middleware(BodyCap, routes=app.router.routes)
    app.add_middleware(HostCheck, hosts=default_hosts("127.0.0.1") if hosts is None else hosts)
    app.add_middleware(AuditTrail, accounts=accounts)
    app.add_middleware(SecurityHeaders, console_csp=_CONSOLE_CSP, console_no_store=True)
    _errors(app)
    _catalogue_routes(app, store, guard)
    _subscription_routes(app, store, guard)
    _console_routes(app, store, accounts, throttle or LoginThrottle())

    @app.get(
        f"{API_PREFIX}/openapi.json",
        include_in_schema=False,
        **guard.need(Role.VIEWER, "bsm.openapi"),
    )
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    return app


def _why(request: Request, detail: str) -> None:
    request.scope.setdefault("state", {}).setdefault("audit_detail", detail)


def _errors(app: FastAPI) -> None:
    async def ras_error(request: Request, exc: Exception) -> JSONResponse:
        _why(request, str(exc))
        if isinstance(exc, NotFound):
            return _problem(404, str(exc))
        if isinstance(exc, Conflict):
            return _problem(409, str(exc))
        return _problem(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        _why(request, str(exc.detail))
        return _problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        _why(request, where)
        return _problem(422, where or "malformed request")

    app.add_exception_handler(RasError, ras_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def _catalogue_routes(app: FastAPI, store: SqlStore, guard: Guard) -> None:
    @app.get(f"{API_PREFIX}/services", **guard.need(Role.VIEWER, "bsm.services.list"))
    def list_services() -> list[ServiceOut]:
        return [
            ServiceOut(service_id=s.service_id, name=s.name, created_at=_when(s.created_ms))
            for s in store.services()
        ]

    @app.post(
        f"{API_PREFIX}/services", status_code=201, **guard.need(Role.OPERATOR, "bsm.services.add")
    )
    def add_service(body: ServiceIn, request: Request) -> ServiceOut:
        request.state.audit_target = body.service_id
        store.add_service(body.service_id, body.name)
        found = next(s for s in store.services() if s.service_id == body.service_id)
        return ServiceOut(
            service_id=found.service_id, name=found.name, created_at=_when(found.created_ms)
        )

    @app.delete(
        API_PREFIX + "/services/{service_id:path}",
        status_code=204,
        **guard.need(Role.OPERATOR, "bsm.services.remove"),
    )
    def remove_service(service_id: str) -> Response:
        store.remove_service(service_id)
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/keys", **guard.need(Role.VIEWER, "bsm.keys.list"))
    def list_keys() -> list[str]:
        """The SEK/PEK ids (values never leave the BSM but in LTKMs)."""
        return [_key_text(k) for k in store.keys()]

    @app.post(f"{API_PREFIX}/keys", status_code=201, **guard.need(Role.ADMIN, "bsm.keys.add"))
    def add_key(body: KeyIn, request: Request) -> str:
        """Adds a SEK/PEK with a random value; answers its id only."""
        key = _key_id(body.key)
        request.state.audit_target = body.key
        if body.size not in (16, 32):
            raise RasError("a SEK/PEK is 16 or 32 bytes")
        store.add_key(key, secrets.token_bytes(body.size))
        return _key_text(key)

    def item_out(ref: str) -> ItemOut:
        for item in store.item_infos():
            if item.ref == ref:
                return ItemOut(
                    ref=item.ref,
                    keys=[_key_text(k) for k in item.keys],
                    services=list(item.services),
                    subscribers=item.subscribers,
                    created_at=_when(item.created_ms),
                )
        raise NotFound(f"no purchase item {ref!r}")

    @app.get(f"{API_PREFIX}/items", **guard.need(Role.VIEWER, "bsm.items.list"))
    def list_items() -> list[ItemOut]:
        return [
            ItemOut(
                ref=i.ref,
                keys=[_key_text(k) for k in i.keys],
                services=list(i.services),
                subscribers=i.subscribers,
                created_at=_when(i.created_ms),
            )
            for i in store.item_infos()
        ]

    @app.post(f"{API_PREFIX}/items", status_code=201, **guard.need(Role.OPERATOR, "bsm.items.add"))
    def add_item(body: ItemIn, request: Request) -> ItemOut:
        request.state.audit_target = body.ref
        store.add_item(body.ref, [_key_id(k) for k in body.keys], body.services)
        return item_out(body.ref)

    @app.delete(
        API_PREFIX + "/items/{ref:path}",
        status_code=204,
        **guard.need(Role.OPERATOR, "bsm.items.remove"),
    )
    def remove_item(ref: str) -> Response:
        """Removes the item and its subscriptions."""
        store.remove_item(ref)
        return Response(status_code=204)


def _subscription_routes(app: FastAPI, store: SqlStore, guard: Guard) -> None:
    @app.get(f"{API_PREFIX}/subscriptions", **guard.need(Role.VIEWER, "bsm.subscriptions.list"))
    def list_subscriptions(
        user: Annotated[str | None, Query(max_length=255)] = None,
        item: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> list[SubscriptionOut]:
        return [
            SubscriptionOut(user=s.username, item=s.ref, created_at=_when(s.created_ms))
            for s in store.subscription_list(username=user, ref=item, limit=limit)
        ]

    @app.delete(
        f"{API_PREFIX}/subscriptions",
        status_code=204,
        **guard.need(Role.OPERATOR, "bsm.subscriptions.end"),
    )
    def end_subscription(
        request: Request,
        user: Annotated[str, Query(min_length=1, max_length=255)],
        item: Annotated[str, Query(min_length=1, max_length=255)],
    ) -> Response:
        """Ends a terminal's subscription to a purchase item (as its Unsubscribe would)."""
        request.state.audit_target = f"{user} {item}"
        store.cancel_subscription(user, item)
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/subscriber", **guard.need(Role.VIEWER, "bsm.subscriber.show"))
    def subscriber(user: Annotated[str, Query(min_length=1, max_length=255)]) -> SubscriberOut:
        """A terminal's state: tokens, LTKMs issued, subscriptions."""
        info = store.subscriber(user)
        if info is None:
            raise NotFound(f"no subscriber {user!r}")
        return SubscriberOut(
            user=info.username,
            tokens=info.tokens,
            ltkms=info.ltkms,
            subscriptions=list(info.subscriptions),
            created_at=_when(info.created_ms),
        )


# -- console -----------------------------------------------------------------------------------

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def _table(headings: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_LOGIN_FORM: Final = (
    '<form method="post" action="/login">'
    '<label>User <input name="name" autocomplete="username" required></label> '
    '<label>Password <input name="password" type="password" '
    'autocomplete="current-password" required></label> '
    '<button type="submit">Log in</button></form>'
)


def _console_routes(
    app: FastAPI, store: SqlStore, accounts: Accounts, throttle: LoginThrottle
) -> None:
    lock = threading.Lock()

    def session(request: Request) -> Principal | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return None if cookie is None else accounts.session(cookie)

    @app.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        return _page("BSM console: log in", _LOGIN_FORM)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        """The login form (the admin server's accounts); a session cookie on success."""
        state = request.scope.setdefault("state", {})
        state["audit_action"] = "bsm.console.login"
        if not same_origin(request):
            return _page("BSM console: log in", "<p>Cross-origin login refused.</p>", 403)
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            return _page("BSM console: log in", "<p>Send the login form.</p>", 415)
        raw = await request.body()
        form = parse_qs(raw[:_MAX_LOGIN_FORM].decode("utf-8", "replace"))
        name = form.get("name", [""])[0][:64]
        password = form.get("password", [""])[0]
        state["audit_actor"] = name
        address = client_address(request.scope)
        with lock:
            wait = throttle.locked_for(name, address, time.monotonic())
        if wait > 0:
            state["audit_detail"] = "locked out"
            text = f"<p>Too many failed logins: try again in {math.ceil(wait)} s.</p>"
            answer = _page("BSM console: log in", text + _LOGIN_FORM, 429)
            answer.headers["Retry-After"] = str(math.ceil(wait))
            return answer
        from fastapi.concurrency import run_in_threadpool

        user = await run_in_threadpool(accounts.check_password, name, password)
        if user is None:
            with lock:
                throttle.failed(name, address, time.monotonic())
            text = "<p>Wrong user name or password.</p>"
            return _page("BSM console: log in", text + _LOGIN_FORM, 401)
        with lock:
            throttle.succeeded(name)
        cookie, _csrf = await run_in_threadpool(accounts.open_session, user.name, address)
        state["principal"] = Principal(user.name, user.role, "session")
        done = RedirectResponse("/", status_code=303)
        done.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return done

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        request.scope.setdefault("state", {})["audit_action"] = "bsm.console.logout"
        if not same_origin(request):
            return _page("BSM console", "<p>Cross-origin request refused.</p>", 403)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            accounts.close_session(cookie)
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    @app.get("/", include_in_schema=False)
    def console(request: Request) -> Response:
        """Services, purchase items and subscriptions, for a logged-in session."""
        principal = session(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        services = _table(
            ("globalServiceID", "name", "since"),
            (
                (s.service_id, s.name, _when(s.created_ms).isoformat(timespec="seconds"))
                for s in store.services()
            ),
        )
        items = _table(
            ("globalIDRef", "SEK/PEKs", "services", "subscribers"),
            (
                (
                    i.ref,
                    " ".join(_key_text(k) for k in i.keys) or "-",
                    " ".join(i.services) or "-",
                    str(i.subscribers),
                )
                for i in store.item_infos()
            ),
        )
        subs = _table(
            ("B-TID or NAI", "purchase item", "since"),
            (
                (s.username, s.ref, _when(s.created_ms).isoformat(timespec="seconds"))
                for s in store.subscription_list(limit=1000)
            ),
        )
        body = (
            f"<p>{html.escape(principal.user)} ({principal.role.value}). "
            f"Changes go through the REST API under {API_PREFIX}.</p>"
            '<form method="post" action="/logout"><button type="submit">Log out</button></form>'
            f"<h2>Services</h2>{services}<h2>Purchase items</h2>{items}"
            f"<h2>Subscriptions (first 1000)</h2>{subs}"
        )
        return _page("BSM console", body)
