"""The admin server's two loops, around the sans-IO pieces:

* the cards' side: an HTTPS endpoint over PSK-TLS (SCWS §11.1.1, GP Amd B). Each connection is
  the card's own TLS (`tls.endpoint.TlsServerHandler` over a PSK context whose key lookup is
  the card table) around a `CardExchange`: the Amd B exchange (`amdb.server`) driven by the
  job's `RasSession`. The PSK identity the handshake proved names the card: nothing the card
  says in HTTP (X-Admin-From) is trusted for that.
* the trigger loop: due jobs are claimed (`RasService.claim_triggers`, safe with several
  server processes on one PostgreSQL), sealed into a secured command packet with the card's
  next counter, and handed to the SMS sender. A failed send is retried with backoff; a card
  that never calls back is retried once its lease ends (`RasService.reap`).

The database calls run on a small pool of worker threads (`EndpointConfig.db_workers`), never
on the event loop: while one session waits for its transaction to commit, the loop goes on with
the TLS and HTTP of the others, and concurrent commits share the database's log flushes. A
session still takes its steps in order: the next command goes out only once the call before it
has returned. OpenSSL asks for a card's key in a synchronous callback, so the key must be in
memory by then: triggered cards' keys are cached when the trigger is claimed, and for any other
card the PSK identity is read from its ClientKeyExchange (`tls.psk_peek`) and the handshake
waits while a database thread fetches the key. (A TLS 1.3 PSK handshake, which the cards'
"compat" profile does not use, falls back to a lookup inside the callback.)"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from openscws.aio.direct import StreamProtocol
from openscws.amdb.embedded import EmbeddedRequest
from openscws.amdb.server import CardPost, Closed, ServerExchange
from openscws.amdb.wire import ScriptStatus
from openscws.errors import DecodeError, ListenError
from openscws.ota.packet import PorStatus, ResponseContent
from openscws.ota.sms import response_packet_of
from openscws.ras.senders import DeliveryStatus, SendError, SendResult, SmsSender
from openscws.ras.service import ContentItem, Outcome, RasService, SessionWork, TriggerWork
from openscws.ras.session import RasSession, Verdict
from openscws.tls import gnutls
from openscws.tls.context import Profile, psk_server_context
from openscws.tls.dispatch import TlsDispatcher, openssl_suite_codes
from openscws.tls.endpoint import TlsServerHandler
from openscws.tls.psk import PskKeys
from openscws.tls.psk_peek import PskIdentityPeek

__all__ = ["CardExchange", "EndpointConfig", "RasServer"]

log = logging.getLogger(__name__)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    host: str = "127.0.0.1"
    port: int = 4443
    uri: str = "/scws/admin"
    tls_profile: Profile = "modern"
    psk_hint: str | None = None
    """PSK identity hint sent to the cards (RFC 4279 §2); None: none."""
    """"compat": also TLS 1.0/1.1 and TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS."""
    handshake_timeout: float = 10.0
    trigger_interval: float = 0.5
    trigger_batch: int = 50
    trigger_rounds: int = 2
    """Batches of triggers in flight at once: the next batch is claimed while the senders
    still await the previous one's outcomes (a SIP push's result notification comes back
    several hops later), so delivery latency does not cap the rate. Two, not more: with
    more in flight a SIP push waits longer than timer E's first interval (500 ms) and the
    PPG's retransmissions cost more than the overlap gains (measured with
    benchmarks/bench_push.py)."""
    owner: str = ""
    """This server process's name in job leases; default host:pid."""
    release_own_leases: bool = False
    """At start, release the jobs leased under `owner` (a name kept across restarts, see
    `ras.owner`: they belong to this server's previous, dead, run)."""
    db_workers: int = 4
    """Threads making database calls (each holds at most one pooled connection)."""


def _nothing() -> None:
    pass


def _gnutls_3des() -> bool:
    why = gnutls.available()
    if why is not None:
        log.warning("admin server: TLS_PSK_WITH_3DES_EDE_CBC_SHA not offered: %s", why)
        return False
    return True


