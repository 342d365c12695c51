"""GSMTAP SIM header and APDU payload, byte for byte (spec digest §7 and §1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.errors import DecodeError
from openscws.trace import (
    GsmtapSimSubType,
    GsmtapType,
    gsmtap_header,
    gsmtap_sim_apdu,
    gsmtap_sim_atr,
    sim_apdu_payload,
)

H = bytes.fromhex

# SIMtrace2 osmo_st2_gsmtap_send_apdu: only version, hdr_len, type and sub_type are set.
APDU_HEADER = H("02 04 04 00 0000 00 00 00000000 00 00 00 00")
ATR_HEADER = H("02 04 04 00 0000 00 00 00000000 01 00 00 00")

# Spec digest §3.1: OPEN CHANNEL, UICC server mode, port 3516, buffer 1400 (20 bytes).
OPEN_CHANNEL = H("D0 12 81 03 02 40 00 82 02 81 82 B9 02 05 78 BC 03 03 0D BC")
# Spec digest §1.6 / brief: TERMINAL PROFILE with BIP, 17 bytes.
PROFILE = H("13 01 68 00 01 0C 00 00 00 00 00 1F E2 00 00 00 05")
# Spec digest §3.8: Channel status event, channel 1 ESTABLISHED.
EVENT_CHANNEL_STATUS = H("D6 0B 99 01 0A 82 02 82 81 B8 02 81 00")


def test_header_layout() -> None:
    assert gsmtap_header(GsmtapType.SIM, GsmtapSimSubType.APDU) == APDU_HEADER
    assert gsmtap_header(GsmtapType.SIM, GsmtapSimSubType.ATR) == ATR_HEADER
    assert len(APDU_HEADER) == 16
    assert APDU_HEADER[1] * 4 == 16  # hdr_len counts 32-bit words


def test_atr() -> None:
    # Spec digest §1.4: sysmocom SJA2 ATR.
    atr = H("3B 9F 96 80 1F 87 80 31 E0 73 FE 21 1B 67 4A 4C 75 30 34 05 4B A9")
    assert gsmtap_sim_atr(atr) == ATR_HEADER + atr


def test_atr_empty() -> None:
    with pytest.raises(DecodeError):
        gsmtap_sim_atr(b"")


def test_apdu_is_header_plus_payload() -> None:
    command, response = H("80 12 00 00 14"), OPEN_CHANNEL + H("90 00")
    assert gsmtap_sim_apdu(command, response) == APDU_HEADER + sim_apdu_payload(command, response)


# --- case 1: no data either way: P3 = 00 -------------------------------------------------


@pytest.mark.parametrize("command", [H("80 F2 00 0C"), H("80 F2 00 0C 00")])
def test_case1_p3_zero(command: bytes) -> None:
    assert sim_apdu_payload(command, H("90 00")) == H("80 F2 00 0C 00 90 00")


# --- case 2: P3 = the length of the data actually returned -------------------------------


def test_case2_fetch_le_matches() -> None:
    assert sim_apdu_payload(H("80 12 00 00 14"), OPEN_CHANNEL + H("90 00")) == (
        H("80 12 00 00 14") + OPEN_CHANNEL + H("90 00")
    )


@pytest.mark.parametrize(
    "command",
    [
        H("80 12 00 00 00"),  # Le 00 (= 256): Wireshark would read 256 bytes
        H("80 12 00 00 FF"),  # Le larger than the data
        H("80 12 00 00 10"),  # Le smaller than the data
        H("80 12 00 00"),  # no Le at all
    ],
)
def test_case2_p3_rewritten(command: bytes) -> None:
    assert sim_apdu_payload(command, OPEN_CHANNEL + H("91 0B")) == (
        H("80 12 00 00 14") + OPEN_CHANNEL + H("91 0B")
    )


@pytest.mark.parametrize(
    ("command", "expected_header"),
    [
        (H("80 F2 00 00 00"), H("80 F2 00 00 03")),  # STATUS
        (H("00 C0 00 00 03"), H("00 C0 00 00 03")),  # GET RESPONSE
        (H("00 B0 00 00 00"), H("00 B0 00 00 03")),  # READ BINARY
        (H("00 B2 01 04 10"), H("00 B2 01 04 03")),  # READ RECORD
    ],
)
def test_case2_other_commands(command: bytes, expected_header: bytes) -> None:
    assert sim_apdu_payload(command, H("01 02 03 90 00")) == expected_header + H("01 02 03 90 00")


def test_case2_error_without_data() -> None:
    # A FETCH answered with an error SW and no data: P3 becomes 00.
    assert sim_apdu_payload(H("80 12 00 00 14"), H("6F 00")) == H("80 12 00 00 00 6F 00")


def test_case2_256_bytes_is_p3_zero() -> None:
    data = bytes(range(256))
    assert sim_apdu_payload(H("00 B0 00 00 00"), data + H("90 00")) == (
        H("00 B0 00 00 00") + data + H("90 00")
    )


def test_case2_more_than_256_bytes() -> None:
    with pytest.raises(DecodeError):
        sim_apdu_payload(H("00 B0 00 00 00"), bytes(257) + H("90 00"))


# --- case 3: header Lc data SW ------------------------------------------------------------


def test_case3_terminal_profile() -> None:
    command = H("80 10 00 00 11") + PROFILE
    assert sim_apdu_payload(command, H("91 14")) == command + H("91 14")


def test_case3_terminal_response() -> None:
    command = H("80 14 00 00 14 81 03 02 40 00 82 02 82 81 83 01 00 B8 02 41 00 B9 02 05 78")
    assert sim_apdu_payload(command, H("90 00")) == command + H("90 00")


def test_case3_trailing_le_dropped() -> None:
    command = H("80 10 00 00 11") + PROFILE
    assert sim_apdu_payload(command + H("00"), H("90 00")) == command + H("90 00")


# --- case 4: header Lc data [response data] SW --------------------------------------------


@pytest.mark.parametrize("le", [b"", H("00")])
def test_case4_envelope(le: bytes) -> None:
    command = H("80 C2 00 00 0D") + EVENT_CHANNEL_STATUS
    assert sim_apdu_payload(command + le, H("91 0C")) == command + H("91 0C")


@pytest.mark.parametrize("le", [b"", H("00"), H("1A")])
def test_case4_response_data_kept_after_command_data(le: bytes) -> None:
    # SELECT by path returning an FCP (SMS-PP ENVELOPEs with a PoR look the same).
    command = H("00 A4 08 04 04 7F FF 6F 07")
    fcp = H("62 03 82 01 21")
    assert sim_apdu_payload(command + le, fcp + H("90 00")) == command + fcp + H("90 00")


# --- garbage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "response"),
    [
        (b"", H("90 00")),
        (H("80 12 00"), H("90 00")),  # header too short
        (H("80 12 00 00 14"), H("90")),  # no SW2
        (H("80 14 00 00 05 01 02"), H("90 00")),  # Lc longer than the data
        (H("80 14 00 00 01 01 02 03"), H("90 00")),  # two bytes past Lc
        (H("80 14 00 00 00 00 05 01 02 03 04 05"), H("90 00")),  # extended length
    ],
)
def test_malformed_raises_decode_error(command: bytes, response: bytes) -> None:
    with pytest.raises(DecodeError):
        sim_apdu_payload(command, response)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_input_gives_payload_or_decode_error(command: bytes, response: bytes) -> None:
    try:
        payload = sim_apdu_payload(command, response)
    except DecodeError:
        return
    assert payload[:4] == command[:4]
    assert payload[-2:] == response[-2:]
    if len(command) <= 5:
        assert payload[4] == (len(response) - 2) & 0xFF
        assert payload[5:-2] == response[:-2]
    else:
        assert payload[4] == command[4]
        assert payload[5 : 5 + command[4]] == command[5 : 5 + command[4]]
        assert payload[5 + command[4] :] == response
