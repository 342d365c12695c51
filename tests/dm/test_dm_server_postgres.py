"""The DM server's store on PostgreSQL (a throwaway cluster of Debian's postgresql, the RAS
tests' `postgres` fixture): its migrations, sealed secrets, jobs claimed once among
concurrent servers, a whole session with a job, and the used HTTP Digest nonces one record
for every server on the database (a replay to another server refused, a race won once)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dm_server_env import SERVER_URI, client
from test_dm_server_nonces import race_contract, replay_contract

from openscws.dm.db import DmDatabase, DmStore
from openscws.dm.server import DmRequest, DmService
from openscws.dm.session import Outgoing
from openscws.ras.vault import Vault

pytestmark = pytest.mark.peer

_spec = importlib.util.spec_from_file_location(
    "_ras_conftest_for_dm", Path(__file__).parents[1] / "ras" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_ras = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _ras
_spec.loader.exec_module(_ras)
postgres = _ras.postgres


@pytest.fixture
def pg_store(postgres: Any, tmp_path: Path) -> Iterator[DmStore]:
    name = postgres.create_database()
    db = DmDatabase(postgres.url(name))
    db.upgrade()
    yield DmStore(db, Vault.create(tmp_path))
    db.dispose()
    postgres.drop_database(name)


def add(store: DmStore, dev: str) -> None:
    store.add_device(
        dev, app_auth="syncml:auth-md5", app_username="dev", app_password="s3cret",
        server_id="openscws-dm", server_password="srv",
    )  # fmt: skip


def test_jobs_are_claimed_once_among_servers(pg_store: DmStore) -> None:
    assert pg_store.db.is_postgresql
    assert pg_store.db.current_revision() == "dm0003"
    add(pg_store, "IMEI:PG")
    secrets = pg_store.secrets("IMEI:PG")
    assert secrets is not None
    assert secrets.account.password == "s3cret"
    jobs = [pg_store.create_job("IMEI:PG", [{"op": "Get", "uri": "./DevInfo/Mod"}]).id
            for _ in range(20)]  # fmt: skip
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while (job := pg_store.claim_job("IMEI:PG")) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == jobs


def test_session_on_postgresql(pg_store: DmStore) -> None:
    add(pg_store, "IMEI:PG2")
    job = pg_store.create_job("IMEI:PG2", [{"op": "Get", "uri": "./DevInfo/Mod"}])
    counter = itertools.count()
    service = DmService(pg_store, server_uri=SERVER_URI, new_nonce=lambda: b"%d" % next(counter))
    session = client("IMEI:PG2")
    out: Outgoing | None = session.start()
    while out is not None:
        answer = service.handle(DmRequest("POST", "/dm", {"content-type": out.content_type},
                                          out.body))  # fmt: skip
        assert answer.status == 200
        out = session.receive(answer.body, dict(answer.headers)["Content-Type"])
    done = pg_store.job(job.id)
    assert done is not None
    assert done.state == "done"
    assert done.results == [{"op": "Get", "uri": "./DevInfo/Mod", "status": 200,
                             "data": "virtual"}]  # fmt: skip


@pytest.fixture
def pg_second(pg_store: DmStore) -> Iterator[DmStore]:
    """Another server process's store on the same PostgreSQL database."""
    db = DmDatabase(pg_store.db.engine.url.render_as_string(hide_password=False))
    yield DmStore(db, pg_store.vault)
    db.dispose()


def test_a_digest_replay_to_another_server_is_refused(
    pg_store: DmStore, pg_second: DmStore
) -> None:
    replay_contract(pg_store, pg_second)


def test_the_same_digest_request_racing_at_two_servers_is_accepted_once(
    pg_store: DmStore, pg_second: DmStore
) -> None:
    race_contract(pg_store, pg_second)


def test_expired_digest_nonces_are_purged(pg_store: DmStore) -> None:
    assert pg_store.use_digest_nonce("bm9uY2Ux", "00000001", 1_000)
    assert pg_store.use_digest_nonce("bm9uY2Uy", "00000001", 5_000)
    assert not pg_store.use_digest_nonce("bm9uY2Uy", "00000001", 5_000)
    assert pg_store.use_digest_nonce("bm9uY2Uz", "00000001", 9_000, purge_before=5_000)
    assert pg_store.digest_nonce_count() == 2
    assert pg_store.use_digest_nonce("bm9uY2Ux", "00000001", 1_000)  # its record is gone
