"""A SIP endpoint over asyncio, UDP and TCP on one port: the thin shell around the sans-IO
codec (`push.sip`) and the non-INVITE transactions (`push.transaction`). It sends requests
(awaiting their final response, or `SipTimeout` when timer F fires) and hands each new
incoming request to a handler whose response it sends; retransmitted requests are absorbed by
the server transactions. A datagram that does not parse gets `400` when its Via can be read,
and is dropped otherwise; a TCP stream that does not parse gets `400` and is closed."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from openscws.push.sip import (
    BRANCH_MAGIC,
    SipError,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    parse_message,
    response_to,
)
from openscws.push.transaction import (
    Action,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    Terminated,
    TimedOut,
    TransactionError,
)

__all__ = ["Peer", "SipEndpoint", "SipTimeout", "new_branch", "new_tag"]

log = logging.getLogger(__name__)

PICK_TRIES: Final = 20
"""Ports tried when the system picks one and its UDP twin is taken."""
UDP_RCVBUF: Final = 2 * 1024 * 1024
"""Bytes asked for the UDP socket's receive buffer (the system caps it at its maximum)."""
TCP_IDLE: Final = 300.0
"""Seconds an idle TCP connection is kept."""
MAX_TCP: Final = 256
"""Incoming TCP connections open at once; one more has its first request answered `503`
(RFC 3261 §21.5.4) with Retry-After and is closed."""
REFUSE_WAIT: Final = 5.0
"""Seconds a connection over the limit has to send the request its 503 answers."""


class SipTimeout(Exception):
    """No final response before timer F (or the transport failed): treat as 408."""


@dataclass(frozen=True, slots=True)
class Peer:
    transport: str  # "UDP" or "TCP"
    host: str
    port: int


Handler = Callable[[SipRequest, Peer], Awaitable[SipResponse]]
type _ClientEntry = tuple[ClientTransaction, asyncio.Future[SipResponse]]
type _ServerEntry = tuple[ServerTransaction, Peer, asyncio.StreamWriter | None]


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipEndpoint) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        self.owner._received(data, Peer("UDP", host, port), None)


