"""The SMS bearer of a secured packet: the SMS-DELIVER TPDU (3GPP TS 23.040 §9.2.2.1) with its
user data header (§9.2.3.24), and the SMS-PP data download ENVELOPE that carries it to the card
(ETSI TS 102 223 §7.1, 3GPP TS 31.111 §7.1.1).

    first octet  b1..b0 TP-MTI 00 (SMS-DELIVER), b3 TP-MMS (1 = no more messages), b4 TP-LP,
                 b5 spare, b6 TP-SRI, b7 TP-UDHI, b8 TP-RP        (bits counted b1 = LSB)
    TP-OA        digit count, TON/NPI, semi-octets (§9.1.2.5)
    TP-PID       7F (U)SIM data download (§9.2.3.9)
    TP-DCS       F6 or 16: 8-bit data, class 2 (TS 23.038 §4)
    TP-SCTS      7 semi-octet pairs (§9.2.3.11)
    TP-UDL       octets of TP-UD when the DCS is 8-bit
    TP-UD        UDHL, information elements, then the command packet

A command packet travels behind the IE 70 (command packet identifier, length 0); a response
packet behind 71 (TS 31.115). Only single messages: a packet that does not fit 140 octets of
user data is refused, since concatenated OTA SMS (IE 00 / 08 plus 70) and which headers their
RC/CC covers are not implemented [out of scope]."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import ClassVar, Self

from openscws.cat.envelopes import SmsPpDownload
from openscws.cat.objects import Address, SmsTpdu
from openscws.errors import DecodeError
from openscws.ota.packet import RESPONSE_UDH, CommandPacket, ResponsePacket

MAX_USER_DATA = 140
"""TP-UD octets in one SMS (TS 23.040 §9.2.3.16)."""

PID_SIM_DATA_DOWNLOAD = 0x7F
"""TP-PID (U)SIM data download (TS 23.040 §9.2.3.9)."""
DCS_DATA_CLASS2 = 0xF6
"""TP-DCS coding group 1111: 8-bit data, class 2 (TS 23.038 §4). pySim, SIMTester and a
captured card session use it."""
DCS_DATA_CLASS2_GENERAL = 0x16
"""The same meaning in the general data coding group (00x1 01 10); accepted as well."""


class Iei(IntEnum):
    """Information element identifiers used here (TS 23.040 §9.2.3.24; 70/71 from TS 31.115)."""

    CONCATENATED_8BIT = 0x00
    CONCATENATED_16BIT = 0x08
    COMMAND_PACKET = 0x70
    RESPONSE_PACKET = 0x71


@dataclass(frozen=True, slots=True)
class InformationElement:
    iei: int
    data: bytes = b""

    def encode(self) -> bytes:
        return bytes((self.iei, len(self.data))) + self.data


@dataclass(frozen=True, slots=True)
class UserDataHeader:
    """§9.2.3.24: UDHL, then IEI, IEDL, IED for each element."""

    elements: tuple[InformationElement, ...]

    def encode(self) -> bytes:
        body = b"".join(e.encode() for e in self.elements)
        return bytes((len(body),)) + body

    def has(self, iei: int) -> bool:
        return any(e.iei == iei for e in self.elements)

    @classmethod
    def pull(cls, data: bytes) -> tuple[Self, bytes]:
        """Splits TP-UD into its header and the rest."""
        if not data:
            raise DecodeError("TP-UDHI set but the user data is empty", data, 0)
        end = 1 + data[0]
        if end > len(data):
            raise DecodeError(f"UDHL {data[0]} runs past the user data", data, 0)
        elements: list[InformationElement] = []
        i = 1
        while i < end:
            if i + 2 > end:
                raise DecodeError("information element truncated", data, i)
            stop = i + 2 + data[i + 1]
            if stop > end:
                raise DecodeError(f"IE {data[i]:02X} runs past the header", data, i)
            elements.append(InformationElement(data[i], data[i + 2 : stop]))
            i = stop
        return cls(tuple(elements)), data[end:]


COMMAND_HEADER = UserDataHeader((InformationElement(Iei.COMMAND_PACKET),))
RESPONSE_HEADER = UserDataHeader((InformationElement(Iei.RESPONSE_PACKET),))

_BCD = "0123456789*#abc"


@dataclass(frozen=True, slots=True)
class SmsAddress:
    """An address field (TS 23.040 §9.1.2.5): `length` counts useful semi-octets, `ton_npi` is
    the type-of-address octet, `packed` the semi-octets as sent (filler nibble included)."""

    ton_npi: int
    length: int
    packed: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.length <= 20 or len(self.packed) != (self.length + 1) // 2:
            raise ValueError(f"{len(self.packed)} bytes do not hold {self.length} semi-octets")

    def encode(self) -> bytes:
        return bytes((self.length, self.ton_npi)) + self.packed

    @classmethod
    def from_digits(cls, digits: str, ton_npi: int = 0x91) -> Self:
        """`ton_npi` 91 = international, ISDN/E.164; 81 = unknown, ISDN."""
        nibbles = [_BCD.index(c) for c in digits.lower()]
        if len(nibbles) % 2:
            nibbles.append(0x0F)
        packed = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
        return cls(ton_npi, len(digits), packed)

    @property
    def digits(self) -> str:
        """The semi-octets read as BCD digits (meaningless for alphanumeric addresses)."""
        out: list[int] = []
        for byte in self.packed:
            out.extend((byte & 0x0F, byte >> 4))
        return "".join(_BCD[n] if n < 15 else "?" for n in out[: self.length])

    @classmethod
    def pull(cls, data: bytes, offset: int) -> tuple[Self, int]:
        if offset + 2 > len(data):
            raise DecodeError("address field truncated", data, offset)
        length = data[offset]
        if length > 20:
            raise DecodeError(f"address of {length} semi-octets (at most 20)", data, offset)
        end = offset + 2 + (length + 1) // 2
        if end > len(data):
            raise DecodeError("address digits truncated", data, offset)
        return cls(data[offset + 1], length, data[offset + 2 : end]), end


@dataclass(frozen=True, slots=True)
class ServiceCentreTimeStamp:
    """TP-SCTS (§9.2.3.11), kept as the 7 octets received: year, month, day, hour, minute,
    second, time zone, each as two swapped semi-octets; the zone counts quarter hours with
    its sign in b4 of the octet. Captured traffic carries stamps that are not valid dates, so
    decoding the date is left to `to_datetime`."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 7:
            raise ValueError("TP-SCTS is 7 octets")

    @classmethod
    def from_datetime(cls, when: datetime) -> Self:
        """`when` must carry its time zone; the stamp keeps its local time and offset."""
        offset = when.utcoffset()
        if offset is None:
            raise ValueError("TP-SCTS needs an aware datetime")
        quarters, rest = divmod(abs(int(offset.total_seconds())), 900)
        if rest or quarters > 79:
            raise ValueError(f"offset {offset} is not a whole number of quarter hours")
        fields = (when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
        octets = [_swap(v) for v in fields]
        octets.append(_swap(quarters) | (0x08 if offset < timedelta(0) else 0))
        return cls(bytes(octets))

    def to_datetime(self) -> datetime:
        """Years 00-99 are read as 2000-2099. Raises DecodeError for an invalid stamp."""
        masked = (*self.raw[:6], self.raw[6] & 0xF7)  # the zone's sign bit is not a digit
        values = [_unswap(b, self.raw, i) for i, b in enumerate(masked)]
        sign = -1 if self.raw[6] & 0x08 else 1
        try:
            zone = timezone(timedelta(minutes=15 * values[6] * sign))
            year, month, day, hour, minute, second = values[:6]
            return datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
        except ValueError as exc:
            raise DecodeError(f"TP-SCTS is no valid date: {exc}", self.raw, 0) from exc


def _swap(value: int) -> int:
    return ((value % 10) << 4) | (value // 10)


def _unswap(byte: int, data: bytes, offset: int) -> int:
    low, high = byte & 0x0F, byte >> 4
    if low > 9 or high > 9:
        raise DecodeError(f"TP-SCTS octet {byte:02X} is not BCD", data, offset)
    return low * 10 + high


def _octet_coded(dcs: int) -> bool:
    """True when TP-UDL counts octets (8-bit data, UCS2 or compressed; TS 23.038 §4)."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding (and automatic deletion) groups
        return bool(dcs & 0x20) or (dcs >> 2) & 0x03 in (1, 2)
    if group == 0xF:  # data coding / message class
        return bool(dcs & 0x04)
    return group == 0xE  # message waiting, UCS2; C, D and reserved 8..B are 7-bit


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsDeliver:
    """An SMS-DELIVER TPDU (TS 23.040 §9.2.2.1) with octet-coded user data. `header` present
    means TP-UDHI is set; `user_data` is what follows the header."""

    MTI: ClassVar[int] = 0x00

    originating: SmsAddress
    scts: ServiceCentreTimeStamp
    user_data: bytes
    header: UserDataHeader | None = None
    pid: int = PID_SIM_DATA_DOWNLOAD
    dcs: int = DCS_DATA_CLASS2
    more_messages: bool = False
    """TP-MMS: True when the SC holds more messages (bit clear)."""
    loop_prevention: bool = False
    status_report: bool = False
    reply_path: bool = False
    spare: bool = False
    """First-octet b5, unused in SMS-DELIVER; kept so decoding loses nothing."""

    def _ud(self) -> bytes:
        head = b"" if self.header is None else self.header.encode()
        return head + self.user_data

    def encode(self) -> bytes:
        if not _octet_coded(self.dcs):
            raise ValueError(f"DCS {self.dcs:02X} is not octet-coded")
        ud = self._ud()
        if len(ud) > MAX_USER_DATA:
            raise ValueError(f"{len(ud)} octets of user data; one SMS holds {MAX_USER_DATA}")
        first = (
            self.MTI
            | (0 if self.more_messages else 0x04)
            | (0x08 if self.loop_prevention else 0)
            | (0x10 if self.spare else 0)
            | (0x20 if self.status_report else 0)
            | (0x40 if self.header is not None else 0)
            | (0x80 if self.reply_path else 0)
        )
        return (
            bytes((first,))
            + self.originating.encode()
            + bytes((self.pid, self.dcs))
            + self.scts.raw
            + bytes((len(ud),))
            + ud
        )

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if not data:
            raise DecodeError("empty TPDU", data, 0)
        first = data[0]
        if first & 0x03 != cls.MTI:
            raise DecodeError(f"TP-MTI {first & 0x03} is not SMS-DELIVER", data, 0)
        originating, i = SmsAddress.pull(data, 1)
        if i + 10 > len(data):
            raise DecodeError("TPDU truncated before TP-UD", data, i)
        pid, dcs = data[i], data[i + 1]
        if not _octet_coded(dcs):
            raise DecodeError(f"DCS {dcs:02X}: septet-coded user data not supported", data, i + 1)
        scts = ServiceCentreTimeStamp(data[i + 2 : i + 9])
        udl = data[i + 9]
        ud = data[i + 10 :]
        if udl > MAX_USER_DATA or udl != len(ud):
            raise DecodeError(f"TP-UDL {udl} but {len(ud)} octets of user data", data, i + 9)
        header = None
        if first & 0x40:
            header, ud = UserDataHeader.pull(ud)
        return cls(
            originating=originating,
            scts=scts,
            user_data=ud,
            header=header,
            pid=pid,
            dcs=dcs,
            more_messages=not first & 0x04,
            loop_prevention=bool(first & 0x08),
            spare=bool(first & 0x10),
            status_report=bool(first & 0x20),
            reply_path=bool(first & 0x80),
        )


def command_sms(
    packet: CommandPacket,
    *,
    originating: SmsAddress,
    scts: ServiceCentreTimeStamp,
    dcs: int = DCS_DATA_CLASS2,
) -> SmsDeliver:
    """Command packet → SMS-DELIVER (single message, UDH `02 70 00`, TP-PID 7F)."""
    return SmsDeliver(
        originating=originating,
        scts=scts,
        header=COMMAND_HEADER,
        user_data=packet.encode(),
        dcs=dcs,
    )


def command_envelope(
    packet: CommandPacket,
    *,
    originating: SmsAddress,
    scts: ServiceCentreTimeStamp,
    service_centre: Address | None = None,
    dcs: int = DCS_DATA_CLASS2,
) -> bytes:
    """Command packet → SMS-DELIVER → the SMS-PP data download ENVELOPE data (the D1 BER-TLV
    that follows `80 C2 00 00 Lc`), built by `cat.envelopes.SmsPpDownload`."""
    sms = command_sms(packet, originating=originating, scts=scts, dcs=dcs)
    return SmsPpDownload(tpdu=SmsTpdu(sms.encode()), address=service_centre).encode()


def command_packet_of(sms: SmsDeliver) -> CommandPacket:
    """The command packet an SMS-DELIVER carries: TP-PID 7F, class-2 data, header with IE 70
    and no concatenation IE. Anything else raises DecodeError."""
    if sms.pid != PID_SIM_DATA_DOWNLOAD:
        raise DecodeError(f"TP-PID {sms.pid:02X} is not (U)SIM data download", b"", 0)
    if sms.header is None or not sms.header.has(Iei.COMMAND_PACKET):
        raise DecodeError("no command packet identifier (IE 70) in the header", b"", 0)
    if sms.header.has(Iei.CONCATENATED_8BIT) or sms.header.has(Iei.CONCATENATED_16BIT):
        raise DecodeError("concatenated command packets are not supported", b"", 0)
    return CommandPacket.decode(sms.user_data)


def response_user_data(packet: ResponsePacket) -> bytes:
    """The PoR as user data: `02 71 00` and the response packet, ready for the
    SMS-DELIVER-REPORT or an SMS-SUBMIT (TS 31.115)."""
    ud = RESPONSE_UDH + packet.encode()
    if len(ud) > MAX_USER_DATA:
        raise ValueError(f"{len(ud)} octets of PoR; one SMS holds {MAX_USER_DATA}")
    return ud


def response_packet_of(user_data: bytes) -> tuple[bytes, ResponsePacket]:
    """Splits PoR user data into the header bytes as received (the RC/CC covers them: pass
    them to `open_response` as `udh`) and the response packet behind IE 71."""
    header, rest = UserDataHeader.pull(user_data)
    if not header.has(Iei.RESPONSE_PACKET):
        raise DecodeError("no response packet identifier (IE 71) in the header", user_data, 0)
    return user_data[: len(user_data) - len(rest)], ResponsePacket.decode(rest)
