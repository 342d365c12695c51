"""RFC 3261 §17 non-INVITE transactions (MESSAGE, REGISTER), sans-IO: the client side
(§17.1.2, timers E, F and K) and the server side (§17.2.2, timer J), over an unreliable (UDP)
or a reliable (TCP) transport. Each is a table of (state, event) -> state declared once; an
event the table does not allow raises `TransactionError`. Time comes in as `now` (seconds,
any monotonic origin); the shell asks `next_deadline` and calls `expire(now)` then.

Actions out: `Send(data)` to put on the transport, `Deliver(response)` to hand a response to
the transaction user, `TimedOut()` when timer F fires (the TU treats it as a 408), and
`Terminated()` once, when the transaction can be forgotten."""

from __future__ import annotations

from dataclasses import dataclass
from enum import auto
from typing import Final

from openscws.errors import OpenScwsError
from openscws.push.sip import SipRequest, SipResponse
from openscws.statetable import TableEnum

__all__ = [
    "CLIENT_TRANSITIONS",
    "SERVER_TRANSITIONS",
    "T1",
    "T2",
    "T4",
    "Action",
    "ClientTransaction",
    "Deliver",
    "Send",
    "ServerTransaction",
    "State",
    "Terminated",
    "TimedOut",
    "TransactionError",
    "transaction_key",
]

T1: Final = 0.5
"""RTT estimate (RFC 3261 §17.1.1.1, table 4)."""
T2: Final = 4.0
"""Maximum retransmit interval for non-INVITE requests."""
T4: Final = 5.0
"""Maximum duration a message remains in the network."""


class TransactionError(OpenScwsError):
    """An event the transaction's state table does not allow."""


class State(TableEnum):
    TRYING = auto()
    PROCEEDING = auto()
    COMPLETED = auto()
    TERMINATED = auto()


class Event(TableEnum):
    PROVISIONAL = auto()  # client: 1xx received; server: TU sends 1xx
    FINAL = auto()  # client: 200-699 received; server: TU sends 200-699
    REQUEST = auto()  # server: the request retransmitted
    TIMER_E = auto()
    TIMER_F = auto()
    TIMER_K = auto()
    TIMER_J = auto()
    TRANSPORT_ERROR = auto()


_S, _E = State, Event

CLIENT_TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    # RFC 3261 figure 6
    (_S.TRYING, _E.PROVISIONAL): _S.PROCEEDING,
    (_S.TRYING, _E.FINAL): _S.COMPLETED,
    (_S.TRYING, _E.TIMER_E): _S.TRYING,
    (_S.TRYING, _E.TIMER_F): _S.TERMINATED,
    (_S.TRYING, _E.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.PROCEEDING, _E.PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _E.FINAL): _S.COMPLETED,
    (_S.PROCEEDING, _E.TIMER_E): _S.PROCEEDING,
    (_S.PROCEEDING, _E.TIMER_F): _S.TERMINATED,
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _E.PROVISIONAL): _S.COMPLETED,  # late retransmissions, absorbed
    (_S.COMPLETED, _E.FINAL): _S.COMPLETED,
    (_S.COMPLETED, _E.TIMER_K): _S.TERMINATED,
}

SERVER_TRANSITIONS: Final[dict[tuple[State, Event], State]] = {
    # RFC 3261 figure 8
    (_S.TRYING, _E.REQUEST): _S.TRYING,
    (_S.TRYING, _E.PROVISIONAL): _S.PROCEEDING,
    (_S.TRYING, _E.FINAL): _S.COMPLETED,
    (_S.TRYING, _E.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.PROCEEDING, _E.REQUEST): _S.PROCEEDING,
    (_S.PROCEEDING, _E.PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _E.FINAL): _S.COMPLETED,
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _E.REQUEST): _S.COMPLETED,
    (_S.COMPLETED, _E.TIMER_J): _S.TERMINATED,
    (_S.COMPLETED, _E.TRANSPORT_ERROR): _S.TERMINATED,
}


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    response: SipResponse


@dataclass(frozen=True, slots=True)
class TimedOut:
    pass


@dataclass(frozen=True, slots=True)
class Terminated:
    pass


type Action = Send | Deliver | TimedOut | Terminated


def transaction_key(branch: str | None, method: str) -> tuple[str, str]:
    """RFC 3261 §17.1.3 / §17.2.3: the top Via branch and the CSeq method (ACK and CANCEL
    aside, which non-INVITE transactions do not see)."""
    if not branch:
        raise TransactionError("no branch in the top Via")
    return branch, method


