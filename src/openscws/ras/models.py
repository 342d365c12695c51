"""The RAS database schema (SQLAlchemy 2.0 typed ORM). `migrations/versions/` creates the same
tables; tests/ras/test_ras_migrations.py checks that the two never drift apart.

Only `service.py` touches these classes: shells get frozen dataclasses, never ORM rows."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: the same on SQLite and PostgreSQL, so later migrations can
# name what they alter (SQLite batch mode needs the names too).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JobState(enum.StrEnum):
    PENDING = "pending"
    """Waiting for `next_attempt_at`, then for a trigger."""
    TRIGGERED = "triggered"
    """The trigger SMS is (being) sent; the card has `lease_until` to connect."""
    IN_SESSION = "in_session"
    """The card is connected and the job's commands are running."""
    DONE = "done"
    FAILED = "failed"


ACTIVE_STATES = (JobState.TRIGGERED, JobState.IN_SESSION)
"""A card has at most one job in these states."""
OPEN_STATES = (JobState.PENDING, *ACTIVE_STATES)
FINAL_STATES = (JobState.DONE, JobState.FAILED)


class CampaignState(enum.StrEnum):
    ACTIVE = "active"
    CANCELLED = "cancelled"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone, so naive UTC is stored there and
    its ISO text sorts in time order; PostgreSQL stores timestamptz."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the RAS database: pass UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    msisdn: Mapped[str | None] = mapped_column(String(24))
    agent_id: Mapped[str] = mapped_column(String(255))
    psk_identity: Mapped[str] = mapped_column(String(255), unique=True)
    psk_key: Mapped[bytes] = mapped_column(LargeBinary)
    """Vault-sealed (AES-GCM, associated data = iccid and column)."""
    ota_tar: Mapped[str] = mapped_column(String(6))
    """The admin agent's TAR, 3 bytes as hex."""
    ota_kic: Mapped[int] = mapped_column(Integer)
    """The KIc byte: key version (high nibble) and algorithm."""
    ota_kid: Mapped[int] = mapped_column(Integer)
    """The KID byte."""
    ota_kic_key: Mapped[bytes] = mapped_column(LargeBinary)
    ota_kid_key: Mapped[bytes] = mapped_column(LargeBinary)
    ota_counter: Mapped[int] = mapped_column(BigInteger, default=0)
    """The last CNTR used (5 bytes on the wire, so 64-bit here)."""
    created_at: Mapped[datetime]


class ContentVersion(Base):
    """One version of one path in the content repository; a deletion is a tombstone version."""

    __tablename__ = "content_versions"
    __table_args__ = (UniqueConstraint("path", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(255))
    content_encoding: Mapped[str | None] = mapped_column(String(64))
    content_language: Mapped[str | None] = mapped_column(String(64))
    realm: Mapped[str | None] = mapped_column(String(255))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint("state IN ('active', 'cancelled')", name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    operations: Mapped[list[Any]]
    trigger: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """"sms", "sip-push", or None: the server's configured default."""
    created_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.ACTIVE)


_ACTIVE_SQL = "state IN ('triggered', 'in_session')"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'triggered', 'in_session', 'done', 'failed')", name="state"
        ),
        # claim_triggers: due pending jobs in order.
        Index(None, "state", "next_attempt_at"),
        # reap: expired leases.
        Index(None, "state", "lease_until"),
        # per-card FIFO and "one active job" checks, open_session.
        Index(None, "card_id", "state", "created_at"),
        # campaign progress.
        Index(None, "campaign_id", "state"),
        # The invariant itself, enforced by the database as a last line of defence.
        Index(
            "uq_jobs_one_active_per_card",
            "card_id",
            unique=True,
            sqlite_where=text(_ACTIVE_SQL),
            postgresql_where=text(_ACTIVE_SQL),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """A UUID; also the card-side transaction id."""
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    operations: Mapped[list[Any]]
    """[{"op": "put", "path": "/a.html", "version": 3}, {"op": "delete", "path": "/b"}]"""
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    session_starts: Mapped[int] = mapped_column(Integer, default=0)
    """Times a session began for this job: above zero, the card may hold its transaction."""
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    pap_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The PAP result code of the job's last SIP push trigger (1000: delivered); None: no
    SIP push yet."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class SessionLog(Base):
    __tablename__ = "session_logs"
    __table_args__ = (Index(None, "card_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    """One line per event of the session."""


# -- operators: accounts, API tokens, console sessions, the audit trail ------------------------


class Role(enum.StrEnum):
    """What an operator may do; each role includes the ones before it."""

    VIEWER = "viewer"
    """Read cards, content, campaigns and session logs."""
    OPERATOR = "operator"
    """Also: change content, create and cancel campaigns."""
    ADMIN = "admin"
    """Also: register and remove cards (their keys), manage accounts, read the audit trail."""

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS: dict[Role, int] = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
_ROLE_SQL = "role IN ('viewer', 'operator', 'admin')"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_ROLE_SQL, name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    """argon2id, in the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash)."""
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class ApiToken(Base):
    """A bearer token: `oscws_<token_id>_<secret>`. Only the SHA-256 of the whole token is
    kept (the secret has 256 random bits, so a slow hash adds nothing)."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_ROLE_SQL, name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(16), unique=True)
    """The public part, shown by `token ls` and used to revoke."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    token_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    """At most the user's role; the user's current role caps it again at each use."""
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A logged-in console: the cookie carries the secret, the row its SHA-256."""

    __tablename__ = "console_sessions"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the cookie's value."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditEntry(Base):
    """One state change, or one refused attempt at one: who, what, when, from where, result.
    Never holds key material: only key identifiers and checksums."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    """user name, `user/token-id`, `local:<login>` (the CLI) or `-` (unauthenticated)."""
    address: Mapped[str] = mapped_column(String(64))
    """The client's IP address, or `local` for the CLI."""
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    result: Mapped[str] = mapped_column(String(32))
    """ok, or why it was refused / failed (a status code and a word)."""
    detail: Mapped[str] = mapped_column(Text, default="")
