"""The terminal's side of BIP channels (ETSI TS 102 223 §6.4.27-31): the channel table, the
Rx and Tx buffers, and what each proactive command does to them. Sans-IO: socket work comes out
as `GatewayAction`s for the shell, socket news comes in through the `client_*` methods.

Client-mode channels ("TCP, UICC in client mode, remote connection") connect at OPEN CHANNEL
whatever the qualifier says: on-demand establishment (b1 = 0) is served as immediate, which the
card sees as a link already up. When the remote end closes, bytes already in the Rx buffer stay
readable and the Channel status event (link dropped) waits until the card has read them, so a
server's last response before its FIN is not lost.

Each channel's life cycle is a state machine declared once, as a table (`TRANSITIONS`): the
states, and for each (mode, state, event) the state it leads to. An event the table does not
allow is a `ChannelStateError`, a BIP error (3A 07 "channel closed" for data on a channel
without a connection, 3A 03 "channel identifier not valid" otherwise) answered in the TERMINAL
RESPONSE, never patched over. A server channel a client left is `HELD` until the card has
heard of it, so a CLOSE CHANNEL the card built before can never hit the next client; a client
bound to a channel that the card closes with a command it built before it heard of the client
goes back to the shell (`Requeue`), not away."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto

from openscws.cat.commands import CLOSE_TO_LISTEN, CloseChannel, OpenChannel, ReceiveData, SendData
from openscws.cat.objects import (
    AddressType,
    BearerDescription,
    BipCause,
    BufferSize,
    ChannelData,
    ChannelDataLength,
    ChannelStatus,
    FurtherInfo,
    GeneralResult,
    OtherAddress,
    Result,
    ServerState,
    TransportProtocol,
)
from openscws.cat.responses import TerminalResponse
from openscws.errors import BipError
from openscws.statetable import StateTable

log = logging.getLogger(__name__)

MAX_CHANNELS = 7
_ESTABLISHED = ServerState.ESTABLISHED
DEFAULT_BEARER = BearerDescription(0x03)
"""§8.52 "default bearer for requested transport layer": reported when the card named none."""
_OK = GeneralResult.OK
_MISSING_INFORMATION = GeneralResult.MISSING_INFORMATION
_OK_WITH_MODIFICATION = GeneralResult.OK_WITH_MODIFICATION
MAX_RECEIVE = 237
"""Most channel data one TERMINAL RESPONSE can carry (255 - 18 bytes of other objects)."""


class Mode(Enum):
    SERVER = auto()
    CLIENT = auto()


class ChannelState(Enum):
    LISTEN = auto()
    """Server: in TCP LISTEN, free for the next client."""
    HELD = auto()
    """Server: in TCP LISTEN again (its client left), but not free until the card heard it."""
    ESTABLISHED = auto()
    """Server: a client is bound. Client mode: the link is up."""
    CONNECTING = auto()
    """Client mode: the OPEN CHANNEL waits for the TCP connection."""
    DROPPED = auto()
    """Client mode: the link dropped; bytes still wait in the Rx buffer for the card."""
    DOWN = auto()
    """Client mode: the link dropped and the card was told."""


class ChannelEvent(Enum):
    BIND = auto()
    """The shell binds a new TCP client (server)."""
    CLIENT_GONE = auto()
    """The TCP connection ended (server: the client; client mode: the remote server)."""
    CARD_TOLD = auto()
    """The card has heard that the server channel is back in LISTEN."""
    CONNECTED = auto()
    """Client mode: the TCP connection is up."""
    RX_READ = auto()
    """Client mode: the card read the last bytes of a dropped link."""
    SEND = auto()
    """SEND DATA."""
    RECEIVE = auto()
    """RECEIVE DATA."""
    CLOSE_TO_LISTEN = auto()
    """CLOSE CHANNEL, qualifier "back to TCP LISTEN" (server)."""
    CLOSE = auto()
    """CLOSE CHANNEL: the channel is released."""


_S = Mode.SERVER
_C = Mode.CLIENT
_L, _H, _E = ChannelState.LISTEN, ChannelState.HELD, ChannelState.ESTABLISHED
_CN, _DR, _DN = ChannelState.CONNECTING, ChannelState.DROPPED, ChannelState.DOWN
_EV = ChannelEvent

TRANSITIONS: dict[tuple[Mode, ChannelState, ChannelEvent], ChannelState | None] = {
    # Server mode (§6.4.27 "UICC in server mode", §7.5.11 Channel status event).
    (_S, _L, _EV.BIND): _E,
    (_S, _L, _EV.RECEIVE): _L,  # a RECEIVE DATA built before the card heard: 0 bytes
    (_S, _L, _EV.CLOSE_TO_LISTEN): _L,  # the close of a connection whose client left
    (_S, _L, _EV.CLOSE): None,
    (_S, _H, _EV.CARD_TOLD): _L,
    (_S, _H, _EV.RECEIVE): _H,
    (_S, _H, _EV.CLOSE_TO_LISTEN): _L,
    (_S, _H, _EV.CLOSE): None,
    (_S, _E, _EV.SEND): _E,
    (_S, _E, _EV.RECEIVE): _E,
    (_S, _E, _EV.CLIENT_GONE): _H,
    (_S, _E, _EV.CLOSE_TO_LISTEN): _L,
    (_S, _E, _EV.CLOSE): None,
    # Client mode (§6.4.27 "UICC in client mode").
    (_C, _CN, _EV.CONNECTED): _E,
    (_C, _CN, _EV.CLOSE): None,
    (_C, _E, _EV.SEND): _E,
    (_C, _E, _EV.RECEIVE): _E,
    (_C, _E, _EV.CLIENT_GONE): _DR,
    (_C, _E, _EV.CLOSE): None,
    (_C, _DR, _EV.RECEIVE): _DR,
    (_C, _DR, _EV.RX_READ): _DN,
    (_C, _DR, _EV.CLOSE): None,
    (_C, _DN, _EV.CLOSE): None,
}
"""Every allowed (mode, state, event) and the state it leads to; None: the channel is gone."""
_ESTABLISHED_CHANNEL = ChannelState.ESTABLISHED


class ChannelStateError(BipError):
    """An event the channel life cycle does not allow in the channel's state."""

    def __init__(self, channel: int, state: ChannelState, event: ChannelEvent) -> None:
        cause = (
            BipCause.CHANNEL_CLOSED
            if event in (ChannelEvent.SEND, ChannelEvent.RECEIVE)
            else BipCause.INVALID_CHANNEL
        )
        super().__init__(cause, f"channel {channel}: {event.name} not allowed in {state.name}")
        self.channel = channel
        self.state = state
        self.event = event


