"""The terminal's side of the ARA-M (GPD_SPE_013 §4): the APDUs that read the access rules, as a
sans-IO state machine. `next_apdu()` gives the next command, `receive(response)` takes the
card's answer; when `result` is set the read is over.

    MANAGE CHANNEL open (00 70 00 00 01)            -> a logical channel (refused: read as no
                                                       ARA-M: the basic channel, where the
                                                       USIM is selected, is never touched)
    SELECT by AID A00000015141434C00                -> 6A82: the card has no ARA-M
    GET DATA refresh tag (80 CA DF 20 00)           -> the same tag as last time: unchanged
    GET DATA all rules (80 CA FF 40 00)             -> 6A88: no rules
      GET DATA next (80 CA FF 60 00) until the Response-ALL-REF-AR-DO is whole
      (6A84, the rules changed meanwhile: start again from GET DATA all, up to 3 times)
    MANAGE CHANNEL close (0X 70 80 NN 00)

Status words 90 00 and 91 XX (a proactive command is pending, which the CAT engine fetches in
its own time) both end a command normally; 61 XX is followed by GET RESPONSE (T=0 readers)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from openscws.acp.rules import AcpDecodeError, RuleSet, decode_refresh_tag, decode_rules
from openscws.errors import OpenScwsError

__all__ = ["Outcome", "ReadResult", "ReaderError", "RulesReader", "read_rules"]

ARAM_AID: Final = bytes.fromhex("A00000015141434C00")
MAX_RESTARTS: Final = 3
MAX_PARTS: Final = 300
"""GET DATA Next answers at most (a two-byte length of rules fits in 257 answers)."""


class ReaderError(OpenScwsError):
    """An answer the read cannot take in its current state (a protocol error)."""


class Outcome(enum.Enum):
    NO_APPLICATION = "the card has no access-rule application"
    NO_RULES = "the card holds no access rules"
    RULES = "rules read"
    UNCHANGED = "refresh tag unchanged"
    ERROR = "the rules could not be read"


@dataclass(frozen=True, slots=True)
class ReadResult:
    outcome: Outcome
    rules: RuleSet | None = None
    tag: bytes | None = None
    error: str = ""


class State(enum.Enum):
    OPEN = "MANAGE CHANNEL open"
    SELECT = "SELECT ARA-M"
    TAG = "GET DATA refresh tag"
    ALL = "GET DATA all"
    NEXT = "GET DATA next"
    CLOSE = "MANAGE CHANNEL close"
    DONE = "done"


class Event(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    MORE = "more"
    AGAIN = "again"
    FINISH = "finish"


TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    (State.OPEN, Event.OK): State.SELECT,
    (State.OPEN, Event.FINISH): State.CLOSE,  # no logical channel: nothing is read
    (State.SELECT, Event.OK): State.TAG,
    (State.SELECT, Event.FINISH): State.CLOSE,
    (State.TAG, Event.OK): State.ALL,
    (State.TAG, Event.REFUSED): State.ALL,  # no refresh tag: read the rules every time
    (State.TAG, Event.FINISH): State.CLOSE,
    (State.ALL, Event.MORE): State.NEXT,
    (State.ALL, Event.FINISH): State.CLOSE,
    (State.NEXT, Event.MORE): State.NEXT,
    (State.NEXT, Event.AGAIN): State.ALL,
    (State.NEXT, Event.FINISH): State.CLOSE,
    (State.CLOSE, Event.FINISH): State.DONE,
}
"""Every allowed (state, event) -> state; anything else is a ReaderError."""


def _ok(sw: int) -> bool:
    return sw == 0x9000 or sw >> 8 == 0x91


class RulesReader:
    """One read of the rules. `known_tag`: the refresh tag of the rules the terminal holds;
    when the card's is the same the read ends with UNCHANGED after three APDUs and a close."""

    def __init__(self, known_tag: bytes | None = None) -> None:
        self.known_tag = known_tag
        self.state = State.OPEN
        self.channel = 0
        self.result: ReadResult | None = None
        self._pending: ReadResult | None = None
        self._tag: bytes | None = None
        self._data = bytearray()
        self._total = 0
        self._restarts = 0
        self._parts = 0
        self._get_response: int | None = None
        self._sent: bytes | None = None

    def _cla(self, base: int) -> int:
        n = self.channel
        return base | n if n < 4 else base | 0x40 | (n - 4)

    def next_apdu(self) -> bytes | None:
        """The next command, or None once the read is over (or while an answer is awaited)."""
        if self.result is not None or self._sent is not None:
            return None
        if self._get_response is not None:
            apdu = bytes((self._cla(0x00), 0xC0, 0, 0, self._get_response))
        else:
            apdu = self._command()
        self._sent = apdu
        return apdu

    def _command(self) -> bytes:
        match self.state:
            case State.OPEN:
                return bytes.fromhex("0070000001")
            case State.SELECT:
                return bytes((self._cla(0x00), 0xA4, 0x04, 0x00, len(ARAM_AID))) + ARAM_AID
            case State.TAG:
                return bytes((self._cla(0x80), 0xCA, 0xDF, 0x20, 0x00))
            case State.ALL:
                return bytes((self._cla(0x80), 0xCA, 0xFF, 0x40, 0x00))
            case State.NEXT:
                return bytes((self._cla(0x80), 0xCA, 0xFF, 0x60, 0x00))
            case _:  # CLOSE
                return bytes((self._cla(0x00), 0x70, 0x80, self.channel, 0x00))

    def _go(self, event: Event) -> None:
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise ReaderError(f"{event.value} not allowed in state {self.state.value}")
        self.state = after
        if after is State.CLOSE and self.channel == 0:
            self._go(Event.FINISH)  # nothing to close on the basic channel
        if after is State.DONE:
            self.result = self._pending

    def _finish(self, result: ReadResult) -> None:
        self._pending = result
        self._go(Event.FINISH)

    def receive(self, response: bytes) -> None:
        if self._sent is None or self.result is not None:
            raise ReaderError("an answer that no command asked for")
        self._sent = None
        if len(response) < 2:
            raise ReaderError("a response APDU without a status word")
        sw = int.from_bytes(response[-2:], "big")
        data = response[:-2]
        if sw >> 8 == 0x61:  # T=0: fetch the data with GET RESPONSE (Le 00 = 256)
            self._get_response = sw & 0xFF
            return
        self._get_response = None
        self._got(sw, data)

    def _got(self, sw: int, data: bytes) -> None:
        ok = _ok(sw)
        match self.state:
            case State.OPEN:
                if ok and len(data) == 1 and 0 < data[0] < 20:
                    self.channel = data[0]
                    self._go(Event.OK)
                else:
                    why = f"MANAGE CHANNEL: SW {sw:04X}"
                    self._finish(ReadResult(Outcome.NO_APPLICATION, error=why))
            case State.SELECT:
                if ok:
                    self._go(Event.OK)
                else:
                    self._finish(ReadResult(Outcome.NO_APPLICATION, error=f"SELECT: SW {sw:04X}"))
            case State.TAG:
                if not ok:
                    self._go(Event.REFUSED)
                    return
                try:
                    self._tag = decode_refresh_tag(data)
                except AcpDecodeError as e:
                    self._finish(ReadResult(Outcome.ERROR, error=f"refresh tag: {e}"))
                    return
                if self.known_tag is not None and self._tag == self.known_tag:
                    self._finish(ReadResult(Outcome.UNCHANGED, tag=self._tag))
                else:
                    self._go(Event.OK)
            case State.ALL:
                self._data.clear()
                if sw == 0x6A88:
                    self._finish(ReadResult(Outcome.NO_RULES, RuleSet(), self._tag))
                elif not ok:
                    self._finish(ReadResult(Outcome.ERROR, error=f"GET DATA all: SW {sw:04X}"))
                else:
                    self._total = _announced(data)
                    self._collect(data)
            case State.NEXT:
                if sw == 0x6A84 and self._restarts < MAX_RESTARTS:
                    self._restarts += 1
                    self._go(Event.AGAIN)
                elif not ok or not data or self._parts >= MAX_PARTS:
                    self._finish(ReadResult(Outcome.ERROR, error=f"GET DATA next: SW {sw:04X}"))
                else:
                    self._parts += 1
                    self._collect(data)
            case _:  # CLOSE: whatever the answer, the read is over
                self._go(Event.FINISH)

    def _collect(self, data: bytes) -> None:
        self._data += data
        if 0 < self._total and len(self._data) < self._total:
            self._go(Event.MORE)
            return
        try:
            rules = decode_rules(bytes(self._data))
        except AcpDecodeError as e:
            self._finish(ReadResult(Outcome.ERROR, tag=self._tag, error=str(e)))
            return
        outcome = Outcome.RULES if rules.scws_rules else Outcome.NO_RULES
        self._finish(ReadResult(outcome, rules, self._tag))


def _announced(data: bytes) -> int:
    """The whole size of a Response-ALL-REF-AR-DO from its first bytes (FF40 and its BER
    length); 0 when those bytes do not say (decoding then reports the fault)."""
    if len(data) < 3 or data[:2] != b"\xff\x40":
        return 0
    first = data[2]
    if first < 0x80:
        return 3 + first
    n = first & 0x7F
    if n not in (1, 2) or len(data) < 3 + n:
        return 0
    return 3 + n + int.from_bytes(data[3 : 3 + n], "big")


def read_rules(transmit: Callable[[bytes], bytes], known_tag: bytes | None = None) -> ReadResult:
    """Runs one read through `transmit` (command APDU -> response APDU)."""
    reader = RulesReader(known_tag)
    while (apdu := reader.next_apdu()) is not None:
        reader.receive(transmit(apdu))
    assert reader.result is not None
    return reader.result
