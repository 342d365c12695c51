"""The Push Proxy Gateway, `openscws ppg`: PAP over HTTP on its north side, SIP on its south.

North: `POST <pap path>` from an authenticated push initiator (HTTP Basic or a bearer token):
a `multipart/related` push submission is stored and answered at once with `push-response`
1001 (HTTP 202); a `statusquery-message` or `cancel-message` (`application/xml`) is answered
from the store; anything refused gets a `badmessage-response` with its PAP code (HTTP 400).
South: each pending push is sent as a SIP MESSAGE to the AOR through `proxy` when one is set,
otherwise straight to the contacts registered with the PPG's own registrar (REGISTER to its SIP
port, with digest authentication when users are configured). Failures are retried with
backoff until the policy or `deliver-before-timestamp` gives up; the outcome is posted to the
initiator's `ppg-notify-requested-to` URL as a `resultnotification-message`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import secrets
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from openscws.aio.http_small import (
    MAX_CONNECTIONS,
    ConnectionPool,
    HttpReply,
    HttpRequest,
    SmallHttpServer,
    post,
)
from openscws.aio.ppg_store import Binding, PpgStore, PushRecord
from openscws.aio.sip_endpoint import Peer, SipEndpoint, SipTimeout, new_branch, new_tag
from openscws.push import pap
from openscws.push.content import PUSH_CONTENT_TYPE, SCWS_APP_ID, app_id_of, build_push
from openscws.push.digest import Challenge, DigestError, verify
from openscws.push.pap import (
    Address,
    BadMessageResponse,
    CancelMessage,
    CancelResponse,
    CancelResult,
    MessageState,
    PapCode,
    PapError,
    PushResponse,
    ResultNotificationMessage,
    ResultNotificationResponse,
    StatusQueryMessage,
    StatusQueryResponse,
    StatusQueryResult,
)
from openscws.push.ppg import (
    DeliveryPolicy,
    Initiator,
    authenticate,
    next_attempt,
    outcome_of,
    target_of,
)
from openscws.push.sip import (
    NameAddr,
    SipError,
    SipRequest,
    SipResponse,
    aor_of,
    response_to,
    uri_target,
)
from openscws.push.submission import MAX_SUBMISSION, parse_submission

__all__ = ["Ppg", "PpgConfig"]

log = logging.getLogger(__name__)

XML: Final = (("Content-Type", "application/xml"),)
NONCE_LIFETIME: Final = 300.0
MAX_EXPIRES: Final = 3600
TCP_ABOVE: Final = 1300
"""RFC 3261 §18.1.1: a request within 200 bytes of a 1500-byte path MTU goes over TCP."""


@dataclass(frozen=True, slots=True)
class PpgConfig:
    database_url: str
    initiators: tuple[Initiator, ...]
    identity: str = "sip:ppg@scws.test"
    pap_host: str = "127.0.0.1"
    pap_port: int = 0
    pap_path: str = "/pap"
    sip_host: str = "127.0.0.1"
    sip_port: int = 0
    proxy: str | None = None
    """`sip:host:port[;transport=tcp]`: send every MESSAGE through this proxy."""
    plmn_domain: str | None = None
    realm: str = "scws.test"
    registrar_users: dict[str, str] = field(default_factory=dict, repr=False)
    """user -> password: REGISTER needs digest credentials when not empty."""
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    max_connections: int = MAX_CONNECTIONS
    """PAP connections open at once; one more is answered `503` with `Retry-After` and closed
    (a push initiator retries: the admin server's job goes down its retry path)."""
    poll: float = 0.2
    lease: float = 60.0
    batch: int = 50


class _GroupWrite[T, R]:
    """Group commit: items submitted while a write is under way go together in the next
    one (one transaction, one commit for many). `write` takes the items and returns one
    result per item, in order; each `submit` returns its item's result once committed."""

    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        # A submitter cancelled meanwhile cancels only its own future: its item is still
        # written with the batch (`_run` skips a future already done).
        return await done

    async def drain(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - each waiter gets it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(e)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class Ppg:
    def __init__(self, config: PpgConfig) -> None:
        self.config = config
        self.store = PpgStore(config.database_url)
        self.http = SmallHttpServer(
            self._pap,
            host=config.pap_host,
            port=config.pap_port,
            max_body=MAX_SUBMISSION,
            max_connections=config.max_connections,
        )
        self.sip = SipEndpoint(self._sip, host=config.sip_host, port=config.sip_port)
        self.owner = secrets.token_hex(8)
        self._nonce_key = secrets.token_bytes(32)
        self._worker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._notify_wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._notifier: asyncio.Task[None] | None = None
        self._finishes: _GroupWrite[tuple[int, str, int, str, float], None] = _GroupWrite(
            self._write_outcomes
        )
        self._adds: _GroupWrite[dict[str, Any], bool] = _GroupWrite(
            lambda rows: self._db(self.store.add_many, rows)
        )
        self._adds_due: _GroupWrite[dict[str, Any], bool] = _GroupWrite(self._add_due)
        self._threads = ThreadPoolExecutor(4, thread_name_prefix="ppg-db")
        self._initiators = ConnectionPool()
        """Kept-alive connections to the initiators' notification URLs."""

    async def _db[T](self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call on the PPG's own threads (closed before the engine is disposed)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, functools.partial(fn, *args, **kwargs))

    @property
    def pap_url(self) -> str:
        return self.http.url(self.config.pap_path)

    async def start(self) -> None:
        await self.http.start()
        await self.sip.start()
        self._worker = asyncio.create_task(self._work())
        log.info("PPG: PAP on %s, SIP on %s:%d", self.pap_url, self.config.sip_host, self.sip.port)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._notifier is not None:
            self._inflight.add(self._notifier)
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._finishes.drain()  # outcomes already known are still written
        await self._adds.drain()
        await self._adds_due.drain()
        await self.http.close()
        await self.sip.close()
        await self._initiators.close()
        await asyncio.to_thread(self._threads.shutdown, wait=True)
        self.store.close()

    # -- north: PAP ----------------------------------------------------------------------------

    async def _pap(self, request: HttpRequest) -> HttpReply:
        if request.path != self.config.pap_path:
            return HttpReply(404, b"no PAP service here\n")
        if request.method != "POST":
            return HttpReply(405, b"POST PAP documents\n", (("Allow", "POST"),))
        initiator = authenticate(request.header("authorization"), self.config.initiators)
        if initiator is None:
            realm = (("WWW-Authenticate", 'Basic realm="PPG"'),)
            return HttpReply(401, b"push initiator not authenticated\n", realm)
        try:
            return await self._pap_document(request, initiator)
        except PapError as e:
            log.info("PPG: refused from %s: %s", initiator.name, e)
            bad = BadMessageResponse(code=e.code, desc=e.reason[:200], fragment=e.fragment or None)
            return HttpReply(400, pap.encode(bad), XML)

    async def _pap_document(self, request: HttpRequest, initiator: Initiator) -> HttpReply:
        content_type = request.header("content-type") or ""
        if content_type.lower().startswith("multipart/related"):
            return await self._submit(content_type, request.body, initiator)
        if content_type.split(";")[0].strip().lower() != "application/xml":
            raise PapError(PapCode.BAD_REQUEST, "PAP documents are application/xml or multipart")
        document = pap.parse(request.body)
        now = _now()
        match document:
            case StatusQueryMessage():
                record = await self._db(self.store.get, document.push_id)
                if record is None or record.initiator != initiator.name:
                    raise PapError(PapCode.PUSH_ID_NOT_FOUND, "no such push-id")
                result = StatusQueryResult(
                    state=MessageState(record.state),
                    code=record.code,
                    addresses=(Address.parse(record.address),),
                    desc=record.desc,
                    event_time=_dt(record.event_time),
                )
                answer: pap.PapDocument = StatusQueryResponse(
                    push_id=document.push_id, results=(result,)
                )
            case CancelMessage():
                record = await self._db(self.store.get, document.push_id)
                if record is None or record.initiator != initiator.name:
                    raise PapError(PapCode.PUSH_ID_NOT_FOUND, "no such push-id")
                done = await self._db(self.store.cancel, document.push_id, now)
                code = PapCode.OK if done else PapCode.CANCELLATION_NOT_POSSIBLE
                answer = CancelResponse(
                    push_id=document.push_id,
                    results=(CancelResult(code=code, addresses=(Address.parse(record.address),)),),
                )
            case _:
                raise PapError(PapCode.NOT_IMPLEMENTED, f"{type(document).__name__} to a PPG")
        return HttpReply(200, pap.encode(answer), XML)

    async def _submit(self, content_type: str, body: bytes, initiator: Initiator) -> HttpReply:
        submission = parse_submission(content_type, body)
        message = submission.message
        if len(message.addresses) != 1:
            raise PapError(PapCode.MULTIPLE_ADDRESSES_NOT_SUPPORTED, "one address per push")
        address = message.addresses[0]
        target = target_of(address, self.config.plmn_domain)
        try:
            app_id = app_id_of(submission.content.app_id or SCWS_APP_ID)
        except ValueError:
            raise PapError(PapCode.BAD_REQUEST, "unknown X-Wap-Application-Id") from None
        if submission.content.content_type.split(";")[0].strip().lower() != PUSH_CONTENT_TYPE:
            raise PapError(PapCode.TRANSFORMATION_FAILURE, "content type not pushed over SIP")
        if message.notify_to is not None and not message.notify_to.startswith(
            ("http://", "https://")
        ):
            raise PapError(PapCode.BAD_REQUEST, "ppg-notify-requested-to is not an HTTP URL")
        now = _now()
        deliver_before = message.deliver_before.timestamp() if message.deliver_before else None
        deliver_after = message.deliver_after.timestamp() if message.deliver_after else None
        if deliver_before is not None and deliver_before <= now:
            raise PapError(PapCode.BAD_REQUEST, "deliver-before-timestamp has passed")
        due = deliver_after is None or deliver_after <= now
        added = await (self._adds_due if due else self._adds).submit(
            dict(
                push_id=message.push_id,
                initiator=initiator.name,
                address=address.value,
                target=target,
                app_id=app_id,
                content_type=submission.content.content_type,
                body=submission.content.body,
                deliver_before=deliver_before,
                deliver_after=deliver_after,
                notify_to=message.notify_to,
                next_at=max(now, deliver_after or now),
                created=now,
            )
        )
        if not added:
            answer = PushResponse(
                push_id=message.push_id, code=PapCode.DUPLICATE_PUSH_ID, desc="Duplicate Push ID"
            )
            return HttpReply(200, pap.encode(answer), XML)
        if not due:
            self._wake.set()  # the delivery loop picks it up when it is due
        answer = PushResponse(
            push_id=message.push_id,
            code=PapCode.ACCEPTED_FOR_PROCESSING,
            desc="Accepted for processing",
            reply_time=datetime.fromtimestamp(int(now), UTC),
            sender_address=self.pap_url,
        )
        return HttpReply(202, pap.encode(answer), XML)

    # -- south: delivery -----------------------------------------------------------------------

    async def _add_due(self, rows: list[dict[str, Any]]) -> list[bool]:
        """Stores pushes that are due at once, leased to this process, and starts sending
        them: no `claim_due` round (one write transaction and a poll) between a submission
        and its SIP MESSAGE. Retries, deferred pushes and pushes whose lease ran out (another
        process died holding them) still go through the delivery loop."""
        records = await self._db(
            self.store.add_leased, rows, owner=self.owner, lease_until=_now() + self.config.lease
        )
        added = [r for r in records if r is not None]
        if added:
            self._dispatch(added, await self._bindings(added))
        return [r is not None for r in records]

    async def _bindings(self, pushes: list[PushRecord]) -> dict[str, list[Binding]]:
        """The registrations of the pushes' AORs (one query), when there is no proxy."""
        if not pushes or self.config.proxy is not None:
            return {}
        aors = sorted({aor_of(push.target) for push in pushes})
        return await self._db(self.store.contacts_many, aors, _now())

    def _dispatch(self, pushes: list[PushRecord], bindings: dict[str, list[Binding]]) -> None:
        for push in pushes:
            routes = None if self.config.proxy else bindings[aor_of(push.target)]
            task = asyncio.create_task(self._deliver(push, routes))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if self._notifier is None or self._notifier.done():
            # Notifications run beside delivery: a slow initiator must not hold it up.
            self._notifier = asyncio.create_task(self._notify_loop())

    async def _work(self) -> None:
        while True:
            # Cleared before the look, so a push submitted during it wakes the next round.
            self._wake.clear()
            try:
                pushes = await self._db(
                    self.store.claim_due,
                    _now(),
                    owner=self.owner,
                    lease=self.config.lease,
                    limit=self.config.batch,
                )
                self._dispatch(pushes, await self._bindings(pushes))
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("PPG: delivery round failed")
                pushes = []
            if len(pushes) == self.config.batch:
                continue  # more may be due at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll):
                    await self._wake.wait()

    async def _deliver(self, push: PushRecord, bindings: list[Binding] | None = None) -> None:
        now = _now()
        if push.deliver_before is not None and now >= push.deliver_before:
            await self._finish(
                push,
                MessageState.EXPIRED,
                PapCode.SERVICE_FAILURE,
                "deliver-before-timestamp passed",
            )
            return
        status = await self._send(push, bindings)
        outcome = outcome_of(status)
        attempts = push.attempts + 1
        if outcome.final:
            await self._finish(push, outcome.state, outcome.code, outcome.desc)
            return
        when = next_attempt(
            attempts,
            datetime.fromtimestamp(_now(), UTC),
            self.config.policy,
            _dt(push.deliver_before),
        )
        if when is None:
            state = outcome.state
            if push.deliver_before is not None and _now() + 1 >= push.deliver_before:
                state = MessageState.EXPIRED
            await self._finish(push, state, outcome.code, f"{outcome.desc} after {attempts} tries")
            return
        log.info("PPG: %s: %s, retry %d at %s", push.push_id, outcome.desc, attempts, when)
        await self._db(
            self.store.retry,
            push.id,
            attempts=attempts,
            next_at=when.timestamp(),
            desc=outcome.desc,
        )

    async def _send(self, push: PushRecord, bindings: list[Binding] | None = None) -> int | None:
        """The SIP final status of the first contact that answers 2xx (or the last answer);
        None for no answer at all; 480 when the AOR has no registration. `bindings`: the
        AOR's registrations when the caller looked them up (for a whole batch at once)."""
        if self.config.proxy is not None:
            routes = [(self.config.proxy, push.target)]
        else:
            if bindings is None:
                bindings = await self._db(self.store.contacts, aor_of(push.target), _now())
            routes = [(b.contact, b.contact) for b in bindings]
            if not routes:
                return 480
        status: int | None = None
        for next_hop, request_uri in routes:
            try:
                host, port, transport = uri_target(next_hop)
            except SipError as e:
                log.warning("PPG: unusable route %s: %s", next_hop, e)
                continue
            if len(push.body) > TCP_ABOVE:
                transport = "TCP"
            branch = new_branch()
            req = build_push(
                target=push.target,
                ppg=self.config.identity,
                packet=push.body,
                via_host=self.config.sip_host,
                via_port=self.sip.port,
                transport=transport,
                branch=branch,
                from_tag=new_tag(),
                call_id=f"{secrets.token_hex(8)}@{self.config.sip_host}",
                request_uri=request_uri,
                app_id=push.app_id,
            )
            try:
                response = await self.sip.request(req, host, port, transport)
            except SipTimeout as e:
                log.info("PPG: %s to %s: %s", push.push_id, next_hop, e)
                continue
            status = response.status
            if 200 <= status < 300:
                return status
        return status

    async def _finish(self, push: PushRecord, state: MessageState, code: int, desc: str) -> None:
        """Records a push's final outcome (written together with the outcomes that arrive
        meanwhile, see `_GroupWrite`); returns once it is committed."""
        # A delivered push is the common case: at DEBUG, so a fleet's campaign does not log
        # a line per card; every other outcome at INFO.
        level = logging.DEBUG if state is MessageState.DELIVERED else logging.INFO
        log.log(level, "PPG: %s: %s (%s) %s", push.push_id, state.value, code, desc)
        await self._finishes.submit((push.id, state.value, int(code), desc, _now()))
        self._notify_wake.set()

    async def _write_outcomes(self, outcomes: list[tuple[int, str, int, str, float]]) -> list[None]:
        await self._db(self.store.finish_many, outcomes)
        return [None] * len(outcomes)

    async def _notify_loop(self) -> None:
        """Sends result notifications as outcomes are committed, a batch at a time; after a
        round with a failed notification (or none due) it waits for the next outcome or
        `poll` seconds, so an unreachable initiator is retried at that pace."""
        while True:
            self._notify_wake.clear()
            try:
                sent, failed = await self._notify_pending()
            except Exception:  # a database hiccup must not end notifications for good
                log.exception("PPG: notification round failed")
                sent, failed = 0, 1
            if sent and not failed:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll):
                    await self._notify_wake.wait()

    async def _notify_pending(self) -> tuple[int, int]:
        """Sends the due result notifications of a batch at once (each initiator's answer
        waited for on its own), then records each outcome; (sent, failed)."""
        pushes = await self._db(self.store.to_notify, self.config.batch, 3)
        if not pushes:
            return 0, 0
        results = await asyncio.gather(*(self._notify(push) for push in pushes))
        await self._db(
            self.store.notified_many,
            [(push.id, ok) for push, ok in zip(pushes, results, strict=True)],
        )
        return len(results), results.count(False)

    async def _notify(self, push: PushRecord) -> bool:
        assert push.notify_to is not None
        document = ResultNotificationMessage(
            push_id=push.push_id,
            address=Address.parse(push.address),
            state=MessageState(push.state),
            code=push.code,
            desc=push.desc,
            event_time=_dt(int(push.event_time) if push.event_time else None),
            received_time=_dt(int(push.created)),
            sender_address=self.pap_url,
        )
        body = pap.encode(document)
        try:
            if push.notify_to.startswith("http://"):
                reply = await post(
                    push.notify_to,
                    body,
                    (("Content-Type", "application/xml"),),
                    timeout=10,
                    max_body=65536,
                    pool=self._initiators,
                )
                answer = pap.parse(reply.body)
            else:
                answer = await asyncio.to_thread(self._notify_blocking, push.notify_to, body)
        except (OSError, TimeoutError, PapError) as e:
            log.info("PPG: result notification for %s: %s", push.push_id, e)
            return False
        return isinstance(answer, ResultNotificationResponse) and pap.is_success(answer.code)

    @staticmethod
    def _notify_blocking(url: str, body: bytes) -> pap.PapDocument:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/xml"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return pap.parse(response.read(65536))
        except urllib.error.URLError as e:
            raise OSError(str(e)) from e

    # -- the embedded registrar ----------------------------------------------------------------

    def _nonce(self, now: float) -> str:
        stamp = f"{int(now):x}"
        mac = hmac.new(self._nonce_key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{stamp}.{mac}"

    def _fresh(self, nonce: str, now: float) -> bool:
        stamp, _, mac = nonce.partition(".")
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        good = hmac.new(self._nonce_key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return hmac.compare_digest(good, mac) and 0 <= now - issued <= NONCE_LIFETIME

    async def _sip(self, req: SipRequest, peer: Peer) -> SipResponse:
        tag = new_tag()
        if req.method != "REGISTER":
            return response_to(req, 405, to_tag=tag, extra=(("Allow", "REGISTER"),))
        now = _now()
        try:
            aor = aor_of(NameAddr.parse(req.header("To") or "").uri)
        except SipError:
            return response_to(req, 400, to_tag=tag)
        if self.config.registrar_users:
            credentials = req.header("Authorization")
            challenge = Challenge(self.config.realm, self._nonce(now))
            unauthorized = response_to(
                req, 401, to_tag=tag, extra=(("WWW-Authenticate", challenge.header()),)
            )
            if credentials is None:
                return unauthorized
            try:
                user, nonce = verify(
                    credentials,
                    method="REGISTER",
                    realm=self.config.realm,
                    passwords=self.config.registrar_users,
                )
            except DigestError:
                return response_to(req, 403, to_tag=tag)
            if not self._fresh(nonce, now):
                return unauthorized
            if aor.split(":", 1)[1].split("@", 1)[0] != user:
                return response_to(req, 403, to_tag=tag)
        expires_header = req.header("Expires")
        contacts = req.values("Contact")
        try:
            default = int(expires_header) if expires_header is not None else 3600
        except ValueError:
            return response_to(req, 400, to_tag=tag)
        for contact in contacts:
            if contact.strip() == "*":
                continue
            try:
                parsed = NameAddr.parse(contact)
                uri_target(parsed.uri)
                expires = int(parsed.params.get("expires", default))
            except (SipError, ValueError):
                return response_to(req, 400, to_tag=tag)
            expires = min(max(expires, 0), MAX_EXPIRES)
            at = now + expires if expires else 0.0
            await self._db(self.store.bind, aor, parsed.uri, at)
        bound = await self._db(self.store.contacts, aor, now)
        extra = tuple(
            ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}") for b in bound
        )
        return response_to(req, 200, to_tag=tag, extra=extra)
