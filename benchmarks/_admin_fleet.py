"""The processes of `bench_admin.py` (complete remote administration sessions per second).

    python benchmarks/_admin_fleet.py loadgen --cards N --seed S --admin-port P [...]
    python benchmarks/_admin_fleet.py server --db URL|memory --data-dir D --port P --router U [...]

Both speak a line protocol with the orchestrator: they print `READY {json}` once serving, and
on `stop` (a line on stdin, or stdin closed) stop and print `STATS {json}`. A `memory` server
also takes `go ROUNDS` and prints `DONE {json}` once its jobs are all finished.

* loadgen: N virtual cards, each a real `VirtualUicc` with the admin agent and no server port
  (card ports=(), so no BIP server channel and no listener), joined to its own `Gateway` over
  an `InProcessLink`, and one loopback "SMSC" (`SmsRouter`): `POST /sms?msisdn=...` carrying an
  SMS-DELIVER TPDU goes to that card's `Gateway.deliver_sms`. So every trigger crosses the
  TPDU -> SMS-PP download ENVELOPE -> the agent's secured packet check, and every session the
  card's OPEN CHANNEL (UICC in client mode) -> a real TCP connection -> PSK-TLS -> Amd B,
  byte for byte through encoded APDUs. The card's content store is a `MemoryStore` and its
  secure files a dict (`--store memory`, the default: no disk in the card), or a real
  `CardImage` per card in a temporary directory (`--store image`).
* server: one `RasServer` (the cards' PSK-TLS endpoint and the trigger loop) on its own port
  against the shared database, with `FleetSender` as its SMS sender: the SMS-DELIVER TPDUs
  `LocalTerminalSender.tpdus` builds, POSTed to the load generator's router over keep-alive
  connections (the stand-in for an SMSC). `--db memory` swaps the database for
  `MemoryRasService` (the reference ceiling: the same server, triggers and sessions, no
  database); each memory server then serves its own share of the cards (index % servers).

Card keys are derived from `--seed` (`card_keys`), so the orchestrator registers the cards
with `RasService.add_card` and the load generator gives each agent the same keys through
`AgentSecrets`, without the two exchanging secrets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from openscws.agent.credentials import ADMIN_TAR, AgentCredentials, AgentSecrets  # noqa: E402
from openscws.aio.gateway import Gateway, GatewayConfig  # noqa: E402
from openscws.aio.links import CardGone, InProcessLink  # noqa: E402
from openscws.ids import default_agent_id, default_psk_identity, luhn_digit  # noqa: E402
from openscws.ota import KeyRef  # noqa: E402
from openscws.ras.senders import (  # noqa: E402
    SMS_MEDIA_TYPE,
    DeliveryStatus,
    LocalTerminalSender,
    SendError,
    SendResult,
)
from openscws.ras.service import (  # noqa: E402
    ContentInfo,
    ContentItem,
    Operation,
    RasPolicy,
    RasService,
    SessionWork,
    TriggerWork,
)
from openscws.ras.trigger import CardOtaKeys  # noqa: E402
from openscws.terminal.engine import TerminalEngine  # noqa: E402

log = logging.getLogger("bench_admin")

ICCID_PREFIX: Final = "8988211"
"""ICCIDs are this, 11 digits of the card's index and the E.118 Luhn check digit: 19."""
KEY_BYTE: Final = 0x12
"""KIc / KID: key version 1, AES (what `RasService.add_card` defaults to)."""
CONTENT_PATH: Final = "/bench/page.html"
CONTENT_TYPE: Final = "text/html; charset=utf-8"
ADMIN_URI: Final = "/scws/admin"


# -- the cards' identities and keys ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardKeys:
    index: int
    iccid: str
    msisdn: str
    psk_identity: str
    agent_id: str
    psk_key: bytes = field(repr=False)
    kic_key: bytes = field(repr=False)
    kid_key: bytes = field(repr=False)


