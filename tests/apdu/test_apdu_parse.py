"""Command and response APDUs (ISO 7816-4 §5.1, TS 102 221 §10.1; spec digest §1.1-1.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.apdu.command import CommandApdu, Ins, ResponseApdu
from openscws.apdu.status import SW, describe
from openscws.errors import ApduError


def test_case1_four_bytes() -> None:
    assert CommandApdu.decode(bytes.fromhex("00700000")) == CommandApdu(0x00, 0x70, 0, 0)


def test_case1_t0_tpdu_with_p3_zero() -> None:
    # cat-bip-apdu.md §1.3 (PYLINK): a T=0 case-1 command carries P3 = 00
    apdu = CommandApdu.decode(bytes.fromhex("0070000000"))
    assert apdu == CommandApdu(0x00, 0x70, 0, 0)
    assert apdu.le is None
    assert apdu.encode() == bytes.fromhex("0070000000")


def test_case2_fetch() -> None:
    # cat-bip-apdu.md §1.1, §4.1 (PYAPDU): FETCH 80 12 00 00 0F
    apdu = CommandApdu.decode(bytes.fromhex("801200000F"))
    assert apdu == CommandApdu(0x80, Ins.FETCH, 0, 0, le=0x0F)
    assert apdu.encode() == bytes.fromhex("801200000F")


def test_case2_status_polling() -> None:
    # cat-bip-apdu.md §1.1 (PYAPDU): idle polling 80 F2 00 0C 00, Le 00 = 256
    apdu = CommandApdu.decode(bytes.fromhex("80F2000C00"))
    assert apdu == CommandApdu(0x80, Ins.STATUS, 0, 0x0C, le=256)
    assert apdu.encode() == bytes.fromhex("80F2000C00")


@pytest.mark.parametrize("ins", [Ins.READ_BINARY, Ins.READ_RECORD, Ins.GET_RESPONSE])
def test_case2_file_commands(ins: int) -> None:
    apdu = CommandApdu.decode(bytes((0x00, ins, 0x01, 0x04, 0x20)))
    assert apdu.le == 0x20
    assert apdu.data == b""


def test_case3_terminal_profile() -> None:
    # cat-bip-apdu.md §1.6 (WS-SIM, PYCAT): TERMINAL PROFILE of 17 bytes
    raw = bytes.fromhex("8010000011 13016800010C00000000001FE200000005")
    apdu = CommandApdu.decode(raw)
    assert apdu == CommandApdu(0x80, Ins.TERMINAL_PROFILE, 0, 0, raw[5:])
    assert apdu.le is None
    assert apdu.encode() == raw


def test_case4_with_le() -> None:
    # cat-bip-apdu.md §1.5 (PYAPDU): SELECT EF.ICCID with Le
    raw = bytes.fromhex("00A40004022FE200")
    apdu = CommandApdu.decode(raw)
    assert apdu == CommandApdu(0x00, Ins.SELECT, 0, 0x04, b"\x2f\xe2", le=256)
    assert apdu.encode() == raw


def test_case4_t0_without_le() -> None:
    # cat-bip-apdu.md §1.3 (PYLINK): T=0 strips Le from case-4 commands
    raw = bytes.fromhex("80C200000D D60B99010A82028281B8028100")
    apdu = CommandApdu.decode(raw)
    assert apdu == CommandApdu(0x80, Ins.ENVELOPE, 0, 0, raw[5:])
    assert apdu.encode() == raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "80",
        "8012",
        "801200",  # shorter than a header
        "80C2000005",  # Lc 5, no data
        "80C20000050102",  # Lc 5, 2 bytes
        "80C2000002010203FF",  # Lc 2, 4 bytes follow
        "80C200000001",  # P3 = 00 with data: extended length
    ],
)
def test_wrong_lengths(raw: str) -> None:
    with pytest.raises(ApduError) as info:
        CommandApdu.decode(bytes.fromhex(raw))
    assert info.value.sw == SW.WRONG_LENGTH == 0x6700


def test_response_apdu() -> None:
    # cat-bip-apdu.md §6 (VSC): FETCH answer, D0 template then 90 00
    raw = bytes.fromhex("D009810302410182028121 9000")
    rsp = ResponseApdu.decode(raw)
    assert rsp.data == raw[:-2]
    assert rsp.sw == SW.OK
    assert rsp.sw1 == 0x90
    assert rsp.encode() == raw
    assert ResponseApdu.decode(bytes.fromhex("910F")) == ResponseApdu(b"", 0x910F)
    with pytest.raises(ApduError) as info:
        ResponseApdu.decode(b"\x90")
    assert info.value.sw == SW.WRONG_LENGTH


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "ok"),
        (0x910F, "15 bytes pending"),
        (0x6C0B, "use 11"),
        (0x6110, "16 response bytes"),
        (0x6985, "conditions not satisfied"),
        (0x1234, "unknown"),
    ],
)
def test_describe(sw: int, text: str) -> None:
    assert text in describe(sw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=270))
def test_fuzz_command_apdu(raw: bytes) -> None:
    try:
        apdu = CommandApdu.decode(raw)
    except ApduError:
        return
    assert apdu.data == raw[5 : 5 + len(apdu.data)]
    # Re-encoding gives the input, or its 4-byte case-1 form with P3 = 00 appended.
    assert apdu.encode() in (raw, raw + b"\x00")


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
    st.one_of(st.none(), st.integers(1, 256)),
)
def test_round_trip_generated(cla: int, ins: int, data: bytes, le: int | None) -> None:
    case2 = ins in (
        Ins.FETCH,
        Ins.STATUS,
        Ins.READ_BINARY,
        Ins.READ_RECORD,
        Ins.GET_RESPONSE,
        Ins.GET_DATA,
    )
    if not data and le is not None and not case2:
        le = None  # a 5-byte header + Le is case 2 only for the INS that have that case
    apdu = CommandApdu(cla, ins, 0, 0, data, le)
    decoded = CommandApdu.decode(apdu.encode())
    if data or le is not None:
        assert decoded == apdu
    else:
        assert decoded == CommandApdu(cla, ins, 0, 0, le=256 if case2 else None)
