"""ENVELOPE commands from the terminal to the card (ETSI TS 102 223 §7): event download (D6,
§7.5) and SMS-PP data download (D1, §7.1; 3GPP TS 31.111 §7.1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from openscws.cat.layout import Slot, decode_objects, encode_objects
from openscws.cat.objects import (
    Address,
    ChannelDataLength,
    ChannelStatus,
    Device,
    DeviceIdentities,
    Event,
    EventList,
    ServerState,
    SmsTpdu,
    TransportLevel,
    TransportProtocol,
)
from openscws.codec.tlv import ComprehensionTlv, encode_ber_tlv, pull_ber_tlv
from openscws.errors import DecodeError


class EnvelopeTag(IntEnum):
    """BER-TLV templates of envelopes (TS 101 220 §7.2)."""

    SMS_PP_DOWNLOAD = 0xD1
    CELL_BROADCAST_DOWNLOAD = 0xD2
    MENU_SELECTION = 0xD3
    CALL_CONTROL = 0xD4
    EVENT_DOWNLOAD = 0xD6
    TIMER_EXPIRATION = 0xD7


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDownload:
    """§7.5: one event; Data available (§7.5.10) and Channel status (§7.5.11) carry the
    channel status, and Data available also the channel data length. The gateway's news of
    clients waiting for a server port (`clients_waiting_event`) adds the port's transport
    level (§8.59)."""

    TEMPLATE: ClassVar[int] = EnvelopeTag.EVENT_DOWNLOAD
    SLOTS: ClassVar[tuple[Slot, ...]] = (
        Slot("event", EventList, required=True),
        Slot("devices", DeviceIdentities, required=True),
        Slot("channel_status", ChannelStatus),
        Slot("data_length", ChannelDataLength),
        Slot("transport", TransportLevel),
    )
    event: EventList
    devices: DeviceIdentities = DeviceIdentities(Device.TERMINAL, Device.UICC)
    channel_status: ChannelStatus | None = None
    data_length: ChannelDataLength | None = None
    transport: TransportLevel | None = None
    extra: tuple[ComprehensionTlv, ...] = field(default=(), compare=False)
    cr_clear: frozenset[int] = field(default=frozenset(), compare=False)

    def encode(self) -> bytes:
        return encode_ber_tlv(
            self.TEMPLATE, encode_objects(self.SLOTS, self, self.extra, self.cr_clear)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsPpDownload:
    """§7.1 / TS 31.111 §7.1.1.2: device identities (network to UICC), optional service-centre
    address, and the SMS-DELIVER TPDU."""

    TEMPLATE: ClassVar[int] = EnvelopeTag.SMS_PP_DOWNLOAD
    SLOTS: ClassVar[tuple[Slot, ...]] = (
        Slot("devices", DeviceIdentities, required=True),
        Slot("address", Address),
        Slot("tpdu", SmsTpdu, required=True),
    )
    tpdu: SmsTpdu
    devices: DeviceIdentities = DeviceIdentities(Device.NETWORK, Device.UICC)
    address: Address | None = None
    extra: tuple[ComprehensionTlv, ...] = field(default=(), compare=False)
    cr_clear: frozenset[int] = field(default=frozenset(), compare=False)

    def encode(self) -> bytes:
        return encode_ber_tlv(
            self.TEMPLATE, encode_objects(self.SLOTS, self, self.extra, self.cr_clear)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEnvelope:
    """An envelope template this card does not handle."""

    template: int
    body: bytes


Envelope = EventDownload | SmsPpDownload | UnknownEnvelope

_ENVELOPES: dict[int, type[EventDownload] | type[SmsPpDownload]] = {
    EventDownload.TEMPLATE: EventDownload,
    SmsPpDownload.TEMPLATE: SmsPpDownload,
}


_CACHED_MAX = 24
_CACHE_SIZE = 1024
_cache: dict[bytes, Envelope] = {}


def decode_envelope(raw: bytes) -> Envelope:
    # Event envelopes repeat byte for byte and decode to immutable objects: cache them.
    if len(raw) <= _CACHED_MAX:
        hit = _cache.get(raw)
        if hit is not None:
            return hit
        decoded = _decode_envelope(raw)
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[raw] = decoded
        return decoded
    return _decode_envelope(raw)


def _decode_envelope(raw: bytes) -> Envelope:
    template, body = pull_ber_tlv(raw)
    cls = _ENVELOPES.get(template)
    if cls is None:
        if template & 0xF0 != 0xD0:
            raise DecodeError(f"{template:02X} is not an envelope template", raw, 0)
        return UnknownEnvelope(template=template, body=body)
    values, extra, cr_clear = decode_objects(cls.SLOTS, body, strict=False)
    kwargs: dict[str, Any] = values
    return cls(extra=extra, cr_clear=cr_clear, **kwargs)


# The two BIP events start every request on the terminal side, so they are also built straight
# to bytes; tests check these equal the typed encodings above.
_DATA_AVAILABLE_HEAD = b"\xd6\x0e\x99\x01\x09\x82\x02\x82\x81\xb8\x02"
_CHANNEL_STATUS_HEAD = b"\xd6\x0b\x99\x01\x0a\x82\x02\x82\x81\xb8\x02"


def encode_data_available(channel_status: ChannelStatus, length: int) -> bytes:
    """`data_available(channel_status, length).encode()`, without the objects."""
    return _DATA_AVAILABLE_HEAD + channel_status.value() + bytes((0xB7, 1, min(length, 0xFF)))


def encode_channel_status_event(channel_status: ChannelStatus) -> bytes:
    """`channel_status_event(channel_status).encode()`, without the objects."""
    return _CHANNEL_STATUS_HEAD + channel_status.value()


def clients_waiting_event(port: int, waiting: bool) -> EventDownload:
    """The gateway's news that TCP clients of server port `port` wait for a channel (all of
    the port's are busy), or that none waits any more: a Channel status event (§7.5.11)
    naming no channel (§8.56: channel 0, "no channel available") in TCP LISTEN while clients
    wait, TCP CLOSED when none does, with the port as a transport level (§8.59, TCP in UICC
    server mode). A terminal that sends no such news leaves the card's channels to the
    clients bound to them: the SCWS takes channels back only for clients it knows wait."""
    state = ServerState.LISTEN if waiting else ServerState.CLOSED
    return EventDownload(
        event=EventList((Event.CHANNEL_STATUS,)),
        channel_status=ChannelStatus.server(0, state),
        transport=TransportLevel(TransportProtocol.TCP_SERVER, port),
    )


def data_available(channel_status: ChannelStatus, length: int) -> EventDownload:
    return EventDownload(
        event=EventList((Event.DATA_AVAILABLE,)),
        channel_status=channel_status,
        data_length=ChannelDataLength(length),
    )


def channel_status_event(channel_status: ChannelStatus) -> EventDownload:
    return EventDownload(event=EventList((Event.CHANNEL_STATUS,)), channel_status=channel_status)
