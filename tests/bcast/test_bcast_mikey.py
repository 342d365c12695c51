"""MIKEY (RFC 3830) codec and the LTKM of the BCAST smartcard profile: byte layout of the
common header and payloads, the MIKEY-1 PRF against an independent write-up of §4.1.2, LTKM
build/open with MAC and replay checks, the verification message, typed errors under fuzzing."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.bcast.ltkm import Ltkm, build_ltkm, build_verification, check_verification, open_ltkm
from openscws.bcast.mikey import (
    CsIdMap,
    DataType,
    ErrorNo,
    Header,
    KeyData,
    KeyDataType,
    KeyValidity,
    MikeyAuthError,
    MikeyDecodeError,
    MikeyError,
    MikeyReplayError,
    Payload,
    PayloadType,
    ReplayGuard,
    TsType,
    decode,
    decode_key_data,
    derive_psk_keys,
    encode,
    encode_key_data,
    prf,
)

H = bytes.fromhex
MUK = H("7fed1cf436544d0ad28d4b47a61fae1183dd423779c6223e1d1048f23c4b9106")
SEK = H("000102030405060708090a0b0c0d0e0f")
NOW = 1_796_000_000.0


def ltkm(counter: int = 7, ack: bool = False) -> Ltkm:
    return Ltkm(
        key_domain=H("00f110"),
        key_id=H("00010002"),
        key=SEK,
        counter=counter,
        idi=b"bsm.example.org",
        idr=b"I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org",
        ack=ack,
    )


def test_header_and_payload_bytes() -> None:
    header = Header(DataType.PSK_INIT, 0x01020304, v=True, cs_map_type=CsIdMap.EMPTY)
    payloads = [
        Payload(PayloadType.T, {"ts_type": TsType.COUNTER, "ts_value": H("0000002a")}),
        Payload(PayloadType.RAND, {"rand": H("aabb")}),
    ]
    wire = encode(header, payloads)
    assert wire == H(
        # version, Pre-shared, next=T, V|PRF 0, CSB ID, #CS 0, empty map
        "01 00 05 80 01020304 00 01"
        "0b 02 0000002a"  # next=RAND, TS type COUNTER, value
        "00 02 aabb"  # next=Last, RAND len, RAND
    )
    message = decode(wire)
    assert message.header == header
    assert [p.type for p in message.payloads] == [PayloadType.T, PayloadType.RAND]
    assert message.payloads[0].bytes("ts_value") == H("0000002a")


def test_srtp_id_map_is_kept() -> None:
    header = Header(
        DataType.PSK_INIT, 1, cs_map_type=CsIdMap.SRTP_ID, n_cs=1, cs_map=bytes(range(9))
    )
    assert decode(encode(header, [])).header == header


def test_key_data_roundtrip() -> None:
    items = [
        KeyData(
            KeyDataType.TEK_SALT, b"k" * 16, b"s" * 14, KeyValidity.INTERVAL, (b"\x01", b"\x02\x03")
        ),
        KeyData(KeyDataType.TGK, b"t" * 16, kv=KeyValidity.SPI, kv_data=(b"\x00\x01\x00\x02",)),
    ]
    raw = encode_key_data(items)
    assert raw[:4] == H("14 32 0010")  # next=Key data, TEK+SALT|Interval, key length 16
    assert decode_key_data(raw) == items
    assert "k" * 16 not in repr(items)


def _p(s: bytes, label: bytes, m: int) -> bytes:
    a, out = label, b""
    for _ in range(m):
        a = hmac.new(s, a, hashlib.sha1).digest()
        out += hmac.new(s, a + label, hashlib.sha1).digest()
    return out


def test_prf_single_and_split_key() -> None:
    label = b"\x2d\x22\xac\x75\xff\x00\x00\x00\x01"
    assert prf(MUK, label, 160) == _p(MUK, label, 1)
    assert prf(MUK, label, 256) == _p(MUK, label, 2)[:32]
    long_key = MUK + b"\x55" * 10  # 42 bytes: pieces of 32 and 10
    expected = bytes(
        x ^ y for x, y in zip(_p(MUK, label, 1), _p(b"\x55" * 10, label, 1), strict=True)
    )
    assert prf(long_key, label, 112) == expected[:14]


def test_psk_keys_use_distinct_constants() -> None:
    keys = derive_psk_keys(MUK, 0x00010002, b"")
    assert len(keys.encr_key) == 16
    assert len(keys.salt_key) == 14
    assert len(keys.auth_key) == 20
    label = H("2d22ac75") + b"\xff" + H("00010002")
    assert keys.auth_key == _p(MUK, label, 1)
    assert keys.encr_key != keys.auth_key[:16]
    assert "secret" in repr(keys)


def test_ltkm_roundtrip() -> None:
    wire = build_ltkm(ltkm(ack=True), MUK)
    message = decode(wire)
    assert message.header.v
    assert message.header.data_type is DataType.PSK_INIT
    assert message.header.csb_id == 0x00010002
    assert [p.type for p in message.payloads] == [
        PayloadType.GENERAL_EXT,
        PayloadType.T,
        PayloadType.ID,
        PayloadType.ID,
        PayloadType.KEMAC,
    ]
    assert SEK not in wire  # encrypted
    guard = ReplayGuard()
    got = open_ltkm(wire, MUK, guard, NOW)
    assert got == ltkm(ack=True)
    assert guard.counters[got.muk_id] == 7


def test_bad_mac_and_wrong_key_are_auth_failures() -> None:
    wire = build_ltkm(ltkm(), MUK)
    guard = ReplayGuard()
    for bad, key in (
        (wire[:-1] + bytes([wire[-1] ^ 1]), MUK),  # MAC
        (wire[:-30] + bytes([wire[-30] ^ 1]) + wire[-29:], MUK),  # encrypted key
        (wire, bytes(32)),  # another MUK
    ):
        with pytest.raises(MikeyAuthError) as err:
            open_ltkm(bad, key, guard, NOW)
        assert err.value.error_no is ErrorNo.AUTH_FAILURE
    assert guard.counters == {}  # nothing recorded for refused messages


def test_replayed_or_older_counter_is_refused() -> None:
    guard = ReplayGuard()
    open_ltkm(build_ltkm(ltkm(counter=7), MUK), MUK, guard, NOW)
    for counter in (7, 6):
        with pytest.raises(MikeyReplayError) as err:
            open_ltkm(build_ltkm(ltkm(counter=counter), MUK), MUK, guard, NOW)
        assert err.value.error_no is ErrorNo.INVALID_TS
    assert open_ltkm(build_ltkm(ltkm(counter=8), MUK), MUK, guard, NOW).counter == 8


def test_ntp_timestamps_window_and_cache() -> None:
    guard = ReplayGuard(skew=60)
    ts = ((int(NOW) + 2208988800) << 32).to_bytes(8)
    guard.accept(b"m", TsType.NTP_UTC, ts, NOW)
    with pytest.raises(MikeyReplayError):
        guard.accept(b"m", TsType.NTP_UTC, ts, NOW)
    with pytest.raises(MikeyReplayError):
        guard.check(b"m", TsType.NTP_UTC, ts, NOW + 120)


def test_verification_roundtrip_and_refusal() -> None:
    sent = ltkm(ack=True)
    ack = build_verification(sent, MUK)
    assert decode(ack).header.data_type is DataType.PSK_VERIFY
    check_verification(ack, sent, MUK)
    with pytest.raises(MikeyAuthError):
        check_verification(ack, sent, bytes(32))
    with pytest.raises(MikeyAuthError):
        check_verification(ack, ltkm(counter=8, ack=True), MUK)
    with pytest.raises(MikeyDecodeError):
        check_verification(build_ltkm(sent, MUK), sent, MUK)


@pytest.mark.parametrize(
    ("wire", "error_no"),
    [
        (H("01 00 00"), ErrorNo.UNSPECIFIED),  # short
        (H("02 00 00 00 00000001 00 01"), ErrorNo.UNSPECIFIED),  # version 2
        (H("01 63 00 00 00000001 00 01"), ErrorNo.INVALID_DT),  # data type 99
        (H("01 00 00 01 00000001 00 01"), ErrorNo.INVALID_PRF),  # PRF 1
        (H("01 00 00 00 00000001 00 07"), ErrorNo.UNSPECIFIED),  # CS ID map type 7
        (H("01 00 00 00 00000001 02 01"), ErrorNo.UNSPECIFIED),  # empty map, #CS 2
        (H("01 00 02 00 00000001 00 01 00"), ErrorNo.UNSPECIFIED),  # PKE not supported
        (H("01 00 05 00 00000001 00 01 00 07 00"), ErrorNo.INVALID_TS),  # TS type 7
        (H("01 00 05 00 00000001 00 01 00 02 0000"), ErrorNo.UNSPECIFIED),  # COUNTER cut short
        (H("01 00 00 00 00000001 00 01 ff"), ErrorNo.UNSPECIFIED),  # trailing byte
        (H("01 00 09 00 00000001 00 01 00 05"), ErrorNo.INVALID_MAC),  # V auth alg 5
    ],
)
def test_malformed_messages(wire: bytes, error_no: ErrorNo) -> None:
    with pytest.raises(MikeyDecodeError) as err:
        decode(wire)
    assert err.value.error_no is error_no


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_raises_only_mikey_errors(data: bytes) -> None:
    try:
        decode(data)
    except MikeyError:
        pass
    try:
        decode_key_data(data)
    except MikeyError:
        pass


_VALID = build_ltkm(ltkm(), MUK)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(1, 255), st.integers(0, len(_VALID)))
def test_fuzz_mutated_ltkm_is_refused_with_a_typed_error(pos: int, flip: int, cut: int) -> None:
    mutated = bytearray(_VALID)
    mutated[pos] ^= flip
    for candidate in (bytes(mutated), _VALID[:cut]):
        if candidate == _VALID:
            continue
        with pytest.raises(MikeyError):
            open_ltkm(candidate, MUK, ReplayGuard(), NOW)
