"""The BSM's management API and console: every route refuses a request without credentials
(401) and a role too low (403), with the admin server's tokens and sessions; each route does
what it says on the store; SEK/PEK values never appear in an answer; the console page lists
the catalogue and subscriptions behind the login, with a CSP that runs no script."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from openscws.bcast.api import API_PREFIX, create_bsm_api
from openscws.bcast.sprov import KeyId
from openscws.bcast.store import SqlStore
from openscws.ras.accounts import Accounts, LoginThrottle
from openscws.ras.api_auth import CSRF_HEADER, SESSION_COOKIE
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.models import Role

BASE = "http://localhost"
PASSWORD = "a long enough password"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
K1 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010001"))
SEK = b"\x5a" * 16
USER = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"

# (method, path, role needed, request keyword arguments)
ROUTES: list[tuple[str, str, Role, dict[str, Any]]] = [
    ("GET", "/services", Role.VIEWER, {}),
    ("POST", "/services", Role.OPERATOR, {"json": {"service_id": "urn:svc:new"}}),
    ("DELETE", "/services/urn:svc:news", Role.OPERATOR, {}),
    ("GET", "/keys", Role.VIEWER, {}),
    ("POST", "/keys", Role.ADMIN, {"json": {"key": "00f110/00010009"}}),
    ("GET", "/items", Role.VIEWER, {}),
    ("POST", "/items", Role.OPERATOR, {"json": {"ref": "urn:pi:new", "keys": ["00f110/00010001"]}}),
    ("DELETE", "/items/urn:pi:news", Role.OPERATOR, {}),
    ("GET", "/subscriptions", Role.VIEWER, {}),
    ("DELETE", "/subscriptions", Role.OPERATOR, {"params": {"user": USER, "item": "urn:pi:news"}}),
    ("GET", "/subscriber", Role.VIEWER, {"params": {"user": USER}}),
    ("GET", "/openapi.json", Role.VIEWER, {}),
]


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    directory = tmp_path / "ras"
    directory.mkdir()
    db = RasDatabase(default_url(directory))
    db.upgrade()
    found = Accounts(db, hasher=FAST)
    for role in Role:
        found.add_user(f"the-{role}", PASSWORD, role)
    yield found
    db.dispose()


@pytest.fixture
def filled(sql_store: SqlStore) -> SqlStore:
    sql_store.add_key(K1, SEK)
    sql_store.add_service("urn:svc:news", "News")
    sql_store.add_item("urn:pi:news", [K1], ["urn:svc:news"])
    sql_store.commit(USER, add=["urn:pi:news"], remove=[], tokens=4, ltkms=1)
    return sql_store


def token(accounts: Accounts, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {accounts.create_token(f'the-{role}', 't', role)[1]}"}


def client(store: SqlStore, accounts: Accounts, **kw: Any) -> TestClient:
    return TestClient(create_bsm_api(store, accounts, **kw), base_url=BASE)


@pytest.mark.parametrize(("method", "path", "role", "kw"), ROUTES)
def test_every_route_checks_credentials_and_role(
    filled: SqlStore,
    accounts: Accounts,
    method: str,
    path: str,
    role: Role,
    kw: dict[str, Any],
) -> None:
    c = client(filled, accounts)
    answer = c.request(method, API_PREFIX + path, **kw)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    bad = {"Authorization": "Bearer oscws_000000000000_" + "A" * 43}
    assert c.request(method, API_PREFIX + path, headers=bad, **kw).status_code == 401
    for other in Role:
        status = c.request(method, API_PREFIX + path, headers=token(accounts, other), **kw)
        if other.allows(role):
            assert status.status_code < 300, (other, status.text)
            break  # the first allowed role changed the state; higher roles are allowed too
        assert status.status_code == 403, (other, status.text)
    assert "content-security-policy" in answer.headers


def test_catalogue_and_subscriptions_through_the_api(filled: SqlStore, accounts: Accounts) -> None:
    c = client(filled, accounts)
    op, admin = token(accounts, Role.OPERATOR), token(accounts, Role.ADMIN)
    assert c.get(f"{API_PREFIX}/services", headers=op).json()[0]["name"] == "News"
    new = c.post(f"{API_PREFIX}/services", headers=op, json={"service_id": "urn:svc:w"})
    assert new.status_code == 201
    assert new.json()["name"] == "urn:svc:w"
    again = c.post(f"{API_PREFIX}/services", headers=op, json={"service_id": "urn:svc:w"})
    assert again.status_code == 409
    assert again.json()["detail"] == "service 'urn:svc:w' exists"
    key = c.post(f"{API_PREFIX}/keys", headers=admin, json={"key": "00f110/00010002", "size": 32})
    assert key.status_code == 201
    assert key.json() == "00f110/00010002"
    value = filled.key(KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002")))
    assert value is not None
    assert value.hex() not in key.text
    bad_key = c.post(f"{API_PREFIX}/keys", headers=admin, json={"key": "zz", "size": 16})
    assert bad_key.status_code == 400
    bad_size = c.post(
        f"{API_PREFIX}/keys", headers=admin, json={"key": "00f110/0001000a", "size": 8}
    )
    assert bad_size.status_code == 400
    body = {"ref": "urn:pi:w", "keys": ["00f110/00010002"], "services": ["urn:svc:w"]}
    item = c.post(f"{API_PREFIX}/items", headers=op, json=body)
    assert item.status_code == 201
    assert item.json()["services"] == ["urn:svc:w"]
    assert item.json()["subscribers"] == 0
    missing = {"ref": "urn:pi:x", "services": ["urn:svc:none"]}
    assert c.post(f"{API_PREFIX}/items", headers=op, json=missing).status_code == 404
    assert c.post(f"{API_PREFIX}/items", headers=op, json={"ref": ""}).status_code == 422
    items = {i["ref"]: i for i in c.get(f"{API_PREFIX}/items", headers=op).json()}
    assert items["urn:pi:news"]["subscribers"] == 1
    assert items["urn:pi:news"]["keys"] == ["00f110/00010001"]
    subs = c.get(f"{API_PREFIX}/subscriptions", headers=op, params={"item": "urn:pi:news"})
    assert [(s["user"], s["item"]) for s in subs.json()] == [(USER, "urn:pi:news")]
    who = c.get(f"{API_PREFIX}/subscriber", headers=op, params={"user": USER}).json()
    assert (who["tokens"], who["ltkms"], who["subscriptions"]) == (4, 1, ["urn:pi:news"])
    nobody = c.get(f"{API_PREFIX}/subscriber", headers=op, params={"user": "x"})
    assert nobody.status_code == 404
    end = {"user": USER, "item": "urn:pi:news"}
    assert c.delete(f"{API_PREFIX}/subscriptions", headers=op, params=end).status_code == 204
    assert c.delete(f"{API_PREFIX}/subscriptions", headers=op, params=end).status_code == 404
    assert filled.subscriptions(USER) == frozenset()
    assert c.delete(f"{API_PREFIX}/services/urn:svc:w", headers=op).status_code == 204
    assert c.delete(f"{API_PREFIX}/services/urn:svc:w", headers=op).status_code == 404
    assert c.delete(f"{API_PREFIX}/items/urn:pi:w", headers=op).status_code == 204
    assert c.delete(f"{API_PREFIX}/items/urn:pi:w", headers=op).status_code == 404
    for leaked in (SEK.hex(), value.hex()):
        for path in ("/keys", "/items", "/services", "/subscriptions"):
            assert leaked not in c.get(API_PREFIX + path, headers=op).text
    actions = [a.action for a in accounts.audit_log()]
    assert "bsm.keys.add" in actions
    assert "bsm.subscriptions.end" in actions


def test_sessions_need_csrf_and_same_origin(filled: SqlStore, accounts: Accounts) -> None:
    c = client(filled, accounts)
    form = {"name": "the-operator", "password": PASSWORD}
    cross = c.post("/login", data=form, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    login = c.post("/login", data=form, follow_redirects=False)
    assert login.status_code == 303
    assert SESSION_COOKIE in login.cookies
    body = {"service_id": "urn:svc:s"}
    assert c.post(f"{API_PREFIX}/services", json=body).status_code == 403
    principal = accounts.session(login.cookies[SESSION_COOKIE])
    assert principal is not None
    csrf = {CSRF_HEADER: principal.csrf_token or ""}
    assert c.post(f"{API_PREFIX}/services", json=body, headers=csrf).status_code == 201
    evil = {**csrf, "Origin": "http://evil.example"}
    body2 = {"service_id": "urn:svc:t"}
    assert c.post(f"{API_PREFIX}/services", json=body2, headers=evil).status_code == 403
    assert c.get(f"{API_PREFIX}/services").status_code == 200


def test_console_page_behind_the_login(filled: SqlStore, accounts: Accounts) -> None:
    filled.add_service("urn:svc:<script>", "<b>x</b>")
    c = client(filled, accounts, throttle=LoginThrottle(per_account=2))
    first = c.get("/", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/login"
    page = c.get("/login")
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    wrong = {"name": "the-viewer", "password": "wrong password here"}
    assert c.post("/login", data=wrong).status_code == 401
    assert c.post("/login", data=wrong).status_code == 401
    assert c.post("/login", data=wrong).status_code == 429
    assert (
        c.post("/login", content=b"{}", headers={"Content-Type": "application/json"}).status_code
        == 415
    )
    ok = c.post("/login", data={"name": "the-operator", "password": PASSWORD})
    assert ok.status_code == 200
    text = ok.text
    assert "<h2>Services</h2>" in text
    assert "urn:pi:news" in text
    assert USER in text
    assert "<script>" not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text
    assert SEK.hex() not in text
    out = c.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    assert c.get("/", follow_redirects=False).status_code == 303


def test_only_configured_host_names(filled: SqlStore, accounts: Accounts) -> None:
    c = client(filled, accounts, hosts=["localhost"])
    head = token(accounts, Role.VIEWER)
    assert c.get(f"{API_PREFIX}/items", headers=head).status_code == 200
    rebound = {**head, "Host": "attacker.example"}
    assert c.get(f"{API_PREFIX}/items", headers=rebound).status_code == 421
