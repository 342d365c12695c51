"""RasServer's card endpoint with its database calls on worker threads: a card (python's ssl
PSK-TLS client around the agent's `AdminSession`) against a real server on SQLite. The steps
of a session stay in order, the verdict is stored before the card hears the end, and a card
that leaves while a database call is in flight leaves a retried job and a session log, not a
stuck lease or a traceback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from openscws.amdb.client import AdminSession, Outcome, SessionParams
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.errors import ListenError
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.senders import DeliveryStatus, SendResult
from openscws.ras.server import EndpointConfig, RasServer
from openscws.ras.service import RasPolicy, RasService, SessionWork
from openscws.ras.vault import Vault
from openscws.tls.context import psk_client_context

ICCID = "8988211000000000003"
IDENTITY = "scws-card-7"
KEY = bytes(range(32, 48))
OWNER = "test-server"


class NoSms:
    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        return SendResult(DeliveryStatus.ACCEPTED)


class SlowOpen(RasService):
    """open_session waits for `release`: a database call still in flight."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.entered = threading.Event()
        self.release = threading.Event()

    def open_session(self, psk_identity: str, owner: str, now: datetime) -> SessionWork | None:
        self.entered.set()
        assert self.release.wait(10)
        return super().open_session(psk_identity, owner, now)


class Card:
    """The executor of the card's side: answers PUT 201 and the commit 200."""

    def __init__(self, service: RasService) -> None:
        self.service = service
        self.seen: list[tuple[str, str]] = []
        self.state_at_end: str | None = None

    def execute(self, request: EmbeddedRequest, now: float) -> EmbeddedResponse:
        self.seen.append((request.method, request.target))
        status = 200 if request.method == "POST" else 201
        return EmbeddedResponse(status, (("Content-Length", "0"),), b"")

    def end(self, ok: bool) -> None:
        if ok:
            job = self.service.card_jobs(ICCID)[0]
            self.state_at_end = job.state


async def run_card(
    port: int,
    executor: Card,
    *,
    leave_after: int | None = None,
    pause: float = 0.0,
    between: Callable[[int], None] | None = None,
) -> AdminSession:
    """One session over PSK-TLS; with `leave_after`, the card drops the connection once it
    has that many commands; `pause` seconds before each answer, after `between(commands)`."""
    ctx = psk_client_context(IDENTITY, KEY, profile="compat")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    session = AdminSession(SessionParams("127.0.0.1", "//card-7", "/scws/admin"), executor, 0.0)
    try:
        writer.write(session.data_to_send())
        while not session.should_close:
            data = await asyncio.wait_for(reader.read(65536), 10)
            session.receive_data(data, 0.0)
            if leave_after is not None and session.commands_run >= leave_after:
                break
            if pause and session.commands_run and not session.should_close:
                await asyncio.sleep(pause)
                if between is not None:
                    await asyncio.to_thread(between, session.commands_run)
            writer.write(session.data_to_send())
            if not data:
                break
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return session


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SlowOpen]:
    yield from make_service(tmp_path, RasPolicy())


@pytest.fixture
def short_lease(tmp_path: Path) -> Iterator[SlowOpen]:
    """Sessions hold their job for 1 s unless renewed."""
    yield from make_service(tmp_path, RasPolicy(session_ttl=timedelta(seconds=1)))


def make_service(tmp_path: Path, policy: RasPolicy) -> Iterator[SlowOpen]:
    (tmp_path / "ras").mkdir()
    db = RasDatabase(default_url(tmp_path / "ras"))
    db.upgrade()
    service = SlowOpen(db, Vault.create(tmp_path / "ras"), policy)
    service.release.set()
    service.add_card(
        ICCID,
        "+15550100007",
        psk_identity=IDENTITY,
        psk_key=KEY,
        agent_id="//card-7",
        ota_tar=bytes(3),
        kic_key=bytes(16),
        kid_key=bytes(16),
    )
    service.put_content("/a.html", b"<p>a</p>", "text/html")
    service.create_campaign("c")
    assert len(service.claim_triggers(OWNER, 10, datetime.now(UTC))) == 1
    yield service
    db.dispose()


