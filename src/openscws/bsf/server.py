"""The BSF's network shell: Ub (HTTP or HTTPS) and Zn (HTTPS, or HTTP on loopback only) as two
small ASGI apps under uvicorn, each request handed to `BsfService` in a worker thread (the
database and MILENAGE block). A periodic task drops expired challenges and sessions.

Zn with `zn_client_ca` requires a client certificate from that CA (mutual TLS) on top of the
NAF's bearer token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import uvicorn

from openscws.bsf.service import BsfService, HttpAnswer
from openscws.errors import ConfigError
from openscws.ras.api_server import listen_socket

__all__ = [
    "AppServer",
    "BsfServer",
    "SmallApp",
    "TlsFiles",
    "listen_ub",
    "send_answer",
    "serve_app",
    "server_url",
    "start_bsf",
]

log = logging.getLogger(__name__)

MAX_BODY: Final = 65536
BACKLOG: Final = 256
PURGE_EVERY_S: Final = 60.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None
    """Mutual TLS: clients must present a certificate from this CA."""


class SmallApp:
    def __init__(
        self, name: str, handler: Callable[[str, str, dict[str, str], bytes], HttpAnswer]
    ) -> None:
        self.name = name
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await send_answer(send, HttpAnswer(413))
                return
            if not message.get("more_body"):
                break
        try:
            answer = await asyncio.to_thread(
                self.handler, scope["method"], scope["path"], headers, bytes(body)
            )
        except Exception:
            log.exception("%s: the request failed", self.name)
            answer = HttpAnswer(500)
        await send_answer(send, answer)


async def send_answer(send: Send, answer: HttpAnswer) -> None:
    fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    fields.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": fields})
    await send({"type": "http.response.body", "body": answer.body})


class AppServer(uvicorn.Server):
    task: asyncio.Task[None] | None = None
    port: int = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # the host program keeps its signals
        yield


async def serve_app(
    app: SmallApp,
    host: str,
    port: int,
    tls: TlsFiles | None,
    *,
    sock: socket.socket | None = None,
) -> AppServer:
    """Serves `app` on host:port, or on `sock` when given (a listening socket shared by worker
    processes)."""
    if sock is None:
        sock = listen_socket(app.name, host, port, backlog=BACKLOG)
    options: dict[str, Any] = {}
    if tls is not None:
        options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
        if tls.client_ca is not None:
            options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, lifespan="off", access_log=False,
        timeout_graceful_shutdown=2, server_header=False, **options,
    )  # fmt: skip
    server = AppServer(config)
    server.port = int(sock.getsockname()[1])
    server.task = asyncio.create_task(server.serve(sockets=[sock]), name=app.name)
    while not server.started:
        if server.task.done():
            sock.close()
            server.task.result()
            raise ConfigError(f"{app.name}: the server stopped while starting")
        await asyncio.sleep(0.01)
    return server


@dataclass
class BsfServer:
    service: BsfService
    ub: AppServer
    zn: AppServer | None
    ub_url: str
    zn_url: str | None
    _purger: asyncio.Task[None] | None

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
        for server in (self.ub, self.zn):
            if server is None or server.task is None:
                continue
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(server.task), 5)
            except TimeoutError:
                server.force_exit = True
                server.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await server.task


def server_url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/"


async def start_bsf(
    service: BsfService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: TlsFiles | None = None,
    zn_host: str = "127.0.0.1",
    zn_port: int | None = 0,
    zn_tls: TlsFiles | None = None,
    ub_socket: socket.socket | None = None,
    purge: bool = True,
) -> BsfServer:
    """Serves Ub on host:port (or on `ub_socket`, see `listen_ub`) and, unless `zn_port` is
    None, Zn on zn_host:zn_port (0: a free port). Zn without TLS is refused anywhere but on
    loopback. `purge`: this process drops expired state (one process of several does)."""
    if zn_port is not None and zn_tls is None and zn_host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError("Zn carries NAF keys: give it TLS (--zn-cert/--zn-key) off loopback")

    def ub(method: str, _path: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
        if method not in ("GET", "POST"):
            return HttpAnswer(405, (("Allow", "GET, POST"),))
        return service.ub(method, headers.get("authorization"), body)

    def zn(method: str, path: str, headers: dict[str, str], body: bytes) -> HttpAnswer:
        if path != "/zn/v1/keys":
            return HttpAnswer(404)
        if method != "POST":
            return HttpAnswer(405, (("Allow", "POST"),))
        return service.zn(headers.get("authorization"), body)

    ub_server = await serve_app(SmallApp("BSF Ub", ub), host, port, tls, sock=ub_socket)
    zn_server = None
    if zn_port is not None:
        try:
            zn_server = await serve_app(SmallApp("BSF Zn", zn), zn_host, zn_port, zn_tls)
        except BaseException:
            ub_server.should_exit = True
            raise
    purger = asyncio.create_task(_purge(service), name="bsf-purge") if purge else None
    ub_url = server_url("https" if tls else "http", host, ub_server.port)
    zn_url = None
    if zn_server is not None:
        zn_url = server_url("https" if zn_tls else "http", zn_host, zn_server.port) + "zn/v1/keys"
    log.info("BSF %s: Ub on %s, Zn on %s", service.server_name, ub_url, zn_url or "(off)")
    return BsfServer(service, ub_server, zn_server, ub_url, zn_url, purger)


def listen_ub(host: str, port: int) -> socket.socket:
    """Ub's listening socket made before worker processes fork, so that they all accept on it
    (the kernel hands each connection to one of them)."""
    return listen_socket("BSF Ub", host, port, backlog=BACKLOG)


async def _purge(service: BsfService) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_S)
        try:
            challenges, sessions = await asyncio.to_thread(service.purge)
        except Exception:
            log.exception("BSF: purging expired state failed")
            continue
        if challenges or sessions:
            log.info(
                "BSF: dropped %d expired challenges, %d expired sessions", challenges, sessions
            )
