"""The BIP gateway's shell: TCP listeners and connections around the sans-IO
`TerminalEngine`, and the APDU pump that drives the card link.

One task pumps APDUs; socket callbacks feed the engine and wake the pump (with the card in this
process, they drive the card themselves when the pump is idle).

A client is bound to a channel only once it has something for the card: on an HTTP port a
complete request head, elsewhere a first complete TLS record (or any byte, if it is not TLS).
Until then it holds no channel, only its socket and a bounded buffer, for at most
`head_timeout` seconds (then HTTP 408, or a close). So slow and silent clients cannot hold the
card's few channels. A ready client that finds every channel busy waits, in arrival order, up
to `busy_timeout` seconds, then gets a clean refusal: HTTP 503 with Retry-After on an HTTP
port, a plain close elsewhere. A refusal, like every close of the card's, is a lingering one:
the gateway stops writing (FIN) and reads and drops what the client still sends for up to
`linger` seconds, so the client reads the answer instead of a TCP reset.

A client whose responses back up in its socket (its transport's write buffer above
`write_high`) is not read from until the buffer is down to `write_low`: what one client that
never reads can make the process hold is bounded. Each listener takes at most
`max_connections` at once (a client that never became ready is dropped first to make room),
and backs off when accept() fails (out of file descriptors), logging such a storm once.

Client-mode channels ("TCP, UICC in client mode") get a real outgoing TCP connection: the
card's OPEN CHANNEL waits for it (up to `connect_timeout`), then its bytes are relayed exactly
like a server-mode client's. `deliver_sms` hands the card an SMS-PP data download, and
`aio/smsc_local.py` offers the same to other processes over loopback HTTP."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from openscws.aio.links import ApduObserver, CardGone, CardLink
from openscws.aio.smsc_local import SmsLocalEndpoint
from openscws.bip.terminal import (
    ChannelFree,
    Connect,
    Disconnect,
    GatewayAction,
    Listen,
    Requeue,
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
_TIMEOUT_BODY = b"The request did not arrive in time.\r\n"
TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n" % len(_TIMEOUT_BODY)
) + _TIMEOUT_BODY
_HEAD_END = b"\r\n\r\n"
_TLS_HANDSHAKE = 0x16
_MAX_RECORD = 16384 + 256
MAX_HEAD = 16 * 1024 + 5
"""Most a client may send before it is bound: a TLS record, or an HTTP head (the card answers
a head larger than its limit with 431)."""
_ACCEPT_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ClientState(Enum):
    READING = auto()
    """Its first request head (or TLS record) is still arriving: it holds no channel."""
    WAITING = auto()
    """Ready for the card, waiting for a free channel (reading paused)."""
    BOUND = auto()
    """Bound to a channel: bytes go both ways."""
    LINGERING = auto()
    """Closing: our side is shut, what the client still sends is read and dropped."""
    CLOSED = auto()


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
    """Seconds a ready client may wait for a free channel before it is refused."""
    head_timeout: float = 10.0
    """Seconds a client has, from its connection, to send a complete request head (or first
    TLS record) before it is dropped (HTTP: 408)."""
    http_ports: frozenset[int] = frozenset({3516, 80})
    """Card ports that speak plain HTTP: a client is bound once its request head is in, and
    refused with an HTTP 503 (or 408) rather than a bare close."""
    max_connections: int = 256
    """Connections each listener holds at once (bound, waiting or being read)."""
    write_high: int = 64 * 1024
    """Bytes queued to a client past which it is not read from any more..."""
    write_low: int = 16 * 1024
    """...until its queue is down to this."""
    linger: float = 2.0
    """Seconds a closing connection is read (and the bytes dropped) before it is closed."""
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
        self.state = ClientState.READING
        self.channel: int | None = None
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()
        """Bytes not taken yet: before binding, or what the channel's Rx buffer refused."""
        self.arrived = 0.0
        self.waiting_since = 0.0
        self.closed = False
        self.rx_full = False
        """The channel's Rx buffer refused bytes: not read until ResumeReading."""
        self.write_paused = False
        """Its transport's write buffer is above the high-water mark."""
        self._reading = True
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Each flush of the BIP Tx buffer is one write; with Nagle on, the tail of a
            # response would wait for the client's delayed ACK (about 40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = self.gateway.config
        transport.set_write_buffer_limits(high=config.write_high, low=config.write_low)
        self.gateway.client_arrived(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is ClientState.BOUND:
            self.feed(data)
        elif state is ClientState.READING:
            self.pending += data
            self.gateway.client_progress(self)
        elif state is ClientState.WAITING:
            self.pending += data
            self.update_reading()
        # LINGERING: read and dropped

    def feed(self, data: bytes) -> None:
        assert self.channel is not None
        taken = self.gateway.engine.client_data(self.channel, data)
        if taken < len(data):
            self.pending += data[taken:]
            self.rx_full = True
            self.update_reading()
        self.gateway.wake()

    def update_reading(self) -> None:
        """Reads from the socket, or not, as the client's state wants."""
        match self.state:
            case ClientState.BOUND:
                want = not self.rx_full and not self.write_paused
            case ClientState.READING:
                want = len(self.pending) < MAX_HEAD
            case ClientState.WAITING:
                want = False
            case ClientState.LINGERING:
                want = True
            case _:
                return
        transport = self.transport
        if transport is None or want is self._reading:
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def flush_pending(self) -> None:
        """Hands the card what waits here, unless its answers back up in the socket: then
        the requests stay here, so that no more answers are made than the client reads."""
        if self.state is ClientState.BOUND and self.pending and not self.write_paused:
            data = bytes(self.pending)
            self.pending.clear()
            self.feed(data)
        self.update_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.flush_pending()

    def linger(self, last: bytes = b"") -> None:
        """Writes `last`, shuts our side and reads (dropping it) whatever the client still
        sends, until it closes or `linger` seconds pass: then the close is not a reset."""
        transport = self.transport
        if transport is None or self.closed or self.state is ClientState.LINGERING:
            return
        self.state = ClientState.LINGERING
        self.channel = None
        self.pending.clear()
        if last:
            transport.write(last)
        try:
            if transport.can_write_eof():
                transport.write_eof()
        except OSError:  # the client is gone already
            transport.close()
            return
        self.update_reading()
        loop = asyncio.get_running_loop()
        self._linger_timer = loop.call_later(self.gateway.config.linger, transport.close)

    def eof_received(self) -> bool | None:
        return False  # close our side too: BIP has no half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self.gateway.client_left(self)
        self.state = ClientState.CLOSED


class RemoteConnection(ClientConnection):
    """The TCP connection of a client-mode channel. Bytes that come before the channel is
    attached (the OPEN CHANNEL's TR not yet queued) wait in `pending`, reading paused."""

    def __init__(self, gateway: Gateway, port: int) -> None:
        super().__init__(gateway, port)
        self.state = ClientState.WAITING

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = self.gateway.config
        transport.set_write_buffer_limits(high=config.write_high, low=config.write_low)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.client_left(self)
        self.state = ClientState.CLOSED


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
        self.engine = engine or TerminalEngine()
        self.observer = observer
        self.clock = clock
        self.atr = b""
        self._sockets: dict[int, socket.socket] = {}
        self._accepting: dict[int, bool] = {}  # port -> its socket is watched for clients
        self._connections: dict[int, set[ClientConnection]] = {}  # port -> its clients
        self._accept_backoff: dict[int, float] = {}
        self._accept_storm: dict[int, int] = {}  # port -> accept errors since the last success
        self._clients: dict[int, ClientConnection] = {}
        self._waiting: dict[int, deque[ClientConnection]] = {}
        """Ready clients waiting for a channel of each port, in arrival order."""
        self._reading: deque[ClientConnection] = deque()
        """Clients whose first request is still arriving, in arrival order."""
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
        # The terminal's own SMS consumers (the DM client's Package #0 WAP push): an SMS they
        # answer (not None) stays in the terminal; every other one goes to the card.
        self.terminal_sms: Callable[[bytes], Awaitable[SmsResult | None]] | None = None
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
            for port in list(self._sockets):
                self._stop_listening(port)
            for clients in self._connections.values():
                for client in list(clients):
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
                and not self._reading
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
        if self._reading:
            times.append(self._reading[0].arrived + self.config.head_timeout - now)
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
                        if isinstance(client, RemoteConnection):
                            client.transport.close()
                        else:
                            client.linger()
                case ResumeReading(channel):
                    client = self._clients.get(channel)
                    if client is not None and client.transport is not None:
                        client.rx_full = False
                        client.flush_pending()
                case ChannelFree(port):
                    self._bind_waiting(port)
                case Requeue(channel, port, data):
                    self._requeue(channel, data)
                case Listen(port):
                    # Bound before the OPEN CHANNEL is answered, so that "port not
                    # available" is the truth.
                    ok = self._bind(port)
                    self.engine.listen_result(port, ok)
                    if ok:
                        self._serve(port)
                case StopListening(port):
                    self._stop_listening(port)
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
        ValueError when the envelope does not fit one APDU. An SMS for the terminal itself
        (`terminal_sms`) is answered by it and never reaches the card."""
        if self.terminal_sms is not None:
            handled = await self.terminal_sms(tpdu)
            if handled is not None:
                return handled
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

    def _serve(self, port: int) -> None:
        if self._sockets.get(port) is None:
            return
        self._connections.setdefault(port, set())
        self._watch(port)
        log.info(
            "BIP gateway listening on %s:%d for card port %d",
            self.config.host,
            self.local_port(port),
            port,
        )
        self._listening.set()

    def _watch(self, port: int) -> None:
        sock = self._sockets.get(port)
        if sock is None or self._accepting.get(port):
            return
        self._accepting[port] = True
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, port)

    def _unwatch(self, port: int) -> None:
        sock = self._sockets.get(port)
        if sock is not None and self._accepting.get(port):
            asyncio.get_running_loop().remove_reader(sock.fileno())
        self._accepting[port] = False

    def _stop_listening(self, port: int) -> None:
        self._unwatch(port)
        sock = self._sockets.pop(port, None)
        if sock is not None:
            sock.close()

    def _accept(self, port: int) -> None:
        """Takes the clients waiting in the listen queue, up to the connection cap."""
        sock = self._sockets.get(port)
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        connections = self._connections.setdefault(port, set())
        for _ in range(32):
            if len(connections) >= self.config.max_connections and not self._evict(port):
                self._unwatch(port)  # the kernel's queue holds the rest; see client_left
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _ACCEPT_ERRORS:
                    self._accept_failed(port, e)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            storm = self._accept_storm.pop(port, 0)
            self._accept_backoff.pop(port, None)
            if storm:
                log.warning("port %d accepts clients again (%d accept errors)", port, storm)
            conn.setblocking(False)
            client = ClientConnection(self, port)
            connections.add(client)
            wrap = self.wrap_client  # access control (aio/acp.py), when on
            protocol = client if wrap is None else wrap(client, port)
            task = loop.create_task(self._take(client, protocol, conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _take(
        self, client: ClientConnection, protocol: asyncio.Protocol, conn: socket.socket
    ) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, conn)
        except OSError as e:
            log.debug("accepted connection failed: %s", e)
            conn.close()
            self._connections.get(client.port, set()).discard(client)

    def _accept_failed(self, port: int, error: OSError) -> None:
        """accept() fails for want of resources: stop watching the socket for a while
        (doubling up to 2 s); the first error of a storm is logged, the rest counted."""
        count = self._accept_storm.get(port, 0) + 1
        self._accept_storm[port] = count
        if count == 1:
            log.error("port %d cannot accept clients: %s; backing off", port, error.strerror)
        delay = min(2.0, self._accept_backoff.get(port, 0.05) * 2)
        self._accept_backoff[port] = delay
        self._unwatch(port)
        asyncio.get_running_loop().call_later(delay, self._watch, port)

    def _evict(self, port: int) -> bool:
        """Makes room at the cap by dropping the oldest client of `port` that never sent a
        complete request; False if there is none."""
        for client in self._reading:
            if client.port == port and client.state is ClientState.READING and not client.closed:
                log.info("port %d at its connection cap: a silent client dropped", port)
                self._refuse(client, TIMEOUT_408)
                return True
        return False

    # -- clients ---------------------------------------------------------------------------------

    def client_arrived(self, client: ClientConnection) -> None:
        client.arrived = self.clock()
        self._connections.setdefault(client.port, set()).add(client)
        self._reading.append(client)
        if client.pending:
            self.client_progress(client)

    def client_progress(self, client: ClientConnection) -> None:
        """A client not yet bound sent more: bind it (or queue it) once it is ready."""
        if not self._ready(client):
            client.update_reading()
            return
        client.state = ClientState.WAITING
        client.waiting_since = self.clock()
        queue = self._waiting.setdefault(client.port, deque())
        if not queue:
            channel = self.engine.client_connected(client.port)
            if channel is not None:
                self._attach(client, channel)
                self.wake()
                return
        client.update_reading()
        queue.append(client)
        log.debug("client on port %d waits for a channel", client.port)
        self.wake()

    def _ready(self, client: ClientConnection) -> bool:
        """Whether the client has sent what the card needs to start: a request head on an
        HTTP port, else a whole TLS record (or any byte that does not start one)."""
        pending = client.pending
        n = len(pending)
        if not n:
            return False
        if n >= MAX_HEAD:
            return True
        if client.port in self.config.http_ports:
            return _HEAD_END in pending
        if pending[0] != _TLS_HANDSHAKE or n < 5:
            return n >= 5 or pending[0] != _TLS_HANDSHAKE
        length = int.from_bytes(pending[3:5])
        # A record longer than TLS allows (RFC 8446 §5.1) is the card's to refuse at once.
        return length > _MAX_RECORD or n >= 5 + length

    def _attach(self, client: ClientConnection, channel: int) -> None:
        client.state = ClientState.BOUND
        client.channel = channel
        self._clients[channel] = client
        log.debug("client bound to channel %d", channel)
        if client.pending:
            data = bytes(client.pending)
            client.pending.clear()
            client.feed(data)
        client.update_reading()

    def _bind_waiting(self, port: int) -> None:
        queue = self._waiting.get(port)
        while queue:
            client = queue[0]
            if client.closed or client.state is not ClientState.WAITING:
                queue.popleft()
                continue
            channel = self.engine.client_connected(port)
            if channel is None:
                return
            queue.popleft()
            self._attach(client, channel)

    def _requeue(self, channel: int, data: bytes) -> None:
        """The card closed the channel before it served its client: the client waits for
        the next one, first in line, with the bytes it had sent."""
        client = self._clients.pop(channel, None)
        if client is None or client.closed:
            return
        client.channel = None
        client.rx_full = False
        client.pending[:0] = data
        client.state = ClientState.WAITING
        client.waiting_since = self.clock()
        client.update_reading()
        self._waiting.setdefault(client.port, deque()).appendleft(client)
        log.debug("client of channel %d back in line for port %d", channel, client.port)
        self._bind_waiting(client.port)

    def _refuse(self, client: ClientConnection, answer: bytes) -> None:
        http = client.port in self.config.http_ports
        client.linger(answer if http else b"")

    def _refuse_expired(self) -> None:
        now = self.clock()
        for port, queue in self._waiting.items():
            while queue and (
                queue[0].closed
                or queue[0].state is not ClientState.WAITING
                or now - queue[0].waiting_since >= self.config.busy_timeout
            ):
                client = queue.popleft()
                if client.closed or client.state is not ClientState.WAITING:
                    continue
                log.warning(
                    "client on port %d refused: no channel free for %.1f s",
                    port,
                    self.config.busy_timeout,
                )
                self._refuse(client, REFUSAL_503)
        reading = self._reading
        while reading and (
            reading[0].closed
            or reading[0].state is not ClientState.READING
            or now - reading[0].arrived >= self.config.head_timeout
        ):
            client = reading.popleft()
            if client.closed or client.state is not ClientState.READING:
                continue
            log.info(
                "client on port %d dropped: no request within %.1f s",
                client.port,
                self.config.head_timeout,
            )
            self._refuse(client, TIMEOUT_408)

    def client_left(self, client: ClientConnection) -> None:
        connections = self._connections.get(client.port)
        if connections is not None and client in connections:
            connections.discard(client)
            if not self._accepting.get(client.port) and client.port in self._sockets:
                if client.port not in self._accept_storm:
                    self._watch(client.port)  # below the cap again
        if client.channel is not None:
            self._clients.pop(client.channel, None)
            self.engine.client_closed(client.channel)
            client.channel = None
            self.wake()
