"""The card side of CAT: the single pending proactive command and the applications behind it.

TS 102 221 §7.4.2: the card announces a pending command with 91 XX on any successful command,
the terminal fetches it and answers with one TERMINAL RESPONSE. An application that raises
while asked for a command, run on a timer or told of a new terminal is logged and skipped: the
others carry on. Applications hand the toolkit typed commands (`ToolkitApp`); only the card's
BIP server, as the toolkit's `ChannelPump`, hands it the transfer commands as bytes
(`Transfer`). (What it raises on an envelope or a TERMINAL RESPONSE reaches
`VirtualUicc.transmit`, which answers 6F 00.) Applications are asked for their
next command only when nothing is pending, so each builds it from its state at that moment (a
SEND DATA chunk sized to the terminal's free buffer, say) instead of queueing stale ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Protocol, runtime_checkable

from openscws.apdu.status import SW
from openscws.cat.commands import Command, decode_command
from openscws.cat.envelopes import Envelope
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse

log = logging.getLogger(__name__)

_NOT_SATISFIED = SW.CONDITIONS_NOT_SATISFIED.to_bytes(2, "big")


TIMER_GRANULARITY = 0.05
"""Seconds between timer checks: app timers are timeouts of seconds, and checking them on
every APDU would cost the bulk-transfer path."""


TransferReader = Callable[["Transfer", bytes, float], bool]
"""Reads the TERMINAL RESPONSE (the APDU data) to a `Transfer`: acts on it and returns True,
or returns False, having done nothing, for a form it does not read."""


def read_done(command: Transfer, data: bytes, now: float) -> bool:
    """The reader of a command whose plain TR needs nothing done: `expect` and one more byte
    (SEND DATA's: the byte is the free Tx space, which the card does not use)."""
    return len(data) == len(command.expect) + 1 and data.startswith(command.expect)


class Transfer:
    """A transfer command (RECEIVE DATA or SEND DATA) built straight to bytes with the
    transfer codec (cat/transfer.py), with the reader of its TERMINAL RESPONSE bytes. Not part
    of the `ToolkitApp` contract: only a `ChannelPump` (the card's BIP server, bip/card.py)
    makes them, through `ChannelPump.next_step`.

    The reader takes the plain forms it knows, checking the command details echo byte for
    byte against `expect` (§6.8.1), and acts on them; for any other form it returns False and
    the toolkit goes the typed way, decoding the command and the response and calling
    `on_terminal_response`, exactly as for a typed command. The tests check that the bytes
    equal the typed encoding and that both ways have the same effect."""

    __slots__ = ("channel", "encoded", "expect", "reader")

    def __init__(self, encoded: bytes, expect: bytes, reader: TransferReader, channel: int) -> None:
        self.encoded = encoded
        self.expect = expect
        """What the response starts with in the form the reader reads."""
        self.reader = reader
        self.channel = channel


class ToolkitApp(Protocol):
    """A card application that uses the toolkit. All methods take the current time."""

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None: ...

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        """Handles an envelope addressed to this app; returns response data, or None when the
        envelope is not for this app."""
        ...

    def next_command(self, number: int, now: float) -> Command | None:
        """The next proactive command this app wants to run, numbered `number`, or None."""
        ...

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None: ...

    def next_timer(self) -> float | None:
        """When this app next needs `on_timer`, or None."""
        ...

    def on_timer(self, now: float) -> None: ...


@runtime_checkable
class ChannelPump(ToolkitApp, Protocol):
    """The card's BIP server (bip/card.py): the toolkit application that moves the channels'
    bytes. The toolkit asks it `next_step` instead of `next_command`: the transfer commands,
    every request's RECEIVE DATA and every SEND DATA of a response, come as `Transfer`s, so
    that neither side builds command or response objects on the gateway's hot path. Its
    `next_command` gives the same commands typed (the `ToolkitApp` contract)."""

    def next_step(self, number: int, now: float) -> Command | Transfer | None:
        """`next_command`, with the transfer commands as `Transfer`s."""
        ...


Ask = Callable[[int, float], Command | Transfer | None]


class State(Enum):
    IDLE = auto()
    PENDING = auto()
    """A command is waiting to be fetched (the card answers 91 XX)."""
    FETCHED = auto()
    """The terminal fetched it; a TERMINAL RESPONSE is due."""


_IDLE = State.IDLE
_PENDING = State.PENDING
_FETCHED = State.FETCHED


@dataclass(slots=True)
class Pending:
    command: Command | Transfer
    encoded: bytes
    owner: ToolkitApp

    def typed(self) -> Command:
        """The command as an object (a raw one decoded from its bytes, once)."""
        command = self.command
        if isinstance(command, Transfer):
            command = self.command = decode_command(self.encoded)
        return command


class Toolkit:
    def __init__(self) -> None:
        self.apps: list[ToolkitApp] = []
        self._ask: list[Ask] = []
        """Each app's way to its next command: `next_step` for a `ChannelPump`."""
        self.profile: TerminalProfile | None = None
        self.state = State.IDLE
        self.pending: Pending | None = None
        self._number = 0
        self._turn = 0
        self.timers_due = float("-inf")
        """When `poll` next checks the apps' timers (every TIMER_GRANULARITY seconds)."""
        self._faults: set[tuple[str, str, str, str]] = set()
        """Application failures logged in full already."""

    def register(self, app: ToolkitApp) -> None:
        self.apps.append(app)
        self._ask.append(app.next_step if isinstance(app, ChannelPump) else app.next_command)

    def poll(self, now: float) -> int:
        """Runs due timers and, when idle, asks the apps (in turn) for a command. Returns the
        length of the pending command, 0 if none."""
        if now >= self.timers_due:
            self.run_timers(now)
        state = self.state
        if state is _IDLE:
            if self.profile is None:
                return 0
            apps = self.apps
            n = len(apps)
            number = self._number % 0xFE + 1  # §8.6: command numbers 01..FE
            if n == 1:  # one app: no turns to take
                app = apps[0]
                try:
                    command = self._ask[0](number, now)
                except Exception as e:  # noqa: BLE001 - one app's bug stops no other
                    self._app_failed(app, "next_command", e)
                    return 0
                return 0 if command is None else self._pend(command, app, number)
            for k in range(n):
                i = (self._turn + k) % n
                app = apps[i]
                try:
                    command = self._ask[i](number, now)
                except Exception as e:  # noqa: BLE001 - one app's bug stops no other
                    self._app_failed(app, "next_command", e)
                    continue
                if command is not None:
                    self._turn = (self._turn + k + 1) % n
                    return self._pend(command, app, number)
            return 0
        if state is _PENDING and self.pending is not None:
            return len(self.pending.encoded)
        return 0

    def _pend(self, command: Command | Transfer, app: ToolkitApp, number: int) -> int:
        self._number = number
        encoded = command.encoded if isinstance(command, Transfer) else command.encode()
        self.pending = Pending(command, encoded, app)
        self.state = _PENDING
        return len(encoded)

    def run_timers(self, now: float) -> None:
        """Runs the apps' due timers (part of `poll`)."""
        self.timers_due = now + TIMER_GRANULARITY
        for app in self.apps:
            due = app.next_timer()
            if due is not None and due <= now:
                try:
                    app.on_timer(now)
                except Exception as e:  # noqa: BLE001 - one app's bug stops no other
                    self._app_failed(app, "on_timer", e)

    def _app_failed(self, app: ToolkitApp, where: str, error: Exception) -> None:
        """Logs an application's failure (skipped this turn; the others carry on): in full
        the first time, then, as the same fault tends to recur on every poll, at debug level."""
        key = (type(app).__name__, where, type(error).__name__, str(error)[:200])
        if key in self._faults:
            log.debug("%s.%s failed again: %r", key[0], where, error)
            return
        if len(self._faults) >= 64:
            self._faults.clear()
        self._faults.add(key)
        log.error("toolkit application %s.%s failed: %r", key[0], where, error, exc_info=error)

    def fetch_response(self, le: int, now: float) -> bytes:
        """The response APDU to FETCH with `le` (1..256) expected bytes: the pending command
        and 90 00, or 6C XX when `le` is too short, or 69 85 when nothing waits to be fetched.
        Due timers run first (as `poll` runs them), before the command is marked fetched: if
        an app's timer fails, the command is still there to fetch."""
        pending = self.pending
        if pending is None:
            return _NOT_SATISFIED
        encoded = pending.encoded
        if le < len(encoded):
            return (0x6C00 | len(encoded)).to_bytes(2, "big")
        if self.state is not _PENDING:
            return _NOT_SATISFIED  # already fetched: the terminal owes its TR
        if now >= self.timers_due:
            self.run_timers(now)
        self.state = _FETCHED
        return encoded + b"\x90\x00"

    def terminal_response_bytes(self, data: bytes, now: float) -> bool:
        """Hands a TERMINAL RESPONSE's bytes to the app whose command it answers: read from
        the bytes by the channel pump that built a `Transfer`, decoded otherwise. False when no
        fetched command matches; DecodeError when the bytes do not decode."""
        if self.terminal_response_raw(data, now):
            return True
        return self.terminal_response(TerminalResponse.decode(data), now)

    def fetch(self) -> bytes | None:
        if self.state is not State.PENDING or self.pending is None:
            return None
        self.state = State.FETCHED
        return self.pending.encoded

    def terminal_response_raw(self, data: bytes, now: float) -> bool:
        """Hands the TR bytes to the reader of a fetched `Transfer`. True when it read them;
        False (nothing done) when no `Transfer` was fetched or the reader does not read this
        form: `terminal_response` with the decoded TR then, as for any command."""
        pending = self.pending
        if pending is None or self.state is not _FETCHED:
            return False
        command = pending.command
        if not isinstance(command, Transfer):
            return False
        reader = command.reader
        if reader is read_done:  # the most frequent by far (SEND DATA): nothing to run
            expect = command.expect
            if len(data) == len(expect) + 1 and data.startswith(expect):
                self.state = _IDLE
                self.pending = None
                return True
            return False
        # Settled before the reader runs, as `terminal_response` settles before the app.
        self.state = _IDLE
        self.pending = None
        if reader(command, data, now):
            return True
        self.state = _FETCHED
        self.pending = pending
        return False

    def terminal_response(self, response: TerminalResponse, now: float) -> bool:
        """Delivers a TR to the app whose command it answers. False if no command was fetched
        or the command details do not echo it."""
        pending = self.pending
        if self.state is not State.FETCHED or pending is None:
            return False
        command = pending.typed()
        details = command.details
        if response.details is not details and response.details != details:
            log.warning("terminal response echoes %s, expected %s", response.details, details)
            return False
        self.state = State.IDLE
        self.pending = None
        pending.owner.on_terminal_response(command, response, now)
        return True

    def terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        # A new terminal (after a reset): a command fetched by the old one gets no TR.
        self.state = State.IDLE
        self.pending = None
        self.profile = profile
        for app in self.apps:
            try:
                app.on_terminal_profile(profile, now)
            except Exception as e:  # noqa: BLE001 - one app's bug stops no other
                self._app_failed(app, "on_terminal_profile", e)

    def envelope(self, envelope: Envelope, now: float) -> bytes | None:
        for app in self.apps:
            out = app.on_envelope(envelope, now)
            if out is not None:
                return out
        return None

    def next_timer(self) -> float | None:
        times = [t for app in self.apps if (t := app.next_timer()) is not None]
        return min(times) if times else None
