"""Used HTTP Digest nonces are one record in the database, shared by every DM server process
on it (RFC 7616 §5.5): a request accepted at one server is refused when replayed to another
that shares the database and the Digest secret, a race of the same request at both is won
once, and the records of expired nonces are purged now and then by an indexed range. The
contracts here run on PostgreSQL too (test_dm_server_postgres.py)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dm_server_env import (
    SERVER_URI,
    Env,
    cert_context,
    client,
    digest_header,
    post,
    run_env,
)
from sqlalchemy import event

from openscws.dm import auth
from openscws.dm import message as m
from openscws.dm.db import DmDatabase, DmStore, default_url
from openscws.dm.db_models import HttpAuth
from openscws.dm.server import (
    NONCE_KEEP_FACTOR,
    NONCE_PURGE_EVERY_S,
    DmAnswer,
    DmRequest,
    DmService,
    start_dm_server,
)
from openscws.ras.vault import Vault

SECRET = b"shared digest secret, 32 bytes.."
XML = m.CONTENT_TYPE_XML
_ids = itertools.count()


def digest_device(store: DmStore) -> str:
    dev = f"IMEI:35350000{next(_ids)}"
    store.add_device(
        dev, app_auth=auth.AUTH_MD5, app_username="dev", app_password="s3cret",
        server_id="openscws-dm", server_password="srv-secret",
        http_auth=HttpAuth.DIGEST, http_username="hu", http_password="hp",
    )  # fmt: skip
    return dev


def service(store: DmStore, **kw: Any) -> DmService:
    """A DM server process on `store`'s database, with the shared Digest secret."""
    return DmService(store, server_uri=SERVER_URI, digest_secret=SECRET, **kw)


def ask(svc: DmService, body: bytes, authorization: str | None = None) -> DmAnswer:
    headers = {"content-type": XML}
    if authorization is not None:
        headers["authorization"] = authorization
    return svc.handle(DmRequest("POST", "/dm", headers, body))


def challenge(svc: DmService, body: bytes) -> str:
    """The Digest SHA-256 challenge of the 401 that `body` without credentials gets."""
    answer = ask(svc, body)
    assert answer.status == 401
    return next(v for k, v in answer.headers if k == "WWW-Authenticate" and "SHA-256" in v)


def nonces_of(answer: DmAnswer) -> set[str]:
    return {v.split('nonce="')[1].split('"')[0] for k, v in answer.headers if 'nonce="' in v}


def replay_contract(first: DmStore, second: DmStore) -> None:
    """`first` and `second`: two server processes' stores on one database."""
    dev = digest_device(first)
    a, b = service(first), service(second)
    pkg1 = client(dev).start().body
    chal = challenge(a, pkg1)
    header = digest_header(chal, "hu", "hp", "POST", "/dm", "SHA-256")
    assert ask(a, pkg1, header).status == 200
    replayed = ask(b, pkg1, header)
    assert replayed.status == 401  # the same 401 with a fresh challenge as any refusal
    assert nonces_of(replayed)  # a nonce to answer anew
    assert ask(a, pkg1, header).status == 401
    # The nonce itself is good at the other process: its next count is accepted there, once.
    pkg1 = client(dev).start().body
    following = digest_header(chal, "hu", "hp", "POST", "/dm", "SHA-256", nc="00000002")
    assert ask(b, pkg1, following).status == 200
    assert ask(a, pkg1, following).status == 401
    assert ask(b, pkg1, following).status == 401


def race_contract(first: DmStore, second: DmStore, racers: int = 8) -> None:
    """The same request at two processes at once: exactly one accepts it."""
    dev = digest_device(first)
    servers = [service(first), service(second)]
    pkg1 = client(dev).start().body
    header = digest_header(challenge(servers[0], pkg1), "hu", "hp", "POST", "/dm", "MD5")
    start = threading.Barrier(racers)
    statuses: list[int] = []
    lock = threading.Lock()

    def racer(svc: DmService) -> None:
        start.wait()
        status = ask(svc, pkg1, header).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=racer, args=(servers[n % 2],)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] + [401] * (racers - 1)


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[DmStore, DmStore]]:
    vault = Vault.create(tmp_path)
    dbs = [DmDatabase(default_url(tmp_path)) for _ in range(2)]
    dbs[0].upgrade()
    yield DmStore(dbs[0], vault), DmStore(dbs[1], vault)
    for db in dbs:
        db.dispose()


def test_a_request_accepted_at_one_process_is_refused_at_another(
    two_processes: tuple[DmStore, DmStore],
) -> None:
    replay_contract(*two_processes)


