"""RasService on SQLite: the shared contract (ras_contract.py), plus what only needs one
database: the vault, secrets kept out of logs and reprs, the PSK cache, content races."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from ras_contract import FAST_HASHER, POLICY, T0, ServiceContract, add_card, iccid, keys_of, seed
from sqlalchemy import text

from openscws.acp.document import from_document
from openscws.amdb.embedded import EmbeddedResponse
from openscws.ras.db import RasDatabase, RasError, default_url
from openscws.ras.service import ContentItem, Operation, RasService
from openscws.ras.session import RasSession, Verdict
from openscws.ras.vault import MASTER_KEY_FILE, Vault, VaultError


@pytest.fixture
def ras(sqlite_db: RasDatabase, vault: Vault) -> RasService:
    return RasService(sqlite_db, vault, POLICY, password_hasher=FAST_HASHER)


class TestSqlite(ServiceContract):
    pass


# -- the vault -------------------------------------------------------------------------------


def test_master_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "ras"
    vault = Vault.create(directory)
    path = directory / MASTER_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in directory.iterdir()] == [MASTER_KEY_FILE]  # no staging left
    sealed = vault.seal(b"secret", "card/1/psk_key")
    again = Vault.create(directory)  # an existing key is kept, never replaced
    assert again.unseal(sealed, "card/1/psk_key") == b"secret"
    assert Vault.open(directory).unseal(sealed, "card/1/psk_key") == b"secret"


def test_master_key_race(tmp_path: Path) -> None:
    directory = tmp_path / "ras"
    vaults: list[Vault] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        vaults.append(Vault.create(directory))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sealed = vaults[0].seal(b"k", "w")
    assert all(v.unseal(sealed, "w") == b"k" for v in vaults)


def test_master_key_refusals(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="admin init"):
        Vault.open(tmp_path)
    Vault.create(tmp_path)
    (tmp_path / MASTER_KEY_FILE).chmod(0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        Vault.open(tmp_path)
    (tmp_path / MASTER_KEY_FILE).chmod(0o600)
    (tmp_path / MASTER_KEY_FILE).write_bytes(b"something else")
    with pytest.raises(VaultError, match="not an openscws master key"):
        Vault.open(tmp_path)


def test_sealed_values_are_bound_to_their_place(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path)
    sealed = vault.seal(b"k" * 16, "card/1/psk_key")
    assert b"k" * 16 not in sealed
    with pytest.raises(VaultError, match="does not open"):
        vault.unseal(sealed, "card/2/psk_key")
    with pytest.raises(VaultError, match="does not open"):
        Vault.create(tmp_path / "other").unseal(sealed, "card/1/psk_key")
    with pytest.raises(VaultError, match="malformed"):
        vault.unseal(b"\x01short", "card/1/psk_key")


def test_swapped_rows_do_not_open(ras: RasService, sqlite_db: RasDatabase) -> None:
    add_card(ras, 1)
    add_card(ras, 2)
    with sqlite_db.write() as s:
        s.execute(
            text(
                "UPDATE cards SET psk_key = (SELECT psk_key FROM cards WHERE psk_identity = "
                "'id-2') WHERE psk_identity = 'id-1'"
            )
        )
    with pytest.raises(VaultError) as info:
        ras.psk_lookup("id-1")
    assert keys_of(1)[0].hex() not in str(info.value)


def test_keys_never_in_logs_reprs_or_errors(
    ras: RasService, sqlite_db: RasDatabase, vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # SQL and its parameters
    try:
        cards = seed(ras, 2)
        ras.create_campaign("c", now=T0)
        work = ras.claim_triggers("A", 10, T0)
        s = ras.open_session("id-0", "A", T0)
        assert s is not None
        ras.finish_job(s.job_id, "A", "done", None, T0)
        assert ras.psk_lookup("id-1") == keys_of(1)[0]
        with pytest.raises(RasError) as dup:
            add_card(ras, 0)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert "INSERT INTO cards" in caplog.text  # the SQL log was on
    shown = caplog.text + repr(work) + repr(ras) + repr(vault) + repr(s) + str(dup.value)
    shown += repr(ras.list_cards()) + repr(ras.card(cards[0]))
    for n in (0, 1):
        for key in keys_of(n):
            for form in (key.hex(), key.hex().upper(), repr(key)[2:-1]):
                assert form not in shown, f"card {n} key leaked"
    master = (vault.path or Path()).read_bytes().split(b"\n")[1].decode()
    assert master not in shown


def test_psk_cache_ttl(sqlite_db: RasDatabase, vault: Vault) -> None:
    clock = [100.0]
    mine = RasService(sqlite_db, vault, POLICY, monotonic=lambda: clock[0])
    theirs = RasService(sqlite_db, vault, POLICY)  # another process, as far as caches go
    add_card(mine, 1)
    assert mine.psk_lookup("id-1") == keys_of(1)[0]
    assert theirs.remove_card(iccid(1))
    assert mine.psk_lookup("id-1") == keys_of(1)[0]  # cached ...
    clock[0] += POLICY.psk_cache_ttl + 0.1
    assert mine.psk_lookup("id-1") is None  # ... for psk_cache_ttl at most
    assert mine.psk_lookup("ghost") is None
    add_card(theirs, 2, psk_identity="ghost")
    clock[0] += POLICY.psk_cache_ttl + 0.1
    assert mine.psk_lookup("ghost") == keys_of(2)[0]


def test_psk_cache_is_bounded(sqlite_db: RasDatabase, vault: Vault) -> None:
    from dataclasses import replace

    ras = RasService(sqlite_db, vault, replace(POLICY, psk_cache_size=4))
    for n in range(10):
        assert ras.psk_lookup(f"nobody-{n}") is None
    assert len(ras._psk_cache) <= 4


def test_content_cache_is_bounded(sqlite_db: RasDatabase, vault: Vault) -> None:
    from dataclasses import replace

    ras = RasService(sqlite_db, vault, replace(POLICY, content_cache_bytes=4000))
    for n in range(10):
        ras.put_content(f"/p{n}", bytes(900), "application/octet-stream", now=T0)
        ras.content_item(f"/p{n}", 1)
    assert ras._content_bytes <= 4000
    assert list(ras._content_cache) == [(f"/p{n}", 1) for n in range(6, 10)]
    ras.put_content("/big", bytes(1001), "application/octet-stream", now=T0)
    assert ras.content_item("/big", 1).body == bytes(1001)
    assert ("/big", 1) not in ras._content_cache  # over a quarter of the cache: never kept


# -- SQLite specifics --------------------------------------------------------------------------


def test_sqlite_pragmas(sqlite_db: RasDatabase) -> None:
    with sqlite_db.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert s.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_naive_datetimes_refused(ras: RasService) -> None:
    with pytest.raises(ValueError, match="timezone"):
        ras.claim_triggers("A", 1, T0.replace(tzinfo=None))


def test_concurrent_puts_of_one_path(tmp_path: Path, vault: Vault) -> None:
    directory = tmp_path / "ras"
    first = RasDatabase(default_url(directory))
    first.upgrade()
    dbs = [first, *(RasDatabase(default_url(directory)) for _ in range(3))]
    try:
        barrier = threading.Barrier(len(dbs))
        errors: list[BaseException] = []

        def put(db: RasDatabase, n: int) -> None:
            ras = RasService(db, vault, POLICY)
            barrier.wait()
            try:
                for i in range(5):
                    ras.put_content("/same", f"{n}-{i}".encode(), "text/plain", now=T0)
            except BaseException as exc:
                errors.append(exc)
                raise

        threads = [threading.Thread(target=put, args=(db, n)) for n, db in enumerate(dbs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        history = RasService(first, vault, POLICY).content_history("/same")
        assert [h.version for h in history] == list(range(1, 21))
    finally:
        for db in dbs:
            db.dispose()


def test_two_services_one_sqlite_file(tmp_path: Path, vault: Vault) -> None:
    """Two engines on one file (as two processes would have) never double-claim."""
    directory = tmp_path / "ras"
    a_db = RasDatabase(default_url(directory))
    a_db.upgrade()
    b_db = RasDatabase(default_url(directory))
    try:
        a, b = RasService(a_db, vault, POLICY), RasService(b_db, vault, POLICY)
        seed(a, 20)
        a.create_campaign("c", now=T0)
        claimed: dict[str, list[str]] = {"A": [], "B": []}
        barrier = threading.Barrier(2)

        def loop(ras: RasService, owner: str) -> None:
            barrier.wait()
            for _ in range(30):
                claimed[owner] += [w.job_id for w in ras.claim_triggers(owner, 2, T0)]

        threads = [
            threading.Thread(target=loop, args=(a, "A")),
            threading.Thread(target=loop, args=(b, "B")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        every = claimed["A"] + claimed["B"]
        assert len(every) == len(set(every)) == 20
    finally:
        a_db.dispose()
        b_db.dispose()


def test_retry_delay_caps() -> None:
    assert POLICY.retry_delay(1) == timedelta(seconds=10)
    assert POLICY.retry_delay(2) == timedelta(seconds=20)
    assert POLICY.retry_delay(3) == timedelta(seconds=35)
    assert POLICY.retry_delay(500) == timedelta(seconds=35)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "not a database URL"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg2://u@h/db", "no driver for 'postgresql\\+psycopg2'"),
    ],
)
def test_bad_database_urls(url: str, message: str) -> None:
    with pytest.raises(RasError, match=message):
        RasDatabase(url)


# -- the access-rules operation ------------------------------------------------------------


def test_acp_campaign_sends_the_rules(ras: RasService) -> None:
    seed(ras, 1)
    doc = {"rules": [{"app": "uid:0", "ports": [3516]}]}
    info = ras.create_campaign("lock-down", acp=doc, now=T0)
    # Content goes only for paths given: the job is the rules alone.
    assert [op.op for op in info.operations] == ["acp"]
    (op,) = info.operations
    assert op.path == "/.scws/acp"
    assert Operation.from_json(op.to_json()) == op
    s = ras.open_session("id-0", "A", T0)
    assert s is not None
    session = RasSession("tx-1", [o.to_json() for o in s.operations], _no_content)
    put = session.next_command(None)
    assert put is not None
    assert (put.method, put.target) == ("PUT", "/.scws/acp")
    assert ("Content-Type", "application/json") in put.headers
    assert from_document(json.loads(put.body)) == from_document(doc)
    commit = session.next_command(EmbeddedResponse(204))
    assert commit is not None
    assert commit.target == "/.scws/commit"
    assert session.next_command(EmbeddedResponse(200, (), b'{"committed":1}')) is None
    assert session.verdict is Verdict.DONE
    with_content = ras.create_campaign("both", acp=doc, paths=[], now=T0)
    assert [o.op for o in with_content.operations] == ["acp"]
    with pytest.raises(RasError, match="access rules"):
        ras.create_campaign("bad", acp={"rules": [{"app": "md5:1"}]}, now=T0)


def _no_content(path: str, version: int) -> ContentItem:
    raise AssertionError("no content in this job")
