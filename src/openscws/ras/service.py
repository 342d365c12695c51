"""The one API of the RAS state, used by every shell (REST API, CLI, the card-facing server,
benchmarks): cards, the versioned content repository, campaigns and the job life cycle.

Every method is one database transaction and returns frozen dataclasses; no ORM object leaves
this module. Card keys are sealed by the Vault before they reach the database.

Job life cycle (the only transitions; `finish_job`, `reap` and `cancel_campaign` end jobs):

    pending --claim_triggers--> triggered --open_session--> in_session --finish done--> done
       ^  |                        |                           |  ^
       |  +--open_session (the card came by itself)------------+  +--open_session (lease gone)
       |                           |                           |
       +--- retry (finish "retry", or reap of an expired lease), with backoff ---+
                                   |                           |
            failed <--- retry with attempts == max_attempts, finish "failed", cancel

Guarantees, on SQLite and on PostgreSQL with several server processes:
- every move into triggered / in_session first locks the card's row, and then re-reads the
  card's open jobs in a fresh statement, so a card never has two active jobs; a partial
  unique index (uq_jobs_one_active_per_card) enforces it in the database as well;
- a card's jobs run in creation order (FIFO): an older open job blocks younger ones, so a
  later campaign's versions are never overwritten by an earlier one retrying late;
- a job is claimed by one process at a time (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite
  serialises writers), and only the lease owner can finish it; `done` is final and
  idempotent; an expired lease goes back to pending through `reap`, so no job is lost;
- the OTA counter is incremented in the transaction that claims the trigger."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from openscws.acp.document import DocumentError, from_document, to_document
from openscws.agent.credentials import KeyChange
from openscws.ids import iccid_problem
from openscws.ota import COUNTER_MAX, KeyRef
from openscws.ras.accounts import Accounts
from openscws.ras.db import Conflict, NotFound, RasDatabase, RasError, TooLarge
from openscws.ras.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    OPEN_STATES,
    Campaign,
    CampaignState,
    Card,
    ContentVersion,
    Job,
    JobState,
    SessionLog,
)
from openscws.ras.trigger import CardOtaKeys, build_trigger, validate_ota_keys
from openscws.ras.vault import Vault, VaultError
from openscws.scws.paths import ADMIN_RESERVED_PREFIX, MAX_ADMIN_RESOURCE, admin_path_problem

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "CampaignCard",
    "CampaignInfo",
    "CardInfo",
    "Conflict",
    "ContentInfo",
    "ContentItem",
    "JobInfo",
    "JobState",
    "NotFound",
    "Operation",
    "Outcome",
    "RasError",
    "RasPolicy",
    "RasService",
    "SessionLogInfo",
    "SessionWork",
    "TooLarge",
    "TriggerWork",
]

log = logging.getLogger(__name__)

TRIGGERS: Final = ("sms", "sip-push")
"""How a campaign wakes its cards: a formatted SMS, or an OMA SIP push through a PPG."""

Outcome = Literal["done", "retry", "failed"]

_ICCID = re.compile(r"[0-9]{19,20}")
_MSISDN = re.compile(r"\+?[0-9]{3,20}")
# Printable ASCII without space: paths and header values go into embedded HTTP requests, so
# nothing may break a request line or a header.
_TOKEN = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
DB_INT_MAX: Final = 2**63 - 1
"""Ids and versions beyond a 64-bit integer cannot be stored, so are never found."""
_SEALED_COLUMNS: Final = ("psk_key", "ota_kic_key", "ota_kid_key")
"""The Card columns the vault seals."""
_JOB_SEALED: Final = ("psk_key", "kic_key", "kid_key")
"""The sealed keys of a job's key change (its "rotate-keys" operation)."""
_VAULT_LOCK: Final = 0x5CA5_0002  # pg_advisory_xact_lock key: sealers shared, re-seal exclusive
_SET_PAP_CODE: Final = (
    update(Job).where(Job.id == bindparam("b_id")).values(pap_code=bindparam("b_code"))
)
"""A job's PAP result code of its last SIP push trigger (`record_pap_codes`)."""
RESERVED_PREFIX: Final = ADMIN_RESERVED_PREFIX


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RasPolicy:
    """Timings and limits of the job life cycle."""

    trigger_ttl: timedelta = timedelta(seconds=60)
    """How long a triggered card has to open its session before the job is retried."""
    session_ttl: timedelta = timedelta(seconds=120)
    """Lease of a running session; `renew_lease` extends it."""
    retry_base: timedelta = timedelta(seconds=5)
    """First retry delay; it doubles per attempt up to `retry_max`."""
    retry_max: timedelta = timedelta(seconds=300)
    max_attempts: int = 5
    """Default attempts per job (each trigger or session start counts one)."""
    psk_cache_ttl: float = 5.0
    """Seconds a PSK lookup is cached. Another process's removal of a card is seen after at
    most this long (this process's own changes clear the cache at once)."""
    psk_cache_size: int = 4096
    content_cache_bytes: int = 16 << 20
    """Bytes of repository bodies kept in memory by (path, version). Versions never change
    once stored, so the cache is never stale; 0 turns it off."""

    def retry_delay(self, attempts: int) -> timedelta:
        base = self.retry_base.total_seconds()
        cap = self.retry_max.total_seconds()
        return timedelta(seconds=min(cap, base * 2 ** max(0, min(attempts - 1, 32))))


@dataclass(frozen=True, slots=True)
class CardInfo:
    iccid: str
    msisdn: str | None
    agent_id: str
    psk_identity: str
    ota_tar: str
    """Hex, 6 digits."""
    ota_kic: int
    """The KIc byte (key version << 4 | algorithm)."""
    ota_kid: int
    ota_counter: int
    """The last CNTR used."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContentInfo:
    path: str
    version: int
    sha256: str
    size: int
    content_type: str
    content_encoding: str | None
    content_language: str | None
    realm: str | None
    deleted: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContentItem:
    """One version with its body, as a session sends it."""

    info: ContentInfo
    body: bytes = field(repr=False)


_OPS: Final = ("put", "delete", "rotate-keys", "acp")
KEYS_PATH: Final = "/.scws/keys"
"""Where a key change goes on the card (`agent.commands`)."""
ACP_PATH: Final = "/.scws/acp"
"""The card's admin command for its access rules (`openscws.agent.commands`)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of a job: put `path` at repository `version`, delete `path`, change the
    card's admin keys ("rotate-keys": `keys` holds the new ones, sealed, in the database;
    `body` the request a session sends, only in memory), or (op "acp") replace the card's
    SCWS access rules with `policy`, a policy document as canonical JSON
    (`openscws.acp.document`), sent as ``PUT /.scws/acp``."""

    op: Literal["put", "delete", "rotate-keys", "acp"]
    path: str
    version: int | None = None
    keys: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    body: bytes | None = field(default=None, repr=False, compare=False)
    policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.op == "put":
            return {"op": "put", "path": self.path, "version": self.version}
        if self.op == "rotate-keys":
            doc: dict[str, Any] = {"op": "rotate-keys", "path": KEYS_PATH}
            if self.keys is not None:
                doc["keys"] = self.keys
            return doc
        if self.op == "acp":
            return {"op": "acp", "path": ACP_PATH, "policy": json.loads(self.policy or "{}")}
        return {"op": "delete", "path": self.path}

    @classmethod
    def acp(cls, document: Any) -> Operation:
        """The operation that sets the access rules of `document`; RasError if unusable."""
        try:
            rules = from_document(document)
        except DocumentError as e:
            raise RasError(f"access rules: {e}") from None
        canonical = json.dumps(to_document(rules), separators=(",", ":"), sort_keys=True)
        return cls("acp", ACP_PATH, policy=canonical)

    @classmethod
    def from_json(cls, doc: Any) -> Operation:
        if not isinstance(doc, dict) or doc.get("op") not in (
            "put",
            "delete",
            "rotate-keys",
            "acp",
        ):
            raise RasError("malformed job operation")
        if doc["op"] == "acp":
            return cls.acp(doc.get("policy"))
        version = doc.get("version")
        if doc["op"] == "put":
            if not isinstance(version, int):
                raise RasError(f"put without a version: {doc!r}")
            return cls("put", str(doc["path"]), version)
        if doc["op"] == "rotate-keys":
            keys = doc.get("keys")
            return cls("rotate-keys", KEYS_PATH, keys=keys if isinstance(keys, dict) else None)
        return cls("delete", str(doc["path"]))


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    id: int
    name: str
    state: str
    """active, cancelled, or finished (every job done or failed)."""
    operations: tuple[Operation, ...]
    created_at: datetime
    jobs: int
    open_jobs: int
    progress: dict[str, int] = field(default_factory=dict)
    """Jobs per state (every state present, zeros included)."""
    trigger: str | None = None
    """"sms", "sip-push", or None: the server's configured default."""


