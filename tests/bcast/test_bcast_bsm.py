"""The BSM's BSP-M and the terminal's BSP-C, sans-IO, against each other: each of the five
messages succeeds (401, then 200 with the response) and gets each of its error statuses; the
LTKMs pushed after a success open in the terminal's receiver (GBA_ME), which acknowledges them
and asks for missing keys after its timeout; HTTP-level refusals (405, 415, 400, 404, 401)."""

from __future__ import annotations

import itertools

import pytest

from openscws.bcast.auth import client_credentials
from openscws.bcast.bsm import BsmAnswer, BsmCore, MemoryStore, UserKeys
from openscws.bcast.bspc import (
    PATHS,
    TABLE,
    BspcError,
    BspcExchange,
    BspcState,
    HttpRequest,
    LtkmReceiver,
)
from openscws.bcast.keys import mbms_keys_gba_me, srk_password
from openscws.bcast.ltkm import check_verification
from openscws.bcast.mikey import MikeyAuthError
from openscws.bcast.sprov import MEDIA_TYPE, KeyId, MessageKind, Request, Response, StatusCode
from openscws.gba.digest import Challenge

KS_NAF = bytes(range(32))
KEYS = mbms_keys_gba_me(KS_NAF)
BTID = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"
NAI = "user@ruim.example.org"
K1 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010001"))
K2 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))
K9 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00090009"))
NOW = 1000.0


def setup() -> tuple[BsmCore, MemoryStore]:
    store = MemoryStore(
        items={"urn:pi:news": (K1,), "urn:pi:sport": (K1, K2), "urn:pi:tokens": (K2,)},
        keys={K1: b"\x11" * 16, K2: b"\x22" * 16, K9: b"\x99" * 16},
    )
    assert KEYS.muk is not None
    users = {BTID: UserKeys(KEYS.mrk, KEYS.muk)}
    return BsmCore("bsm.example.org", store, users.get), store


def run(
    core: BsmCore, request: Request, srk: bytes = KEYS.mrk, user: str = BTID
) -> tuple[Response, BsmAnswer]:
    counter = itertools.count()
    exchange = BspcExchange(request, user, srk, random=lambda n: next(counter).to_bytes(n))
    http: HttpRequest | Response = exchange.start()
    answer = BsmAnswer(0)
    for _ in range(3):
        assert isinstance(http, HttpRequest)
        answer = core.handle(http.method, http.path, dict(http.headers), http.body, NOW)
        http = exchange.receive(answer.status, answer.headers, answer.body)
        if isinstance(http, Response):
            assert exchange.state is BspcState.DONE
            return http, answer
    raise AssertionError("no response")


def test_service_request_subscribes_and_pushes_ltkms_the_terminal_opens() -> None:
    core, store = setup()
    response, answer = run(core, Request(MessageKind.SERVICE, "r1", ("urn:pi:sport",)))
    assert response.status is StatusCode.SUCCESS
    assert [i.status for i in response.items] == [StatusCode.SUCCESS]
    assert store.subscriptions(BTID) == {"urn:pi:sport"}
    assert KEYS.muk is not None
    receiver = LtkmReceiver(KEYS.muk)
    receiver.expect([K1, K2], NOW)
    for push in answer.pushes:
        _ltkm, ack = receiver.datagram(push.datagram, NOW)
        assert ack is not None
        check_verification(ack, push.ltkm, KEYS.muk)
    assert receiver.keys == {K1: b"\x11" * 16, K2: b"\x22" * 16}
    assert receiver.missing(NOW + 100) == ()
    # Replaying a pushed LTKM is refused; the counters keep rising across requests.
    with pytest.raises(Exception, match="counter"):
        receiver.datagram(answer.pushes[0].datagram, NOW)
    _, again = run(core, Request(MessageKind.RENEWAL, "r2", ("urn:pi:sport",)))
    assert [p.ltkm.counter for p in again.pushes] == [3, 4]
    for push in again.pushes:
        receiver.datagram(push.datagram, NOW)


def test_service_request_unknown_item() -> None:
    core, store = setup()
    response, answer = run(core, Request(MessageKind.SERVICE, "r1", ("urn:pi:news", "urn:pi:none")))
    assert response.status is StatusCode.PURCHASE_ITEM_UNKNOWN
    assert [i.status for i in response.items] == [
        StatusCode.SUCCESS,
        StatusCode.PURCHASE_ITEM_UNKNOWN,
    ]
    assert store.subscriptions(BTID) == {"urn:pi:news"}
    assert [p.ltkm.key_id for p in answer.pushes] == [K1.key_id]


