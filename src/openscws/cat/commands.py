"""Proactive commands (ETSI TS 102 223 §6.6), carried in the D0 template of a FETCH response.

Each command is a frozen dataclass whose `SLOTS` declare its data objects in spec order; the
shared engine in `layout` encodes and decodes them. Command details and device identities lead
every command (§6.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Self

from openscws.cat import transfer
from openscws.cat.layout import Slot, decode_objects, encode_objects
from openscws.cat.objects import (
    CHANNEL_DEVICE_BASE,
    AlphaIdentifier,
    BearerDescription,
    BufferSize,
    ChannelData,
    ChannelDataLength,
    CommandDetails,
    Device,
    DeviceIdentities,
    Duration,
    EventList,
    FrameIdentifier,
    IconIdentifier,
    NetworkAccessName,
    OtherAddress,
    TextAttribute,
    TextString,
    TransportLevel,
    TransportProtocol,
)
from openscws.codec.tlv import ComprehensionTlv, encode_ber_tlv, pull_ber_tlv
from openscws.errors import DecodeError

PROACTIVE_TAG = 0xD0
"""BER-TLV tag of a proactive command (TS 101 220 §7.2)."""


class CommandType(IntEnum):
    """§9.4 type of command (subset handled here)."""

    REFRESH = 0x01
    MORE_TIME = 0x02
    POLL_INTERVAL = 0x03
    POLLING_OFF = 0x04
    SET_UP_EVENT_LIST = 0x05
    SEND_SHORT_MESSAGE = 0x13
    LAUNCH_BROWSER = 0x15
    DISPLAY_TEXT = 0x21
    PROVIDE_LOCAL_INFORMATION = 0x26
    TIMER_MANAGEMENT = 0x27
    OPEN_CHANNEL = 0x40
    CLOSE_CHANNEL = 0x41
    RECEIVE_DATA = 0x42
    SEND_DATA = 0x43
    GET_CHANNEL_STATUS = 0x44


SEND_IMMEDIATELY = 0x01
"""SEND DATA qualifier b1 (§6.4.28): send the Tx buffer now rather than store."""
CLOSE_TO_LISTEN = 0x01
"""CLOSE CHANNEL qualifier b1 in UICC server mode (§6.4.28): close the TCP connection and go back
to TCP LISTEN, keeping the channel."""

_HEAD = (
    Slot("details", CommandDetails, required=True),
    Slot("devices", DeviceIdentities, required=True),
)


def channel_device(channel: int) -> int:
    return CHANNEL_DEVICE_BASE + channel


# Command details and device identities are immutable and few: built once each, they spare
# the transfer path two object constructions per command.
_DETAILS: dict[tuple[int, int, int], CommandDetails] = {}
_DEVICES: dict[int, DeviceIdentities] = {}


def _details(number: int, type: int, qualifier: int) -> CommandDetails:
    key = (number, type, qualifier)
    found = _DETAILS.get(key)
    if found is None:
        found = _DETAILS[key] = CommandDetails(number, type, qualifier)
    return found


def _channel_devices(channel: int) -> DeviceIdentities:
    found = _DEVICES.get(channel)
    if found is None:
        found = _DEVICES[channel] = DeviceIdentities(Device.UICC, channel_device(channel))
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Fields every proactive command has."""

    SLOTS: ClassVar[tuple[Slot, ...]] = _HEAD
    TYPE: ClassVar[int] = -1
    details: CommandDetails
    devices: DeviceIdentities
    extra: tuple[ComprehensionTlv, ...] = field(default=(), compare=False)
    cr_clear: frozenset[int] = field(default=frozenset(), compare=False)

    def encode(self) -> bytes:
        return encode_ber_tlv(
            PROACTIVE_TAG, encode_objects(self.SLOTS, self, self.extra, self.cr_clear)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SetUpEventList(Command):
    """§6.6.16."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (*_HEAD, Slot("events", EventList, required=True))
    TYPE: ClassVar[int] = CommandType.SET_UP_EVENT_LIST
    events: EventList

    @classmethod
    def build(cls, number: int, events: tuple[int, ...]) -> Self:
        return cls(
            details=CommandDetails(number, cls.TYPE),
            devices=DeviceIdentities(Device.UICC, Device.TERMINAL),
            events=EventList(events),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PollInterval(Command):
    """§6.6.6."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (*_HEAD, Slot("duration", Duration, required=True))
    TYPE: ClassVar[int] = CommandType.POLL_INTERVAL
    duration: Duration


@dataclass(frozen=True, slots=True, kw_only=True)
class MoreTime(Command):
    """§6.6.4."""

    TYPE: ClassVar[int] = CommandType.MORE_TIME


@dataclass(frozen=True, slots=True, kw_only=True)
class PollingOff(Command):
    """§6.6.14."""

    TYPE: ClassVar[int] = CommandType.POLLING_OFF


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenChannel(Command):
    """§6.6.27. UICC server mode (§6.6.27.5) carries buffer size and a TCP_SERVER transport
    level and no bearer; client mode (§6.6.27.1-3) adds the bearer, the destination address and
    optionally the network access name, local address and login/password."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (
        *_HEAD,
        Slot("alpha", AlphaIdentifier),
        Slot("icon", IconIdentifier),
        Slot("bearer", BearerDescription),
        Slot("buffer_size", BufferSize, required=True),
        Slot("network_access_name", NetworkAccessName),
        Slot("local_address", OtherAddress),
        Slot("login", TextString),
        Slot("password", TextString),
        Slot("transport", TransportLevel),
        Slot("destination", OtherAddress),
        Slot("text_attribute", TextAttribute),
        Slot("frame", FrameIdentifier),
    )
    TYPE: ClassVar[int] = CommandType.OPEN_CHANNEL
    buffer_size: BufferSize
    alpha: AlphaIdentifier | None = None
    icon: IconIdentifier | None = None
    bearer: BearerDescription | None = None
    network_access_name: NetworkAccessName | None = None
    local_address: OtherAddress | None = None
    login: TextString | None = None
    password: TextString | None = None
    transport: TransportLevel | None = None
    destination: OtherAddress | None = None
    text_attribute: TextAttribute | None = None
    frame: FrameIdentifier | None = None

    @property
    def server_mode(self) -> bool:
        return (
            self.transport is not None and self.transport.protocol == TransportProtocol.TCP_SERVER
        )

    @classmethod
    def server(cls, number: int, port: int, buffer_size: int) -> Self:
        return cls(
            details=CommandDetails(number, cls.TYPE, 0x00),
            devices=DeviceIdentities(Device.UICC, Device.TERMINAL),
            buffer_size=BufferSize(buffer_size),
            transport=TransportLevel(TransportProtocol.TCP_SERVER, port),
        )

    @classmethod
    def client(
        cls,
        number: int,
        *,
        address: OtherAddress,
        port: int,
        buffer_size: int,
        bearer: BearerDescription | None = None,
        qualifier: int = 0x01,
    ) -> Self:
        return cls(
            details=CommandDetails(number, cls.TYPE, qualifier),
            devices=DeviceIdentities(Device.UICC, Device.TERMINAL),
            bearer=bearer or BearerDescription(0x03),
            buffer_size=BufferSize(buffer_size),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, port),
            destination=address,
        )


_PRESENTATION = (Slot("alpha", AlphaIdentifier), Slot("icon", IconIdentifier))
_TRAILER = (Slot("text_attribute", TextAttribute), Slot("frame", FrameIdentifier))


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseChannel(Command):
    """§6.6.28. The destination device is the channel (21..27)."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (*_HEAD, *_PRESENTATION, *_TRAILER)
    TYPE: ClassVar[int] = CommandType.CLOSE_CHANNEL
    alpha: AlphaIdentifier | None = None
    icon: IconIdentifier | None = None
    text_attribute: TextAttribute | None = None
    frame: FrameIdentifier | None = None

    @property
    def channel(self) -> int:
        return self.devices.destination - CHANNEL_DEVICE_BASE

    @classmethod
    def build(cls, number: int, channel: int, *, to_listen: bool) -> Self:
        return cls(
            details=CommandDetails(number, cls.TYPE, CLOSE_TO_LISTEN if to_listen else 0),
            devices=DeviceIdentities(Device.UICC, channel_device(channel)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveData(Command):
    """§6.6.29."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (
        *_HEAD,
        *_PRESENTATION,
        Slot("length", ChannelDataLength, required=True),
        *_TRAILER,
    )
    TYPE: ClassVar[int] = CommandType.RECEIVE_DATA
    length: ChannelDataLength
    alpha: AlphaIdentifier | None = None
    icon: IconIdentifier | None = None
    text_attribute: TextAttribute | None = None
    frame: FrameIdentifier | None = None

    @property
    def channel(self) -> int:
        return self.devices.destination - CHANNEL_DEVICE_BASE

    def encode(self) -> bytes:
        # Every request starts with one: the plain form built directly, the same bytes the
        # layout engine gives (tested).
        if (
            self.alpha is None
            and self.icon is None
            and self.text_attribute is None
            and self.frame is None
            and not self.extra
            and not self.cr_clear
        ):
            d = self.details
            devices = self.devices
            if (
                d.qualifier == 0
                and devices.source == Device.UICC
                and 0x21 <= devices.destination <= 0x27
            ):
                return transfer.receive_data(
                    d.number, devices.destination - 0x20, min(self.length.length, 0xFF)
                )
        return Command.encode(self)

    @classmethod
    def build(cls, number: int, channel: int, length: int) -> Self:
        return cls(
            details=_details(number, CommandType.RECEIVE_DATA, 0),
            devices=_channel_devices(channel),
            length=ChannelDataLength(length),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SendData(Command):
    """§6.6.30."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (
        *_HEAD,
        *_PRESENTATION,
        Slot("data", ChannelData, required=True),
        *_TRAILER,
    )
    TYPE: ClassVar[int] = CommandType.SEND_DATA
    data: ChannelData
    alpha: AlphaIdentifier | None = None
    icon: IconIdentifier | None = None
    text_attribute: TextAttribute | None = None
    frame: FrameIdentifier | None = None

    @property
    def channel(self) -> int:
        return self.devices.destination - CHANNEL_DEVICE_BASE

    @property
    def immediately(self) -> bool:
        return bool(self.details.qualifier & SEND_IMMEDIATELY)

    def encode(self) -> bytes:
        # The bulk-transfer hot path: the plain form built directly, the same bytes the
        # layout engine gives (tested).
        if (
            self.alpha is None
            and self.icon is None
            and self.text_attribute is None
            and self.frame is None
            and not self.extra
            and not self.cr_clear
        ):
            data = self.data.data
            d = self.details
            devices = self.devices
            if (
                len(data) <= 240
                and d.qualifier <= 1
                and devices.source == Device.UICC
                and 0x21 <= devices.destination <= 0x27
            ):
                head = transfer.send_data_head(
                    d.number, d.qualifier, devices.destination - 0x20, len(data)
                )
                return head + data
        return Command.encode(self)

    @classmethod
    def build(cls, number: int, channel: int, data: bytes, *, immediately: bool) -> Self:
        qualifier = SEND_IMMEDIATELY if immediately else 0
        details = _DETAILS.get((number, CommandType.SEND_DATA, qualifier))
        if details is None:
            details = _details(number, CommandType.SEND_DATA, qualifier)
        devices = _DEVICES.get(channel)
        if devices is None:
            devices = _channel_devices(channel)
        return cls(details=details, devices=devices, data=ChannelData(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChannelStatus(Command):
    """§6.6.31."""

    TYPE: ClassVar[int] = CommandType.GET_CHANNEL_STATUS

    @classmethod
    def build(cls, number: int) -> Self:
        return cls(
            details=CommandDetails(number, cls.TYPE),
            devices=DeviceIdentities(Device.UICC, Device.TERMINAL),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCommand(Command):
    """A command type this terminal does not implement; answered with result 31 or 30."""


COMMANDS: dict[int, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        SetUpEventList,
        PollInterval,
        MoreTime,
        PollingOff,
        OpenChannel,
        CloseChannel,
        ReceiveData,
        SendData,
        GetChannelStatus,
    )
}


def decode_command(raw: bytes) -> Command:
    """Decodes one FETCH response body (the D0 template). Raises DecodeError (or its
    MissingObject / UnexpectedObject subclasses) on malformed input."""
    tag, body = pull_ber_tlv(raw)
    if tag != PROACTIVE_TAG:
        raise DecodeError(f"proactive command template is D0, not {tag:02X}", raw, 0)
    if len(body) < 5 or body[0] & 0x7F != 0x01:
        raise DecodeError("proactive command must start with command details", raw, 2)
    cls = COMMANDS.get(body[3] if body[1] == 3 else -1, UnknownCommand)
    values, extra, cr_clear = decode_objects(cls.SLOTS, body, strict=cls is not UnknownCommand)
    kwargs: dict[str, Any] = values
    return cls(extra=extra, cr_clear=cr_clear, **kwargs)
