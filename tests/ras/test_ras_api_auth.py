"""Who may call the REST API: the role table read from the OpenAPI document and tried on
every operation (no credentials, each role, a revoked and an expired token, a session without
its CSRF token), Host checks against DNS rebinding, body caps before anything is read,
stored content served as a sandboxed download, and key material kept out of every answer,
log line and audit entry."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import resource
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from ras_contract import FAST_HASHER, POLICY, add_card, iccid, keys_of
from sqlalchemy import text
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from openscws.cli import main
from openscws.ras.accounts import LoginThrottle
from openscws.ras.api import create_app
from openscws.ras.api_auth import CSRF_HEADER, ROLE_KEY, SESSION_COOKIE, SESSION_ONLY_KEY
from openscws.ras.api_server import serve_api, stop_api
from openscws.ras.db import RasDatabase
from openscws.ras.models import Role
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

V1 = "/api/v1"
PASSWORD = "a long enough password"
BASE = "http://localhost"


@pytest.fixture
def ras(sqlite_db: RasDatabase, vault: Vault) -> RasService:
    service = RasService(sqlite_db, vault, POLICY, password_hasher=FAST_HASHER)
    for role in Role:
        service.accounts.add_user(f"the-{role}", PASSWORD, role)
    return service


def token_of(ras: RasService, role: Role) -> str:
    return ras.accounts.create_token(f"the-{role}", "tests", role)[1]


@pytest.fixture
def anonymous(ras: RasService) -> Iterator[TestClient]:
    with TestClient(create_app(ras), base_url=BASE) as client:
        yield client


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path template, role) of every operation in the OpenAPI document; the role
    is "session" for operations a console session may call and an API token may not."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, "session" if op.get(SESSION_ONLY_KEY) else op[ROLE_KEY]


def concrete(path: str) -> str:
    values = {
        "iccid": iccid(1),
        "path": "index.html",
        "version": "1",
        "campaign_id": "1",
        "token_id": "000000000000",
    }
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)


BODIES: dict[tuple[str, str], Any] = {
    ("POST", f"{V1}/cards"): {"iccid": iccid(9)},
    ("POST", f"{V1}/campaigns"): {"name": "matrix"},
    ("POST", f"{V1}/tokens"): {"name": "matrix", "role": "viewer"},
    ("POST", f"{V1}/auth/login"): {"name": "nobody", "password": "x"},
}


def call(client: TestClient, method: str, path: str, **kw: Any) -> int:
    body = BODIES.get((method, path))
    if method == "PUT":
        kw["content"] = b"<p>x</p>"
        kw.setdefault("headers", {})["Content-Type"] = "text/html"
    elif body is not None:
        kw["json"] = body
    return client.request(method, concrete(path), **kw).status_code


def test_every_operation_declares_a_role_and_the_security_schemes(
    ras: RasService, anonymous: TestClient
) -> None:
    admin = {"Authorization": f"Bearer {token_of(ras, Role.ADMIN)}"}
    doc = anonymous.get(f"{V1}/openapi.json", headers=admin).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiToken"]["description"],
    }
    assert schemes["consoleSession"]["in"] == "cookie"
    assert schemes["consoleSession"]["name"] == SESSION_COOKIE
    table = {(m, p): r for m, p, r in operations(doc)}
    assert [k for k, r in table.items() if r == "session"] == [("POST", f"{V1}/tokens")]
    assert len(table) >= 20
    for (method, path), role in table.items():
        op = doc["paths"][path][method.lower()]
        role = op[ROLE_KEY]
        if role == "none":
            assert (method, path) == ("POST", f"{V1}/auth/login")
            assert op["security"] == []
            continue
        assert role in {r.value for r in Role}, (method, path)
        assert {"apiToken": []} in op["security"], (method, path)
        assert {"consoleSession": []} in op["security"], (method, path)
    # A few rows of the table, as the product promises them.
    assert table[("GET", f"{V1}/cards")] == "viewer"
    assert table[("POST", f"{V1}/cards")] == "admin"
    assert table[("DELETE", f"{V1}/cards/{{iccid}}")] == "admin"
    assert table[("PUT", f"{V1}/content/{{path}}")] == "operator"
    assert table[("POST", f"{V1}/campaigns/{{campaign_id}}/cancel")] == "operator"
    assert table[("GET", f"{V1}/audit")] == "admin"


def test_every_operation_checks_credentials_and_role(
    ras: RasService, anonymous: TestClient
) -> None:
    """Generated from the OpenAPI document: each operation without credentials (401), with
    a token of each role (allowed, or 403 below the declared role), with a revoked and with
    an expired token (401)."""
    add_card(ras, 1)
    ras.put_content("/index.html", b"<p>1</p>", "text/html")
    ras.create_campaign("one")
    tokens = {role: token_of(ras, role) for role in Role}
    revoked = token_of(ras, Role.ADMIN)
    assert ras.accounts.revoke_token(revoked.split("_")[1])
    expired = token_of(ras, Role.ADMIN)
    with ras.accounts._db.write() as s:
        s.execute(
            text("UPDATE api_tokens SET expires_at = '2001-01-01 00:00:00' WHERE token_id = :t"),
            {"t": expired.split("_")[1]},
        )
    doc = anonymous.get(
        f"{V1}/openapi.json", headers={"Authorization": f"Bearer {tokens[Role.ADMIN]}"}
    ).json()
    assert anonymous.get(f"{V1}/openapi.json").status_code == 401
    seen = 0
    for method, path, needed in operations(doc):
        if needed == "none":
            assert call(anonymous, method, path) == 401  # the login itself: a wrong password
            continue
        seen += 1
        where = f"{method} {path}"
        assert call(anonymous, method, path) == 401, where
        for bad in (revoked, expired, "oscws_000000000000_" + "A" * 43, "not-a-token"):
            headers = {"Authorization": f"Bearer {bad}"}
            assert call(anonymous, method, path, headers=headers) == 401, where
        for role, token in tokens.items():
            status = call(anonymous, method, path, headers={"Authorization": f"Bearer {token}"})
            if needed == "session":
                assert status == 403, (where, role, status)  # a token never makes a token
            elif role.allows(Role(needed)):
                assert status not in (401, 403), (where, role, status)
            else:
                assert status == 403, (where, role, status)
    assert seen >= 19
    # What a token may not do, a session of the same role may.
    r = anonymous.post(f"{V1}/auth/login", json={"name": "the-viewer", "password": PASSWORD})
    csrf = {CSRF_HEADER: r.json()["csrf_token"]}
    made = anonymous.post(f"{V1}/tokens", json={"name": "from-session"}, headers=csrf)
    assert made.status_code == 201
    assert made.json()["role"] == "viewer"
    refused = anonymous.post(f"{V1}/tokens", json={"name": "up", "role": "operator"}, headers=csrf)
    assert refused.status_code == 400  # above the session's role
    anonymous.cookies.clear()
    # Each refusal of a state change is in the audit trail, with who and why.
    refused = [e for e in ras.accounts.audit_log(1000) if e.result == "403 forbidden"]
    assert {e.action for e in refused} >= {"card.create", "card.delete", "campaign.cancel"}
    assert any(e.actor.startswith("the-viewer/") for e in refused)
    assert any("needs the admin role" in e.detail for e in refused)


def test_sessions_need_the_csrf_token_and_the_same_origin(
    ras: RasService, anonymous: TestClient
) -> None:
    ras.put_content("/index.html", b"<p>1</p>", "text/html")
    add_card(ras, 1)
    campaign = ras.create_campaign("keep")
    r = anonymous.post(f"{V1}/auth/login", json={"name": "the-operator", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS the cookie is Secure
    csrf = r.json()["csrf_token"]
    cancel = f"{V1}/campaigns/{campaign.id}/cancel"
    # The cookie alone reads, but changes nothing.
    assert anonymous.get(f"{V1}/campaigns").status_code == 200
    assert anonymous.post(cancel).status_code == 403
    assert anonymous.post(cancel, headers={CSRF_HEADER: "wrong"}).status_code == 403
    # A simple form post from elsewhere, even with the token, and a null origin.
    form = {"Content-Type": "application/x-www-form-urlencoded", CSRF_HEADER: csrf}
    for origin in ("http://evil.example", "null", "http://localhost:1"):
        r = anonymous.post(cancel, content=b"", headers={**form, "Origin": origin})
        assert r.status_code == 403, origin
    assert ras.campaign(campaign.id).state == "active"
    ok = anonymous.post(cancel, headers={CSRF_HEADER: csrf, "Origin": BASE})
    assert ok.status_code == 200
    # An API token is not a browser's: no CSRF token, but a foreign Origin is still refused.
    token = {"Authorization": f"Bearer {token_of(ras, Role.OPERATOR)}"}
    anonymous.cookies.clear()
    assert (
        anonymous.post(cancel, headers={**token, "Origin": "http://evil.example"}).status_code
        == 403
    )
    assert anonymous.post(cancel, headers=token).status_code == 200
    # Under TLS the cookie is Secure too.
    tls = TestClient(create_app(ras), base_url="https://localhost")
    r = tls.post(f"{V1}/auth/login", json={"name": "the-viewer", "password": PASSWORD})
    assert r.status_code == 200
    assert "; Secure" in r.headers["set-cookie"]
    # Logging out ends the session.
    r = anonymous.post(f"{V1}/auth/login", json={"name": "the-viewer", "password": PASSWORD})
    csrf = r.json()["csrf_token"]
    assert anonymous.get(f"{V1}/auth/me").json()["user"] == "the-viewer"
    assert anonymous.post(f"{V1}/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    assert anonymous.get(f"{V1}/auth/me").status_code == 401


def test_failed_logins_lock_the_account_and_the_address(
    ras: RasService, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = LoginThrottle(per_account=3, per_address=5, window=300)
    client = TestClient(create_app(ras, throttle=throttle), base_url=BASE)

    def login(name: str, password: str) -> int:
        r = client.post(f"{V1}/auth/login", json={"name": name, "password": password})
        return r.status_code

    assert [login("the-admin", "wrong") for _ in range(3)] == [401, 401, 401]
    r = client.post(f"{V1}/auth/login", json={"name": "the-admin", "password": PASSWORD})
    assert r.status_code == 429  # even the right password, while locked
    assert int(r.headers["retry-after"]) > 0
    assert "locked out" in caplog.text
    assert login("the-viewer", PASSWORD) == 200  # another account is not locked
    assert [login("the-operator", "wrong") for _ in range(2)] == [401, 401]
    assert login("the-operator", PASSWORD) == 429  # the address is locked now (5 failures)
    logins = [e for e in ras.accounts.audit_log(100) if e.action == "auth.login"]
    assert [e.result for e in reversed(logins)] == [
        "401 unauthorized",
        "401 unauthorized",
        "401 unauthorized",
        "429 too many requests",
        "ok",
        "401 unauthorized",
        "401 unauthorized",
        "429 too many requests",
    ]
    assert logins[-1].actor == "-(the-admin)"
    assert "lockout begins" in logins[-3].detail


def test_only_configured_host_names(ras: RasService) -> None:
    token = {"Authorization": f"Bearer {token_of(ras, Role.VIEWER)}"}
    client = TestClient(create_app(ras, hosts=["localhost", "ras.example"]), base_url=BASE)
    assert client.get(f"{V1}/cards", headers=token).status_code == 200
    for host in ("rebind.example", "rebind.example:8116", "localhost.evil", ""):
        r = client.get(f"{V1}/cards", headers={**token, "Host": host})
        assert r.status_code == 421, host
        assert r.headers["content-type"] == "application/problem+json"
    for host in ("ras.example:443", "LOCALHOST:8116"):
        assert client.get(f"{V1}/cards", headers={**token, "Host": host}).status_code == 200


def test_stored_content_is_a_sandboxed_download(ras: RasService) -> None:
    token = {"Authorization": f"Bearer {token_of(ras, Role.OPERATOR)}"}
    client = TestClient(create_app(ras), base_url=BASE, headers=token)
    page = b"<script>fetch('/api/v1/campaigns', {method: 'POST'})</script>"
    assert (
        client.put(
            f"{V1}/content/evil-page.html", content=page, headers={"Content-Type": "text/html"}
        ).status_code
        == 201
    )
    r = client.get(f"{V1}/content/evil-page.html/versions/1")
    assert r.content == page
    assert r.headers["content-disposition"] == 'attachment; filename="v1-evil-page.html"'
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    # Every answer has a policy, errors and JSON included.
    for path in (f"{V1}/cards", f"{V1}/nowhere", "/login.html", "/console.js"):
        assert "content-security-policy" in client.get(path).headers, path


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _send_big(port: int, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Sends a request, its body as far as the server takes it, and returns the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: the rest is not read
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except OSError:
            pass
        return answer


def test_big_bodies_get_413_before_they_are_read(ras: RasService) -> None:
    """A 50 MB JSON body, declared or streamed chunked, gets 413 from the real server and the
    process does not grow by anything like its size."""
    token = token_of(ras, Role.OPERATOR)
    size = 50 * 1024 * 1024
    piece = b"[" + b"1," * (1024 * 1024 // 2 - 1) + b"1]"  # 1 MiB of JSON list

    def pieces() -> Iterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    def chunked() -> Iterator[bytes]:
        for p in pieces():
            yield f"{len(p):x}\r\n".encode() + p + b"\r\n"
        yield b"0\r\n\r\n"

    answers: list[bytes] = []

    async def main() -> None:
        server = await serve_api(create_app(ras), "127.0.0.1", 0)
        try:
            common = (
                f"POST {V1}/campaigns HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            )
            declared = (common + f"Content-Length: {size}\r\n\r\n").encode()
            streamed = (common + "Transfer-Encoding: chunked\r\n\r\n").encode()
            for head, body in ((declared, pieces()), (streamed, chunked())):
                answers.append(await asyncio.to_thread(_send_big, server.port, head, body))
        finally:
            await stop_api(server)

    before = _rss_peak_mib()
    asyncio.run(main())
    growth = _rss_peak_mib() - before
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"application/problem+json" in answer
    assert growth < 25, f"the process grew by {growth:.0f} MiB"
    refused = [e for e in ras.accounts.audit_log(10) if e.result.startswith("413")]
    assert len(refused) == 2


def _forms(key: bytes) -> set[str]:
    b64 = base64.b64encode(key).decode()
    return {
        key.hex(),
        key.hex().upper(),
        b64,
        b64.rstrip("="),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        " ".join(f"{b:02X}" for b in key),
    }


def test_no_key_material_in_answers_logs_or_the_audit_trail(
    ras: RasService,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Seeds known keys through the API and the CLI, runs every GET of the OpenAPI document
    and the state changes, and looks for the keys in hex and base64 everywhere."""
    caplog.set_level(logging.DEBUG)
    admin = {"Authorization": f"Bearer {token_of(ras, Role.ADMIN)}"}
    client = TestClient(create_app(ras), base_url=BASE, headers=admin)
    secrets: set[str] = set()
    for n in (1, 2):
        psk, kic, kid = keys_of(n)
        for key in (psk, kic, kid):
            secrets |= _forms(key)
        body = {"iccid": iccid(n), "psk_key": psk.hex(), "kic_key": kic.hex(), "kid_key": kid.hex()}
        answers = [client.post(f"{V1}/cards", json=body)]
        assert answers[0].status_code == 201
    again = client.post(f"{V1}/cards", json={**body, "psk_identity": "other"})
    assert again.status_code == 409
    answers.append(again)
    bad = client.post(f"{V1}/cards", json={**body, "iccid": iccid(7), "kic_key": psk.hex()[:-1]})
    assert bad.status_code == 422
    answers.append(bad)
    client.put(
        f"{V1}/content/index.html", content=b"<p>1</p>", headers={"Content-Type": "text/html"}
    )
    campaign = client.post(f"{V1}/campaigns", json={"name": "all"}).json()["id"]
    answers.append(client.post(f"{V1}/campaigns/{campaign}/cancel"))
    doc = client.get(f"{V1}/openapi.json").json()
    for method, path, _ in operations(doc):
        if method == "GET":
            answers.append(client.get(concrete(path).replace(iccid(1), iccid(2))))
    answers.append(client.delete(f"{V1}/cards/{iccid(1)}"))
    assert len(answers) > 15
    texts = [r.text + json.dumps(dict(r.headers)) for r in answers]
    with ras.accounts._db.read() as s:
        audit_rows = [
            " ".join(str(v) for v in row) for row in s.execute(text("SELECT * FROM audit_log"))
        ]
    assert any("card.create" in row and "PSK check" in row for row in audit_rows)
    assert any("card.delete" in row for row in audit_rows)
    for secret in secrets:
        for where, haystack in (
            ("log", caplog.text),
            ("audit", "\n".join(audit_rows)),
            *(("answer", t) for t in texts),
        ):
            assert secret not in haystack, (where, secret)


