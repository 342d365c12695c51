"""The REST API's docs page (Swagger UI) with its assets served by the admin server itself, so
the page works on a machine with no Internet access. FastAPI's default page loads them from a
CDN; this follows FastAPI's documented self-hosting pattern with the assets (swagger-ui-bundle.js,
swagger-ui.css, favicon) that the fastapi-offline package ships."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR: Final = Path(fastapi_offline.__file__).resolve().parent / "static"
"""swagger-ui-bundle.js, swagger-ui.css, favicon.png (and redoc, unused)."""


def add_offline_docs(app: FastAPI, path: str = "/api/docs") -> None:
    """Serves Swagger UI at `path` for `app.openapi_url`, its assets under `path`/assets.
    Create `app` with `docs_url=None` and call this before any catch-all mount."""
    assets = f"{path}/assets"
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the API docs page needs the app's OpenAPI document")
    app.mount(assets, StaticFiles(directory=ASSETS_DIR), name="api-docs-assets")

    @app.get(path, include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        )
