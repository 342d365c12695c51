"""The card's side of BIP in "TCP, UICC in server mode": a toolkit application that opens
listening channels, moves bytes with RECEIVE DATA / SEND DATA and hands each TCP connection to a
sans-IO stream handler (the SCWS HTTP engine, or TLS in front of it).

Policy, in the words of OMA SCWS §8.1.1: open the channels when the terminal profile allows
UICC server mode; whenever no channel of a port is listening, open another (up to the limit) so a
new client can connect while others are served; after each connection, CLOSE CHANNEL back to
TCP LISTEN. While no channel of a port is free, finished keep-alive connections are closed
rather than kept idle, so waiting clients get a turn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from openscws.cat.commands import (
    SEND_IMMEDIATELY,
    CloseChannel,
    Command,
    CommandType,
    OpenChannel,
    ReceiveData,
    SendData,
    SetUpEventList,
)
from openscws.cat.envelopes import Envelope, EventDownload
from openscws.cat.objects import Event, GeneralResult, ServerState
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import DecodeError
from openscws.uicc.toolkit import RawCommand, RawReader, read_done

log = logging.getLogger(__name__)

MAX_RECEIVE = 237
"""RECEIVE DATA payload that fits one TERMINAL RESPONSE (one short APDU, TS 102 221 §10.1:
255 - 18)."""
MAX_SEND = 240
"""SEND DATA payload that keeps the proactive command within 255 bytes (15 + n)."""
_ESTABLISHED = ServerState.ESTABLISHED
_DATA_AVAILABLE = Event.DATA_AVAILABLE
_CHANNEL_STATUS = Event.CHANNEL_STATUS

# The transfer commands are built straight to bytes (`RawCommand`), in the plain form the typed
# encoders give (§6.6.29, §6.6.30; tested): D0 L, command details 81 03 nn tt qq, device
# identities 82 02 81 (UICC) 2c (channel c), then B7 (length) or B6 (data).
_RECEIVE_DATA = CommandType.RECEIVE_DATA
_SEND_DATA = CommandType.SEND_DATA
_UICC_TO_CHANNEL = 0x82, 2, 0x81
_RECEIVE_DATA_HEADS = [
    bytes((0xD0, 12, 0x81, 3, n, _RECEIVE_DATA, 0, *_UICC_TO_CHANNEL)) for n in range(256)
]
"""RECEIVE DATA up to its destination device, by number: then the channel device and the
channel data length (B7 01 ll)."""
# What the plain TR of each starts with, by command number (and qualifier): the details echoed
# (§6.8.1), device identities terminal -> UICC, and the result (§6.8): for RECEIVE DATA up to
# the general result, for SEND DATA "performed" (00) and the tag and length of the free space,
# whose one byte ends the TR.
_RECEIVE_DATA_TR = [
    bytes((0x81, 3, n, _RECEIVE_DATA, 0, 0x82, 2, 0x82, 0x81, 0x83, 1)) for n in range(256)
]
_SEND_DATA_HEADS: dict[int, bytes] = {}
"""SEND DATA up to its data, by size, channel, qualifier and number: the full chunks of a
transfer differ only in number and qualifier."""


def _send_data_head(number: int, qualifier: int, channel: int, size: int) -> bytes:
    """`SendData.build(number, channel, data, immediately=qualifier & 1).encode()` up to
    `data` (`size` bytes; tested): the template length, command details, device identities and
    the channel data tag and length, in their short or 81 forms."""
    head = (0x81, 3, number, _SEND_DATA, qualifier, *_UICC_TO_CHANNEL, 0x20 + channel, 0xB6)
    if size < 0x80:
        if size < 0x75:  # 11 + size < 0x80
            return bytes((0xD0, 11 + size, *head, size))
        return bytes((0xD0, 0x81, 11 + size, *head, size))
    return bytes((0xD0, 0x81, 12 + size, *head, 0x81, size))


_SEND_DATA_TR = [
    bytes((0x81, 3, n & 0xFF, _SEND_DATA, n >> 8, 0x82, 2, 0x82, 0x81, 0x83, 1, 0, 0xB7, 1))
    for n in range(512)
]


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

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def shutdown(self) -> None:
        """Close gracefully now: any closing bytes of the protocol (TLS close_notify) come
        out of `data_to_send`, then `should_close` is true."""
        ...

    def close(self) -> None:
        """The connection is gone; release what it holds."""
        ...


HandlerFactory = Callable[[int, float], StreamHandler]
"""Makes the handler for a new connection on a channel; gets the channel id and `now`, so
the handler's timers run from the moment the client connects (a client that never sends a
byte is timed out too)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    ports: tuple[int, ...] = (3516,)
    listening_per_port: int = 1
    """Channels kept in TCP LISTEN on each port, ready for the next client."""
    initial_per_port: int = 2
    """Channels opened on each port at start."""
    max_channels: int = 7
    """Upper bound on channels this app opens (the terminal may allow fewer)."""
    buffer_size: int = 1400
    """Buffer size asked for in OPEN CHANNEL; the terminal may answer with less."""


