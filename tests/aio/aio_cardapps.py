"""Card-side toolkit applications for the gateway tests, and an in-process card to put them on.

`ClientApp` opens one client-mode channel ("TCP, UICC in client mode") and moves bytes over it
with SEND DATA / RECEIVE DATA, as an admin agent would; it also answers SMS-PP downloads with a
fixed PoR (optionally 93 00 first), and an SMS can be what makes it open the channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from openscws.apdu.status import SW
from openscws.cat.commands import (
    CloseChannel,
    Command,
    OpenChannel,
    ReceiveData,
    SendData,
    SetUpEventList,
)
from openscws.cat.envelopes import Envelope, EventDownload, SmsPpDownload
from openscws.cat.objects import AddressType, Event, OtherAddress
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import ApduError
from openscws.uicc.card import CardIdentity, VirtualUicc

ICCID = "89882390000012345678"
MAX_RECEIVE = 237
MAX_SEND = 240


class ClientApp:
    def __init__(
        self,
        address: str = "192.0.2.1",
        port: int = 7,
        *,
        buffer_size: int = 1400,
        send: bytes = b"",
        expect: int = 0,
        open_on_profile: bool = True,
        close_on_drop: bool = True,
        por: bytes = b"",
        busy: int = 0,
    ) -> None:
        packed = bytes(int(x) for x in address.split(".")) if "." in address else None
        self.address = (
            OtherAddress(AddressType.IPV4, packed)
            if packed is not None
            else OtherAddress(AddressType.IPV6, _v6(address))
        )
        self.port = port
        self.buffer_size = buffer_size
        self.to_send = bytearray(send)
        self.expect = expect
        self.open_wanted = open_on_profile
        self.close_on_drop = close_on_drop
        self.por = por
        self.busy = busy
        """How many SMS-PP downloads to answer 93 00 before taking one."""
        self.events_set = False
        self.open_sent = False
        self.open_response: TerminalResponse | None = None
        self.channel: int | None = None
        self.rx_pending = 0
        self.tx_stored = 0
        self.received = bytearray()
        self.dropped: int | None = None
        """Byte 2 of the Channel status event that said the link went down."""
        self.closed = False
        self.sms: list[SmsPpDownload] = []
        self.failures: list[TerminalResponse] = []

    # -- ToolkitApp ----------------------------------------------------------------------------

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        pass

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if isinstance(envelope, SmsPpDownload):
            if self.busy:
                self.busy -= 1
                raise ApduError(SW.TOOLKIT_BUSY, "busy")
            self.sms.append(envelope)
            self.open_wanted = True
            return self.por
        if not isinstance(envelope, EventDownload) or envelope.channel_status is None:
            return None
        if self.channel is None or envelope.channel_status.channel != self.channel:
            return None
        events = envelope.event.events
        if Event.DATA_AVAILABLE in events and envelope.data_length is not None:
            self.rx_pending = envelope.data_length.length
        elif Event.CHANNEL_STATUS in events and envelope.channel_status.bits == 0:
            self.dropped = envelope.channel_status.further
        return b""

    def next_command(self, number: int, now: float) -> Command | None:
        if not self.events_set:
            self.events_set = True
            return SetUpEventList.build(number, (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS))
        if self.open_wanted and not self.open_sent:
            self.open_sent = True
            return OpenChannel.client(
                number, address=self.address, port=self.port, buffer_size=self.buffer_size
            )
        channel = self.channel
        if channel is None or self.closed:
            return None
        if self.rx_pending:
            return ReceiveData.build(number, channel, min(self.rx_pending, MAX_RECEIVE))
        if self.to_send and self.dropped is None:
            size = min(len(self.to_send), MAX_SEND, self.buffer_size - self.tx_stored)
            last = size == len(self.to_send) or self.tx_stored + size + MAX_SEND > self.buffer_size
            chunk = bytes(self.to_send[:size])
            del self.to_send[:size]
            self.tx_stored = 0 if last else self.tx_stored + size
            return SendData.build(number, channel, chunk, immediately=last)
        done = self.expect and len(self.received) >= self.expect
        if done or (self.dropped is not None and self.close_on_drop):
            self.closed = True
            return CloseChannel.build(number, channel, to_listen=False)
        return None

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        if not response.result.ok:
            self.failures.append(response)
        match command:
            case OpenChannel():
                self.open_response = response
                if response.result.ok and response.channel_status is not None:
                    self.channel = response.channel_status.channel
                    if response.buffer_size is not None:
                        self.buffer_size = response.buffer_size.size
            case ReceiveData():
                if response.data is not None:
                    self.received += response.data.data
                self.rx_pending = response.data_length.length if response.data_length else 0
            case CloseChannel():
                self.channel = None
            case _:
                pass

    def next_timer(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        pass


def _v6(address: str) -> bytes:
    import ipaddress

    return ipaddress.IPv6Address(address).packed


def card_with(*apps: object) -> VirtualUicc:
    card = VirtualUicc(CardIdentity(ICCID))
    for app in apps:
        card.toolkit.register(app)  # type: ignore[arg-type]
    return card


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Waits until `condition()` is true (checked every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