class CardExchange:
    """One card connection's plaintext side: a `StreamHandler` for `TlsServerHandler`. The
    database calls of a step run in the server's worker threads; when one returns, the step
    goes on and `wake` (set by the shell) sends what it produced."""

    def __init__(self, server: RasServer, now: float) -> None:
        self.server = server
        self.identity: str | None = None
        self.exchange = ServerExchange()
        self.work: SessionWork | None = None
        self.session: RasSession | None = None
        self.started = now
        self.wake: Callable[[], None] = _nothing
        self.tls: TlsServerHandler | TlsDispatcher | None = None
        """The connection's TLS endpoint (set by the shell), for the negotiated suite."""
        self._ended = False
        self._closed = False
        self._first = True
        self._busy: asyncio.Task[None] | None = None
        self._lease_until = 0.0
        self._queued: deque[CardPost] = deque()

    # -- StreamHandler -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        for event in self.exchange.receive_data(data):
            if isinstance(event, CardPost):
                if self._busy is not None:
                    self._queued.append(event)
                else:
                    self._post(event, now)
            elif isinstance(event, Closed):
                self._gone(event.reason, now)

    def data_to_send(self, limit: int | None = None) -> bytes:
        return self.exchange.data_to_send()

    @property
    def should_close(self) -> bool:
        return self.exchange.should_close

    @property
    def idle(self) -> bool:
        return not self.exchange.awaiting_answer and self._busy is None

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def shutdown(self) -> None:
        pass

    wants_input = True

    def close_after_response(self) -> None:
        pass  # one session a connection: it ends when the session does

    def close(self) -> None:
        self._gone("the connection closed", time.time())

    # -- the session -----------------------------------------------------------------------------

    def _post(self, post: CardPost, now: float) -> None:
        if self._first:
            self._first = False
            if self.identity is None:
                self.exchange.send_error(403, "no PSK identity")
                return
            self.spawn(self._open(post, now))
            return
        self._step(post, now)

    def spawn(self, step: Coroutine[None, None, None]) -> None:
        """Runs `step` as this connection's next step (one at a time; see `_guarded`)."""
        task = asyncio.get_running_loop().create_task(self._guarded(step))
        self._busy = task
        steps = self.server.steps
        steps.add(task)
        task.add_done_callback(steps.discard)

    async def _guarded(self, step: Coroutine[None, None, None]) -> None:
        try:
            await step
        except Exception:
            log.exception("admin session of %r", self.identity)
            if not self._closed:
                self.exchange.send_error(500, "the admin server failed")
        finally:
            self._busy = None
        if self._closed:
            self._gone("the connection closed", time.time())
        else:
            while self._queued and self._busy is None and not self._closed:
                self._post(self._queued.popleft(), time.time())
        self.wake()

    async def _open(self, post: CardPost, now: float) -> None:
        server = self.server
        assert self.identity is not None
        opened = await server.db(
            _open_with_content, server.service, self.identity, server.owner, now
        )
        if opened is None:
            log.info("card %r called in with nothing to do: 204", self.identity)
            self._ended = True
            if not self._closed:
                self.exchange.send_end()
            return
        work, items = opened
        self.work = work
        self._lease_until = work.lease_until.timestamp()
        self.session = RasSession(
            work.job_id,
            work.operation_dicts(),
            lambda path, version: items[(path, version)],
            maybe_applied=work.maybe_applied or post.resume,
        )
        suite = _negotiated(self.tls)
        self.session.log.append(f"PSK-TLS as {self.identity!r}: {suite}")
        log.info(
            "card %s (%r) in session for job %s, attempt %d%s, %s",
            work.iccid,
            post.agent_id,
            work.job_id,
            work.attempt,
            ", resumed" if post.resume else "",
            suite,
        )
        if not self._closed:
            self._step(post, now)

    def _step(self, post: CardPost, now: float) -> None:
        session = self.session
        if session is None:
            self.exchange.send_end()
            return
        answer = post.embedded
        if post.script_status not in (None, ScriptStatus.OK):
            session.log.append(f"card reported script status {post.script_status}")
            answer = None
        command = session.next_command(answer)
        if command is not None:
            if self._lease_due(now):
                self.spawn(self._renew_then_send(session, command, now))
            else:
                self._send(command)
            return
        # The verdict is stored before the card hears the end: a done job is done even if
        # the 204 is lost, and the card has committed already.
        self.spawn(self._finish_then_end(session, now))

    def _send(self, command: EmbeddedRequest) -> None:
        assert self.work is not None
        self.exchange.send_command(command, f"{self.server.config.uri}/{self.work.job_id}")

    def _lease_due(self, now: float) -> bool:
        """Past half the lease: renew it before the next command (a long session must not
        be reaped as dead while it still makes progress)."""
        ttl = self.server.service.policy.session_ttl.total_seconds()
        return now > self._lease_until - ttl / 2

    async def _renew_then_send(
        self, session: RasSession, command: EmbeddedRequest, now: float
    ) -> None:
        server = self.server
        assert self.work is not None
        kept = await server.db(
            server.service.renew_lease, self.work.job_id, server.owner, _utc(now)
        )
        if self._closed:
            return
        if kept:
            self._lease_until = now + server.service.policy.session_ttl.total_seconds()
            self._send(command)
            return
        # The lease ran out and the job went back to the queue (or to another server): no
        # commit from here; the card drops what it staged.
        session.verdict = Verdict.RETRY
        session.reason = "the job's lease was lost mid-session"
        session.log.append(session.reason)
        await self._finish(session, now)
        self.exchange.send_error(503, "the job moved on: try again later")

    async def _finish_then_end(self, session: RasSession, now: float) -> None:
        await self._finish(session, now)
        if not self._closed:
            self.exchange.send_end()

    async def _finish(self, session: RasSession, now: float) -> None:
        if self._ended or self.work is None:
            return
        self._ended = True
        verdict = session.verdict or Verdict.RETRY
        reason = session.reason
        server = self.server
        work = self.work
        await server.db(
            partial(
                server.service.end_session,
                work.job_id,
                server.owner,
                verdict.value,
                reason,
                started_at=_utc(self.started),
                ended_at=_utc(now),
                detail=tuple(session.log),
            )
        )
        server.sessions_done += verdict is Verdict.DONE
        log.info("job %s: %s%s", work.job_id, verdict.value, f" ({reason})" if reason else "")

    def _gone(self, reason: str, now: float) -> None:
        self._closed = True
        if self._busy is not None:
            return  # the step in flight sees _closed when it returns, and comes back here
        session = self.session
        if session is not None and not self._ended:
            if session.verdict is None:
                session.verdict = Verdict.RETRY
                session.reason = f"session broke: {reason}"
                session.log.append(session.reason)
            self.spawn(self._finish(session, now))


