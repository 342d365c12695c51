"""The RAS's REST API (FastAPI, OpenAPI at /api/v1/openapi.json) and its web console at `/`.

A thin shell over `RasService`: each endpoint is one or two service calls. Errors are RFC 9457
problem documents (`{"type", "title", "status", "detail"}`, application/problem+json): the
service's NotFound is 404, Conflict 409, other RasErrors 400, and malformed requests 422.

Card keys appear only in the 201 answer to a card creation, and only those the server made.
They are never logged: nothing here logs a request body, and the service logs ICCIDs only.

Service calls are synchronous. FastAPI runs plain `def` endpoints in its thread pool; the
`async` ones hand the service call to that pool themselves, so that `on_change` runs on the
event loop's thread (where `RasServer.wake` must be called)."""

from __future__ import annotations

import importlib.metadata
import logging
import secrets
from collections.abc import Callable, Mapping
from enum import Enum
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import openscws
from openscws.agent.credentials import ADMIN_TAR
from openscws.ras.api_models import (
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
    GeneratedKeys,
    Health,
    Problem,
    SessionLogOut,
    campaign_detail,
    card_created,
    card_detail,
)
from openscws.ras.service import Conflict, NotFound, RasError, RasService
from openscws.ras.vault import VaultError

__all__ = ["API_PREFIX", "CONSOLE_DIR", "MAX_CONTENT_BYTES", "PROBLEM_JSON", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
CONSOLE_DIR: Final = Path(__file__).parent / "console"
PROBLEM_JSON: Final = "application/problem+json"
MAX_CONTENT_BYTES: Final = 4 * 1024 * 1024
"""Largest body a content upload may have (a card's whole web space is smaller)."""
_TITLE: Final = "openscws remote administration"
# Key sizes by the algorithm nibble of a KIc / KID byte (TS 102 225 §5.1.2-3): DES, 3DES with
# two or three keys, AES-128.
_KEY_SIZES: Final = {0x1: 8, 0xD: 8, 0x5: 16, 0x9: 24, 0x2: 16}
# The console is static and same-origin: nothing inline, nothing from elsewhere.
_CONSOLE_CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


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


class _SecurityHeaders:
    """no-store on the API (a 201 may carry keys), a strict CSP on the console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if path.startswith(API_PREFIX):
            extra.append((b"cache-control", b"no-store"))
        elif not path.startswith("/api/"):
            extra.append((b"content-security-policy", _CONSOLE_CSP.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(service: RasService, *, on_change: Callable[[], None] | None = None) -> FastAPI:
    """The API and console over `service`. `on_change` is called (on the event loop's thread)
    after a campaign is created, so the trigger loop looks for due jobs at once."""
    app = _RasApi(
        title=_TITLE,
        version=_version(),
        description=(
            "Cards, the versioned content repository, deployment campaigns and the cards' "
            "admin session logs of an openscws remote administration server. Errors are "
            "RFC 9457 problem documents."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.add_middleware(_SecurityHeaders)
    _error_handlers(app)
    _card_routes(app, service)
    _content_routes(app, service)
    _campaign_routes(app, service, on_change)

    @app.get(f"{API_PREFIX}/health", tags=_SERVICE_TAGS, responses=_problem(503, "No database"))
    def health() -> Health:
        """The service answers and its database too."""
        try:
            service.card("0" * 19)  # a cheap indexed read: proves the database answers
        except Exception as exc:  # noqa: BLE001 - any failure here means "not healthy"
            log.warning("health check: %s", type(exc).__name__)
            raise HTTPException(503, "the database does not answer") from None
        return Health(version=app.version)

    # Last: everything the API does not claim is the console's (index.html at /).
    app.mount("/", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    return app


# -- errors ----------------------------------------------------------------------------------


def _error_handlers(app: FastAPI) -> None:
    async def ras_error(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, NotFound):
            return _problem_response(404, str(exc))
        if isinstance(exc, Conflict):
            return _problem_response(409, str(exc))
        if isinstance(exc, VaultError):
            log.error("vault: %s", exc)
            return _problem_response(500, "the server cannot open its stored card keys")
        return _problem_response(400, str(exc))

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
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


def _new_key(given: SecretStr | None, key_byte: int) -> tuple[bytes, str | None]:
    """The key sent (hex in a SecretStr), or a fresh one sized for `key_byte`'s algorithm
    together with its hex, to be shown once."""
    if given is not None:
        return bytes.fromhex(given.get_secret_value()), None
    key = secrets.token_bytes(_KEY_SIZES.get(key_byte & 0x0F, 16))
    return key, key.hex().upper()


def _card_routes(app: FastAPI, service: RasService) -> None:
    tags: list[str | Enum] = ["cards"]

    @app.get(f"{API_PREFIX}/cards", tags=tags)
    def list_cards() -> list[CardOut]:
        """Every card, by ICCID. Keys are never shown."""
        return [CardOut.of(c) for c in service.list_cards()]

    @app.post(
        f"{API_PREFIX}/cards",
        tags=tags,
        status_code=201,
        responses={**_BAD, **_CONFLICT},
    )
    def create_card(body: CardCreate, response: Response) -> CardCreated:
        """Registers a card. Keys left out are generated and returned in `generated_keys`,
        this once: put them on the card (its personalisation)."""
        psk, psk_hex = _new_key(body.psk_key, 0x02)
        kic_key, kic_hex = _new_key(body.kic_key, body.kic)
        kid_key, kid_hex = _new_key(body.kid_key, body.kid)
        card = service.add_card(
            body.iccid,
            body.msisdn,
            psk_identity=body.psk_identity or f"scws-{body.iccid}",
            psk_key=psk,
            agent_id=body.agent_id or f"//se-id/iccid/{body.iccid}",
            ota_tar=ADMIN_TAR if body.ota_tar is None else bytes.fromhex(body.ota_tar),
            kic_key=kic_key,
            kid_key=kid_key,
            kic=body.kic,
            kid=body.kid,
            ota_counter=body.ota_counter,
        )
        response.headers["Location"] = f"{API_PREFIX}/cards/{card.iccid}"
        keys = GeneratedKeys(psk_key=psk_hex, kic_key=kic_hex, kid_key=kid_hex)
        return card_created(card, keys)

    @app.get(f"{API_PREFIX}/cards/{{iccid}}", tags=tags, responses=_MISSING)
    def get_card(
        iccid: str, jobs: Annotated[int, Query(ge=0, le=500, description="Latest jobs")] = 20
    ) -> CardDetail:
        """One card with its latest jobs."""
        card = service.card(iccid)
        if card is None:
            raise NotFound(f"no card {iccid}")
        return card_detail(card, service.card_jobs(iccid, limit=jobs) if jobs else [])

    @app.delete(f"{API_PREFIX}/cards/{{iccid}}", tags=tags, status_code=204, responses=_MISSING)
    def delete_card(iccid: str) -> Response:
        """Removes the card, its jobs and its session logs."""
        if not service.remove_card(iccid):
            raise NotFound(f"no card {iccid}")
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/cards/{{iccid}}/sessions", tags=tags, responses=_MISSING)
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


def _content_routes(app: FastAPI, service: RasService) -> None:
    tags: list[str | Enum] = ["content"]
    base = f"{API_PREFIX}/content"

    @app.get(base, tags=tags)
    def list_content() -> list[ContentOut]:
        """The current version of every path that is not deleted."""
        return [ContentOut.of(c) for c in service.list_content()]

    @app.get(f"{base}/{{path:path}}/history", tags=tags, responses=_MISSING)
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
    )
    def content_version(path: str, version: int) -> Response:
        """The body of one version, with its Content-Type, Content-Encoding and
        Content-Language; ETag is its SHA-256. A deletion's version has no body (404)."""
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
        openapi_extra={"requestBody": {"required": True, "content": {"*/*": _BINARY}}},
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

    @app.delete(f"{base}/{{path:path}}", tags=tags, responses={**_MISSING, **_CONFLICT})
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
    app: FastAPI, service: RasService, on_change: Callable[[], None] | None
) -> None:
    tags: list[str | Enum] = ["campaigns"]
    base = f"{API_PREFIX}/campaigns"

    def summary(campaign_id: int) -> CampaignOut:
        info = service.campaign(campaign_id)
        return CampaignOut.of(info, info.progress)

    @app.get(base, tags=tags)
    def list_campaigns() -> list[CampaignOut]:
        """Every campaign, oldest first, with its jobs per state."""
        return [CampaignOut.of(c, c.progress) for c in service.list_campaigns()]

    @app.post(base, tags=tags, status_code=201, responses={**_BAD, **_MISSING})
    async def create_campaign(body: CampaignCreate, response: Response) -> CampaignOut:
        """One job per card (default: every card), pinned to the current versions of `paths`
        (default: every path, deletions included). The trigger loop picks them up at once."""

        def create() -> CampaignOut:
            info = service.create_campaign(
                body.name,
                paths=body.paths,
                cards=body.cards,
                max_attempts=body.max_attempts,
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

    @app.get(f"{base}/{{campaign_id}}", tags=tags, responses=_MISSING)
    def get_campaign(campaign_id: int) -> CampaignDetail:
        """The campaign with each card's job: state, attempts and last error."""
        info = service.campaign(campaign_id)
        return campaign_detail(info, info.progress, service.campaign_cards(campaign_id))

    @app.post(f"{base}/{{campaign_id}}/cancel", tags=tags, responses={**_MISSING, **_CONFLICT})
    def cancel_campaign(campaign_id: int) -> CancelResult:
        """Fails the pending and triggered jobs; running sessions finish but never retry.
        Cancelling a cancelled campaign again changes nothing; a finished one is a 409."""
        if service.campaign(campaign_id).state == "finished":
            raise Conflict(f"campaign {campaign_id} has finished: nothing to cancel")
        cancelled = service.cancel_campaign(campaign_id)
        return CancelResult(cancelled=cancelled, campaign=summary(campaign_id))
