"""Command APDUs (ISO 7816-4 §5.1, ETSI TS 102 221 §10.1).

A terminal using T=0 sends TPDUs, where a case-1 command carries P3 = 00 and a case-4 command
has no Le; pcscd passes either form through. So the case of a 5-byte command is settled by its
INS, as the card must do (TS 102 221 §10.1.2 lists each command's case)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from openscws.apdu.status import SW
from openscws.errors import ApduError


class Ins(IntEnum):
    """Instructions a UICC handles here (TS 102 221 §10.1.2)."""

    SELECT = 0xA4
    STATUS = 0xF2
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    TERMINAL_PROFILE = 0x10
    FETCH = 0x12
    TERMINAL_RESPONSE = 0x14
    ENVELOPE = 0xC2
    AUTHENTICATE = 0x88  # TS 31.102 §7.1.2 (the USIM's)
    UPDATE_BINARY = 0xD6
    MANAGE_CHANNEL = 0x70  # ISO/IEC 7816-4 §11.1.2, TS 102 221 §11.1.17
    GET_DATA = 0xCA  # ISO/IEC 7816-4 §11.4.3 (the ARA-M's, GPD_SPE_013 §4.1)


# INS whose 5-byte form is header + Le (case 2). Every other 5-byte command is case 1 with P3 = 00
# or, when P3 > 0, the start of a case 3/4 command.
_CASE2 = frozenset(
    {
        Ins.STATUS,
        Ins.READ_BINARY,
        Ins.READ_RECORD,
        Ins.GET_RESPONSE,
        Ins.FETCH,
        Ins.GET_DATA,
    }
)


@dataclass(frozen=True, slots=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    """Expected response length; 256 when coded 00, None when absent."""

    def encode(self) -> bytes:
        out = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.data:
            out += bytes((len(self.data),)) + self.data
        if self.le is not None:
            out += bytes((self.le & 0xFF,))
        elif not self.data:
            out += b"\x00"
        return out

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        n = len(raw)
        if n < 4:
            raise ApduError(SW.WRONG_LENGTH, f"APDU of {n} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        p3 = raw[4]
        if n == 5:
            if ins in _CASE2:
                return cls(cla, ins, p1, p2, le=p3 or 256)
            if ins == Ins.MANAGE_CHANNEL and p1 == 0 and p3:
                return cls(cla, ins, p1, p2, le=p3)  # open, case 2: Le 01 (ISO/IEC 7816-4)
            if p3 == 0:
                return cls(cla, ins, p1, p2)
            raise ApduError(SW.WRONG_LENGTH, f"Lc {p3} announced but no data follows")
        if p3 == 0:
            raise ApduError(SW.WRONG_LENGTH, "extended-length APDUs are not supported")
        if n == 5 + p3:
            return cls(cla, ins, p1, p2, raw[5:])
        if n == 6 + p3:
            return cls(cla, ins, p1, p2, raw[5 : 5 + p3], le=raw[-1] or 256)
        raise ApduError(SW.WRONG_LENGTH, f"Lc {p3} does not match {n - 5} bytes after the header")


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int

    def encode(self) -> bytes:
        return self.data + bytes((self.sw >> 8, self.sw & 0xFF))

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduError(SW.WRONG_LENGTH, "response APDU shorter than its status word")
        return cls(raw[:-2], (raw[-2] << 8) | raw[-1])

    @property
    def sw1(self) -> int:
        return self.sw >> 8
