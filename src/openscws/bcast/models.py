"""The BSM's database schema (SQLAlchemy 2.0 typed ORM); `migrations/versions/` creates the same
tables. SEK/PEK values are sealed with the master key (`ras.vault.Vault`), the associated data
naming their row. Times are milliseconds since the epoch, UTC."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ServiceKey(Base):
    """A SEK or PEK: Key Domain ID and SEK/PEK ID (EF_MSK's identifiers) and its sealed value."""

    __tablename__ = "bsm_keys"

    key_domain: Mapped[bytes] = mapped_column(LargeBinary(3), primary_key=True)
    key_id: Mapped[bytes] = mapped_column(LargeBinary(4), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class PurchaseItem(Base):
    """A purchase item of the catalogue, by its globalIDRef."""

    __tablename__ = "bsm_items"

    ref: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ItemKey(Base):
    """Which SEK/PEKs a purchase item gives access to."""

    __tablename__ = "bsm_item_keys"

    ref: Mapped[str] = mapped_column(
        String(255), ForeignKey("bsm_items.ref", ondelete="CASCADE"), primary_key=True
    )
    key_domain: Mapped[bytes] = mapped_column(LargeBinary(3), primary_key=True)
    key_id: Mapped[bytes] = mapped_column(LargeBinary(4), primary_key=True)


class Subscriber(Base):
    """A terminal known by its B-TID or NAI: tokens bought and the last MIKEY counter used."""

    __tablename__ = "bsm_subscribers"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    counter: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Subscription(Base):
    """A subscriber's subscription to a purchase item (implicit registration)."""

    __tablename__ = "bsm_subscriptions"

    username: Mapped[str] = mapped_column(
        String(255), ForeignKey("bsm_subscribers.username", ondelete="CASCADE"), primary_key=True
    )
    ref: Mapped[str] = mapped_column(
        String(255), ForeignKey("bsm_items.ref", ondelete="CASCADE"), primary_key=True
    )
    created_ms: Mapped[int] = mapped_column(BigInteger)


class RkSubscriber(Base):
    """An (R-)UIM / CSIM subscriber by NAI: its pre-provisioned RK (sealed), the random its TK
    and Auth-Key are derived with, and the name of the derivation (`keys.RK_DERIVATIONS`)."""

    __tablename__ = "bsm_rk_subscribers"

    nai: Mapped[str] = mapped_column(String(255), primary_key=True)
    rk: Mapped[bytes] = mapped_column(LargeBinary)
    rand: Mapped[bytes] = mapped_column(LargeBinary)
    derivation: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Service(Base):
    """A service of the catalogue by its globalServiceID (OMA BCAST ESG Service fragment),
    with a name for operators."""

    __tablename__ = "bsm_services"

    service_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ItemService(Base):
    """Which services a purchase item bundles."""

    __tablename__ = "bsm_item_services"

    ref: Mapped[str] = mapped_column(
        String(255), ForeignKey("bsm_items.ref", ondelete="CASCADE"), primary_key=True
    )
    service_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("bsm_services.service_id", ondelete="CASCADE"), primary_key=True
    )