def serving(service: RasService, body: Callable[[RasServer], Awaitable[None]]) -> None:
    async def main() -> None:
        config = EndpointConfig(port=0, owner=OWNER, tls_profile="compat")
        server = RasServer(service, NoSms(), config)
        await server.start(triggers=False)
        try:
            await body(server)
        finally:
            await server.stop()

    asyncio.run(main())


async def logged(service: RasService) -> None:
    for _ in range(200):
        if service.session_logs(ICCID):
            return
        await asyncio.sleep(0.05)


def test_session_steps_in_order(service: SlowOpen) -> None:
    card = Card(service)

    async def body(server: RasServer) -> None:
        session = await run_card(server.port, card)
        assert session.outcome is Outcome.DONE
        assert server.sessions_done == 1

    serving(service, body)
    assert card.seen == [("PUT", "/a.html"), ("POST", "/.scws/commit")]
    # The job was done in the database before the card heard the 204.
    assert card.state_at_end == "done"
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "done"
    assert entry.detail[1:] == ("PUT /a.html -> 201", "POST /.scws/commit -> 200")
    # The session log names the suite the handshake negotiated.
    assert entry.detail[0].startswith(f"PSK-TLS as {IDENTITY!r}: TLSv1.2 "), entry.detail


def test_card_leaves_while_open_session_runs(
    service: SlowOpen, caplog: pytest.LogCaptureFixture
) -> None:
    service.release.clear()
    caplog.set_level(logging.INFO, logger="openscws.ras")

    async def body(server: RasServer) -> None:
        task = asyncio.create_task(run_card(server.port, Card(service)))
        # The card's first POST is in and the server's open_session is running: the card
        # drops the connection before any answer, then the call returns.
        assert await asyncio.to_thread(service.entered.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.1)
        service.release.set()
        await logged(service)

    serving(service, body)
    (job,) = service.card_jobs(ICCID)
    assert job.state == "pending"  # back in the queue, with a backoff
    assert job.lease_owner is None
    assert job.last_error is not None
    assert "session broke" in job.last_error
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "retry"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_card_leaves_after_a_command(service: SlowOpen) -> None:
    card = Card(service)

    async def body(server: RasServer) -> None:
        session = await run_card(server.port, card, leave_after=1)
        assert session.outcome is None
        await logged(service)

    serving(service, body)
    assert card.seen == [("PUT", "/a.html")]
    (job,) = service.card_jobs(ICCID)
    assert job.state == "pending"
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "retry"
    assert entry.detail[-1].startswith("session broke")


