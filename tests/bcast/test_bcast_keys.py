"""MBMS keys for the BCAST smartcard profile: MUK/MRK from the GBA NAF keys of Milenage test
set 1 with the BSM's NAF_Id (Ua id 01 00 00 00 01), both GBA modes, terminal and network
agreeing; the RK derivation registry of the (R-)UIM path."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from openscws.bcast.keys import (
    DEFAULT_RK_DERIVATION,
    RK_DERIVATIONS,
    BcastKeyError,
    GbaMode,
    RkKeys,
    bsm_naf_id,
    mbms_keys_from_ks,
    mbms_keys_gba_me,
    mbms_keys_gba_u,
    mrk_from_naf_key,
    register_rk_derivation,
    rk_keys,
    srk_password,
)

RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
KS = bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cbf769bcd751044604127672711c6d3441")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
BSM = "bsm.example.org"
# TS 33.220 Annex B.3 keys for NAF_Id "bsm.example.org" || 0100000001.
KS_NAF = bytes.fromhex("6b6a961069b5031c2d7df5004eddc53f67a8c586dff5b6ce9cd4d91b3a632a1b")
KS_INT_NAF = bytes.fromhex("7fed1cf436544d0ad28d4b47a61fae1183dd423779c6223e1d1048f23c4b9106")


def _independent_mrk(key: bytes) -> bytes:
    # The project's reading of TS 33.246 Annex F, written out: FC 0x01, P0 "mbms-mrk", L0 0x0008.
    return hmac.new(key, b"\x01mbms-mrk\x00\x08", hashlib.sha256).digest()


def test_naf_id_of_bsm_uses_the_mbms_ua_id() -> None:
    assert bsm_naf_id(BSM) == b"bsm.example.org" + bytes.fromhex("0100000001")


def test_gba_me_muk_is_ks_naf_and_mrk_is_derived() -> None:
    keys = mbms_keys_gba_me(KS_NAF)
    assert keys.mode is GbaMode.GBA_ME
    assert keys.muk == KS_NAF
    assert keys.mrk == _independent_mrk(KS_NAF)
    assert keys.mrk != keys.muk


def test_gba_u_terminal_has_no_muk() -> None:
    keys = mbms_keys_gba_u(KS_NAF)  # Ks_ext_NAF has the Ks_NAF formula
    assert keys.muk is None
    assert keys.mrk == _independent_mrk(KS_NAF)


@pytest.mark.parametrize(("mode", "muk"), [(GbaMode.GBA_ME, KS_NAF), (GbaMode.GBA_U, KS_INT_NAF)])
def test_network_side_agrees_with_terminal(mode: GbaMode, muk: bytes) -> None:
    mrk, network_muk = mbms_keys_from_ks(KS, RAND, IMPI, BSM, mode)
    assert network_muk == muk
    assert mrk == mbms_keys_gba_me(KS_NAF).mrk


def test_other_bsm_gives_other_keys() -> None:
    assert mbms_keys_from_ks(KS, RAND, IMPI, "bsm2.example.org", GbaMode.GBA_ME)[1] != KS_NAF


def test_secrets_stay_out_of_repr() -> None:
    text = repr(mbms_keys_gba_me(KS_NAF)) + repr(rk_keys(bytes(16), b"r", "a@b"))
    assert KS_NAF.hex() not in text
    assert "secret" in text


@pytest.mark.parametrize("bad", [b"", bytes(16), bytes(33)])
def test_naf_key_size_is_checked(bad: bytes) -> None:
    with pytest.raises(BcastKeyError):
        mrk_from_naf_key(bad)
    with pytest.raises(BcastKeyError):
        mbms_keys_gba_me(bad)


def test_srk_password_is_base64_of_the_key() -> None:
    assert srk_password(b"\x00\xff" * 16) == base64.b64encode(b"\x00\xff" * 16)


def test_rk_default_derivation() -> None:
    rk, rand, nai = bytes(range(16)), bytes(8), "user@ruim.example.org"
    keys = rk_keys(rk, rand, nai)
    tag = b"\x00" + rand + nai.encode()
    assert keys.tk == hmac.new(rk, b"TK" + tag, hashlib.sha256).digest()
    assert keys.auth_key == hmac.new(rk, b"Auth-Key" + tag, hashlib.sha256).digest()
    assert rk_keys(rk, b"\x01" * 8, nai).tk != keys.tk
    assert rk_keys(rk, rand, "other@ruim.example.org").auth_key != keys.auth_key


def test_rk_derivation_is_replaceable_by_name() -> None:
    def fixed(rk: bytes, rand: bytes, nai: str) -> RkKeys:
        return RkKeys(tk=rk[::-1], auth_key=rand)

    name = "test-reversed"
    try:
        register_rk_derivation(name, fixed)
        got = rk_keys(bytes(range(16)), b"abc", "n@x", derivation=name)
        assert got == RkKeys(tk=bytes(range(16))[::-1], auth_key=b"abc")
        with pytest.raises(BcastKeyError):
            register_rk_derivation(name, fixed)
        with pytest.raises(BcastKeyError):
            register_rk_derivation(DEFAULT_RK_DERIVATION, fixed)
    finally:
        RK_DERIVATIONS.pop(name, None)


@pytest.mark.parametrize(
    ("rk", "rand", "nai", "derivation"),
    [
        (bytes(15), b"r", "n@x", DEFAULT_RK_DERIVATION),
        (bytes(16), b"", "n@x", DEFAULT_RK_DERIVATION),
        (bytes(16), b"r", "", DEFAULT_RK_DERIVATION),
        (bytes(16), b"r", "n@x", "no-such"),
    ],
)
def test_rk_bad_input(rk: bytes, rand: bytes, nai: str, derivation: str) -> None:
    with pytest.raises(BcastKeyError):
        rk_keys(rk, rand, nai, derivation=derivation)
