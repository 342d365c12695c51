"""The terminal's CAT engine (ETSI TS 102 221 §7.4.2, TS 102 223 §4-6), sans-IO.

It decides the next command APDU to send to the card and digests each response:
TERMINAL PROFILE once, then FETCH whenever the card answers 91 XX, the TERMINAL RESPONSE to
each proactive command, and ENVELOPEs for the BIP events. Everything about sockets comes out
as actions (`bip.terminal.GatewayAction`) for the shell to carry out.

Envelopes are sent between a TERMINAL RESPONSE and the next FETCH when the card has a command
waiting: a long transfer on one channel must not delay the news of a client connecting on
another. A card that cannot take one answers 93 00 and it is sent again later.

SMS-PP data download (TS 102 223 §7.1, 3GPP TS 31.111 §7.1.1.2) goes the same way: `deliver_sms`
queues the ENVELOPE, it is sent when no TERMINAL RESPONSE is owed, and the card's answer comes
back as an `SmsResult` through the caller's callback."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum, auto

from openscws.apdu.command import CommandApdu, Ins
from openscws.bip.terminal import (
    DATA_EVENTS,
    ChannelFree,
    Channels,
    ChannelState,
    GatewayAction,
    Mode,
    PendingEvent,
)
from openscws.cat import transfer
from openscws.cat.commands import (
    CloseChannel,
    Command,
    GetChannelStatus,
    MoreTime,
    OpenChannel,
    PollingOff,
    PollInterval,
    ReceiveData,
    SendData,
    SetUpEventList,
    UnknownCommand,
    decode_command,
)
from openscws.cat.envelopes import (
    SmsPpDownload,
    clients_waiting_event,
    encode_channel_status_event,
    encode_data_available,
)
from openscws.cat.layout import MissingObject
from openscws.cat.objects import (
    Address,
    CommandDetails,
    Duration,
    Event,
    GeneralResult,
    Result,
    SmsTpdu,
)
from openscws.cat.profile import GATEWAY_PROFILE, TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import CatError, DecodeError

log = logging.getLogger(__name__)

CLA_CAT = 0x80


class Phase(Enum):
    START = auto()
    """TERMINAL PROFILE not yet sent."""
    RUNNING = auto()
    WAITING = auto()
    """A command APDU is with the card; `receive_response` comes next."""
    BLOCKED = auto()
    """A proactive command awaits the shell (a TCP connect, or listening on a port) before
    its TR."""


class SmsStatus(StrEnum):
    """What became of an SMS-PP data download (3GPP TS 31.111 §7.1.1.2): the value names what
    the network side is told (RP-ACK, RP-ACK with PoR, RP-ERROR "busy", RP-ERROR)."""

    DELIVERED = "delivered"
    """90 00 or 91 XX with no data: RP-ACK."""
    POR = "por"
    """Response data (the PoR user data) with 90 00 / 91 XX: RP-ACK carrying it."""
    BUSY = "busy"
    """93 00, still after the retries: RP-ERROR "SIM Application Toolkit Busy"."""
    ERROR = "error"
    """62 XX / 63 XX (with their response data, if any), 6F XX or anything else: RP-ERROR
    "(U)SIM data download error"."""


@dataclass(frozen=True, slots=True)
class SmsResult:
    status: SmsStatus
    sw: int
    """The status word that decided it (for POR the one after the data)."""
    data: bytes = b""


SmsCallback = Callable[[SmsResult], None]


@dataclass(slots=True)
class _SmsJob:
    envelope: bytes
    on_result: SmsCallback
    tries: int = 0
    get_response: int | None = None
    """Le of the GET RESPONSE owed next (T=0: 61 XX / 9F XX, or a warning without data)."""
    warning: int | None = None
    """A 62 XX / 63 XX the card answered: the result is an error whatever GET RESPONSE says."""
    le_retried: bool = False


_START = Phase.START
_RUNNING = Phase.RUNNING
_WAITING = Phase.WAITING


@dataclass(frozen=True, slots=True)
class Sent:
    """What the APDU in flight was, to read its answer."""

    kind: Ins
    event: PendingEvent | None = None
    sms: _SmsJob | None = field(default=None, compare=False)


_SENT_TR = Sent(Ins.TERMINAL_RESPONSE)
_SENT_FETCH = Sent(Ins.FETCH)
# The Data available events, one instance per channel (bip.terminal), each sent as itself.
_SENT_DATA_EVENTS = {c: Sent(Ins.ENVELOPE, e) for c, e in DATA_EVENTS.items()}
# APDU headers by length byte (TS 102 221 §10.1.2): every TR, FETCH and event ENVELOPE.
_TR_HEADS = [bytes((CLA_CAT, Ins.TERMINAL_RESPONSE, 0, 0, n)) for n in range(256)]
_ENVELOPE_HEADS = [bytes((CLA_CAT, Ins.ENVELOPE, 0, 0, n)) for n in range(256)]
_FETCHES = [bytes((CLA_CAT, Ins.FETCH, 0, 0, n)) for n in range(256)]
_FETCH = Ins.FETCH
# The transfer commands' plain forms: the codec the card uses too (cat/transfer.py).
_read_send_data = transfer.read_send_data
_read_receive_data = transfer.read_receive_data
_send_data_tr = transfer.send_data_tr
_receive_data_tr = transfer.receive_data_tr
_transfer_error_tr = transfer.error_tr
_data_available = transfer.data_available
_ENVELOPE = Ins.ENVELOPE
_TERMINAL_RESPONSE = Ins.TERMINAL_RESPONSE
MAX_ENVELOPE = 255
"""ENVELOPE data is one short APDU (TS 102 221 §10.1: Lc is one byte)."""


class TerminalEngine:
    def __init__(
        self,
        profile: TerminalProfile = GATEWAY_PROFILE,
        *,
        max_buffer_size: int = 65535,
        poll_interval: float = 1.0,
        sms_busy_retries: int = 5,
        sms_retry_interval: float = 0.5,
    ) -> None:
        self.profile = profile
        self.channels = Channels(max_buffer_size=max_buffer_size, max_channels=profile.channels)
        self.phase = Phase.START
        self.poll_interval = poll_interval
        self.events_enabled: frozenset[int] = frozenset()
        self._fetch_len = 0
        self._tr: bytes | None = None
        self._sent: Sent | None = None
        self._last_poll = 0.0
        self._deferred_free: list[int] = []  # channel ids
        self._deferred_known: list[int] = []  # channel ids
        self._blocked: tuple[OpenChannel, int] | None = None
        self._listening: OpenChannel | None = None
        """A server-mode OPEN CHANNEL waiting for the shell's `listen_result`."""
        self.polling = True
        self.sms_busy_retries = sms_busy_retries
        """93 00 answers to one SMS-PP download before it is reported BUSY (TS 31.111 lets
        the terminal retry or give up)."""
        self.sms_retry_interval = sms_retry_interval
        self._sms: deque[_SmsJob] = deque()
        self._sms_not_before = 0.0

    # -- APDU pump -------------------------------------------------------------------------------

    def next_apdu(self, now: float) -> bytes | None:
        """The next command APDU for the card, or None when there is nothing to do now."""
        phase = self.phase
        if phase is _START:
            self._sent = Sent(Ins.TERMINAL_PROFILE)
            self.phase = _WAITING
            return CommandApdu(CLA_CAT, Ins.TERMINAL_PROFILE, 0, 0, self.profile.encode()).encode()
        if phase is not _RUNNING:
            return None
        tr = self._tr
        if tr is not None:
            self._tr = None
            self._sent = _SENT_TR
            self.phase = _WAITING
            return _TR_HEADS[len(tr)] + tr
        if self._sms:
            sms_apdu = self._sms_apdu(now)
            if sms_apdu is not None:
                return sms_apdu
        events = self.channels.events
        while events:
            event = events.popleft()
            envelope = self._encode_event(event)
            if envelope is not None:
                sent = _SENT_DATA_EVENTS.get(event.channel)
                if sent is None or sent.event is not event:
                    sent = Sent(Ins.ENVELOPE, event)
                # CommandApdu(CLA_CAT, Ins.ENVELOPE, 0, 0, envelope).encode(), case 3
                return self._send(sent, _ENVELOPE_HEADS[len(envelope)] + envelope)
        if self._fetch_len:
            self._sent = _SENT_FETCH
            self.phase = _WAITING
            return _FETCHES[self._fetch_len & 0xFF]
        if self.polling and now - self._last_poll >= self.poll_interval:
            self._last_poll = now
            return self._send(Sent(Ins.STATUS), bytes((CLA_CAT, Ins.STATUS, 0x00, 0x0C, 0x00)))
        return None

    def _send(self, sent: Sent, apdu: bytes) -> bytes:
        self._sent = sent
        self.phase = _WAITING
        return apdu

    def next_poll(self) -> float | None:
        """When the engine next wants to poll the card, if it is otherwise idle."""
        return self._last_poll + self.poll_interval if self.polling else None

    def _encode_event(self, event: PendingEvent) -> bytes | None:
        channel = self.channels.channels.get(event.channel)
        if channel is None:
            if event.kind == "waiting" and Event.CHANNEL_STATUS in self.events_enabled:
                waiting = event.port in self.channels.waiting_ports
                return clients_waiting_event(event.port, waiting).encode()
            return None
        if event.kind == "data":
            rx = channel.rx
            if Event.DATA_AVAILABLE not in self.events_enabled or not rx:
                return None
            if channel.mode is Mode.SERVER:
                return _data_available(channel.server_state, channel.id, len(rx))
            return encode_data_available(channel.status(), len(rx))
        if Event.CHANNEL_STATUS not in self.events_enabled:
            return None
        return encode_channel_status_event(channel.status(event.further))

    def receive_response(self, raw: bytes, now: float) -> None:
        sent = self._sent
        if self.phase is not _WAITING or sent is None:
            raise RuntimeError("receive_response without a command in flight")
        self.phase = _RUNNING
        self._sent = None
        n = len(raw)
        if n < 2:
            log.error("card answered %s with %d bytes", sent.kind.name, n)
            if sent.sms is not None:
                self._sms_done(sent.sms, SmsResult(SmsStatus.ERROR, 0))
            return
        sw1 = raw[n - 2]
        kind = sent.kind
        if kind is _FETCH:
            self._fetch_len = 0
            if sw1 == 0x91 or (sw1 == 0x90 and raw[n - 1] == 0):
                # Bulk transfer is a long run of SEND DATA, and every request starts with a
                # RECEIVE DATA: their plain forms are read straight from the response (see
                # _run).
                tr = None
                if raw[0] == 0xD0:
                    if n > 16:
                        tr = self._fast_send_data(raw, n - 2)
                    elif n == 16 and raw.startswith(b"\xd0\x0c\x81") and raw[5] == 0x42:
                        tr = self._fast_receive_data(raw)  # reads raw[:14] only
                if tr is not None:
                    self._tr = tr
                else:
                    self._run(raw[: n - 2], now)
                if sw1 == 0x91:
                    self._fetch_len = raw[n - 1] or 256
                return
            log.error("FETCH refused with %02X%02X", sw1, raw[n - 1])
        elif kind is _TERMINAL_RESPONSE:
            if self._deferred_free:
                for channel_id in self._deferred_free:
                    self._free(channel_id)
                self._deferred_free.clear()
            if self._deferred_known:
                for channel_id in self._deferred_known:
                    self.channels.card_knows(channel_id)
                self._deferred_known.clear()
        elif sent.sms is not None:
            self._sms_answered(sent.sms, raw, now)
            return
        elif kind is _ENVELOPE:
            if sw1 == 0x93 and raw[n - 1] == 0:  # SW.TOOLKIT_BUSY
                assert sent.event is not None
                self.channels.events.appendleft(sent.event)
            elif sent.event is not None:
                self._event_delivered(sent.event)
        if sw1 == 0x91:
            self._fetch_len = raw[n - 1] or 256
        elif sw1 == 0x90 and raw[n - 1] == 0:
            self._fetch_len = 0
        elif sw1 not in (0x90, 0x91, 0x93):
            log.warning("card answered %s with SW %02X%02X", sent.kind.name, sw1, raw[n - 1])

    def _event_delivered(self, event: PendingEvent) -> None:
        channel = self.channels.channels.get(event.channel)
        if channel is None or event.kind != "status" or channel.mode is not Mode.SERVER:
            return
        if channel.state is ChannelState.ESTABLISHED:
            # A new client: the card's waiting command (if any) predates the news of it.
            if self._fetch_len:
                self._deferred_known.append(channel.id)
            else:
                channel.known = True
            return
        if channel.state is not ChannelState.HELD:
            return
        if self._fetch_len:
            # The card's waiting command predates this news: free the channel after it runs.
            self._deferred_free.append(channel.id)
        else:
            self._free(channel.id)

    def _free(self, channel_id: int) -> None:
        port = self.channels.card_told(channel_id)
        if port is not None:
            self.channels.actions.append(ChannelFree(port))

    # -- proactive commands ----------------------------------------------------------------------

    def _run(self, raw: bytes, now: float) -> None:
        # Bulk transfer is a long run of SEND DATA: take its plain form (no alpha id, icon or
        # frame) straight from the bytes. Anything else goes through the typed decoder, and
        # the tests check that both give the same TERMINAL RESPONSE.
        if len(raw) > 14 and raw[0] == 0xD0:
            tr = self._fast_send_data(raw, len(raw))
            if tr is not None:
                self._tr = tr
                return
        elif len(raw) == 14 and raw[:3] == b"\xd0\x0c\x81" and raw[5] == 0x42:
            tr = self._fast_receive_data(raw)
            if tr is not None:
                self._tr = tr
                return
        try:
            command = decode_command(raw)
        except MissingObject as e:
            self._tr = self._error_tr(raw, Result(GeneralResult.REQUIRED_VALUES_MISSING), e)
            return
        except DecodeError as e:
            self._tr = self._error_tr(raw, Result(GeneralResult.DATA_NOT_UNDERSTOOD), e)
            return
        try:
            response = self._execute(command)
        except CatError as e:
            log.info("%s refused: %s", type(command).__name__, e)
            response = TerminalResponse(
                details=command.details, result=Result(e.result, e.additional)
            )
        if response is not None:
            self._tr = response.encode()

    def _fast_send_data(self, raw: bytes, n: int) -> bytes | None:
        """The TR of a plain SEND DATA in `raw[:n]` (a FETCH response, before its status
        word), run; None for any other form."""
        found = _read_send_data(raw, n)
        if found is None:
            return None
        details, channel, start, immediately = found
        try:
            free = self.channels.send_data(channel, raw[start:n], immediately)
        except CatError as e:
            return _transfer_error_tr(details, e.result, e.additional)
        return _send_data_tr(details, free)

    def _fast_receive_data(self, raw: bytes) -> bytes | None:
        """The TR of a plain RECEIVE DATA in `raw[:14]`, run; None for any other form."""
        found = _read_receive_data(raw)
        if found is None:
            return None
        details, channel, asked = found
        try:
            data, left, general = self.channels.receive_data(channel, asked)
        except CatError as e:
            return _transfer_error_tr(details, e.result, e.additional)
        return _receive_data_tr(details, general, data, left)

    def _error_tr(self, raw: bytes, result: Result, error: Exception) -> bytes:
        log.warning("proactive command %s not understood: %s", raw.hex(), error)
        details = CommandDetails(0, 0, 0)
        # Echo the command details if they can be found (§6.8.1).
        if len(raw) >= 7 and raw[0] == 0xD0:
            start = 3 if raw[1] == 0x81 else 2
            if raw[start] & 0x7F == 0x01 and raw[start + 1] == 3 and len(raw) >= start + 5:
                details = CommandDetails(raw[start + 2], raw[start + 3], raw[start + 4])
        return TerminalResponse(details=details, result=result).encode()

    def _execute(self, command: Command) -> TerminalResponse | None:
        ok = Result(GeneralResult.OK)
        match command:
            case SendData():
                return self.channels.send(command)
            case ReceiveData():
                return self.channels.receive(command)
            case OpenChannel():
                if command.server_mode:
                    response = self.channels.open_server(command)
                    if response is None:  # the shell listens first
                        self._listening = command
                        self.phase = Phase.BLOCKED
                    return response
                channel_id, refused = self.channels.open_client(command)
                if refused is not None:
                    return refused
                self._blocked = (command, channel_id)
                self.phase = Phase.BLOCKED
                return None
            case CloseChannel():
                return self.channels.close(command)
            case GetChannelStatus():
                return TerminalResponse(
                    details=command.details, result=ok, channel_statuses=self.channels.statuses()
                )
            case SetUpEventList():
                self.events_enabled = frozenset(command.events.events)
                # A card that (re)starts its event list hears which ports have clients
                # waiting now, not only of changes to come.
                for port in sorted(self.channels.waiting_ports):
                    self.channels.events.append(PendingEvent(0, "waiting", port=port))
                return TerminalResponse(details=command.details, result=ok)
            case PollInterval():
                seconds = _seconds(command.duration)
                self.poll_interval = max(seconds, 0.1)
                self.polling = True
                return TerminalResponse(details=command.details, result=ok)
            case PollingOff():
                self.polling = False
                return TerminalResponse(details=command.details, result=ok)
            case MoreTime():
                return TerminalResponse(details=command.details, result=ok)
            case UnknownCommand():
                return TerminalResponse(
                    details=command.details, result=Result(GeneralResult.BEYOND_CAPABILITIES)
                )
            case _:
                return TerminalResponse(
                    details=command.details, result=Result(GeneralResult.TYPE_NOT_UNDERSTOOD)
                )

    # -- shell news ------------------------------------------------------------------------------

    def remote_connected(self, channel_id: int, ok: bool) -> None:
        """The shell's answer to a `Connect` action."""
        if self._blocked is None or self._blocked[1] != channel_id:
            return
        command, _ = self._blocked
        self._blocked = None
        self._tr = self.channels.client_connect_result(command, channel_id, ok).encode()
        self.phase = Phase.RUNNING

    def listen_result(self, port: int, ok: bool) -> None:
        """The shell's answer to a `Listen` action: listening on `port`, or not."""
        command = self._listening
        if command is None or command.transport is None or command.transport.port != port:
            return
        self._listening = None
        self._tr = self.channels.listen_result(command, ok).encode()
        self.phase = Phase.RUNNING

    def clients_waiting(self, port: int, waiting: bool) -> None:
        """Whether TCP clients of `port` wait for a channel (`Channels.clients_waiting`)."""
        self.channels.clients_waiting(port, waiting)

    def client_connected(self, port: int) -> int | None:
        # A channel whose freeing is deferred is HELD: not bound before the card's stale
        # CLOSE CHANNEL has run.
        return self.channels.client_connected(port)

    def client_data(self, channel_id: int, data: bytes) -> int:
        return self.channels.client_data(channel_id, data)

    def client_closed(self, channel_id: int) -> None:
        self.channels.client_closed(channel_id)

    def pop_actions(self) -> list[GatewayAction]:
        actions = list(self.channels.actions)
        self.channels.actions.clear()
        return actions

    # -- SMS-PP data download --------------------------------------------------------------------

    def deliver_sms(
        self, tpdu: bytes, on_result: SmsCallback, *, service_centre: Address | None = None
    ) -> None:
        """Queues an ENVELOPE (SMS-PP download): device identities network to UICC, the
        service-centre address when given, and the SMS-DELIVER `tpdu` as received. `on_result`
        is called once, from `receive_response`, with what the card made of it. Raises
        ValueError when the envelope would not fit one APDU."""
        envelope = SmsPpDownload(tpdu=SmsTpdu(tpdu), address=service_centre).encode()
        if len(envelope) > MAX_ENVELOPE:
            raise ValueError(f"SMS-PP envelope of {len(envelope)} bytes (at most {MAX_ENVELOPE})")
        self._sms.append(_SmsJob(envelope, on_result))

    def next_sms(self) -> float | None:
        """When a queued SMS-PP download can next be sent (after a 93 00), if one is queued."""
        return self._sms_not_before if self._sms else None

    def _sms_apdu(self, now: float) -> bytes | None:
        job = self._sms[0]
        if job.get_response is not None:
            # T=0 (TS 102 221 §7.3.1.1.4): the GET RESPONSE comes right after; same CLA as
            # the command, as pySim sends it.
            le = job.get_response
            return self._send(Sent(Ins.GET_RESPONSE, sms=job), bytes((CLA_CAT, 0xC0, 0, 0, le)))
        if now < self._sms_not_before:
            return None
        envelope = job.envelope
        return self._send(Sent(_ENVELOPE, sms=job), _ENVELOPE_HEADS[len(envelope)] + envelope)

    def _sms_answered(self, job: _SmsJob, raw: bytes, now: float) -> None:
        n = len(raw)  # at least 2: receive_response saw to it
        sw1, sw2 = raw[n - 2], raw[n - 1]
        sw = (sw1 << 8) | sw2
        data = raw[: n - 2]
        if sw1 == 0x91:
            self._fetch_len = sw2 or 256
        elif sw1 == 0x90:
            self._fetch_len = 0
        job.get_response = None
        if sw1 in (0x90, 0x91, 0x92):
            if job.warning is not None:
                self._sms_done(job, SmsResult(SmsStatus.ERROR, job.warning, data))
            elif data:
                self._sms_done(job, SmsResult(SmsStatus.POR, sw, data))
            else:
                self._sms_done(job, SmsResult(SmsStatus.DELIVERED, sw))
        elif sw == 0x9300 and job.warning is None:
            job.tries += 1
            if job.tries > self.sms_busy_retries:
                self._sms_done(job, SmsResult(SmsStatus.BUSY, sw))
            else:
                log.info("card busy with the SMS-PP download: retry %d", job.tries)
                self._sms_not_before = now + self.sms_retry_interval
        elif sw1 in (0x61, 0x9F) and job.warning is None:
            job.get_response = sw2
        elif sw1 in (0x62, 0x63) and job.warning is None:
            # A warning: TS 31.111 has the response data, if any, go back in the RP-ERROR.
            # T=0 keeps the data of a case-4 command back until a GET RESPONSE.
            job.warning = sw
            if data:
                self._sms_done(job, SmsResult(SmsStatus.ERROR, sw, data))
            else:
                job.get_response = 0
        elif sw1 == 0x6C and job.warning is not None and not job.le_retried:
            job.le_retried = True
            job.get_response = sw2
        else:
            if job.warning is not None:
                sw = job.warning  # the GET RESPONSE found nothing more to add
            else:
                log.warning("card refused the SMS-PP download: SW %04X", sw)
            self._sms_done(job, SmsResult(SmsStatus.ERROR, sw))

    def _sms_done(self, job: _SmsJob, result: SmsResult) -> None:
        if self._sms and self._sms[0] is job:
            self._sms.popleft()
        try:
            job.on_result(result)
        except Exception:  # a caller's bug must not stop the APDU pump
            log.exception("SMS-PP result callback failed")


def _seconds(duration: Duration) -> float:
    scale = {0x00: 60.0, 0x01: 1.0, 0x02: 0.1}.get(duration.unit, 1.0)
    return duration.interval * scale


__all__ = ["SmsCallback", "SmsResult", "SmsStatus", "TerminalEngine"]
