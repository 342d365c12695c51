"""Garbage in gives DecodeError, never another exception (h11 fuzz/afl-server.py), for every
CAT decoder; what decodes re-encodes to something that decodes to the same object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.cat.commands import decode_command
from openscws.cat.envelopes import UnknownEnvelope, decode_envelope
from openscws.cat.objects import DATA_OBJECTS
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.codec.tlv import ComprehensionTlv, encode_ber_tlv
from openscws.errors import OpenScwsError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TAGS = [*sorted(DATA_OBJECTS), 0x7E, 0x22]
tlvs = st.builds(
    lambda tag, cr, value: ComprehensionTlv(tag, value, cr).encode(),
    st.sampled_from(TAGS),
    st.booleans(),
    st.binary(max_size=8),
)
bodies = st.lists(tlvs, max_size=8).map(b"".join)
heads = st.builds(
    lambda number, kind, qualifier, dest: bytes(
        (0x81, 3, number, kind, qualifier, 0x82, 2, 0x81, dest)
    ),
    st.integers(0, 255),
    st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x40, 0x41, 0x42, 0x43, 0x44, 0x99]),
    st.integers(0, 255),
    st.sampled_from([0x82, 0x21, 0x27, 0x28]),
)
commands = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda h, b: encode_ber_tlv(0xD0, h + b), heads, bodies),
    st.builds(lambda h, b: encode_ber_tlv(0xD0, (h + b)[:255]), heads, bodies),
)
responses = st.one_of(st.binary(max_size=64), bodies, st.builds(lambda h, b: h + b, heads, bodies))
envelopes = st.one_of(
    st.binary(max_size=64),
    st.builds(encode_ber_tlv, st.sampled_from([0xD1, 0xD6, 0xD7, 0xD3, 0xC0]), bodies),
)


def _check(decode: Callable[[bytes], Any], raw: bytes) -> None:
    try:
        obj = decode(raw)
    except OpenScwsError:
        return
    if isinstance(obj, UnknownEnvelope):
        return
    again = decode(obj.encode())
    assert again == obj


@FUZZ
@given(commands)
def test_fuzz_decode_command(raw: bytes) -> None:
    _check(decode_command, raw)


@FUZZ
@given(responses)
def test_fuzz_terminal_response(raw: bytes) -> None:
    _check(TerminalResponse.decode, raw)


@FUZZ
@given(envelopes)
def test_fuzz_decode_envelope(raw: bytes) -> None:
    _check(decode_envelope, raw)


@FUZZ
@given(st.binary(max_size=40))
def test_fuzz_terminal_profile(raw: bytes) -> None:
    profile = TerminalProfile.decode(raw)
    assert 0 <= profile.channels <= 7
    assert TerminalProfile.decode(profile.encode(len(raw))).features == profile.features
