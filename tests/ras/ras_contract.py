"""The RAS service's behaviour, written once and run on every database: test_ras_service.py
runs `ServiceContract` on SQLite, test_ras_postgres.py on PostgreSQL. Each of those modules
provides the `ras` fixture (a RasService on a fresh, migrated database)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from openscws.agent.credentials import KeyChange
from openscws.ids import luhn_digit
from openscws.ota import (
    CounterMode,
    Integrity,
    MinimumSecurityLevel,
    TarSecurity,
    TriggerParameters,
    check_command,
)
from openscws.ras.db import RasDatabase
from openscws.ras.models import Base, Role
from openscws.ras.service import (
    Conflict,
    NotFound,
    Operation,
    RasError,
    RasPolicy,
    RasService,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""argon2id with small costs: the tests hash many passwords."""
POLICY = RasPolicy(
    trigger_ttl=timedelta(seconds=60),
    session_ttl=timedelta(seconds=120),
    retry_base=timedelta(seconds=10),
    retry_max=timedelta(seconds=35),
    max_attempts=3,
)
TAR = bytes.fromhex("B20100")


def iccid(n: int) -> str:
    """Card n's ICCID: 19 digits, the last the E.118 Luhn check digit."""
    base = f"8988211000000{n:05d}"
    return base + str(luhn_digit(base))


def keys_of(n: int) -> tuple[bytes, bytes, bytes]:
    """Deterministic PSK, KIc and KID keys of card n (AES-128)."""
    seed = hashlib.sha256(f"card {n}".encode()).digest()
    return seed[:16], seed[16:32], hashlib.sha256(seed).digest()[:16]


def add_card(ras: RasService, n: int, **overrides: object) -> str:
    psk, kic, kid = keys_of(n)
    args: dict[str, object] = {
        "psk_identity": f"id-{n}",
        "psk_key": psk,
        "agent_id": f"agent-{n}",
        "ota_tar": TAR,
        "kic_key": kic,
        "kid_key": kid,
        "now": T0,
    }
    args.update(overrides)
    ras.add_card(iccid(n), f"+1555010{n:04d}", **args)  # type: ignore[arg-type]
    return iccid(n)


def seed(ras: RasService, cards: int = 2) -> list[str]:
    ras.put_content("/index.html", b"<p>v1</p>", "text/html", now=T0)
    ras.put_content("/app.js", b"let a = 1;", "text/javascript", now=T0)
    return [add_card(ras, n) for n in range(cards)]


