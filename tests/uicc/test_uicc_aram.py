"""The card's ARA-M (GPD_SPE_013 §4) on logical channels, and the terminal's reader of it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.acp.reader import Outcome, ReaderError, RulesReader, read_rules
from openscws.acp.rules import AccessRule, RuleSet, encode_rules
from openscws.uicc.aram import ARAM_AID, AraM, refresh_tag_of
from openscws.uicc.card import CardIdentity, VirtualUicc

RULES = RuleSet(tuple(AccessRule(uid=n, paths=(f"/app{n}/",)) for n in range(50)))


class Box:
    value: bytes | None = None


@pytest.fixture
def box() -> Box:
    return Box()


@pytest.fixture
def card(box: Box) -> VirtualUicc:
    c = VirtualUicc(CardIdentity("89882390000012345678"), aram=AraM(lambda: box.value))
    c.power_on()
    return c


def tx(card: VirtualUicc, hex_: str) -> tuple[bytes, str]:
    r = card.transmit(bytes.fromhex(hex_.replace(" ", "")), 0.0)
    return r[:-2], r[-2:].hex().upper()


def test_manage_channel_select_get_data(card: VirtualUicc, box: Box) -> None:
    box.value = encode_rules(RULES)
    assert tx(card, "00 70 00 00 01") == (b"\x01", "9000")
    assert tx(card, "00 70 00 00 01") == (b"\x02", "9000")
    assert tx(card, "81 CA FF 40 00")[1] == "6985"  # ARA-M not selected there
    assert tx(card, "01 A4 04 00 09" + ARAM_AID.hex())[1] == "9000"
    first, sw = tx(card, "81 CA FF 40 00")
    assert sw == "9000"
    assert len(first) == 256
    assert first[:2] == b"\xff\x40"
    whole = first
    while len(whole) < len(box.value):
        part, sw = tx(card, "81 CA FF 60 00")
        assert sw == "9000"
        whole += part
    assert whole == box.value
    assert tx(card, "81 CA FF 60 00")[1] == "6985"  # nothing left
    tag, sw = tx(card, "81 CA DF 20 00")
    assert (tag, sw) == (bytes.fromhex("DF2008") + refresh_tag_of(box.value), "9000")
    assert tx(card, "81 CA 00 66 00")[1] == "6A88"
    assert tx(card, "00 70 80 01 00") == (b"", "9000")
    assert tx(card, "81 CA DF 20 00")[1] == "6881"  # closed
    assert tx(card, "01 B0 00 00 01")[1] == "6881"
    assert tx(card, "02 B0 00 00 01")[1] == "6D00"  # only the ARA-M on logical channels
    assert tx(card, "02 A4 04 00 05 A000000087")[1] == "6A82"
    assert tx(card, "00 70 80 00 00")[1] == "6A86"  # the basic channel stays


def test_rules_changed_while_read_is_6a84(card: VirtualUicc, box: Box) -> None:
    box.value = encode_rules(RULES)
    tx(card, "00 A4 04 00 09" + ARAM_AID.hex())
    tx(card, "80 CA FF 40 00")
    box.value = encode_rules(RuleSet(RULES.rules[:40]))
    assert tx(card, "80 CA FF 60 00")[1] == "6A84"


def test_no_rules_is_6a88_and_further_channels(card: VirtualUicc) -> None:
    tx(card, "00 70 00 05 00")
    assert tx(card, "41 A4 04 00 09" + ARAM_AID.hex())[1] == "9000"  # channel 5: CLA 4X
    assert tx(card, "C1 CA FF 40 00")[1] == "6A88"
    assert len(tx(card, "C1 CA DF 20 00")[0]) == 11


def test_reader_reads_what_the_card_holds(card: VirtualUicc, box: Box) -> None:
    def send(apdu: bytes) -> bytes:
        return card.transmit(apdu, 0.0)

    assert read_rules(send).outcome is Outcome.NO_RULES
    box.value = encode_rules(RULES)
    result = read_rules(send)
    assert result.outcome is Outcome.RULES
    assert result.rules is not None
    assert [r.uid for r in result.rules.rules] == list(range(50))
    assert read_rules(send, result.tag).outcome is Outcome.UNCHANGED
    assert card.channels == {0: None}  # every channel closed again
    box.value = b"\xff\x40\x03\xe2\x01\x00"
    bad = read_rules(send)
    assert bad.outcome is Outcome.ERROR
    assert "REF-AR-DO" in bad.error


def test_reader_on_a_card_without_the_application() -> None:
    plain = VirtualUicc(CardIdentity("89882390000012345678"))
    plain.power_on()
    result = read_rules(lambda a: plain.transmit(a, 0.0))
    assert result.outcome is Outcome.NO_APPLICATION


def test_legacy_json_value_is_served_converted(card: VirtualUicc, box: Box) -> None:
    box.value = b'[{"app": "' + hashlib.sha256(b"x").hexdigest().encode() + b'", "allow": ["/a/"]}]'
    result = read_rules(lambda a: card.transmit(a, 0.0))
    assert result.rules is not None
    assert result.rules.rules[0].paths == ("/a/",)


def test_reader_refuses_unasked_answers() -> None:
    reader = RulesReader()
    with pytest.raises(ReaderError):
        reader.receive(b"\x90\x00")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_fuzz_reader_answers_typed(answers: list[bytes]) -> None:
    """Any answers: the read ends with a result or a ReaderError, never another exception."""
    reader = RulesReader()
    feed = iter(answers)
    try:
        while reader.next_apdu() is not None:
            reader.receive(next(feed, b"\x6f\x00"))
    except ReaderError:
        return
    assert reader.result is not None


def test_a_card_without_logical_channels_is_left_alone() -> None:
    """MANAGE CHANNEL refused: no ARA-M for the gateway, and no SELECT on the basic channel
    (where a real terminal keeps the USIM selected)."""
    sent: list[bytes] = []

    def card(apdu: bytes) -> bytes:
        sent.append(apdu)
        return bytes.fromhex("6881") if apdu[1] == 0x70 else bytes.fromhex("9000")

    result = read_rules(card)
    assert result.outcome is Outcome.NO_APPLICATION
    assert "MANAGE CHANNEL" in result.error
    assert sent == [bytes.fromhex("0070000001")]
