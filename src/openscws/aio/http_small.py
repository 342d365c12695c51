"""A small HTTP/1.1 server on h11 over asyncio streams for the push path's endpoints (the PPG's
PAP URL, the push initiator's notification URL, SCWS-6): one handler coroutine gets the method,
target, headers, body and the peer's address and returns status, headers and body. Bodies over
`max_body` get 413 before the handler runs; malformed HTTP gets h11's status. Keep-alive.

Optional guards for local endpoints: `loopback_only` closes, unanswered, any connection whose
peer is not a loopback address; `max_connections` answers one connection more than that with
`503` and `Retry-After` and closes it. Both count in `refused`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import h11

__all__ = [
    "ConnectionPool",
    "HttpReply",
    "HttpRequest",
    "SmallHttpServer",
    "is_loopback",
    "peer_host",
    "post",
]

log = logging.getLogger(__name__)

IDLE_TIMEOUT: Final = 30.0


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


def is_loopback(peer: str) -> bool:
    """Whether `peer` (an address, IPv6 possibly with a %scope) is a loopback address."""
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
        max_connections: int | None = None,
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
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        """Connections being served."""
        return len(self._tasks)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        peer = peer_host(peername)
        if self.loopback_only and (peer is None or not is_loopback(peer)):
            self.refused += 1
            log.warning("%s: refused %s (loopback callers only)", self.url("/"), peername)
            writer.close()
            return
        if self.max_connections is not None and len(self._tasks) >= self.max_connections:
            self.refused += 1
            log.warning(
                "%s: %d connections open, refused one more", self.url("/"), len(self._tasks)
            )
            writer.write(_busy(1))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        try:
            while await self._one(conn, reader, writer, peer):
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError, h11.ProtocolError) as e:
            log.debug("HTTP connection ended: %s", e)
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(IDLE_TIMEOUT):
                conn.receive_data(await reader.read(65536))

    async def _one(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str | None,
    ) -> bool:
        try:
            event = await self._next(conn, reader)
        except h11.RemoteProtocolError as e:
            await self._send(conn, writer, HttpReply(e.error_status_hint, b"malformed request\n"))
            return False
        if not isinstance(event, h11.Request):
            return False
        body = bytearray()
        too_big = False
        while True:
            part = await self._next(conn, reader)
            if isinstance(part, h11.Data):
                if len(body) + len(part.data) > self.max_body:
                    too_big = True
                else:
                    body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return False
        if too_big:
            reply = HttpReply(413, f"at most {self.max_body} bytes\n".encode())
        else:
            request = HttpRequest(
                event.method.decode("ascii", "replace"),
                event.target.decode("ascii", "replace"),
                tuple(
                    (k.decode("ascii", "replace").lower(), v.decode("latin-1"))
                    for k, v in event.headers
                ),
                bytes(body),
                peer or "",
            )
            reply = await self.handler(request)
        await self._send(conn, writer, reply)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, reply: HttpReply
    ) -> None:
        fields = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        if reply.status >= 400:
            fields.append(("Connection", "close"))
        if not any(k.lower() == "content-type" for k, _ in fields):
            fields.append(("Content-Type", "text/plain"))
        try:
            out = conn.send(h11.Response(status_code=reply.status, headers=fields)) or b""
            out += conn.send(h11.Data(data=reply.body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return
        writer.write(out)
        await writer.drain()


@dataclass(slots=True)
class _Idle:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection
    since: float


class ConnectionPool:
    """Kept-alive client connections for `post`, per (host, port): a request goes over an
    idle connection when there is one (opened less than `idle` seconds ago, under the
    servers' own idle timeout), else over a new one, which is kept afterwards unless either
    side said `Connection: close`. At most `max_idle` connections per peer are kept. The
    owner closes the pool with itself."""

    def __init__(self, *, max_idle: int = 128, idle: float = IDLE_TIMEOUT / 3) -> None:
        self.max_idle = max_idle
        self.idle = idle
        self._idle: dict[tuple[str, int], list[_Idle]] = {}
        self.opened = 0
        """Connections opened (for tests and benchmarks)."""

    def take(self, key: tuple[str, int], now: float) -> _Idle | None:
        idle = self._idle.get(key)
        while idle:
            kept = idle.pop()
            if now - kept.since < self.idle and not kept.writer.is_closing():
                return kept
            kept.writer.close()
        return None

    def give(self, key: tuple[str, int], kept: _Idle) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle:
            kept.writer.close()
        else:
            idle.append(kept)

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        writers = [kept.writer for kept_list in idle.values() for kept in kept_list]
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _Stale(Exception):
    """A kept-alive connection was closed by the server before any answer."""


async def post(
    url: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    timeout: float = 30.0,
    max_body: int = 65536,
    pool: ConnectionPool | None = None,
) -> HttpReply:
    """One `POST` to an http:// `url` on h11 over asyncio streams (no thread: the push path
    hands a push on from inside the event loop, hop after hop). The answer's status, body and
    headers (names in lower case); OSError when there is no answer, TimeoutError after
    `timeout` seconds. With a `pool`, over a kept-alive connection when it has one (a kept
    connection the server closed before answering anything is replaced by a new one, once:
    the server never read that request)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise OSError(f"not an http:// URL: {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    key = (parts.hostname, port)
    fields = [("Host", f"{host}:{port}"), *headers, ("Content-Length", str(len(body)))]
    if pool is None:
        fields.append(("Connection", "close"))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        kept = pool.take(key, loop.time()) if pool is not None else None
        if kept is not None:
            try:
                return await _exchange(url, kept, target, fields, body, max_body, pool, key)
            except _Stale:
                pass
        reader, writer = await asyncio.open_connection(parts.hostname, port)
        if pool is not None:
            pool.opened += 1
        fresh = _Idle(reader, writer, h11.Connection(h11.CLIENT, 16384), loop.time())
        try:
            return await _exchange(url, fresh, target, fields, body, max_body, pool, key)
        except _Stale:
            raise OSError(f"{url}: closed before answering") from None


async def _exchange(
    url: str,
    link: _Idle,
    target: str,
    fields: list[tuple[str, str]],
    body: bytes,
    max_body: int,
    pool: ConnectionPool | None,
    key: tuple[str, int],
) -> HttpReply:
    """One request and its answer over `link`; the link goes back to `pool` when both sides
    keep it, else it is closed."""
    conn, reader, writer = link.conn, link.reader, link.writer
    keep = False
    answered = False
    try:
        out = conn.send(h11.Request(method="POST", target=target, headers=fields)) or b""
        out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        try:
            writer.write(out)
            await writer.drain()
        except ConnectionError:
            raise _Stale from None
        status, content = 0, bytearray()
        answer_headers: tuple[tuple[str, str], ...] = ()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await reader.read(65536)
                except ConnectionError:
                    if not answered:
                        raise _Stale from None
                    raise
                if not data and not answered:
                    raise _Stale
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                answered = True
                status = event.status_code
                answer_headers = tuple(
                    (k.decode("ascii", "replace").lower(), v.decode("latin-1"))
                    for k, v in event.headers
                )
            elif isinstance(event, h11.Data):
                if len(content) + len(event.data) > max_body:
                    raise OSError(f"{url}: answer over {max_body} bytes")
                content += event.data
            elif isinstance(event, h11.EndOfMessage):
                if pool is not None and conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    keep = True
                return HttpReply(status, bytes(content), answer_headers)
            elif isinstance(event, h11.ConnectionClosed):
                if not answered:
                    raise _Stale
                raise OSError(f"{url}: closed before answering")
    except h11.ProtocolError as e:
        raise OSError(f"{url}: {e}") from e
    finally:
        if keep and pool is not None:
            pool.give(key, link)
        else:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
