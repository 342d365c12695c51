"""The operator's first steps, as the README shows them, against a real `openscws up`: the
first run prints the admin's one-time password with the console URL (once), nothing answers
without a login, the password opens a session, the session makes an API token, and the token
pushes a page to the card in a campaign. The local CLI works on the database with no token."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openscws.cli import main

pytestmark = pytest.mark.e2e


def request(
    url: str,
    body: Any = None,
    *,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, bytes]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    all_headers = dict(headers or {})
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data, all_headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_first_login_token_and_campaign(
    openscws_proc: Callable[..., Any],
    free_port: Callable[[], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card, tls, sms, admin, api = (free_port() for _ in range(5))
    config = tmp_path / "openscws.toml"
    config.write_text(
        f"[card]\nports = [{card}, {tls}]\ntls_ports = [{tls}]\n"
        f"[gateway]\nsms_port = {sms}\n"
        f"[admin]\nport = {admin}\napi_port = {api}\n"
    )
    up = openscws_proc("up", "--config", config, name="up")
    line = up.wait_for("one-time password")
    match = re.search(
        r"console at (http://\S+/) as user admin with the one-time password (\S+)", line
    )
    assert match is not None, up.stdout()
    console, password = match[1], match[2]
    assert console == f"http://127.0.0.1:{api}/"
    base = console.rstrip("/")

    # Nothing is open.
    assert request(f"{base}/api/v1/cards")[0] == 401
    assert request(f"{base}/api/v1/openapi.json")[0] == 401
    status, _, body = request(f"{base}/")
    assert status == 200  # followed to the login form
    assert b'<form id="login"' in body

    # Log in (what the console's form does), make a token for scripts.
    status, headers, body = request(
        f"{base}/api/v1/auth/login", {"name": "admin", "password": password}
    )
    assert status == 200, body
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    csrf = json.loads(body)["csrf_token"]
    status, _, body = request(
        f"{base}/api/v1/tokens",
        {"name": "ci", "role": "operator", "expires_in_days": 7},
        headers={"Cookie": cookie, "X-CSRF-Token": csrf},
    )
    assert status == 201, body
    token = json.loads(body)["token"]
    bearer = {"Authorization": f"Bearer {token}"}

    # The token runs a campaign: new page, every card, done.
    page = b"<h1>Hello from the admin server</h1>"
    status, _, body = request(
        f"{base}/api/v1/content/index.html",
        method="PUT",
        raw=page,
        headers={**bearer, "Content-Type": "text/html"},
    )
    assert status == 201, body
    status, _, body = request(f"{base}/api/v1/campaigns", {"name": "first"}, headers=bearer)
    assert status == 201, body
    campaign = json.loads(body)["id"]
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        detail = json.loads(request(f"{base}/api/v1/campaigns/{campaign}", headers=bearer)[2])
        state = detail["state"]
        if state == "finished":
            break
        time.sleep(0.2)
    assert state == "finished"
    assert detail["progress"]["done"] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{card}/", timeout=20) as r:
        assert r.read() == page
    # An operator token cannot touch cards.
    assert (
        request(f"{base}/api/v1/cards/8988211000000000001", method="DELETE", headers=bearer)[0]
        == 403
    )

    # The local CLI needs no token: it works on the database (same data directory).
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "logs" / "xdg-data"))
    capsys.readouterr()
    assert main(["admin", "audit", "--config", str(config), "-q"]) == 0
    trail = capsys.readouterr().out
    for action in ("user.create", "card.create", "auth.login", "token.create", "campaign.create"):
        assert action in trail, trail
    assert re.search(r"admin/[0-9a-f]{12}\s+127\.0\.0\.1\s+campaign\.create\s+ok", trail)
    assert re.search(r"admin/[0-9a-f]{12}\s+127\.0\.0\.1\s+card\.delete\s+403", trail)
    assert token not in trail
    assert password not in trail
    up.stop()

    # A second start prints no password.
    again = openscws_proc("up", "--config", config, name="up-again")
    again.wait_for("REST API:")
    # The old password still opens the console: no new admin was made.
    status, _, _ = request(f"{base}/api/v1/auth/login", {"name": "admin", "password": password})
    assert status == 200
    again.stop()
    assert "one-time password" not in again.stdout


def test_admin_serve_first_run(
    openscws_proc: Callable[..., Any], free_port: Callable[[], int], tmp_path: Path
) -> None:
    """`openscws admin serve` on an empty database: the same one-time password, once."""
    port, api = free_port(), free_port()
    data = tmp_path / "ras"
    args = ("admin", "serve", "--data-dir", data, "--port", str(port), "--api-port", str(api))
    serve = openscws_proc(*args, name="serve")
    line = serve.wait_for("one-time password")
    match = re.search(
        r"console at (http://\S+/) as user admin with the one-time password (\S+)", line
    )
    assert match is not None, serve.stdout
    assert match[1] == f"http://127.0.0.1:{api}/"
    login = {"name": "admin", "password": match[2]}
    assert request(f"{match[1]}api/v1/auth/login", login)[0] == 200
    assert request(f"{match[1]}api/v1/cards")[0] == 401
    serve.stop()
    again = openscws_proc(*args, name="serve-again")
    again.wait_for("admin console:")
    assert request(f"{match[1]}api/v1/auth/login", login)[0] == 200
    again.stop()
    assert "one-time password" not in again.stdout
