"""TERMINAL RESPONSE (ETSI TS 102 223 §6.8): the terminal's answer to one proactive command.

Unlike a proactive command it has no BER-TLV template: the APDU data is the list of
COMPREHENSION-TLVs. The objects after Result depend on the command (§6.8.x); this one class
holds all those used by the commands implemented here, in the order §6.8 lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from openscws.cat.layout import Slot, decode_objects, encode_objects
from openscws.cat.objects import (
    BearerDescription,
    BufferSize,
    ChannelData,
    ChannelDataLength,
    ChannelStatus,
    CommandDetails,
    Device,
    DeviceIdentities,
    DnsServerAddress,
    Result,
)
from openscws.codec.tlv import ComprehensionTlv
from openscws.errors import DecodeError

_CACHED_MAX = 24
_CACHE_SIZE = 4096
_cache: dict[bytes, TerminalResponse] = {}
_details: dict[tuple[int, int], CommandDetails] = {}  # (number, qualifier) of RECEIVE DATA
_results: dict[int, Result] = {}
_lengths: dict[int, ChannelDataLength] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalResponse:
    SLOTS: ClassVar[tuple[Slot, ...]] = (
        Slot("details", CommandDetails, required=True),
        Slot("devices", DeviceIdentities, required=True),
        Slot("result", Result, required=True),
        Slot("channel_statuses", ChannelStatus, repeated=True),  # §6.8.x OPEN/GET CHANNEL STATUS
        Slot("bearer", BearerDescription),  # OPEN CHANNEL
        Slot("buffer_size", BufferSize),  # OPEN CHANNEL
        Slot("dns_servers", DnsServerAddress, repeated=True),  # OPEN CHANNEL, qualifier b4
        Slot("data", ChannelData),  # RECEIVE DATA
        Slot("data_length", ChannelDataLength),  # RECEIVE DATA (left), SEND DATA (free)
    )
    details: CommandDetails
    """Echoed byte-exact from the command (§6.8.1)."""
    devices: DeviceIdentities = DeviceIdentities(Device.TERMINAL, Device.UICC)
    result: Result
    channel_statuses: tuple[ChannelStatus, ...] = ()
    bearer: BearerDescription | None = None
    buffer_size: BufferSize | None = None
    dns_servers: tuple[DnsServerAddress, ...] = ()
    data: ChannelData | None = None
    data_length: ChannelDataLength | None = None
    extra: tuple[ComprehensionTlv, ...] = field(default=(), compare=False)
    cr_clear: frozenset[int] = field(default=frozenset(), compare=False)

    def encode(self) -> bytes:
        return encode_objects(self.SLOTS, self, self.extra, self.cr_clear)

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        if len(raw) > 16 and raw[3] == 0x42:
            fast = cls._decode_receive_data(raw)
            if fast is not None:
                return fast
        # Responses without channel data repeat (SEND DATA's differ only in number and free
        # space) and are immutable: a bounded cache spares the card most decoding.
        if len(raw) <= _CACHED_MAX:
            hit = _cache.get(raw)
            if hit is not None and type(hit) is cls:
                return hit
        decoded = cls._decode(raw)
        if len(raw) <= _CACHED_MAX:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[raw] = decoded
        return decoded

    @classmethod
    def _decode_receive_data(cls, raw: bytes) -> Self | None:
        """The TR of RECEIVE DATA in its plain form, read straight from the bytes (§6.8,
        §6.6.29): `81 03 nn 42 qq 82 02 82 81 83 01 rr B6 LL data B7 01 ll`; None for any
        other form, which the typed decoder then takes. The tests check both agree."""
        if raw[:2] != b"\x81\x03" or raw[5:11] != b"\x82\x02\x82\x81\x83\x01" or raw[12] != 0xB6:
            return None
        length = raw[13]
        start = 14
        if length == 0x81:
            length = raw[14]
            start = 15
            if length < 0x80:
                return None  # the 81 form below 128 is malformed: the typed decoder says so
        elif length > 0x7F:
            return None
        end = start + length
        if len(raw) != end + 3 or raw[end] != 0xB7 or raw[end + 1] != 0x01:
            return None
        key = (raw[2], raw[4])
        details = _details.get(key)
        if details is None:
            details = _details[key] = CommandDetails(raw[2], 0x42, raw[4])
        result = _results.get(raw[11])
        if result is None:
            result = _results[raw[11]] = Result(raw[11])
        left = _lengths.get(raw[end + 2])
        if left is None:
            left = _lengths[raw[end + 2]] = ChannelDataLength(raw[end + 2])
        return cls(
            details=details, result=result, data=ChannelData(raw[start:end]), data_length=left
        )

    @classmethod
    def _decode(cls, raw: bytes) -> Self:
        if not raw:
            raise DecodeError("empty terminal response", raw, 0)
        values, extra, cr_clear = decode_objects(cls.SLOTS, raw, strict=False)
        kwargs: dict[str, Any] = values
        return cls(extra=extra, cr_clear=cr_clear, **kwargs)

    @property
    def channel_status(self) -> ChannelStatus | None:
        return self.channel_statuses[0] if self.channel_statuses else None
