"""The security headers every answer of a management web app carries (the admin server's API
and console, the BSM's): nosniff, no referrer, a strict Content-Security-Policy (one for the
API, whose answers are data and never a document of the origin; one for the console), no
framing of the console, and no caching of API answers."""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_CSP", "SecurityHeaders"]

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; sandbox"
"""API answers (stored content included): nothing in them may run, load or be framed, even
when a browser is made to render one."""


class SecurityHeaders:
    """ASGI middleware adding the headers to every HTTP answer. Paths under /api/ are the
    API's; `own_csp` names paths that set their own policy (a page with hashed inline
    scripts); `console_no_store` keeps console pages out of caches too."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        console_csp: str,
        own_csp: frozenset[str] = frozenset(),
        console_no_store: bool = False,
    ) -> None:
        self.app = app
        self.console_csp = console_csp.encode()
        self.own_csp = own_csp
        self.console_no_store = console_no_store

    def headers(self, path: str) -> list[tuple[bytes, bytes]]:
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        api = path.startswith("/api/")
        if api or self.console_no_store:
            extra.append((b"cache-control", b"no-store"))
        if path not in self.own_csp:
            csp = API_CSP.encode() if api else self.console_csp
            extra.append((b"content-security-policy", csp))
        if not api:
            extra.append((b"x-frame-options", b"DENY"))
        return extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers(str(scope.get("path", "")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
