"""Runs the REST API and console (any ASGI app) with uvicorn inside an already running event
loop, beside the admin server's own loops.

The listening socket is bound here, before uvicorn starts: a taken port is a ListenError from
`serve_api`, where uvicorn would log and `sys.exit`. Signals stay with the host program
(uvicorn would otherwise take SIGINT and SIGTERM for itself), and so does logging
(`log_config=None`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from openscws.errors import ListenError

__all__ = ["ApiServer", "serve_api", "stop_api"]

log = logging.getLogger(__name__)

STOP_GRACE: Final = 5.0
"""Seconds open requests get to finish when the server stops."""


class ApiServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals alone and knows its serving task."""

    serve_task: asyncio.Task[None] | None = None
    address: tuple[str, int] = ("", 0)
    """Where it listens (kept after it stops, for messages)."""
    tls: bool = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The host program decides what SIGINT / SIGTERM do (it calls stop_api).
        yield

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.tls else "http"
        return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"


def listen_socket(what: str, host: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking listening TCP socket for a uvicorn-served app; ListenError (one line
    naming `what`) when the address cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenError(f"{what}: cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def serve_api(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    access_log: bool = True,
    tls: ssl.SSLContext | None = None,
) -> ApiServer:
    """Starts serving `app` on host:port (0: any free port, see `ApiServer.port`) and returns
    once it accepts connections; over TLS with the `tls` context (see `ras.api_tls`). Stop it
    with `stop_api`."""
    sock = listen_socket("REST API", host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        access_log=access_log,
        timeout_graceful_shutdown=int(STOP_GRACE),
    )
    if tls is not None:
        # Our own context (ras.api_tls), not one uvicorn would build from file names.
        config.load()
        config.ssl = tls
    server = ApiServer(config)
    server.tls = tls is not None
    host_bound, port_bound = sock.getsockname()[:2]
    server.address = (str(host_bound), int(port_bound))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="ras-api")
    server.serve_task = task
    while not server.started:
        if task.done():
            sock.close()
            # serve() ended before it listened: its exception says why.
            task.result()
            raise RuntimeError("the REST API server stopped while starting")
        await asyncio.sleep(0.01)
    log.info("REST API and console on %s (OpenAPI: %sapi/v1/openapi.json)", server.url, server.url)
    return server


async def stop_api(server: uvicorn.Server, timeout: float = STOP_GRACE + 2.0) -> None:
    """Stops accepting, lets open requests finish (up to STOP_GRACE seconds), then returns."""
    server.should_exit = True
    task = server.serve_task if isinstance(server, ApiServer) else None
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        server.force_exit = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    except Exception:  # stopping goes on: the caller has more to close
        log.exception("the REST API server failed")
