"""SPI and KIc / KID coding (TS 102 225 §5.1.1 - §5.1.3)."""

from __future__ import annotations

import pytest

from openscws.errors import DecodeError
from openscws.ota.spi import (
    CcAlgorithm,
    CipherAlgorithm,
    CounterMode,
    Integrity,
    KeyRef,
    PorRequest,
    RcAlgorithm,
    Spi,
)

# SPI values from pySim tests/unittests/test_ota.py and asterix SecurePacket.py tests.
SPI_VECTORS = [
    # pySim SPI_CC_POR_CIPHERED_CC
    (
        "0619",
        Spi(
            integrity=Integrity.CC,
            ciphering=True,
            por=PorRequest.ALWAYS,
            por_integrity=Integrity.CC,
            por_ciphering=True,
        ),
    ),
    # pySim SPI_CC_POR_UNCIPHERED_NOCC
    ("0601", Spi(integrity=Integrity.CC, ciphering=True, por=PorRequest.ALWAYS)),
    # asterix test_SPI1201: CC, counter must be higher, PoR required
    (
        "1201",
        Spi(integrity=Integrity.CC, counter=CounterMode.HIGHER, por=PorRequest.ALWAYS),
    ),
    # asterix test_SPI0E00: CC, ciphering, counter without replay check
    ("0E00", Spi(integrity=Integrity.CC, ciphering=True, counter=CounterMode.NO_CHECK)),
    # asterix test_SPI1531 (captured card session): RC, ciphering, counter higher;
    # PoR required with RC, ciphered, via SMS-SUBMIT
    (
        "1535",
        Spi(
            integrity=Integrity.RC,
            ciphering=True,
            counter=CounterMode.HIGHER,
            por=PorRequest.ALWAYS,
            por_integrity=Integrity.RC,
            por_ciphering=True,
            por_via_submit=True,
        ),
    ),
    # counter exactly one higher, PoR on error only, DS (our own)
    (
        "1B02",
        Spi(integrity=Integrity.DS, counter=CounterMode.ONE_HIGHER, por=PorRequest.ON_ERROR),
    ),
]


@pytest.mark.parametrize(("hexa", "spi"), SPI_VECTORS)
def test_spi_vectors(hexa: str, spi: Spi) -> None:
    assert Spi.decode(bytes.fromhex(hexa)) == spi
    assert spi.encode() == bytes.fromhex(hexa)


def test_every_spi_round_trips() -> None:
    for value in range(0x10000):
        raw = value.to_bytes(2, "big")
        assert Spi.decode(raw).encode() == raw


def test_reserved_bits_are_kept() -> None:
    spi = Spi.decode(bytes.fromhex("E0C0"))
    assert spi.reserved == 0xE0C0
    assert spi == Spi(reserved=0xE0C0)
    with pytest.raises(ValueError, match="reserved"):
        Spi(reserved=0x0001)


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x00\x00"])
def test_spi_length(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        Spi.decode(raw)


def test_key_refs() -> None:
    # pySim: KIc/KID 0x35 = key 3, triple DES two keys; 0x22 = key 2, AES
    assert KeyRef.from_byte(0x35) == KeyRef(3, CipherAlgorithm.TDES_2KEY)
    assert KeyRef.from_byte(0x35).cc is CcAlgorithm.TDES_2KEY
    assert KeyRef.from_byte(0x22).cipher is CipherAlgorithm.AES_CBC
    assert KeyRef.from_byte(0x22).cc is CcAlgorithm.AES_CMAC
    # asterix 0x39: key 3, triple DES three keys
    assert KeyRef.from_byte(0x39).cipher is CipherAlgorithm.TDES_3KEY
    # asterix 0x15 under RC: key 1, CRC32
    assert KeyRef.from_byte(0x15).rc is RcAlgorithm.CRC32
    assert KeyRef.from_byte(0x11).rc is RcAlgorithm.CRC16
    assert KeyRef.from_byte(0x1D).cipher is CipherAlgorithm.DES_ECB
    assert KeyRef.from_byte(0x1D).cc is None  # reserved under §5.1.3.1
    assert KeyRef.from_byte(0x13).cipher is None  # proprietary
    for value in range(256):
        assert KeyRef.from_byte(value).encode() == bytes((value,))
    with pytest.raises(ValueError, match="nibbles"):
        KeyRef(16, 0)
