"""Security parameters of a secured packet: the two SPI bytes (ETSI TS 102 225 §5.1.1; byte 2 b6
from 3GPP TS 31.115) and the KIc / KID bytes (TS 102 225 §5.1.2, §5.1.3.1, §5.1.3.2).

Bit numbering follows the specs: b1 is the least significant bit. Bits the specs reserve are
kept, so every SPI decodes and re-encodes byte for byte. Cross-checked against pySim
`pySim/ota.py` (SPI, KIC, KID_CC, KID_RC), pycrate `pycrate_mobile/TS102225.py` and asterix
`SecurePacket.py`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from openscws.errors import DecodeError


class Integrity(IntEnum):
    """SPI byte 1 b2..b1 (command) and byte 2 b4..b3 (PoR), §5.1.1. Ordered by strength, which
    the minimum security level check relies on."""

    NONE = 0
    RC = 1  # redundancy check
    CC = 2  # cryptographic checksum
    DS = 3  # digital signature


class CounterMode(IntEnum):
    """SPI byte 1 b5..b4, §5.1.1. Ordered by strictness."""

    NONE = 0  # no counter available
    NO_CHECK = 1  # counter available, no replay or sequence checking
    HIGHER = 2  # process only if CNTR is higher than the value in the receiving entity
    ONE_HIGHER = 3  # process only if CNTR is exactly one higher than that value


class PorRequest(IntEnum):
    """SPI byte 2 b2..b1, §5.1.1."""

    NONE = 0  # no PoR
    ALWAYS = 1  # PoR required
    ON_ERROR = 2  # PoR only when an error occurred
    RESERVED = 3


_SPI1_RESERVED = 0xE0  # byte 1 b8..b6
_SPI2_RESERVED = 0xC0  # byte 2 b8..b7


@dataclass(frozen=True, slots=True, kw_only=True)
class Spi:
    """The security parameter indicator (2 bytes, §5.1.1)."""

    LENGTH: ClassVar[int] = 2

    integrity: Integrity = Integrity.NONE
    """Byte 1 b2..b1: RC, CC or DS over the command packet."""
    ciphering: bool = False
    """Byte 1 b3: CNTR to the end of the secured data is enciphered with KIc."""
    counter: CounterMode = CounterMode.NONE
    """Byte 1 b5..b4."""
    por: PorRequest = PorRequest.NONE
    """Byte 2 b2..b1."""
    por_integrity: Integrity = Integrity.NONE
    """Byte 2 b4..b3: RC, CC or DS over the response packet."""
    por_ciphering: bool = False
    """Byte 2 b5: the response packet is enciphered."""
    por_via_submit: bool = False
    """Byte 2 b6 (TS 31.115): PoR in an SMS-SUBMIT; clear = in the SMS-DELIVER-REPORT."""
    reserved: int = 0
    """The reserved bits as received: byte 1 b8..b6 in the high byte, byte 2 b8..b7 in the
    low byte (mask E0C0). Senders keep them 0."""

    def __post_init__(self) -> None:
        if self.reserved & ~((_SPI1_RESERVED << 8) | _SPI2_RESERVED):
            raise ValueError(f"reserved SPI bits {self.reserved:04X} outside mask E0C0")

    def encode(self) -> bytes:
        first = (
            (self.reserved >> 8)
            | (self.counter << 3)
            | (0x04 if self.ciphering else 0)
            | self.integrity
        )
        second = (
            (self.reserved & 0xFF)
            | (0x20 if self.por_via_submit else 0)
            | (0x10 if self.por_ciphering else 0)
            | (self.por_integrity << 2)
            | self.por
        )
        return bytes((first, second))

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if len(data) != cls.LENGTH:
            raise DecodeError(f"SPI needs 2 bytes, got {len(data)}", data, 0)
        first, second = data[0], data[1]
        return cls(
            integrity=Integrity(first & 0x03),
            ciphering=bool(first & 0x04),
            counter=CounterMode((first >> 3) & 0x03),
            por=PorRequest(second & 0x03),
            por_integrity=Integrity((second >> 2) & 0x03),
            por_ciphering=bool(second & 0x10),
            por_via_submit=bool(second & 0x20),
            reserved=((first & _SPI1_RESERVED) << 8) | (second & _SPI2_RESERVED),
        )


class CipherAlgorithm(IntEnum):
    """KIc b4..b1 (§5.1.2): b2..b1 the family (00 implicit, 01 DES, 10 AES, 11 proprietary),
    b4..b3 the variant."""

    IMPLICIT = 0x0  # known implicitly by both entities
    DES_CBC = 0x1  # single DES, CBC (before Release 8)
    TDES_2KEY = 0x5  # triple DES, outer CBC, two keys
    TDES_3KEY = 0x9  # triple DES, outer CBC, three keys
    DES_ECB = 0xD  # single DES, ECB (before Release 8)
    AES_CBC = 0x2


class CcAlgorithm(IntEnum):
    """KID b4..b1 when the SPI selects a cryptographic checksum (§5.1.3.1)."""

    IMPLICIT = 0x0
    DES_CBC = 0x1  # DES CBC-MAC (before Release 8)
    TDES_2KEY = 0x5  # triple DES outer-CBC MAC, two keys
    TDES_3KEY = 0x9  # triple DES outer-CBC MAC, three keys
    AES_CMAC = 0x2


class RcAlgorithm(IntEnum):
    """KID b4..b1 when the SPI selects a redundancy check (§5.1.3.2): b2..b1 = 01 CRC, b4..b3
    the width."""

    IMPLICIT = 0x0
    CRC16 = 0x1
    CRC32 = 0x5


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A KIc or KID byte: b8..b5 the key version (the index of the key in the receiving
    entity's key set; GP calls it the KVN), b4..b1 the algorithm. Which algorithm table the
    nibble belongs to depends on the SPI, so it is kept as a number with typed views."""

    key_version: int
    algorithm: int

    def __post_init__(self) -> None:
        if not (0 <= self.key_version <= 0x0F and 0 <= self.algorithm <= 0x0F):
            raise ValueError(f"KIc/KID nibbles out of range: {self.key_version}, {self.algorithm}")

    def encode(self) -> bytes:
        return bytes(((self.key_version << 4) | self.algorithm,))

    @classmethod
    def from_byte(cls, value: int) -> Self:
        return cls(value >> 4, value & 0x0F)

    @property
    def cipher(self) -> CipherAlgorithm | None:
        """This byte read as a KIc; None for a reserved or proprietary value."""
        return _lookup(CipherAlgorithm, self.algorithm)

    @property
    def cc(self) -> CcAlgorithm | None:
        """This byte read as a KID for a cryptographic checksum."""
        return _lookup(CcAlgorithm, self.algorithm)

    @property
    def rc(self) -> RcAlgorithm | None:
        """This byte read as a KID for a redundancy check."""
        return _lookup(RcAlgorithm, self.algorithm)


def _lookup[E: IntEnum](enum: type[E], value: int) -> E | None:
    try:
        return enum(value)
    except ValueError:
        return None