def test_the_same_request_racing_at_two_processes_is_accepted_once(
    two_processes: tuple[DmStore, DmStore],
) -> None:
    race_contract(*two_processes)


def test_the_refusal_comes_from_the_shared_record(
    two_processes: tuple[DmStore, DmStore], tmp_path: Path
) -> None:
    """A server on another database (same secret, so the nonce checks there) knows nothing
    of the use: what refuses the replay above is the record the processes share."""
    first, _ = two_processes
    dev = digest_device(first)
    pkg1 = client(dev).start().body
    a = service(first)
    header = digest_header(challenge(a, pkg1), "hu", "hp", "POST", "/dm", "SHA-256")
    assert ask(a, pkg1, header).status == 200
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = DmDatabase(default_url(elsewhere))
    db.upgrade()
    try:
        other = DmStore(db, first.vault)
        other.add_device(
            dev, app_auth=auth.AUTH_MD5, app_username="dev", app_password="s3cret",
            server_id="openscws-dm", server_password="srv-secret",
            http_auth=HttpAuth.DIGEST, http_username="hu", http_password="hp",
        )  # fmt: skip
        assert ask(service(other), pkg1, header).status == 200
    finally:
        db.dispose()


def test_expired_uses_are_purged_now_and_then(tmp_path: Path) -> None:
    """Rows go once their nonce is NONCE_KEEP_FACTOR lifetimes old, deleted at most once per
    NONCE_PURGE_EVERY_S by each process, in the transaction that records a use."""
    db = DmDatabase(default_url(tmp_path))
    db.upgrade()
    store = DmStore(db, Vault.create(tmp_path))
    clock = [1_800_000_000.0]
    svc = service(store, clock=lambda: clock[0])
    lifetime = svc.challenger.lifetime_ms / 1000
    purges: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM DM_DIGEST_NONCES"):
            purges.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)

    def use_at(t: float) -> None:
        clock[0] = t
        pkg1 = client(digest_device(store)).start().body
        header = digest_header(challenge(svc, pkg1), "hu", "hp", "POST", "/dm", "SHA-256")
        assert ask(svc, pkg1, header).status == 200

    t0 = clock[0]
    try:
        use_at(t0)
        assert (store.digest_nonce_count(), len(purges)) == (1, 1)
        use_at(t0 + NONCE_PURGE_EVERY_S / 2)  # too soon to purge again
        assert (store.digest_nonce_count(), len(purges)) == (2, 1)
        use_at(t0 + lifetime + NONCE_PURGE_EVERY_S)  # expired, but kept a while longer
        assert (store.digest_nonce_count(), len(purges)) == (3, 2)
        use_at(t0 + NONCE_KEEP_FACTOR * lifetime + NONCE_PURGE_EVERY_S)  # the first two go
        assert (store.digest_nonce_count(), len(purges)) == (2, 3)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
        db.dispose()


def test_the_purge_is_an_index_range(tmp_path: Path) -> None:
    db = DmDatabase(default_url(tmp_path))
    db.upgrade()
    try:
        with db.engine.connect() as c:
            plan = c.exec_driver_sql(
                "EXPLAIN QUERY PLAN DELETE FROM dm_digest_nonces WHERE issued_ms < 5"
            ).all()
        assert any("USING INDEX ix_dm_digest_nonces_issued_ms" in str(row) for row in plan), plan
    finally:
        db.dispose()


# -- over HTTPS: two DM servers on one data dir ------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from run_env(tmp_path_factory.mktemp("dmnonce"), digest_secret=SECRET)


def test_a_replay_to_another_https_server_is_refused(env: Env) -> None:
    db = DmDatabase(default_url(env.root))
    other = service(DmStore(db, env.store.vault))
    second = asyncio.run_coroutine_threadsafe(
        start_dm_server(other, env.server.tls), env.loop
    ).result(10)
    try:
        dev = digest_device(env.store)
        ctx = cert_context(env)
        out = client(dev).start()
        first = post(env, ctx, out.body, out.content_type)
        assert first.status == 401
        chal = next(h for h in first.headers.get_all("WWW-Authenticate") or [] if "SHA-256" in h)
        header = {"Authorization": digest_header(chal, "hu", "hp", "POST", "/dm", "SHA-256")}
        assert post(env, ctx, out.body, out.content_type, header).status == 200
        replayed = post(second.port, ctx, out.body, out.content_type, header)
        assert replayed.status == 401
        assert replayed.headers.get_all("WWW-Authenticate")
    finally:
        asyncio.run_coroutine_threadsafe(second.stop(), env.loop).result(10)
        db.dispose()
