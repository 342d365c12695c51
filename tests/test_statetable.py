"""The shared transition lookup (openscws/statetable.py) and the two life cycles that use it:
the card's server channels (bip/card.py) and the terminal's channel table (bip/terminal.py)."""

from __future__ import annotations

import itertools

import pytest

from openscws.bip import card, terminal
from openscws.statetable import StateTable


class _Refused(Exception):
    pass


def test_allowed_pairs_lead_where_the_table_says() -> None:
    table: StateTable[tuple[str, str], str] = StateTable(
        {("a", "go"): "b", ("b", "end"): None}, lambda who, key: _Refused(who, key)
    )
    assert table.next(1, ("a", "go")) == "b"
    assert table.next(1, ("b", "end")) is None
    with pytest.raises(_Refused) as caught:
        table.next(7, ("a", "end"))
    assert caught.value.args == (7, ("a", "end"))
    assert caught.value.__suppress_context__  # the KeyError is not the story


def test_the_card_table_refuses_in_its_own_terms() -> None:
    for state, event in itertools.product(card.ChannelState, card.ChannelEvent):
        if (state, event) in card.TRANSITIONS:
            assert card.LIFE_CYCLE.next(3, (state, event)) is card.TRANSITIONS[state, event]
            continue
        with pytest.raises(card.ChannelStateError) as caught:
            card.LIFE_CYCLE.next(3, (state, event))
        assert (caught.value.channel, caught.value.state, caught.value.event) == (3, state, event)


def test_the_terminal_table_refuses_in_its_own_terms() -> None:
    keys = itertools.product(terminal.Mode, terminal.ChannelState, terminal.ChannelEvent)
    for mode, state, event in keys:
        key = (mode, state, event)
        if key in terminal.TRANSITIONS:
            assert terminal.LIFE_CYCLE.next(2, key) is terminal.TRANSITIONS[key]
            continue
        with pytest.raises(terminal.ChannelStateError) as caught:
            terminal.LIFE_CYCLE.next(2, key)
        assert (caught.value.channel, caught.value.state, caught.value.event) == (2, state, event)


def test_table_enum_members_key_tables_by_identity() -> None:
    from enum import auto

    from openscws.statetable import TableEnum

    class Light(TableEnum):
        RED = auto()
        GREEN = auto()

    assert hash(Light.RED) == object.__hash__(Light.RED)
    assert Light.RED != Light.GREEN
    assert Light.RED == Light(Light.RED.value)
    table = StateTable({(Light.RED, "go"): Light.GREEN}, lambda _, key: KeyError(key))
    assert table.next(0, (Light.RED, "go")) is Light.GREEN
    with pytest.raises(KeyError):
        table.next(0, (Light.GREEN, "go"))
