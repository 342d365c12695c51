"""The "administration session triggering parameters" of GlobalPlatform Card Specification
Amendment B (Table 3-3 and §3.8; DNS resolution from §3.11), the secured data of the SMS that
wakes the card's admin agent.

BER-TLV tree (single-byte tags, context-specific; tags and nesting as pySim
`pySim/global_platform/http.py` declares them):

    81 triggering parameters
       83 administration session parameters
          84 connection parameters      COMPREHENSION-TLVs of OPEN CHANNEL (TS 102 223 §6.6.27)
          85 security parameters        Lid, PSK identity, 02, key version, key id, [hash type]
          A5 extended security params   kept opaque
          86 retry policy               counter (2), waiting delay (5), [report-failure data]
          89 HTTP POST parameters
             8A administration host     UTF-8, becomes the Host header
             8B agent ID                UTF-8, becomes X-Admin-From
             8C administration URI      UTF-8, the first request-URI
       B3 DNS resolution parameters
          D6 RAS FQDN                   kept as bytes
          FA DNS connection parameters  as 84

Each container is declared once as a table of (tag, field, codecs); the same table decodes and
encodes. Tags a container does not declare are kept in `extra` and re-encoded after the known
ones, so nothing is lost. A known tag that repeats is a DecodeError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, Self

from openscws.cat.layout import Slot, decode_objects, encode_objects
from openscws.cat.objects import (
    AddressType,
    BearerDescription,
    BearerType,
    BufferSize,
    NetworkAccessName,
    OtherAddress,
    TextString,
    TransportLevel,
    TransportProtocol,
)
from openscws.codec.tlv import ComprehensionTlv, encode_length, pull_length
from openscws.errors import DecodeError


class TriggerTag(IntEnum):
    """GP Amendment B Table 3-3 (and §3.11 for B3, D6, FA)."""

    TRIGGERING_PARAMETERS = 0x81
    SESSION_PARAMETERS = 0x83
    CONNECTION_PARAMETERS = 0x84  # §3.8.1
    SECURITY_PARAMETERS = 0x85  # §3.8.2
    EXTENDED_SECURITY_PARAMETERS = 0xA5
    RETRY_POLICY = 0x86  # §3.8.3
    HTTP_POST_PARAMETERS = 0x89
    ADMIN_HOST = 0x8A  # §3.8.4
    AGENT_ID = 0x8B  # §3.8.5
    ADMIN_URI = 0x8C  # §3.8.6
    DNS_RESOLUTION_PARAMETERS = 0xB3
    RAS_FQDN = 0xD6  # §3.11.4
    DNS_CONNECTION_PARAMETERS = 0xFA  # §3.11.7


# -- BER-TLV framing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BerTlv:
    """A BER-TLV kept as received because its container does not declare its tag. `tag` holds
    all tag bytes as one number (multi-byte tags per ISO/IEC 8825-1 §8.1.2.4)."""

    tag: int
    value: bytes

    def encode(self) -> bytes:
        return _tag_bytes(self.tag) + encode_length(len(self.value)) + self.value


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def _tlv(tag: int, value: bytes) -> bytes:
    return _tag_bytes(tag) + encode_length(len(value)) + value


def _pull_tlvs(data: bytes) -> list[tuple[int, bytes, int]]:
    """Splits `data` into (tag, value, offset) triples; short or trailing bytes raise."""
    out: list[tuple[int, bytes, int]] = []
    i = 0
    while i < len(data):
        start = i
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # subsequent tag bytes follow while b8 is set
            while True:
                if i >= len(data):
                    raise DecodeError("BER-TLV tag truncated", data, start)
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
                if i - start > 3:
                    raise DecodeError("BER-TLV tag longer than 3 bytes", data, start)
        length, i = pull_length(data, i)
        if i + length > len(data):
            raise DecodeError(f"value of tag {tag:02X} runs past the end", data, i)
        out.append((tag, data[i : i + length], start))
        i += length
    return out


@dataclass(frozen=True, slots=True)
class _Field:
    """One declared child of a container: tag, dataclass field, value decoder and encoder."""

    tag: int
    name: str
    decode: Callable[[bytes], Any]
    encode: Callable[[Any], bytes]


def _decode_fields(
    fields: tuple[_Field, ...], value: bytes
) -> tuple[dict[str, Any], tuple[BerTlv, ...]]:
    by_tag = {f.tag: f for f in fields}
    values: dict[str, Any] = {}
    extra: list[BerTlv] = []
    for tag, inner, offset in _pull_tlvs(value):
        declared = by_tag.get(tag)
        if declared is None:
            extra.append(BerTlv(tag, inner))
            continue
        if declared.name in values:
            raise DecodeError(f"tag {tag:02X} repeated", value, offset)
        values[declared.name] = declared.decode(inner)
    for declared in fields:
        values.setdefault(declared.name, None)
    return values, tuple(extra)


def _encode_fields(fields: tuple[_Field, ...], obj: object, extra: tuple[BerTlv, ...]) -> bytes:
    parts = [
        _tlv(f.tag, f.encode(got)) for f in fields if (got := getattr(obj, f.name)) is not None
    ]
    parts.extend(t.encode() for t in extra)
    return b"".join(parts)


class _Container:
    """A constructed TLV declared as `FIELDS`; undeclared children are kept in `extra`."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[_Field, ...]]
    extra: tuple[BerTlv, ...]

    if TYPE_CHECKING:  # the dataclass subclasses make the real one

        def __init__(self, **fields: Any) -> None: ...

    def value(self) -> bytes:
        return _encode_fields(self.FIELDS, self, self.extra)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        values, extra = _decode_fields(cls.FIELDS, value)
        return cls(extra=extra, **values)