class ServiceContract:
    # -- cards -------------------------------------------------------------------------------

    def test_cards(self, ras: RasService) -> None:
        add_card(ras, 1)
        add_card(ras, 2)
        assert [c.iccid for c in ras.list_cards()] == [iccid(1), iccid(2)]
        info = ras.card(iccid(1))
        assert info is not None
        assert (info.psk_identity, info.ota_tar, info.ota_kic, info.ota_counter) == (
            "id-1",
            "B20100",
            0x12,
            0,
        )
        assert ras.card(iccid(9)) is None
        with pytest.raises(Conflict, match="exists"):
            add_card(ras, 1)
        with pytest.raises(Conflict, match="PSK identity"):
            add_card(ras, 3, psk_identity="id-1")
        assert ras.psk_lookup("id-2") == keys_of(2)[0]
        assert ras.psk_lookup("nobody") is None
        assert ras.remove_card(iccid(2))
        assert not ras.remove_card(iccid(2))
        assert ras.psk_lookup("id-2") is None  # this process's removal clears its cache
        assert [c.iccid for c in ras.list_cards()] == [iccid(1)]

    def test_card_validation(self, ras: RasService) -> None:
        with pytest.raises(RasError, match="ICCID"):
            ras.add_card(
                "123",
                None,
                psk_identity="x",
                psk_key=bytes(16),
                agent_id="a",
                ota_tar=TAR,
                kic_key=bytes(16),
                kid_key=bytes(16),
            )
        with pytest.raises(RasError, match="OTA keys"):
            add_card(ras, 1, kic_key=bytes(5))
        with pytest.raises(RasError, match="PSK"):
            add_card(ras, 1, psk_key=bytes(8))
        with pytest.raises(RasError, match="PSK identity"):
            add_card(ras, 1, psk_identity="two\nlines")
        assert ras.list_cards() == []

    # -- content -----------------------------------------------------------------------------

    def test_content_versions(self, ras: RasService) -> None:
        v1 = ras.put_content("/index.html", b"one", "text/html", now=T0)
        assert (v1.version, v1.size, v1.deleted) == (1, 3, False)
        assert v1.sha256 == hashlib.sha256(b"one").hexdigest()
        assert ras.put_content("/index.html", b"one", "text/html", now=T0) == v1  # unchanged
        v2 = ras.put_content("/index.html", b"one", "text/html", language="en", now=T0)
        assert v2.version == 2  # a header changed
        v3 = ras.put_content(
            "/index.html", b"two", "text/html", encoding="gzip", realm="staff", now=T0
        )
        assert (v3.version, v3.content_encoding, v3.realm) == (3, "gzip", "staff")
        ras.put_content("/a.css", b"p{}", "text/css", now=T0)
        assert [(c.path, c.version, c.size) for c in ras.list_content()] == [
            ("/a.css", 1, 3),
            ("/index.html", 3, 3),
        ]
        gone = ras.delete_content("/index.html", now=T0)
        assert gone is not None
        assert (gone.version, gone.deleted) == (4, True)
        assert ras.delete_content("/index.html", now=T0) is None
        assert ras.delete_content("/never", now=T0) is None
        assert [c.path for c in ras.list_content()] == ["/a.css"]
        assert ras.put_content("/index.html", b"two", "text/html", now=T0).version == 5
        assert [h.version for h in ras.content_history("/index.html")] == [1, 2, 3, 4, 5]
        assert ras.content_body("/index.html", 1) == b"one"
        item = ras.content_item("/index.html", 3)
        assert (item.body, item.info.content_encoding) == (b"two", "gzip")
        assert "two" not in repr(item)
        with pytest.raises(NotFound):
            ras.content_body("/index.html", 9)
        for beyond in (0, -1, 2**63, 10**30):  # not even storable: not found, not a crash
            with pytest.raises(NotFound):
                ras.content_item("/index.html", beyond)
            with pytest.raises(NotFound):
                ras.campaign(beyond)
            with pytest.raises(NotFound):
                ras.campaign_progress(beyond)
            with pytest.raises(NotFound):
                ras.cancel_campaign(beyond)

    @pytest.mark.parametrize(
        "path", ["index.html", "/a b", "/a/../b", "/a//b", "/.scws/commit", "/a?x=1", "/\u00e9"]
    )
    def test_bad_paths(self, ras: RasService, path: str) -> None:
        with pytest.raises(RasError):
            ras.put_content(path, b"x", "text/plain", now=T0)

    def test_header_injection_refused(self, ras: RasService) -> None:
        with pytest.raises(RasError, match="Content-Type"):
            ras.put_content("/a", b"x", "text/plain\r\nX-Evil: 1", now=T0)

    # -- campaigns ---------------------------------------------------------------------------

    def test_campaign_pins_versions(self, ras: RasService) -> None:
        cards = seed(ras, 3)
        ras.put_content("/old.html", b"old", "text/html", now=T0)
        ras.delete_content("/old.html", now=T0)
        c = ras.create_campaign("all", now=T0)
        assert c.operations == (
            Operation("delete", "/old.html"),
            Operation("put", "/app.js", 1),
            Operation("put", "/index.html", 1),
        )
        assert (c.jobs, c.open_jobs, c.state) == (3, 3, "active")
        ras.put_content("/index.html", b"<p>v2</p>", "text/html", now=T0)
        one = ras.create_campaign("one", paths=["/index.html"], cards=[cards[1]], now=T0)
        assert one.operations == (Operation("put", "/index.html", 2),)
        assert ras.campaign_progress(one.id) == {
            "pending": 1,
            "triggered": 0,
            "in_session": 0,
            "done": 0,
            "failed": 0,
        }
        rows = ras.campaign_cards(c.id)
        assert [r.iccid for r in rows] == cards
        assert {r.state for r in rows} == {"pending"}
        assert [x.name for x in ras.list_campaigns()] == ["all", "one"]
        with pytest.raises(NotFound, match="/nope"):
            ras.create_campaign("x", paths=["/nope"], now=T0)
        with pytest.raises(NotFound, match="no such cards"):
            ras.create_campaign("x", cards=[iccid(77)], now=T0)
        with pytest.raises(NotFound):
            ras.campaign_progress(999)

    def test_pap_codes_are_kept_per_job(self, ras: RasService) -> None:
        """The PAP result code of each job's SIP push trigger, a batch written at once; a
        later batch overwrites only its own jobs."""
        cards = seed(ras, 3)
        c = ras.create_campaign("all", now=T0)
        work = sorted(ras.claim_triggers("A", 10, T0), key=lambda w: w.iccid)
        assert [w.iccid for w in work] == cards
        ras.record_pap_codes({work[0].job_id: 1000, work[1].job_id: 4001})
        ras.record_pap_codes({work[1].job_id: 2003})
        ras.record_pap_codes({})
        rows = ras.campaign_cards(c.id)
        assert [(r.iccid, r.pap_code) for r in rows] == [
            (cards[0], 1000),
            (cards[1], 2003),
            (cards[2], None),
        ]

    def test_campaign_needs_content_and_cards(self, ras: RasService) -> None:
        with pytest.raises(RasError, match="empty"):
            ras.create_campaign("x", now=T0)
        ras.put_content("/a", b"a", "text/plain", now=T0)
        with pytest.raises(RasError, match="no cards"):
            ras.create_campaign("x", now=T0)

    # -- the job life cycle --------------------------------------------------------------------

    def test_full_life_cycle(self, ras: RasService) -> None:
        cards = seed(ras, 2)
        campaign = ras.create_campaign("launch", now=T0)
        assert ras.claim_triggers("A", 10, T0 - timedelta(seconds=1)) == []  # not yet due
        work = ras.claim_triggers("A", 10, T0)
        assert sorted(w.iccid for w in work) == cards
        assert {(w.counter, w.attempt) for w in work} == {(1, 1)}
        assert ras.claim_triggers("A", 10, T0) == []  # nothing twice
        w = next(w for w in work if w.iccid == cards[0])
        assert w.lease_until == T0 + POLICY.trigger_ttl
        assert (w.keys.kic_key, w.keys.kid_key) == keys_of(0)[1:]
        job = ras.job(w.job_id)
        assert job is not None
        assert (job.state, job.lease_owner) == ("triggered", "A")

        s = ras.open_session("id-0", "B", T0 + timedelta(seconds=5))
        assert s is not None
        assert (s.job_id, s.iccid, s.maybe_applied, s.attempt) == (w.job_id, cards[0], False, 1)
        assert s.operation_dicts() == [
            {"op": "put", "path": "/app.js", "version": 1},
            {"op": "put", "path": "/index.html", "version": 1},
        ]
        assert ras.content_body("/index.html", 1) == b"<p>v1</p>"
        assert ras.open_session("id-0", "C", T0 + timedelta(seconds=6)) is None  # B holds it
        assert not ras.finish_job(s.job_id, "A", "done", None, T0)  # A no longer holds it
        assert ras.finish_job(s.job_id, "B", "done", None, T0 + timedelta(seconds=9))
        assert ras.finish_job(s.job_id, "B", "done", None, T0 + timedelta(seconds=10))
        assert ras.finish_job(s.job_id, "Z", "done", None, T0 + timedelta(seconds=10))
        assert not ras.finish_job(s.job_id, "B", "retry", "late", T0 + timedelta(seconds=10))
        done = ras.job(s.job_id)
        assert done is not None
        assert (done.state, done.finished_at, done.lease_owner) == (
            "done",
            T0 + timedelta(seconds=9),
            None,
        )
        assert ras.open_session("id-0", "B", T0 + timedelta(seconds=11)) is None

        other = next(w for w in work if w.iccid == cards[1])
        s2 = ras.open_session("id-1", "B", T0 + timedelta(seconds=12))
        assert s2 is not None
        assert s2.job_id == other.job_id
        assert ras.finish_job(s2.job_id, "B", "done", None, T0 + timedelta(seconds=13))
        assert ras.campaign_progress(campaign.id)["done"] == 2
        assert ras.campaign(campaign.id).state == "finished"
        card = ras.card(cards[0])
        assert card is not None
        assert card.ota_counter == 1

    def test_retry_backoff_and_counters(self, ras: RasService) -> None:
        (card,) = seed(ras, 1)
        ras.create_campaign("c", now=T0, max_attempts=4)
        now = T0
        delays = []
        for attempt in (1, 2, 3):
            (w,) = ras.claim_triggers("A", 10, now)
            assert (w.attempt, w.counter) == (attempt, attempt)
            s = ras.open_session("id-0", "A", now)
            assert s is not None
            assert ras.finish_job(s.job_id, "A", "retry", f"busy {attempt}", now)
            job = ras.job(s.job_id)
            assert job is not None
            assert job.state == "pending"
            assert job.last_error == f"busy {attempt}"
            delays.append(job.next_attempt_at - now)
            assert ras.claim_triggers("A", 10, job.next_attempt_at - timedelta(seconds=1)) == []
            now = job.next_attempt_at
        assert delays == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=35)]
        info = ras.card(card)
        assert info is not None
        assert info.ota_counter == 3

    def test_max_attempts(self, ras: RasService) -> None:
        seed(ras, 1)
        campaign = ras.create_campaign("c", now=T0, max_attempts=2)
        (w,) = ras.claim_triggers("A", 10, T0)
        assert ras.finish_job(w.job_id, "A", "retry", "SMSC down", T0)
        (w,) = ras.claim_triggers("A", 10, T0 + timedelta(seconds=10))
        assert w.attempt == 2
        assert ras.finish_job(w.job_id, "A", "retry", "SMSC down", T0 + timedelta(seconds=11))
        job = ras.job(w.job_id)
        assert job is not None
        assert job.state == "failed"
        assert job.last_error == "SMSC down (after 2 attempts)"
        assert ras.claim_triggers("A", 10, T0 + timedelta(days=1)) == []
        assert ras.campaign(campaign.id).state == "finished"
        assert ras.campaign_cards(campaign.id)[0].attempts == 2

    def test_failed_is_final(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        (w,) = ras.claim_triggers("A", 10, T0)
        s = ras.open_session("id-0", "A", T0)
        assert s is not None
        assert ras.finish_job(s.job_id, "A", "failed", "card said 413", T0)
        assert not ras.finish_job(s.job_id, "A", "done", None, T0)
        assert ras.open_session("id-0", "A", T0) is None
        job = ras.job(w.job_id)
        assert job is not None
        assert (job.state, job.last_error) == ("failed", "card said 413")

    def test_reap_expired_trigger(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        (w,) = ras.claim_triggers("A", 10, T0)
        assert ras.reap(T0 + POLICY.trigger_ttl) == 0  # lease_until itself is still valid
        assert ras.reap(T0 + POLICY.trigger_ttl + timedelta(seconds=1)) == 1
        job = ras.job(w.job_id)
        assert job is not None
        assert job.state == "pending"
        assert job.last_error is not None
        assert "did not connect" in job.last_error
        # The retry gets a new counter, above the one the lost SMS carried.
        (again,) = ras.claim_triggers("B", 10, job.next_attempt_at)
        assert (again.job_id, again.counter, again.attempt) == (w.job_id, 2, 2)

    def test_reap_expired_session_then_resume(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 10, T0)
        s = ras.open_session("id-0", "A", T0)
        assert s is not None
        assert not s.maybe_applied
        later = T0 + POLICY.session_ttl + timedelta(seconds=1)
        assert ras.reap(later) == 1
        assert not ras.finish_job(s.job_id, "A", "done", None, later)  # the lease is gone
        job = ras.job(s.job_id)
        assert job is not None
        assert job.state == "pending"
        (_w,) = ras.claim_triggers("B", 10, job.next_attempt_at)
        resumed = ras.open_session("id-0", "B", job.next_attempt_at)
        assert resumed is not None
        assert (resumed.job_id, resumed.maybe_applied, resumed.attempt) == (s.job_id, True, 2)
        assert ras.finish_job(s.job_id, "B", "done", None, job.next_attempt_at)

    def test_key_rotation_campaign(self, ras: RasService) -> None:
        seed(ras, 2)
        campaign = ras.create_key_rotation("rekey", cards=[iccid(0)], now=T0)
        assert (campaign.jobs, [op.op for op in campaign.operations]) == (1, ["rotate-keys"])
        assert ras.unsealed_elsewhere() == 0
        (work,) = ras.claim_triggers("A", 10, T0)
        assert work.psk_identity == "id-0"  # triggers use the old keys until done
        session = ras.open_session("id-0", "A", T0)
        assert session is not None
        (op,) = session.operation_dicts()
        assert (op["op"], op["path"]) == ("rotate-keys", "/.scws/keys")
        change = KeyChange.from_json(op["body"])
        assert change.psk_identity.startswith("id-0#k")
        assert (change.kic_version, change.kid_version) == (2, 2)
        assert len(change.psk_key) == 32
        assert change.kic_key != keys_of(0)[1]
        for secret in (change.psk_key, change.kic_key, change.kid_key):
            assert secret.hex() not in repr(session)
            assert secret.hex() not in repr(ras.job(session.job_id))
        assert ras.psk_lookup("id-0") == keys_of(0)[0]
        assert ras.end_session(session.job_id, "A", "done", None, started_at=T0, ended_at=T0)
        card = ras.card(iccid(0))
        assert card is not None
        assert (card.psk_identity, card.ota_kic, card.ota_kid) == (change.psk_identity, 0x22, 0x22)
        assert ras.psk_lookup(change.psk_identity) == change.psk_key
        assert ras.psk_lookup("id-0") is None
        job = ras.job(session.job_id)
        assert job is not None
        assert job.state == "done"
        assert all(o.keys is None for o in job.operations)  # nothing sealed is kept
        # The next trigger is sealed with the new keys.
        ras.put_content("/x", b"x", "text/plain", now=T0)
        ras.create_campaign("after", cards=[iccid(0)], now=T0)
        (after,) = ras.claim_triggers("A", 10, T0)
        assert after.psk_identity == change.psk_identity
        assert (after.keys.kic_key, after.keys.kid_key) == (change.kic_key, change.kid_key)
        # Another card was not touched.
        assert ras.psk_lookup("id-1") == keys_of(1)[0]

    def test_key_rotation_failed_or_cancelled_forgets_the_keys(self, ras: RasService) -> None:
        seed(ras, 2)
        campaign = ras.create_key_rotation("rekey", now=T0, max_attempts=1)
        ras.claim_triggers("A", 1, T0)
        ras.cancel_campaign(campaign.id, now=T0)
        for row in ras.campaign_cards(campaign.id):
            job = ras.job(row.job_id)
            assert job is not None
            if job.state == "failed":
                assert all(o.keys is None for o in job.operations)
            else:
                assert job.state == "triggered"
                assert ras.finish_job(job.id, "A", "failed", "no", T0)
                gone = ras.job(job.id)
                assert gone is not None
                assert all(o.keys is None for o in gone.operations)
        assert {c.psk_identity for c in ras.list_cards()} == {"id-0", "id-1"}

    def test_reseal_covers_pending_key_changes(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_key_rotation("rekey", now=T0)
        ras._vault.begin_rotation()
        assert ras.unsealed_elsewhere() == 6  # 3 card keys + 3 in the job
        ras.reseal()
        assert ras.unsealed_elsewhere() == 0
        ras._vault.finish_rotation()
        ras.claim_triggers("A", 10, T0)
        session = ras.open_session("id-0", "A", T0)
        assert session is not None
        KeyChange.from_json(session.operation_dicts()[0]["body"])  # still opens

    def test_reseal_under_the_next_master_key(self, ras: RasService) -> None:
        seed(ras, 2)
        vault = ras._vault
        vault.begin_rotation()
        assert ras.unsealed_elsewhere() == 6
        assert ras.reseal() == 2
        assert ras.unsealed_elsewhere() == 0
        add_card(ras, 5)  # written during the rotation: under the next key
        vault.finish_rotation()
        assert not vault.rotating
        assert ras.unsealed_elsewhere() == 0
        for n in (0, 1, 5):
            assert ras.psk_lookup(f"id-{n}") == keys_of(n)[0]

    def test_release_leases_of_a_restarted_owner(self, ras: RasService) -> None:
        seed(ras, 3)
        ras.create_campaign("c", now=T0, max_attempts=2)
        a_trigger, a_session, b_job = ras.claim_triggers("A", 2, T0) + ras.claim_triggers(
            "B", 10, T0
        )
        session = ras.open_session(
            ras.card(a_session.iccid).psk_identity,  # type: ignore[union-attr]
            "A",
            T0,
        )
        assert session is not None
        later = T0 + timedelta(seconds=1)  # long before any lease runs out
        assert ras.release_leases("A", later) == 2
        for work in (a_trigger, a_session):
            job = ras.job(work.job_id)
            assert job is not None
            assert (job.state, job.lease_owner, job.next_attempt_at) == ("pending", None, later)
            assert job.last_error is not None
            assert "released at restart" in job.last_error
        other = ras.job(b_job.job_id)
        assert other is not None
        assert (other.state, other.lease_owner) == ("triggered", "B")  # B's lease stays
        assert ras.release_leases("A", later) == 0
        # Due at once: claimed again now, with the next counter; the session resumes.
        again = ras.claim_triggers("A", 10, later)
        assert {w.job_id for w in again} == {a_trigger.job_id, a_session.job_id}
        resumed = ras.open_session(
            ras.card(a_session.iccid).psk_identity,  # type: ignore[union-attr]
            "A",
            later,
        )
        assert resumed is not None
        assert resumed.maybe_applied
        # A crash loop still ends: at max_attempts a released job fails.
        assert ras.release_leases("A", later) == 2
        job = ras.job(a_session.job_id)
        assert job is not None
        assert job.state == "failed"

    def test_open_session_takes_over_expired_lease(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 10, T0)
        first = ras.open_session("id-0", "A", T0)
        assert first is not None
        assert ras.renew_lease(first.job_id, "A", T0 + timedelta(seconds=100))
        assert not ras.renew_lease(first.job_id, "B", T0 + timedelta(seconds=100))
        assert ras.open_session("id-0", "B", T0 + timedelta(seconds=200)) is None  # renewed
        late = T0 + timedelta(seconds=100) + POLICY.session_ttl + timedelta(seconds=1)
        second = ras.open_session("id-0", "B", late)
        assert second is not None
        assert (second.job_id, second.maybe_applied) == (first.job_id, True)
        assert not ras.finish_job(first.job_id, "A", "done", None, late)
        assert not ras.renew_lease(first.job_id, "A", late)
        assert ras.finish_job(first.job_id, "B", "done", None, late)

    def test_same_owner_reopens(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 10, T0)
        first = ras.open_session("id-0", "A", T0)
        again = ras.open_session("id-0", "A", T0 + timedelta(seconds=1))  # card reconnected
        assert first is not None
        assert again is not None
        assert (again.job_id, again.maybe_applied) == (first.job_id, True)

    def test_open_session_without_trigger(self, ras: RasService) -> None:
        seed(ras, 1)
        assert ras.open_session("id-0", "A", T0) is None  # no job
        assert ras.open_session("stranger", "A", T0) is None
        ras.create_campaign("c", now=T0 + timedelta(hours=1))
        # The card came by itself before the job was due: it gets the job anyway.
        s = ras.open_session("id-0", "A", T0)
        assert s is not None
        assert s.attempt == 1
        assert ras.claim_triggers("A", 10, T0 + timedelta(hours=2)) == []

    def test_one_active_job_per_card_in_order(self, ras: RasService) -> None:
        cards = seed(ras, 2)
        first = ras.create_campaign("first", cards=[cards[0]], now=T0)
        ras.put_content("/index.html", b"<p>v2</p>", "text/html", now=T0)
        second = ras.create_campaign("second", now=T0 + timedelta(seconds=1))
        due = T0 + timedelta(seconds=2)
        work = ras.claim_triggers("A", 10, due)
        by_card = {w.iccid: w for w in work}
        assert len(work) == 2
        assert set(by_card) == set(cards)
        assert ras.claim_triggers("B", 10, due) == []  # each card has an active job
        job0 = ras.job(by_card[cards[0]].job_id)
        assert job0 is not None
        assert job0.campaign_id == first.id
        # Failing the first attempt does not let the younger job overtake it.
        assert ras.finish_job(job0.id, "A", "retry", "no answer", due)
        assert ras.claim_triggers("B", 10, due + timedelta(seconds=5)) == []
        (w,) = ras.claim_triggers("B", 10, due + timedelta(seconds=10))
        assert w.job_id == job0.id
        s = ras.open_session("id-0", "B", due + timedelta(seconds=10))
        assert s is not None
        assert s.job_id == job0.id
        assert ras.finish_job(s.job_id, "B", "done", None, due + timedelta(seconds=11))
        (w,) = ras.claim_triggers("B", 10, due + timedelta(seconds=11))
        job = ras.job(w.job_id)
        assert job is not None
        assert job.campaign_id == second.id
        assert job.operations[-1] == Operation("put", "/index.html", 2)

    def test_database_refuses_two_active_jobs(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("a", now=T0)
        ras.create_campaign("b", now=T0)
        with pytest.raises(IntegrityError), ras._db.write() as s:
            s.execute(text("UPDATE jobs SET state = 'triggered'"))

    def test_cancel_campaign(self, ras: RasService) -> None:
        seed(ras, 3)
        campaign = ras.create_campaign("c", now=T0)
        work = ras.claim_triggers("A", 2, T0)
        assert len(work) == 2
        s = ras.open_session(work[0].psk_identity, "A", T0)
        assert s is not None
        assert ras.cancel_campaign(campaign.id, now=T0) == 2  # one triggered, one pending
        assert ras.claim_triggers("A", 10, T0 + timedelta(hours=1)) == []
        assert not ras.finish_job(work[1].job_id, "A", "retry", "SMSC down", T0)
        # The running session ends, but is not retried.
        assert ras.finish_job(s.job_id, "A", "retry", "dropped", T0)
        job = ras.job(s.job_id)
        assert job is not None
        assert job.state == "failed"
        assert job.last_error is not None
        assert job.last_error.startswith("cancelled")
        assert ras.campaign_progress(campaign.id)["failed"] == 3
        assert ras.campaign(campaign.id).state == "cancelled"
        with pytest.raises(NotFound):
            ras.cancel_campaign(404)

    def test_remove_card_mid_session(self, ras: RasService) -> None:
        cards = seed(ras, 1)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 10, T0)
        s = ras.open_session("id-0", "A", T0)
        assert s is not None
        assert ras.remove_card(cards[0])
        assert not ras.finish_job(s.job_id, "A", "done", None, T0)
        assert ras.job(s.job_id) is None

    def test_trigger_work_seals_a_packet_the_card_accepts(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        (w,) = ras.claim_triggers("A", 10, T0)
        packet = w.packet(admin_host="192.0.2.7", admin_port=4443, admin_uri="/scws/admin")
        _, kic, kid = keys_of(0)
        table = {
            TAR: TarSecurity(
                kic_keys={1: kic},
                kid_keys={1: kid},
                counter=0,
                minimum=MinimumSecurityLevel(
                    integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
                ),
            )
        }
        accepted = check_command(packet, table)
        assert accepted.new_counter == 1
        trigger = TriggerParameters.decode(accepted.data)
        assert trigger.session.security is not None
        assert trigger.session.security.psk_identity == b"id-0"
        assert trigger.session.http_post is not None
        assert trigger.session.http_post.agent_id == "agent-0"

    def test_end_session_finishes_and_logs_in_one(self, ras: RasService) -> None:
        cards = seed(ras, 2)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 2, T0)
        s0 = ras.open_session("id-0", "A", T0)
        s1 = ras.open_session("id-1", "A", T0)
        assert s0 is not None
        assert s1 is not None
        end = T0 + timedelta(seconds=3)
        assert ras.end_session(
            s0.job_id, "A", "done", None, started_at=T0, ended_at=end, detail=["PUT / -> 201"]
        )
        job = ras.job(s0.job_id)
        assert job is not None
        assert (job.state, job.finished_at, job.lease_owner) == ("done", end, None)
        (entry,) = ras.session_logs(cards[0])
        assert (entry.job_id, entry.outcome, entry.detail) == (s0.job_id, "done", ("PUT / -> 201",))
        assert (entry.started_at, entry.ended_at) == (T0, end)
        # Not the lease holder: nothing changes, but the session happened and is logged.
        assert not ras.end_session(s1.job_id, "B", "done", None, started_at=T0, ended_at=end)
        assert ras.job(s1.job_id).state == "in_session"  # type: ignore[union-attr]
        # A retry goes back to pending with a backoff.
        assert ras.end_session(s1.job_id, "A", "retry", "dropped", started_at=T0, ended_at=end)
        job = ras.job(s1.job_id)
        assert job is not None
        assert (job.state, job.last_error) == ("pending", "dropped")
        assert job.next_attempt_at > end
        assert [e.outcome for e in ras.session_logs(cards[1])] == ["retry", "done"]
        # A job that is gone (its card removed): False, and nothing to log against.
        assert ras.remove_card(cards[1])
        assert not ras.end_session(s1.job_id, "A", "done", None, started_at=T0, ended_at=end)
        with pytest.raises(ValueError, match="outcome"):
            ras.end_session(s0.job_id, "A", "maybe", None, started_at=T0, ended_at=end)  # type: ignore[arg-type]

    def test_triggered_cards_psk_needs_no_lookup(self, ras: RasService) -> None:
        seed(ras, 1)
        ras.create_campaign("c", now=T0)
        ras.claim_triggers("A", 1, T0)
        # The trigger's claim cached the card's PSK: the handshake reads no database.
        statements: list[str] = []
        from sqlalchemy import event

        event.listen(ras._db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert ras.psk_lookup("id-0") == keys_of(0)[0]
        assert statements == []

    def test_content_versions_are_cached(self, ras: RasService) -> None:
        seed(ras, 0)
        first = ras.content_item("/index.html", 1)
        from sqlalchemy import event

        statements: list[str] = []
        event.listen(ras._db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert ras.content_item("/index.html", 1) is first
        assert statements == []
        ras.put_content("/index.html", b"<p>v2</p>", "text/html", now=T0)
        assert ras.content_item("/index.html", 2).body == b"<p>v2</p>"  # a new version: read
        assert ras.content_item("/index.html", 1).body == b"<p>v1</p>"
        with pytest.raises(NotFound):
            ras.content_item("/index.html", 3)

    # -- session logs --------------------------------------------------------------------------

    def test_session_logs(self, ras: RasService) -> None:
        cards = seed(ras, 1)
        ras.create_campaign("c", now=T0)
        (w,) = ras.claim_triggers("A", 1, T0)
        for i in range(3):
            ras.log_session(
                cards[0],
                job_id=w.job_id if i else None,
                started_at=T0 + timedelta(minutes=i),
                ended_at=T0 + timedelta(minutes=i, seconds=30),
                outcome="done" if i == 2 else "retry",
                detail=[f"PUT /index.html -> {200 + i}", "POST /.scws/commit -> 200"],
            )
        logs = ras.session_logs(cards[0], limit=2)
        assert [entry.outcome for entry in logs] == ["done", "retry"]
        assert logs[0].detail == ("PUT /index.html -> 202", "POST /.scws/commit -> 200")
        assert logs[0].job_id == w.job_id
        assert ras.session_logs(iccid(42)) == []
        gone = ras.log_session(
            iccid(42), job_id=None, started_at=T0, ended_at=None, outcome="x", detail=()
        )
        assert gone is None  # the card was removed mid-session: nothing to log against

    # -- operators: accounts, tokens, sessions, audit -----------------------------------------

    def test_users_and_passwords(self, ras: RasService) -> None:
        accounts = ras.accounts
        assert accounts.list_users() == []
        first = accounts.ensure_first_admin()
        assert first is not None
        assert len(first) >= 20
        assert accounts.ensure_first_admin() is None  # once only
        assert accounts.check_password("admin", first) is not None
        assert accounts.check_password("admin", first + "x") is None
        assert accounts.check_password("nobody", first) is None
        ann = accounts.add_user("ann", "correct horse battery", Role.OPERATOR)
        assert ann.role is Role.OPERATOR
        with pytest.raises(Conflict):
            accounts.add_user("ann", "another long password", Role.VIEWER)
        with pytest.raises(RasError, match="password"):
            accounts.add_user("bob", "short", Role.VIEWER)
        with pytest.raises(RasError, match="user name"):
            accounts.add_user("-bad name", "a long enough password", Role.VIEWER)
        assert [u.name for u in accounts.list_users()] == ["admin", "ann"]
        with accounts._db.read() as s:  # only the argon2id hash is stored
            stored = s.execute(text("SELECT password_hash FROM users WHERE name = 'ann'"))
            hashed = stored.scalar()
        assert hashed.startswith("$argon2id$")
        assert "correct horse" not in hashed
        cookie, _ = accounts.open_session("ann", "127.0.0.1")
        accounts.set_password("ann", "a new long password")
        assert accounts.session(cookie) is None  # a new password ends the sessions
        assert accounts.check_password("ann", "correct horse battery") is None
        assert accounts.check_password("ann", "a new long password") is not None
        with pytest.raises(RasError, match="last admin"):
            accounts.remove_user("admin")
        assert accounts.remove_user("ann")
        assert not accounts.remove_user("ann")

    def test_tokens(self, ras: RasService) -> None:
        accounts = ras.accounts
        accounts.add_user("ops", "a long enough password", Role.OPERATOR)
        info, token = accounts.create_token("ops", "ci", Role.VIEWER, timedelta(days=1))
        assert token.startswith("oscws_" + info.token_id + "_")
        assert info.role is Role.VIEWER
        principal = accounts.authenticate_token(token)
        assert principal is not None
        assert (principal.user, principal.role, principal.via) == ("ops", Role.VIEWER, "token")
        assert principal.actor == f"ops/{info.token_id}"
        with accounts._db.read() as s:  # only the token's SHA-256 is stored
            rows = s.execute(text("SELECT token_sha256 FROM api_tokens")).scalars().all()
        assert rows == [hashlib.sha256(token.encode()).hexdigest()]
        assert accounts.authenticate_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert accounts.authenticate_token("oscws_nonsense") is None
        with pytest.raises(RasError, match="cannot have the admin role"):
            accounts.create_token("ops", "up", Role.ADMIN)
        with pytest.raises(NotFound):
            accounts.create_token("nobody", "x")
        (listed,) = accounts.list_tokens("ops")
        assert listed.token_id == info.token_id
        assert listed.last_used_at is not None
        assert accounts.revoke_token(info.token_id)
        assert accounts.authenticate_token(token) is None
        assert accounts.list_tokens()[0].state(datetime.now(UTC)) == "revoked"
        assert not accounts.revoke_token("000000000000")
        # Expired tokens: a clock past the expiry.
        _, short = accounts.create_token("ops", "short", ttl=timedelta(minutes=1))
        assert accounts.authenticate_token(short) is not None
        accounts._clock = lambda: datetime.now(UTC) + timedelta(minutes=2)
        assert accounts.authenticate_token(short) is None
        # The user's role caps the token at each use; removing the user ends the token.
        accounts._clock = lambda: datetime.now(UTC)
        _, again = accounts.create_token("ops", "again")
        assert accounts.authenticate_token(again) is not None
        accounts.add_user("root", "a long enough password", Role.ADMIN)
        assert accounts.remove_user("ops")
        assert accounts.authenticate_token(again) is None

    def test_sessions_and_audit(self, ras: RasService) -> None:
        accounts = ras.accounts
        accounts.add_user("vic", "a long enough password", Role.VIEWER)
        cookie, csrf = accounts.open_session("vic", "192.0.2.1")
        principal = accounts.session(cookie)
        assert principal is not None
        assert (principal.user, principal.role, principal.csrf_token) == ("vic", "viewer", csrf)
        assert accounts.session(cookie + "x") is None
        assert accounts.close_session(cookie)
        assert accounts.session(cookie) is None
        for n in range(3):
            accounts.audit("vic", "content.put", f"/p{n}", "ok", address="192.0.2.1")
        accounts.audit("-", "campaign.cancel", "/api/v1/campaigns/1/cancel", "403 forbidden")
        entries = accounts.audit_log(2)
        assert [e.action for e in entries] == ["campaign.cancel", "content.put"]
        assert entries[0].result == "403 forbidden"
        assert entries[1].address == "192.0.2.1"
        older = accounts.audit_log(10, before=entries[1].id)
        assert [e.target for e in older] == ["/p1", "/p0"]


def schema_diff(db: RasDatabase) -> list[object]:
    """What Alembic's autogenerate would change to make the database match models.py."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))
