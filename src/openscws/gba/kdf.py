"""GBA key derivation (3GPP TS 33.220 §4.5.2, Annex B, Annex H): the generic KDF, the NAF_Id,
the B-TID and the NAF-specific keys Ks_(ext)_NAF and Ks_int_NAF.

    S = FC || P0 || L0 || P1 || L1 || ... || Pn || Ln     Li: length of Pi, 2 bytes big-endian
    derived key = HMAC-SHA-256(Key, S)                    (Annex B.2)

    Ks_NAF = Ks_ext_NAF = KDF(Ks, 0x01, "gba-me", RAND, IMPI, NAF_Id)   (GBA_ME, and GBA_U's ext)
    Ks_int_NAF          = KDF(Ks, 0x01, "gba-u",  RAND, IMPI, NAF_Id)   (GBA_U, kept in the UICC)
    Ks = CK || IK;  NAF_Id = NAF FQDN || Ua security protocol identifier (5 bytes, Annex H)
    B-TID = base64(RAND) "@" BSF server name (§4.5.2)

Strings are UTF-8 after NFKC normalisation (Annex B.2.1). Sans-IO."""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Iterable
from typing import Final

__all__ = [
    "FC_NAF",
    "UA_HTTP_DIGEST",
    "UA_MBMS",
    "b_tid",
    "kdf",
    "ks_int_naf",
    "ks_naf",
    "naf_id",
    "parameter",
]

FC_NAF: Final = 0x01
"""Annex B.3: the FC of Ks_(ext/int)_NAF."""
UA_MBMS: Final = bytes.fromhex("0100000001")
"""Annex H.3: TS 33.246 MBMS, which OMA BCAST 1.0 uses too (OMNA GBA registry)."""
UA_HTTP_DIGEST: Final = bytes.fromhex("0100000002")
"""Annex H.3: HTTP Digest over Ua per TS 24.109."""


def parameter(value: bytes | str) -> bytes:
    """One KDF input parameter as bytes (a string: NFKC, then UTF-8)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFKC", value).encode("utf-8")
    return bytes(value)


def kdf(key: bytes, fc: int, params: Iterable[bytes | str]) -> bytes:
    """Annex B.2: HMAC-SHA-256(key, FC || P0 || L0 || ...). FC is one byte (0x00..0xFE)."""
    if not 0 <= fc <= 0xFE:
        raise ValueError("FC is one byte below 0xFF (0xFF introduces a two-byte FC)")
    s = bytearray((fc,))
    for p in params:
        data = parameter(p)
        if len(data) > 0xFFFF:
            raise ValueError("a KDF parameter is at most 65535 bytes")
        s += data + len(data).to_bytes(2, "big")
    return hmac.new(key, bytes(s), hashlib.sha256).digest()


def naf_id(fqdn: str, ua_protocol: bytes) -> bytes:
    """NAF_Id = FQDN || Ua security protocol identifier (§4.5.2, Annex H)."""
    if len(ua_protocol) != 5:
        raise ValueError("a Ua security protocol identifier is 5 bytes")
    return parameter(fqdn) + ua_protocol


def ks_naf(ks: bytes, rand: bytes, impi: str | bytes, naf: bytes) -> bytes:
    """Ks_NAF (GBA_ME), equal to Ks_ext_NAF (GBA_U): the key the ME uses towards the NAF."""
    return kdf(ks, FC_NAF, (b"gba-me", rand, impi, naf))


def ks_int_naf(ks: bytes, rand: bytes, impi: str | bytes, naf: bytes) -> bytes:
    """Ks_int_NAF (GBA_U): stays in the UICC (e.g. an MBMS MUK)."""
    return kdf(ks, FC_NAF, (b"gba-u", rand, impi, naf))


def b_tid(rand: bytes, bsf_server_name: str) -> str:
    """The bootstrapping transaction identifier: base64(RAND)@BSF server name."""
    return f"{base64.b64encode(rand).decode('ascii')}@{bsf_server_name}"
