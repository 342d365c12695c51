"""A small HTTP/1.1 server and client for the push path's endpoints (the PPG's PAP URL, the
push initiator's notification URL, the SCWS Push Gateway, SCWS-6), on the sans-IO codec
`openscws.http.small` driven by asyncio Protocols: one handler coroutine gets the method,
target, headers, body and the peer's address and returns status, headers and body. Bodies over
`max_body` get 413 before the handler runs (and before the body is read, when Content-Length
says so); malformed HTTP gets the codec's status (400, 431, 501, 505) and `Connection: close`.
Keep-alive, pipelined requests answered in order.

Optional guards for local endpoints: `loopback_only` closes, unanswered, any connection whose
peer is not a loopback address; `max_connections` (256 unless the server says otherwise)
answers one connection more than that with `503` and `Retry-After` and closes it. Both count in
`refused`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Final

from openscws.http.small import (
    NEED_DATA,
    PAUSED,
    Closed,
    Codec,
    Data,
    End,
    MessageError,
    RequestHead,
    ResponseHead,
    Role,
    State,
)

__all__ = [
    "MAX_CONNECTIONS",
    "ConnectionPool",
    "HttpReply",
    "HttpRequest",
    "SmallHttpServer",
    "is_loopback",
    "peer_host",
    "post",
]

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 256
"""A server's connections open at once unless it says otherwise (None: no limit)."""
IDLE_TIMEOUT: Final = 30.0
"""Seconds a server connection may stay silent (between requests or inside one) before it is
closed; a request being handled does not count."""
LINGER: Final = 2.0
"""Seconds a server connection that answered with an error keeps reading (and dropping) what
the client still sends before it closes, so that its answer is read rather than lost to a
reset (RFC 9112 §9.6)."""
_READ_HIGH: Final = 65536
"""Unparsed input past which a server connection stops reading while it is busy."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    peer: str

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[HttpRequest], Awaitable[HttpReply]]


@functools.lru_cache(maxsize=1024)
def is_loopback(peer: str) -> bool:
    """Whether `peer` (an address, IPv6 possibly with a %scope) is a loopback address (kept
    per address: local endpoints ask it of every connection from the same few peers)."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _busy(retry_after: int) -> bytes:
    body = b"too many connections\r\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        + f"Retry-After: {retry_after}\r\nConnection: close\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def peer_host(peername: object) -> str | None:
    """The address of a socket peer name (host, port[, ...]); None for anything else."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


class SmallHttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = 65536,
        max_connections: int | None = MAX_CONNECTIONS,
        loopback_only: bool = False,
    ) -> None:
        self.handler = handler
        self.host = host
        self._port = port
        self.max_body = max_body
        self.max_connections = max_connections
        self.loopback_only = loopback_only
        self.refused = 0
        """Connections refused (not loopback with `loopback_only`, or over `max_connections`)."""
        self._server: asyncio.Server | None = None
        self._conns: set[_ServerConnection] = set()
        self._ending: set[_ServerConnection] = set()
        """Connections that answered for the last time and linger (they are not served)."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._connection, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    def _connection(self) -> _ServerConnection:
        return _ServerConnection(self)

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def close(self) -> None:
        """Stops listening and ends every live connection (a handler still running is
        cancelled)."""
        if self._server is not None:
            self._server.close()
        conns = [*self._conns, *self._ending]
        tasks = [conn.task for conn in conns if conn.task is not None]
        for conn in conns:
            conn.end()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in conns:
            await conn.closed
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        """Connections being served."""
        return len(self._conns)


async def _wait(answer: Awaitable[HttpReply]) -> HttpReply:
    return await answer


