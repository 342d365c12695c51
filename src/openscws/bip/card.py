"""The card's side of BIP in "TCP, UICC in server mode": a toolkit application that opens
listening channels, moves bytes with RECEIVE DATA / SEND DATA and hands each TCP connection to a
sans-IO stream handler (the SCWS HTTP engine, or TLS in front of it).

Each channel's life cycle is a state machine declared once (`TRANSITIONS`): LISTEN, then
ESTABLISHED while a client is connected, CLOSING while a CLOSE CHANNEL back to TCP LISTEN is
under way, REMOVING while one that releases the channel is. An event the table does not allow
(a Channel status that contradicts what the card knows) is a `ChannelStateError`, answered
with a status word.

Policy, after OMA SCWS §8.1.1 (the terminal supports at least two server channels and one
client channel; the SCWS may open more so that several clients are served at once):

- The channels this app may hold are the terminal's less one: one is always left for a
  client-mode channel (the admin agent's), whatever the browsing load.
- Each port is guaranteed `initial_per_port` channels (opened at start). The rest are shared:
  whenever no channel of a port listens, another is opened, but never one that another port's
  guarantee needs, nor one that a port with fewer channels and none listening needs more.
- A port with no channel listening and none to open, whose clients the terminal says wait
  for a channel (`clients_waiting_event`), is *pressed*. Then every connection of that port
  (and of a port holding more than its share) that has had its channel for
  `keep_alive_slice` seconds, or was quiet for
  `keep_alive_gap` before its request, answers its next response with `Connection: close`
  and is closed after it; and, when none is closing
  already, the connection idle the longest (between requests, quiet for `reclaim_grace`
  seconds) is closed, so a waiting client gets its channel.
- A channel whose connection ends goes back to TCP LISTEN, unless it is surplus: then it is
  released, down to `initial_per_port` per port. So channels opened for a burst come and go.
- With no client waiting, nothing is taken back: as many keep-alive clients as channels keep
  theirs, request after request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Protocol

from openscws.apdu.status import SW
from openscws.cat import transfer
from openscws.cat.commands import (
    SEND_IMMEDIATELY,
    CloseChannel,
    Command,
    OpenChannel,
    ReceiveData,
    SendData,
    SetUpEventList,
    decode_command,
)
from openscws.cat.envelopes import Envelope, EventDownload
from openscws.cat.objects import Event, GeneralResult, ServerState
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import ApduError, DecodeError
from openscws.statetable import StateTable
from openscws.uicc.toolkit import Transfer, TransferReader, read_done

log = logging.getLogger(__name__)

MAX_RECEIVE = 237
"""RECEIVE DATA payload that fits one TERMINAL RESPONSE (one short APDU, TS 102 221 §10.1:
255 - 18)."""
MAX_SEND = 240
"""SEND DATA payload that keeps the proactive command within 255 bytes (15 + n)."""
_DATA_AVAILABLE = Event.DATA_AVAILABLE
_CHANNEL_STATUS = Event.CHANNEL_STATUS

# The transfer commands are built straight to bytes (`Transfer`s, given to the toolkit by
# `next_step`) with the shared codec
# (cat/transfer.py), in the plain form the typed encoders give (tested).
_receive_data = transfer.receive_data
_RECEIVE_DATA_TR = transfer.RECEIVE_DATA_TR_EXPECT
_SEND_DATA_HEADS = transfer.SEND_DATA_HEADS
_SEND_DATA_TR = transfer.SEND_DATA_TR_EXPECT
_send_data_head = transfer.send_data_head
_read_receive_data_tr = transfer.read_receive_data_tr


class StreamHandler(Protocol):
    """One TCP connection's worth of protocol, sans-IO (the HTTP engine, or TLS before it)."""

    def receive_data(self, data: bytes, now: float) -> None: ...

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Output ready to send; `limit` bounds how much a streamed body is pulled at once."""
        ...

    @property
    def should_close(self) -> bool: ...

    @property
    def idle(self) -> bool:
        """True between requests: nothing half-received, nothing left to answer."""
        ...

    @property
    def wants_input(self) -> bool:
        """False while the handler holds enough unanswered input (a client that pipelines
        and does not read its answers): the card then leaves the rest in the terminal's Rx
        buffer, and the terminal stops reading the socket."""
        ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def shutdown(self) -> None:
        """Close gracefully now: any closing bytes of the protocol (TLS close_notify) come
        out of `data_to_send`, then `should_close` is true."""
        ...

    def close_after_response(self) -> None:
        """The card wants the channel back: close now if `idle`, else after the response
        under way, which tells the client so (HTTP: `Connection: close`)."""
        ...

    def close(self) -> None:
        """The connection is gone; release what it holds."""
        ...


HandlerFactory = Callable[[int, float], StreamHandler]
"""Makes the handler for a new connection on a channel; gets the channel id and `now`, so
the handler's timers run from the moment the client connects (a client that never sends a
byte is timed out too)."""


class ChannelState(Enum):
    LISTEN = auto()
    """In TCP LISTEN: the terminal may bind the next client to it."""
    ESTABLISHED = auto()
    """A client is connected; its handler serves it."""
    CLOSING = auto()
    """CLOSE CHANNEL back to TCP LISTEN is under way."""
    REMOVING = auto()
    """CLOSE CHANNEL releasing the channel is under way."""


class ChannelEvent(Enum):
    CONNECTED = auto()
    """Channel status event: TCP ESTABLISHED (§7.5.11)."""
    GONE = auto()
    """Channel status event: back in TCP LISTEN (the client left)."""
    DATA = auto()
    """Data available event (§7.5.10)."""
    CLOSE = auto()
    """This app sends CLOSE CHANNEL back to TCP LISTEN."""
    REMOVE = auto()
    """This app sends CLOSE CHANNEL releasing the channel."""
    CLOSED = auto()
    """The TERMINAL RESPONSE to that CLOSE CHANNEL: performed."""
    REFUSED = auto()
    """The TERMINAL RESPONSE to that CLOSE CHANNEL: an error (the terminal has no such
    channel, §6.4.28): the channel is gone."""


_L, _E = ChannelState.LISTEN, ChannelState.ESTABLISHED
_CL, _RM = ChannelState.CLOSING, ChannelState.REMOVING
_EV = ChannelEvent

TRANSITIONS: dict[tuple[ChannelState, ChannelEvent], ChannelState | None] = {
    (_L, _EV.CONNECTED): _E,
    (_L, _EV.GONE): _L,  # a client that came and went before the card heard of it
    (_L, _EV.REMOVE): _RM,
    (_E, _EV.DATA): _E,
    (_E, _EV.GONE): _L,
    (_E, _EV.CLOSE): _CL,
    (_E, _EV.REMOVE): _RM,
    # The terminal's news may predate the CLOSE CHANNEL it has not run yet.
    (_CL, _EV.DATA): _CL,
    (_CL, _EV.GONE): _CL,
    (_CL, _EV.CLOSED): _L,
    (_CL, _EV.REFUSED): None,
    (_RM, _EV.CONNECTED): _RM,  # the terminal gives this client another channel
    (_RM, _EV.DATA): _RM,
    (_RM, _EV.GONE): _RM,
    (_RM, _EV.CLOSED): None,
    (_RM, _EV.REFUSED): None,
}
"""Every allowed (state, event) and the state it leads to; None: the channel is released."""
_ESTABLISHED = ChannelState.ESTABLISHED
_LISTEN = ChannelState.LISTEN


class ChannelStateError(ApduError):
    """A channel event the life cycle does not allow: answered 69 85 (conditions of use not
    satisfied) to the ENVELOPE that carried it."""

    def __init__(self, channel: int, state: ChannelState, event: ChannelEvent) -> None:
        super().__init__(
            SW.CONDITIONS_NOT_SATISFIED,
            f"channel {channel}: {event.name} not allowed in {state.name}",
        )
        self.channel = channel
        self.state = state
        self.event = event


LIFE_CYCLE: StateTable[tuple[ChannelState, ChannelEvent], ChannelState] = StateTable(
    TRANSITIONS, lambda channel, key: ChannelStateError(channel, *key)
)
"""`TRANSITIONS`, a pair it does not allow being a `ChannelStateError`."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    ports: tuple[int, ...] = (3516,)
    listening_per_port: int = 1
    """Channels kept in TCP LISTEN on each port, ready for the next client."""
    initial_per_port: int = 2
    """Channels opened on each port at start."""
    max_channels: int = 7
    """Upper bound on the terminal's channels this app counts on (the terminal profile may
    say fewer); one of them is always left for a client-mode channel."""
    buffer_size: int = 1400
    """Buffer size asked for in OPEN CHANNEL; the terminal may answer with less."""
    keep_alive_slice: float = 0.1
    """Seconds a connection keeps its channel, request after request, while its port is
    pressed; then its next response says `Connection: close`, and a waiting client gets the
    channel. (Closing after every response would make keep-alive clients reconnect for each
    request whenever all channels are busy, waiting clients or not.)"""
    keep_alive_gap: float = 0.02
    """While its port is pressed, a connection that was quiet this long before a request
    answers it with `Connection: close` whatever its slice: it held its channel idle."""
    reclaim_grace: float = 0.5
    """Seconds a connection must have been quiet before it is closed for a waiting client:
    a keep-alive client's next request may be on its way."""
    refused_retry: float = 5.0
    """Seconds before a port whose OPEN CHANNEL the terminal refused is tried again."""


