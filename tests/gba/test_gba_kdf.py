"""GBA key derivation (TS 33.220 Annex B): the generic KDF checked against K_ASME vectors of
two independent EPC implementations (TS 33.401 Annex A.2 uses the same KDF), then the NAF keys
and the B-TID of Milenage test set 1."""

from __future__ import annotations

import pytest

from openscws.gba.kdf import (
    UA_HTTP_DIGEST,
    UA_MBMS,
    b_tid,
    kdf,
    ks_int_naf,
    ks_naf,
    naf_id,
    parameter,
)

# Milenage test set 1 (TS 35.208 §4.3).
RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
CK = bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb")
IK = bytes.fromhex("f769bcd751044604127672711c6d3441")
AK = bytes.fromhex("aa689c648370")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
BSF = "bsf.mnc001.mcc001.pub.3gppnetwork.org"


@pytest.mark.parametrize(
    ("plmn", "kasme"),
    [
        ("024830", "238e457e0f758badbca8d34bb2612c10428d426757cb5553b2b184fa64bfc549"),
        ("02f843", "bd7a0903a7d0f68767ee2f5c90cb7d7d835998d940afdbf73173e63567c5b894"),
    ],
)
def test_generic_kdf_gives_known_kasme(plmn: str, kasme: str) -> None:
    """K_ASME = KDF(CK || IK, FC 0x10, serving network id, SQN xor AK) (TS 33.401 A.2)."""
    sqn = bytes.fromhex("fd8eef40df7d")
    sqn_xor_ak = bytes(a ^ b for a, b in zip(sqn, AK, strict=True))
    assert kdf(CK + IK, 0x10, (bytes.fromhex(plmn), sqn_xor_ak)).hex() == kasme


def test_naf_keys_of_test_set_1() -> None:
    ks = CK + IK
    bsm = naf_id("bsm.example.org", UA_MBMS)
    assert bsm == b"bsm.example.org" + bytes.fromhex("0100000001")
    assert ks_naf(ks, RAND, IMPI, bsm).hex() == (
        "6b6a961069b5031c2d7df5004eddc53f67a8c586dff5b6ce9cd4d91b3a632a1b"
    )
    assert ks_int_naf(ks, RAND, IMPI, bsm).hex() == (
        "7fed1cf436544d0ad28d4b47a61fae1183dd423779c6223e1d1048f23c4b9106"
    )
    digest = naf_id("bsm.example.org", UA_HTTP_DIGEST)
    assert ks_naf(ks, RAND, IMPI, digest).hex() == (
        "e49ccad32f338f9b15b70b1330f6faf9e647e07f77dc7c4e902b232d39d38738"
    )
    assert ks_int_naf(ks, RAND, IMPI, digest).hex() == (
        "5f9d1c7ad842887fbccaddb7ca036d99fa48cadf63f5eb8836603a045439c82a"
    )
    # The same derivation spelled out (Annex B.3): FC 01, "gba-me", RAND, IMPI, NAF_Id.
    s_params = (b"gba-me", RAND, IMPI.encode(), bsm)
    assert ks_naf(ks, RAND, IMPI, bsm) == kdf(ks, 0x01, s_params)


def test_b_tid() -> None:
    assert b_tid(RAND, BSF) == "I1U8vpY3qJ0hiuZNrke/NQ==@" + BSF


def test_strings_are_nfkc_utf8() -> None:
    # Annex B.2.1: a full-width A (U+FF21) and the fi ligature (U+FB01) become "A" and "fi".
    assert parameter("\uff21\ufb01é") == "Afié".encode()
    assert kdf(b"k", 1, ("\uff21",)) == kdf(b"k", 1, (b"A",))


def test_limits() -> None:
    with pytest.raises(ValueError, match="FC"):
        kdf(b"k", 0xFF, ())
    with pytest.raises(ValueError, match="65535"):
        kdf(b"k", 1, (bytes(65536),))
    with pytest.raises(ValueError, match="5 bytes"):
        naf_id("naf.example.org", b"\x01")