@dataclass(frozen=True, slots=True)
class CampaignCard:
    iccid: str
    job_id: str
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: datetime
    pap_code: int | None = None
    """The PAP result code of the job's last SIP push trigger; None: no SIP push yet."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    iccid: str
    campaign_id: int | None
    state: str
    operations: tuple[Operation, ...]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TriggerWork:
    """A claimed job whose trigger SMS is to be sent now, with everything needed to seal it.
    `keys` hides the key values from repr."""

    job_id: str
    iccid: str
    msisdn: str | None
    psk_identity: str
    agent_id: str
    counter: int
    """The CNTR to seal the trigger with (already stored as the card's last counter)."""
    attempt: int
    lease_until: datetime
    keys: CardOtaKeys
    trigger: str | None = None
    """The campaign's trigger ("sms", "sip-push"), None for the server's default."""

    def packet(self, *, admin_host: str, admin_port: int, admin_uri: str, **options: Any) -> bytes:
        """The secured command packet (see `trigger.build_trigger` for `options`)."""
        options.setdefault("agent_id", self.agent_id)
        return build_trigger(
            self.keys,
            self.counter,
            admin_host=admin_host,
            admin_port=admin_port,
            admin_uri=admin_uri,
            psk_identity=self.psk_identity,
            **options,
        )


@dataclass(frozen=True, slots=True)
class SessionWork:
    """The job a connected card is to run. `job_id` is the card-side transaction id; when
    `maybe_applied`, an earlier session of this job got as far as the card, so ask the card
    `GET /.scws/transactions/<job_id>` before sending anything. Bodies come from
    `RasService.content_item(path, version)`."""

    job_id: str
    iccid: str
    operations: tuple[Operation, ...]
    maybe_applied: bool
    attempt: int
    lease_until: datetime

    def operation_dicts(self) -> list[dict[str, Any]]:
        """The operations as `RasSession` takes them (a key change with its request body)."""
        out = []
        for op in self.operations:
            if op.op == "rotate-keys":
                out.append({"op": "rotate-keys", "path": KEYS_PATH, "body": op.body})
            else:
                out.append(op.to_json())
        return out


@dataclass(frozen=True, slots=True)
class SessionLogInfo:
    id: int
    iccid: str
    job_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    detail: tuple[str, ...]


# -- the service -----------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("pass timezone-aware datetimes (UTC) to the RAS service")
    return now


def _where(iccid: str, column: str) -> str:
    """The vault's associated data for one sealed column of one card."""
    return f"card/{iccid}/{column}"


class RasService:
    """See the module docstring. Thread-safe as far as SQLAlchemy sessions are (one per
    call); the PSK cache has its own lock."""

    def __init__(
        self,
        db: RasDatabase,
        vault: Vault,
        policy: RasPolicy | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self._db = db
        self.accounts = Accounts(db, clock=clock, hasher=password_hasher)
        """Operators: users, API tokens, console sessions and the audit trail."""
        self._vault = vault
        self.policy = policy or RasPolicy()
        self._clock = clock
        self._monotonic = monotonic
        self._psk_cache: dict[str, tuple[bytes | None, float]] = {}
        self._psk_lock = threading.Lock()
        self._content_cache: OrderedDict[tuple[str, int], ContentItem] = OrderedDict()
        self._content_bytes = 0
        self._content_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RasService({self._db!r})"

    def _now(self, now: datetime | None) -> datetime:
        return _aware(now) if now is not None else self._clock()

    # -- cards -------------------------------------------------------------------------------

    def add_card(
        self,
        iccid: str,
        msisdn: str | None,
        *,
        psk_identity: str,
        psk_key: bytes,
        agent_id: str,
        ota_tar: bytes,
        kic_key: bytes,
        kid_key: bytes,
        kic: int = 0x12,
        kid: int = 0x12,
        ota_counter: int = 0,
        now: datetime | None = None,
    ) -> CardInfo:
        """Registers a card. `kic` / `kid` are the KIc / KID bytes (default 0x12: key version
        1, AES); the keys must fit them. Raises Conflict for a known ICCID or PSK identity."""
        _check_iccid(iccid)
        if msisdn is not None and not _MSISDN.fullmatch(msisdn):
            raise RasError(f"MSISDN must be digits with an optional +, not {msisdn!r}")
        _check_text("PSK identity", psk_identity, 128)
        _check_text("agent id", agent_id, 255)
        if not 16 <= len(psk_key) <= 64:
            raise RasError("a PSK must have 16 to 64 bytes")
        if not 0 <= ota_counter <= COUNTER_MAX:
            raise RasError("the OTA counter must fit 5 bytes")
        if not (0 <= kic <= 0xFF and 0 <= kid <= 0xFF):
            raise RasError("KIc and KID are single bytes")
        keys = CardOtaKeys(
            tar=_tar(ota_tar),
            kic=KeyRef.from_byte(kic),
            kid=KeyRef.from_byte(kid),
            kic_key=kic_key,
            kid_key=kid_key,
        )
        try:
            validate_ota_keys(keys)
        except ValueError as exc:
            raise RasError(f"OTA keys: {exc}") from None
        when = self._now(now)
        try:
            with self._db.write() as s:
                seal = self._sealer(s)
                card = Card(
                    iccid=iccid,
                    msisdn=msisdn,
                    agent_id=agent_id,
                    psk_identity=psk_identity,
                    psk_key=seal(psk_key, _where(iccid, "psk_key")),
                    ota_tar=keys.tar.hex().upper(),
                    ota_kic=kic,
                    ota_kid=kid,
                    ota_kic_key=seal(kic_key, _where(iccid, "ota_kic_key")),
                    ota_kid_key=seal(kid_key, _where(iccid, "ota_kid_key")),
                    ota_counter=ota_counter,
                    created_at=when,
                )
                taken = s.scalar(
                    select(Card.iccid).where(
                        or_(Card.iccid == iccid, Card.psk_identity == psk_identity)
                    )
                )
                if taken is not None:
                    raise Conflict(_taken(taken, iccid))
                s.add(card)
                s.flush()
                info = _card_info(card)
        except IntegrityError:
            # Another process registered the same card between our check and insert.
            raise Conflict(f"card {iccid} or PSK identity {psk_identity!r} exists") from None
        self._forget_psk(psk_identity)
        log.info("card %s added", iccid)
        return info

    def _sealer(self, s: Session, *, exclusive: bool = False) -> Callable[[bytes, str], bytes]:
        """The vault's `seal`, for values this transaction writes. It first takes the vault
        lock (shared; `exclusive` for a re-seal of everything) and re-reads the key files, so
        a value is never sealed under a key that a concurrent rotation has just retired:
        SQLite's write transactions are serial anyway; PostgreSQL gets an advisory lock."""
        if self._db.is_postgresql:
            lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            s.execute(text(f"SELECT {lock}(:key)"), {"key": _VAULT_LOCK})
        self._vault.refresh()
        return self._vault.seal

    def reseal(self) -> int:
        """Opens every sealed value (cards' keys, and the new keys of open key-change jobs)
        and seals it again with the vault's sealing key (the next key during a rotation), in
        one transaction. Returns the number of cards."""
        with self._db.write() as s:
            seal = self._sealer(s, exclusive=True)
            unseal = self._vault.unseal
            cards = s.scalars(select(Card).order_by(Card.id).with_for_update()).all()
            for card in cards:
                for column in _SEALED_COLUMNS:
                    where = _where(card.iccid, column)
                    setattr(card, column, seal(unseal(getattr(card, column), where), where))
            for job in s.scalars(
                select(Job).where(Job.state.in_(OPEN_STATES)).with_for_update()
            ).all():
                docs = []
                for doc in job.operations:
                    keys = doc.get("keys") if isinstance(doc, dict) else None
                    if isinstance(keys, dict):
                        keys = dict(keys)
                        for column in _JOB_SEALED:
                            where = f"job/{job.id}/{column}"
                            keys[column] = seal(
                                unseal(bytes.fromhex(keys[column]), where), where
                            ).hex()
                        doc = {**doc, "keys": keys}
                    docs.append(doc)
                job.operations = docs
        with self._psk_lock:
            self._psk_cache.clear()
        log.info("re-sealed the keys of %d card(s)", len(cards))
        return len(cards)

    def unsealed_elsewhere(self) -> int:
        """How many sealed values do not open under the vault's sealing key (0 once a
        rotation's re-seal has committed)."""
        with self._db.read() as s:
            rows = s.execute(
                select(Card.iccid, Card.psk_key, Card.ota_kic_key, Card.ota_kid_key)
            ).all()
            pending = [
                (job_id, doc["keys"])
                for job_id, docs in s.execute(
                    select(Job.id, Job.operations).where(Job.state.in_(OPEN_STATES))
                )
                for doc in docs
                if isinstance(doc, dict) and isinstance(doc.get("keys"), dict)
            ]
        cards = sum(
            not self._vault.sealed_by_next(blob, _where(row.iccid, column))
            for row in rows
            for column, blob in zip(_SEALED_COLUMNS, row[1:], strict=True)
        )
        jobs = sum(
            not self._vault.sealed_by_next(bytes.fromhex(keys[c]), f"job/{job_id}/{c}")
            for job_id, keys in pending
            for c in _JOB_SEALED
        )
        return cards + jobs

    def list_cards(self) -> list[CardInfo]:
        with self._db.read() as s:
            return [_card_info(c) for c in s.scalars(select(Card).order_by(Card.iccid))]

    def card(self, iccid: str) -> CardInfo | None:
        with self._db.read() as s:
            card = s.scalar(select(Card).where(Card.iccid == iccid))
            return None if card is None else _card_info(card)

    def remove_card(self, iccid: str) -> bool:
        """Deletes the card with its jobs and session logs. False if there was none."""
        with self._db.write() as s:
            identity = s.scalar(select(Card.psk_identity).where(Card.iccid == iccid))
            if identity is None:
                return False
            s.execute(delete(Card).where(Card.iccid == iccid))
        self._forget_psk(identity)
        log.info("card %s removed", iccid)
        return True

    def psk_lookup(self, identity: str) -> bytes | None:
        """The PSK for a TLS identity, or None. Called from the TLS handshake, so answers come
        from a small per-process cache for `policy.psk_cache_ttl` seconds (unknown identities
        too); see RasPolicy.psk_cache_ttl for what that means across processes."""
        clock = self._monotonic()
        with self._psk_lock:
            hit = self._psk_cache.get(identity)
            if hit is not None and hit[1] > clock:
                return hit[0]
        with self._db.read() as s:
            row = s.execute(
                select(Card.iccid, Card.psk_key).where(Card.psk_identity == identity)
            ).first()
        key = None if row is None else self._vault.unseal(row.psk_key, _where(row.iccid, "psk_key"))
        self._remember_psk(identity, key)
        return key

    def psk_cached(self, identity: str) -> bool:
        """Whether `psk_lookup(identity)` would answer from memory now."""
        with self._psk_lock:
            hit = self._psk_cache.get(identity)
        return hit is not None and hit[1] > self._monotonic()

    def _remember_psk(self, identity: str, key: bytes | None) -> None:
        clock = self._monotonic()
        with self._psk_lock:
            cache = self._psk_cache
            if len(cache) >= self.policy.psk_cache_size:
                # Drop the expired entries, and if that is not enough, everything.
                for name in [n for n, (_, until) in cache.items() if until <= clock]:
                    del cache[name]
                if len(cache) >= self.policy.psk_cache_size:
                    cache.clear()
            cache[identity] = (key, clock + self.policy.psk_cache_ttl)

    def _forget_psk(self, identity: str) -> None:
        with self._psk_lock:
            self._psk_cache.pop(identity, None)

    # -- content -----------------------------------------------------------------------------

    def put_content(
        self,
        path: str,
        body: bytes,
        content_type: str,
        *,
        encoding: str | None = None,
        language: str | None = None,
        realm: str | None = None,
        now: datetime | None = None,
    ) -> ContentInfo:
        """Stores `body` as the next version of `path`; returns the latest version unchanged
        when it already holds the same bytes and headers."""
        _check_path(path)
        if len(body) > MAX_ADMIN_RESOURCE:
            raise TooLarge(
                f"{path}: {len(body)} bytes is over the {MAX_ADMIN_RESOURCE} bytes one "
                "administration command carries to a card"
            )
        _check_text("Content-Type", content_type, 255)
        for name, value, limit in (
            ("Content-Encoding", encoding, 64),
            ("Content-Language", language, 64),
            ("realm", realm, 255),
        ):
            if value is not None:
                _check_text(name, value, limit)
        digest = hashlib.sha256(body).hexdigest()
        when = self._now(now)

        def attempt(s: Session) -> ContentInfo:
            latest = _latest_version(s, path)
            if (
                latest is not None
                and not latest.deleted
                and (latest.sha256, latest.content_type, latest.content_encoding)
                == (digest, content_type, encoding)
                and (latest.content_language, latest.realm) == (language, realm)
            ):
                return _content_info(latest, len(latest.body))
            row = ContentVersion(
                path=path,
                version=1 if latest is None else latest.version + 1,
                sha256=digest,
                body=body,
                content_type=content_type,
                content_encoding=encoding,
                content_language=language,
                realm=realm,
                deleted=False,
                created_at=when,
            )
            s.add(row)
            s.flush()
            return _content_info(row, len(body))

        return self._versioned_write(attempt)

    def delete_content(self, path: str, *, now: datetime | None = None) -> ContentInfo | None:
        """Adds a tombstone version, so campaigns delete the path on cards. None when the path
        is unknown or already deleted."""
        _check_path(path)
        when = self._now(now)

        def attempt(s: Session) -> ContentInfo | None:
            latest = _latest_version(s, path)
            if latest is None or latest.deleted:
                return None
            row = ContentVersion(
                path=path,
                version=latest.version + 1,
                sha256=hashlib.sha256(b"").hexdigest(),
                body=b"",
                content_type=latest.content_type,
                deleted=True,
                created_at=when,
            )
            s.add(row)
            s.flush()
            return _content_info(row, 0)

        return self._versioned_write(attempt)

    def purge_content(self, path: str) -> int:
        """Erases every version of `path`, with no tombstone; returns how many. For an entry
        the cards cannot take (stored before the repository checked the cards' rules): its
        path is taken as listed, unchecked. Jobs still pinned to a purged version fail."""
        if not path:
            raise RasError("a path to purge is not empty")
        with self._db.write() as s:
            result = s.execute(delete(ContentVersion).where(ContentVersion.path == path))
            count = int(getattr(result, "rowcount", 0) or 0)
        with self._content_lock:
            for key in [k for k in self._content_cache if k[0] == path]:
                self._content_bytes -= len(self._content_cache.pop(key).body)
        return count

    def _versioned_write[T](self, attempt: Callable[[Session], T]) -> T:
        # Two writers of one path pick the same next version; the unique (path, version)
        # refuses the second, which then starts over and sees the first one's version.
        for _ in range(4):
            try:
                with self._db.write() as s:
                    return attempt(s)
            except IntegrityError:
                continue
        raise Conflict("the path keeps changing under this write: try again")

    def list_content(self) -> list[ContentInfo]:
        """The latest version of every path that is not deleted."""
        with self._db.read() as s:
            latest = (
                select(ContentVersion.path, func.max(ContentVersion.version).label("version"))
                .group_by(ContentVersion.path)
                .subquery()
            )
            rows = s.execute(
                _info_columns()
                .join(
                    latest,
                    and_(
                        ContentVersion.path == latest.c.path,
                        ContentVersion.version == latest.c.version,
                    ),
                )
                .where(ContentVersion.deleted.is_(False))
                .order_by(ContentVersion.path)
            ).all()
            return [_content_row(r) for r in rows]

    def content_history(self, path: str) -> list[ContentInfo]:
        with self._db.read() as s:
            rows = s.execute(
                _info_columns().where(ContentVersion.path == path).order_by(ContentVersion.version)
            ).all()
            return [_content_row(r) for r in rows]

    def content_item(self, path: str, version: int) -> ContentItem:
        """One version with its body; from memory when read lately (see
        RasPolicy.content_cache_bytes)."""
        if not 0 < version <= DB_INT_MAX:
            raise NotFound(f"no version {version} of {path}")
        key = (path, version)
        with self._content_lock:
            item = self._content_cache.get(key)
            if item is not None:
                self._content_cache.move_to_end(key)
                return item
        with self._db.read() as s:
            row = s.scalar(
                select(ContentVersion).where(
                    ContentVersion.path == path, ContentVersion.version == version
                )
            )
            if row is None:
                raise NotFound(f"no version {version} of {path}")
            item = ContentItem(_content_info(row, len(row.body)), row.body)
        self._cache_content(key, item)
        return item

    def _cache_content(self, key: tuple[str, int], item: ContentItem) -> None:
        limit = self.policy.content_cache_bytes
        size = len(item.body)
        if size > limit // 4:
            return  # a few big bodies would push out everything else
        with self._content_lock:
            cache = self._content_cache
            if key in cache:
                return
            cache[key] = item
            self._content_bytes += size
            while self._content_bytes > limit:
                _, old = cache.popitem(last=False)
                self._content_bytes -= len(old.body)

    def content_body(self, path: str, version: int) -> bytes:
        return self.content_item(path, version).body

    # -- campaigns ---------------------------------------------------------------------------

    def create_campaign(
        self,
        name: str,
        *,
        paths: Sequence[str] | None = None,
        cards: Sequence[str] | None = None,
        max_attempts: int | None = None,
        trigger: str | None = None,
        now: datetime | None = None,
        acp: Any = None,
    ) -> CampaignInfo:
        """`trigger`: "sms" or "sip-push" for this campaign (None: the server's default).
        One job per card, its operations pinned to the current versions of `paths` (None:
        every path in the repository, deletions included). Deletions go first, to free card
        memory before the puts. With `acp`, a policy document (`openscws.acp.document`), the
        job also replaces the cards' SCWS access rules, after the content; content is then
        sent only for `paths` given explicitly."""
        _check_text("campaign name", name, 255)
        if trigger not in (None, *TRIGGERS):
            raise RasError(f"trigger must be one of {', '.join(TRIGGERS)}")
        attempts = self.policy.max_attempts if max_attempts is None else max_attempts
        if not 1 <= attempts <= 1000:
            raise RasError("max attempts must be 1..1000")
        when = self._now(now)
        acp_op = Operation.acp(acp) if acp is not None else None
        with self._db.write() as s:
            if acp_op is None:
                ops = _pinned_operations(s, paths)
            else:
                ops = (*(_pinned_operations(s, paths) if paths is not None else ()), acp_op)
            if not ops:
                raise RasError("nothing to send: the content repository is empty")
            card_ids = _card_ids(s, cards)
            if not card_ids:
                raise RasError("no cards to send to")
            campaign = Campaign(
                name=name,
                operations=[op.to_json() for op in ops],
                created_at=when,
                state=CampaignState.ACTIVE,
                trigger=trigger,
            )
            s.add(campaign)
            s.flush()
            docs = [op.to_json() for op in ops]
            s.add_all(
                Job(
                    id=str(uuid.uuid4()),
                    card_id=card_id,
                    campaign_id=campaign.id,
                    operations=docs,
                    state=JobState.PENDING,
                    attempts=0,
                    max_attempts=attempts,
                    session_starts=0,
                    next_attempt_at=when,
                    created_at=when,
                    updated_at=when,
                )
                for card_id in card_ids
            )
            s.flush()
            log.info("campaign %d %r: %d jobs", campaign.id, name, len(card_ids))
            return CampaignInfo(
                campaign.id,
                name,
                str(CampaignState.ACTIVE),
                ops,
                when,
                len(card_ids),
                len(card_ids),
                {**_no_jobs(), str(JobState.PENDING): len(card_ids)},
                trigger,
            )

    def create_key_rotation(
        self,
        name: str,
        *,
        cards: Sequence[str] | None = None,
        max_attempts: int | None = None,
        now: datetime | None = None,
    ) -> CampaignInfo:
        """A campaign that gives each card (None: every card) a new PSK under a new PSK
        identity, and new OTA keys (KIc / KID: the next key version, same algorithms). Each
        job holds its card's new keys sealed; the card stages them in the job's transaction
        (`PUT /.scws/keys`), and the server moves to them when the job is done, in the
        transaction that records it. Until then triggers use the old keys, which the card
        keeps accepting until a trigger names the new identity."""
        _check_text("campaign name", name, 255)
        attempts = self.policy.max_attempts if max_attempts is None else max_attempts
        if not 1 <= attempts <= 1000:
            raise RasError("max attempts must be 1..1000")
        when = self._now(now)
        with self._db.write() as s:
            seal = self._sealer(s)
            card_ids = _card_ids(s, cards)
            if not card_ids:
                raise RasError("no cards to send to")
            rows = s.scalars(
                select(Card).where(Card.id.in_(card_ids)).order_by(Card.id).with_for_update()
            ).all()
            ops = (Operation("rotate-keys", KEYS_PATH),)
            campaign = Campaign(
                name=name,
                operations=[op.to_json() for op in ops],
                created_at=when,
                state=CampaignState.ACTIVE,
            )
            s.add(campaign)
            s.flush()
            taken = set(s.scalars(select(Card.psk_identity)))
            for card in rows:
                job_id = str(uuid.uuid4())
                keys = self._new_keys(card, job_id, seal, taken)
                s.add(
                    Job(
                        id=job_id,
                        card_id=card.id,
                        campaign_id=campaign.id,
                        operations=[Operation("rotate-keys", KEYS_PATH, keys=keys).to_json()],
                        state=JobState.PENDING,
                        attempts=0,
                        max_attempts=attempts,
                        session_starts=0,
                        next_attempt_at=when,
                        created_at=when,
                        updated_at=when,
                    )
                )
            s.flush()
            log.info("campaign %d %r: new keys for %d cards", campaign.id, name, len(rows))
            return CampaignInfo(
                campaign.id,
                name,
                str(CampaignState.ACTIVE),
                ops,
                when,
                len(rows),
                len(rows),
                {**_no_jobs(), str(JobState.PENDING): len(rows)},
            )

    def _new_keys(
        self, card: Card, job_id: str, seal: Callable[[bytes, str], bytes], taken: set[str]
    ) -> dict[str, Any]:
        """A card's next keys, sealed for the job's row: a 32-byte PSK under a new identity,
        KIc / KID keys of the current lengths under the next key version (1..15, wrapping)."""
        unseal = self._vault.unseal
        kic_len = len(unseal(card.ota_kic_key, _where(card.iccid, "ota_kic_key")))
        kid_len = len(unseal(card.ota_kid_key, _where(card.iccid, "ota_kid_key")))
        kic = (((card.ota_kic >> 4) % 15) + 1) << 4 | (card.ota_kic & 0x0F)
        kid = (((card.ota_kid >> 4) % 15) + 1) << 4 | (card.ota_kid & 0x0F)
        base = card.psk_identity.split("#k", 1)[0]
        if len(base.encode()) > 100:
            base = card.iccid
        identity = f"{base}#k{os.urandom(4).hex()}"
        while identity in taken:
            identity = f"{base}#k{os.urandom(4).hex()}"
        taken.add(identity)
        psk, kic_key, kid_key = os.urandom(32), os.urandom(kic_len), os.urandom(kid_len)
        try:
            validate_ota_keys(
                CardOtaKeys(
                    tar=bytes.fromhex(card.ota_tar),
                    kic=KeyRef.from_byte(kic),
                    kid=KeyRef.from_byte(kid),
                    kic_key=kic_key,
                    kid_key=kid_key,
                )
            )
        except ValueError as exc:
            raise RasError(f"card {card.iccid}: new OTA keys: {exc}") from None
        where = f"job/{job_id}"
        return {
            "psk_identity": identity,
            "kic": kic,
            "kid": kid,
            "psk_key": seal(psk, f"{where}/psk_key").hex(),
            "kic_key": seal(kic_key, f"{where}/kic_key").hex(),
            "kid_key": seal(kid_key, f"{where}/kid_key").hex(),
        }

    def _key_change(
        self, job_id: str, keys: dict[str, Any]
    ) -> tuple[str, int, int, bytes, bytes, bytes]:
        """A job's sealed new keys, opened: (identity, KIc byte, KID byte, PSK, KIc, KID)."""
        where = f"job/{job_id}"
        unseal = self._vault.unseal
        try:
            identity, kic, kid = str(keys["psk_identity"]), int(keys["kic"]), int(keys["kid"])
            sealed = [bytes.fromhex(keys[c]) for c in _JOB_SEALED]
        except (KeyError, TypeError, ValueError):
            raise RasError(f"job {job_id}: malformed key change") from None
        psk, kic_key, kid_key = (
            unseal(blob, f"{where}/{c}") for blob, c in zip(sealed, _JOB_SEALED, strict=True)
        )
        return identity, kic, kid, psk, kic_key, kid_key

    def _session_operation(self, job_id: str, doc: Any) -> Operation:
        op = Operation.from_json(doc)
        if op.op != "rotate-keys":
            return op
        if op.keys is None:
            raise RasError(f"job {job_id}: the key change has no keys")
        identity, kic, kid, psk, kic_key, kid_key = self._key_change(job_id, op.keys)
        body = KeyChange(identity, psk, kic >> 4, kic_key, kid >> 4, kid_key).to_json()
        return Operation("rotate-keys", KEYS_PATH, body=body)

    def _apply_key_change(self, s: Session, job: Job) -> list[str]:
        """On a done job: the card's row takes the job's new keys (sealed for the card), and
        the job keeps only the new identity. Returns the identities to drop from the cache."""
        changed: list[str] = []
        docs = []
        for doc in job.operations:
            op = Operation.from_json(doc)
            if op.op != "rotate-keys" or op.keys is None:
                docs.append(doc)
                continue
            identity, kic, kid, psk, kic_key, kid_key = self._key_change(job.id, op.keys)
            card = s.scalar(select(Card).where(Card.id == job.card_id).with_for_update())
            if card is None:
                continue
            seal = self._sealer(s)
            changed += [card.psk_identity, identity]
            card.psk_identity = identity
            card.psk_key = seal(psk, _where(card.iccid, "psk_key"))
            card.ota_kic, card.ota_kid = kic, kid
            card.ota_kic_key = seal(kic_key, _where(card.iccid, "ota_kic_key"))
            card.ota_kid_key = seal(kid_key, _where(card.iccid, "ota_kid_key"))
            docs.append({"op": "rotate-keys", "path": KEYS_PATH, "psk_identity": identity})
            log.info("card %s: on its new keys now (PSK identity %r)", card.iccid, identity)
        job.operations = docs
        return changed

    @staticmethod
    def _drop_key_change(job: Job) -> None:
        """A job that ends without applying its key change forgets the sealed keys."""
        if any(isinstance(d, dict) and "keys" in d for d in job.operations):
            job.operations = [
                {k: v for k, v in d.items() if k != "keys"} if isinstance(d, dict) else d
                for d in job.operations
            ]

    def campaign(self, campaign_id: int) -> CampaignInfo:
        with self._db.read() as s:
            found = _campaign_infos(s, campaign_id)
            if not found:
                raise NotFound(f"no campaign {campaign_id}")
            return found[0]

    def list_campaigns(self) -> list[CampaignInfo]:
        with self._db.read() as s:
            return _campaign_infos(s, None)

    def campaign_progress(self, campaign_id: int) -> dict[str, int]:
        """Jobs per state (every state present, zeros included): `campaign(id).progress`."""
        return self.campaign(campaign_id).progress

    def campaign_cards(self, campaign_id: int) -> list[CampaignCard]:
        with self._db.read() as s:
            _campaign_row(s, campaign_id)
            rows = s.execute(
                select(
                    Card.iccid,
                    Job.id,
                    Job.state,
                    Job.attempts,
                    Job.max_attempts,
                    Job.last_error,
                    Job.updated_at,
                    Job.pap_code,
                )
                .join(Card, Card.id == Job.card_id)
                .where(Job.campaign_id == campaign_id)
                .order_by(Card.iccid)
            ).all()
            return [CampaignCard(*row) for row in rows]

    def cancel_campaign(self, campaign_id: int, *, now: datetime | None = None) -> int:
        """Fails the campaign's pending and triggered jobs; running sessions finish, but do
        not retry. Returns how many jobs were cancelled."""
        when = self._now(now)
        with self._db.write() as s:
            campaign = _campaign_row(s, campaign_id, lock=True)
            campaign.state = CampaignState.CANCELLED
            result = s.execute(
                update(Job)
                .where(
                    Job.campaign_id == campaign_id,
                    Job.state.in_((JobState.PENDING, JobState.TRIGGERED)),
                )
                .values(
                    state=JobState.FAILED,
                    last_error="cancelled",
                    lease_owner=None,
                    lease_until=None,
                    updated_at=when,
                    finished_at=when,
                )
                .execution_options(synchronize_session=False)
            )
            cancelled: int = getattr(result, "rowcount", 0)
            if any(op.get("op") == "rotate-keys" for op in campaign.operations):
                for job in s.scalars(
                    select(Job).where(Job.campaign_id == campaign_id, Job.state == JobState.FAILED)
                ):
                    self._drop_key_change(job)
            log.info("campaign %d cancelled (%d jobs)", campaign_id, cancelled)
            return cancelled

    # -- jobs --------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobInfo | None:
        with self._db.read() as s:
            row = s.execute(
                select(Job, Card.iccid).join(Card, Card.id == Job.card_id).where(Job.id == job_id)
            ).first()
            return None if row is None else _job_info(row[0], row[1])

    def card_jobs(self, iccid: str, *, limit: int = 50) -> list[JobInfo]:
        """The card's jobs, newest first."""
        with self._db.read() as s:
            rows = s.execute(
                select(Job, Card.iccid)
                .join(Card, Card.id == Job.card_id)
                .where(Card.iccid == iccid)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(limit)
            ).all()
            return [_job_info(job, i) for job, i in rows]

    def claim_triggers(self, owner: str, limit: int, now: datetime) -> list[TriggerWork]:
        """Claims up to `limit` due pending jobs whose card has no older open job, moves them
        to triggered under a lease of `policy.trigger_ttl` owned by `owner` (unique per server
        process), counts an attempt and takes the card's next OTA counter."""
        now = _aware(now)
        if limit <= 0:
            return []
        other = aliased(Job)
        blocked = (
            select(other.id)
            .where(
                other.card_id == Job.card_id,
                other.id != Job.id,
                or_(
                    other.state.in_(ACTIVE_STATES),
                    and_(
                        other.state == JobState.PENDING,
                        or_(
                            other.created_at < Job.created_at,
                            and_(other.created_at == Job.created_at, other.id < Job.id),
                        ),
                    ),
                ),
            )
            .exists()
        )
        work: list[TriggerWork] = []
        sealed_psks: list[tuple[str, str, bytes]] = []
        with self._db.write() as s:
            rows = s.execute(
                select(Job, Card)
                .join(Card, Card.id == Job.card_id)
                .where(Job.state == JobState.PENDING, Job.next_attempt_at <= now, ~blocked)
                .order_by(Job.next_attempt_at, Job.created_at, Job.id)
                .limit(limit)
                .with_for_update(of=(Job, Card), skip_locked=True, key_share=True)
            ).all()
            for job, card in _first_in_line(s, rows):
                counter = card.ota_counter + 1
                if counter > COUNTER_MAX:
                    self._end(job, JobState.FAILED, "the card's OTA counter is exhausted", now)
                    continue
                try:
                    keys = CardOtaKeys(
                        tar=bytes.fromhex(card.ota_tar),
                        kic=KeyRef.from_byte(card.ota_kic),
                        kid=KeyRef.from_byte(card.ota_kid),
                        kic_key=self._vault.unseal(
                            card.ota_kic_key, _where(card.iccid, "ota_kic_key")
                        ),
                        kid_key=self._vault.unseal(
                            card.ota_kid_key, _where(card.iccid, "ota_kid_key")
                        ),
                    )
                except VaultError as exc:
                    log.error("job %s: %s", job.id, exc)
                    self._end(job, JobState.FAILED, str(exc), now)
                    continue
                card.ota_counter = counter
                sealed_psks.append((card.psk_identity, card.iccid, card.psk_key))
                job.state = JobState.TRIGGERED
                job.attempts += 1
                job.lease_owner = owner
                job.lease_until = now + self.policy.trigger_ttl
                job.updated_at = now
                work.append(
                    TriggerWork(
                        job_id=job.id,
                        iccid=card.iccid,
                        msisdn=card.msisdn,
                        psk_identity=card.psk_identity,
                        agent_id=card.agent_id,
                        counter=counter,
                        attempt=job.attempts,
                        lease_until=job.lease_until,
                        keys=keys,
                    )
                )
            if work:
                rows_by_job = s.execute(
                    select(Job.id, Campaign.trigger)
                    .join(Campaign, Campaign.id == Job.campaign_id)
                    .where(Job.id.in_([w.job_id for w in work]))
                ).all()
                triggers = {job_id: trigger for job_id, trigger in rows_by_job}
                work = [replace(w, trigger=triggers.get(w.job_id)) for w in work]
        # The triggered cards are about to call: their PSKs go in the cache now, so the TLS
        # handshake (an OpenSSL callback, on the server's event loop) need not wait for the
        # database.
        for identity, iccid, sealed in sealed_psks:
            try:
                self._remember_psk(identity, self._vault.unseal(sealed, _where(iccid, "psk_key")))
            except VaultError as exc:
                log.error("card %s: %s", iccid, exc)
        for w in work:
            log.debug("job %s: triggered card %s (attempt %d)", w.job_id, w.iccid, w.attempt)
        return work

    def open_session(self, psk_identity: str, owner: str, now: datetime) -> SessionWork | None:
        """The card with this PSK identity has connected: its job goes in_session under a
        lease of `policy.session_ttl` owned by `owner`. The job is the card's triggered one,
        or its in_session one whose lease expired (or that `owner` already holds: the card
        reconnected), or else its oldest pending one (the card came without a trigger).
        None when there is nothing to do, or another process runs the card's session."""
        now = _aware(now)
        with self._db.write() as s:
            card = s.scalar(
                select(Card)
                .where(Card.psk_identity == psk_identity)
                .with_for_update(key_share=True)
            )
            if card is None:
                return None
            jobs = s.scalars(
                select(Job)
                .where(Job.card_id == card.id, Job.state.in_(OPEN_STATES))
                .order_by(Job.created_at, Job.id)
                .with_for_update(key_share=True)
            ).all()
            if not jobs:
                return None
            active = [j for j in jobs if j.state in ACTIVE_STATES]
            job = active[0] if active else jobs[0]
            if job.state == JobState.IN_SESSION:
                lease = job.lease_until
                if job.lease_owner != owner and lease is not None and lease > now:
                    return None
            elif job.state == JobState.PENDING:
                job.attempts += 1
            maybe_applied = job.session_starts > 0
            job.state = JobState.IN_SESSION
            job.session_starts += 1
            job.lease_owner = owner
            job.lease_until = now + self.policy.session_ttl
            job.updated_at = now
            ops = tuple(self._session_operation(job.id, d) for d in job.operations)
            log.debug("job %s: session with card %s", job.id, card.iccid)
            return SessionWork(
                job_id=job.id,
                iccid=card.iccid,
                operations=ops,
                maybe_applied=maybe_applied,
                attempt=job.attempts,
                lease_until=job.lease_until,
            )

    def renew_lease(self, job_id: str, owner: str, now: datetime) -> bool:
        """Extends a running session's lease; False when `owner` no longer holds the job."""
        now = _aware(now)
        with self._db.write() as s:
            job = s.get(Job, job_id, with_for_update={"key_share": True})
            if job is None or job.state != JobState.IN_SESSION or job.lease_owner != owner:
                return False
            job.lease_until = now + self.policy.session_ttl
            job.updated_at = now
            return True

    def record_pap_codes(self, codes: Mapping[str, int]) -> None:
        """Keeps each job's PAP result code of its last SIP push trigger (job id -> code), in
        one transaction for a batch of triggers."""
        if not codes:
            return
        rows = [{"b_id": job_id, "b_code": int(code)} for job_id, code in codes.items()]
        with self._db.write() as s:
            # One statement executed for all the jobs (executemany), built once.
            s.connection().execute(_SET_PAP_CODE, rows)

    def finish_job(
        self, job_id: str, owner: str, outcome: Outcome, reason: str | None, now: datetime
    ) -> bool:
        """Ends the lease `owner` holds on a job: done (final), failed (final), or retry
        (pending after a backoff, or failed once `max_attempts` attempts were made). False,
        changing nothing, when `owner` does not hold the job; finishing a done job as done
        again is True."""
        now = _aware(now)
        _check_outcome(outcome)
        with self._db.write() as s:
            job = s.get(Job, job_id, with_for_update={"key_share": True})
            return job is not None and self._finish(s, job, owner, outcome, reason, now)

    def end_session(
        self,
        job_id: str,
        owner: str,
        outcome: Outcome,
        reason: str | None,
        *,
        started_at: datetime,
        ended_at: datetime,
        detail: Iterable[str] = (),
    ) -> bool:
        """`finish_job` and the card's session log in one transaction: what the card-facing
        server does when a session ends. The log is written whatever `finish_job` says (the
        session happened); False as `finish_job` would be, or when the job (with its card) is
        gone, and then nothing is written."""
        now = _aware(ended_at)
        _check_outcome(outcome)
        with self._db.write() as s:
            job = s.get(Job, job_id, with_for_update={"key_share": True})
            if job is None:
                return False
            finished = self._finish(s, job, owner, outcome, reason, now)
            s.add(_session_log(job.card_id, job.id, _aware(started_at), now, outcome, detail))
            return finished

    def _finish(
        self, s: Session, job: Job, owner: str, outcome: Outcome, reason: str | None, now: datetime
    ) -> bool:
        if job.state == JobState.DONE:
            return outcome == "done"
        if job.state not in ACTIVE_STATES or job.lease_owner != owner:
            return False
        match outcome:
            case "done":
                for identity in self._apply_key_change(s, job):
                    self._forget_psk(identity)
                self._end(job, JobState.DONE, None, now)
            case "failed":
                self._end(job, JobState.FAILED, reason or "failed", now)
            case "retry":
                self._retry(s, job, reason or "retry", now)
        log.debug("job %s: %s -> %s", job.id, outcome, job.state)
        return True

    def reap(self, now: datetime, *, limit: int = 1000) -> int:
        """Sends jobs whose lease expired (the card never connected, or a server or card died
        mid-session) down the retry path. Returns how many."""
        now = _aware(now)
        with self._db.write() as s:
            jobs = s.scalars(
                select(Job)
                .where(Job.state.in_(ACTIVE_STATES), Job.lease_until < now)
                .order_by(Job.lease_until)
                .limit(limit)
                .with_for_update(skip_locked=True, key_share=True)
            ).all()
            for job in jobs:
                if job.state == JobState.TRIGGERED:
                    reason = "the card did not connect before the trigger lease ran out"
                else:
                    reason = f"the session's lease ran out (owner {job.lease_owner})"
                self._retry(s, job, reason, now)
            if jobs:
                log.info("reaped %d jobs with expired leases", len(jobs))
            return len(jobs)

    def release_leases(self, owner: str, now: datetime) -> int:
        """Sends every job `owner` holds (triggered or in_session) down the retry path, due at
        once: what a server does when it starts again under the name it had before it died
        (see `ras.owner`), so its jobs need not wait for their leases to run out. The attempt
        it had is spent (a crash loop still ends at max_attempts). Returns how many."""
        now = _aware(now)
        with self._db.write() as s:
            jobs = s.scalars(
                select(Job)
                .where(Job.state.in_(ACTIVE_STATES), Job.lease_owner == owner)
                .order_by(Job.lease_until)
                .with_for_update(key_share=True)
            ).all()
            for job in jobs:
                self._retry(
                    s,
                    job,
                    f"released at restart: the server holding it ({owner}) had stopped",
                    now,
                    delay=False,
                )
            return len(jobs)

    def _retry(
        self, s: Session, job: Job, reason: str, now: datetime, *, delay: bool = True
    ) -> None:
        cancelled = job.campaign_id is not None and (
            s.scalar(select(Campaign.state).where(Campaign.id == job.campaign_id))
            == CampaignState.CANCELLED
        )
        if cancelled:
            self._end(job, JobState.FAILED, f"cancelled; last attempt: {reason}", now)
        elif job.attempts >= job.max_attempts:
            self._end(job, JobState.FAILED, f"{reason} (after {job.attempts} attempts)", now)
        else:
            job.state = JobState.PENDING
            job.next_attempt_at = now + self.policy.retry_delay(job.attempts) if delay else now
            job.lease_owner = None
            job.lease_until = None
            job.last_error = reason
            job.updated_at = now

    def _end(self, job: Job, state: JobState, reason: str | None, now: datetime) -> None:
        if state == JobState.FAILED:
            self._drop_key_change(job)
        job.state = state
        job.lease_owner = None
        job.lease_until = None
        if reason is not None:
            job.last_error = reason
        job.updated_at = now
        job.finished_at = now

    # -- session logs ------------------------------------------------------------------------

    def log_session(
        self,
        iccid: str,
        *,
        job_id: str | None,
        started_at: datetime,
        ended_at: datetime | None,
        outcome: str,
        detail: Iterable[str] = (),
    ) -> int | None:
        """Records one admin session of a card; returns the log entry's id, or None when the
        card was removed meanwhile (its logs went with it)."""
        with self._db.write() as s:
            card_id = s.scalar(select(Card.id).where(Card.iccid == iccid))
            if card_id is None:
                return None
            if job_id is not None and s.get(Job, job_id) is None:
                job_id = None  # a job id of our own making, or one deleted since
            entry = _session_log(
                card_id,
                job_id,
                _aware(started_at),
                None if ended_at is None else _aware(ended_at),
                outcome,
                detail,
            )
            s.add(entry)
            s.flush()
            return entry.id

    def session_logs(self, iccid: str, limit: int = 50) -> list[SessionLogInfo]:
        """The card's sessions, newest first."""
        with self._db.read() as s:
            rows = s.scalars(
                select(SessionLog)
                .join(Card, Card.id == SessionLog.card_id)
                .where(Card.iccid == iccid)
                .order_by(SessionLog.started_at.desc(), SessionLog.id.desc())
                .limit(limit)
            ).all()
            return [
                SessionLogInfo(
                    id=r.id,
                    iccid=iccid,
                    job_id=r.job_id,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    outcome=r.outcome,
                    detail=tuple(r.detail.split("\n")) if r.detail else (),
                )
                for r in rows
            ]


# -- helpers ---------------------------------------------------------------------------------


def _check_outcome(outcome: str) -> None:
    if outcome not in ("done", "retry", "failed"):
        raise ValueError(f"outcome must be done, retry or failed, not {outcome!r}")


def _check_iccid(iccid: str) -> None:
    problem = iccid_problem(iccid) if _ICCID.fullmatch(iccid) else None
    if not _ICCID.fullmatch(iccid):
        raise RasError(f"an ICCID has 19 or 20 decimal digits, not {iccid!r}")
    if problem is not None:
        raise RasError(problem)


def _check_text(what: str, value: str, limit: int) -> None:
    if not value or len(value.encode()) > limit or not _TOKEN.fullmatch(value):
        raise RasError(
            f"{what} must be 1..{limit} bytes of printable ASCII, no leading or trailing space"
        )


def _check_path(path: str) -> None:
    """The card's path rules and the repository's own (openscws.scws.paths)."""
    problem = admin_path_problem(path)
    if problem is not None:
        raise RasError(problem)


def _tar(value: bytes) -> bytes:
    if len(value) != 3:
        raise RasError("a TAR is 3 bytes")
    return bytes(value)


def _taken(found: str, iccid: str) -> str:
    return f"card {iccid} exists" if found == iccid else f"the PSK identity is card {found}'s"


def _card_info(card: Card) -> CardInfo:
    return CardInfo(
        iccid=card.iccid,
        msisdn=card.msisdn,
        agent_id=card.agent_id,
        psk_identity=card.psk_identity,
        ota_tar=card.ota_tar,
        ota_kic=card.ota_kic,
        ota_kid=card.ota_kid,
        ota_counter=card.ota_counter,
        created_at=card.created_at,
    )


def _session_log(
    card_id: int,
    job_id: str | None,
    started_at: datetime,
    ended_at: datetime | None,
    outcome: str,
    detail: Iterable[str],
) -> SessionLog:
    return SessionLog(
        card_id=card_id,
        job_id=job_id,
        started_at=started_at,
        ended_at=ended_at,
        outcome=outcome[:32],
        detail="\n".join(line.replace("\n", " ") for line in detail),
    )


def _latest_version(s: Session, path: str) -> ContentVersion | None:
    return s.scalar(
        select(ContentVersion)
        .where(ContentVersion.path == path)
        .order_by(ContentVersion.version.desc())
        .limit(1)
    )


def _info_columns() -> Any:
    return select(
        ContentVersion.path,
        ContentVersion.version,
        ContentVersion.sha256,
        func.length(ContentVersion.body),
        ContentVersion.content_type,
        ContentVersion.content_encoding,
        ContentVersion.content_language,
        ContentVersion.realm,
        ContentVersion.deleted,
        ContentVersion.created_at,
    )


def _content_row(row: Any) -> ContentInfo:
    return ContentInfo(*row)


def _content_info(row: ContentVersion, size: int) -> ContentInfo:
    return ContentInfo(
        path=row.path,
        version=row.version,
        sha256=row.sha256,
        size=size,
        content_type=row.content_type,
        content_encoding=row.content_encoding,
        content_language=row.content_language,
        realm=row.realm,
        deleted=row.deleted,
        created_at=row.created_at,
    )


def _pinned_operations(s: Session, paths: Sequence[str] | None) -> tuple[Operation, ...]:
    latest = (
        select(ContentVersion.path, func.max(ContentVersion.version).label("version"))
        .group_by(ContentVersion.path)
        .subquery()
    )
    query = select(ContentVersion.path, ContentVersion.version, ContentVersion.deleted).join(
        latest,
        and_(ContentVersion.path == latest.c.path, ContentVersion.version == latest.c.version),
    )
    if paths is not None:
        wanted = sorted(set(paths))
        for p in wanted:
            _check_path(p)
        query = query.where(ContentVersion.path.in_(wanted))
    rows = s.execute(query).all()
    if paths is not None:
        missing = set(paths) - {r.path for r in rows}
        if missing:
            raise NotFound(f"not in the content repository: {', '.join(sorted(missing))}")
    deletes = [Operation("delete", r.path) for r in rows if r.deleted]
    puts = [Operation("put", r.path, r.version) for r in rows if not r.deleted]
    return tuple(sorted(deletes, key=lambda o: o.path) + sorted(puts, key=lambda o: o.path))


def _card_ids(s: Session, iccids: Sequence[str] | None) -> list[int]:
    if iccids is None:
        return list(s.scalars(select(Card.id).order_by(Card.id)))
    wanted = set(iccids)
    rows = s.execute(select(Card.id, Card.iccid).where(Card.iccid.in_(wanted))).all()
    missing = wanted - {r.iccid for r in rows}
    if missing:
        raise NotFound(f"no such cards: {', '.join(sorted(missing))}")
    return sorted(r.id for r in rows)


def _campaign_row(s: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    if not 0 < campaign_id <= DB_INT_MAX:
        raise NotFound(f"no campaign {campaign_id}")
    query = select(Campaign).where(Campaign.id == campaign_id)
    campaign = s.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def _campaign_infos(s: Session, campaign_id: int | None) -> list[CampaignInfo]:
    if campaign_id is not None and not 0 < campaign_id <= DB_INT_MAX:
        return []
    query = select(Campaign).order_by(Campaign.id)
    counts = select(Job.campaign_id, Job.state, func.count()).group_by(Job.campaign_id, Job.state)
    if campaign_id is not None:
        query = query.where(Campaign.id == campaign_id)
        counts = counts.where(Job.campaign_id == campaign_id)
    per: dict[int, dict[str, int]] = {}
    for cid, state, n in s.execute(counts):
        if cid is not None:
            per.setdefault(cid, _no_jobs())[state] = n
    out = []
    for c in s.scalars(query):
        progress = per.get(c.id) or _no_jobs()
        jobs = sum(progress.values())
        open_jobs = sum(n for st, n in progress.items() if st not in FINAL_STATES)
        state = c.state
        if state == CampaignState.ACTIVE and open_jobs == 0:
            state = "finished"
        ops = tuple(Operation.from_json(d) for d in c.operations)
        out.append(
            CampaignInfo(
                c.id, c.name, state, ops, c.created_at, jobs, open_jobs, progress, c.trigger
            )
        )
    return out


def _no_jobs() -> dict[str, int]:
    return dict.fromkeys((str(st) for st in JobState), 0)


def _first_in_line(s: Session, rows: Sequence[Any]) -> list[tuple[Job, Card]]:
    """The candidates that really are their card's next job, one per card. The claim query's
    NOT EXISTS ran on its statement's snapshot: PostgreSQL re-checks the rows it locks against
    their newest versions, but not that subquery. So the card's open jobs are read again here,
    in a new statement (a new snapshot at READ COMMITTED) while we hold the card's lock, and
    the one-active-job rule does not rest on that subtlety."""
    firsts: dict[int, tuple[Job, Card]] = {}
    for job, card in rows:
        firsts.setdefault(card.id, (job, card))
    if not firsts:
        return []
    head: dict[int, str] = {}
    busy: set[int] = set()
    for card_id, job_id, state in s.execute(
        select(Job.card_id, Job.id, Job.state)
        .where(Job.card_id.in_(list(firsts)), Job.state.in_(OPEN_STATES))
        .order_by(Job.card_id, Job.created_at, Job.id)
    ):
        head.setdefault(card_id, job_id)
        if state in ACTIVE_STATES:
            busy.add(card_id)
    return [
        (job, card)
        for card_id, (job, card) in firsts.items()
        if head.get(card_id) == job.id and card_id not in busy
    ]


def _job_info(job: Job, iccid: str) -> JobInfo:
    return JobInfo(
        id=job.id,
        iccid=iccid,
        campaign_id=job.campaign_id,
        state=job.state,
        operations=tuple(Operation.from_json(d) for d in job.operations),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        next_attempt_at=job.next_attempt_at,
        lease_owner=job.lease_owner,
        lease_until=job.lease_until,
        last_error=job.last_error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )
