"""`openscws dev`'s shells: the folder watcher and the live-reload front.

**The watcher** (`watch_folder`) waits for changes under the folder (`watchfiles`, inotify
on Linux) and, after each burst, runs `DevMirror.sync`: one transaction of the card image
per burst, one printed line per change.

**The reload front** (`ReloadFront`, only with `openscws dev --reload`) is a small HTTP/1.1
server (h11) on the local port the developer opens. It passes each request to the gateway's
HTTP port unchanged and passes the answer back, adding one line to HTML pages (status 200,
`text/html`, not content-encoded): a script tag for `/.openscws-dev/reload.js`, which listens
to `/.openscws-dev/events` (Server-Sent Events: the site's version now, then each new one)
and reloads the page when the version changes. So the snippet exists only in what this front
sends; the card image and the card's own answers (HTTPS, or the gateway's port) never have
it. Paths under `/.openscws-dev/` are the front's own; a site file there is not reachable
through the front."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Final

import h11

from openscws.errors import StoreError
from openscws.store.devsite import DevChange, DevMirror

__all__ = ["RELOAD_PREFIX", "RELOAD_SCRIPT", "ReloadFront", "inject_snippet", "watch_folder"]

log = logging.getLogger(__name__)

RELOAD_PREFIX: Final = "/.openscws-dev/"
"""The reload front's own paths."""
EVENTS_PATH: Final = RELOAD_PREFIX + "events"
SCRIPT_PATH: Final = RELOAD_PREFIX + "reload.js"
SNIPPET: Final = f'<script src="{SCRIPT_PATH}"></script>\n'.encode("ascii")
RELOAD_SCRIPT: Final = b"""\
// openscws dev --reload: reload this page when the site on the card changes.
(() => {
  let first = null;
  const events = new EventSource("/.openscws-dev/events");
  events.onmessage = (message) => {
    if (first === null) {
      first = message.data;
      window.openscwsDevVersion = first;
    } else if (message.data !== first) {
      events.close();
      location.reload();
    }
  };
})();
"""
_BODY_END: Final = re.compile(rb"</body\s*>", re.IGNORECASE)
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"te", b"upgrade"}
)
KEEP_ALIVE_COMMENT: Final = 15.0
"""Seconds between SSE comments on an idle events stream (a closed client shows up then)."""
MAX_BODY: Final = 64 * 1024 * 1024

_Answer = tuple[int, bytes, list[tuple[bytes, bytes]], bytes]
"""Status, reason phrase, header fields, body."""
_TEXT: Final = b"text/plain; charset=utf-8"


def inject_snippet(html: bytes) -> bytes:
    """`html` with the reload script tag before its last `</body>` (at the end if none)."""
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + SNIPPET
    at = ends[-1].start()
    return html[:at] + SNIPPET + html[at:]


async def watch_folder(
    mirror: DevMirror,
    on_sync: Callable[[list[DevChange]], None],
    stop: asyncio.Event,
    *,
    debounce_ms: int = 300,
) -> None:
    """Syncs the mirror after every burst of changes under its folder until `stop` is set.
    A sync that fails (a file unreadable for a moment) is logged and retried on the next
    change; the image keeps the last good sync."""
    import watchfiles

    async for _ in watchfiles.awatch(
        mirror.directory,
        stop_event=stop,
        debounce=debounce_ms,
        step=50,
        watch_filter=None,
        recursive=True,
    ):
        try:
            changes = mirror.sync()
        except (StoreError, OSError) as exc:  # a bad moment of the folder: try again later
            log.warning("could not mirror %s: %s", mirror.directory, exc)
            continue
        on_sync(changes)