@dataclass(slots=True)
class Channel:
    id: int
    port: int
    buffer_size: int
    state: ServerState = ServerState.LISTEN
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
    answered: bool = False
    """Data went out on this connection: when idle, it is a finished keep-alive one."""
    ready: bool = False
    """The handler may have something to move: it heard from the client, a timer or a
    shutdown since it last had nothing. Idle connections are not scanned on every APDU."""


class BipServerApp:
    def __init__(self, config: ServerConfig, factories: dict[int, HandlerFactory]) -> None:
        self.config = config
        self.factories = factories
        self.channels: dict[int, Channel] = {}
        self._order: tuple[Channel, ...] | None = None  # channels.values(), kept between changes
        self._saturation: frozenset[int] | None = None  # saturated ports, kept between changes
        self.enabled = False
        self._events_set = False
        self._opening: dict[int, int] = {}  # port -> OPEN CHANNELs answered so far at start
        self._refused: set[int] = set()  # ports where the terminal refused more channels
        self._turn = 0
        self._check_ports = True
        self._read_receive_data: RawReader = self._receive_data_response

    # -- ToolkitApp ----------------------------------------------------------------------------

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        self.enabled = profile.bip_server
        self._events_set = False
        self._check_ports = True
        self.channels.clear()
        self._order = None
        self._saturation = None
        self._opening = dict.fromkeys(self.config.ports, 0)
        self._refused.clear()
        if not self.enabled:
            log.warning("terminal profile lacks BIP UICC server mode: the SCWS stays closed")

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if not isinstance(envelope, EventDownload) or envelope.channel_status is None:
            return None
        status = envelope.channel_status
        channel = self.channels.get(status.channel)
        if channel is None:
            return None
        events = envelope.event.events
        if _CHANNEL_STATUS in events:
            self._check_ports = True
            if status.bits & 3 == 3:  # §8.56: b8..b7 = 11 is reserved
                raise DecodeError("channel status b8..b7 = 11 is reserved", status.value(), 0)
            self._channel_status(channel, ServerState(status.bits & 3), now)
        elif _DATA_AVAILABLE in events and envelope.data_length is not None:
            if channel.state is _ESTABLISHED:
                channel.rx_pending = envelope.data_length.length
                channel.ready = True
        else:
            return None
        return b""

    def _channel_status(self, channel: Channel, state: ServerState, now: float) -> None:
        if state is ServerState.ESTABLISHED:
            channel.state = state
            self._saturation = None
            channel.handler = self.factories[channel.port](channel.id, now)
            channel.ready = True
            log.debug("channel %d: client connected on port %d", channel.id, channel.port)
        else:
            # The client went away: whatever was under way on this connection is void.
            log.debug("channel %d: client gone, back to %s", channel.id, state.name)
            self._reset(channel, state)

    def _reset(self, channel: Channel, state: ServerState) -> None:
        channel.state = state
        self._saturation = None
        if channel.handler is not None:
            channel.handler.close()
        channel.handler = None
        channel.out = b""
        channel.out_pos = 0
        channel.rx_pending = 0
        channel.tx_stored = 0
        channel.closing = False
        channel.answered = False
        channel.ready = False
        if state is ServerState.CLOSED:
            del self.channels[channel.id]
            self._order = None

    def next_command(self, number: int, now: float) -> Command | RawCommand | None:
        if not self.enabled:
            return None
        if not self._events_set:
            return SetUpEventList.build(number, (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS))
        if self._check_ports:
            open_port = self._port_needing_channel()
            if open_port is not None:
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
        if n >= self.config.max_channels or self._refused:
            saturated = self._saturation
            if saturated is None:
                saturated = self._saturation = frozenset(
                    port for port in self.config.ports if self._saturated(port)
                )
        else:
            saturated = frozenset()
        if saturated:
            # Clients may be waiting for a channel: a finished keep-alive connection yields.
            # (A new connection is idle too until its request arrives: it is not closed.)
            for channel in channels:
                if channel.answered and channel.port in saturated and channel.handler is not None:
                    if channel.handler.idle:
                        channel.closing = True
                        channel.ready = True
                        channel.handler.shutdown()  # TLS: close_notify goes out first
                        return self._work(channel, number, now)
        return None

    def _port_needing_channel(self) -> int | None:
        if not self._check_ports:
            return None
        port = self._find_port_needing_channel()
        # Nothing to open until a channel changes state (an event or a TR says so).
        self._check_ports = port is not None
        return port

    def _find_port_needing_channel(self) -> int | None:
        if len(self.channels) >= self.config.max_channels:
            return None
        for port in self.config.ports:
            if port in self._refused:
                continue
            if self._opening[port] < self.config.initial_per_port:
                return port
            listening = sum(
                1
                for c in self.channels.values()
                if c.port == port and c.state is ServerState.LISTEN
            )
            if listening < self.config.listening_per_port:
                return port
        return None

    def _saturated(self, port: int) -> bool:
        """No channel of `port` listens and no more can be opened."""
        if len(self.channels) < self.config.max_channels and port not in self._refused:
            return False
        return not any(
            c.port == port and c.state is ServerState.LISTEN for c in self.channels.values()
        )

    def _work(self, channel: Channel, number: int, now: float) -> Command | RawCommand | None:
        handler = channel.handler
        if channel.state is not _ESTABLISHED or handler is None:
            return None
        rx_pending = channel.rx_pending
        if rx_pending:
            # ReceiveData.build(number, channel.id, min(rx_pending, MAX_RECEIVE)).encode()
            length = MAX_RECEIVE if rx_pending > MAX_RECEIVE else rx_pending
            encoded = _RECEIVE_DATA_HEADS[number] + bytes((0x20 + channel.id, 0xB7, 1, length))
            return RawCommand(
                encoded, _RECEIVE_DATA_TR[number], self._read_receive_data, channel.id
            )
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
            channel.answered = True
            # SendData.build(number, channel.id, chunk, immediately=last).encode()
            qualifier = SEND_IMMEDIATELY if last else 0
            key = size << 16 | channel.id << 9 | qualifier << 8 | number
            head = _SEND_DATA_HEADS.get(key)
            if head is None:
                head = _send_data_head(number, qualifier, channel.id, size)
                if len(_SEND_DATA_HEADS) >= 8192:
                    _SEND_DATA_HEADS.clear()
                _SEND_DATA_HEADS[key] = head
            encoded = head + chunk
            # Its plain TR (result 00) needs nothing done; any other goes the typed way.
            return RawCommand(
                encoded, _SEND_DATA_TR[number | qualifier << 8], read_done, channel.id
            )
        if handler.should_close or channel.closing:
            return CloseChannel.build(number, channel.id, to_listen=True)
        return None

    def _receive_data_response(self, command: RawCommand, data: bytes, now: float) -> bool:
        """Reads the plain TR of a RECEIVE DATA, performed:
        `81 03 nn 42 00 82 02 82 81 83 01 rr B6 LL data B7 01 ll` (rr < 10), and does what
        `on_terminal_response` does with it."""
        n = len(data)
        if n < 17 or not data.startswith(command.expect) or data[11] >= 0x10 or data[12] != 0xB6:
            return False
        length = data[13]
        start = 14
        if length == 0x81:
            length = data[14]
            start = 15
            if length < 0x80:
                return False  # malformed: the typed decoder says so
        elif length > 0x7F:
            return False
        end = start + length
        if n != end + 3 or data[end] != 0xB7 or data[end + 1] != 1:
            return False
        channel = self.channels.get(command.channel)
        if channel is None or channel.handler is None:
            return True
        channel.ready = True
        channel.rx_pending = data[end + 2]
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
                self._opened(command, response)
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
                    self._reset(channel, ServerState.LISTEN)
            case _:
                pass

    def _opened(self, command: OpenChannel, response: TerminalResponse) -> None:
        self._saturation = None
        port = command.transport.port if command.transport else 0
        self._opening[port] = self._opening.get(port, 0) + 1
        status = response.channel_status
        if not response.result.ok or status is None:
            log.warning("terminal refused a channel on port %d: %s", port, response.result)
            self._refused.add(port)
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
        return min(due) if due else None

    def on_timer(self, now: float) -> None:
        for channel in self.channels.values():
            handler = channel.handler
            if handler is not None:
                due = handler.get_timer()
                if due is not None and due <= now:
                    handler.handle_timer(now)
                    channel.ready = True
