"""COMPREHENSION-TLV data objects (ETSI TS 102 223 §8), one class per object.

Each class declares its tag and its value coding; `DATA_OBJECTS` maps tags to classes, and
every encoder and decoder goes through it. Tags are TS 101 220 §7.2 values without the CR bit."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Protocol, Self

from openscws.errors import DecodeError


class Tag(IntEnum):
    COMMAND_DETAILS = 0x01  # §8.6
    DEVICE_IDENTITIES = 0x02  # §8.7
    RESULT = 0x03  # §8.12
    DURATION = 0x04  # §8.8
    ALPHA_IDENTIFIER = 0x05  # §8.2
    ADDRESS = 0x06  # §8.1
    SMS_TPDU = 0x0B  # §8.13
    TEXT_STRING = 0x0D  # §8.15
    EVENT_LIST = 0x19  # §8.25
    ICON_IDENTIFIER = 0x1E  # §8.31
    BEARER_DESCRIPTION = 0x35  # §8.52
    CHANNEL_DATA = 0x36  # §8.53
    CHANNEL_DATA_LENGTH = 0x37  # §8.54
    CHANNEL_STATUS = 0x38  # §8.56
    BUFFER_SIZE = 0x39  # §8.55
    TRANSPORT_LEVEL = 0x3C  # §8.59 UICC/terminal interface transport level
    OTHER_ADDRESS = 0x3E  # §8.58
    DNS_SERVER_ADDRESS = 0x40  # §8.90
    NETWORK_ACCESS_NAME = 0x47  # §8.61
    TEXT_ATTRIBUTE = 0x50  # §8.72
    FRAME_IDENTIFIER = 0x68  # §8.80


class Device(IntEnum):
    """Device identities (§8.7). Channels are 0x21..0x27."""

    KEYPAD = 0x01
    DISPLAY = 0x02
    EARPIECE = 0x03
    UICC = 0x81
    TERMINAL = 0x82
    NETWORK = 0x83


CHANNEL_DEVICE_BASE = 0x20


class DataObject(Protocol):
    TAG: ClassVar[int]

    def value(self) -> bytes: ...

    @classmethod
    def from_value(cls, value: bytes) -> Self: ...


def _need(value: bytes, n: int, what: str) -> None:
    if len(value) < n:
        raise DecodeError(f"{what} needs {n} bytes, got {len(value)}", value, len(value))


@dataclass(frozen=True, slots=True)
class CommandDetails:
    """§8.6: number, type of command, qualifier."""

    TAG: ClassVar[int] = Tag.COMMAND_DETAILS
    number: int
    type: int
    qualifier: int = 0

    def value(self) -> bytes:
        return bytes((self.number, self.type, self.qualifier))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 3, "command details")
        return cls(value[0], value[1], value[2])


@dataclass(frozen=True, slots=True)
class DeviceIdentities:
    """§8.7: source and destination device."""

    TAG: ClassVar[int] = Tag.DEVICE_IDENTITIES
    source: int
    destination: int

    def value(self) -> bytes:
        return bytes((self.source, self.destination))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 2, "device identities")
        return cls(value[0], value[1])


class GeneralResult(IntEnum):
    """§8.12 general result (subset used here)."""

    OK = 0x00
    PARTIAL_COMPREHENSION = 0x01
    MISSING_INFORMATION = 0x02
    OK_WITH_MODIFICATION = 0x07
    TERMINAL_UNABLE = 0x20
    NETWORK_UNABLE = 0x21
    BEYOND_CAPABILITIES = 0x30
    TYPE_NOT_UNDERSTOOD = 0x31
    DATA_NOT_UNDERSTOOD = 0x32
    NUMBER_NOT_KNOWN = 0x33
    REQUIRED_VALUES_MISSING = 0x36
    BIP_ERROR = 0x3A


class BipCause(IntEnum):
    """§8.12.11 additional information for result 3A."""

    NO_SPECIFIC_CAUSE = 0x00
    NO_CHANNEL_AVAILABLE = 0x01
    CHANNEL_CLOSED = 0x02
    INVALID_CHANNEL = 0x03
    BUFFER_SIZE_NOT_AVAILABLE = 0x04
    SECURITY_ERROR = 0x05
    TRANSPORT_NOT_AVAILABLE = 0x06
    REMOTE_NOT_REACHABLE = 0x07
    SERVICE_ERROR = 0x08
    SERVICE_ID_UNKNOWN = 0x09
    PORT_NOT_AVAILABLE = 0x10


@dataclass(frozen=True, slots=True)
class Result:
    """§8.12: general result and additional information."""

    TAG: ClassVar[int] = Tag.RESULT
    general: int
    additional: bytes = b""

    def value(self) -> bytes:
        return bytes((self.general,)) + self.additional

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "result")
        return cls(value[0], value[1:])

    @property
    def ok(self) -> bool:
        """Results 0x 'performed' (§8.12: 00 to 0F mean the command was performed)."""
        return self.general < 0x10


@dataclass(frozen=True, slots=True)
class Duration:
    """§8.8: unit (00 minutes, 01 seconds, 02 tenths) and interval."""

    TAG: ClassVar[int] = Tag.DURATION
    unit: int
    interval: int

    def value(self) -> bytes:
        return bytes((self.unit, self.interval))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 2, "duration")
        return cls(value[0], value[1])


@dataclass(frozen=True, slots=True)
class AlphaIdentifier:
    """§8.2: EF.ADN alpha coding, kept as bytes."""

    TAG: ClassVar[int] = Tag.ALPHA_IDENTIFIER
    text: bytes

    def value(self) -> bytes:
        return self.text

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)


@dataclass(frozen=True, slots=True)
class Address:
    """§8.1: TON/NPI byte and BCD digits (kept packed)."""

    TAG: ClassVar[int] = Tag.ADDRESS
    ton_npi: int
    bcd: bytes

    def value(self) -> bytes:
        return bytes((self.ton_npi,)) + self.bcd

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "address")
        return cls(value[0], value[1:])


@dataclass(frozen=True, slots=True)
class SmsTpdu:
    """§8.13: a TS 23.040 TPDU."""

    TAG: ClassVar[int] = Tag.SMS_TPDU
    tpdu: bytes

    def value(self) -> bytes:
        return self.tpdu

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)


@dataclass(frozen=True, slots=True)
class TextString:
    """§8.15: data coding scheme and text."""

    TAG: ClassVar[int] = Tag.TEXT_STRING
    dcs: int
    text: bytes

    def value(self) -> bytes:
        return bytes((self.dcs,)) + self.text

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if not value:
            return cls(0x04, b"")  # a null text string
        return cls(value[0], value[1:])


class Event(IntEnum):
    """§8.25 event list values (subset)."""

    MT_CALL = 0x00
    CALL_CONNECTED = 0x01
    CALL_DISCONNECTED = 0x02
    LOCATION_STATUS = 0x03
    USER_ACTIVITY = 0x04
    IDLE_SCREEN_AVAILABLE = 0x05
    CARD_READER_STATUS = 0x06
    LANGUAGE_SELECTION = 0x07
    BROWSER_TERMINATION = 0x08
    DATA_AVAILABLE = 0x09
    CHANNEL_STATUS = 0x0A
    ACCESS_TECHNOLOGY_CHANGE = 0x0B
    DISPLAY_PARAMETERS_CHANGED = 0x0C
    LOCAL_CONNECTION = 0x0D
    NETWORK_SEARCH_MODE_CHANGE = 0x0E
    BROWSING_STATUS = 0x0F


@dataclass(frozen=True, slots=True)
class EventList:
    """§8.25: one byte per event."""

    TAG: ClassVar[int] = Tag.EVENT_LIST
    events: tuple[int, ...]

    def value(self) -> bytes:
        return bytes(self.events)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(tuple(value))


@dataclass(frozen=True, slots=True)
class IconIdentifier:
    """§8.31: qualifier and EF.IMG record number."""

    TAG: ClassVar[int] = Tag.ICON_IDENTIFIER
    qualifier: int
    record: int

    def value(self) -> bytes:
        return bytes((self.qualifier, self.record))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 2, "icon identifier")
        return cls(value[0], value[1])


class BearerType(IntEnum):
    """§8.52 bearer types (subset)."""

    CSD = 0x01
    GPRS = 0x02
    DEFAULT = 0x03
    LOCAL_LINK = 0x04
    BLUETOOTH = 0x05
    IRDA = 0x06
    RS232 = 0x07
    UTRAN_EXTENDED = 0x09
    EUTRAN = 0x0B
    USB = 0x10


@dataclass(frozen=True, slots=True)
class BearerDescription:
    """§8.52: bearer type and its parameters, kept as bytes."""

    TAG: ClassVar[int] = Tag.BEARER_DESCRIPTION
    bearer: int
    parameters: bytes = b""

    def value(self) -> bytes:
        return bytes((self.bearer,)) + self.parameters

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "bearer description")
        return cls(value[0], value[1:])


@dataclass(frozen=True, slots=True)
class ChannelData:
    """§8.53: raw channel bytes."""

    TAG: ClassVar[int] = Tag.CHANNEL_DATA
    data: bytes

    def value(self) -> bytes:
        return self.data

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)


@dataclass(frozen=True, slots=True)
class ChannelDataLength:
    """§8.54: a count of bytes; FF means 255 or more."""

    TAG: ClassVar[int] = Tag.CHANNEL_DATA_LENGTH
    length: int

    def value(self) -> bytes:
        return bytes((min(self.length, 0xFF),))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "channel data length")
        return cls(value[0])


class ServerState(IntEnum):
    """§8.56 UICC server mode states, byte 1 b8..b7."""

    CLOSED = 0
    LISTEN = 1
    ESTABLISHED = 2


class FurtherInfo(IntEnum):
    """§8.56 channel status byte 2."""

    NONE = 0x00
    LINK_DROPPED = 0x05


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """§8.56: channel id in b3..b1 of byte 1; in UICC server mode b8..b7 hold the TCP state,
    otherwise b8 says the link is established. Byte 2 is the further information."""

    TAG: ClassVar[int] = Tag.CHANNEL_STATUS
    channel: int
    bits: int
    """Byte 1 b8..b7 as a number: for server mode a `ServerState`, else 2 = link up, 0 = down."""
    further: int = FurtherInfo.NONE

    def value(self) -> bytes:
        return bytes(((self.bits << 6) | (self.channel & 0x07), self.further))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 2, "channel status")
        return cls(value[0] & 0x07, value[0] >> 6, value[1])

    @classmethod
    def server(cls, channel: int, state: ServerState, further: int = FurtherInfo.NONE) -> Self:
        return cls(channel, int(state), further)

    @classmethod
    def link(cls, channel: int, up: bool, further: int = FurtherInfo.NONE) -> Self:
        return cls(channel, 2 if up else 0, further)


@dataclass(frozen=True, slots=True)
class BufferSize:
    """§8.55: two bytes, big-endian."""

    TAG: ClassVar[int] = Tag.BUFFER_SIZE
    size: int

    def value(self) -> bytes:
        return self.size.to_bytes(2, "big")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 2, "buffer size")
        return cls(int.from_bytes(value[:2], "big"))


class TransportProtocol(IntEnum):
    """§8.59 transport protocol types."""

    UDP_CLIENT_REMOTE = 0x01
    TCP_CLIENT_REMOTE = 0x02
    TCP_SERVER = 0x03
    UDP_CLIENT_LOCAL = 0x04
    TCP_CLIENT_LOCAL = 0x05
    DIRECT = 0x06


@dataclass(frozen=True, slots=True)
class TransportLevel:
    """§8.59: transport protocol type and port."""

    TAG: ClassVar[int] = Tag.TRANSPORT_LEVEL
    protocol: int
    port: int

    def value(self) -> bytes:
        return bytes((self.protocol,)) + self.port.to_bytes(2, "big")

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 3, "transport level")
        return cls(value[0], int.from_bytes(value[1:3], "big"))


class AddressType(IntEnum):
    IPV4 = 0x21
    IPV6 = 0x57


@dataclass(frozen=True, slots=True)
class OtherAddress:
    """§8.58: type (21 IPv4, 57 IPv6) and address bytes; empty value = dynamic address."""

    TAG: ClassVar[int] = Tag.OTHER_ADDRESS
    type: int
    address: bytes

    def value(self) -> bytes:
        return bytes((self.type,)) + self.address

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "other address")
        kind, addr = value[0], value[1:]
        if kind == AddressType.IPV4 and len(addr) != 4:
            raise DecodeError("IPv4 other address needs 4 bytes", value, 1)
        if kind == AddressType.IPV6 and len(addr) != 16:
            raise DecodeError("IPv6 other address needs 16 bytes", value, 1)
        return cls(kind, addr)


@dataclass(frozen=True, slots=True)
class DnsServerAddress:
    """§8.90: same coding as other address."""

    TAG: ClassVar[int] = Tag.DNS_SERVER_ADDRESS
    type: int
    address: bytes

    def value(self) -> bytes:
        return bytes((self.type,)) + self.address

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "DNS server address")
        return cls(value[0], value[1:])


@dataclass(frozen=True, slots=True)
class NetworkAccessName:
    """§8.61: APN labels, each prefixed by its length (TS 23.003)."""

    TAG: ClassVar[int] = Tag.NETWORK_ACCESS_NAME
    raw: bytes

    def value(self) -> bytes:
        return self.raw

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)

    @property
    def labels(self) -> tuple[str, ...]:
        out: list[str] = []
        i = 0
        while i < len(self.raw):
            n = self.raw[i]
            out.append(self.raw[i + 1 : i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        return tuple(out)


@dataclass(frozen=True, slots=True)
class TextAttribute:
    """§8.72: formatting, kept as bytes."""

    TAG: ClassVar[int] = Tag.TEXT_ATTRIBUTE
    raw: bytes

    def value(self) -> bytes:
        return self.raw

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        return cls(value)


@dataclass(frozen=True, slots=True)
class FrameIdentifier:
    """§8.80: one byte."""

    TAG: ClassVar[int] = Tag.FRAME_IDENTIFIER
    frame: int

    def value(self) -> bytes:
        return bytes((self.frame,))

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        _need(value, 1, "frame identifier")
        return cls(value[0])


DATA_OBJECTS: dict[int, type[DataObject]] = {
    cls.TAG: cls
    for cls in (
        CommandDetails,
        DeviceIdentities,
        Result,
        Duration,
        AlphaIdentifier,
        Address,
        SmsTpdu,
        TextString,
        EventList,
        IconIdentifier,
        BearerDescription,
        ChannelData,
        ChannelDataLength,
        ChannelStatus,
        BufferSize,
        TransportLevel,
        OtherAddress,
        DnsServerAddress,
        NetworkAccessName,
        TextAttribute,
        FrameIdentifier,
    )
}
