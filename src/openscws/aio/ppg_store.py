"""The PPG's delivery state: its own tables (`ppg_push`, `ppg_binding`) in a SQLite file (the
default) or a PostgreSQL database, through the admin server's engine set-up (`ras.db`: WAL,
busy timeout, BEGIN IMMEDIATE on SQLite). The tables are created when missing; they do not
share a name with the admin server's migrated schema, so one database can hold both.

Several PPG processes may share one database: a push is leased to one process by a
conditional UPDATE (`lease_until` in the past), so two never send the same push at once.
Times are UNIX seconds (float)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from openscws.ras.db import RasDatabase

__all__ = ["Binding", "DuplicatePush", "PpgStore", "PushRecord"]

PENDING: Final = "pending"

metadata = MetaData()

ppg_push = Table(
    "ppg_push",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("push_id", String(255), nullable=False, unique=True),
    Column("initiator", String(128), nullable=False),
    Column("address", String(512), nullable=False),
    Column("target", String(512), nullable=False),
    Column("app_id", String(128), nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("deliver_before", Float),
    Column("deliver_after", Float),
    Column("notify_to", String(1024)),
    Column("state", String(16), nullable=False, index=True),
    Column("code", Integer, nullable=False),
    Column("desc", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False, index=True),
    Column("lease_until", Float),
    Column("lease_owner", String(64)),
    Column("created", Float, nullable=False),
    Column("event_time", Float),
    Column("notified", Boolean, nullable=False, default=False),
    Column("notify_attempts", Integer, nullable=False, default=0),
)

ppg_binding = Table(
    "ppg_binding",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("aor", String(512), nullable=False, index=True),
    Column("contact", String(1024), nullable=False),
    Column("expires_at", Float, nullable=False),
    UniqueConstraint("aor", "contact"),
)


class DuplicatePush(Exception):
    """A push-id already stored (PAP 2007)."""


@dataclass(frozen=True, slots=True)
class PushRecord:
    id: int
    push_id: str
    initiator: str
    address: str
    target: str
    app_id: str
    content_type: str
    body: bytes
    deliver_before: float | None
    deliver_after: float | None
    notify_to: str | None
    state: str
    code: int
    desc: str | None
    attempts: int
    next_at: float
    created: float
    event_time: float | None
    notified: bool
    notify_attempts: int

    @classmethod
    def of_columns(cls, row: Any) -> PushRecord:
        """A row of `_RECORD` (the fields' columns, in the fields' order)."""
        return cls(*row)


@dataclass(frozen=True, slots=True)
class Binding:
    aor: str
    contact: str
    expires_at: float


# The statements of the delivery path, built once: a statement built per call costs its
# construction and its cache key each time (the compiled form is cached either way).
_RECORD: Final = select(*(ppg_push.c[name] for name in PushRecord.__slots__))
_INSERT: Final = insert(ppg_push)
_BY_PUSH_IDS: Final = _RECORD.where(ppg_push.c.push_id.in_(bindparam("push_ids", expanding=True)))
_FREE: Final = or_(ppg_push.c.lease_until.is_(None), ppg_push.c.lease_until < bindparam("now"))
_DUE: Final = (
    select(ppg_push.c.id)
    .where(ppg_push.c.state == PENDING, ppg_push.c.next_at <= bindparam("now"), _FREE)
    .order_by(ppg_push.c.next_at)
    .limit(bindparam("limit"))
)
_LEASE: Final = (
    update(ppg_push)
    .where(and_(ppg_push.c.id.in_(bindparam("ids", expanding=True)), _FREE))
    .values(lease_until=bindparam("until"), lease_owner=bindparam("owner"))
)
_LEASED: Final = _RECORD.where(
    ppg_push.c.id.in_(bindparam("ids", expanding=True)),
    ppg_push.c.lease_owner == bindparam("owner"),
    ppg_push.c.lease_until == bindparam("until"),
)
_FINISH: Final = (
    update(ppg_push)
    .where(ppg_push.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        code=bindparam("b_code"),
        desc=bindparam("b_desc"),
        event_time=bindparam("b_time"),
        lease_until=None,
    )
)
_TO_NOTIFY: Final = _RECORD.where(
    ppg_push.c.state != PENDING,
    ppg_push.c.notify_to.is_not(None),
    ppg_push.c.notified.is_(False),
    ppg_push.c.notify_attempts < bindparam("max_attempts"),
).limit(bindparam("limit"))
_NOTIFIED: Final = (
    update(ppg_push)
    .where(ppg_push.c.id == bindparam("b_id"))
    .values(notified=bindparam("b_ok"), notify_attempts=ppg_push.c.notify_attempts + 1)
)
_CONTACTS: Final = select(ppg_binding.c.aor, ppg_binding.c.contact, ppg_binding.c.expires_at).where(
    ppg_binding.c.aor.in_(bindparam("aors", expanding=True)),
    ppg_binding.c.expires_at > bindparam("now"),
)


def _new_push(values: dict[str, Any]) -> dict[str, Any]:
    defaults = {"state": PENDING, "code": 1001, "attempts": 0, "notified": False}
    return {**defaults, "notify_attempts": 0, **values}


class PpgStore:
    def __init__(self, url: str) -> None:
        self.db = RasDatabase(url)
        metadata.create_all(self.db.engine)

    def close(self) -> None:
        self.db.dispose()

    # -- pushes --------------------------------------------------------------------------------

    def add(self, **values: Any) -> None:
        if not self.add_many([values])[0]:
            raise DuplicatePush(values.get("push_id"))

    def add_many(self, pushes: Sequence[dict[str, Any]]) -> list[bool]:
        """New pushes in one transaction; per push, False for a push-id already known
        (then the others are added one transaction each)."""
        rows = [_new_push(values) for values in pushes]
        try:
            with self.db.write() as s:
                s.connection().execute(_INSERT, rows)
            return [True] * len(rows)
        except IntegrityError:
            if len(rows) == 1:
                return [False]
        return [self.add_many([row])[0] for row in rows]

    def add_leased(
        self, pushes: Sequence[dict[str, Any]], *, owner: str, lease_until: float
    ) -> list[PushRecord | None]:
        """New pushes that are due now, added already leased to `owner` until `lease_until`
        (so the process that accepted them sends them without a `claim_due` round); per
        push its stored record, None for a push-id already known."""
        leased = [{**values, "lease_owner": owner, "lease_until": lease_until} for values in pushes]
        added = self.add_many(leased)
        ids = [values["push_id"] for values, ok in zip(leased, added, strict=True) if ok]
        if not ids:
            return [None] * len(leased)
        with self.db.read() as s:
            rows = s.connection().execute(_BY_PUSH_IDS, {"push_ids": ids}).all()
        records = {record.push_id: record for record in map(PushRecord.of_columns, rows)}
        return [
            records.get(values["push_id"]) if ok else None
            for values, ok in zip(leased, added, strict=True)
        ]

    def get(self, push_id: str) -> PushRecord | None:
        with self.db.read() as s:
            row = s.connection().execute(_BY_PUSH_IDS, {"push_ids": [push_id]}).first()
        return None if row is None else PushRecord.of_columns(row)

    def claim_due(self, now: float, *, owner: str, lease: float, limit: int) -> list[PushRecord]:
        """Pending pushes due now, leased to `owner` for `lease` seconds."""
        with self.db.write() as s:
            connection = s.connection()
            ids = list(connection.execute(_DUE, {"now": now, "limit": limit}).scalars())
            if not ids:
                return []
            until = now + lease
            # One UPDATE for the batch; the free condition again, so a push another PPG
            # process leased meanwhile stays its own, and read back what this one holds.
            connection.execute(_LEASE, {"ids": ids, "now": now, "until": until, "owner": owner})
            rows = connection.execute(_LEASED, {"ids": ids, "owner": owner, "until": until}).all()
        return [PushRecord.of_columns(r) for r in rows]

    def finish(self, push: int, *, state: str, code: int, desc: str, now: float) -> None:
        self.finish_many([(push, state, code, desc, now)])

    def finish_many(self, outcomes: Sequence[tuple[int, str, int, str, float]]) -> None:
        """Final outcomes (push, state, code, desc, event time) in one transaction."""
        if not outcomes:
            return
        rows = [
            {"b_id": push, "b_state": state, "b_code": code, "b_desc": desc, "b_time": now}
            for push, state, code, desc, now in outcomes
        ]
        with self.db.write() as s:
            # One statement executed for all the rows (executemany), not one per row.
            s.connection().execute(_FINISH, rows)

    def retry(self, push: int, *, attempts: int, next_at: float, desc: str) -> None:
        with self.db.write() as s:
            s.execute(
                update(ppg_push)
                .where(ppg_push.c.id == push)
                .values(attempts=attempts, next_at=next_at, desc=desc, lease_until=None)
            )

    def cancel(self, push_id: str, now: float) -> bool:
        with self.db.write() as s:
            result = s.execute(
                update(ppg_push)
                .where(ppg_push.c.push_id == push_id, ppg_push.c.state == PENDING)
                .values(state="cancelled", code=1000, desc="cancelled", event_time=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def to_notify(self, limit: int, max_attempts: int) -> list[PushRecord]:
        with self.db.read() as s:
            rows = (
                s.connection()
                .execute(_TO_NOTIFY, {"limit": limit, "max_attempts": max_attempts})
                .all()
            )
        return [PushRecord.of_columns(r) for r in rows]

    def notified(self, push: int, ok: bool) -> None:
        self.notified_many([(push, ok)])

    def notified_many(self, results: Sequence[tuple[int, bool]]) -> None:
        """Notification outcomes (push, delivered to the initiator) in one transaction."""
        if not results:
            return
        with self.db.write() as s:
            s.connection().execute(_NOTIFIED, [{"b_id": push, "b_ok": ok} for push, ok in results])

    # -- registrations (the embedded registrar) ------------------------------------------------

    def bind(self, aor: str, contact: str, expires_at: float) -> None:
        with self.db.write() as s:
            s.execute(
                delete(ppg_binding).where(
                    ppg_binding.c.aor == aor, ppg_binding.c.contact == contact
                )
            )
            if expires_at > 0:
                s.execute(
                    insert(ppg_binding).values(aor=aor, contact=contact, expires_at=expires_at)
                )

    def contacts_many(self, aors: Sequence[str], now: float) -> dict[str, list[Binding]]:
        """The unexpired bindings of each of `aors` (one query; an AOR without any maps to
        an empty list)."""
        found: dict[str, list[Binding]] = {aor: [] for aor in aors}
        if not found:
            return found
        with self.db.read() as s:
            rows = s.connection().execute(_CONTACTS, {"aors": list(found), "now": now}).all()
        for aor, contact, expires_at in rows:
            found[aor].append(Binding(aor, contact, expires_at))
        return found

    def contacts(self, aor: str, now: float) -> list[Binding]:
        with self.db.read() as s:
            rows = s.execute(
                select(ppg_binding).where(ppg_binding.c.aor == aor, ppg_binding.c.expires_at > now)
            ).all()
        return [Binding(r.aor, r.contact, r.expires_at) for r in rows]