def card_keys(seed: str, index: int) -> CardKeys:
    """Card `index`'s identity and keys, the same in every process given the same seed."""

    def derive(what: str) -> bytes:
        return hashlib.blake2b(f"{seed}/{index}/{what}".encode(), digest_size=16).digest()

    base = f"{ICCID_PREFIX}{index:011d}"
    iccid = base + str(luhn_digit(base))
    return CardKeys(
        index=index,
        iccid=iccid,
        msisdn=f"+1555{index:08d}",
        psk_identity=default_psk_identity(iccid),
        agent_id=default_agent_id(iccid),
        psk_key=derive("psk"),
        kic_key=derive("kic"),
        kid_key=derive("kid"),
    )


def register_cards(service: RasService, seed: str, count: int) -> None:
    """Registers cards 0..count-1 with the admin server's database (OTA counters at 0)."""
    for i in range(count):
        k = card_keys(seed, i)
        service.add_card(
            k.iccid,
            k.msisdn,
            psk_identity=k.psk_identity,
            psk_key=k.psk_key,
            agent_id=k.agent_id,
            ota_tar=ADMIN_TAR,
            kic_key=k.kic_key,
            kid_key=k.kid_key,
            kic=KEY_BYTE,
            kid=KEY_BYTE,
        )


def content_body(size: int) -> bytes:
    line = b"<p>Pushed by the remote administration server, one PUT per session.</p>\n"
    head, tail = b"<!doctype html>\n<html><body>\n", b"</body></html>\n"
    body = head + line * (size // len(line) + 1)
    return body[: max(0, size - len(tail))] + tail


# -- the load generator: cards, gateways and the SMS router ------------------------------------


class MemorySecrets:
    """A `SecretStore` in a dict: the card's secure files without a disk."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self._files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self._files[name] = bytes(data)

    def delete_secret(self, name: str) -> bool:
        return self._files.pop(name, None) is not None


@dataclass
class FleetCard:
    keys: CardKeys
    gateway: Gateway
    agent: Any
    store: Any


class Fleet:
    """N cards with their gateways, in this process."""

    def __init__(
        self,
        seed: str,
        count: int,
        *,
        admin_port: int,
        poll_interval: float,
        store: str = "memory",
        image_dir: Path | None = None,
    ) -> None:
        self.seed = seed
        self.count = count
        self.admin_port = admin_port
        self.poll_interval = poll_interval
        self.store = store
        self.image_dir = image_dir
        self.cards: list[FleetCard] = []
        self.by_msisdn: dict[str, FleetCard] = {}

    def _card(self, keys: CardKeys) -> FleetCard:
        from openscws.config import CardSettings
        from openscws.scws.card import admin_agent, build_card
        from openscws.scws.model import MemoryStore

        settings = CardSettings(iccid=keys.iccid, msisdn=keys.msisdn, ports=(), tls_ports=())
        store: Any
        secrets: Any
        if self.store == "image":
            from openscws.store.cardimage import CardImage

            assert self.image_dir is not None
            store = CardImage.create(
                self.image_dir / keys.iccid, iccid=keys.iccid, now=int(time.time())
            )
            secrets = store
        else:
            store = MemoryStore()
            secrets = MemorySecrets()
        AgentSecrets(secrets).set_credentials(
            AgentCredentials(
                agent_id=keys.agent_id,
                psk_identity=keys.psk_identity,
                psk_key=keys.psk_key,
                server_address="127.0.0.1",
                server_port=self.admin_port,
                server_host="localhost",
                server_uri=ADMIN_URI,
                tar=ADMIN_TAR,
                kic_keys={1: keys.kic_key},
                kid_keys={1: keys.kid_key},
                retry_count=3,
                retry_delay=1.0,
            )
        )
        agent = admin_agent(store, secrets, settings)
        card = build_card(store, settings, keys.iccid, agent=agent)
        engine = TerminalEngine(poll_interval=self.poll_interval)
        gateway = Gateway(InProcessLink(card), engine, GatewayConfig(sms_port=0))
        return FleetCard(keys, gateway, agent, store)

    async def start(self) -> None:
        for i in range(self.count):
            fc = self._card(card_keys(self.seed, i))
            await fc.gateway.start()
            self.cards.append(fc)
            self.by_msisdn[fc.keys.msisdn] = fc
            if i % 100 == 99:
                await asyncio.sleep(0)  # let the pumps send their TERMINAL PROFILEs

    async def stop(self) -> None:
        for fc in self.cards:
            with contextlib.suppress(Exception):
                await fc.gateway.stop()
            close = getattr(fc.store, "close", None)
            if close is not None:
                close()

    def stats(self) -> dict[str, Any]:
        reports = [fc.agent.report for fc in self.cards if fc.agent.report is not None]
        return {
            "cards": len(self.cards),
            "agent_sessions_ok": sum(fc.agent.sessions_run for fc in self.cards),
            "agent_sessions_failed": sum(1 for r in reports if not r.ok),
            "agent_attempts": sum(r.attempts for r in reports),
            "apdus": sum(fc.gateway.apdu_count for fc in self.cards),
            "busy_cards": sum(1 for fc in self.cards if fc.agent.busy),
        }


_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


class SmsRouter:
    """The loopback "SMSC" of the load generator: `POST /sms?msisdn=<digits>` with an
    SMS-DELIVER TPDU (Content-Type application/vnd.3gpp.sms) is handed to that card's
    gateway, and answered like `aio/smsc_local.py` answers (200, X-SMS-Status, the PoR user
    data as the body). HTTP/1.1 keep-alive; requests with a Content-Length body only (the
    only client is `FleetSender`)."""

    def __init__(self, fleet: Fleet, host: str = "127.0.0.1") -> None:
        self.fleet = fleet
        self.host = host
        self.delivered = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0, backlog=256)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}/sms"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                media = ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "content-type":
                        media = value.split(";", 1)[0].strip().lower()
                body = await reader.readexactly(length) if length else b""
                status, headers, data = await self._answer(method, target, media, body)
                out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
                out += [f"{k}: {v}" for k, v in headers]
                out.append(f"Content-Length: {len(data)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (ConnectionError, ValueError) as e:
            log.debug("router connection ended: %s", e)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(
        self, method: str, target: str, media: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(target)
        if method != "POST" or parts.path != "/sms" or media != SMS_MEDIA_TYPE:
            return 400, [], b"POST /sms?msisdn=... with an SMS-DELIVER TPDU\n"
        msisdn = parse_qs(parts.query).get("msisdn", [""])[0]
        card = self.fleet.by_msisdn.get(msisdn) or self.fleet.by_msisdn.get("+" + msisdn)
        if card is None:
            self.refused += 1
            return 404, [], f"no card with MSISDN {msisdn}\n".encode()
        try:
            result = await card.gateway.deliver_sms(body)
        except CardGone:
            return 503, [], b"the card is gone\n"
        self.delivered += 1
        return (
            200,
            [("X-SMS-Status", result.status.value), ("X-SMS-SW", f"{result.sw:04X}")],
            (result.data),
        )


class Commands:
    """The orchestrator's commands, a line each on stdin. `prof-start` / `prof-stop` switch
    the process's cProfile on and off (answered `OK`), so a profile covers the measured
    window only; stdin closed reads as `stop`."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self.profiler = cProfile.Profile() if profile else None

    async def next(self) -> list[str]:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            words = line.split() or ["stop"]
            if words[0] == "prof-start":
                if self.profiler is not None:
                    self.profiler.enable()
                _emit("OK", {})
            elif words[0] == "prof-stop":
                if self.profiler is not None:
                    self.profiler.disable()
                _emit("OK", {})
            else:
                return words

    def save(self) -> None:
        if self.profiler is not None and self.profile:
            self.profiler.disable()
            self.profiler.dump_stats(self.profile)


def _emit(kind: str, doc: dict[str, Any]) -> None:
    sys.stdout.write(f"{kind} {json.dumps(doc)}\n")
    sys.stdout.flush()


def _cpu() -> dict[str, float]:
    t = os.times()
    return {"user": t.user, "system": t.system}


async def loadgen_main(args: argparse.Namespace) -> None:
    fleet = Fleet(
        args.seed,
        args.cards,
        admin_port=args.admin_port,
        poll_interval=args.poll,
        store=args.store,
        image_dir=Path(args.image_dir) if args.image_dir else None,
    )
    router = SmsRouter(fleet)
    started = time.perf_counter()
    await fleet.start()
    await router.start()
    _emit("READY", {"router": router.url, "setup_s": time.perf_counter() - started})
    commands = Commands(args.profile)
    while (await commands.next())[0] != "stop":
        pass
    commands.save()
    stats = fleet.stats()
    stats.update(delivered=router.delivered, refused=router.refused, cpu=_cpu())
    await router.close()
    await fleet.stop()
    _emit("STATS", stats)


# -- the server's side: the SMS sender and the database-free service ---------------------------


class FleetSender(LocalTerminalSender):
    """`LocalTerminalSender`'s SMS-DELIVER TPDUs, POSTed to `SmsRouter` with the MSISDN in the
    query, over a small pool of keep-alive asyncio connections (the stock sender opens a
    connection per SMS from a thread: fine for one embedded card, not for a fleet)."""

    def __init__(self, url: str, *, connections: int = 32, timeout: float = 30.0) -> None:
        super().__init__(url, timeout=timeout)
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/sms"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(connections)

    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        tpdus = self.tpdus(packet)
        status, por = DeliveryStatus.ERROR, b""
        for tpdu in tpdus:
            status, por = await self._post_one(msisdn, tpdu)
            if status not in (DeliveryStatus.DELIVERED, DeliveryStatus.POR):
                break
        return SendResult(status, len(tpdus), por)

    async def _post_one(self, msisdn: str, tpdu: bytes) -> tuple[DeliveryStatus, bytes]:
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                try:
                    reader, writer = await asyncio.open_connection(self._host, self._port)
                except OSError as e:
                    raise SendError(f"{self.url}: {e}") from e
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = f"{self._path}?msisdn={msisdn.lstrip('+')}"
            head = (
                f"POST {target} HTTP/1.1\r\nHost: {self._host}\r\n"
                f"Content-Type: {SMS_MEDIA_TYPE}\r\nContent-Length: {len(tpdu)}\r\n\r\n"
            )
            try:
                async with asyncio.timeout(self.timeout):
                    writer.write(head.encode() + tpdu)
                    answer = await reader.readuntil(b"\r\n\r\n")
                    lines = answer.decode("latin-1").split("\r\n")
                    code = int(lines[0].split(" ", 2)[1])
                    fields = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip()
                    body = await reader.readexactly(int(fields.get("content-length", "0")))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                writer.close()
                raise SendError(f"{self.url}: {e!r}") from e
            self._idle.append((reader, writer))
        if code != 200:
            raise SendError(f"{self.url} answered {code}: {body.decode(errors='replace')}")
        try:
            return DeliveryStatus(fields.get("x-sms-status", "")), body
        except ValueError:
            raise SendError(f"X-SMS-Status {fields.get('x-sms-status')!r}") from None

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class _MemJob:
    id: str
    card: CardKeys
    round: int
    state: str = "pending"
    attempts: int = 0
    session_starts: int = 0


class MemoryRasService:
    """The calls `RasServer` makes of `RasService`, over dicts: the reference ceiling with no
    database. Jobs run per card in order; every campaign round is one PUT of one version."""

    def __init__(self, cards: Sequence[CardKeys], body: bytes, policy: RasPolicy) -> None:
        self.policy = policy
        self.cards = {c.psk_identity: c for c in cards}
        self.by_iccid = {c.iccid: c for c in cards}
        self.counters = {c.iccid: 0 for c in cards}
        self.queues: dict[str, deque[_MemJob]] = {c.iccid: deque() for c in cards}
        self.active: dict[str, _MemJob] = {}
        self.jobs: dict[str, _MemJob] = {}
        self.ready: deque[str] = deque()
        self.body = body
        self.info = ContentInfo(
            path=CONTENT_PATH,
            version=1,
            sha256=hashlib.sha256(body).hexdigest(),
            size=len(body),
            content_type=CONTENT_TYPE,
            content_encoding=None,
            content_language=None,
            realm=None,
            deleted=False,
            created_at=datetime.now(UTC),
        )
        self.round = 0
        self.total = 0
        self.done = 0
        self.failed = 0
        self.sessions: list[tuple[float, float, str]] = []

    def add_round(self) -> None:
        self.round += 1
        for iccid, queue in self.queues.items():
            job = _MemJob(str(uuid.uuid4()), self.by_iccid[iccid], self.round)
            self.jobs[job.id] = job
            queue.append(job)
            self.total += 1
            if len(queue) == 1:
                self.ready.append(iccid)

    def progress(self) -> dict[str, int]:
        newest = sum(1 for q in self.queues.values() for j in q if j.round == self.round)
        return {"open": self.total - self.done - self.failed, "open_newest": newest}

    def psk_lookup(self, identity: str) -> bytes | None:
        card = self.cards.get(identity)
        return None if card is None else card.psk_key

    def psk_cached(self, identity: str) -> bool:
        return True  # the dict is the cache

    def content_item(self, path: str, version: int) -> ContentItem:
        return ContentItem(self.info, self.body)

    def reap(self, now: datetime, *, limit: int = 1000) -> int:
        return 0

    def claim_triggers(self, owner: str, limit: int, now: datetime) -> list[TriggerWork]:
        work = []
        while self.ready and len(work) < limit:
            iccid = self.ready.popleft()
            job = self.queues[iccid][0]
            job.state = "triggered"
            job.attempts += 1
            self.active[iccid] = job
            self.counters[iccid] += 1
            card = job.card
            work.append(
                TriggerWork(
                    job_id=job.id,
                    iccid=iccid,
                    msisdn=card.msisdn,
                    psk_identity=card.psk_identity,
                    agent_id=card.agent_id,
                    counter=self.counters[iccid],
                    attempt=job.attempts,
                    lease_until=now + self.policy.trigger_ttl,
                    keys=CardOtaKeys(
                        tar=ADMIN_TAR,
                        kic=KeyRef.from_byte(KEY_BYTE),
                        kid=KeyRef.from_byte(KEY_BYTE),
                        kic_key=card.kic_key,
                        kid_key=card.kid_key,
                    ),
                )
            )
        return work

    def open_session(self, psk_identity: str, owner: str, now: datetime) -> SessionWork | None:
        card = self.cards.get(psk_identity)
        if card is None:
            return None
        job = self.active.get(card.iccid)
        if job is None:
            return None
        job.state = "in_session"
        job.session_starts += 1
        return SessionWork(
            job_id=job.id,
            iccid=card.iccid,
            operations=(Operation("put", CONTENT_PATH, 1),),
            maybe_applied=job.session_starts > 1,
            attempt=job.attempts,
            lease_until=now + self.policy.session_ttl,
        )

    def renew_lease(self, job_id: str, owner: str, now: datetime) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.state == "in_session"

    def finish_job(
        self, job_id: str, owner: str, outcome: str, reason: str | None, now: datetime
    ) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.state in ("done", "failed"):
            return job is not None and job.state == "done" and outcome == "done"
        iccid = job.card.iccid
        self.active.pop(iccid, None)
        if outcome == "retry" and job.attempts < self.policy.max_attempts:
            job.state = "pending"
            self.ready.append(iccid)
            return True
        job.state = "done" if outcome == "done" else "failed"
        if job.state == "done":
            self.done += 1
        else:
            self.failed += 1
        queue = self.queues[iccid]
        queue.popleft()
        if queue:
            self.ready.append(iccid)
        return True

    def end_session(
        self,
        job_id: str,
        owner: str,
        outcome: str,
        reason: str | None,
        *,
        started_at: datetime,
        ended_at: datetime,
        detail: Sequence[str] = (),
    ) -> bool:
        finished = self.finish_job(job_id, owner, outcome, reason, ended_at)
        self.sessions.append((started_at.timestamp(), ended_at.timestamp(), outcome))
        return finished

    def log_session(
        self,
        iccid: str,
        *,
        job_id: str | None,
        started_at: datetime,
        ended_at: datetime | None,
        outcome: str,
        detail: Sequence[str] = (),
    ) -> int | None:
        end = (ended_at or started_at).timestamp()
        self.sessions.append((started_at.timestamp(), end, outcome))
        return len(self.sessions)


class TimedService:
    """Wraps the service `RasServer` calls, timing each call (wall clock): how long the
    server's event loop waits on the database per call."""

    def __init__(self, service: Any, trips: DbTrips | None = None) -> None:
        self._service = service
        self._trips = trips
        self.calls: dict[str, list[float]] = {}
        self.round_trips: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._service, name)
        if not callable(target):
            return target
        times = self.calls.setdefault(name, [])
        clock = time.perf_counter
        trips = self._trips
        counts = self.round_trips

        def timed(*args: Any, **kwargs: Any) -> Any:
            before = trips.total if trips is not None else 0
            t = clock()
            try:
                return target(*args, **kwargs)
            finally:
                times.append(clock() - t)
                if trips is not None:
                    counts[name] = counts.get(name, 0) + trips.total - before

        setattr(self, name, timed)
        return timed

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, times in sorted(self.calls.items()):
            if not times:
                continue
            ordered = sorted(times)
            out[name] = {
                "calls": len(times),
                "total_s": sum(times),
                "mean_ms": 1000 * sum(times) / len(times),
                "p50_ms": 1000 * ordered[len(ordered) // 2],
                "p95_ms": 1000 * ordered[int(len(ordered) * 0.95)],
                "max_ms": 1000 * ordered[-1],
                "round_trips_per_call": self.round_trips.get(name, 0) / len(times),
            }
        return out


class DbTrips:
    """Counts the database round trips of an engine: statements, BEGIN, COMMIT, ROLLBACK and
    the pool's ping of a connection that sat idle. `total` is the calling thread's count (the
    server makes its calls on several threads at once)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.kinds = {"statements": 0, "begin": 0, "commit": 0, "rollback": 0, "ping": 0}
        kinds = self.kinds
        self._mine = threading.local()
        mine = self._mine

        def counter(kind: str) -> Any:
            def count(*args: Any, **kwargs: Any) -> None:
                kinds[kind] += 1
                mine.total = getattr(mine, "total", 0) + 1

            return count

        event.listen(engine, "before_cursor_execute", counter("statements"))
        event.listen(engine, "begin", counter("begin"))
        event.listen(engine, "commit", counter("commit"))
        event.listen(engine, "rollback", counter("rollback"))
        dialect = engine.dialect
        ping = dialect.do_ping

        def do_ping(dbapi_connection: Any) -> Any:
            kinds["ping"] += 1
            mine.total = getattr(mine, "total", 0) + 1
            return ping(dbapi_connection)

        dialect.do_ping = do_ping

    @property
    def total(self) -> int:
        return int(getattr(self._mine, "total", 0))


async def server_main(args: argparse.Namespace) -> None:
    from openscws.ras.server import EndpointConfig, RasServer

    policy = RasPolicy(
        trigger_ttl=timedelta(seconds=args.trigger_ttl),
        session_ttl=timedelta(seconds=args.session_ttl),
        retry_base=timedelta(seconds=0.5),
        retry_max=timedelta(seconds=5),
        max_attempts=5,
    )
    db = None
    trips: DbTrips | None = None
    memory: MemoryRasService | None = None
    service: Any
    if args.db == "memory":
        cards = [
            card_keys(args.seed, i) for i in range(args.cards) if i % args.servers == args.index
        ]
        memory = MemoryRasService(cards, content_body(args.body_size), policy)
        service = memory
    else:
        from openscws.ras.db import RasDatabase
        from openscws.ras.vault import Vault

        db = RasDatabase(args.db)
        db.check_current()
        trips = DbTrips(db.engine)
        service = RasService(db, Vault.open(Path(args.data_dir)), policy)
    timed = TimedService(service, trips)
    sender = FleetSender(args.router, connections=args.sms_connections)
    server = RasServer(
        cast(RasService, timed),
        sender,
        EndpointConfig(
            host="127.0.0.1",
            port=args.port,
            uri=ADMIN_URI,
            trigger_interval=args.trigger_interval,
            trigger_batch=args.trigger_batch,
            owner=f"bench-server-{args.index}",
            # MemoryRasService's dicts are not for several threads at once.
            db_workers=1 if memory is not None else EndpointConfig().db_workers,
        ),
    )
    await server.start()
    _emit("READY", {"port": server.port, "pid": os.getpid()})
    commands = Commands(args.profile)
    while True:
        command = (await commands.next())[0]
        if command == "stop":
            commands.save()
            break
        if memory is None:
            continue
        if command == "round":
            memory.add_round()
            server.wake()
            _emit("OK", {"jobs": memory.total})
        elif command == "progress":
            _emit("PROGRESS", memory.progress())
        elif command == "result":
            _emit("RESULT", {"sessions": memory.sessions})
    await server.stop()
    sender.close()
    if db is not None:
        db.dispose()
    _emit(
        "STATS",
        {
            "sessions_done": server.sessions_done,
            "triggers_sent": server.triggers_sent,
            "cpu": _cpu(),
            "service_calls": timed.summary(),
            "db_round_trips": trips.kinds if trips is not None else {},
        },
    )


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="role", required=True)
    lg = sub.add_parser("loadgen", help="the virtual cards, their gateways and the SMS router")
    lg.add_argument("--cards", type=int, required=True)
    lg.add_argument("--seed", required=True)
    lg.add_argument("--admin-port", type=int, required=True, help="the agents' default port")
    lg.add_argument("--poll", type=float, default=5.0, help="terminal STATUS poll interval, s")
    lg.add_argument("--store", choices=("memory", "image"), default="memory")
    lg.add_argument("--image-dir", help="where --store image puts the card images")
    sv = sub.add_parser("server", help="one RasServer process")
    sv.add_argument("--db", required=True, help="SQLAlchemy URL, or 'memory'")
    sv.add_argument("--data-dir", default="", help="holds master.key (the vault)")
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--router", required=True, help="the load generator's SMS router URL")
    sv.add_argument("--index", type=int, default=0)
    sv.add_argument("--servers", type=int, default=1)
    sv.add_argument("--cards", type=int, default=0, help="memory: the fleet's size")
    sv.add_argument("--seed", default="", help="memory: the fleet's key seed")
    sv.add_argument("--body-size", type=int, default=1024)
    sv.add_argument("--trigger-interval", type=float, default=0.05)
    sv.add_argument("--trigger-batch", type=int, default=100)
    sv.add_argument("--trigger-ttl", type=float, default=120.0)
    sv.add_argument("--session-ttl", type=float, default=120.0)
    sv.add_argument("--sms-connections", type=int, default=32)
    for sp in (lg, sv):
        sp.add_argument(
            "--profile", help="write a cProfile of the measured window (prof-start/stop) here"
        )
        sp.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    entry = loadgen_main if args.role == "loadgen" else server_main
    asyncio.run(entry(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
