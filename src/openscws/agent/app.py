"""The card's admin agent (SCWS §11, GP Amd B "RAM over HTTP"): a toolkit application.

1. An SMS-PP data download ENVELOPE brings a TS 102 225 secured command packet. The agent
   checks it against its TAR's keys and counter (`ota.packet.check_command`); a replay, a bad
   checksum or an unknown TAR is refused with its PoR status and nothing starts. An accepted
   packet's counter is stored before anything else happens.
2. The packet carries the Amd B triggering parameters (tag 81). The agent asks the terminal to
   OPEN CHANNEL in "TCP, UICC in client mode" to the admin server they name (or its defaults),
   runs PSK-TLS as the client over the channel, and inside it the Amd B session
   (`amdb.client.AdminSession`), whose commands the SCWS executor applies.
3. A session that fails (no link, TLS refused, the link dropped, an HTTP error) is retried as
   the trigger's retry policy says, resuming with `X-Admin-Resume: true`; the executor drops
   any uncommitted change each time, so the card is as before or wholly updated.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from openscws.agent.credentials import AgentCredentials, AgentSecrets
from openscws.amdb.client import AdminSession, CommandExecutor, Outcome, SessionParams
from openscws.bip.card import StreamHandler
from openscws.bip.client import BipClientLink, LinkState
from openscws.cat.commands import Command, OpenChannel
from openscws.cat.envelopes import Envelope, SmsPpDownload
from openscws.cat.objects import AddressType, BearerDescription, OtherAddress
from openscws.cat.profile import Feature, TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.errors import DecodeError
from openscws.ota.packet import (
    AcceptedCommand,
    CommandRejected,
    check_command,
    proof_of_receipt,
    rejection_receipt,
)
from openscws.ota.sms import SmsDeliver, command_packet_of, response_user_data
from openscws.ota.trigger import TriggerParameters
from openscws.tls.context import Profile, psk_client_context
from openscws.tls.endpoint import TlsClientHandler
from openscws.tls.gnutls import (
    PSK_AGENT_COMPAT_PRIORITY,
    GnutlsPskClientHandler,
    GnutlsUnavailable,
    psk_priority,
)

log = logging.getLogger(__name__)

BAD_TRIGGER = b"\x6a\x80"
"""Response data of the PoR when the packet is authentic but its triggering parameters do not
decode (the status word TS 102 226 uses for wrong data) [our choice]."""


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """Where and how to run one administration session: the trigger over the defaults."""

    address: OtherAddress
    port: int
    buffer_size: int
    bearer: BearerDescription | None
    host: str
    agent_id: str
    uri: str
    psk_identity: str
    retries: int
    retry_delay: float


@dataclass(frozen=True, slots=True)
class SessionReport:
    """How the last session ended (the HTTPReportListener status of GP's API)."""

    ok: bool
    attempts: int
    commands: int
    reason: str | None
    at: float


def _address(text: str) -> OtherAddress:
    ip = ipaddress.ip_address(text)
    kind = AddressType.IPV4 if ip.version == 4 else AddressType.IPV6
    return OtherAddress(kind, ip.packed)


def plan_session(trigger: TriggerParameters, creds: AgentCredentials) -> SessionPlan:
    session = trigger.session
    conn = session.connection
    post = session.http_post
    address = _address(creds.server_address)
    port = creds.server_port
    buffer_size = 1500
    bearer = None
    if conn is not None:
        if conn.destination is not None:
            address = conn.destination
        if conn.transport is not None:
            port = conn.transport.port
        if conn.buffer_size is not None:
            buffer_size = conn.buffer_size.size
        bearer = conn.bearer
    identity = creds.psk_identity
    if session.security is not None:
        identity = session.security.psk_identity.decode("utf-8", "replace")
    retries, delay = creds.retry_count, creds.retry_delay
    if session.retry is not None:
        retries = session.retry.counter
        seconds = session.retry.delay_seconds
        if seconds is not None:
            delay = float(seconds)
    return SessionPlan(
        address=address,
        port=port,
        buffer_size=buffer_size,
        bearer=bearer,
        host=(post.host if post and post.host else creds.server_host),
        agent_id=(post.agent_id if post and post.agent_id else creds.agent_id),
        uri=(post.uri if post and post.uri else creds.server_uri),
        psk_identity=identity,
        retries=retries,
        retry_delay=delay,
    )


class AdminAgentApp:
    """`executor` makes the SCWS command executor for each session (it stages changes and
    commits on the server's say)."""

    def __init__(
        self,
        secrets: AgentSecrets,
        executor: Callable[[], CommandExecutor],
        *,
        tls_profile: Profile = "modern",
        psk_suites: tuple[str, ...] = (),
        record_limit: int | None = 1024,
        handshake_timeout: float = 10.0,
        response_timeout: float = 30.0,
    ) -> None:
        self.secrets = secrets
        self.executor = executor
        self.tls_profile: Profile = tls_profile
        self.psk_priority: str | None = psk_priority(psk_suites) if psk_suites else None
        """The GnuTLS priority the agent offers (None: its profile's; see `_tls`)."""
        if self.psk_priority is None and tls_profile == "compat":
            self.psk_priority = PSK_AGENT_COMPAT_PRIORITY
        self.record_limit = record_limit
        self.handshake_timeout = handshake_timeout
        self.response_timeout = response_timeout
        self.enabled = False
        self.report: SessionReport | None = None
        self.sessions_run = 0
        self._plan: SessionPlan | None = None
        self._queued: SessionPlan | None = None
        self._link: BipClientLink | None = None
        self._session: AdminSession | None = None
        self._attempts = 0
        self._retry_at: float | None = None
        self._context: tuple[str, bytes, ssl.SSLContext] | None = None
        self._tls: TlsClientHandler | GnutlsPskClientHandler | None = None

    @property
    def busy(self) -> bool:
        """A session is under way or due (a retry or a queued trigger)."""
        return self._plan is not None

    # -- ToolkitApp ----------------------------------------------------------------------------

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        self.enabled = profile.has(Feature.OPEN_CHANNEL) and profile.has(Feature.TCP_CLIENT_REMOTE)
        # A reset drops whatever link there was; a due session starts over.
        self._link = None
        self._session = None
        if self._plan is not None and self._retry_at is None:
            self._retry_at = now

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if isinstance(envelope, SmsPpDownload):
            return self._sms(envelope, now)
        if self._link is not None and self._link.on_envelope(envelope, now):
            return b""
        return None

    def next_command(self, number: int, now: float) -> Command | None:
        link = self._link
        if link is None:
            if self._retry_at is not None and now >= self._retry_at and self.enabled:
                self._retry_at = None
                self._new_link()
                link = self._link
            if link is None:
                return None
        command = link.next_command(number, now)
        if command is None and link.state is LinkState.CLOSED:
            self._link_ended(now)
        return command

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        link = self._link
        if link is not None:
            link.on_terminal_response(command, response, now)
            if link.state is LinkState.CLOSED:
                self._link_ended(now)

    def next_timer(self) -> float | None:
        due = self._link.next_timer() if self._link is not None else None
        if self._retry_at is None:
            return due
        return self._retry_at if due is None else min(due, self._retry_at)

    def on_timer(self, now: float) -> None:
        if self._link is not None:
            self._link.on_timer(now)

    # -- the trigger ---------------------------------------------------------------------------

    def _sms(self, envelope: SmsPpDownload, now: float) -> bytes | None:
        try:
            sms = SmsDeliver.decode(envelope.tpdu.tpdu)
            command_packet_of(sms)  # TP-PID 7F, IE 70, not concatenated
        except DecodeError as exc:
            log.info("SMS-PP download is not a command packet for the agent: %s", exc)
            return None
        try:
            accepted = check_command(sms.user_data, self.secrets.tar_table())
        except CommandRejected as exc:
            log.warning("trigger refused: PoR status %02X (%s)", exc.status, exc.reason)
            receipt = rejection_receipt(exc)
            return response_user_data(receipt) if receipt is not None else b""
        if accepted.new_counter is not None:
            # Stored before the trigger acts: a crash from here on cannot let it replay.
            self.secrets.save_counter(accepted.packet.tar, accepted.new_counter)
        return self._trigger(accepted, now)

    def _trigger(self, accepted: AcceptedCommand, now: float) -> bytes:
        creds = self.secrets.credentials()
        try:
            trigger = TriggerParameters.decode(accepted.data)
            if creds is None:
                raise DecodeError("the agent has no credentials", b"", 0)
            plan = plan_session(trigger, creds)
        except (DecodeError, ValueError) as exc:
            log.warning("trigger authentic but unusable: %s", exc)
            return _por(accepted, BAD_TRIGGER)
        if creds.previous_psks and plan.psk_identity == creds.psk_identity:
            # An authentic trigger names the new PSK identity: the server has moved to the
            # keys of the last key change, so the ones it replaced are dropped now.
            self.secrets.set_credentials(creds.settled())
            log.info("admin keys: the server uses the new ones; the replaced keys are dropped")
        log.info(
            "trigger accepted (counter %s): session to %s:%d%s",
            accepted.content.counter,
            _show(plan.address),
            plan.port,
            plan.uri,
        )
        if self._plan is not None:
            self._queued = plan  # runs after the current session
        else:
            self._begin(plan, now)
        return _por(accepted, b"")

    def _begin(self, plan: SessionPlan, now: float) -> None:
        self._plan = plan
        self._attempts = 0
        self._retry_at = now

    # -- the session ---------------------------------------------------------------------------

    def _new_link(self) -> None:
        plan = self._plan
        assert plan is not None
        self._attempts += 1

        def open_command(number: int) -> OpenChannel:
            return OpenChannel.client(
                number,
                address=plan.address,
                port=plan.port,
                buffer_size=plan.buffer_size,
                bearer=plan.bearer,
            )

        self._link = BipClientLink(open_command, self._connected)

    def _connected(self, channel: int, now: float) -> tuple[StreamHandler, bytes]:
        plan = self._plan
        creds = self.secrets.credentials()
        assert plan is not None
        assert creds is not None
        params = SessionParams(
            host=plan.host,
            agent_id=plan.agent_id,
            uri=plan.uri,
            resume=self._attempts > 1,
            response_timeout=self.response_timeout,
        )
        session = AdminSession(params, self.executor(), now)
        self._session = session
        # The trigger's identity picks the key: the current one, or one a key change
        # replaced (a retry of the session that changed them).
        key = creds.psk_for(plan.psk_identity) or creds.psk_key
        tls = self._tls_client(plan.psk_identity, key, session, now)
        self._tls = tls
        log.info("admin link up on channel %d: PSK-TLS as %r", channel, plan.psk_identity)
        return tls, tls.start(now)

    def _tls_client(
        self, identity: str, key: bytes, inner: StreamHandler, now: float
    ) -> TlsClientHandler | GnutlsPskClientHandler:
        """The link's PSK-TLS client. "modern": OpenSSL, TLS 1.2 (`PSK_CIPHERS`). "compat" (or
        explicit `psk_suites`): GnuTLS, so that TLS_PSK_WITH_3DES_EDE_CBC_SHA (SCWS
        §11.1.1.1), which OpenSSL here lacks, is offered too; OpenSSL's "compat" list if
        GnuTLS cannot be used."""
        if self.psk_priority is not None:
            try:
                return GnutlsPskClientHandler(
                    identity,
                    key,
                    inner,
                    priority=self.psk_priority,
                    handshake_timeout=self.handshake_timeout,
                    record_limit=self.record_limit,
                    now=now,
                )
            except GnutlsUnavailable as exc:
                log.warning("admin link without TLS_PSK_WITH_3DES_EDE_CBC_SHA: %s", exc)
        return TlsClientHandler(
            self._psk_context(identity, key),
            inner,
            handshake_timeout=self.handshake_timeout,
            record_limit=self.record_limit,
            now=now,
        )

    def _psk_context(self, identity: str, key: bytes) -> ssl.SSLContext:
        """Making a context costs more than the session's handshake: keep the last one."""
        cached = self._context
        if cached is None or cached[:2] != (identity, key):
            context = psk_client_context(identity, key, profile=self.tls_profile)
            self._context = cached = (identity, key, context)
        return cached[2]

    def _link_ended(self, now: float) -> None:
        link, session, plan = self._link, self._session, self._plan
        tls, self._tls = self._tls, None
        self._link = None
        self._session = None
        if tls is not None and tls.cipher is not None:
            log.info("admin link was PSK-TLS %s %s", tls.version, tls.cipher[0])
        if plan is None or link is None:
            return
        if session is not None and session.outcome is Outcome.DONE:
            self.sessions_run += 1
            self._finish(True, session.commands_run, None, now)
            return
        reason = (session.failure if session is not None else None) or link.failure
        reason = reason or "the link closed before the session ended"
        if self._attempts <= plan.retries:
            self._retry_at = now + plan.retry_delay
            log.warning(
                "admin session attempt %d failed (%s); retry %d of %d in %.0f s",
                self._attempts,
                reason,
                self._attempts,
                plan.retries,
                plan.retry_delay,
            )
            return
        commands = session.commands_run if session is not None else 0
        self._finish(False, commands, reason, now)

    def _finish(self, ok: bool, commands: int, reason: str | None, now: float) -> None:
        self.report = SessionReport(ok, self._attempts, commands, reason, now)
        if ok:
            log.info("admin session done: %d commands, attempt %d", commands, self._attempts)
        else:
            # GP HTTPReportListener HTTP_SESSION_ERROR (0x8001): the retry policy is spent.
            log.error("admin session failed after %d attempts: %s", self._attempts, reason)
        self._plan = None
        self._retry_at = None
        queued, self._queued = self._queued, None
        if queued is not None:
            self._begin(queued, now)


def _por(accepted: AcceptedCommand, data: bytes) -> bytes:
    receipt = proof_of_receipt(accepted, data)
    return response_user_data(receipt) if receipt is not None else b""


def _show(address: OtherAddress) -> str:
    try:
        return str(ipaddress.ip_address(address.address))
    except ValueError:
        return address.address.hex()
