"""The BSM's SQL store: migrations, the catalogue (keys sealed at rest), subscriptions, tokens
and counters committed in one transaction (a failing commit leaves nothing behind), and the
BSP-M core running on it; the same on PostgreSQL with concurrent commits never sharing a
counter."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bcast_fixtures import make_store
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from openscws.bcast.bsm import BsmCore, Change, StoreView, UserKeys
from openscws.bcast.bspc import BspcError, BspcExchange, HttpRequest, LtkmReceiver
from openscws.bcast.keys import mbms_keys_gba_me, rk_keys
from openscws.bcast.models import RkSubscriber, ServiceKey
from openscws.bcast.sprov import KeyId, MessageKind, Request, Response, StatusCode
from openscws.bcast.store import SqlStore
from openscws.ras.db import Conflict, NotFound, RasError

K1 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010001"))
K2 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))
SEK1, SEK2 = b"\x11" * 16, b"\x22" * 32
USER = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"


def fill(store: SqlStore) -> None:
    store.add_key(K1, SEK1)
    store.add_key(K2, SEK2)
    store.add_item("urn:pi:news", [K1])
    store.add_item("urn:pi:sport", [K2, K1])


def test_migrated_and_catalogue(sql_store: SqlStore) -> None:
    assert sql_store.db.current_revision() == "bsm0003"
    fill(sql_store)
    assert sql_store.items() == {"urn:pi:news": (K1,), "urn:pi:sport": (K1, K2)}
    assert sql_store.item_keys("urn:pi:sport") == (K1, K2)
    assert sql_store.item_keys("urn:pi:none") is None
    assert sql_store.key(K2) == SEK2
    with sql_store.db.read() as s:
        sealed = s.scalars(select(ServiceKey.value)).all()
    assert all(SEK1 not in blob and SEK2 not in blob for blob in sealed)
    with pytest.raises(RasError):
        sql_store.add_key(K1, SEK1)
    with pytest.raises(RasError):
        sql_store.add_item("urn:pi:news", [K1])
    with pytest.raises(RasError):
        sql_store.add_item("urn:pi:bad", [KeyId(b"\0" * 3, b"\0" * 4)])
    assert sql_store.item_keys("urn:pi:bad") is None
    sql_store.commit(USER, add=["urn:pi:news"], remove=[], tokens=0, ltkms=0)
    sql_store.remove_item("urn:pi:news")
    assert sql_store.subscriptions(USER) == frozenset()
    with pytest.raises(RasError):
        sql_store.remove_item("urn:pi:news")


def test_services_items_and_subscriptions(sql_store: SqlStore) -> None:
    fill(sql_store)
    sql_store.add_service("urn:svc:news", "News 24")
    sql_store.add_service("urn:svc:weather")
    with pytest.raises(Conflict):
        sql_store.add_service("urn:svc:news")
    with pytest.raises(RasError):
        sql_store.add_service("")
    with pytest.raises(RasError):
        sql_store.add_service("urn:svc:\n")
    with pytest.raises(NotFound):
        sql_store.add_item("urn:pi:bundle", [K1], ["urn:svc:none"])
    sql_store.add_item("urn:pi:bundle", [K2], ["urn:svc:weather", "urn:svc:news"])
    assert [(s.service_id, s.name) for s in sql_store.services()] == [
        ("urn:svc:news", "News 24"),
        ("urn:svc:weather", "urn:svc:weather"),
    ]
    assert sql_store.keys() == [K1, K2]
    sql_store.commit(USER, add=["urn:pi:bundle", "urn:pi:news"], remove=[], tokens=3, ltkms=2)
    infos = {i.ref: i for i in sql_store.item_infos()}
    assert infos["urn:pi:bundle"].services == ("urn:svc:news", "urn:svc:weather")
    assert infos["urn:pi:bundle"].keys == (K2,)
    assert infos["urn:pi:bundle"].subscribers == 1
    assert infos["urn:pi:sport"].subscribers == 0
    subs = sql_store.subscription_list(username=USER)
    assert [s.ref for s in subs] == ["urn:pi:bundle", "urn:pi:news"]
    assert [s.username for s in sql_store.subscription_list(ref="urn:pi:news")] == [USER]
    info = sql_store.subscriber(USER)
    assert info is not None
    assert (info.tokens, info.ltkms, info.subscriptions) == (3, 2, ("urn:pi:bundle", "urn:pi:news"))
    assert sql_store.subscriber("nobody") is None
    sql_store.cancel_subscription(USER, "urn:pi:news")
    assert sql_store.subscriptions(USER) == frozenset({"urn:pi:bundle"})
    with pytest.raises(NotFound):
        sql_store.cancel_subscription(USER, "urn:pi:news")
    sql_store.remove_service("urn:svc:news")
    infos = {i.ref: i for i in sql_store.item_infos()}
    assert infos["urn:pi:bundle"].services == ("urn:svc:weather",)
    with pytest.raises(NotFound):
        sql_store.remove_service("urn:svc:news")
    sql_store.remove_item("urn:pi:bundle")
    assert sql_store.subscription_list() == []


def test_commit_is_all_or_nothing(sql_store: SqlStore) -> None:
    fill(sql_store)
    assert sql_store.commit(USER, add=["urn:pi:news"], remove=[], tokens=3, ltkms=2) == 1
    assert (
        sql_store.commit(USER, add=["urn:pi:sport"], remove=["urn:pi:news"], tokens=2, ltkms=1) == 3
    )
    assert sql_store.subscriptions(USER) == {"urn:pi:sport"}
    assert sql_store.tokens(USER) == 5
    with pytest.raises(IntegrityError):  # an unknown item fails the whole commit
        sql_store.commit(
            USER, add=["urn:pi:sport", "urn:pi:none"], remove=["urn:pi:sport"], tokens=9, ltkms=4
        )
    assert sql_store.subscriptions(USER) == {"urn:pi:sport"}
    assert sql_store.tokens(USER) == 5
    assert sql_store.commit(USER, add=[], remove=[], tokens=0, ltkms=1) == 4


def test_transact_decides_on_its_own_view(sql_store: SqlStore) -> None:
    fill(sql_store)
    seen: list[StoreView] = []

    def subscribe(view: StoreView) -> Change:
        seen.append(view)
        return Change(add=("urn:pi:news",), tokens=2, ltkms=1)

    assert sql_store.transact(USER, ["urn:pi:news", "urn:pi:none"], [K2], subscribe) == 1
    assert seen[0] == StoreView(
        frozenset(), {"urn:pi:news": (K1,), "urn:pi:none": None}, frozenset({K2})
    )
    unknown = KeyId(b"\x00\x00\x01", b"\x00\x00\x00\x01")
    assert sql_store.transact(USER, [], [K1, unknown], lambda v: seen.append(v) or Change()) == 0
    assert seen[1].subscribed == {"urn:pi:news"}
    assert seen[1].item_keys == {"urn:pi:news": (K1,)}  # the subscribed items' keys
    assert seen[1].known_keys == {K1}
    assert sql_store.tokens(USER) == 2

    def fails(view: StoreView) -> Change:
        raise RuntimeError("decided nothing")

    with pytest.raises(RuntimeError):
        sql_store.transact(USER, ["urn:pi:sport"], [], fails)
    with pytest.raises(IntegrityError):  # an item gone meanwhile fails the whole transaction
        sql_store.transact(USER, [], [], lambda v: Change(add=("urn:pi:gone",), tokens=5, ltkms=3))
    assert sql_store.subscriptions(USER) == {"urn:pi:news"}
    assert sql_store.tokens(USER) == 2
    assert sql_store.transact(USER, [], [], lambda v: Change(remove=("urn:pi:news",), ltkms=1)) == 2
    assert sql_store.subscriptions(USER) == frozenset()


def _service(store: SqlStore) -> tuple[Response, list[bytes]]:
    keys = mbms_keys_gba_me(bytes(range(32)))
    assert keys.muk is not None
    core = BsmCore("bsm.example.org", store, {USER: UserKeys(keys.mrk, keys.muk)}.get)
    exchange = BspcExchange(Request(MessageKind.SERVICE, "r1", ("urn:pi:sport",)), USER, keys.mrk)
    http: HttpRequest | Response = exchange.start()
    pushes: list[bytes] = []
    while isinstance(http, HttpRequest):
        answer = core.handle(http.method, http.path, dict(http.headers), http.body, 1000.0)
        pushes += [p.datagram for p in answer.pushes]
        http = exchange.receive(answer.status, answer.headers, answer.body)
    receiver = LtkmReceiver(keys.muk)
    for datagram in pushes:
        receiver.datagram(datagram, 1000.0)
    assert receiver.keys == {K1: SEK1, K2: SEK2}
    return http, pushes


def test_core_on_the_sql_store(sql_store: SqlStore) -> None:
    fill(sql_store)
    response, pushes = _service(sql_store)
    assert response.status is StatusCode.SUCCESS
    assert len(pushes) == 2
    assert sql_store.subscriptions(USER) == {"urn:pi:sport"}


@pytest.fixture
def pg_store(postgres: Any, tmp_path: Path) -> Iterator[SqlStore]:
    name = postgres.create_database()
    store = make_store(tmp_path / "bsm", url=postgres.url(name))
    yield store
    store.db.dispose()
    postgres.drop_database(name)


@pytest.mark.peer
def test_postgresql_counters_never_shared(pg_store: SqlStore) -> None:
    assert pg_store.db.is_postgresql
    fill(pg_store)
    firsts: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            first = pg_store.commit(USER, add=["urn:pi:news"], remove=[], tokens=1, ltkms=2)
            with lock:
                firsts.append(first)

    def transactor() -> None:
        for _ in range(10):
            first = pg_store.transact(
                USER, ["urn:pi:sport"], [], lambda v: Change(add=("urn:pi:sport",), ltkms=2)
            )
            with lock:
                firsts.append(first)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    threads += [threading.Thread(target=transactor) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(firsts) == list(range(1, 161, 2))
    assert pg_store.tokens(USER) == 40
    response, _ = _service(pg_store)
    assert response.status is StatusCode.SUCCESS


NAI = "user@ruim.example.org"
RK = bytes(range(100, 116))
RK_RAND = bytes(range(8))


def test_ruim_subscriber_end_to_end(sql_store: SqlStore) -> None:
    """The (R-)UIM path: the NAI is the username, the Auth-Key (from the RK) the digest
    password, the TK the LTKMs' key."""
    fill(sql_store)
    sql_store.add_rk_subscriber(NAI, RK, RK_RAND)
    assert sql_store.rk_subscribers() == [NAI]
    with sql_store.db.read() as s:
        assert all(RK not in row for row in s.scalars(select(RkSubscriber.rk)))
    with pytest.raises(RasError):
        sql_store.add_rk_subscriber(NAI, RK, RK_RAND)
    with pytest.raises(RasError):
        sql_store.add_rk_subscriber("other@x", b"short", RK_RAND)
    with pytest.raises(RasError):
        sql_store.add_rk_subscriber("other@x", RK, RK_RAND, "no-such")
    expected = rk_keys(RK, RK_RAND, NAI)
    assert sql_store.rk_user_keys(NAI) == UserKeys(srk=expected.auth_key, smk=expected.tk)
    assert sql_store.rk_user_keys("unknown@x") is None

    core = BsmCore("bsm.example.org", sql_store, sql_store.rk_user_keys)
    exchange = BspcExchange(
        Request(MessageKind.SERVICE, "r", ("urn:pi:news",)), NAI, expected.auth_key
    )
    http: HttpRequest | Response = exchange.start()
    pushes: list[bytes] = []
    while isinstance(http, HttpRequest):
        answer = core.handle(http.method, http.path, dict(http.headers), http.body, 1000.0)
        pushes += [p.datagram for p in answer.pushes]
        http = exchange.receive(answer.status, answer.headers, answer.body)
    assert http.status is StatusCode.SUCCESS
    receiver = LtkmReceiver(expected.tk)
    receiver.datagram(pushes[0], 0.0)
    assert receiver.keys == {K1: SEK1}
    # The same NAI with the wrong Auth-Key: 401, the exchange fails.
    wrong = BspcExchange(Request(MessageKind.SERVICE, "r", ("urn:pi:news",)), NAI, expected.tk)
    first = wrong.start()
    answer = core.handle(first.method, first.path, dict(first.headers), first.body, 1000.0)
    retry = wrong.receive(answer.status, answer.headers, answer.body)
    assert isinstance(retry, HttpRequest)
    answer = core.handle(retry.method, retry.path, dict(retry.headers), retry.body, 1000.0)
    assert answer.status == 401
    with pytest.raises(BspcError):
        wrong.receive(answer.status, answer.headers, answer.body)