class ReloadFront:
    """The live-reload front on `host`:`port` (0: any free port) before the gateway's HTTP
    port, which `upstream()` names. `changed()` announces a new version of the site."""

    def __init__(self, host: str, port: int, upstream: Callable[[], tuple[str, int]]) -> None:
        self.host = host
        self._port = port
        self._upstream = upstream
        self._run = os.urandom(4).hex()
        self._version = 0
        self._event = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def version(self) -> str:
        """The site's version as the events stream tells it (new after every change)."""
        return f"{self._run}-{self._version}"

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self._port)

    def changed(self) -> None:
        self._version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def stop(self) -> None:
        self._stopping = True
        self._event.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close_clients()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- one client ----------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while not self._stopping:
                got = await _read_message(conn, reader)
                if got is None:
                    return
                request, body = got
                assert isinstance(request, h11.Request)
                path = request.target.decode("latin-1").split("?", 1)[0]
                if path == EVENTS_PATH and request.method == b"GET":
                    await self._events(conn, writer)
                    return
                if path == SCRIPT_PATH:
                    answer = _answer(200, b"text/javascript; charset=utf-8", RELOAD_SCRIPT)
                else:
                    answer = await self._forward(request, body)
                status, reason, headers, data = answer
                response = h11.Response(status_code=status, headers=headers, reason=reason)
                writer.write(conn.send(response) or b"")
                if data and request.method != b"HEAD":
                    writer.write(conn.send(h11.Data(data=data)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, OSError) as exc:
            log.debug("reload front: client dropped: %s", exc)
        finally:
            self._tasks.discard(task)
            await _close(writer)

    async def _events(self, conn: h11.Connection, writer: asyncio.StreamWriter) -> None:
        head = h11.Response(
            status_code=200,
            headers=[
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-store"),
            ],
        )
        writer.write(conn.send(head) or b"")
        told = ""
        while not self._stopping:
            if told != self.version:
                told = self.version
                writer.write(conn.send(h11.Data(data=f"data: {told}\n\n".encode())) or b"")
            await writer.drain()
            try:
                await asyncio.wait_for(self._event.wait(), KEEP_ALIVE_COMMENT)
            except TimeoutError:
                writer.write(conn.send(h11.Data(data=b": still here\n\n")) or b"")

    async def _forward(self, request: h11.Request, body: bytes) -> _Answer:
        host, port = self._upstream()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            return _answer(502, _TEXT, f"the card's gateway is not reachable: {exc.strerror}\n")
        client = h11.Connection(h11.CLIENT)
        headers = [(n, v) for n, v in request.headers if n.lower() not in _HOP_BY_HOP]
        headers.append((b"connection", b"close"))
        if body or request.method in (b"POST", b"PUT"):
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        try:
            out = (
                client.send(
                    h11.Request(method=request.method, target=request.target, headers=headers)
                )
                or b""
            )
            if body:
                out += client.send(h11.Data(data=body)) or b""
            out += client.send(h11.EndOfMessage()) or b""
            writer.write(out)
            await writer.drain()
            got = await _read_message(client, reader)
        except (h11.ProtocolError, ConnectionError, OSError) as exc:
            return _answer(502, _TEXT, f"the card's answer was cut short: {exc}\n")
        finally:
            await _close(writer)
        if got is None:
            return _answer(502, _TEXT, "the card closed the connection without an answer\n")
        response, data = got
        assert isinstance(response, h11.Response)
        kept = [(n, v) for n, v in response.headers if n not in _HOP_BY_HOP]
        head_like = request.method == b"HEAD" or response.status_code in (204, 304)
        if head_like:
            kept += [(n, v) for n, v in response.headers if n == b"content-length"]
            return response.status_code, response.reason, kept, b""
        types = [v for n, v in response.headers if n == b"content-type"]
        encoded = any(n == b"content-encoding" for n, _ in response.headers)
        if (
            response.status_code == 200
            and types
            and types[0].split(b";")[0].strip().lower() == b"text/html"
            and not encoded
        ):
            data = inject_snippet(data)
        kept.append((b"content-length", str(len(data)).encode("ascii")))
        return response.status_code, response.reason, kept, data


def _answer(status: int, content_type: bytes, body: bytes | str) -> _Answer:
    """One of the front's own answers (never cached)."""
    data = body.encode() if isinstance(body, str) else body
    headers = [
        (b"content-type", content_type),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(data)).encode("ascii")),
    ]
    return status, HTTPStatus(status).phrase.encode("ascii"), headers, data


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _read_message(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | h11.Response, bytes] | None:
    """The next request (server side) or response (client side) and its whole body; None
    when the peer closed before one began."""
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise h11.LocalProtocolError("message body too large for the reload front")
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        # h11.InformationalResponse: skipped