def _utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8: {exc.reason}", value, exc.start) from exc


def _raw(value: bytes) -> bytes:
    return value


def _value(obj: Any) -> bytes:
    encoded: bytes = obj.value()
    return encoded


# -- 84 / FA connection parameters ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionParameters:
    """84 (§3.8.1) and FA (§3.11.7): the OPEN CHANNEL data objects the card uses to reach the
    admin server, in that command's order (TS 102 223 §6.6.27; a 3E before the transport level
    is the local address, after it the destination). `cr` lists the tags sent with the CR bit
    set; the default (none) follows pySim's builder and our digest's example."""

    SLOTS: ClassVar[tuple[Slot, ...]] = (
        Slot("bearer", BearerDescription),  # 35, §8.52
        Slot("buffer_size", BufferSize),  # 39, §8.55
        Slot("network_access_name", NetworkAccessName),  # 47, §8.61
        Slot("local_address", OtherAddress),  # 3E, §8.58
        Slot("login", TextString),  # 0D, §8.15
        Slot("password", TextString),  # 0D, §8.15
        Slot("transport", TransportLevel),  # 3C, §8.59
        Slot("destination", OtherAddress),  # 3E, §8.58
    )
    bearer: BearerDescription | None = None
    buffer_size: BufferSize | None = None
    network_access_name: NetworkAccessName | None = None
    local_address: OtherAddress | None = None
    login: TextString | None = None
    password: TextString | None = None
    transport: TransportLevel | None = None
    destination: OtherAddress | None = None
    extra: tuple[ComprehensionTlv, ...] = ()
    cr: frozenset[int] = frozenset()

    def value(self) -> bytes:
        tags = frozenset(slot.kind.TAG for slot in self.SLOTS)
        return encode_objects(self.SLOTS, self, self.extra, tags - self.cr)

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        values, extra, cr_clear = decode_objects(cls.SLOTS, value, strict=False)
        present = frozenset(s.kind.TAG for s in cls.SLOTS if values[s.field] is not None)
        return cls(extra=extra, cr=present - cr_clear, **values)

    @classmethod
    def tcp_client(
        cls,
        address: bytes,
        port: int,
        *,
        buffer_size: int = 1500,
        bearer: BearerDescription | None = None,
    ) -> Self:
        """Default bearer, TCP in UICC client mode to `address` (4 bytes IPv4, 16 IPv6)."""
        kind = AddressType.IPV4 if len(address) == 4 else AddressType.IPV6
        return cls(
            bearer=bearer or BearerDescription(BearerType.DEFAULT),
            buffer_size=BufferSize(buffer_size),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, port),
            destination=OtherAddress(kind, address),
        )


