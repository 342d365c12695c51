"""The primitives under the secured packets, checked against published vectors and against an
independent computation (block-by-block ECB chaining instead of the CBC mode the module uses)."""

from __future__ import annotations

import zlib

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openscws.ota import _crypto
from openscws.ota.spi import CcAlgorithm, CipherAlgorithm, RcAlgorithm

h = bytes.fromhex

# RFC 4493 §4 (= NIST SP 800-38B Appendix D.1), AES-128 CMAC, key 2b7e1516...
CMAC_KEY = h("2b7e151628aed2a6abf7158809cf4f3c")
CMAC_MESSAGE = h(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
CMAC_VECTORS = [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
]


@pytest.mark.parametrize(("length", "tag"), CMAC_VECTORS)
def test_aes_cmac_rfc4493(length: int, tag: str) -> None:
    message = CMAC_MESSAGE[:length]
    full = _crypto.cryptographic_checksum(CcAlgorithm.AES_CMAC, CMAC_KEY, message, 16)
    assert full == h(tag)
    # The CC keeps the leftmost bytes (SP 800-38B §6.2 truncation).
    assert _crypto.cryptographic_checksum(CcAlgorithm.AES_CMAC, CMAC_KEY, message, 8) == h(tag)[:8]


def _ecb_chain(cipher: Cipher[modes.ECB], data: bytes, size: int) -> bytes:
    """CBC with a zero IV, computed one block at a time over ECB."""
    enc = cipher.encryptor()
    previous = bytes(size)
    out = b""
    for i in range(0, len(data), size):
        block = bytes(a ^ b for a, b in zip(data[i : i + size], previous, strict=True))
        previous = enc.update(block)
        out += previous
    return out


KEY_24 = h("0956F342366C6C92F32D5392ECB1CBD5C051DB484843F0EB")


@pytest.mark.parametrize(
    ("algorithm", "key", "expanded"),
    [
        (CcAlgorithm.DES_CBC, KEY_24[:8], KEY_24[:8] * 3),
        (CcAlgorithm.TDES_2KEY, KEY_24[:16], KEY_24[:16] + KEY_24[:8]),
        (CcAlgorithm.TDES_3KEY, KEY_24, KEY_24),
    ],
)
@pytest.mark.parametrize("length", [1, 7, 8, 9, 23])
def test_des_cbc_mac_is_last_block_of_zero_padded_cbc(
    algorithm: CcAlgorithm, key: bytes, expanded: bytes, length: int
) -> None:
    data = bytes(range(1, length + 1))
    padded = data + bytes(-len(data) % 8)
    ecb = Cipher(TripleDES(expanded), modes.ECB())
    expected = _ecb_chain(ecb, padded, 8)[-8:]
    assert _crypto.cryptographic_checksum(algorithm, key, data, 8) == expected


@pytest.mark.parametrize(
    ("algorithm", "key", "make"),
    [
        (CipherAlgorithm.TDES_2KEY, KEY_24[:16], lambda k: TripleDES(k + k[:8])),
        (CipherAlgorithm.AES_CBC, KEY_24[:16], algorithms.AES),
        (CipherAlgorithm.AES_CBC, KEY_24, algorithms.AES),
    ],
)
def test_cbc_ciphering_uses_a_zero_iv(algorithm: CipherAlgorithm, key: bytes, make: object) -> None:
    size = _crypto.block_size(algorithm)
    data = bytes(range(size * 3))
    ecb = Cipher(make(key), modes.ECB())  # type: ignore[operator]
    assert _crypto.encrypt(algorithm, key, data) == _ecb_chain(ecb, data, size)
    assert _crypto.decrypt(algorithm, key, _crypto.encrypt(algorithm, key, data)) == data


def test_crc32() -> None:
    # reveng CRC catalogue, CRC-32/ISO-HDLC check value
    assert _crypto.crc32(b"123456789") == h("CBF43926")
    # asterix SecurePacket.py TestCRC.test_CRC32
    assert _crypto.crc32(h("0102030405")) == h("470B99F4")
    assert _crypto.crc32(b"xyz") == zlib.crc32(b"xyz").to_bytes(4, "big")
    assert _crypto.redundancy_check(RcAlgorithm.CRC32, b"") == h("00000000")


def test_crc16() -> None:
    # reveng CRC catalogue, CRC-16/IBM-SDLC (ISO/IEC 13239, X.25) check value
    assert _crypto.crc16(b"123456789") == h("906E")
    assert _crypto.redundancy_check(RcAlgorithm.CRC16, b"123456789") == h("906E")
    assert _crypto.rc_length(RcAlgorithm.CRC16) == 2
    assert _crypto.rc_length(RcAlgorithm.CRC32) == 4


@pytest.mark.parametrize(
    ("algorithm", "good", "bad"),
    [
        (CipherAlgorithm.DES_CBC, 8, 16),
        (CipherAlgorithm.TDES_2KEY, 16, 24),
        (CipherAlgorithm.TDES_3KEY, 24, 16),
        (CipherAlgorithm.AES_CBC, 32, 8),
        (CcAlgorithm.AES_CMAC, 24, 20),
    ],
)
def test_key_lengths(algorithm: CipherAlgorithm | CcAlgorithm, good: int, bad: int) -> None:
    assert _crypto.key_fits(algorithm, bytes(good))
    assert not _crypto.key_fits(algorithm, bytes(bad))