def test_server_stop_waits_for_verdicts(service: SlowOpen) -> None:
    """A session whose card leaves as the server stops still gets its verdict stored."""
    service.release.clear()

    async def body(server: RasServer) -> None:
        task = asyncio.create_task(run_card(server.port, Card(service)))
        assert await asyncio.to_thread(service.entered.wait, 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        threading.Timer(0.3, service.release.set).start()

    serving(service, body)  # stop() returns once the worker calls are through
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "retry"


def test_a_long_session_renews_its_lease(short_lease: SlowOpen) -> None:
    """Each answer comes 0.7 s after its command, so the session outlives its 1 s lease;
    the server renews the lease before each command past half of it, and a reaper running
    meanwhile (another server's trigger loop) leaves the job alone."""
    service = short_lease
    reaped: list[int] = []
    card = Card(service)

    async def body(server: RasServer) -> None:
        session = await run_card(
            server.port,
            card,
            pause=0.7,
            between=lambda _: reaped.append(service.reap(datetime.now(UTC))),
        )
        assert session.outcome is Outcome.DONE

    serving(service, body)
    assert reaped == [0, 0]
    assert card.state_at_end == "done"
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "done"


def test_a_lost_lease_ends_the_session_without_commit(short_lease: SlowOpen) -> None:
    """The job is reaped before the server renews its lease (as if this server had stalled):
    the server sends no further command, above all no commit, and the job is retried."""
    service = short_lease
    card = Card(service)

    def lose(commands: int) -> None:
        assert service.reap(datetime.now(UTC) + timedelta(seconds=5)) == 1

    async def body(server: RasServer) -> None:
        session = await run_card(server.port, card, pause=0.7, between=lose)
        assert session.outcome is Outcome.FAILED  # 503: the card drops what it staged

    serving(service, body)
    assert card.seen == [("PUT", "/a.html")]
    (job,) = service.card_jobs(ICCID)
    assert job.state == "pending"
    (entry,) = service.session_logs(ICCID)
    assert entry.outcome == "retry"
    assert entry.detail[-1] == "the job's lease was lost mid-session"


def test_a_taken_port_is_a_listen_error(service: SlowOpen) -> None:
    async def main() -> None:
        first = RasServer(service, NoSms(), EndpointConfig(port=0, owner=OWNER))
        await first.start(triggers=False)
        try:
            second = RasServer(service, NoSms(), EndpointConfig(port=first.port, owner=OWNER))
            with pytest.raises(ListenError, match=f"127.0.0.1:{first.port}: Address already"):
                await second.start(triggers=False)
        finally:
            await first.stop()

    asyncio.run(main())


def test_the_event_loop_never_reads_the_database(tmp_path: Path) -> None:
    """A card the server did not trigger (here: a server started after the claim, with an
    empty PSK cache) still gets its key looked up on a database thread: its identity is read
    from the ClientKeyExchange and the handshake waits for the key. No statement runs on the
    event loop's thread, the handshake's included."""
    seeded = next(make_service(tmp_path, RasPolicy()))
    fresh = SlowOpen(seeded._db, Vault.open(tmp_path / "ras"), RasPolicy())
    fresh.release.set()
    assert not fresh.psk_cached(IDENTITY)
    on_loop: list[str] = []

    def where(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if threading.current_thread() is threading.main_thread():
            on_loop.append(statement)

    event.listen(seeded._db.engine, "before_cursor_execute", where)
    card = Card(fresh)
    card.end = lambda ok: None  # type: ignore[method-assign]  # no reads from the test's side

    async def body(server: RasServer) -> None:
        session = await run_card(server.port, card)
        assert session.outcome is Outcome.DONE

    serving(fresh, body)
    assert card.seen == [("PUT", "/a.html"), ("POST", "/.scws/commit")]
    assert on_loop == [], on_loop


def test_psk_hint_reaches_the_card(service: SlowOpen) -> None:
    """admin.psk_hint goes out in the ServerKeyExchange, through the same `PskKeys` the card's
    own port uses (openscws.tls.psk)."""
    import ssl

    for hint in ("scws", None):
        server = RasServer(service, NoSms(), EndpointConfig(port=0, owner=OWNER, psk_hint=hint))
        assert server.psk.hint == hint
        seen: list[str | None] = []
        ctx = psk_client_context(IDENTITY, KEY)

        def callback(got: str | None, seen: list[str | None] = seen) -> tuple[str, bytes]:
            seen.append(got)
            return IDENTITY, KEY

        ctx.set_psk_client_callback(callback)
        bios = [ssl.MemoryBIO() for _ in range(4)]
        srv = server.context.wrap_bio(bios[0], bios[1], server_side=True)
        cli = ctx.wrap_bio(bios[2], bios[3])
        for _ in range(4):
            for end in (cli, srv):
                try:
                    end.do_handshake()
                except ssl.SSLError:
                    pass
            bios[0].write(bios[3].read())
            bios[2].write(bios[1].read())
        assert seen == [hint]  # the ServerKeyExchange's hint, whatever the handshake's end