def _negotiated(tls: TlsServerHandler | TlsDispatcher | None) -> str:
    """ "TLSv1.2 TLS_PSK_3DES_EDE_CBC_SHA1 (GnuTLS)": the connection's version and suite."""
    if tls is None or tls.cipher is None:
        return "suite unknown"
    name, version, _ = tls.cipher
    stack = " (GnuTLS)" if isinstance(tls, TlsDispatcher) and tls.stack == "gnutls" else ""
    return f"{tls.version or version} {name}{stack}"


def _open_with_content(
    service: RasService, identity: str, owner: str, now: float
) -> tuple[SessionWork, dict[tuple[str, int], ContentItem]] | None:
    """`open_session` and the bodies its job will send, read in one worker call, so the
    session's commands are built on the event loop without waiting for the database."""
    work = service.open_session(identity, owner, _utc(now))
    if work is None:
        return None
    items = {
        (op.path, op.version): service.content_item(op.path, op.version)
        for op in work.operations
        if op.op == "put" and op.version is not None
    }
    return work, items


class _CardProtocol(StreamProtocol):
    """Tells the server which connection's handshake the PSK callback is serving, and makes
    sure that callback finds the key in memory: the client's PSK identity is read from its
    ClientKeyExchange first (`tls.psk_peek`), and when the key is not cached, the client's
    bytes wait (reading paused) while a database thread fetches it."""

    def __init__(self, server: RasServer) -> None:
        self.exchange = CardExchange(server, time.time())
        self.exchange.wake = self._flush
        self.server = server
        self._peek: PskIdentityPeek | None = PskIdentityPeek()
        self._held: bytearray | None = None
        self._eof = False
        self.tls = server.tls_handler(self.exchange, time.time())
        self.exchange.tls = self.tls
        super().__init__(self.tls)

    def data_received(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data  # a key lookup is under way
            return
        peek = self._peek
        if peek is not None:
            identity = peek.feed(data)
            if peek.done:
                self._peek = None
            if identity is not None and not self.server.service.psk_cached(identity):
                self._held = bytearray(data)
                if self.transport is not None:
                    self.transport.pause_reading()
                self.exchange.spawn(self._fetch_key(identity))
                return
        self._to_tls(data)

    def eof_received(self) -> bool | None:
        if self._held is not None:
            self._eof = True  # after the held bytes
            return True
        return super().eof_received()

    async def _fetch_key(self, identity: str) -> None:
        try:
            await self.server.db(self.server.service.psk_lookup, identity)
        finally:
            held, self._held = bytes(self._held or b""), None
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
                self._to_tls(held)
                if self._eof:
                    super().eof_received()

    def _to_tls(self, data: bytes) -> None:
        self.server.handshaking = self.exchange
        try:
            super().data_received(data)
        finally:
            self.server.handshaking = None


class RasServer:
    """The admin server process: the cards' PSK-TLS endpoint and the trigger loop."""

    def __init__(
        self,
        service: RasService,
        sender: SmsSender,
        config: EndpointConfig | None = None,
        *,
        senders: dict[str, SmsSender] | None = None,
    ) -> None:
        self.service = service
        self.sender = sender
        self.senders = senders or {}
        """Senders by campaign trigger ("sms", "sip-push"); `sender` for the rest."""
        self.config = config or EndpointConfig()
        self.owner = self.config.owner or f"{socket.gethostname()}:{os.getpid()}"
        self.handshaking: CardExchange | None = None
        self.psk = PskKeys(self._psk_lookup, self.config.psk_hint)
        """The cards' key table (the database, `RasService.psk_lookup`) and the hint."""
        self.context = psk_server_context(self.psk, profile=self.config.tls_profile)
        self._gnutls = self.config.tls_profile == "compat" and _gnutls_3des()
        self._openssl_suites = openssl_suite_codes(self.context)
        self.sessions_done = 0
        self.triggers_sent = 0
        self._pool = self._new_pool()
        self.steps: set[asyncio.Task[None]] = set()
        """Session steps in flight (each waits for a database call)."""
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _psk_lookup(self, identity: str | None) -> bytes | None:
        # Runs inside OpenSSL's callback: never raise, never log the key.
        exchange = self.handshaking
        if identity is None or exchange is None:
            return None
        try:
            key = self.service.psk_lookup(identity)
        except Exception:
            log.exception("PSK lookup failed")
            return None
        if key is None:
            log.warning("PSK-TLS: unknown identity %r", identity)
            return None
        exchange.identity = identity
        return key

    def tls_handler(self, exchange: CardExchange, now: float) -> TlsServerHandler | TlsDispatcher:
        """One card connection's TLS: OpenSSL, or, in "compat" with GnuTLS usable, a dispatcher
        that hands a client offering only TLS_PSK_WITH_3DES_EDE_CBC_SHA to GnuTLS (the same
        key lookup, under the same `handshaking` guard: it runs inside `data_received`)."""
        if self._gnutls:
            return TlsDispatcher(
                self.context,
                exchange,
                self.psk,
                openssl_suites=self._openssl_suites,
                handshake_timeout=self.config.handshake_timeout,
                record_limit=None,
                now=now,
            )
        return TlsServerHandler(
            self.context,
            exchange,
            handshake_timeout=self.config.handshake_timeout,
            record_limit=None,
            now=now,
        )

    def _new_pool(self) -> ThreadPoolExecutor:
        # Threads start on first use: a pool that is never used costs nothing.
        return ThreadPoolExecutor(max(1, self.config.db_workers), thread_name_prefix="ras-db")

    async def db[T](self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on a database worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self, *, triggers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if self.config.release_own_leases:
            released = await self.db(self.service.release_leases, self.owner, _utc(time.time()))
            if released:
                log.info(
                    "released %d job(s) leased by this server (owner %s) before it restarted",
                    released,
                    self.owner,
                )
        try:
            self._server = await loop.create_server(
                lambda: _CardProtocol(self), self.config.host, self.config.port, backlog=256
            )
        except OSError as exc:
            raise ListenError(
                f"admin server: cannot listen on {self.config.host}:{self.config.port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from None
        log.info(
            "admin server: PSK-TLS HTTPS on %s:%d%s (owner %s), profile %s%s",
            self.config.host,
            self.port,
            self.config.uri,
            self.owner,
            self.config.tls_profile,
            f", TLS_PSK_WITH_3DES_EDE_CBC_SHA through GnuTLS {gnutls.version()}"
            if self._gnutls
            else "",
        )
        if triggers:
            self._task = asyncio.create_task(self._trigger_loop(), name="ras-triggers")

    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def wake(self) -> None:
        """New work (a campaign was created): look for due jobs now."""
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Sessions that ended as the server closed still record their verdicts (a step may
        # start the next one, so until none is left).
        while self.steps:
            await asyncio.gather(*self.steps, return_exceptions=True)
        pool, self._pool = self._pool, self._new_pool()
        await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    # -- triggers --------------------------------------------------------------------------------

    async def _trigger_loop(self) -> None:
        interval = self.config.trigger_interval
        rounds = asyncio.Semaphore(max(1, self.config.trigger_rounds))
        sending: set[asyncio.Task[int]] = set()

        def done(task: asyncio.Task[int]) -> None:
            sending.discard(task)
            rounds.release()
            if not task.cancelled() and task.exception() is not None:
                log.error("trigger loop", exc_info=task.exception())

        try:
            while True:
                await rounds.acquire()
                try:
                    works = await self._claim_due()
                except asyncio.CancelledError:
                    rounds.release()
                    raise
                except Exception:
                    log.exception("trigger loop")
                    works = []
                if works:
                    task = asyncio.create_task(self._send_batch(works))
                    sending.add(task)
                    task.add_done_callback(done)
                else:
                    rounds.release()
                if len(works) < self.config.trigger_batch:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), interval)
                    except TimeoutError:
                        pass
        finally:
            for task in list(sending):
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    async def trigger_due(self) -> int:
        """Reaps expired leases, claims due jobs and sends their triggers; the count sent."""
        works = await self._claim_due()
        return await self._send_batch(works) if works else 0

    async def _claim_due(self) -> list[TriggerWork]:
        """Reaps expired leases and claims up to a batch of due jobs."""
        service = self.service
        now = _utc(time.time())
        await self.db(service.reap, now)
        return await self.db(service.claim_triggers, self.owner, self.config.trigger_batch, now)

    async def _send_batch(self, works: list[TriggerWork]) -> int:
        """Sends the triggers of claimed jobs at once, then records the PAP result codes."""
        codes: dict[str, int] = {}
        results = await asyncio.gather(*(self._send(w, codes) for w in works))
        if codes:
            await self.db(self.service.record_pap_codes, codes)
        return sum(results)

    async def _send(self, work: TriggerWork, codes: dict[str, int]) -> int:
        """Sends one trigger; a SIP push's PAP result code goes into `codes` (job id -> code)."""
        if not work.msisdn:
            await self._finish_job(work, "failed", "card has no MSISDN")
            return 0
        try:
            # No agent id: the card's own (X-Admin-From) keeps the trigger in one SMS.
            packet = work.packet(
                admin_host=self.config.host,
                admin_address=self.config.host,
                admin_port=self.port,
                admin_uri=self.config.uri,
                agent_id=None,
            )
        except ValueError as exc:
            log.error("no trigger for %s: %s", work.iccid, exc)
            await self._finish_job(work, "failed", str(exc))
            return 0
        try:
            sender = self.senders.get(work.trigger or "", self.sender)
            result = await sender.send(work.msisdn, packet)
        except SendError as exc:
            if exc.pap_code is not None:
                codes[work.job_id] = exc.pap_code
            log.warning("trigger for %s not sent: %s", work.iccid, exc)
            await self._finish_job(work, "retry", f"trigger not sent: {exc}")
            return 0
        if result.pap_code is not None:
            codes[work.job_id] = result.pap_code
        refused = _refusal(result)
        if refused is not None:
            log.warning("trigger for %s: %s", work.iccid, refused)
            await self._finish_job(work, "retry", refused)
            return 0
        self.triggers_sent += 1
        how = "by SMS" if result.pap_code is None else f"by SIP push (PAP {result.pap_code})"
        log.info(
            "trigger sent to %s (counter %d) %s: %s",
            work.iccid,
            work.counter,
            how,
            result.status.value,
        )
        return 1

    async def _finish_job(self, work: TriggerWork, outcome: Outcome, reason: str) -> None:
        await self.db(
            self.service.finish_job, work.job_id, self.owner, outcome, reason, _utc(time.time())
        )


def _refusal(result: SendResult) -> str | None:
    """Why the card did not take the trigger, when the sender could tell; else None."""
    if result.status is DeliveryStatus.BUSY:
        return "the card's toolkit was busy"
    if result.status is DeliveryStatus.ERROR:
        return "the terminal or card refused the SMS"
    if result.status is not DeliveryStatus.POR or not result.por:
        return None
    try:
        _, packet = response_packet_of(result.por)
        # Error PoRs go unsecured (ota.packet.rejection_receipt); secured ones say success.
        status = 0 if packet.check_length else ResponseContent.decode(packet.sealed, 0).status
    except DecodeError:
        return None
    if not status:
        return None
    name = PorStatus(status).name if status in set(PorStatus) else "?"
    return f"the card refused the trigger: PoR status {status:02X} ({name})"
