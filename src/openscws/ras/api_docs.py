"""The REST API's docs page (Swagger UI) with its assets served by the admin server itself, so
the page works on a machine with no Internet access. FastAPI's default page loads them from a
CDN; this follows FastAPI's documented self-hosting pattern with the assets (swagger-ui-bundle.js,
swagger-ui.css, favicon) that the fastapi-offline package ships."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Final

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_DIR", "mount_docs_assets", "swagger_page"]

ASSETS_DIR: Final = Path(fastapi_offline.__file__).resolve().parent / "static"
"""swagger-ui-bundle.js, swagger-ui.css, favicon.png (and redoc, unused)."""


def mount_docs_assets(app: FastAPI, path: str) -> None:
    """Serves the Swagger UI assets under `path`/assets (before any catch-all mount)."""
    app.mount(f"{path}/assets", StaticFiles(directory=ASSETS_DIR), name="api-docs-assets")


def swagger_page(openapi_url: str, title: str, path: str) -> tuple[str, str]:
    """The docs page at `path` for the OpenAPI document at `openapi_url`, and its
    Content-Security-Policy: scripts and styles from this origin only, the page's one inline
    script allowed by its hash."""
    assets = f"{path}/assets"
    html = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        ).body
    ).decode()
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in inline
    )
    csp = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return html, csp