class _ServerConnection(asyncio.Protocol):
    """One server connection: bytes from the transport go through the codec; each request
    read whole goes to the handler (an eager task: a handler that does not wait costs no
    trip through the event loop); its answer goes out before the next request is read."""

    def __init__(self, server: SmallHttpServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.codec = Codec(Role.SERVER, max_body=server.max_body)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.task: asyncio.Task[HttpReply] | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.head: RequestHead | None = None
        self.body: list[bytes] = []
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.reading_paused = False
        self.writing_paused = False

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        peername = transport.get_extra_info("peername")
        peer = peer_host(peername)
        if server.loopback_only and (peer is None or not is_loopback(peer)):
            server.refused += 1
            log.warning("%s: refused %s (loopback callers only)", server.url("/"), peername)
            self.lingering = True
            transport.close()
            return
        if server.max_connections is not None and len(server._conns) >= server.max_connections:
            server.refused += 1
            log.warning(
                "%s: %d connections open, refused one more", server.url("/"), len(server._conns)
            )
            transport.write(_busy(1))
            self._linger()
            return
        server._conns.add(self)
        self.peer = peer or ""
        self.last = self.loop.time()
        self.timer = self.loop.call_at(self.last + IDLE_TIMEOUT, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.last = self.loop.time()
        self.codec.receive_data(data)
        if self.task is None and not self.writing_paused:
            self._pump()
        elif self.codec.buffered > _READ_HIGH and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.lingering:
            self._close()
            return False
        self.codec.receive_data(b"")
        if self.task is None and not self.writing_paused:
            self._pump()
        return True  # the answer to a request already read still goes out

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.task is None and not self.lingering:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._conns.discard(self)
        self.server._ending.discard(self)
        self.lingering = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if exc is not None:
            log.debug("HTTP connection ended: %s", exc)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- requests -------------------------------------------------------------------------

    def _pump(self) -> None:
        """Reads events until one needs more bytes, a handler must run, or the connection
        ends."""
        codec = self.codec
        try:
            while not self.lingering:
                event = codec.next_event()
                if event is NEED_DATA:
                    if self.reading_paused:
                        self.reading_paused = False
                        assert self.transport is not None
                        self.transport.resume_reading()
                    return
                if isinstance(event, Data):
                    self.body.append(event.data)
                elif isinstance(event, RequestHead):
                    self.head = event
                elif isinstance(event, End):
                    if not self._handle():
                        return
                elif event is PAUSED:  # an answer is due first
                    return
                else:  # Closed: the client left between requests
                    self._close()
                    return
        except MessageError as e:
            log.debug("HTTP connection ended: %s", e)
            if e.status == 413:
                body = f"at most {self.server.max_body} bytes\n".encode()
            else:
                body = b"malformed request\n"
            self._send(HttpReply(e.status, body), refused=True)

    def _handle(self) -> bool:
        """Runs the handler on the request just read; whether its answer went out already
        (else it goes out when the handler is done)."""
        head = self.head
        assert head is not None
        request = HttpRequest(
            head.method, head.target, head.headers, b"".join(self.body), self.peer
        )
        self.head, self.body = None, []
        answer = self.server.handler(request)
        coro = answer if isinstance(answer, Coroutine) else _wait(answer)
        task: asyncio.Task[HttpReply] = asyncio.eager_task_factory(self.loop, coro)
        if task.done():
            self._answer(task)
            return True
        self.task = task
        task.add_done_callback(self._answer)
        return False

    def _answer(self, task: asyncio.Task[HttpReply]) -> None:
        resume = self.task is task
        self.task = None
        if self.lingering:
            return
        if task.cancelled():
            self._close()
            return
        error = task.exception()
        if error is not None:
            log.error("%s: the handler failed", self.server.url("/"), exc_info=error)
            self._send(HttpReply(500, b"internal error\n"))
            return
        self._send(task.result())
        if resume and not self.writing_paused:
            self._pump()

    def _send(self, reply: HttpReply, *, refused: bool = False) -> None:
        """Sends `reply`; after the last answer, closes (lingering first when the client may
        still be sending: a refused request, or requests pipelined behind this one)."""
        fields = list(reply.headers)
        if reply.status >= 400:
            fields.append(("Connection", "close"))
        if not any(k.lower() == "content-type" for k, _ in fields):
            fields.append(("Content-Type", "text/plain"))
        assert self.transport is not None
        try:
            out = self.codec.response(reply.status, tuple(fields), reply.body)
        except MessageError as e:
            log.warning("%s: answer not sent: %s", self.server.url("/"), e)
            self._close()
            return
        self.transport.write(out)
        self.last = self.loop.time()
        if self.codec.state is State.CLOSED:
            if refused or self.codec.buffered:
                self._linger()
            else:
                self._close()

    # -- ending ---------------------------------------------------------------------------

    def _idle(self) -> None:
        self.timer = None
        if self.lingering:
            return
        now = self.loop.time()
        due = self.last + IDLE_TIMEOUT
        if self.task is not None:
            due = now + IDLE_TIMEOUT
        elif now >= due:
            log.debug("HTTP connection ended: idle %.0f s", IDLE_TIMEOUT)
            self._close()
            return
        self.timer = self.loop.call_at(due, self._idle)

    def _linger(self) -> None:
        """Sends what is queued, half-closes, and drops what still comes until the client
        closes or `LINGER` seconds pass."""
        assert self.transport is not None
        self.lingering = True
        self.server._conns.discard(self)
        self.server._ending.add(self)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(LINGER, self._close)

    def _close(self) -> None:
        self.lingering = True
        if self.transport is not None:
            self.transport.close()

    def end(self) -> None:
        """Ends the connection now (the server closes): a running handler is cancelled."""
        if self.task is not None:
            self.task.cancel()
        self._close()


class ConnectionPool:
    """Kept-alive client connections for `post`, per (host, port): a request goes over an
    idle connection when there is one (opened less than `idle` seconds ago, under the
    servers' own idle timeout), else over a new one, which is kept afterwards unless either
    side said `Connection: close`. At most `max_idle` connections per peer are kept. The
    owner closes the pool with itself."""

    def __init__(self, *, max_idle: int = 128, idle: float = IDLE_TIMEOUT / 3) -> None:
        self.max_idle = max_idle
        self.idle = idle
        self._idle: dict[tuple[str, int], list[_ClientConnection]] = {}
        self.opened = 0
        """Connections opened (for tests and benchmarks)."""

    def take(self, key: tuple[str, int], now: float) -> _ClientConnection | None:
        idle = self._idle.get(key)
        while idle:
            kept = idle.pop()
            if now - kept.since < self.idle and kept.usable:
                return kept
            kept.close()
        return None

    def give(self, key: tuple[str, int], kept: _ClientConnection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle:
            kept.close()
        else:
            idle.append(kept)

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        kept = [conn for conns in idle.values() for conn in conns]
        for conn in kept:
            conn.close()
        for conn in kept:
            await conn.closed


class _Stale(Exception):
    """A kept-alive connection was closed by the server before any answer."""


class _ClientConnection(asyncio.Protocol):
    """One client connection: a request goes out with `exchange`; the codec reads its
    answer."""

    def __init__(self, since: float) -> None:
        self.since = since
        self.loop = asyncio.get_running_loop()
        self.codec = Codec(Role.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.waiter: asyncio.Future[HttpReply] | None = None
        self.url = ""
        self.keep = False
        self.heard = False
        """Whether any byte of the answer arrived."""
        self.lost = False
        self.head: ResponseHead | None = None
        self.body: list[bytes] = []

    @property
    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        self.heard = True
        self.codec.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.codec.receive_data(b"")
            self._pump()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if not self.heard:
                waiter.set_exception(_Stale())
            elif exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_exception(OSError(f"{self.url}: closed before answering"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()
        elif not self.closed.done():
            self.closed.set_result(None)

    async def exchange(
        self, url: str, target: str, fields: tuple[tuple[str, str], ...], body: bytes, max_body: int
    ) -> HttpReply:
        """One request and its answer; `keep` says afterwards whether the connection may
        carry another."""
        if not self.usable:
            raise _Stale
        assert self.transport is not None
        self.url = url
        self.keep = False
        self.heard = False
        self.codec.max_body = max_body
        try:
            out = self.codec.request("POST", target, fields, body)
        except MessageError as e:
            raise OSError(f"{url}: {e.reason}") from None
        waiter: asyncio.Future[HttpReply] = self.loop.create_future()
        self.waiter = waiter
        self.transport.write(out)
        try:
            return await waiter
        finally:
            self.waiter = None

    def _pump(self) -> None:
        waiter = self.waiter
        assert waiter is not None
        codec = self.codec
        try:
            while True:
                event = codec.next_event()
                if event is NEED_DATA:
                    return
                if isinstance(event, Data):
                    self.body.append(event.data)
                elif isinstance(event, ResponseHead):
                    self.head = event
                elif isinstance(event, End):
                    head = self.head
                    assert head is not None
                    reply = HttpReply(head.status, b"".join(self.body), head.headers)
                    self.head, self.body = None, []
                    if codec.keep_alive and not codec.buffered and not self.lost:
                        codec.start_next_cycle()
                        self.keep = True
                    waiter.set_result(reply)
                    return
                elif isinstance(event, Closed):
                    if self.heard:
                        waiter.set_exception(OSError(f"{self.url}: closed before answering"))
                    else:
                        waiter.set_exception(_Stale())
                    return
                else:  # PAUSED: the answer was read already
                    return
        except MessageError as e:
            if e.status == 413:
                error = OSError(f"{self.url}: answer over {codec.max_body} bytes")
            else:
                error = OSError(f"{self.url}: {e.reason}")
            waiter.set_exception(error)


@functools.lru_cache(maxsize=4096)
def _http_target(url: str) -> tuple[str, int, str, str]:
    """(host name, port, request target, Host field) of an http:// URL, parsed once per URL
    (a push path posts to the same few URLs again and again); OSError for any other URL."""
    parts = urllib.parse.urlsplit(url)
    hostname = parts.hostname
    if parts.scheme != "http" or not hostname:
        raise OSError(f"not an http:// URL: {url!r}")
    try:
        port = parts.port or 80
    except ValueError as e:
        raise OSError(f"{url!r}: {e}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = f"[{hostname}]" if ":" in hostname else hostname
    return hostname, port, target, f"{host}:{port}"


async def post(
    url: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    timeout: float = 30.0,
    max_body: int = 65536,
    pool: ConnectionPool | None = None,
) -> HttpReply:
    """One `POST` to an http:// `url` over an asyncio Protocol (no thread: the push path
    hands a push on from inside the event loop, hop after hop). The answer's status, body and
    headers (names in lower case); OSError when there is no answer, TimeoutError after
    `timeout` seconds. With a `pool`, over a kept-alive connection when it has one (a kept
    connection the server closed before answering anything is replaced by a new one, once:
    the server never read that request)."""
    hostname, port, target, host_field = _http_target(url)
    key = (hostname, port)
    fields = (("Host", host_field), *headers)
    if pool is None:
        fields += (("Connection", "close"),)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        kept = pool.take(key, loop.time()) if pool is not None else None
        if kept is not None:
            try:
                return await _exchange(url, kept, target, fields, body, max_body, pool, key)
            except _Stale:
                pass
        now = loop.time()
        _, fresh = await loop.create_connection(lambda: _ClientConnection(now), hostname, port)
        if pool is not None:
            pool.opened += 1
        try:
            return await _exchange(url, fresh, target, fields, body, max_body, pool, key)
        except _Stale:
            raise OSError(f"{url}: closed before answering") from None


async def _exchange(
    url: str,
    link: _ClientConnection,
    target: str,
    fields: tuple[tuple[str, str], ...],
    body: bytes,
    max_body: int,
    pool: ConnectionPool | None,
    key: tuple[str, int],
) -> HttpReply:
    """One request and its answer over `link`; the link goes back to `pool` when both sides
    keep it, else it is closed."""
    try:
        return await link.exchange(url, target, fields, body, max_body)
    finally:
        if link.keep and pool is not None:
            link.keep = False
            pool.give(key, link)
        else:
            link.close()
