"""The card's side of one BIP channel in "TCP, UICC in client mode" (TS 102 223 §6.4.27.2):
the card asks the terminal to connect to a server, then moves one StreamHandler's bytes over
the channel (the admin agent's PSK-TLS link, SCWS §11 / GP Amd B).

A link lives through OPENING (OPEN CHANNEL sent), OPEN (data both ways), CLOSING (CLOSE CHANNEL
owed or sent) and CLOSED. Its owner asks it for commands and hands it the TRs and events of its
channel; `failure` says why a link ended before its handler was done."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from openscws.bip.card import MAX_RECEIVE, MAX_SEND, StreamHandler
from openscws.cat.commands import CloseChannel, Command, OpenChannel, ReceiveData, SendData
from openscws.cat.envelopes import Envelope, EventDownload
from openscws.cat.objects import Event
from openscws.cat.responses import TerminalResponse

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    OPENING = enum.auto()
    OPEN = enum.auto()
    CLOSING = enum.auto()
    CLOSED = enum.auto()


class BipClientLink:
    """`open_command(number)` builds the OPEN CHANNEL; `connected(channel, now)` makes the
    handler once the terminal reports the link up, and returns the bytes to send first (a
    ClientHello)."""

    def __init__(
        self,
        open_command: Callable[[int], OpenChannel],
        connected: Callable[[int, float], tuple[StreamHandler, bytes]],
    ) -> None:
        self.state = LinkState.OPENING
        self.channel: int | None = None
        self.handler: StreamHandler | None = None
        self.failure: str | None = None
        self.buffer_size = 0
        self._open_command = open_command
        self._connected = connected
        self._open_sent = False
        self._close_sent = False
        self._out = bytearray()
        self._rx_pending = 0
        self._tx_stored = 0

    # -- commands ------------------------------------------------------------------------------

    def next_command(self, number: int, now: float) -> Command | None:
        match self.state:
            case LinkState.OPENING:
                if self._open_sent:
                    return None
                self._open_sent = True
                return self._open_command(number)
            case LinkState.OPEN:
                return self._work(number)
            case LinkState.CLOSING:
                if self._close_sent or self.channel is None:
                    return None
                self._close_sent = True
                return CloseChannel.build(number, self.channel, to_listen=False)
            case LinkState.CLOSED:
                return None

    def _work(self, number: int) -> Command | None:
        handler = self.handler
        channel = self.channel
        assert handler is not None
        assert channel is not None
        if self._rx_pending:
            return ReceiveData.build(number, channel, min(self._rx_pending, MAX_RECEIVE))
        out = self._out
        if not out:
            out += handler.data_to_send(self.buffer_size)
        if out:
            stored = self._tx_stored
            size = min(len(out), MAX_SEND, self.buffer_size - stored)
            last = size == len(out) or stored + size + MAX_SEND > self.buffer_size
            chunk = bytes(out[:size])
            del out[:size]
            self._tx_stored = 0 if last else stored + size
            return SendData.build(number, channel, chunk, immediately=last)
        if handler.should_close:
            self._close("")
            return self.next_command(number, 0.0)
        return None

    def _close(self, failure: str) -> None:
        """Ends the link: CLOSE CHANNEL next (when a channel was opened)."""
        if failure and self.failure is None:
            self.failure = failure
            log.info("admin link: %s", failure)
        if self.handler is not None:
            self.handler.close()
        self._out.clear()
        self._rx_pending = 0
        self.state = LinkState.CLOSING if self.channel is not None else LinkState.CLOSED

    def abort(self, reason: str) -> None:
        """Give up (a timeout of the owner's): the handler is dropped, the channel closed."""
        if self.state in (LinkState.OPENING, LinkState.OPEN):
            self._close(reason)

    # -- news from the terminal ----------------------------------------------------------------

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        result = response.result
        match command:
            case OpenChannel():
                status = response.channel_status
                if not result.ok or status is None:
                    self.failure = f"OPEN CHANNEL refused: {result}"
                    log.info("admin link: %s", self.failure)
                    self.state = LinkState.CLOSED
                    return
                self.channel = status.channel
                self.buffer_size = (
                    response.buffer_size.size if response.buffer_size else command.buffer_size.size
                )
                self.handler, first = self._connected(status.channel, now)
                self._out += first
                self.state = LinkState.OPEN
            case ReceiveData():
                if self.handler is None or self.state is not LinkState.OPEN:
                    return
                if not result.ok:
                    self._rx_pending = 0
                    return
                data = response.data.data if response.data is not None else b""
                self._rx_pending = response.data_length.length if response.data_length else 0
                self.handler.receive_data(data, now)
            case SendData():
                if not result.ok and self.state is LinkState.OPEN:
                    self._close(f"SEND DATA failed: {result}")
            case CloseChannel():
                self.state = LinkState.CLOSED
                self.channel = None
            case _:
                pass

    def on_envelope(self, envelope: Envelope, now: float) -> bool:
        """Takes the events of this link's channel; False for anything else."""
        if not isinstance(envelope, EventDownload) or envelope.channel_status is None:
            return False
        if self.channel is None or envelope.channel_status.channel != self.channel:
            return False
        events = envelope.event.events
        if Event.DATA_AVAILABLE in events and envelope.data_length is not None:
            if self.state is LinkState.OPEN:
                self._rx_pending = envelope.data_length.length
        elif Event.CHANNEL_STATUS in events:
            if envelope.channel_status.bits == 0 and self.state is LinkState.OPEN:
                # The server or the network dropped the link (§8.56: b8 = 0).
                handler = self.handler
                assert handler is not None
                handler.receive_data(b"", now)
                self._close("the link dropped")
        return True

    # -- timers ----------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        if self.state is LinkState.OPEN and self.handler is not None:
            return self.handler.get_timer()
        return None

    def on_timer(self, now: float) -> None:
        if self.state is LinkState.OPEN and self.handler is not None:
            due = self.handler.get_timer()
            if due is not None and due <= now:
                self.handler.handle_timer(now)
