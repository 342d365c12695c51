"""The management web apps' security headers (openscws.ras.web_headers)."""

from __future__ import annotations

import warnings

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette warns when its test client falls back to httpx (the dev extra).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from openscws.ras.web_headers import API_CSP, SecurityHeaders

CONSOLE = "default-src 'self'"


def _client(**options: object) -> TestClient:
    app = FastAPI()

    @app.get("/{path:path}")
    def anything(path: str) -> PlainTextResponse:
        return PlainTextResponse(path)

    app.add_middleware(SecurityHeaders, console_csp=CONSOLE, **options)  # type: ignore[arg-type]
    return TestClient(app)


def test_api_answers_are_sandboxed_data_never_cached() -> None:
    r = _client().get("/api/v1/x")
    assert r.headers["content-security-policy"] == API_CSP
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "x-frame-options" not in r.headers


def test_console_pages_get_their_policy_and_are_never_framed() -> None:
    r = _client().get("/index.html")
    assert r.headers["content-security-policy"] == CONSOLE
    assert r.headers["x-frame-options"] == "DENY"
    assert "cache-control" not in r.headers
    kept_out = _client(console_no_store=True).get("/index.html")
    assert kept_out.headers["cache-control"] == "no-store"


def test_a_page_with_its_own_policy_keeps_it() -> None:
    client = _client(own_csp=frozenset({"/api/docs"}))
    assert "content-security-policy" not in client.get("/api/docs").headers
    assert client.get("/api/other").headers["content-security-policy"] == API_CSP
