"""The BIP gateway's shell: TCP listeners and connections around the sans-IO
`TerminalEngine`, and the APDU pump that drives the card link.

One task pumps APDUs; socket callbacks feed the engine and wake the pump (with the card in this
process, they drive the card themselves when the pump is idle). A listener per
port accepts clients and binds each to a channel in LISTEN; a client arriving while every
channel is busy waits (paused) up to `busy_timeout`, then gets a clean refusal: HTTP 503 on an
HTTP port, a plain close elsewhere.

Client-mode channels ("TCP, UICC in client mode") get a real outgoing TCP connection: the
card's OPEN CHANNEL waits for it (up to `connect_timeout`), then its bytes are relayed exactly
like a server-mode client's. `deliver_sms` hands the card an SMS-PP data download, and
`aio/smsc_local.py` offers the same to other processes over loopback HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from openscws.aio.links import ApduObserver, CardGone, CardLink
from openscws.aio.smsc_local import SmsLocalEndpoint
from openscws.bip.terminal import (
    ChannelFree,
    Connect,
    Disconnect,
    GatewayAction,
    Listen,
    ResumeReading,
    StopListening,
    Write,
)
from openscws.cat.objects import Address, AddressType, OtherAddress
from openscws.errors import OpenScwsError
from openscws.ota.sms import SmsAddress
from openscws.terminal.engine import SmsResult, TerminalEngine

log = logging.getLogger(__name__)

_REFUSAL_BODY = b"Every SCWS channel is busy; try again soon.\r\n"
REFUSAL_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n" % len(_REFUSAL_BODY)
) + _REFUSAL_BODY


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class GatewayError(OpenScwsError):
    """The gateway cannot serve the card (a port in use, a card that opens nothing)."""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    """Address the listeners bind; 127.0.0.1 keeps the card off the network."""
    port_map: dict[int, int] = field(default_factory=dict)
    """Card port -> local TCP port, when they must differ (tests, a second card)."""
    busy_timeout: float = 10.0
    """Seconds a client may wait for a free channel before it is refused."""
    http_ports: frozenset[int] = frozenset({3516, 80})
    """Card ports whose refusal is an HTTP 503 rather than a bare close."""
    apdus_per_turn: int = 64
    """In-process links: APDUs run per event-loop turn before yielding to the sockets."""
    connect_timeout: float = 10.0
    """Seconds a client-mode OPEN CHANNEL may wait for its TCP connection."""
    connect_map: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    """(address, port) a card connects to -> where the gateway really connects (a trigger
    naming 192.0.2.1:443, a test server on 127.0.0.1)."""
    sms_port: int = 0
    """Loopback TCP port of the local SMS entry point (`aio/smsc_local.py`); 0 = off."""
    sms_service_centre: str = ""
    """Digits of the service-centre address put in SMS-PP envelopes (international); empty
    leaves the optional address out."""


class ClientConnection(asyncio.Protocol):
    def __init__(self, gateway: Gateway, port: int) -> None:
        self.gateway = gateway
        self.port = port
        self.channel: int | None = None
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()
        self.waiting_since = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Each flush of the BIP Tx buffer is one write; with Nagle on, the tail of a
            # response would wait for the client's delayed ACK (about 40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gateway.client_arrived(self)

    def data_received(self, data: bytes) -> None:
        if self.channel is None:
            self.pending += data
            if self.transport is not None:
                self.transport.pause_reading()
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        assert self.channel is not None
        taken = self.gateway.engine.client_data(self.channel, data)
        if taken < len(data):
            self.pending += data[taken:]
            if self.transport is not None:
                self.transport.pause_reading()
        self.gateway.wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too: BIP has no half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.client_left(self)


class RemoteConnection(ClientConnection):
    """The TCP connection of a client-mode channel. Bytes that come before the channel is
    attached (the OPEN CHANNEL's TR not yet queued) wait in `pending`, reading paused."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Gateway:
    def __init__(
        self,
        link: CardLink,
        engine: TerminalEngine | None = None,
        config: GatewayConfig | None = None,
        *,
        observer: ApduObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.config = config or GatewayConfig()
        self.engine = engine or TerminalEngine(listen=self._bind)
        if self.engine.channels.listen is None:
            self.engine.channels.listen = self._bind
        self.observer = observer
        self.clock = clock
        self.atr = b""
        self._sockets: dict[int, socket.socket] = {}
        self._servers: dict[int, asyncio.Server] = {}
        self._clients: dict[int, ClientConnection] = {}
        self._waiting: dict[int, deque[ClientConnection]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self._draining = False
        self._immediate = link.immediate
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.apdu_count = 0
        self.bind_errors: list[str] = []
        self.card_lost = False
        self._connecting: set[asyncio.Task[None]] = set()
        self._sms_waiters: set[asyncio.Future[SmsResult]] = set()
        self.sms_endpoint: SmsLocalEndpoint | None = None
        # Access control hook (aio/acp.py): wraps each accepted client's protocol.
        self.wrap_client: Callable[[ClientConnection, int], asyncio.Protocol] | None = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.atr = await self.link.power_on()
        if self.observer is not None:
            self.observer(b"", self.atr, self.clock())
        log.info("card ATR %s", self.atr.hex(" ").upper())
        self._task = asyncio.create_task(self._pump(), name="bip-pump")
        if self.config.sms_port:
            endpoint = SmsLocalEndpoint(self.deliver_sms, port=self.config.sms_port)
            try:
                await endpoint.start()
            except OSError as e:
                raise GatewayError(
                    f"cannot listen on {endpoint.host}:{self.config.sms_port} for the local SMS "
                    f"entry point: {e.strerror}"
                ) from e
            self.sms_endpoint = endpoint

    async def wait_listening(self, timeout: float = 10.0) -> None:
        """Returns once the card has opened its first server channel; raises GatewayError if
        a port could not be bound or the card opened none in time."""
        try:
            await asyncio.wait_for(self._listening.wait(), timeout)
        except TimeoutError:
            raise GatewayError(
                f"the card opened no server channel within {timeout:.0f} s"
            ) from None
        if self.bind_errors:
            raise GatewayError("; ".join(self.bind_errors))

    async def stop(self) -> None:
        """Stops the pump and closes everything; re-raises the error a failed pump ended with,
        once everything is closed."""
        try:
            if self._task is not None:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
        finally:
            if self.sms_endpoint is not None:
                await self.sms_endpoint.close()
            for task in self._connecting:
                task.cancel()
            self._fail_sms_waiters()
            for server in self._servers.values():
                server.close()
            for client in list(self._clients.values()):
                if client.transport is not None:
                    client.transport.close()
            for queue in self._waiting.values():
                for client in queue:
                    if client.transport is not None:
                        client.transport.close()
            await self.link.close()

    async def wait(self) -> None:
        """Runs until the pump ends (the card went away, or an error)."""
        assert self._task is not None
        await self._task

    def local_port(self, card_port: int) -> int:
        """The TCP port clients use for a card port (differs when mapped or ephemeral)."""
        sock = self._sockets.get(card_port)
        if sock is not None:
            return int(sock.getsockname()[1])
        return self.config.port_map.get(card_port, card_port)

    # -- the pump --------------------------------------------------------------------------------

    def wake(self) -> None:
        """News for the card (client data, a client come or gone). A link that answers at once
        (the card in this process) is driven right here, in the socket callback: the request
        is served without waiting for the pump task's next event-loop turn, and the response
        goes out before the next client's bytes are looked at."""
        self._woken = True
        if self._draining:
            return  # the APDU loop under way picks the news up
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the pump task is busy, or about to run
        if self._immediate:
            per_turn = self.config.apdus_per_turn
            try:
                ran = self._run_now(per_turn)
            except Exception as e:  # noqa: BLE001 - the pump task ends with it, as before
                waiter.set_exception(e)
                return
            if (
                ran < per_turn
                and not any(self._waiting.values())
                and self.engine.next_sms() is None
            ):
                # The card is idle again; the pump's timer (polls, timeouts) still stands.
                self._woken = False
                return
        waiter.set_result(None)

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        """Waits for `wake()` or `timeout` seconds. A bare future and one timer: cheaper than
        wait_for on an Event, and the pump idles once per request."""
        if self._woken:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _pump(self) -> None:
        per_turn = self.config.apdus_per_turn
        try:
            while True:
                if self._immediate:
                    ran = self._run_now(per_turn)
                else:
                    ran = await self._run_awaiting(per_turn)
                if ran == per_turn:
                    await asyncio.sleep(0)
                    continue
                self._refuse_expired()
                timeout = self._next_deadline()
                await self._sleep_until_woken(timeout)
                self._woken = False
        except asyncio.CancelledError:
            raise
        except ConnectionError as e:
            self.card_lost = True
            log.error("card link lost: %s", e)
        finally:
            self._fail_sms_waiters()

    def _run_now(self, limit: int) -> int:
        """Runs up to `limit` APDUs through a link that answers at once; returns the count.
        The engine gets one clock reading per run (a run takes well under a millisecond; the
        link reads its own for the card), the observer one per APDU."""
        engine = self.engine
        transmit = self.link.transmit_now
        observer = self.observer
        clock = self.clock
        actions = engine.channels.actions
        ran = 0
        now = clock()
        self._draining = True
        try:
            while ran < limit:
                if observer is not None:
                    now = clock()
                apdu = engine.next_apdu(now)
                if apdu is None:
                    break
                response = transmit(apdu)
                if response is None:
                    raise RuntimeError("an immediate card link did not answer at once")
                ran += 1
                if observer is not None:
                    observer(apdu, response, now)
                engine.receive_response(response, now)
                if actions:
                    self._carry_out(engine.pop_actions())
        finally:
            self._draining = False
            self.apdu_count += ran
        return ran

    async def _run_awaiting(self, limit: int) -> int:
        """`_run_now` for links that may have to wait for the card (vpcd)."""
        engine = self.engine
        link = self.link
        observer = self.observer
        ran = 0
        while ran < limit:
            now = self.clock()
            apdu = engine.next_apdu(now)
            if apdu is None:
                break
            response = link.transmit_now(apdu)
            if response is None:
                response = await link.transmit(apdu)
            self.apdu_count += 1
            if observer is not None:
                observer(apdu, response, now)
            engine.receive_response(response, now)
            if engine.channels.actions:
                self._carry_out(engine.pop_actions())
            ran += 1
        return ran

    def _next_deadline(self) -> float | None:
        now = self.clock()
        times: list[float] = []
        poll = self.engine.next_poll()
        if poll is not None:
            times.append(poll - now)
        for queue in self._waiting.values():
            if queue:
                times.append(queue[0].waiting_since + self.config.busy_timeout - now)
        sms = self.engine.next_sms()
        if sms is not None:
            times.append(sms - now)
        return max(0.0, min(times)) if times else None

    # -- actions ---------------------------------------------------------------------------------

    def _carry_out(self, actions: list[GatewayAction]) -> None:
        for action in actions:
            match action:
                case Write(channel, data):
                    # Written at once: a flush of the Tx buffer is the end of a response or
                    # a full buffer (8 KB by default), so there is no small write to gather,
                    # and the client can read it while the pump serves other channels.
                    client = self._clients.get(channel)
                    if client is not None and client.transport is not None:
                        client.transport.write(data)
                case Disconnect(channel):
                    client = self._clients.pop(channel, None)
                    if client is not None and client.transport is not None:
                        client.channel = None
                        client.transport.close()
                case ResumeReading(channel):
                    client = self._clients.get(channel)
                    if client is not None and client.transport is not None:
                        data = bytes(client.pending)
                        client.pending.clear()
                        client.transport.resume_reading()
                        if data:
                            client.feed(data)
                case ChannelFree(port):
                    self._bind_waiting(port)
                case Listen(port):
                    asyncio.get_running_loop().create_task(self._serve(port))
                case StopListening(port):
                    server = self._servers.pop(port, None)
                    if server is not None:
                        server.close()
                    self._sockets.pop(port, None)
                case Connect(channel, address, port):
                    task = asyncio.get_running_loop().create_task(
                        self._connect(channel, address, port), name=f"bip-connect-{channel}"
                    )
                    self._connecting.add(task)
                    task.add_done_callback(self._connecting.discard)

    # -- client-mode channels ------------------------------------------------------------------

    def _destination(self, address: OtherAddress, port: int) -> tuple[str, int]:
        if address.type not in (AddressType.IPV4, AddressType.IPV6):
            raise ValueError(f"address type {address.type:02X}")
        host = str(ipaddress.ip_address(address.address))
        return self.config.connect_map.get((host, port), (host, port))

    async def _connect(self, channel: int, address: OtherAddress, port: int) -> None:
        """Connects a client-mode channel, then answers the OPEN CHANNEL that waits for it."""
        connection: RemoteConnection | None = None
        host, real_port = "?", port
        try:
            host, real_port = self._destination(address, port)
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.config.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: RemoteConnection(self, real_port), host, real_port
                )
        except (OSError, TimeoutError, ValueError) as e:
            log.warning("channel %d: cannot connect to %s port %d: %s", channel, host, port, e)
        self.engine.remote_connected(channel, connection is not None)
        if connection is not None and channel not in self.engine.channels.channels:
            # The OPEN CHANNEL is no longer waiting (the card was reset): nobody to relay to.
            assert connection.transport is not None
            connection.transport.close()
            connection = None
        if connection is not None:
            log.info("channel %d: connected to %s port %d", channel, host, real_port)
            self._attach(connection, channel)  # bytes already received follow the TR
            if connection.closed:  # the server closed before the channel was attached
                self.client_left(connection)
        self.wake()

    # -- SMS-PP data download --------------------------------------------------------------------

    async def deliver_sms(self, tpdu: bytes, *, service_centre: Address | None = None) -> SmsResult:
        """Hands the card an SMS-DELIVER TPDU in an SMS-PP download ENVELOPE and returns what
        it answered. Raises CardGone when the card link is lost (or the gateway not running),
        ValueError when the envelope does not fit one APDU."""
        if self.card_lost or self._task is None or self._task.done():
            raise CardGone("the card is gone")
        future: asyncio.Future[SmsResult] = asyncio.get_running_loop().create_future()

        def done(result: SmsResult) -> None:
            if not future.done():
                future.set_result(result)

        if service_centre is None and self.config.sms_service_centre:
            digits = SmsAddress.from_digits(self.config.sms_service_centre.lstrip("+"))
            service_centre = Address(digits.ton_npi, digits.packed)
        self.engine.deliver_sms(tpdu, done, service_centre=service_centre)
        self._sms_waiters.add(future)
        try:
            self.wake()
            return await future
        finally:
            self._sms_waiters.discard(future)

    def _fail_sms_waiters(self) -> None:
        for future in self._sms_waiters:
            if not future.done():
                future.set_exception(CardGone("the card is gone"))

    # -- listeners -------------------------------------------------------------------------------

    def _bind(self, port: int) -> bool:
        """Binds the card port's listener now, so OPEN CHANNEL can answer truthfully."""
        local = self.config.port_map.get(port, port)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.config.host, local))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            log.error(
                "cannot listen on %s:%d for card port %d: %s", self.config.host, local, port, e
            )
            self.bind_errors.append(
                f"cannot listen on {self.config.host}:{local} for card port {port}: {e.strerror}"
            )
            self._listening.set()
            return False
        self._sockets[port] = sock
        return True

    async def _serve(self, port: int) -> None:
        sock = self._sockets.get(port)
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        wrap = self.wrap_client  # access control (aio/acp.py), when on

        def factory() -> asyncio.Protocol:
            client = ClientConnection(self, port)
            return client if wrap is None else wrap(client, port)

        server = await loop.create_server(factory, sock=sock)
        self._servers[port] = server
        log.info(
            "BIP gateway listening on %s:%d for card port %d",
            self.config.host,
            self.local_port(port),
            port,
        )
        self._listening.set()

    # -- clients ---------------------------------------------------------------------------------

    def client_arrived(self, client: ClientConnection) -> None:
        channel = self.engine.client_connected(client.port)
        if channel is None:
            client.waiting_since = self.clock()
            if client.transport is not None:
                client.transport.pause_reading()
            self._waiting.setdefault(client.port, deque()).append(client)
            log.debug("client on port %d waits for a channel", client.port)
        else:
            self._attach(client, channel)
        self.wake()

    def _attach(self, client: ClientConnection, channel: int) -> None:
        client.channel = channel
        self._clients[channel] = client
        log.debug("client bound to channel %d", channel)
        if client.pending:
            data = bytes(client.pending)
            client.pending.clear()
            client.feed(data)
        if client.transport is not None and not client.pending:
            client.transport.resume_reading()

    def _bind_waiting(self, port: int) -> None:
        queue = self._waiting.get(port)
        while queue:
            client = queue[0]
            if client.closed:
                queue.popleft()
                continue
            channel = self.engine.client_connected(port)
            if channel is None:
                return
            queue.popleft()
            self._attach(client, channel)

    def _refuse_expired(self) -> None:
        now = self.clock()
        for port, queue in self._waiting.items():
            while queue and (
                queue[0].closed or now - queue[0].waiting_since >= self.config.busy_timeout
            ):
                client = queue.popleft()
                if client.closed or client.transport is None:
                    continue
                log.warning(
                    "client on port %d refused: no channel free for %.1f s",
                    port,
                    self.config.busy_timeout,
                )
                if port in self.config.http_ports:
                    client.transport.write(REFUSAL_503)
                client.transport.close()

    def client_left(self, client: ClientConnection) -> None:
        if client.channel is not None:
            self._clients.pop(client.channel, None)
            self.engine.client_closed(client.channel)
            client.channel = None
            self.wake()