@dataclass(slots=True)
class Channel:
    id: int
    port: int
    buffer_size: int
    state: ChannelState = ChannelState.LISTEN
    handler: StreamHandler | None = None
    out: bytes = b""
    """The handler's output being sent, from `out_pos` on."""
    out_pos: int = 0
    rx_pending: int = 0
    """Bytes the terminal says wait in its Rx buffer (255 means 255 or more)."""
    tx_stored: int = 0
    """Bytes sent with SEND DATA "store" since the last "send immediately"."""
    closing: bool = False
    """A CLOSE CHANNEL is owed: the handler is done."""
    yielding: bool = False
    """The handler was asked to close after its response (its port is pressed)."""
    since: float = 0.0
    """When bytes last moved on the connection (or it was made)."""
    connected_at: float = 0.0
    ready: bool = False
    """The handler may have something to move: it heard from the client, a timer or a
    shutdown since it last had nothing. Idle connections are not scanned on every APDU."""


class BipServerApp:
    def __init__(self, config: ServerConfig, factories: dict[int, HandlerFactory]) -> None:
        self.config = config
        self.factories = factories
        self.channels: dict[int, Channel] = {}
        self._order: tuple[Channel, ...] | None = None  # channels.values(), kept between changes
        self.enabled = False
        self._events_set = False
        self._budget = 0
        """Channels this app may hold: the terminal's less one (for a client channel)."""
        self._guarantee: dict[int, int] = {}
        self._refused: dict[int, float] = {}  # port -> when to try opening there again
        self._turn = 0
        self._check_ports = True
        """A channel changed state: what to open, close or reclaim is looked at again."""
        self._pressed: frozenset[int] = frozenset()
        self._waiting: set[int] = set()
        """Ports whose clients the terminal says wait for a channel."""
        self._now = 0.0
        self._read_receive_data: TransferReader = self._receive_data_response

    # -- ToolkitApp ----------------------------------------------------------------------------

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        self.enabled = profile.bip_server
        self._events_set = False
        self._check_ports = True
        for channel in self.channels.values():
            if channel.handler is not None:
                channel.handler.close()
        self.channels.clear()
        self._order = None
        self._pressed = frozenset()
        self._waiting.clear()
        self._refused.clear()
        ports = self.config.ports
        self._budget = max(0, min(self.config.max_channels, profile.channels) - 1)
        # Each port's guarantee: up to initial_per_port, dealt in turn while the budget lasts.
        self._guarantee = dict.fromkeys(ports, 0)
        left = self._budget
        for _ in range(self.config.initial_per_port):
            for port in ports:
                if left:
                    self._guarantee[port] += 1
                    left -= 1
        if not self.enabled:
            log.warning("terminal profile lacks BIP UICC server mode: the SCWS stays closed")
        elif not all(self._guarantee.values()):
            log.warning(
                "the terminal's %d channels leave none for some of the SCWS's %d ports "
                "(one stays free for the admin agent)",
                profile.channels,
                len(ports),
            )

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if not isinstance(envelope, EventDownload) or envelope.channel_status is None:
            return None
        status = envelope.channel_status
        channel = self.channels.get(status.channel)
        if channel is None:
            transport = envelope.transport
            if status.channel or transport is None or _CHANNEL_STATUS not in envelope.event.events:
                return None
            # Clients of a port wait for a channel (TCP LISTEN), or none any more.
            if status.bits == ServerState.LISTEN:
                self._waiting.add(transport.port)
            else:
                self._waiting.discard(transport.port)
            self._check_ports = True
            return b""
        events = envelope.event.events
        if _CHANNEL_STATUS in events:
            self._check_ports = True
            if status.bits & 3 == 3:  # §8.56: b8..b7 = 11 is reserved
                raise DecodeError("channel status b8..b7 = 11 is reserved", status.value(), 0)
            if ServerState(status.bits & 3) is ServerState.ESTABLISHED:
                self._connected(channel, now)
            else:
                self._gone(channel)
        elif _DATA_AVAILABLE in events and envelope.data_length is not None:
            if channel.state is _ESTABLISHED:
                channel.rx_pending = envelope.data_length.length
                channel.ready = True
            else:
                self._fire(channel, _EV.DATA)
        else:
            return None
        return b""

    def _fire(self, channel: Channel, event: ChannelEvent) -> ChannelState | None:
        new = LIFE_CYCLE.next(channel.id, (channel.state, event))
        if new is None:
            del self.channels[channel.id]
            self._order = None
        else:
            channel.state = new
        self._check_ports = True
        return new

    def _connected(self, channel: Channel, now: float) -> None:
        if self._fire(channel, _EV.CONNECTED) is not _ESTABLISHED:
            return  # being released: the terminal binds the client elsewhere
        channel.handler = self.factories[channel.port](channel.id, now)
        channel.ready = True
        channel.since = now
        channel.connected_at = now
        self._update_pressure(now)
        log.debug("channel %d: client connected on port %d", channel.id, channel.port)

    def _gone(self, channel: Channel) -> None:
        # The client went away: whatever was under way on this connection is void.
        log.debug("channel %d: client gone", channel.id)
        self._fire(channel, _EV.GONE)
        self._release(channel)

    def _release(self, channel: Channel) -> None:
        if channel.handler is not None:
            channel.handler.close()
        channel.handler = None
        channel.out = b""
        channel.out_pos = 0
        channel.rx_pending = 0
        channel.tx_stored = 0
        channel.closing = False
        channel.yielding = False
        channel.ready = False

    # -- what to run next ----------------------------------------------------------------------

    def next_command(self, number: int, now: float) -> Command | None:
        """The `ToolkitApp` contract: `next_step`, with its transfer commands typed (their
        TERMINAL RESPONSEs then come typed to `on_terminal_response`)."""
        step = self.next_step(number, now)
        if isinstance(step, Transfer):
            return decode_command(step.encoded)
        return step

    def next_step(self, number: int, now: float) -> Command | Transfer | None:
        """The next command, a transfer command as a `Transfer` (the toolkit's `ChannelPump`:
        the gateway's hot path builds no command objects)."""
        if not self.enabled:
            return None
        if not self._events_set:
            return SetUpEventList.build(number, (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS))
        self._now = now
        if self._check_ports:
            self._check_ports = False
            self._update_pressure(now)
            open_port = self._port_needing_channel(now)
            if open_port is not None:
                self._check_ports = True  # look again once it is open
                # Buffer size is two bytes (§8.55): ask for at most 65535.
                return OpenChannel.server(number, open_port, min(self.config.buffer_size, 0xFFFF))
        channels = self._order
        if channels is None or len(channels) != len(self.channels):
            channels = self._order = tuple(self.channels.values())
        n = len(channels)
        turn = self._turn
        for k in range(n):
            channel = channels[(turn + k) % n]
            if not channel.ready:
                continue  # listening, or an idle connection: nothing to move
            command = self._work(channel, number, now)
            if command is not None:
                self._turn = (turn + k + 1) % n
                return command
            channel.ready = False  # until the handler hears something
        if self._pressed:
            command = self._relieve(number, now)
            if command is not None:
                return command
        return self._release_surplus(number)

    def _counts(self) -> tuple[dict[int, int], dict[int, int]]:
        """Channels per port, and those listening per port."""
        count = dict.fromkeys(self.config.ports, 0)
        listening = dict.fromkeys(self.config.ports, 0)
        for c in self.channels.values():
            count[c.port] = count.get(c.port, 0) + 1
            if c.state is _LISTEN:
                listening[c.port] = listening.get(c.port, 0) + 1
        return count, listening

    def _share(self) -> int:
        ports = self.config.ports
        return max(1, self._budget // len(ports)) if ports else 0

    def _can_open(
        self, port: int, count: dict[int, int], listening: dict[int, int], now: float
    ) -> bool:
        """Whether another channel may be opened for `port` now."""
        if self._refused.get(port, 0.0) > now:
            return False
        total = sum(count.values())
        if total >= self._budget:
            return False
        if count[port] < self._guarantee.get(port, 0):
            return True
        # An extra channel: never one another port's guarantee needs, nor one a port with
        # fewer channels and none listening needs more (ties: the first port in the list).
        others = [p for p in self.config.ports if p != port]
        owed = sum(max(0, self._guarantee.get(p, 0) - count[p]) for p in others)
        if total + owed >= self._budget:
            return False
        order = self.config.ports.index
        return not any(
            listening[p] == 0
            and self._refused.get(p, 0.0) <= now
            and (count[p], order(p)) < (count[port], order(port))
            for p in others
        )

    def _update_pressure(self, now: float) -> None:
        """Finds the pressed ports; the connections of the yielding ports are told to close
        after their next response (before it is made, so that it says so)."""
        self._pressed = self._find_pressed(now)
        if not self._pressed:
            return
        ports = self._yielding_ports()
        slice_end = now - self.config.keep_alive_slice
        for channel in self.channels.values():
            if (
                channel.port in ports
                and channel.state is _ESTABLISHED
                and not channel.yielding
                and channel.connected_at <= slice_end
            ):
                handler = channel.handler
                if handler is not None:
                    channel.yielding = True
                    channel.ready = True
                    handler.close_after_response()

    def _find_pressed(self, now: float) -> frozenset[int]:
        count, listening = self._counts()
        pressed = set()
        for port in self.config.ports:
            if (
                port in self._waiting
                and listening[port] == 0
                and not self._can_open(port, count, listening, now)
            ):
                pressed.add(port)
        return frozenset(pressed)

    def _port_needing_channel(self, now: float) -> int | None:
        count, listening = self._counts()
        for port in self.config.ports:
            if not self._can_open(port, count, listening, now):
                continue
            if count[port] < self._guarantee.get(port, 0):
                return port
            if listening[port] < self.config.listening_per_port:
                return port
        return None

    def _yielding_ports(self) -> frozenset[int]:
        """Ports whose connections close after their response: the pressed ones, and those
        holding more than an even share while a pressed port has less."""
        pressed = self._pressed
        if not pressed:
            return pressed
        count, _ = self._counts()
        share = self._share()
        ports = set(pressed)
        if any(count[p] < share for p in pressed):
            ports.update(p for p in self.config.ports if count[p] > share)
        return frozenset(ports)

    def _relieve(self, number: int, now: float) -> Command | Transfer | None:
        """Clients may be waiting: unless a connection of the yielding ports is closing
        already, the one idle the longest (quiet for the grace time) is closed now."""
        ports = self._yielding_ports()
        oldest: Channel | None = None
        for channel in self.channels.values():
            if channel.port not in ports or channel.state is _LISTEN:
                continue
            handler = channel.handler
            if channel.state is not _ESTABLISHED or handler is None:
                return None  # a CLOSE CHANNEL is under way
            if channel.closing or handler.should_close:
                return None
            if handler.idle and (oldest is None or channel.since < oldest.since):
                oldest = channel
        if oldest is None or now - oldest.since < self.config.reclaim_grace:
            return None
        log.debug("channel %d: idle connection closed for a waiting client", oldest.id)
        assert oldest.handler is not None
        oldest.closing = True
        oldest.ready = True
        oldest.handler.shutdown()  # TLS: close_notify goes out first
        return self._work(oldest, number, now)

    def _surplus(self, port: int, count: dict[int, int], listening: dict[int, int]) -> bool:
        """Whether a channel of `port` that is (or is about to be) listening is one too many."""
        if port in self._pressed:
            return False  # clients may be waiting for it
        if count[port] <= self._guarantee.get(port, 0):
            return False
        return listening[port] >= self.config.listening_per_port or port in self._yielding_ports()

    def _release_surplus(self, number: int) -> Command | None:
        count, listening = self._counts()
        for channel in self.channels.values():
            if channel.state is _LISTEN:
                listening[channel.port] -= 1  # were it released
                if self._surplus(channel.port, count, listening):
                    self._fire(channel, _EV.REMOVE)
                    log.debug("channel %d on port %d released", channel.id, channel.port)
                    return CloseChannel.build(number, channel.id, to_listen=False)
                listening[channel.port] += 1
        return None

    def _close(self, channel: Channel, number: int) -> Command:
        """CLOSE CHANNEL for a connection that is done: back to TCP LISTEN, or released if
        the channel is surplus."""
        count, listening = self._counts()
        if self._surplus(channel.port, count, listening):
            self._fire(channel, _EV.REMOVE)
            return CloseChannel.build(number, channel.id, to_listen=False)
        self._fire(channel, _EV.CLOSE)
        return CloseChannel.build(number, channel.id, to_listen=True)

    def _work(self, channel: Channel, number: int, now: float) -> Command | Transfer | None:
        handler = channel.handler
        if channel.state is not _ESTABLISHED or handler is None:
            return None
        rx_pending = channel.rx_pending
        if rx_pending and handler.wants_input:
            if (
                self._pressed
                and not channel.yielding
                and channel.port in self._pressed
                and now - channel.since > self.config.keep_alive_gap
            ):
                # A client that paused before this request held its channel idle while
                # others may wait: this request's answer is its last.
                channel.yielding = True
                handler.close_after_response()
            # ReceiveData.build(number, channel.id, min(rx_pending, MAX_RECEIVE)).encode()
            length = MAX_RECEIVE if rx_pending > MAX_RECEIVE else rx_pending
            encoded = _receive_data(number, channel.id, length)
            return Transfer(encoded, _RECEIVE_DATA_TR[number], self._read_receive_data, channel.id)
        out = channel.out
        pos = channel.out_pos
        left = len(out) - pos
        if not left:
            out = channel.out = handler.data_to_send(channel.buffer_size)
            pos = channel.out_pos = 0
            left = len(out)
        if left:
            stored = channel.tx_stored
            buffer_size = channel.buffer_size
            size = MAX_SEND if left > MAX_SEND else left
            if size > buffer_size - stored:
                size = buffer_size - stored
            last = size == left or stored + size + MAX_SEND > buffer_size
            end = pos + size
            chunk = out[pos:end]
            if end == len(out):
                channel.out = b""
                channel.out_pos = 0
            else:
                channel.out_pos = end
            channel.tx_stored = 0 if last else stored + size
            channel.since = self._now
            # SendData.build(number, channel.id, chunk, immediately=last).encode()
            qualifier = SEND_IMMEDIATELY if last else 0
            key = size << 24 | channel.id << 16 | qualifier << 8 | number
            head = _SEND_DATA_HEADS.get(key)
            if head is None:
                head = _send_data_head(number, qualifier, channel.id, size)
            encoded = head + chunk
            # Its plain TR (result 00) needs nothing done; any other goes the typed way.
            return Transfer(encoded, _SEND_DATA_TR[number | qualifier << 8], read_done, channel.id)
        if handler.should_close or channel.closing:
            return self._close(channel, number)
        return None

    def _receive_data_response(self, command: Transfer, data: bytes, now: float) -> bool:
        """Reads the plain TR of a RECEIVE DATA, performed (cat/transfer.py), and does what
        `on_terminal_response` does with it; False for any other form."""
        found = _read_receive_data_tr(data, command.expect)
        if found is None:
            return False
        start, end, left = found
        channel = self.channels.get(command.channel)
        if channel is None or channel.handler is None:
            return True
        channel.ready = True
        channel.since = now
        channel.rx_pending = left
        channel.handler.receive_data(data[start:end], now)
        return True

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        result = response.result
        if isinstance(command, SendData):  # the most frequent by far: settle it first
            if not result.ok:
                channel = self.channels.get(command.channel)
                if channel is not None:
                    # The client is gone; a Channel status event follows.
                    channel.out = b""
                    channel.out_pos = 0
                    channel.tx_stored = 0
            return
        if not isinstance(command, ReceiveData):
            self._check_ports = True
        match command:
            case SetUpEventList():
                self._events_set = result.ok
                if not result.ok:
                    log.error("terminal refused SET UP EVENT LIST: %s", result)
                    self.enabled = False
            case OpenChannel():
                self._opened(command, response, now)
            case ReceiveData():
                channel = self.channels.get(command.channel)
                if channel is None or channel.handler is None:
                    return
                channel.ready = True
                if not result.ok:
                    channel.rx_pending = 0
                    return
                data = response.data.data if response.data is not None else b""
                channel.rx_pending = response.data_length.length if response.data_length else 0
                channel.since = now
                channel.handler.receive_data(data, now)
            case SendData():
                channel = self.channels.get(command.channel)
                if channel is not None and not result.ok:
                    # The client is gone; a Channel status event follows.
                    channel.out = b""
                    channel.out_pos = 0
                    channel.tx_stored = 0
            case CloseChannel():
                channel = self.channels.get(command.channel)
                if channel is not None:
                    self._release(channel)
                    if result.ok:
                        self._fire(channel, _EV.CLOSED)
                    else:
                        log.warning("terminal refused CLOSE CHANNEL %d: %s", channel.id, result)
                        self._fire(channel, _EV.REFUSED)
            case _:
                pass

    def _opened(self, command: OpenChannel, response: TerminalResponse, now: float) -> None:
        port = command.transport.port if command.transport else 0
        status = response.channel_status
        if not response.result.ok or status is None:
            log.warning("terminal refused a channel on port %d: %s", port, response.result)
            self._refused[port] = now + self.config.refused_retry
            return
        size = response.buffer_size.size if response.buffer_size else self.config.buffer_size
        if response.result.general == GeneralResult.OK_WITH_MODIFICATION:
            log.info("terminal gave channel %d a %d-byte buffer", status.channel, size)
        self.channels[status.channel] = Channel(status.channel, port, size)
        self._order = None
        log.info("channel %d listening on port %d (buffer %d)", status.channel, port, size)

    def next_timer(self) -> float | None:
        due = [
            t
            for c in self.channels.values()
            if c.handler is not None and (t := c.handler.get_timer()) is not None
        ]
        if self._pressed:
            # An idle connection becomes one to reclaim once quiet for the grace time, a
            # busy one one to close after its response at the end of its slice.
            grace = self.config.reclaim_grace
            due += [
                c.since + grace
                for c in self.channels.values()
                if c.state is _ESTABLISHED and not c.closing and c.port in self._pressed
            ]
            keep = self.config.keep_alive_slice
            due += [
                c.connected_at + keep
                for c in self.channels.values()
                if c.state is _ESTABLISHED and not c.yielding
            ]
        due += self._refused.values()
        return min(due) if due else None

    def on_timer(self, now: float) -> None:
        self._check_ports = True
        for port, until in list(self._refused.items()):
            if until <= now:
                del self._refused[port]
        for channel in self.channels.values():
            handler = channel.handler
            if handler is not None:
                due = handler.get_timer()
                if due is not None and due <= now:
                    handler.handle_timer(now)
                    channel.ready = True
