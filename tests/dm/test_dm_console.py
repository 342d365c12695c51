"""The DM server's console over HTTPS: login with the admin server's accounts, roles (a
viewer reads, an operator creates jobs), the CSRF token and Origin of a POST, the Host check,
HTML escaping, no secret on any page, the audit trail, and a job made in the console reaching
the device (its Package #0 by SMS, its results on the job's page)."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from dm_server_env import Env, Reply, add_device, cert_context, client, post, run_env, run_session

from openscws.dm.api import DmApi
from openscws.dm.client_push import package0_of
from openscws.dm.console import DmConsole, parse_commands
from openscws.dm.db_models import HttpAuth
from openscws.dm.notification import SessionAlert
from openscws.dm.server_notify import Notifier
from openscws.dm.session import Outgoing
from openscws.ras.accounts import Accounts
from openscws.ras.api_auth import default_hosts
from openscws.ras.db import RasDatabase
from openscws.ras.models import Role
from openscws.ras.senders import LocalTerminalSender

FORM = "application/x-www-form-urlencoded"
PASSWORD = "a long password 1"
EVIL = "IMEI:<script>alert(1)</script>&"
SECRETS = ("dev-app-secret", "srv-secret-77", "http-secret-99", "psk-key-bytes-16")


class _Sms(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msisdn = parse_qs(urlsplit(self.path).query).get("msisdn", [""])[0]
        self.got.append((msisdn, body))
        self.send_response(200)
        self.send_header("X-SMS-Status", "delivered")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("dm-console")
    ras = RasDatabase(f"sqlite:///{root / 'ras.db'}")
    ras.upgrade()
    accounts = Accounts(ras)
    for role in Role:
        accounts.add_user(f"u-{role}", PASSWORD, role)
    sms = ThreadingHTTPServer(("127.0.0.1", 0), _Sms)
    thread = threading.Thread(target=sms.serve_forever, daemon=True)
    thread.start()
    try:
        for e in run_env(root):
            api = DmApi(e.store, accounts)
            api.notifier = Notifier(
                e.store, LocalTerminalSender(f"http://127.0.0.1:{sms.server_port}/sms")
            )
            e.service.api = api
            e.service.console = DmConsole(api, accounts, default_hosts("127.0.0.1"))
            add_device(
                e, EVIL, app_password=SECRETS[0], server_password=SECRETS[1],
                http_auth=HttpAuth.BASIC, http_username="u<b>", http_password=SECRETS[2],
                msisdn="+4912345",
            )  # fmt: skip
            add_device(
                e, "IMEI:CON-PSK", http_auth=HttpAuth.PSK, psk_identity="con-psk",
                psk_key=SECRETS[3].encode(), msisdn="+4967890",
            )  # fmt: skip
            yield e
    finally:
        sms.shutdown()
        sms.server_close()
        ras.dispose()


def get(e: Env, path: str, cookie: str | None = None, **headers: str) -> Reply:
    if cookie is not None:
        headers["Cookie"] = f"openscws_session={cookie}"
    return post(e, cert_context(e), b"", "text/plain", headers, path=path, method="GET")


def send(e: Env, path: str, form: dict[str, str], cookie: str | None = None, **hd: str) -> Reply:
    if cookie is not None:
        hd["Cookie"] = f"openscws_session={cookie}"
    return post(e, cert_context(e), urlencode(form).encode(), FORM, hd, path=path)


def login(e: Env, role: Role) -> tuple[str, str]:
    """A session of the user of `role`: (cookie, the CSRF token its pages carry)."""
    r = send(e, "/console/login", {"name": f"u-{role}", "password": PASSWORD})
    assert r.status == 303
    assert r.headers["Location"] == "/console"
    set_cookie = r.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict"):
        assert flag in set_cookie
    cookie = set_cookie.split(";")[0].partition("=")[2]
    page = get(e, "/console", cookie)
    assert page.status == 200
    found = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert found is not None
    return cookie, html.unescape(found.group(1).decode())


def test_login_and_unauthenticated(env: Env) -> None:
    r = get(env, "/console")
    assert r.status == 303
    assert r.headers["Location"] == "/console/login"
    assert get(env, "/").headers["Location"] == "/console"
    page = get(env, "/console/login")
    assert page.status == 200
    assert b'name="password"' in page.body
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert get(env, "/console/jobs/1").status == 303
    assert get(env, "/console", "forged-cookie-value-xxxxxxxxxx").status == 303
    wrong = send(env, "/console/login", {"name": "u-viewer", "password": "nope"})
    assert wrong.status == 401
    assert "Set-Cookie" not in wrong.headers
    refused = send(env, "/console/jobs", {"dev_id": EVIL, "commands": "Get ./DevInfo/Man"})
    assert refused.status == 401
    foreign = {"Origin": "https://evil.example"}
    r = send(env, "/console/login", {"name": "u-viewer", "password": PASSWORD}, **foreign)
    assert r.status == 403
    assert "Set-Cookie" not in r.headers
    assert get(env, "/console/login", Host="evil.example").status == 421
    bad_type = post(env, cert_context(env), b"{}", "application/json", path="/console/login")
    assert bad_type.status == 415


def test_viewer_reads_but_cannot_create(env: Env) -> None:
    cookie, csrf = login(env, Role.VIEWER)
    page = get(env, "/console", cookie)
    assert b"New job" not in page.body  # no form for a viewer
    r = send(env, "/console/jobs", {"csrf": csrf, "dev_id": EVIL, "commands": "Get ./X"}, cookie)
    assert r.status == 403
    assert b"operator" in r.body
    assert not env.store.jobs(EVIL)


def test_operator_creates_a_job_with_csrf(env: Env) -> None:
    cookie, csrf = login(env, Role.OPERATOR)
    form = {"dev_id": EVIL, "commands": "Get ./DevInfo/Man"}
    assert send(env, "/console/jobs", form, cookie).status == 403  # no CSRF token
    assert send(env, "/console/jobs", {**form, "csrf": "x" * 43}, cookie).status == 403
    foreign = {"Origin": "https://evil.example"}
    assert send(env, "/console/jobs", {**form, "csrf": csrf}, cookie, **foreign).status == 403
    assert not env.store.jobs(EVIL)
    bad = send(env, "/console/jobs", {**form, "csrf": csrf, "commands": "Format ./"}, cookie)
    assert bad.status == 422
    assert b"Format" in bad.body
    nobody = send(env, "/console/jobs", {**form, "csrf": csrf, "dev_id": "IMEI:none"}, cookie)
    assert nobody.status == 404
    _Sms.got.clear()
    own = {"Origin": f"https://127.0.0.1:{env.port}"}
    r = send(env, "/console/jobs", {**form, "csrf": csrf}, cookie, **own)
    assert r.status == 201
    [job] = env.store.jobs(EVIL)
    assert job.commands == [{"op": "Get", "uri": "./DevInfo/Man", "data": None}]
    assert b"Package #0 by SMS: delivered" in r.body
    [(msisdn, tpdu)] = _Sms.got
    assert msisdn == "+4912345"
    pkg0 = package0_of(tpdu)
    assert pkg0 is not None
    assert SessionAlert.decode(pkg0)[1].session_id == job.id & 0xFFFF
    assert env.service.api is not None
    trail = [
        (a.actor.split("/")[0], a.action, a.target, a.result)
        for a in env.service.api.accounts.audit_log(100)
    ]
    assert ("u-operator", "dm.console.job", f"{EVIL} job {job.id}", "201") in trail
    assert ("u-operator", "dm.console.job", "/console/jobs", "403") in trail
    assert ("u-viewer", "dm.console.job", "/console/jobs", "403") in trail
    assert ("u-operator", "dm.console.login", "/console", "303") in trail


def test_pages_escape_and_hold_no_secret(env: Env) -> None:
    cookie, csrf = login(env, Role.ADMIN)
    form = {"csrf": csrf, "dev_id": EVIL, "commands": "Replace ./DMAcc/1/Ext <i>x</i> & y"}
    r = send(env, "/console/jobs", form, cookie)
    assert r.status == 201
    job = max(env.store.jobs(EVIL), key=lambda j: j.id)
    pages = [r, get(env, "/console", cookie), get(env, f"/console/jobs/{job.id}", cookie)]
    for page in pages:
        assert b"<script>" not in page.body
        assert b"<i>x</i>" not in page.body
        assert b"u<b>" not in page.body
        for secret in SECRETS:
            assert secret.encode() not in page.body
    assert html.escape(EVIL).encode() in pages[1].body
    assert b"&lt;i&gt;x&lt;/i&gt; &amp; y" in pages[2].body
    assert get(env, "/console/jobs/99999", cookie).status == 404
    assert get(env, "/console/nothing", cookie).status == 404


def test_console_job_runs_and_shows_results(env: Env) -> None:
    cookie, csrf = login(env, Role.OPERATOR)
    commands = "Get ./DevInfo/Man\nGet ./DevInfo/Mod\n"
    r = send(env, "/console/jobs", {"csrf": csrf, "dev_id": "IMEI:CON-PSK", "commands": commands},
             cookie)  # fmt: skip
    assert r.status == 201
    [job] = env.store.jobs("IMEI:CON-PSK")
    from openscws.tls.context import psk_client_context

    ctx = psk_client_context("con-psk", SECRETS[3].encode(), ciphers="PSK-AES128-GCM-SHA256")

    def deliver(out: Outgoing) -> Reply:
        return post(env, ctx, out.body, out.content_type, dict(out.headers))

    run_session(client("IMEI:CON-PSK"), deliver)
    page = get(env, f"/console/jobs/{job.id}", cookie)
    assert page.status == 200
    assert b"state done" in page.body
    assert b"<td>./DevInfo/Man</td><td>200</td><td>openscws</td>" in page.body
    assert b"<td>./DevInfo/Mod</td><td>200</td><td>virtual</td>" in page.body
    out = send(env, "/console/logout", {"csrf": csrf}, cookie)
    assert out.status == 303
    assert get(env, "/console", cookie).status == 303  # the session is gone


def test_parse_commands() -> None:
    assert parse_commands("Get ./A\n\n  Replace ./B two words \nExec ./C") == [
        {"op": "Get", "uri": "./A", "data": None},
        {"op": "Replace", "uri": "./B", "data": "two words"},
        {"op": "Exec", "uri": "./C", "data": None},
    ]