class _Machine:
    _table: dict[tuple[State, Event], State]

    def __init__(self) -> None:
        self.state = State.TRYING
        self._timers: dict[Event, float] = {}

    def _step(self, event: Event) -> None:
        target = self._table.get((self.state, event))
        if target is None:
            raise TransactionError(f"{event.name} is not allowed in {self.state.name}")
        self.state = target

    @property
    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)

    def _due(self, now: float) -> list[Event]:
        due = sorted((at, event.value, event) for event, at in self._timers.items() if at <= now)
        return [event for _, _, event in due]


class ClientTransaction(_Machine):
    """The client side of one non-INVITE request."""

    _table = CLIENT_TRANSITIONS

    def __init__(
        self,
        request: SipRequest,
        *,
        reliable: bool,
        t1: float = T1,
        t2: float = T2,
        t4: float = T4,
    ) -> None:
        super().__init__()
        self.request = request
        self.key = transaction_key(request.top_via.branch, request.method)
        self.reliable = reliable
        self.t1, self.t2, self.t4 = t1, t2, t4
        self._data = request.encode()
        self._interval = t1
        self._started = False

    def start(self, now: float) -> list[Action]:
        if self._started:
            raise TransactionError("the transaction has already started")
        self._started = True
        self._timers[Event.TIMER_F] = now + 64 * self.t1
        if not self.reliable:
            self._timers[Event.TIMER_E] = now + self._interval
        return [Send(self._data)]

    def receive(self, response: SipResponse, now: float) -> list[Action]:
        if not self._started:
            raise TransactionError("a response before the request was sent")
        provisional = response.status < 200
        before = self.state
        self._step(Event.PROVISIONAL if provisional else Event.FINAL)
        if before is State.COMPLETED:
            return []  # retransmitted response, absorbed
        if provisional:
            return [Deliver(response)]
        self._timers.pop(Event.TIMER_E, None)
        self._timers.pop(Event.TIMER_F, None)
        if self.reliable:
            self._step(Event.TIMER_K)  # timer K is 0 on a reliable transport
            return [Deliver(response), Terminated()]
        self._timers[Event.TIMER_K] = now + self.t4
        return [Deliver(response)]

    def transport_error(self) -> list[Action]:
        self._step(Event.TRANSPORT_ERROR)
        self._timers.clear()
        return [TimedOut(), Terminated()]

    def expire(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for event in self._due(now):
            if self.state is State.TERMINATED:
                break
            self._timers.pop(event, None)
            self._step(event)
            if event is Event.TIMER_E:
                if self.state is State.TRYING:
                    self._interval = min(2 * self._interval, self.t2)
                else:
                    self._interval = self.t2
                self._timers[Event.TIMER_E] = now + self._interval
                actions.append(Send(self._data))
            elif event is Event.TIMER_F:
                self._timers.clear()
                actions += [TimedOut(), Terminated()]
            elif event is Event.TIMER_K:
                self._timers.clear()
                actions.append(Terminated())
        return actions


class ServerTransaction(_Machine):
    """The server side of one received non-INVITE request."""

    _table = SERVER_TRANSITIONS

    def __init__(self, request: SipRequest, *, reliable: bool, t1: float = T1) -> None:
        super().__init__()
        self.request = request
        self.key = transaction_key(request.top_via.branch, request.method)
        self.reliable = reliable
        self.t1 = t1
        self._last: bytes | None = None

    def retransmission(self) -> list[Action]:
        """The same request again: answered with the last response sent, if any."""
        self._step(Event.REQUEST)
        return [Send(self._last)] if self._last is not None else []

    def respond(self, response: SipResponse, now: float) -> list[Action]:
        self._step(Event.PROVISIONAL if response.status < 200 else Event.FINAL)
        self._last = response.encode()
        actions: list[Action] = [Send(self._last)]
        if self.state is State.COMPLETED:
            if self.reliable:
                self._step(Event.TIMER_J)  # timer J is 0 on a reliable transport
                actions.append(Terminated())
            else:
                self._timers[Event.TIMER_J] = now + 64 * self.t1
        return actions

    def transport_error(self) -> list[Action]:
        self._step(Event.TRANSPORT_ERROR)
        self._timers.clear()
        return [Terminated()]

    def expire(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for event in self._due(now):
            self._timers.pop(event, None)
            self._step(event)
            actions.append(Terminated())
        return actions
