"""RasService on a real PostgreSQL (see conftest.py's `postgres` fixture): the shared
contract, the migrations, row locks with SKIP LOCKED, and two OS processes working one job
queue."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ras_contract import (
    FAST_HASHER,
    POLICY,
    T0,
    ServiceContract,
    add_card,
    iccid,
    schema_diff,
    seed,
)
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from openscws.cli import main
from openscws.ras.db import RasDatabase
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

WORKER = Path(__file__).with_name("ras_pg_worker.py")


@pytest.fixture
def ras(pg_db: RasDatabase, vault: Vault) -> RasService:
    return RasService(pg_db, vault, POLICY, password_hasher=FAST_HASHER)


class TestPostgres(ServiceContract):
    pass


def test_models_match_migrations(pg_db: RasDatabase) -> None:
    assert pg_db.dialect == "postgresql"
    assert pg_db.current_revision() == pg_db.head_revision() == "0004"
    assert schema_diff(pg_db) == []
    pg_db.upgrade()  # a second migrator finds nothing to do


def test_partial_unique_index(pg_db: RasDatabase) -> None:
    with pg_db.read() as s:
        definition = s.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_jobs_one_active_per_card'")
        ).scalar()
    assert definition is not None
    assert "UNIQUE" in definition
    assert "WHERE" in definition
    assert "triggered" in definition


def test_claim_skips_locked_cards(ras: RasService, pg_db: RasDatabase) -> None:
    """A card whose row another transaction holds is skipped, not waited for."""
    cards = seed(ras, 3)
    ras.create_campaign("c", now=T0)
    holder = pg_db.engine.connect()
    try:
        tx = holder.begin()
        holder.execute(text("SELECT id FROM cards WHERE iccid = :i FOR UPDATE"), {"i": cards[0]})
        work = ras.claim_triggers("A", 10, T0)
        assert sorted(w.iccid for w in work) == cards[1:]
        # open_session waits for the lock instead (the card is really there).
        result: list[object] = []
        opener = threading.Thread(
            target=lambda: result.append(ras.open_session("id-0", "B", T0)), daemon=True
        )
        opener.start()
        opener.join(0.5)
        assert opener.is_alive()
        assert not result
        tx.commit()
        opener.join(10)
        assert result
        assert result[0] is not None
    finally:
        holder.close()
    assert ras.claim_triggers("A", 10, T0) == []


def test_psk_lookup_after_removal_elsewhere(pg_db: RasDatabase, vault: Vault) -> None:
    clock = [0.0]
    mine = RasService(pg_db, vault, POLICY, monotonic=lambda: clock[0])
    theirs = RasService(pg_db, vault, POLICY)
    add_card(theirs, 5)
    assert mine.psk_lookup("id-5") is not None
    theirs.remove_card(iccid(5))
    clock[0] += POLICY.psk_cache_ttl + 0.1
    assert mine.psk_lookup("id-5") is None


def test_two_processes_share_the_queue(pg_db: RasDatabase, vault: Vault, tmp_path: Path) -> None:
    """Two server processes on one database, 100 cards with 2 jobs each: every job is
    claimed by exactly one process and done exactly once, a card never has two active jobs,
    and each card's jobs run in order with counters 1 and 2."""
    ras = RasService(pg_db, vault, POLICY)
    ras.put_content("/index.html", b"v1", "text/html", now=T0)
    for n in range(100):
        add_card(ras, n)
    now = datetime.now(UTC) - timedelta(seconds=5)
    first = ras.create_campaign("first", now=now)
    ras.put_content("/index.html", b"v2", "text/html", now=now)
    second = ras.create_campaign("second", now=now + timedelta(seconds=1))
    url = pg_db.engine.url.render_as_string(hide_password=False)
    assert vault.path is not None
    outs = [tmp_path / f"{owner}.json" for owner in ("A", "B")]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, owner, str(vault.path.parent), str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for owner, out in zip(("A", "B"), outs, strict=True)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for stream in (p.stdin, p.stdout):
                if stream is not None:
                    stream.close()
    results = [json.loads(out.read_text()) for out in outs]
    assert [r["violations"] for r in results] == [[], []]

    claims = [c for r in results for c in r["claims"]]
    claimed = Counter(c["job"] for c in claims)
    all_jobs = {row.job_id for cid in (first.id, second.id) for row in ras.campaign_cards(cid)}
    assert len(all_jobs) == 200
    assert set(claimed) == all_jobs
    assert set(claimed.values()) == {1}
    assert all(r["claims"] for r in results), "both processes took part"
    finished = Counter(j for r in results for j in r["finished"])
    assert set(finished) == all_jobs
    assert set(finished.values()) == {1}

    counters: dict[str, list[int]] = defaultdict(list)
    for c in claims:
        counters[c["iccid"]].append(c["counter"])
    assert {k: sorted(v) for k, v in counters.items()} == {iccid(n): [1, 2] for n in range(100)}

    windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        for card, start, end in r["intervals"]:
            windows[card].append((start, end))
    for card, spans in windows.items():
        spans.sort()
        assert spans[0][1] <= spans[1][0], f"{card} had two active jobs at once"

    first_done = {row.iccid: row.updated_at for row in ras.campaign_cards(first.id)}
    for row in ras.campaign_cards(second.id):
        assert row.state == "done"
        assert first_done[row.iccid] <= row.updated_at  # in creation order
    assert ras.campaign_progress(first.id)["done"] == 100
    assert ras.campaign_progress(second.id)["done"] == 100
    assert {c.ota_counter for c in ras.list_cards()} == {2}


def test_cli_on_postgres(
    pg_db: RasDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = pg_db.engine.url.render_as_string(hide_password=False)
    where = ["--data-dir", str(tmp_path / "ras"), "--db", url]
    assert main(["admin", "init", *where]) == 0
    assert main(["admin", "card", "add", iccid(1), "--msisdn", "+15550100001", *where]) == 0
    page = tmp_path / "a.html"
    page.write_bytes(b"<p>a</p>")
    assert main(["admin", "content", "put", str(page), "/a.html", *where]) == 0
    assert main(["admin", "campaign", "create", "pg", *where]) == 0
    capsys.readouterr()
    assert main(["admin", "campaign", "show", "1", *where]) == 0
    out = capsys.readouterr().out
    assert "pending 1" in out
    assert iccid(1) in out
    assert not (tmp_path / "ras" / "ras.db").exists()  # the state went to PostgreSQL


def test_idle_connections_are_pinged(postgres: Any, vault: Vault) -> None:
    """The pool pings a connection that sat idle (here: any idle time) before use, so a
    connection the server dropped meanwhile is replaced, not handed out; one in steady use
    (idle below the threshold) is not pinged, and a dropped one then fails one call only."""
    name = postgres.create_database()
    try:
        pinged = RasDatabase(postgres.url(name), idle_ping=0.0)
        pinged.upgrade()
        trusting = RasDatabase(postgres.url(name), idle_ping=3600.0)
        add_card(RasService(pinged, vault, POLICY), 0)
        assert RasService(pinged, vault, POLICY).card(iccid(0)) is not None
        assert RasService(trusting, vault, POLICY).card(iccid(0)) is not None
        postgres._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        assert RasService(pinged, vault, POLICY).card(iccid(0)) is not None
        with pytest.raises(OperationalError):
            RasService(trusting, vault, POLICY).card(iccid(0))
        assert RasService(trusting, vault, POLICY).card(iccid(0)) is not None
        pinged.dispose()
        trusting.dispose()
    finally:
        postgres.drop_database(name)
