"""The BSM's catalogue and subscriptions in its database (SQLite by default, PostgreSQL at
scale): `SqlStore` is the `BsmStore` of `openscws.bcast.bsm` plus catalogue management.

`commit` applies one request's subscription change, its tokens and the MIKEY counters it
reserves for its LTKMs in one transaction, with the subscriber's row locked (SELECT ... FOR
UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers), so a crash leaves either
all of it or none of it, and two requests never get the same counter. SEK/PEK values are
sealed with the master key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import BindParameter, Executable, Select, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openscws.bcast.bsm import Change, StoreView, UserKeys
from openscws.bcast.db import BsmDatabase
from openscws.bcast.keys import DEFAULT_RK_DERIVATION, RK_DERIVATIONS, BcastKeyError, rk_keys
from openscws.bcast.models import (
    ItemKey,
    ItemService,
    PurchaseItem,
    RkSubscriber,
    Service,
    ServiceKey,
    Subscriber,
    Subscription,
)
from openscws.bcast.sprov import KeyId
from openscws.ras.db import Conflict, NotFound, RasError
from openscws.ras.vault import Vault

__all__ = ["ItemInfo", "ServiceInfo", "SqlStore", "SubscriberInfo", "SubscriptionInfo"]

_MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    service_id: str
    name: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """A purchase item: the keys it gives, the services it bundles, how many subscribe."""

    ref: str
    keys: tuple[KeyId, ...]
    services: tuple[str, ...]
    subscribers: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    username: str
    ref: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class SubscriberInfo:
    """A terminal's state at the BSM: its tokens, the LTKMs issued to it (the last MIKEY
    counter), its subscriptions."""

    username: str
    tokens: int
    ltkms: int
    subscriptions: tuple[str, ...]
    created_ms: int


def _check_text(what: str, text: str) -> None:
    if not text or len(text) > _MAX_TEXT or not text.isprintable():
        raise RasError(f"{what} is 1 to {_MAX_TEXT} printable characters")


def _order(key: KeyId) -> tuple[bytes, bytes]:
    return key.key_domain, key.key_id


def _where(key: KeyId) -> str:
    return f"bsm/key/{key.key_domain.hex()}/{key.key_id.hex()}"


@dataclass(slots=True)
class _Cache:
    """What a request needs and never changes once written, kept in memory: SEK/PEK values
    (never changed nor removed) and the keys derived from an (R-)UIM subscriber's RK (its row
    is never changed), for `ttl` seconds. Bounded; cleared when full."""

    ttl: float = 300.0
    size: int = 100_000
    keys: dict[KeyId, bytes] = field(default_factory=dict, repr=False)
    users: dict[str, tuple[float, UserKeys]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True, slots=True)
class _Statements:
    """The statements of `SqlStore.transact`, built once per dialect (SQLAlchemy caches their
    compiled form; building them per request cost more than running them)."""

    create: Executable
    lock: Select[int]
    subscribed: Select[str]
    items: Select[str]
    item_keys: Select[str, bytes, bytes]
    keys: Select[bytes, bytes]
    count: Executable
    subscribe: Executable
    unsubscribe: Executable


def _statements(insert: Callable[..., Any]) -> _Statements:
    u: BindParameter[str] = bindparam("u")
    return _Statements(
        create=insert(Subscriber)
        .values(username=u, tokens=0, counter=0, created_ms=bindparam("now"))
        .on_conflict_do_nothing(index_elements=["username"]),
        lock=select(Subscriber.counter).where(Subscriber.username == u).with_for_update(),
        subscribed=select(Subscription.ref).where(Subscription.username == u),
        items=select(PurchaseItem.ref).where(
            PurchaseItem.ref.in_(bindparam("refs", expanding=True))
        ),
        item_keys=select(ItemKey.ref, ItemKey.key_domain, ItemKey.key_id).where(
            ItemKey.ref.in_(bindparam("refs", expanding=True))
        ),
        keys=select(ServiceKey.key_domain, ServiceKey.key_id).where(
            ServiceKey.key_domain.in_(bindparam("domains", expanding=True))
        ),
        count=update(Subscriber)
        .where(Subscriber.username == u)
        .values(
            counter=Subscriber.counter + bindparam("n"),
            tokens=Subscriber.tokens + bindparam("t"),
        ),
        subscribe=insert(Subscription).values(
            username=u, ref=bindparam("r"), created_ms=bindparam("now")
        ),
        unsubscribe=delete(Subscription).where(
            Subscription.username == u, Subscription.ref.in_(bindparam("refs", expanding=True))
        ),
    )


_PG: Final = _statements(pg_insert)
_SQLITE: Final = _statements(sqlite_insert)


class SqlStore:
    def __init__(self, db: BsmDatabase, vault: Vault) -> None:
        self.db = db
        self.vault = vault
        self._cache = _Cache()

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    # -- catalogue --------------------------------------------------------------------------

    def add_key(self, key: KeyId, value: bytes) -> None:
        if len(value) not in (16, 32):
            raise RasError("a SEK/PEK is 16 or 32 bytes")
        with self.db.write() as s:
            if s.get(ServiceKey, (key.key_domain, key.key_id)) is not None:
                raise Conflict(f"key {key.key_domain.hex()}/{key.key_id.hex()} exists")
            s.add(ServiceKey(
                key_domain=key.key_domain, key_id=key.key_id,
                value=self.vault.seal(value, _where(key)), created_ms=self._now_ms(),
            ))  # fmt: skip

    def add_item(self, ref: str, keys: Iterable[KeyId], services: Iterable[str] = ()) -> None:
        keys = list(dict.fromkeys(keys))
        services = list(dict.fromkeys(services))
        _check_text("a purchase item reference", ref)
        with self.db.write() as s:
            if s.get(PurchaseItem, ref) is not None:
                raise Conflict(f"purchase item {ref!r} exists")
            for key in keys:
                if s.get(ServiceKey, (key.key_domain, key.key_id)) is None:
                    raise NotFound(f"no key {key.key_domain.hex()}/{key.key_id.hex()}")
            for service_id in services:
                if s.get(Service, service_id) is None:
                    raise NotFound(f"no service {service_id!r}")
            s.add(PurchaseItem(ref=ref, created_ms=self._now_ms()))
            s.flush()
            s.add_all(ItemKey(ref=ref, key_domain=k.key_domain, key_id=k.key_id) for k in keys)
            s.add_all(ItemService(ref=ref, service_id=sid) for sid in services)

    def remove_item(self, ref: str) -> None:
        with self.db.write() as s:
            if s.get(PurchaseItem, ref) is None:
                raise NotFound(f"no purchase item {ref!r}")
            s.execute(delete(Subscription).where(Subscription.ref == ref))
            s.execute(delete(ItemKey).where(ItemKey.ref == ref))
            s.execute(delete(ItemService).where(ItemService.ref == ref))
            s.execute(delete(PurchaseItem).where(PurchaseItem.ref == ref))

    def items(self) -> dict[str, tuple[KeyId, ...]]:
        with self.db.read() as s:
            refs = s.scalars(select(PurchaseItem.ref).order_by(PurchaseItem.ref)).all()
            rows = s.execute(select(ItemKey.ref, ItemKey.key_domain, ItemKey.key_id)).all()
        out: dict[str, list[KeyId]] = {ref: [] for ref in refs}
        for ref, domain, key_id in rows:
            out[ref].append(KeyId(domain, key_id))
        return {ref: tuple(sorted(keys, key=_order)) for ref, keys in out.items()}

    def keys(self) -> list[KeyId]:
        """The SEK/PEK ids (never their values)."""
        with self.db.read() as s:
            rows = s.execute(
                select(ServiceKey.key_domain, ServiceKey.key_id).order_by(
                    ServiceKey.key_domain, ServiceKey.key_id
                )
            ).all()
        return [KeyId(domain, key_id) for domain, key_id in rows]

    def add_service(self, service_id: str, name: str = "") -> None:
        _check_text("a globalServiceID", service_id)
        name = name or service_id
        _check_text("a service name", name)
        with self.db.write() as s:
            if s.get(Service, service_id) is not None:
                raise Conflict(f"service {service_id!r} exists")
            s.add(Service(service_id=service_id, name=name, created_ms=self._now_ms()))

    def remove_service(self, service_id: str) -> None:
        """Removes the service from the catalogue and from the items that bundled it."""
        with self.db.write() as s:
            if s.get(Service, service_id) is None:
                raise NotFound(f"no service {service_id!r}")
            s.execute(delete(ItemService).where(ItemService.service_id == service_id))
            s.execute(delete(Service).where(Service.service_id == service_id))

    def services(self) -> list[ServiceInfo]:
        with self.db.read() as s:
            rows = s.scalars(select(Service).order_by(Service.service_id)).all()
            return [ServiceInfo(r.service_id, r.name, r.created_ms) for r in rows]

    def item_infos(self) -> list[ItemInfo]:
        with self.db.read() as s:
            items = s.execute(
                select(PurchaseItem.ref, PurchaseItem.created_ms).order_by(PurchaseItem.ref)
            ).all()
            keys = s.execute(select(ItemKey.ref, ItemKey.key_domain, ItemKey.key_id)).all()
            services = s.execute(
                select(ItemService.ref, ItemService.service_id).order_by(ItemService.service_id)
            ).all()
            counts: dict[str, int] = {
                ref: int(n)
                for ref, n in s.execute(
                    select(Subscription.ref, func.count()).group_by(Subscription.ref)
                ).all()
            }
        by_keys: dict[str, list[KeyId]] = {}
        for ref, domain, key_id in keys:
            by_keys.setdefault(ref, []).append(KeyId(domain, key_id))
        by_services: dict[str, list[str]] = {}
        for ref, service_id in services:
            by_services.setdefault(ref, []).append(service_id)
        return [
            ItemInfo(
                ref,
                tuple(sorted(by_keys.get(ref, ()), key=_order)),
                tuple(by_services.get(ref, ())),
                int(counts.get(ref, 0)),
                created_ms,
            )
            for ref, created_ms in items
        ]

    # -- subscriptions --------------------------------------------------------------------------

    def subscription_list(
        self, *, username: str | None = None, ref: str | None = None, limit: int = 1000
    ) -> list[SubscriptionInfo]:
        query = select(Subscription.username, Subscription.ref, Subscription.created_ms)
        if username is not None:
            query = query.where(Subscription.username == username)
        if ref is not None:
            query = query.where(Subscription.ref == ref)
        query = query.order_by(Subscription.username, Subscription.ref).limit(limit)
        with self.db.read() as s:
            return [SubscriptionInfo(u, r, c) for u, r, c in s.execute(query).all()]

    def subscriber(self, username: str) -> SubscriberInfo | None:
        with self.db.read() as s:
            row = s.get(Subscriber, username)
            if row is None:
                return None
            refs = s.scalars(
                select(Subscription.ref)
                .where(Subscription.username == username)
                .order_by(Subscription.ref)
            ).all()
            return SubscriberInfo(username, row.tokens, row.counter, tuple(refs), row.created_ms)

    def cancel_subscription(self, username: str, ref: str) -> None:
        """An operator ends a subscription (as the terminal's Unsubscribe would)."""
        with self.db.write() as s:
            gone = s.execute(
                delete(Subscription).where(
                    Subscription.username == username, Subscription.ref == ref
                )
            )
            if not getattr(gone, "rowcount", 0):
                raise NotFound(f"{username!r} has no subscription to {ref!r}")

    # -- (R-)UIM subscribers ------------------------------------------------------------------

    def add_rk_subscriber(
        self, nai: str, rk: bytes, rand: bytes, derivation: str = DEFAULT_RK_DERIVATION
    ) -> None:
        """An (R-)UIM / CSIM subscriber: the RK pre-provisioned on its card, and the random
        its TK and Auth-Key are derived with (the derivation is checked now)."""
        if derivation not in RK_DERIVATIONS:
            raise RasError(f"unknown RK derivation {derivation!r}")
        try:
            rk_keys(rk, rand, nai, derivation=derivation)
        except BcastKeyError as exc:
            raise RasError(str(exc)) from None
        with self.db.write() as s:
            if s.get(RkSubscriber, nai) is not None:
                raise Conflict(f"subscriber {nai!r} exists")
            s.add(RkSubscriber(
                nai=nai, rk=self.vault.seal(rk, f"bsm/rk/{nai}"), rand=rand,
                derivation=derivation, created_ms=self._now_ms(),
            ))  # fmt: skip

    def rk_subscribers(self) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(select(RkSubscriber.nai).order_by(RkSubscriber.nai)))

    def rk_user_keys(self, nai: str) -> UserKeys | None:
        """SRK = Auth-Key and SMK = TK of a NAI; None for an unknown NAI. Kept in memory for
        a while (the RK store is only ever added to)."""
        now = time.monotonic()
        cache = self._cache
        with cache.lock:
            hit = cache.users.get(nai)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._rk_user_keys(nai)
        if found is not None:
            with cache.lock:
                if len(cache.users) >= cache.size:
                    cache.users.clear()
                cache.users[nai] = (now + cache.ttl, found)
        return found

    def _rk_user_keys(self, nai: str) -> UserKeys | None:
        with self.db.read() as s:
            row = s.get(RkSubscriber, nai)
            if row is None:
                return None
            sealed, rand, derivation = row.rk, row.rand, row.derivation
        keys = rk_keys(self.vault.unseal(sealed, f"bsm/rk/{nai}"), rand, nai, derivation=derivation)
        return UserKeys(srk=keys.auth_key, smk=keys.tk)

    # -- BsmStore -----------------------------------------------------------------------------

    def item_keys(self, ref: str) -> tuple[KeyId, ...] | None:
        with self.db.read() as s:
            if s.get(PurchaseItem, ref) is None:
                return None
            rows = s.execute(
                select(ItemKey.key_domain, ItemKey.key_id).where(ItemKey.ref == ref)
            ).all()
        return tuple(sorted((KeyId(d, k) for d, k in rows), key=_order))

    def key(self, key: KeyId) -> bytes | None:
        cache = self._cache
        with cache.lock:
            value = cache.keys.get(key)
        if value is not None:
            return value
        with self.db.read() as s:
            row = s.get(ServiceKey, (key.key_domain, key.key_id))
            blob = None if row is None else row.value
        if blob is None:
            return None
        value = self.vault.unseal(blob, _where(key))
        with cache.lock:
            if len(cache.keys) >= cache.size:
                cache.keys.clear()
            cache.keys[key] = value
        return value

    def transact(
        self,
        user: str,
        refs: Collection[str],
        keys: Collection[KeyId],
        decide: Callable[[StoreView], Change],
    ) -> int:
        """One write transaction with the subscriber's row locked: the view, the change
        `decide` makes of it, its tokens and its LTKM counters (see the module docstring).
        The statements are built once (`_Statements`) and run on the session's connection:
        this is the path every service request takes."""
        now = self._now_ms()
        q = _PG if self.db.is_postgresql else _SQLITE
        with self.db.write() as s:
            c = s.connection()
            c.execute(q.create, {"u": user, "now": now})
            counter = int(c.execute(q.lock, {"u": user}).scalar_one())
            have = frozenset(c.execute(q.subscribed, {"u": user}).scalars())
            wanted = {*refs, *have}
            found = set(c.execute(q.items, {"refs": list(wanted)}).scalars())
            item_keys: dict[str, list[KeyId]] = {ref: [] for ref in found}
            if found:
                for ref, domain, key_id in c.execute(q.item_keys, {"refs": list(found)}):
                    item_keys[ref].append(KeyId(domain, key_id))
            known: frozenset[KeyId] = frozenset()
            if keys:
                domains = list({k.key_domain for k in keys})
                rows = c.execute(q.keys, {"domains": domains})
                known = frozenset(KeyId(d, k) for d, k in rows) & frozenset(keys)
            view = StoreView(
                have,
                {
                    ref: tuple(sorted(item_keys[ref], key=_order)) if ref in found else None
                    for ref in wanted
                },
                known,
            )
            change = decide(view)
            if not change:
                return 0
            first = counter + 1
            if first + change.ltkms - 1 > 0xFFFFFFFF:
                raise RasError("the MIKEY counter of this subscriber is exhausted")
            c.execute(q.count, {"u": user, "n": change.ltkms, "t": change.tokens})
            new = [ref for ref in dict.fromkeys(change.add) if ref not in have]
            if new:
                c.execute(q.subscribe, [{"u": user, "r": ref, "now": now} for ref in new])
            gone = [ref for ref in change.remove if ref in have]
            if gone:
                c.execute(q.unsubscribe, {"u": user, "refs": gone})
        return first

    def subscriptions(self, user: str) -> frozenset[str]:
        with self.db.read() as s:
            refs = s.scalars(select(Subscription.ref).where(Subscription.username == user)).all()
        return frozenset(refs)

    def tokens(self, user: str) -> int:
        with self.db.read() as s:
            row = s.get(Subscriber, user)
            return 0 if row is None else row.tokens

    def commit(
        self, user: str, *, add: Iterable[str], remove: Iterable[str], tokens: int, ltkms: int
    ) -> int:
        now = self._now_ms()
        insert = pg_insert if self.db.is_postgresql else sqlite_insert
        with self.db.write() as s:
            # Create the row if missing without racing a concurrent first request, then lock it.
            s.execute(
                insert(Subscriber)
                .values(username=user, tokens=0, counter=0, created_ms=now)
                .on_conflict_do_nothing(index_elements=["username"])
            )
            row = s.scalars(
                select(Subscriber).where(Subscriber.username == user).with_for_update()
            ).one()
            first = row.counter + 1
            if first + ltkms - 1 > 0xFFFFFFFF:
                raise RasError("the MIKEY counter of this subscriber is exhausted")
            row.counter += ltkms
            row.tokens += tokens
            have = set(s.scalars(select(Subscription.ref).where(Subscription.username == user)))
            for ref in dict.fromkeys(add):
                if ref not in have:
                    s.add(Subscription(username=user, ref=ref, created_ms=now))
            gone = [ref for ref in remove if ref in have]
            if gone:
                s.execute(
                    delete(Subscription).where(
                        Subscription.username == user, Subscription.ref.in_(gone)
                    )
                )
        return first
