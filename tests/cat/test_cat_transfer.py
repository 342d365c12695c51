"""The shared codec of the transfer commands (cat/transfer.py) against the typed one: the same
bytes for RECEIVE DATA, SEND DATA, their TERMINAL RESPONSEs and the Data available event, and
its readers take back what its builders made (and nothing else)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.cat import transfer
from openscws.cat.commands import Command, CommandType, ReceiveData, SendData
from openscws.cat.envelopes import data_available
from openscws.cat.objects import (
    ChannelData,
    ChannelDataLength,
    ChannelStatus,
    Result,
    ServerState,
)
from openscws.cat.responses import TerminalResponse

NUMBERS = st.integers(1, 0xFE)
CHANNELS = st.integers(1, 7)


def test_type_codes_are_the_typed_ones() -> None:
    assert transfer.RECEIVE_DATA_TYPE == CommandType.RECEIVE_DATA
    assert transfer.SEND_DATA_TYPE == CommandType.SEND_DATA


@given(NUMBERS, CHANNELS, st.integers(0, 255))
def test_receive_data(number: int, channel: int, length: int) -> None:
    typed = ReceiveData.build(number, channel, length)
    raw = transfer.receive_data(number, channel, length)
    assert raw == Command.encode(typed) == typed.encode()
    assert transfer.read_receive_data(raw) == (raw[2:7], channel, length)
    assert (
        transfer.RECEIVE_DATA_TR_EXPECT[number]
        == TerminalResponse(details=typed.details, result=Result(0)).encode()[:11]
    )


@given(NUMBERS, CHANNELS, st.binary(max_size=240), st.booleans())
def test_send_data(number: int, channel: int, data: bytes, immediately: bool) -> None:
    typed = SendData.build(number, channel, data, immediately=immediately)
    raw = transfer.send_data_head(number, int(immediately), channel, len(data)) + data
    assert raw == Command.encode(typed) == typed.encode()
    found = transfer.read_send_data(raw, len(raw))
    assert found is not None
    details, got_channel, start, got_immediately = found
    assert (got_channel, raw[start:], got_immediately) == (channel, data, immediately)
    assert details == raw[raw.index(b"\x81\x03") :][:5]


@given(NUMBERS, st.booleans(), st.integers(0, 0xFFFF))
def test_send_data_tr(number: int, immediately: bool, free: int) -> None:
    typed = SendData.build(number, 1, b"x", immediately=immediately)
    tr = TerminalResponse(
        details=typed.details, result=Result(0), data_length=ChannelDataLength(min(free, 255))
    ).encode()
    details = tr[:5]
    assert transfer.send_data_tr(details, free) == tr
    key = number | int(immediately) << 8
    assert tr.startswith(transfer.SEND_DATA_TR_EXPECT[key])
    assert len(tr) == len(transfer.SEND_DATA_TR_EXPECT[key]) + 1


@given(NUMBERS, st.sampled_from([0, 2, 7]), st.binary(max_size=237), st.integers(0, 2000))
def test_receive_data_tr(number: int, general: int, data: bytes, left: int) -> None:
    typed = ReceiveData.build(number, 1, 237)
    tr = TerminalResponse(
        details=typed.details,
        result=Result(general),
        data=ChannelData(data),
        data_length=ChannelDataLength(min(left, 255)),
    ).encode()
    assert transfer.receive_data_tr(tr[:5], general, data, left) == tr
    found = transfer.read_receive_data_tr(tr, transfer.RECEIVE_DATA_TR_EXPECT[number])
    assert found is not None
    start, end, got_left = found
    assert (tr[start:end], got_left) == (data, min(left, 255))


@pytest.mark.parametrize("state", [ServerState.LISTEN, ServerState.ESTABLISHED])
@pytest.mark.parametrize("channel", range(1, 8))
@pytest.mark.parametrize("left", [0, 1, 254, 255, 4000])
def test_data_available(state: ServerState, channel: int, left: int) -> None:
    typed = data_available(ChannelStatus.server(channel, state), min(left, 255)).encode()
    assert transfer.data_available(state, channel, left) == typed


@given(st.binary(min_size=14, max_size=300))
def test_readers_take_only_their_forms(raw: bytes) -> None:
    found = transfer.read_send_data(raw, len(raw))
    if found is not None:
        details, channel, start, _ = found
        rebuilt = transfer.send_data_head(details[2], details[4], channel, len(raw) - start)
        assert rebuilt + raw[start:] == raw
    found_rd = transfer.read_receive_data(raw)
    if found_rd is not None:
        assert raw.startswith(b"\xd0\x0c\x81\x03")