class SipEndpoint:
    def __init__(
        self,
        handler: Handler | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_tcp: int = MAX_TCP,
    ) -> None:
        self.handler = handler
        self.host = host
        self.max_tcp = max_tcp
        self.refused = 0
        """Incoming TCP connections refused over `max_tcp`."""
        self._tcp_open = 0
        self._port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._clients: dict[
            tuple[str, str], tuple[ClientTransaction, asyncio.Future[SipResponse]]
        ] = {}
        self._servers: dict[
            tuple[str, str], tuple[ServerTransaction, Peer, asyncio.StreamWriter | None]
        ] = {}
        self._datagrams: dict[bytes, tuple[str, str]] = {}
        """The datagram that opened each live UDP server transaction -> its key: the same
        bytes again are that request retransmitted (RFC 3261 §17.2.2), absorbed unparsed."""
        self._datagram_of: dict[tuple[str, str], bytes] = {}
        self._conns: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # One port for both transports: bind TCP first (port 0 picks), then UDP on the same.
        # With port 0 the UDP port may be taken by another program: pick again, a few times.
        chosen = self._port
        for attempt in range(PICK_TRIES):
            self._tcp = await asyncio.start_server(self._serve_tcp, self.host, chosen)
            self._port = int(self._tcp.sockets[0].getsockname()[1])
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(self.host, self._port)
                )
            except OSError as e:
                self._tcp.close()
                await self._tcp.wait_closed()
                self._tcp = None
                if chosen != 0 or e.errno != errno.EADDRINUSE or attempt == PICK_TRIES - 1:
                    raise
                continue
            break
        self._udp = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A burst of answers (a PPG sending a batch of MESSAGEs) must not overflow the
            # default receive buffer: a dropped datagram costs a timer E retransmission.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)

    @property
    def port(self) -> int:
        return self._port

    async def close(self) -> None:
        for _, future in self._clients.values():
            if not future.done():
                future.set_exception(SipTimeout("endpoint closed"))
        self._clients.clear()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            self._tcp.close_clients()
        for writer in list(self._conns.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()

    def via(self, transport: str, branch: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.host}:{self.port};branch={branch};rport"

    # -- client side -------------------------------------------------------------------------

    async def request(self, req: SipRequest, host: str, port: int, transport: str) -> SipResponse:
        """Sends `req` to `host:port` over `transport` and returns the final response."""
        transport = transport.upper()
        loop = asyncio.get_running_loop()
        tx = ClientTransaction(req, reliable=transport == "TCP")
        future: asyncio.Future[SipResponse] = loop.create_future()
        self._clients[tx.key] = (tx, future)
        writer = None
        try:
            if transport == "TCP":
                writer = await self._connect(host, port)
            self._run_client(tx, tx.start(loop.time()), Peer(transport, host, port), writer)
            return await future
        except OSError as e:
            raise SipTimeout(f"{transport} {host}:{port}: {e}") from None
        finally:
            self._clients.pop(tx.key, None)

    async def _connect(self, host: str, port: int) -> asyncio.StreamWriter:
        writer = self._conns.get((host, port))
        if writer is not None and not writer.is_closing():
            return writer
        reader, writer = await asyncio.open_connection(host, port)
        self._conns[(host, port)] = writer
        self._spawn(self._read_stream(reader, writer, Peer("TCP", host, port)))
        return writer

    def _run_client(
        self,
        tx: ClientTransaction,
        actions: list[Action],
        peer: Peer,
        writer: asyncio.StreamWriter | None,
    ) -> None:
        entry = self._clients.get(tx.key)
        for action in actions:
            match action:
                case Send(data):
                    self._send(data, peer, writer)
                case Deliver(response):
                    if response.status >= 200 and entry and not entry[1].done():
                        entry[1].set_result(response)
                case TimedOut():
                    if entry and not entry[1].done():
                        entry[1].set_exception(SipTimeout("no final response (timer F)"))
                case Terminated():
                    self._clients.pop(tx.key, None)
                    return
        deadline = tx.next_deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            loop.call_at(deadline, self._expire_client, tx, peer, writer)

    def _expire_client(
        self, tx: ClientTransaction, peer: Peer, writer: asyncio.StreamWriter | None
    ) -> None:
        if self._clients.get(tx.key, (None,))[0] is not tx:
            return
        now = asyncio.get_running_loop().time()
        if tx.next_deadline is not None and tx.next_deadline <= now:
            self._run_client(tx, tx.expire(now), peer, writer)

    # -- transport -----------------------------------------------------------------------------

    def _send(self, data: bytes, peer: Peer, writer: asyncio.StreamWriter | None) -> None:
        if peer.transport == "TCP":
            if writer is None or writer.is_closing():
                log.debug("SIP: no TCP connection to %s:%d", peer.host, peer.port)
                return
            writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, (peer.host, peer.port))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = Peer("TCP", str(host), int(port))
        if self._tcp_open >= self.max_tcp:
            self.refused += 1
            log.warning("SIP: %d TCP connections open, refusing %s:%d", self._tcp_open, host, port)
            await self._refuse(reader, writer)
            return
        self._tcp_open += 1
        try:
            await self._read_stream(reader, writer, peer)
        finally:
            self._tcp_open -= 1

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers the first request on a connection over the limit `503`, then closes it."""
        framer = StreamFramer()
        try:
            async with asyncio.timeout(REFUSE_WAIT):
                while not (messages := framer.feed(await reader.read(65536) or b"")):
                    if reader.at_eof():
                        return
            first = messages[0]
            if isinstance(first, SipRequest):
                busy = response_to(first, 503, extra=(("Retry-After", "5"),))
                writer.write(busy.encode())
                await writer.drain()
        except (ConnectionError, TimeoutError, SipError):
            pass
        finally:
            writer.close()

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        framer = StreamFramer()
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    data = await reader.read(65536)
                if not data:
                    break
                try:
                    messages = framer.feed(data)
                except SipError as e:
                    log.info("SIP: malformed stream from %s:%d: %s", peer.host, peer.port, e)
                    writer.write(
                        f"SIP/2.0 {e.status} Bad Request\r\nContent-Length: 0\r\n\r\n".encode()
                    )
                    break
                for message in messages:
                    self._dispatch(message, peer, writer)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            if self._conns.get((peer.host, peer.port)) is writer:
                del self._conns[(peer.host, peer.port)]
            writer.close()

    def _received(self, data: bytes, peer: Peer, writer: asyncio.StreamWriter | None) -> None:
        known = self._datagrams.get(data)
        if known is not None:
            # Byte for byte the request of a live transaction: it parses to the same request
            # with the same key, so it is absorbed as `_dispatch` would, without the parse.
            existing = self._servers.get(known)
            if existing is not None:
                self._retransmitted(existing[0].request, existing)
                return
        if not data.strip(b"\r\n"):
            return  # keep-alive
        try:
            message = parse_message(data)
        except SipError as e:
            log.info("SIP: malformed datagram from %s:%d: %s", peer.host, peer.port, e)
            self._bad_request(data, peer, e)
            return
        self._dispatch(message, peer, writer, data)

    def _bad_request(self, data: bytes, peer: Peer, error: SipError) -> None:
        """RFC 3261 §8.2: answer 400 when the response can be routed (a readable Via)."""
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        lines = head.split("\r\n")
        if not lines or lines[0].startswith("SIP/"):
            return
        keep = [
            line
            for line in lines[1:]
            if line.split(":", 1)[0].strip().lower()
            in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
        ]
        vias = [line for line in keep if line.split(":", 1)[0].strip().lower() in ("via", "v")]
        if not vias:
            return
        try:
            Via.parse(vias[0].split(":", 1)[1].split(",")[0])
        except SipError:
            return
        reason = error.reason.replace("\r", " ").replace("\n", " ")[:80]
        out = f"SIP/2.0 {error.status} Bad Request ({reason})\r\n" + "".join(
            f"{line}\r\n" for line in keep
        )
        self._send((out + "Content-Length: 0\r\n\r\n").encode(), peer, None)

    def _dispatch(
        self,
        message: SipMessage,
        peer: Peer,
        writer: asyncio.StreamWriter | None,
        datagram: bytes | None = None,
    ) -> None:
        try:
            if isinstance(message, SipResponse):
                key = (message.top_via.branch or "", message.cseq.method)
                entry = self._clients.get(key)
                if entry is None:
                    log.debug("SIP: stray response %d", message.status)
                    return
                tx, _ = entry
                self._run_client(
                    tx, tx.receive(message, asyncio.get_running_loop().time()), peer, writer
                )
                return
            key = (message.top_via.branch or "", message.method)
        except (SipError, TransactionError) as e:
            log.info("SIP: dropped message from %s:%d: %s", peer.host, peer.port, e)
            return
        if message.method == "ACK":
            return  # no INVITE transactions here
        existing = self._servers.get(key)
        if existing is not None:
            self._retransmitted(message, existing)
            return
        try:
            server = ServerTransaction(message, reliable=peer.transport == "TCP")
        except TransactionError:
            self._reply(
                response_to(message, 400, reason="No branch").encode(), message, peer, writer
            )
            return
        self._servers[server.key] = (server, peer, writer)
        if datagram is not None and peer.transport == "UDP":
            self._datagrams[datagram] = server.key
            self._datagram_of[server.key] = datagram
        self._spawn(self._handle(server, message, peer, writer))

    def _retransmitted(
        self,
        message: SipRequest,
        existing: tuple[ServerTransaction, Peer, asyncio.StreamWriter | None],
    ) -> None:
        """A request of a live server transaction again: the last response, if any, again."""
        try:
            for action in existing[0].retransmission():
                if isinstance(action, Send):
                    self._reply(action.data, message, existing[1], existing[2])
        except TransactionError:
            pass

    def _forget_server(self, key: tuple[str, str]) -> None:
        self._servers.pop(key, None)
        datagram = self._datagram_of.pop(key, None)
        if datagram is not None and self._datagrams.get(datagram) == key:
            del self._datagrams[datagram]

    async def _handle(
        self,
        tx: ServerTransaction,
        req: SipRequest,
        peer: Peer,
        writer: asyncio.StreamWriter | None,
    ) -> None:
        try:
            if self.handler is None:
                response = response_to(req, 405, to_tag=new_tag())
            else:
                response = await self.handler(req, peer)
        except Exception:  # the handler's bug must not leave the client waiting
            log.exception("SIP: handler failed")
            response = response_to(req, 500, to_tag=new_tag())
        loop = asyncio.get_running_loop()
        for action in tx.respond(response, loop.time()):
            if isinstance(action, Send):
                self._reply(action.data, req, peer, writer)
            elif isinstance(action, Terminated):
                self._forget_server(tx.key)
        deadline = tx.next_deadline
        if deadline is not None:
            loop.call_at(deadline, self._expire_server, tx)

    def _expire_server(self, tx: ServerTransaction) -> None:
        tx.expire(asyncio.get_running_loop().time())
        self._forget_server(tx.key)

    def _reply(
        self, data: bytes, req: SipRequest, peer: Peer, writer: asyncio.StreamWriter | None
    ) -> None:
        if peer.transport == "TCP":
            self._send(data, peer, writer)
            return
        host, port = req.top_via.reply_address((peer.host, peer.port))
        if "received" not in req.top_via.params and "rport" in req.top_via.params:
            host = peer.host  # RFC 3581: rport implies the source address
        self._send(data, Peer("UDP", host, port), None)
