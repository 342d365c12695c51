"""The terminal's local SMS entry point: a loopback HTTP endpoint through which another
process (the remote administration server's `LocalTerminalSender`, curl) hands the card an
SMS, as the network would over the air.

    POST /sms HTTP/1.1
    Content-Type: application/vnd.3gpp.sms
    <the SMS-DELIVER TPDU, 3GPP TS 23.040 §9.2.2.1>

answers `200` with the card's response data (the PoR user data, or nothing) and
`X-SMS-Status: delivered | por | busy | error` (`terminal.engine.SmsStatus`) plus `X-SMS-SW`,
the status word in hex; `400` for a TPDU that does not decode, `415` for another media type,
`503` when the card is gone. HTTP/1.1 on h11 over asyncio streams; keep-alive is served.

It is local only: it listens on a loopback address (another `host` is refused), closes any
connection whose peer is not a loopback address, and serves at most `max_connections` at once
(default MAX_CONNECTIONS): one more is answered `503` with `Retry-After` and closed. Nothing
but processes on this machine can hand the card an SMS."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import h11

from openscws.errors import ConfigError, DecodeError
from openscws.ota.sms import SmsDeliver
from openscws.terminal.engine import SmsResult

log = logging.getLogger(__name__)

SMS_MEDIA_TYPE = "application/vnd.3gpp.sms"
SMS_PATH = b"/sms"
MAX_TPDU = 200
"""Bytes of request body accepted: an SMS-DELIVER is at most 164 octets."""
IDLE_TIMEOUT = 30.0
"""Seconds a connection may sit between requests."""
MAX_CONNECTIONS: Final = 16
"""Connections served at once; the admin server's sender uses one or two."""
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: 26\r\n\r\ntoo many SMS connections\r\n"
)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_peer(peername: Any) -> bool:
    """Whether a socket peer name (host, port[, ...]) is a loopback address."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return False
    address = _address(peername[0])
    return address is not None and address.is_loopback


Deliver = Callable[[bytes], Awaitable[SmsResult]]


class SmsLocalEndpoint:
    """Serves `POST /sms` on `host:port` (port 0: the OS picks one, see `port`)."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        address = _address(host)
        if address is None or not address.is_loopback:
            raise ConfigError(f"the local SMS entry point listens on loopback only, not {host!r}")
        self.deliver = deliver
        self.host = host
        self.max_connections = max_connections
        self.refused = 0
        """Connections refused (not loopback, or over max_connections)."""
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        log.info("local SMS entry point on %s", self.url)

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/sms"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        if not is_loopback_peer(peer):
            self.refused += 1
            log.warning("local SMS entry point: refused %s (loopback callers only)", peer)
            writer.close()
            return
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            log.warning(
                "local SMS entry point: %d connections open, refused one more",
                len(self._connections),
            )
            writer.write(_BUSY)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
        try:
            while await self._one_request(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, TimeoutError, h11.ProtocolError) as e:
            log.debug("local SMS connection ended: %s", e)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _next_event(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(IDLE_TIMEOUT):
                conn.receive_data(await reader.read(4096))

    async def _one_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serves one request; True when the connection may carry another."""
        try:
            event = await self._next_event(conn, reader)
        except h11.RemoteProtocolError as e:
            await self._send(conn, writer, e.error_status_hint, b"malformed request\n")
            return False
        if not isinstance(event, h11.Request):
            return False  # ConnectionClosed (or PAUSED after a close): we are done
        body = bytearray()
        too_big = False
        while True:
            part = await self._next_event(conn, reader)
            if isinstance(part, h11.Data):
                if len(body) + len(part.data) > MAX_TPDU:
                    too_big = True
                else:
                    body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return False
        status, headers, content = await self._answer(event, bytes(body), too_big)
        await self._send(conn, writer, status, content, headers)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _answer(
        self, request: h11.Request, body: bytes, too_big: bool
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.target.split(b"?", 1)[0] != SMS_PATH:
            return 404, [], b"only /sms here\n"
        if request.method != b"POST":
            return 405, [("Allow", "POST")], b"POST an SMS-DELIVER TPDU\n"
        media = b""
        for name, value in request.headers:
            if name == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
        if media != SMS_MEDIA_TYPE.encode():
            return 415, [], f"Content-Type must be {SMS_MEDIA_TYPE}\n".encode()
        if too_big:
            return 413, [], f"an SMS-DELIVER TPDU is at most {MAX_TPDU} bytes\n".encode()
        try:
            SmsDeliver.decode(body)
        except (DecodeError, ValueError) as e:
            return 400, [], f"not an SMS-DELIVER TPDU: {e}\n".encode()
        try:
            result = await self.deliver(body)
        except ConnectionError:
            return 503, [("Retry-After", "5")], b"the card is gone\n"
        except ValueError as e:
            return 400, [], f"{e}\n".encode()
        headers = [
            ("X-SMS-Status", result.status.value),
            ("X-SMS-SW", f"{result.sw:04X}"),
            ("Content-Type", "application/octet-stream"),
        ]
        return 200, headers, result.data

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        fields = [*(headers or []), ("Content-Length", str(len(body)))]
        if status >= 400:
            fields.append(("Connection", "close"))
            if not any(name == "Content-Type" for name, _ in fields):
                fields.append(("Content-Type", "text/plain"))
        try:
            out = conn.send(h11.Response(status_code=status, headers=fields))
            assert out is not None
            out += conn.send(h11.Data(data=body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # the request left h11 unable to answer (e.g. a half-sent request)
        writer.write(out)
        await writer.drain()
