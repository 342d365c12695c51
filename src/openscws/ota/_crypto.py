"""The primitives of TS 102 225 §5.1.2 / §5.1.3: CBC ciphering with a zero initial value, the
DES-family CBC-MAC (last block), AES CMAC, and the CRC16 / CRC32 redundancy checks (Annex B).

Callers check key lengths first (`key_fits`); these functions assume valid inputs. Single and
two-key DES keys are expanded to three-key form (K1K1K1, K1K2K1), which is the same cipher and
keeps `cryptography` from warning about short TripleDES keys."""

from __future__ import annotations

import zlib

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from openscws.ota.spi import CcAlgorithm, CipherAlgorithm, RcAlgorithm

_DES_KEY_LENGTHS = {
    CipherAlgorithm.DES_CBC: 8,
    CipherAlgorithm.TDES_2KEY: 16,
    CipherAlgorithm.TDES_3KEY: 24,
    CcAlgorithm.DES_CBC: 8,
    CcAlgorithm.TDES_2KEY: 16,
    CcAlgorithm.TDES_3KEY: 24,
}
_AES_KEY_LENGTHS = frozenset((16, 24, 32))

SUPPORTED_CIPHERS = frozenset(
    (
        CipherAlgorithm.DES_CBC,
        CipherAlgorithm.TDES_2KEY,
        CipherAlgorithm.TDES_3KEY,
        CipherAlgorithm.AES_CBC,
    )
)
SUPPORTED_CCS = frozenset(
    (CcAlgorithm.DES_CBC, CcAlgorithm.TDES_2KEY, CcAlgorithm.TDES_3KEY, CcAlgorithm.AES_CMAC)
)
SUPPORTED_RCS = frozenset((RcAlgorithm.CRC16, RcAlgorithm.CRC32))


def block_size(algorithm: CipherAlgorithm | CcAlgorithm) -> int:
    return 16 if algorithm in (CipherAlgorithm.AES_CBC, CcAlgorithm.AES_CMAC) else 8


def key_fits(algorithm: CipherAlgorithm | CcAlgorithm, key: bytes) -> bool:
    if algorithm in (CipherAlgorithm.AES_CBC, CcAlgorithm.AES_CMAC):
        return len(key) in _AES_KEY_LENGTHS
    return _DES_KEY_LENGTHS.get(algorithm) == len(key)


def _tdes(key: bytes) -> TripleDES:
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]
    return TripleDES(key)


def _cbc(algorithm: CipherAlgorithm | CcAlgorithm, key: bytes) -> Cipher[modes.CBC]:
    if algorithm in (CipherAlgorithm.AES_CBC, CcAlgorithm.AES_CMAC):
        return Cipher(algorithms.AES(key), modes.CBC(bytes(16)))
    return Cipher(_tdes(key), modes.CBC(bytes(8)))


def encrypt(algorithm: CipherAlgorithm, key: bytes, data: bytes) -> bytes:
    """CBC with a zero initial chaining value (§5.1.2); `data` is a whole number of blocks."""
    enc = _cbc(algorithm, key).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt(algorithm: CipherAlgorithm, key: bytes, data: bytes) -> bytes:
    dec = _cbc(algorithm, key).decryptor()
    return dec.update(data) + dec.finalize()


def cryptographic_checksum(algorithm: CcAlgorithm, key: bytes, data: bytes, length: int) -> bytes:
    """§5.1.3.1. DES family: CBC-MAC with a zero initial value over `data` zero-padded to a
    whole block; the CC is the last cipher block (8 bytes; the padding is not sent). AES: CMAC
    (NIST SP 800-38B, which pads internally), truncated to the leftmost `length` bytes."""
    if algorithm is CcAlgorithm.AES_CMAC:
        mac = CMAC(algorithms.AES(key))
        mac.update(data)
        return mac.finalize()[:length]
    padded = data + bytes(-len(data) % 8)
    enc = _cbc(algorithm, key).encryptor()
    return (enc.update(padded) + enc.finalize())[-8:][:length]


def crc16(data: bytes) -> bytes:
    """CRC-16 of ISO/IEC 13239 (polynomial 1021 reflected as 8408, initial FFFF, final XOR
    FFFF; the reveng catalogue's CRC-16/IBM-SDLC), sent big-endian as asterix does [byte order
    UNCONFIRMED against TS 102 225 Annex B]."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return (crc ^ 0xFFFF).to_bytes(2, "big")


def crc32(data: bytes) -> bytes:
    """CRC-32 of ISO/IEC 13239 (the zlib CRC), big-endian."""
    return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big")


def redundancy_check(algorithm: RcAlgorithm, data: bytes) -> bytes:
    return crc16(data) if algorithm is RcAlgorithm.CRC16 else crc32(data)


def rc_length(algorithm: RcAlgorithm) -> int:
    return 2 if algorithm is RcAlgorithm.CRC16 else 4