def test_the_api_runs_on_a_thread_of_its_own_loop(ras: RasService) -> None:
    """The auth checks read the database: they must run on the thread pool, not the loop."""
    token = {"Authorization": f"Bearer {token_of(ras, Role.VIEWER)}"}
    loop_threads: set[int] = set()
    reads: set[int] = set()
    original = ras.accounts.authenticate_token

    def spy(token_text: str) -> Any:
        reads.add(threading.get_ident())
        return original(token_text)

    ras.accounts.authenticate_token = spy  # type: ignore[method-assign]

    async def main() -> None:
        loop_threads.add(threading.get_ident())
        server = await serve_api(create_app(ras), "127.0.0.1", 0)
        try:
            import urllib.request

            def get() -> int:
                req = urllib.request.Request(f"{server.url}api/v1/cards", headers=token)
                with urllib.request.urlopen(req, timeout=10) as r:
                    return int(r.status)

            assert await asyncio.to_thread(get) == 200
        finally:
            await stop_api(server)

    asyncio.run(main())
    assert reads
    assert not reads & loop_threads


def test_cli_needs_no_token(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`openscws admin ...` works on the database directly (local; no login)."""
    data = str(tmp_path / "cli")
    assert main(["admin", "init", "--data-dir", data, "-q"]) == 0
    capsys.readouterr()
    assert main(["admin", "card", "ls", "--data-dir", data, "-q"]) == 0
    assert capsys.readouterr().out == "none\n"  # an empty listing, with no login asked