LIFE_CYCLE: StateTable[tuple[Mode, ChannelState, ChannelEvent], ChannelState] = StateTable(
    TRANSITIONS, lambda channel, key: ChannelStateError(channel, key[1], key[2])
)
"""`TRANSITIONS`, a (mode, state, event) it does not allow being a `ChannelStateError`."""


# -- actions for the shell ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listen:
    """Start accepting TCP connections on `port`; answer with `listen_result`."""

    port: int


@dataclass(frozen=True, slots=True)
class StopListening:
    port: int


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a TCP connection for client channel `channel`; answer with `remote_connected`."""

    channel: int
    address: OtherAddress
    port: int


@dataclass(frozen=True, slots=True)
class Write:
    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the TCP connection bound to `channel` (FIN after pending writes)."""

    channel: int


@dataclass(frozen=True, slots=True)
class ResumeReading:
    """The Rx buffer of `channel` has room again."""

    channel: int


@dataclass(frozen=True, slots=True)
class ChannelFree:
    """A server channel of `port` is back in LISTEN: a waiting client can be bound."""

    port: int


@dataclass(frozen=True, slots=True)
class Requeue:
    """The card closed `channel` with a command it built before it heard of its client: the
    client is not served there. The shell takes it back with the bytes it had sent (`data`, to go
    before anything still unread in the socket) and binds it to the next free channel."""

    channel: int
    port: int
    data: bytes


