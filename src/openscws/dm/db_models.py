"""The DM server's database schema (SQLAlchemy 2.0 typed ORM); `migrations/versions/` creates
the same tables. Device secrets (the client's and the server's application credentials, the
HTTP password, the PSK) are sealed with the master key (`ras.vault.Vault`), the associated
data naming their row and column. Times are milliseconds since the epoch, UTC."""

from __future__ import annotations

import enum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Device", "DigestNonceUse", "HttpAuth", "Job", "JobState"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class HttpAuth(enum.StrEnum):
    """How a device authenticates at the transport (OMA-TS-DM_Security: the DM account's
    transport credentials)."""

    NONE = "none"
    """Only the application level (SyncML credentials)."""
    BASIC = "basic"
    """HTTP Basic (RFC 7617)."""
    DIGEST = "digest"
    """HTTP Digest, MD5 or SHA-256 (RFC 7616)."""
    CERT = "cert"
    """A TLS client certificate from the configured CA, pinned by its SHA-256."""
    PSK = "psk"
    """PSK-TLS with the device's own identity and key (RFC 4279)."""


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Device(Base):
    """One managed device: its DevId, its DM account's credentials on both sides, and its
    transport credentials."""

    __tablename__ = "dm_devices"

    dev_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    app_auth: Mapped[str] = mapped_column(String(32))
    """The SyncML credential type the device must use: syncml:auth-basic, syncml:auth-md5
    or syncml:auth-MAC."""
    app_username: Mapped[str] = mapped_column(String(255))
    app_secret: Mapped[bytes] = mapped_column(LargeBinary)
    app_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    """The nonce the device must use next (rolls over on every challenge)."""
    server_id: Mapped[str] = mapped_column(String(255))
    server_auth: Mapped[str | None] = mapped_column(String(32), nullable=True)
    server_secret: Mapped[bytes] = mapped_column(LargeBinary)
    server_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    http_auth: Mapped[str] = mapped_column(String(16))
    http_username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    http_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    cert_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    psk_identity: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    psk_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    msisdn: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Where Package #0 goes by SMS (digits, an optional leading +); None: no notification."""
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    """A management job: commands (Get, Replace, Add, Delete, Exec) for one device, run in
    its next session, and their results."""

    __tablename__ = "dm_jobs"
    __table_args__ = (Index("ix_dm_jobs_dev_id_state", "dev_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dev_id: Mapped[str] = mapped_column(ForeignKey("dm_devices.dev_id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    commands: Mapped[str] = mapped_column(Text)
    """JSON: [{"op": "Get", "uri": "./DevInfo/Mod", "data": null}, ...]."""
    results: Mapped[str] = mapped_column(Text, default="[]")
    """JSON: [{"op", "uri", "status", "data"}, ...] in command order."""
    created_ms: Mapped[int] = mapped_column(BigInteger)
    finished_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DigestNonceUse(Base):
    """An HTTP Digest (nonce, nc) pair the server accepted (RFC 7616 §3.4, §5.5): recorded
    once, so every server process sharing the database refuses the same request replayed.
    A row may go once its nonce has expired (the nonce carries its issue time)."""

    __tablename__ = "dm_digest_nonces"
    __table_args__ = (Index("ix_dm_digest_nonces_issued_ms", "issued_ms"),)

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    nc: Mapped[str] = mapped_column(String(8), primary_key=True)
    issued_ms: Mapped[int] = mapped_column(BigInteger)
