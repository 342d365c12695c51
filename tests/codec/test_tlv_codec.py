"""COMPREHENSION-TLV and BER-TLV framing (TS 101 220 §7.1, spec digest §2.1-2.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.codec.tlv import (
    ComprehensionTlv,
    encode_ber_tlv,
    encode_length,
    encode_tag,
    pull_ber_tlv,
    pull_comprehension_tlvs,
    pull_length,
)
from openscws.errors import DecodeError, OpenScwsError

# cat-bip-apdu.md §2.3 (PYCAT): the pySim vectors, as one run of objects
PYSIM_RUN = (
    bytes.fromhex("BC03028000 BE052101020304 C704036E6161 8D0904")
    + b"password"
    + bytes.fromhex("B50103")
)


def test_pysim_run_splits_into_five_objects() -> None:
    tlvs = pull_comprehension_tlvs(PYSIM_RUN)
    assert tlvs == [
        ComprehensionTlv(0x3C, bytes.fromhex("028000"), cr=True),
        ComprehensionTlv(0x3E, bytes.fromhex("2101020304"), cr=True),
        ComprehensionTlv(0x47, b"\x03naa", cr=True),
        ComprehensionTlv(0x0D, b"\x04password", cr=True),
        ComprehensionTlv(0x35, b"\x03", cr=True),
    ]
    assert b"".join(t.encode() for t in tlvs) == PYSIM_RUN


def test_cr_clear_tag_is_kept() -> None:
    # cat-bip-apdu.md §2.2 (GD-BIP, MTK-BIP): channel status 38 with CR clear
    raw = bytes.fromhex("38024100")
    (tlv,) = pull_comprehension_tlvs(raw)
    assert tlv == ComprehensionTlv(0x38, b"\x41\x00", cr=False)
    assert tlv.encode() == raw


def test_result_vector() -> None:
    # cat-bip-apdu.md §2.6 (WS-CAT, PYCAT): BIP error, invalid channel
    raw = bytes.fromhex("83023A03")
    assert pull_comprehension_tlvs(raw) == [ComprehensionTlv(0x03, b"\x3a\x03", cr=True)]


def test_three_byte_tag() -> None:
    # cat-bip-apdu.md §2.2 (WS-CAT): 7F + CR/15-bit tag value
    raw = bytes.fromhex("7F81230101")
    (tlv,) = pull_comprehension_tlvs(raw)
    assert tlv == ComprehensionTlv(0x0123, b"\x01", cr=True)
    assert tlv.encode() == raw
    assert encode_tag(0x0123, cr=False) == bytes.fromhex("7F0123")


@pytest.mark.parametrize(
    ("n", "raw"),
    [(0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xED, "81ED"), (0xFF, "81FF")],
)
def test_length_forms(n: int, raw: str) -> None:
    # cat-bip-apdu.md §2.1 (GD-BIP ResponseData.writeLength, TS 101 220 §7.1.2)
    assert encode_length(n) == bytes.fromhex(raw)
    assert pull_length(bytes.fromhex(raw), 0) == (n, len(raw) // 2)


def test_length_too_long_to_encode() -> None:
    with pytest.raises(ValueError, match="255"):
        encode_length(256)


@pytest.mark.parametrize(
    "raw",
    [
        "",  # nothing
        "8100",  # 81 form below 128
        "817F",
        "81",  # truncated
        "8201",  # 82 form refused
        "80",
    ],
)
def test_bad_lengths(raw: str) -> None:
    with pytest.raises(DecodeError):
        pull_length(bytes.fromhex(raw), 0)


@pytest.mark.parametrize(
    "raw",
    [
        "00",  # padding tag
        "FF01",
        "800100",
        "8103",  # value missing
        "810301",  # value short
        "7F81",  # three-byte tag truncated
        "8301003A",  # trailing byte
        "B681",  # 81 form truncated
    ],
)
def test_bad_tlvs(raw: str) -> None:
    with pytest.raises(DecodeError):
        pull_comprehension_tlvs(bytes.fromhex(raw))


def test_offset_and_end() -> None:
    raw = bytes.fromhex("D0 05 830100 FFFF")
    assert pull_comprehension_tlvs(raw, 2, 5) == [ComprehensionTlv(0x03, b"\x00", cr=True)]


def test_ber_tlv() -> None:
    # cat-bip-apdu.md §3.3 (BLOG): CLOSE CHANNEL
    raw = bytes.fromhex("D009810302410182028121")
    tag, value = pull_ber_tlv(raw)
    assert tag == 0xD0
    assert encode_ber_tlv(tag, value) == raw
    long_value = bytes(200)
    assert pull_ber_tlv(encode_ber_tlv(0xD0, long_value)) == (0xD0, long_value)
    assert encode_ber_tlv(0xD0, long_value)[:3] == bytes.fromhex("D081C8")


@pytest.mark.parametrize("raw", ["", "D0", "0000", "FF00", "D00A8103", "D0028301000000"])
def test_bad_ber_tlv(raw: str) -> None:
    with pytest.raises(DecodeError):
        pull_ber_tlv(bytes.fromhex(raw))


def test_whole_then_bytewise_then_trailer() -> None:
    """Each prefix of a run either parses to a prefix of its objects or raises DecodeError;
    with a trailing object appended, that object survives."""
    whole = pull_comprehension_tlvs(PYSIM_RUN)
    for cut in range(len(PYSIM_RUN)):
        try:
            part = pull_comprehension_tlvs(PYSIM_RUN[:cut])
        except DecodeError:
            continue
        assert part == whole[: len(part)]
    trailer = bytes.fromhex("830100")
    assert pull_comprehension_tlvs(PYSIM_RUN + trailer)[-1] == ComprehensionTlv(3, b"\0", True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_pull_comprehension_tlvs(raw: bytes) -> None:
    try:
        tlvs = pull_comprehension_tlvs(raw)
    except OpenScwsError:
        return
    # Anything that parses re-encodes to the same bytes when the lengths were minimal.
    assert sum(len(t.encode()) for t in tlvs) <= len(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 0x7E), st.binary(max_size=255), st.booleans()), max_size=4)
)
def test_round_trip_generated_tlvs(objects: list[tuple[int, bytes, bool]]) -> None:
    tlvs = [ComprehensionTlv(tag, value, cr) for tag, value, cr in objects if tag != 0x00]
    raw = b"".join(t.encode() for t in tlvs)
    assert pull_comprehension_tlvs(raw) == tlvs
