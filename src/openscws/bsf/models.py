"""The BSF's database schema (SQLAlchemy 2.0 typed ORM); `migrations/versions/` creates the same
tables. Keys (K, OPc, XRES, CK || IK, Ks) are sealed with the master key (`ras.vault.Vault`),
the associated data naming their row. Times are milliseconds since the epoch, UTC."""

from __future__ import annotations

import enum
from typing import Final

from sqlalchemy import BigInteger, Index, LargeBinary, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class GbaType(enum.StrEnum):
    """The GBA user security setting that says where Ks lives (TS 33.220 §4.4.2, §5.2.1)."""

    GBA_U = "GBA_U"
    """The UICC keeps Ks; NAFs get Ks_ext_NAF and Ks_int_NAF."""
    GBA_ME = "GBA_ME"
    """The terminal holds Ks; NAFs get Ks_NAF."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Subscriber(Base):
    """The HSS's part: what makes authentication vectors for one IMPI."""

    __tablename__ = "bsf_subscribers"

    impi: Mapped[str] = mapped_column(String(255), primary_key=True)
    k: Mapped[bytes] = mapped_column(LargeBinary)
    opc: Mapped[bytes] = mapped_column(LargeBinary)
    amf: Mapped[bytes] = mapped_column(LargeBinary(2))
    seq: Mapped[int] = mapped_column(BigInteger)
    """SEQ_HE of the last vector (TS 33.102 Annex C; IND is always 0 here)."""
    gba_type: Mapped[str] = mapped_column(String(8))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PendingChallenge(Base):
    """A 401's challenge, keyed by its nonce; answered once (`state` follows gba.ub.BSF_TABLE)."""

    __tablename__ = "bsf_challenges"
    __table_args__ = (Index("ix_bsf_challenges_created_ms", "created_ms"),)

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    impi: Mapped[str] = mapped_column(String(255))
    rand: Mapped[bytes] = mapped_column(LargeBinary(16))
    xres: Mapped[bytes] = mapped_column(LargeBinary)
    ks: Mapped[bytes] = mapped_column(LargeBinary)
    gba_type: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class BootstrapSession(Base):
    """Ks per B-TID until its lifetime ends (TS 33.220 §4.5.2)."""

    __tablename__ = "bsf_sessions"
    __table_args__ = (Index("ix_bsf_sessions_expires_ms", "expires_ms"),)

    btid: Mapped[str] = mapped_column(String(255), primary_key=True)
    impi: Mapped[str] = mapped_column(String(255))
    rand: Mapped[bytes] = mapped_column(LargeBinary(16))
    ks: Mapped[bytes] = mapped_column(LargeBinary)
    gba_type: Mapped[str] = mapped_column(String(8))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)


class NafClient(Base):
    """A NAF allowed on Zn: its FQDN and the SHA-256 of its access token."""

    __tablename__ = "bsf_nafs"

    fqdn: Mapped[str] = mapped_column(String(255), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_ms: Mapped[int] = mapped_column(BigInteger)


# The tables themselves, for the SQL core statements of Ub's hot path (`bsf.service`).
SUBSCRIBERS: Final[Table] = Base.metadata.tables[Subscriber.__tablename__]
CHALLENGES: Final[Table] = Base.metadata.tables[PendingChallenge.__tablename__]
SESSIONS: Final[Table] = Base.metadata.tables[BootstrapSession.__tablename__]