GatewayAction = (
    Listen | StopListening | Connect | Write | Disconnect | ResumeReading | ChannelFree | Requeue
)


@dataclass(slots=True)
class TerminalChannel:
    id: int
    mode: Mode
    port: int
    buffer_size: int
    state: ChannelState = ChannelState.LISTEN
    rx: bytearray = field(default_factory=bytearray)
    tx: bytearray = field(default_factory=bytearray)
    reading_paused: bool = False
    known: bool = True
    """Server: the card knew of the current client when it built its latest command (its
    Channel status event went to the card with no command of the card's waiting, or that
    command has been answered since)."""

    def fire(self, event: ChannelEvent) -> ChannelState | None:
        """Moves the channel by the table; raises ChannelStateError if it does not allow
        `event` now. Returns the new state (None: the channel is gone)."""
        new = LIFE_CYCLE.next(self.id, (self.mode, self.state, event))
        if new is not None:
            self.state = new
        return new

    @property
    def server_state(self) -> ServerState:
        """The TCP state a Channel status reports for a server channel (§8.56)."""
        return _ESTABLISHED if self.state is ChannelState.ESTABLISHED else ServerState.LISTEN

    def status(self, further: int = FurtherInfo.NONE) -> ChannelStatus:
        if self.mode is Mode.SERVER:
            return ChannelStatus.server(self.id, self.server_state, further)
        return ChannelStatus.link(self.id, self.state is ChannelState.ESTABLISHED, further)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event download owed to the card, encoded only when sent, so that a Data available
    event reports the Rx buffer as it is then."""

    channel: int
    kind: str  # "status", "data", or "waiting" (channel 0: clients of `port` wait, or not)
    further: int = FurtherInfo.NONE
    port: int = 0


DATA_EVENTS = {i: PendingEvent(i, "data") for i in range(1, MAX_CHANNELS + 1)}
"""A Data available event starts every request: one (immutable) instance per channel."""


class Channels:
    """The terminal's BIP channels and the events they owe the card."""

    def __init__(
        self,
        *,
        max_buffer_size: int = 65535,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        self.max_buffer_size = max_buffer_size
        self.listening: set[int] = set()
        """Ports the shell listens on (it said so in `listen_result`)."""
        self.max_channels = max_channels
        self.channels: dict[int, TerminalChannel] = {}
        self.actions: deque[GatewayAction] = deque()
        self.events: deque[PendingEvent] = deque()
        self.waiting_ports: set[int] = set()
        """Server ports whose TCP clients wait for a channel (the shell says so)."""

    # -- proactive commands ----------------------------------------------------------------------

    def _allocate(self) -> int:
        for i in range(1, self.max_channels + 1):
            if i not in self.channels:
                return i
        raise BipError(BipCause.NO_CHANNEL_AVAILABLE, "all channels in use")

    def _negotiate(self, asked: int) -> tuple[int, Result]:
        if asked <= self.max_buffer_size:
            return asked, Result(GeneralResult.OK)
        return self.max_buffer_size, Result(GeneralResult.OK_WITH_MODIFICATION)

    def open_server(self, command: OpenChannel) -> TerminalResponse | None:
        """The TR to a server-mode OPEN CHANNEL; None when the shell must listen on the port
        first (a `Listen` action): the TR then comes with `listen_result`."""
        assert command.transport is not None
        port = command.transport.port
        self._allocate()  # no channel free: refused before anything is bound
        if port not in self.listening:
            self.actions.append(Listen(port))
            return None
        return self._opened_server(command)

    def listen_result(self, command: OpenChannel, ok: bool) -> TerminalResponse:
        """The shell's answer to `Listen`: the TR to the OPEN CHANNEL that asked for it
        (3A 10 "port not available" when the port could not be bound)."""
        assert command.transport is not None
        port = command.transport.port
        if not ok:
            log.info("server OPEN CHANNEL refused: cannot listen on TCP %d", port)
            return TerminalResponse(
                details=command.details,
                result=Result(GeneralResult.BIP_ERROR, bytes((BipCause.PORT_NOT_AVAILABLE,))),
            )
        self.listening.add(port)
        return self._opened_server(command)

    def _opened_server(self, command: OpenChannel) -> TerminalResponse:
        assert command.transport is not None
        port = command.transport.port
        channel_id = self._allocate()
        size, result = self._negotiate(command.buffer_size.size)
        channel = TerminalChannel(channel_id, Mode.SERVER, port, size, ChannelState.LISTEN)
        self.channels[channel_id] = channel
        log.info("channel %d: UICC server mode on TCP %d, buffer %d", channel_id, port, size)
        self.actions.append(ChannelFree(port))
        return TerminalResponse(
            details=command.details,
            result=result,
            channel_statuses=(channel.status(),),
            buffer_size=BufferSize(size),
        )

    def open_client(self, command: OpenChannel) -> tuple[int, TerminalResponse | None]:
        """Reserves a client channel and asks the shell to connect; the TR comes with
        `client_connect_result`. A command the terminal cannot serve gets its TR at once
        (channel 0): a BIP error with the bearer and buffer size, as §6.8 asks of an OPEN
        CHANNEL that fails."""
        try:
            return self._open_client(command), None
        except BipError as e:
            log.info("client OPEN CHANNEL refused: %s", e)
            size, _ = self._negotiate(command.buffer_size.size)
            return 0, TerminalResponse(
                details=command.details,
                result=Result(e.result, e.additional),
                bearer=command.bearer or DEFAULT_BEARER,
                buffer_size=BufferSize(size),
            )

    def _open_client(self, command: OpenChannel) -> int:
        transport = command.transport
        destination = command.destination
        if transport is None or destination is None:
            raise BipError(
                BipCause.TRANSPORT_NOT_AVAILABLE, "client mode needs a transport and an address"
            )
        if transport.protocol != TransportProtocol.TCP_CLIENT_REMOTE:
            raise BipError(BipCause.TRANSPORT_NOT_AVAILABLE, f"transport {transport.protocol:02X}")
        if destination.type not in (AddressType.IPV4, AddressType.IPV6):
            # Empty (dynamic) or unknown address types name no host to connect to.
            raise BipError(BipCause.REMOTE_NOT_REACHABLE, f"address type {destination.type:02X}")
        channel_id = self._allocate()
        size, _ = self._negotiate(command.buffer_size.size)
        self.channels[channel_id] = TerminalChannel(
            channel_id, Mode.CLIENT, transport.port, size, ChannelState.CONNECTING
        )
        log.info(
            "channel %d: UICC client mode to TCP %d, buffer %d", channel_id, transport.port, size
        )
        self.actions.append(Connect(channel_id, destination, transport.port))
        return channel_id

    def client_connect_result(
        self, command: OpenChannel, channel_id: int, ok: bool
    ) -> TerminalResponse:
        channel = self.channels[channel_id]
        bearer = command.bearer or DEFAULT_BEARER
        if not ok:
            channel.fire(ChannelEvent.CLOSE)
            del self.channels[channel_id]
            return TerminalResponse(
                details=command.details,
                result=Result(GeneralResult.BIP_ERROR, bytes((BipCause.REMOTE_NOT_REACHABLE,))),
                bearer=bearer,
                buffer_size=BufferSize(channel.buffer_size),
            )
        channel.fire(ChannelEvent.CONNECTED)
        _, result = self._negotiate(command.buffer_size.size)
        return TerminalResponse(
            details=command.details,
            result=result,
            channel_statuses=(channel.status(),),
            bearer=bearer,
            buffer_size=BufferSize(channel.buffer_size),
        )

    def _channel(self, channel_id: int) -> TerminalChannel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise BipError(BipCause.INVALID_CHANNEL, f"no channel {channel_id}")
        return channel

    def close(self, command: CloseChannel) -> TerminalResponse:
        channel = self._channel(command.channel)
        server = channel.mode is Mode.SERVER
        to_listen = server and bool(command.details.qualifier & CLOSE_TO_LISTEN)
        connected = channel.state is ChannelState.ESTABLISHED
        unknown = server and connected and not channel.known
        channel.fire(ChannelEvent.CLOSE_TO_LISTEN if to_listen else ChannelEvent.CLOSE)
        if unknown:
            # The card closed the channel before it heard of this client: not its to drop.
            self.actions.append(Requeue(channel.id, channel.port, bytes(channel.rx)))
        elif connected:
            if channel.tx:
                self.actions.append(Write(channel.id, bytes(channel.tx)))
            self.actions.append(Disconnect(channel.id))
        channel.rx.clear()
        channel.tx.clear()
        channel.reading_paused = False
        channel.known = True
        if to_listen:
            self.actions.append(ChannelFree(channel.port))
        else:
            del self.channels[channel.id]
            if server and not any(
                c.port == channel.port and c.mode is Mode.SERVER for c in self.channels.values()
            ):
                self.listening.discard(channel.port)
                self.actions.append(StopListening(channel.port))
        # Drop events owed for a connection that no longer exists.
        self.events = deque(e for e in self.events if e.channel != channel.id)
        return TerminalResponse(details=command.details, result=Result(GeneralResult.OK))

    def send(self, command: SendData) -> TerminalResponse:
        free = self.send_data(command.channel, command.data.data, command.immediately)
        return TerminalResponse(
            details=command.details,
            result=Result(GeneralResult.OK),
            data_length=ChannelDataLength(free),
        )

    def send_data(self, channel_id: int, data: bytes, immediately: bool) -> int:
        """SEND DATA's effect (§6.4.30): store in the Tx buffer, and write it all out when
        `immediately`. Returns the free space left in the Tx buffer."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise BipError(BipCause.INVALID_CHANNEL, f"no channel {channel_id}")
        if channel.state is not _ESTABLISHED_CHANNEL:
            channel.fire(ChannelEvent.SEND)  # raises: only a connection takes data
        tx = channel.tx
        size = channel.buffer_size
        stored = len(tx) + len(data)
        if stored > size:
            raise BipError(
                BipCause.NO_SPECIFIC_CAUSE, f"Tx buffer of channel {channel.id} overflows"
            )
        if immediately:
            if tx:
                tx += data
                data = bytes(tx)
                tx.clear()
            self.actions.append(Write(channel_id, data))
            return size
        tx += data
        return size - stored

    def receive(self, command: ReceiveData) -> TerminalResponse:
        data, left, general = self.receive_data(command.channel, command.length.length)
        return TerminalResponse(
            details=command.details,
            result=Result(general),
            data=ChannelData(data),
            data_length=ChannelDataLength(left),
        )

    def receive_data(self, channel_id: int, asked: int) -> tuple[bytes, int, int]:
        """RECEIVE DATA's effect (§6.4.29): up to `asked` bytes (at most what one TERMINAL
        RESPONSE carries) from the Rx buffer. Returns (data, bytes left, general result):
        02 when fewer than asked were there, 07 when the ask was cut to fit."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise BipError(BipCause.INVALID_CHANNEL, f"no channel {channel_id}")
        if channel.state is not _ESTABLISHED_CHANNEL:
            channel.fire(ChannelEvent.RECEIVE)
        rx = channel.rx
        n = len(rx)
        if asked < n:
            n = asked
        if MAX_RECEIVE < n:
            n = MAX_RECEIVE
        data = bytes(rx[:n])
        del rx[:n]
        if channel.state is ChannelState.DROPPED and not rx:
            channel.fire(ChannelEvent.RX_READ)
            self.events.append(PendingEvent(channel_id, "status", FurtherInfo.LINK_DROPPED))
        if channel.reading_paused and len(rx) < channel.buffer_size:
            channel.reading_paused = False
            self.actions.append(ResumeReading(channel.id))
        if n < asked and asked <= MAX_RECEIVE:
            general = _MISSING_INFORMATION
        elif n < asked:
            general = _OK_WITH_MODIFICATION
        else:
            general = _OK
        return data, len(rx), general

    def statuses(self) -> tuple[ChannelStatus, ...]:
        return tuple(c.status() for c in sorted(self.channels.values(), key=lambda c: c.id))

    # -- socket news -----------------------------------------------------------------------------

    def card_told(self, channel_id: int) -> int | None:
        """The card has heard that server channel `channel_id` is back in LISTEN: it is free
        (its port is returned, for `ChannelFree`), or None if it is not held (any more)."""
        channel = self.channels.get(channel_id)
        if channel is None or channel.state is not ChannelState.HELD:
            return None
        channel.fire(ChannelEvent.CARD_TOLD)
        return channel.port

    def card_knows(self, channel_id: int) -> None:
        """The card has heard of the client bound to `channel_id` before its next command."""
        channel = self.channels.get(channel_id)
        if channel is not None and channel.state is ChannelState.ESTABLISHED:
            channel.known = True

    def free_channels(self, port: int) -> int:
        """Server channels of `port` free for a client now."""
        return sum(
            1
            for c in self.channels.values()
            if c.port == port and c.state is ChannelState.LISTEN and c.mode is Mode.SERVER
        )

    def clients_waiting(self, port: int, waiting: bool) -> None:
        """The shell has TCP clients of `port` waiting for a channel (`waiting`), or none any
        more. A change is news for the card (`clients_waiting_event`), which takes channels
        back from keep-alive connections only while clients wait."""
        if waiting == (port in self.waiting_ports):
            return
        if waiting:
            self.waiting_ports.add(port)
        else:
            self.waiting_ports.discard(port)
        # Ahead of the Channel status events queued already: the card hears that nobody waits
        # before it hears that the last waiting client has a channel, so it never takes
        # another one back for a client already served.
        self.events.appendleft(PendingEvent(0, "waiting", port=port))

    def client_connected(self, port: int) -> int | None:
        """Binds a new TCP client on `port` to a listening channel; None if all are busy."""
        for channel in sorted(self.channels.values(), key=lambda c: c.id):
            if (
                channel.port == port
                and channel.mode is Mode.SERVER
                and channel.state is ChannelState.LISTEN
            ):
                channel.fire(ChannelEvent.BIND)
                channel.known = False
                self.events.append(PendingEvent(channel.id, "status"))
                return channel.id
        return None

    def client_data(self, channel_id: int, data: bytes) -> int:
        """Takes as much of `data` as the Rx buffer holds; returns the count taken. When less
        than all, the shell pauses reading until `ResumeReading`."""
        channel = self.channels.get(channel_id)
        if channel is None or channel.state is not _ESTABLISHED_CHANNEL:
            return len(data)  # nowhere to go: discard
        was_empty = not channel.rx
        room = channel.buffer_size - len(channel.rx)
        taken = data[:room]
        channel.rx += taken
        if len(taken) < len(data):
            channel.reading_paused = True
        if was_empty and taken:
            event = DATA_EVENTS.get(channel.id)
            self.events.append(PendingEvent(channel.id, "data") if event is None else event)
        return len(taken)

    def client_closed(self, channel_id: int) -> None:
        """The TCP connection bound to `channel_id` ended. News of a channel already released
        (the socket's own close after the card's CLOSE CHANNEL) is stale and ignored; on a
        channel without that connection it is a ChannelStateError."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return
        channel.fire(ChannelEvent.CLIENT_GONE)
        channel.tx.clear()
        channel.reading_paused = False
        if channel.mode is Mode.CLIENT:
            # What the server sent before closing is still the card's to read (its Data
            # available event stays queued); the drop is reported once it has been read.
            if not channel.rx:
                channel.fire(ChannelEvent.RX_READ)
                self.events.append(PendingEvent(channel_id, "status", FurtherInfo.LINK_DROPPED))
            return
        channel.rx.clear()
        self.events = deque(e for e in self.events if e.channel != channel_id)
        # HELD: free for the next client only once the card has heard of this (the engine
        # calls `card_told` then), or a CLOSE CHANNEL the card built before hearing it could
        # hit the next client.
        self.events.append(PendingEvent(channel_id, "status"))