# -- 85 security parameters, 86 retry policy -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityParameters:
    """85 (§3.8.2): the PSK identity for the TLS ClientHello and the reference of the PSK in
    the security domain. Key reference order after the `02` length byte follows pySim (key
    version, then key identifier) [UNCONFIRMED against Amd B §3.8.2]."""

    psk_identity: bytes
    key_version: int
    key_id: int
    hash_type: int | None = None
    """Optional trailing byte (pySim `sha_type`)."""

    def value(self) -> bytes:
        tail = b"" if self.hash_type is None else bytes((self.hash_type,))
        return (
            bytes((len(self.psk_identity),))
            + self.psk_identity
            + bytes((2, self.key_version, self.key_id))
            + tail
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if not value:
            raise DecodeError("security parameters empty", value, 0)
        n = value[0]
        refs = 1 + n
        if len(value) < refs + 3:
            raise DecodeError("security parameters truncated", value, len(value))
        if value[refs] != 2:
            raise DecodeError(f"key reference length {value[refs]}, expected 2", value, refs)
        tail = value[refs + 3 :]
        if len(tail) > 1:
            raise DecodeError("bytes after the hash type", value, refs + 4)
        return cls(
            psk_identity=value[1:refs],
            key_version=value[refs + 1],
            key_id=value[refs + 2],
            hash_type=tail[0] if tail else None,
        )


TIMER_VALUE_TAG = 0x25
"""TS 102 223 §8.38 timer value; the 86 waiting delay looks like one [UNCONFIRMED]."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """86 (§3.8.3): how often and how long apart the card retries a failed session."""

    counter: int
    waiting_delay: bytes
    """5 bytes as received. Probably a CAT timer value `25 03 hh mm ss` [UNCONFIRMED]: see
    `delay_seconds` and `with_delay`."""
    report_failure: bytes = b""
    """Optional retry-report-failure data: whatever follows the delay."""

    def __post_init__(self) -> None:
        if len(self.waiting_delay) != 5:
            raise ValueError("the retry waiting delay is 5 bytes")

    def value(self) -> bytes:
        return self.counter.to_bytes(2, "big") + self.waiting_delay + self.report_failure

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        if len(value) < 7:
            raise DecodeError("retry policy needs 7 bytes", value, len(value))
        return cls(
            counter=int.from_bytes(value[0:2], "big"),
            waiting_delay=value[2:7],
            report_failure=value[7:],
        )

    @classmethod
    def with_delay(cls, counter: int, seconds: int, report_failure: bytes = b"") -> Self:
        hours, rest = divmod(seconds, 3600)
        if hours > 99:
            raise ValueError("a timer value holds at most 99 hours")
        digits = (hours, rest // 60, rest % 60)
        timer = bytes((TIMER_VALUE_TAG, 3)) + bytes(((d % 10) << 4) | (d // 10) for d in digits)
        return cls(counter=counter, waiting_delay=timer, report_failure=report_failure)

    @property
    def delay_seconds(self) -> int | None:
        """The delay read as a timer value (semi-octets swapped, as TP-SCTS); None otherwise."""
        d = self.waiting_delay
        if d[0] & 0x7F != TIMER_VALUE_TAG or d[1] != 3:
            return None
        digits: list[int] = []
        for byte in d[2:5]:
            low, high = byte & 0x0F, byte >> 4
            if low > 9 or high > 9:
                return None
            digits.append(low * 10 + high)
        return digits[0] * 3600 + digits[1] * 60 + digits[2]


# -- 89 HTTP POST parameters ---------------------------------------------------------------------


def _text(tag: TriggerTag, name: str) -> _Field:
    return _Field(tag, name, _utf8, lambda s: s.encode("utf-8"))


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPostParameters(_Container):
    """89: what the agent puts in its first POST."""

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _text(TriggerTag.ADMIN_HOST, "host"),
        _text(TriggerTag.AGENT_ID, "agent_id"),
        _text(TriggerTag.ADMIN_URI, "uri"),
    )
    host: str | None = None
    agent_id: str | None = None
    uri: str | None = None
    extra: tuple[BerTlv, ...] = ()


# -- 83 session, B3 DNS, 81 trigger --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionParameters(_Container):
    """83: every child optional; the security domain's defaults fill the gaps."""

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field(
            TriggerTag.CONNECTION_PARAMETERS,
            "connection",
            ConnectionParameters.from_value,
            _value,
        ),
        _Field(TriggerTag.SECURITY_PARAMETERS, "security", SecurityParameters.from_value, _value),
        _Field(TriggerTag.EXTENDED_SECURITY_PARAMETERS, "extended_security", _raw, _raw),
        _Field(TriggerTag.RETRY_POLICY, "retry", RetryPolicy.from_value, _value),
        _Field(TriggerTag.HTTP_POST_PARAMETERS, "http_post", HttpPostParameters.from_value, _value),
    )
    connection: ConnectionParameters | None = None
    security: SecurityParameters | None = None
    extended_security: bytes | None = None
    retry: RetryPolicy | None = None
    http_post: HttpPostParameters | None = None
    extra: tuple[BerTlv, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsResolutionParameters(_Container):
    """B3 (§3.11): resolve the admin server's name before connecting."""

    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field(TriggerTag.RAS_FQDN, "ras_fqdn", _raw, _raw),
        _Field(
            TriggerTag.DNS_CONNECTION_PARAMETERS,
            "connection",
            ConnectionParameters.from_value,
            _value,
        ),
    )
    ras_fqdn: bytes | None = None
    """Kept as bytes: its string coding (§3.11.4) is not confirmed [UNCONFIRMED]."""
    connection: ConnectionParameters | None = None
    extra: tuple[BerTlv, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerParameters(_Container):
    """81: the whole trigger. `encode` gives the bytes that go in the secured data."""

    TAG: ClassVar[int] = TriggerTag.TRIGGERING_PARAMETERS
    FIELDS: ClassVar[tuple[_Field, ...]] = (
        _Field(TriggerTag.SESSION_PARAMETERS, "session", SessionParameters.from_value, _value),
        _Field(
            TriggerTag.DNS_RESOLUTION_PARAMETERS,
            "dns",
            DnsResolutionParameters.from_value,
            _value,
        ),
    )
    session: SessionParameters
    dns: DnsResolutionParameters | None = None
    extra: tuple[BerTlv, ...] = ()

    def encode(self) -> bytes:
        return _tlv(self.TAG, self.value())

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        values, extra = _decode_fields(cls.FIELDS, value)
        if values["session"] is None:
            raise DecodeError("triggering parameters without 83 session parameters", value, 0)
        return cls(extra=extra, **values)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Exactly one 81 TLV filling `data`."""
        tlvs = _pull_tlvs(data)
        if len(tlvs) != 1 or tlvs[0][0] != cls.TAG:
            raise DecodeError("expected exactly one 81 triggering-parameters TLV", data, 0)
        return cls.from_value(tlvs[0][1])
