"""The RAS's REST API (FastAPI, OpenAPI at /api/v1/openapi.json) and its web console at `/`.

A thin shell over `RasService`: each endpoint is one or two service calls. Errors are RFC 9457
problem documents (`{"type", "title", "status", "detail"}`, application/problem+json): the
service's NotFound is 404, Conflict 409, other RasErrors 400, and malformed requests 422.

Card keys appear in no answer (a new card's as check values only), no log line (nothing here
logs a request body, and the service logs ICCIDs only) and no audit entry.

Service calls are synchronous. FastAPI runs plain `def` endpoints in its thread pool; the
`async` ones hand the service call to that pool themselves, so that `on_change` runs on the
event loop's thread (where `RasServer.wake` must be called)."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import Scope

import openscws
from openscws.agent.credentials import ADMIN_TAR
from openscws.ids import default_agent_id, default_psk_identity
from openscws.ras.accounts import (
    SESSION_TTL,
    LoginThrottle,
    Principal,
    TokenInfo,
    key_checksum,
)
from openscws.ras.api_auth import (
    BODY_KEY,
    ROLE_KEY,
    SESSION_COOKIE,
    AuditTrail,
    BodyCap,
    Guard,
    HostCheck,
    client_address,
    default_hosts,
    same_origin,
)
from openscws.ras.api_docs import mount_docs_assets, swagger_page
from openscws.ras.api_models import (
    AuditOut,
    CampaignCreate,
    CampaignDetail,
    CampaignOut,
    CancelResult,
    CardCreate,
    CardCreated,
    CardDetail,
    CardOut,
    ContentOut,
    FieldError,
    Health,
    KeyChecks,
    LoginIn,
    Me,
    Problem,
    SessionLogOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    campaign_detail,
    card_created,
    card_detail,
)
from openscws.ras.models import Role
from openscws.ras.service import Conflict, NotFound, RasError, RasService, TooLarge
from openscws.ras.vault import VaultError
from openscws.ras.web_headers import SecurityHeaders
from openscws.scws.paths import MAX_ADMIN_RESOURCE

__all__ = ["API_PREFIX", "CONSOLE_DIR", "MAX_CONTENT_BYTES", "PROBLEM_JSON", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
CONSOLE_DIR: Final = Path(__file__).parent / "console"
PROBLEM_JSON: Final = "application/problem+json"
MAX_CONTENT_BYTES: Final = MAX_ADMIN_RESOURCE
"""What one GP Amendment B command carries to a card: the repository takes no more."""
"""Largest body a content upload may have (a card's whole web space is smaller)."""
_TITLE: Final = "openscws remote administration"
# The console is static and same-origin: nothing inline, nothing from elsewhere.
_CONSOLE_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
MAX_JSON_BYTES: Final = 1024 * 1024
"""Largest JSON body a route that takes one may be sent (a campaign naming every card)."""
_LOGIN_PAGE: Final = "/login.html"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _version() -> str:
    version = getattr(openscws, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version("openscws")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _problem_response(
    status: int,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, errors=errors)
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _problem(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": description}}


_SERVICE_TAGS: list[str | Enum] = ["service"]
_BAD: Final = _problem(400, "The request breaks a rule of the service")
_MISSING: Final = _problem(404, "No such card, content, version or campaign")
_CONFLICT: Final = _problem(409, "The request clashes with the stored state")


class _RasApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        # FastAPI documents errors as application/json, and 422s as its own validation
        # error; this API answers both with problem documents.
        if self.openapi_schema is None:
            schema = super().openapi()
            problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    for code, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if code == "422":
                            response["content"] = {PROBLEM_JSON: problem}
                            response["description"] = "The request is not of the documented shape"
                        elif code[:1] in "45" and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            self.openapi_schema = schema
        return self.openapi_schema


_DOCS_PATH: Final = "/api/docs"


def create_app(
    service: RasService,
    *,
    on_change: Callable[[], None] | None = None,
    hosts: Iterable[str] | None = None,
    throttle: LoginThrottle | None = None,
) -> FastAPI:
    """The API and console over `service`. `on_change` is called (on the event loop's thread)
    after a campaign is created, so the trigger loop looks for due jobs at once. `hosts` are
    the host names accepted in Host (default: `default_hosts("127.0.0.1")`); `throttle`
    limits failed logins (default: 5 per account and 20 per address in 5 minutes)."""
    app = _RasApi(
        title=_TITLE,
        version=_version(),
        description=(
            "Cards, the versioned content repository, deployment campaigns and the cards' "
            "admin session logs of an openscws remote administration server. Errors are "
            "RFC 9457 problem documents. Every operation needs an API token (Authorization: "
            "Bearer) or a console session, with the role in its `x-openscws-role`; "
            "state-changing ones with a session also need its X-CSRF-Token."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    guard = Guard(service.accounts)
    app.add_middleware(BodyCap, routes=app.router.routes)
    app.add_middleware(HostCheck, hosts=default_hosts("127.0.0.1") if hosts is None else hosts)
    app.add_middleware(AuditTrail, accounts=service.accounts)
    app.add_middleware(SecurityHeaders, console_csp=_CONSOLE_CSP, own_csp=frozenset({_DOCS_PATH}))
    _error_handlers(app)
    _auth_routes(app, service, guard, throttle or LoginThrottle())
    _card_routes(app, service, guard)
    _content_routes(app, service, guard)
    _campaign_routes(app, service, guard, on_change)
    _operator_routes(app, service, guard)

    @app.get(
        f"{API_PREFIX}/health",
        tags=_SERVICE_TAGS,
        responses=_problem(503, "No database"),
        **guard.need(Role.VIEWER, "health"),
    )
    def health() -> Health:
        """The service answers and its database too."""
        try:
            service.card("0" * 19)  # a cheap indexed read: proves the database answers
        except Exception as exc:  # noqa: BLE001 - any failure here means "not healthy"
            log.warning("health check: %s", type(exc).__name__)
            raise HTTPException(503, "the database does not answer") from None
        return Health(version=app.version)

    @app.get(
        f"{API_PREFIX}/openapi.json",
        tags=_SERVICE_TAGS,
        include_in_schema=False,
        **guard.need(Role.VIEWER, "openapi"),
    )
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    docs_html, docs_csp = swagger_page(f"{API_PREFIX}/openapi.json", f"{_TITLE} - API", _DOCS_PATH)

    @app.get(_DOCS_PATH, include_in_schema=False)
    def docs(request: Request) -> Response:
        """Swagger UI over the OpenAPI document, for a logged-in console."""
        if not _console_session(service, request):
            return RedirectResponse(_LOGIN_PAGE, status_code=303)
        return HTMLResponse(docs_html, headers={"Content-Security-Policy": docs_csp})

    @app.get("/", include_in_schema=False)
    def console(request: Request) -> Response:
        """The console, for a logged-in session; else the login page."""
        if not _console_session(service, request):
            return RedirectResponse(_LOGIN_PAGE, status_code=303)
        return FileResponse(CONSOLE_DIR / "index.html", headers={"Cache-Control": "no-store"})

    mount_docs_assets(app, _DOCS_PATH)

    # Last: the console's static files (code and style, no data) are everything the API does
    # not claim; the page itself is served above, behind the login.
    app.mount("/", _ConsoleFiles(directory=CONSOLE_DIR), name="console")
    return app


def _console_session(service: RasService, request: Request) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE)
    return cookie is not None and service.accounts.session(cookie) is not None


class _ConsoleFiles(StaticFiles):
    """The console's assets; index.html only through the logged-in route at /."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path.strip("/") in ("", ".", "index.html"):
            raise HTTPException(404)
        return await super().get_response(path, scope)


# -- login, tokens, audit --------------------------------------------------------------------


def _token_out(info: TokenInfo, now: datetime) -> dict[str, Any]:
    state = info.state(now)
    return {
        "token_id": info.token_id,
        "user": info.user,
        "name": info.name,
        "role": info.role.value,
        "state": state,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "last_used_at": info.last_used_at,
    }


def _auth_routes(app: FastAPI, service: RasService, guard: Guard, throttle: LoginThrottle) -> None:
    tags: list[str | Enum] = ["auth"]
    accounts = service.accounts
    lock = threading.Lock()

    @app.post(
        f"{API_PREFIX}/auth/login",
        tags=tags,
        responses={
            **_problem(401, "Wrong user name or password"),
            **_problem(403, "Cross-origin request"),
            **_problem(429, "Too many failed logins: try again after Retry-After seconds"),
        },
        openapi_extra={ROLE_KEY: "none", "security": []},
    )
    def login(body: LoginIn, request: Request, response: Response) -> Me:
        """Opens a console session: sets its cookie (HttpOnly, SameSite=Strict, Secure under
        TLS) and returns the session's CSRF token. Failed logins are limited per account
        and per address; a lockout is logged and audited."""
        state = request.scope.setdefault("state", {})
        state["audit_action"] = "auth.login"
        state["audit_actor"] = body.name
        if not same_origin(request):
            raise HTTPException(403, "cross-origin request refused")
        address = client_address(request.scope)
        with lock:
            wait = throttle.locked_for(body.name, address, time.monotonic())
        if wait > 0:
            state["audit_detail"] = "locked out"
            raise HTTPException(
                429,
                f"too many failed logins: try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        user = accounts.check_password(body.name, body.password.get_secret_value())
        if user is None:
            with lock:
                locked = throttle.failed(body.name, address, time.monotonic())
            if locked:
                log.warning(
                    "login: %r from %s locked out for %d s after repeated failures",
                    body.name,
                    address,
                    int(throttle.window),
                )
                state["audit_detail"] = "lockout begins"
            raise HTTPException(401, "wrong user name or password")
        with lock:
            throttle.succeeded(body.name)
        cookie, csrf = accounts.open_session(user.name, address)
        state["principal"] = Principal(user.name, user.role, "session")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return Me(user=user.name, role=user.role.value, via="session", csrf_token=csrf)

    @app.post(
        f"{API_PREFIX}/auth/logout",
        tags=tags,
        status_code=204,
        **guard.need(Role.VIEWER, "auth.logout"),
    )
    def logout(request: Request) -> Response:
        """Ends the console session (its cookie is cleared)."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            accounts.close_session(cookie)
        response = Response(status_code=204)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.get(f"{API_PREFIX}/auth/me", tags=tags, **guard.need(Role.VIEWER, "auth.me"))
    def me(request: Request) -> Me:
        """Who the request is from, and a session's CSRF token."""
        principal: Principal = request.state.principal
        return Me(
            user=principal.user,
            role=principal.role.value,
            via="token" if principal.via == "token" else "session",
            token_id=principal.token_id,
            csrf_token=principal.csrf_token,
        )


def _operator_routes(app: FastAPI, service: RasService, guard: Guard) -> None:
    tags: list[str | Enum] = ["operators"]
    accounts = service.accounts
    base = f"{API_PREFIX}/tokens"

    @app.get(base, tags=tags, **guard.need(Role.VIEWER, "token.list"))
    def list_tokens(request: Request) -> list[TokenOut]:
        """Your API tokens (an admin's: everyone's). The tokens themselves are not kept."""
        principal: Principal = request.state.principal
        mine = None if principal.role is Role.ADMIN else principal.user
        now = _utc_now()
        return [TokenOut(**_token_out(t, now)) for t in accounts.list_tokens(mine)]

    @app.post(
        base,
        tags=tags,
        status_code=201,
        responses=_BAD,
        **guard.need(Role.VIEWER, "token.create", session_only=True),
    )
    def create_token(body: TokenCreate, request: Request) -> TokenCreated:
        """A new API token of yours, with a role up to yours, from a console session (a token
        cannot make tokens). The token is in this answer only: it is stored hashed."""
        principal: Principal = request.state.principal
        role = Role(body.role) if body.role else principal.role
        if not principal.role.allows(role):
            raise RasError(f"a {principal.role} cannot make a {role} token")
        info, token = accounts.create_token(
            principal.user, body.name, role, timedelta(days=body.expires_in_days)
        )
        request.state.audit_target = f"token {info.token_id}"
        request.state.audit_detail = f"role {info.role}, expires {info.expires_at:%Y-%m-%d}"
        return TokenCreated(**_token_out(info, _utc_now()), token=token)

    @app.delete(
        f"{base}/{{token_id}}",
        tags=tags,
        status_code=204,
        responses=_MISSING,
        **guard.need(Role.VIEWER, "token.revoke"),
    )
    def revoke_token(token_id: str, request: Request) -> Response:
        """Revokes one of your tokens (an admin: anyone's)."""
        principal: Principal = request.state.principal
        mine = None if principal.role is Role.ADMIN else principal.user
        if not accounts.revoke_token(token_id, user=mine):
            raise NotFound(f"no token {token_id}")
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/audit", tags=tags, **guard.need(Role.ADMIN, "audit.list"))
    def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, description="Entries older than this id")] = None,
    ) -> list[AuditOut]:
        """The audit trail, newest first: every state change and refused attempt."""
        return [
            AuditOut(
                id=e.id,
                at=e.at,
                actor=e.actor,
                address=e.address,
                action=e.action,
                target=e.target,
                result=e.result,
                detail=e.detail,
            )
            for e in service.accounts.audit_log(limit, before=before)
        ]


# -- errors ----------------------------------------------------------------------------------


def _why(request: Request, detail: str) -> None:
    """The refusal's reason, for the audit entry (problem details never hold keys)."""
    request.scope.setdefault("state", {}).setdefault("audit_detail", detail[:500])


def _error_handlers(app: FastAPI) -> None:
    async def ras_error(request: Request, exc: Exception) -> JSONResponse:
        _why(request, str(exc))
        if isinstance(exc, NotFound):
            return _problem_response(404, str(exc))
        if isinstance(exc, Conflict):
            return _problem_response(409, str(exc))
        if isinstance(exc, TooLarge):
            return _problem_response(413, str(exc))
        if isinstance(exc, VaultError):
            log.error("vault: %s", exc)
            return _problem_response(500, "the server cannot open its stored card keys")
        return _problem_response(400, str(exc))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        _why(request, detail)
        return _problem_response(exc.status_code, detail, headers=exc.headers)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # loc and msg only: pydantic's "input" would echo what was sent, keys included.
        errors = [
            FieldError(loc=".".join(str(part) for part in e.get("loc", ())), msg=str(e["msg"]))
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors) or "invalid request"
        return _problem_response(422, detail, errors=errors)

    async def crash(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s", type(exc).__name__, exc_info=exc)
        return _problem_response(500, "unexpected server error; see the server's log")

    app.add_exception_handler(RasError, ras_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crash)


# -- cards -----------------------------------------------------------------------------------


def _card_routes(app: FastAPI, service: RasService, guard: Guard) -> None:
    tags: list[str | Enum] = ["cards"]

    @app.get(f"{API_PREFIX}/cards", tags=tags, **guard.need(Role.VIEWER, "card.list"))
    def list_cards() -> list[CardOut]:
        """Every card, by ICCID. Keys are never shown."""
        return [CardOut.of(c) for c in service.list_cards()]

    @app.post(
        f"{API_PREFIX}/cards",
        tags=tags,
        status_code=201,
        responses={**_BAD, **_CONFLICT},
        **guard.need(Role.ADMIN, "card.create"),
    )
    def create_card(body: CardCreate, request: Request, response: Response) -> CardCreated:
        """Registers a card with its keys (the card's personalisation holds the same). The
        answer names the keys by check value only."""
        psk = bytes.fromhex(body.psk_key.get_secret_value())
        kic_key = bytes.fromhex(body.kic_key.get_secret_value())
        kid_key = bytes.fromhex(body.kid_key.get_secret_value())
        card = service.add_card(
            body.iccid,
            body.msisdn,
            psk_identity=body.psk_identity or default_psk_identity(body.iccid),
            psk_key=psk,
            agent_id=body.agent_id or default_agent_id(body.iccid),
            ota_tar=ADMIN_TAR if body.ota_tar is None else bytes.fromhex(body.ota_tar),
            kic_key=kic_key,
            kid_key=kid_key,
            kic=body.kic,
            kid=body.kid,
            ota_counter=body.ota_counter,
        )
        request.state.audit_detail = (
            f"psk-identity {card.psk_identity}, PSK check {key_checksum(psk)}, "
            f"KIc {card.ota_kic:02X} check {key_checksum(kic_key)}, "
            f"KID {card.ota_kid:02X} check {key_checksum(kid_key)}"
        )
        response.headers["Location"] = f"{API_PREFIX}/cards/{card.iccid}"
        checks = KeyChecks(
            psk_key=key_checksum(psk), kic_key=key_checksum(kic_key), kid_key=key_checksum(kid_key)
        )
        return card_created(card, checks)

    @app.get(
        f"{API_PREFIX}/cards/{{iccid}}",
        tags=tags,
        responses=_MISSING,
        **guard.need(Role.VIEWER, "card.get"),
    )
    def get_card(
        iccid: str, jobs: Annotated[int, Query(ge=0, le=500, description="Latest jobs")] = 20
    ) -> CardDetail:
        """One card with its latest jobs."""
        card = service.card(iccid)
        if card is None:
            raise NotFound(f"no card {iccid}")
        return card_detail(card, service.card_jobs(iccid, limit=jobs) if jobs else [])

    @app.delete(
        f"{API_PREFIX}/cards/{{iccid}}",
        tags=tags,
        status_code=204,
        responses=_MISSING,
        **guard.need(Role.ADMIN, "card.delete"),
    )
    def delete_card(iccid: str) -> Response:
        """Removes the card, its jobs and its session logs."""
        if not service.remove_card(iccid):
            raise NotFound(f"no card {iccid}")
        return Response(status_code=204)

    @app.get(
        f"{API_PREFIX}/cards/{{iccid}}/sessions",
        tags=tags,
        responses=_MISSING,
        **guard.need(Role.VIEWER, "card.sessions"),
    )
    def card_sessions(
        iccid: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[SessionLogOut]:
        """The card's admin sessions, newest first."""
        if service.card(iccid) is None:
            raise NotFound(f"no card {iccid}")
        return [SessionLogOut.of(e) for e in service.session_logs(iccid, limit)]


# -- content ---------------------------------------------------------------------------------

_BINARY: Final = {"schema": {"type": "string", "format": "binary"}}


def _repo_path(path: str) -> str:
    return "/" + path


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_CONTENT_BYTES:
        raise HTTPException(413, f"a content body may have at most {MAX_CONTENT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CONTENT_BYTES:
            raise HTTPException(413, f"a content body may have at most {MAX_CONTENT_BYTES} bytes")
    return bytes(body)


def _attachment(path: str, version: int) -> str:
    """A download's Content-Disposition: the path's last segment, ASCII letters, digits and
    `._-` only (RFC 6266 quoted-string without anything to escape)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.rsplit("/", 1)[-1]) or "content"
    return f'attachment; filename="v{version}-{name}"'


def _content_routes(app: FastAPI, service: RasService, guard: Guard) -> None:
    tags: list[str | Enum] = ["content"]
    base = f"{API_PREFIX}/content"

    @app.get(base, tags=tags, **guard.need(Role.VIEWER, "content.list"))
    def list_content() -> list[ContentOut]:
        """The current version of every path that is not deleted."""
        return [ContentOut.of(c) for c in service.list_content()]

    @app.get(
        f"{base}/{{path:path}}/history",
        tags=tags,
        responses=_MISSING,
        **guard.need(Role.VIEWER, "content.history"),
    )
    def content_history(path: str) -> list[ContentOut]:
        """Every version of `/path`, oldest first (tombstones have `deleted`)."""
        versions = service.content_history(_repo_path(path))
        if not versions:
            raise NotFound(f"no content at {_repo_path(path)}")
        return [ContentOut.of(v) for v in versions]

    @app.get(
        f"{base}/{{path:path}}/versions/{{version}}",
        tags=tags,
        response_class=Response,
        responses={
            200: {"description": "The body, with its stored headers", "content": {"*/*": _BINARY}},
            **_MISSING,
        },
        **guard.need(Role.VIEWER, "content.get"),
    )
    def content_version(path: str, version: int) -> Response:
        """The body of one version, with its Content-Type, Content-Encoding and
        Content-Language; ETag is its SHA-256. A deletion's version has no body (404).
        It is always a download (Content-Disposition: attachment, nosniff, a sandboxing
        CSP): stored pages never run as this server's origin."""
        item = service.content_item(_repo_path(path), version)
        info = item.info
        if info.deleted:
            raise NotFound(f"version {version} of {info.path} is a deletion")
        # Content-Type as a plain header: media_type would append a charset to text/*, and
        # this answer shows what is stored, byte for byte.
        headers = {
            "Content-Type": info.content_type,
            "ETag": f'"{info.sha256}"',
            "X-Content-Version": str(info.version),
            "Content-Disposition": _attachment(info.path, info.version),
        }
        if info.content_encoding:
            headers["Content-Encoding"] = info.content_encoding
        if info.content_language:
            headers["Content-Language"] = info.content_language
        return Response(item.body, headers=headers)

    @app.put(
        f"{base}/{{path:path}}",
        tags=tags,
        status_code=201,
        responses={
            200: {"model": ContentOut, "description": "Same bytes and headers: no new version"},
            201: {"description": "Stored as a new version"},
            **_BAD,
            **_problem(413, f"The body is over {MAX_CONTENT_BYTES} bytes"),
        },
        dependencies=guard.need(Role.OPERATOR, "content.put")["dependencies"],
        openapi_extra={
            "requestBody": {"required": True, "content": {"*/*": _BINARY}},
            ROLE_KEY: Role.OPERATOR.value,
            BODY_KEY: MAX_CONTENT_BYTES,
        },
    )
    async def put_content(
        path: str,
        request: Request,
        response: Response,
        content_encoding: Annotated[str | None, Header(max_length=64)] = None,
        content_language: Annotated[str | None, Header(max_length=64)] = None,
        realm: Annotated[
            str | None, Query(max_length=255, description="The SCWS protection realm")
        ] = None,
    ) -> ContentOut:
        """Stores the raw request body as the next version of `/path`, with the request's
        Content-Type (default application/octet-stream), Content-Encoding and
        Content-Language. Campaigns pin versions, so this changes no card by itself."""
        body = await _read_body(request)
        repo = _repo_path(path)
        content_type = request.headers.get("content-type") or "application/octet-stream"

        def store() -> tuple[ContentOut, bool]:
            before = service.content_history(repo)
            info = service.put_content(
                repo,
                body,
                content_type,
                encoding=content_encoding,
                language=content_language,
                realm=realm,
            )
            return ContentOut.of(info), not before or info.version > before[-1].version

        out, created = await run_in_threadpool(store)
        if not created:
            response.status_code = 200
        response.headers["Location"] = f"{base}{repo}/versions/{out.version}"
        return out

    @app.delete(
        f"{base}/{{path:path}}",
        tags=tags,
        responses={**_MISSING, **_CONFLICT},
        **guard.need(Role.OPERATOR, "content.delete"),
    )
    def delete_content(path: str) -> ContentOut:
        """Adds a deletion (tombstone) version of `/path`: the next campaign over it removes
        it from the cards. 409 when it is already deleted."""
        repo = _repo_path(path)
        tombstone = service.delete_content(repo)
        if tombstone is None:
            history = service.content_history(repo)
            if not history:
                raise NotFound(f"no content at {repo}")
            raise Conflict(f"{repo} is already deleted (version {history[-1].version})")
        return ContentOut.of(tombstone)


# -- campaigns -------------------------------------------------------------------------------


def _campaign_routes(
    app: FastAPI, service: RasService, guard: Guard, on_change: Callable[[], None] | None
) -> None:
    tags: list[str | Enum] = ["campaigns"]
    base = f"{API_PREFIX}/campaigns"

    def summary(campaign_id: int) -> CampaignOut:
        info = service.campaign(campaign_id)
        return CampaignOut.of(info, info.progress)

    @app.get(base, tags=tags, **guard.need(Role.VIEWER, "campaign.list"))
    def list_campaigns() -> list[CampaignOut]:
        """Every campaign, oldest first, with its jobs per state."""
        return [CampaignOut.of(c, c.progress) for c in service.list_campaigns()]

    @app.post(
        base,
        tags=tags,
        status_code=201,
        responses={**_BAD, **_MISSING},
        dependencies=guard.need(Role.OPERATOR, "campaign.create")["dependencies"],
        openapi_extra={ROLE_KEY: Role.OPERATOR.value, BODY_KEY: MAX_JSON_BYTES},
    )
    async def create_campaign(body: CampaignCreate, response: Response) -> CampaignOut:
        """One job per card (default: every card), pinned to the current versions of `paths`
        (default: every path, deletions included). The trigger loop picks them up at once."""

        def create() -> CampaignOut:
            info = service.create_campaign(
                body.name,
                paths=body.paths,
                cards=body.cards,
                max_attempts=body.max_attempts,
                acp=body.acp,
                trigger=body.trigger,
            )
            return CampaignOut.of(info, info.progress)

        out = await run_in_threadpool(create)
        if on_change is not None:
            try:
                on_change()
            except Exception:  # the campaign is stored; the loop polls anyway
                log.exception("campaign %d: waking the trigger loop failed", out.id)
        response.headers["Location"] = f"{base}/{out.id}"
        return out

    @app.get(
        f"{base}/{{campaign_id}}",
        tags=tags,
        responses=_MISSING,
        **guard.need(Role.VIEWER, "campaign.get"),
    )
    def get_campaign(campaign_id: int) -> CampaignDetail:
        """The campaign with each card's job: state, attempts and last error."""
        info = service.campaign(campaign_id)
        return campaign_detail(info, info.progress, service.campaign_cards(campaign_id))

    @app.post(
        f"{base}/{{campaign_id}}/cancel",
        tags=tags,
        responses={**_MISSING, **_CONFLICT},
        **guard.need(Role.OPERATOR, "campaign.cancel"),
    )
    def cancel_campaign(campaign_id: int) -> CancelResult:
        """Fails the pending and triggered jobs; running sessions finish but never retry.
        Cancelling a cancelled campaign again changes nothing; a finished one is a 409."""
        if service.campaign(campaign_id).state == "finished":
            raise Conflict(f"campaign {campaign_id} has finished: nothing to cancel")
        cancelled = service.cancel_campaign(campaign_id)
        return CancelResult(cancelled=cancelled, campaign=summary(campaign_id))