def test_renewal_and_unsubscribe_need_a_subscription() -> None:
    core, store = setup()
    for kind in (MessageKind.RENEWAL, MessageKind.UNSUBSCRIBE):
        response, answer = run(core, Request(kind, "r", ("urn:pi:news",)))
        assert response.status is StatusCode.NO_SUBSCRIPTION
        assert answer.pushes == ()
        response, _ = run(core, Request(kind, "r", ("urn:pi:none",)))
        assert response.status is StatusCode.PURCHASE_ITEM_UNKNOWN
    run(core, Request(MessageKind.SERVICE, "r", ("urn:pi:news",)))
    response, answer = run(core, Request(MessageKind.UNSUBSCRIBE, "r", ("urn:pi:news",)))
    assert response.status is StatusCode.SUCCESS
    assert answer.pushes == ()
    assert store.subscriptions(BTID) == frozenset()


def test_token_purchase() -> None:
    core, store = setup()
    response, answer = run(
        core, Request(MessageKind.TOKEN_PURCHASE, "t", ("urn:pi:tokens",), tokens=5)
    )
    assert response.status is StatusCode.SUCCESS
    assert response.tokens == 5
    assert store.tokens[BTID] == 5
    assert len(answer.pushes) == 1
    response, _ = run(core, Request(MessageKind.TOKEN_PURCHASE, "t", ("urn:pi:none",), tokens=5))
    assert response.status is StatusCode.PURCHASE_ITEM_UNKNOWN


def test_ltkm_request() -> None:
    core, _ = setup()
    run(core, Request(MessageKind.SERVICE, "r", ("urn:pi:news",)))
    response, answer = run(
        core, Request(MessageKind.LTKM, "l", keys=(K1, K2, KeyId(b"\0" * 3, b"\0" * 4)))
    )
    assert [i.status for i in response.items] == [
        StatusCode.SUCCESS,
        StatusCode.NO_SUBSCRIPTION,
        StatusCode.INVALID_REQUEST,
    ]
    assert response.status is StatusCode.NO_SUBSCRIPTION
    assert [p.ltkm.key_id for p in answer.pushes] == [K1.key_id]


def test_receiver_reports_missing_keys_and_refuses_foreign_ltkm() -> None:
    core, _ = setup()
    _, answer = run(core, Request(MessageKind.SERVICE, "r", ("urn:pi:news",)))
    receiver = LtkmReceiver(bytes(32), timeout=30)
    receiver.expect([K1], NOW)
    with pytest.raises(MikeyAuthError):
        receiver.datagram(answer.pushes[0].datagram, NOW)
    assert receiver.missing(NOW + 10) == ()
    assert receiver.missing(NOW + 30) == (K1,)


def test_wrong_srk_and_unknown_user_fail_with_401() -> None:
    core, store = setup()
    for srk, user in ((b"\x00" * 32, BTID), (KEYS.mrk, NAI)):
        with pytest.raises(BspcError) as err:
            run(core, Request(MessageKind.SERVICE, "r", ("urn:pi:news",)), srk=srk, user=user)
        assert err.value.status == 401
    assert store.subs == {}


def test_http_refusals() -> None:
    core, _ = setup()
    body = Request(MessageKind.SERVICE, "r", ("urn:pi:news",)).to_xml()
    ok = {"Content-Type": MEDIA_TYPE}
    assert core.handle("GET", "/bcast/service", ok, b"", NOW).status == 405
    assert core.handle("POST", "/nowhere", ok, body, NOW).status == 404
    assert (
        core.handle("POST", "/bcast/service", {"Content-Type": "text/xml"}, body, NOW).status == 415
    )
    first = core.handle("POST", "/bcast/service", ok, body, NOW)
    assert first.status == 401
    assert dict(first.headers)["WWW-Authenticate"].startswith("Digest ")
    # Authenticated, but on the wrong endpoint or not XML: 400.
    for path, payload in ((PATHS[MessageKind.LTKM], body), (PATHS[MessageKind.SERVICE], b"<x")):
        challenge = Challenge.parse(
            dict(core.handle("POST", path, ok, payload, NOW).headers)["WWW-Authenticate"]
        )
        creds = client_credentials(
            challenge, username=BTID, password=srk_password(KEYS.mrk), method="POST", uri=path,
            body=payload,
        )  # fmt: skip
        answer = core.handle("POST", path, ok | {"Authorization": creds.format()}, payload, NOW)
        assert answer.status == 400


def test_exchange_table_refuses_what_it_does_not_list() -> None:
    exchange = BspcExchange(Request(MessageKind.SERVICE, "r", ("a",)), BTID, KEYS.mrk)
    with pytest.raises(BspcError):
        exchange.receive(200, (), b"")  # nothing sent yet
    assert exchange.state is BspcState.FAILED
    assert (BspcState.AUTHENTICATING, "401") not in TABLE
    exchange = BspcExchange(Request(MessageKind.SERVICE, "r", ("a",)), BTID, KEYS.mrk)
    exchange.start()
    with pytest.raises(BspcError) as err:
        exchange.receive(500, (), b"")
    assert err.value.status == 500
