"""Life cycles declared as tables, in the manner of h11's `_state.py`: each protocol module
declares its states, its events and every allowed (state, event) -> state transition once,
as data; `StateTable` is the one place that looks a transition up, and turns a pair the table
does not allow into that module's typed protocol error (never a silent fix-up)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from enum import Enum


class TableEnum(Enum):
    """An enumeration whose members key transition tables: hashed by identity (members are
    singletons, and `Enum` compares them by identity), so a table lookup costs no Python-level
    `Enum.__hash__` call per member of its key tuple, as it would on a hot protocol path."""

    __hash__ = object.__hash__


class StateTable[Key: Hashable, State]:
    """A declared transition table and the error for a transition it does not allow. `Key`
    is what a transition is looked up by: (state, event), or (mode, state, event).

    `transitions` maps each allowed key to the next state (None: the machine ends, the
    subject is gone); `refuse(subject, key)` builds the protocol's error for any other key,
    `subject` naming what moves (a channel id, say)."""

    __slots__ = ("refuse", "transitions")

    def __init__(
        self,
        transitions: Mapping[Key, State | None],
        refuse: Callable[[int, Key], Exception],
    ) -> None:
        self.transitions = transitions
        self.refuse = refuse

    def next(self, subject: int, key: Key) -> State | None:
        """The state `key` leads to (None: gone); raises `refuse(subject, key)` if the table
        does not allow it."""
        try:
            return self.transitions[key]
        except KeyError:
            raise self.refuse(subject, key) from None
