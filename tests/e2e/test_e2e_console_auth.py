"""The console's login and the API's defences, in headless Chromium (driven over the DevTools
protocol, cdp.py) against the REST API served by uvicorn on 127.0.0.1:

- login through the form, the cookie's flags, the CSRF token, logout;
- failed logins locked out, with the lockout in the log and the audit trail;
- a page from another local port (same site, other origin: the session cookie goes along)
  posts a form and runs fetch() at the API while an operator is logged in: nothing changes,
  and the audit trail shows each refusal;
- an uploaded HTML page with a script, opened from the console, runs nothing in the
  console's origin."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from cdp import Chromium

from openscws.ras.accounts import key_checksum
from openscws.ras.api import create_app
from openscws.ras.api_auth import SESSION_COOKIE
from openscws.ras.api_server import ApiServer, serve_api, stop_api
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.models import Role
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

PASSWORD = "a long enough password"
ICCID = "8988211000000000003"


@dataclass
class Api:
    url: str
    ras: RasService
    campaign_id: int


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    db = RasDatabase(default_url(tmp_path))
    db.upgrade()
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    ras = RasService(db, Vault.create(tmp_path / "vault"), password_hasher=hasher)
    for role in Role:
        ras.accounts.add_user(f"the-{role}", PASSWORD, role)
    ras.add_card(
        ICCID,
        "+15550100001",
        psk_identity="id-1",
        psk_key=bytes(range(16)),
        agent_id="agent-1",
        ota_tar=bytes(3),
        kic_key=bytes(range(16, 32)),
        kid_key=bytes(range(32, 48)),
    )
    ras.put_content("/index.html", b"<p>hello</p>", "text/html")
    campaign = ras.create_campaign("keep-me")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-loop", daemon=True)
    thread.start()
    server: ApiServer | None = None
    try:
        app = create_app(ras)
        server = asyncio.run_coroutine_threadsafe(serve_api(app, "127.0.0.1", 0), loop).result(20)
        yield Api(server.url.rstrip("/"), ras, campaign.id)
    finally:
        if server is not None:
            asyncio.run_coroutine_threadsafe(stop_api(server), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        db.dispose()


@pytest.fixture
def browser(need_tool: Callable[[str, str], str], tmp_path: Path) -> Iterator[Chromium]:
    chromium = Chromium(need_tool("chromium", "chromium"), tmp_path / "profile")
    try:
        yield chromium
    finally:
        chromium.close()


def campaigns(ras: RasService) -> dict[str, str]:
    return {c.name: c.state for c in ras.list_campaigns()}


def test_login_cookie_csrf_and_logout(api: Api, browser: Chromium) -> None:
    page = browser.page()
    page.goto(f"{api.url}/")
    page.wait("location.pathname === '/login.html'")  # not logged in: the login form
    page.fill_login("the-operator", "not the password")
    error = page.wait("!document.getElementById('error').hidden && error.textContent")
    assert "wrong user name or password" in error
    assert page.eval("location.pathname") == "/login.html"

    page.fill_login("the-operator", PASSWORD)
    page.wait("location.pathname === '/' && !!document.querySelector('#who .who-name')")
    assert page.eval("document.getElementById('who').textContent") == "the-operator · operator"
    (cookie,) = [c for c in browser.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP here: Secure comes with TLS
    assert SESSION_COOKIE not in page.eval("document.cookie")  # out of scripts' reach

    # From the console's own origin: without the CSRF token a change is refused, with it done.
    without = page.eval(
        "fetch('/api/v1/campaigns', {method: 'POST', headers: {'Content-Type': "
        "'application/json'}, body: JSON.stringify({name: 'no-token'})}).then(r => r.status)"
    )
    assert without == 403
    with_token = page.eval(
        "fetch('/api/v1/auth/me').then(r => r.json()).then(me => fetch('/api/v1/campaigns', "
        "{method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': "
        "me.csrf_token}, body: JSON.stringify({name: 'with-token'})})).then(r => r.status)"
    )
    assert with_token == 201
    assert "no-token" not in campaigns(api.ras)
    assert "with-token" in campaigns(api.ras)

    # The Tokens page makes an API token, shown once, that works for scripts.
    page.goto(f"{api.url}/#/tokens")
    page.wait("!!document.getElementById('token-form')")
    page.eval(
        "document.querySelector('#token-form input[name=name]').value = 'ci';"
        "document.querySelector('#token-form button[type=submit]').click(); true"
    )
    token = page.wait(
        "document.querySelectorAll('tr[data-token]').length === 1 && "
        "document.getElementById('new-token-value')?.textContent"
    )
    request = urllib.request.Request(
        f"{api.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert json.loads(r.read())["user"] == "the-operator"

    # The console's own buttons send the token: cancel from the campaign view.
    page.goto(f"{api.url}/#/campaigns/{api.campaign_id}")
    button = (
        "[...document.querySelectorAll('button')].find(b => b.textContent === 'Cancel campaign')"
    )
    page.wait(f"!!{button} && !{button}.hidden")
    page.eval(f"window.confirm = () => true; {button}.click(); true")
    deadline = time.monotonic() + 20
    while campaigns(api.ras)["keep-me"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert campaigns(api.ras)["keep-me"] == "cancelled"

    page.eval("document.getElementById('logout').click(); true")
    page.wait("location.pathname === '/login.html'")
    assert not [c for c in browser.cookies() if c["name"] == SESSION_COOKIE]
    assert page.eval("fetch('/api/v1/auth/me').then(r => r.status)") == 401
    page.goto(f"{api.url}/")
    page.wait("location.pathname === '/login.html'")
    actions = [(e.actor, e.action, e.result) for e in reversed(api.ras.accounts.audit_log(50))]
    assert ("-(the-operator)", "auth.login", "401 unauthorized") in actions
    assert ("the-operator", "campaign.create", "403 forbidden") in actions
    assert ("the-operator", "campaign.cancel", "ok") in actions
    assert ("the-operator", "auth.logout", "ok") in actions


def test_failed_logins_lock_out(
    api: Api, browser: Chromium, caplog: pytest.LogCaptureFixture
) -> None:
    page = browser.page()
    page.goto(f"{api.url}/login.html")
    for attempt in range(5):
        page.fill_login("the-admin", f"wrong {attempt}")
        page.wait(
            f"!document.getElementById('error').hidden && "
            f"document.getElementById('password').value === '' && {attempt} >= 0"
        )
        page.eval("document.getElementById('error').hidden = true; true")
    page.fill_login("the-admin", PASSWORD)  # the right password, too late
    message = page.wait(
        "!document.getElementById('error').hidden && "
        "document.getElementById('error').textContent.startsWith('Locked') && "
        "document.getElementById('error').textContent"
    )
    assert "too many failed logins" in message
    assert page.eval("location.pathname") == "/login.html"
    assert "locked out" in caplog.text
    results = [e.result for e in api.ras.accounts.audit_log(20) if e.action == "auth.login"]
    assert results[0] == "429 too many requests"
    assert results.count("401 unauthorized") == 5
    # Another account from the same address still logs in.
    page.login(api.url, "the-viewer", PASSWORD)


ATTACK = """<!doctype html><title>cat pictures</title>
<form id="f" method="POST" action="{api}/api/v1/campaigns/{campaign}/cancel">
  <input name="x" value="1"></form>
<script>
(async () => {{
  const out = {{}};
  try {{
    const r = await fetch("{api}/api/v1/campaigns", {{method: "POST", credentials: "include",
      mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{name: "evil"}})}});
    out.simple = r.type;
  }} catch (e) {{ out.simple = String(e); }}
  try {{
    const r = await fetch("{api}/api/v1/cards/{iccid}", {{method: "DELETE",
      credentials: "include"}});
    out.del = r.status;
  }} catch (e) {{ out.del = "blocked"; }}
  try {{
    const r = await fetch("{api}/api/v1/auth/me", {{credentials: "include"}});
    out.me = r.status;
  }} catch (e) {{ out.me = "blocked"; }}
  document.title = JSON.stringify(out);
  setTimeout(() => document.getElementById("f").submit(), 200);
}})();
</script>"""


def test_another_origin_changes_nothing(
    api: Api, browser: Chromium, free_port: Callable[[], int]
) -> None:
    port = free_port()
    page = browser.page()
    page.login(api.url, "the-operator", PASSWORD)
    body = ATTACK.format(api=api.url, campaign=api.campaign_id, iccid=ICCID).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", port), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        attacker = browser.page()
        attacker.goto(f"http://127.0.0.1:{port}/")
        # The form's post lands on the API's refusal (a problem document).
        attacker.wait(f"location.port !== '{port}'", timeout=30)
        attacker.wait("document.readyState === 'complete'")
        refusal = attacker.eval("document.body.innerText")
        assert "403" in refusal or "cross-origin" in refusal, refusal
    finally:
        evil.shutdown()
        evil.server_close()
    # Nothing changed: the campaign runs, no campaign was made, the card is there.
    assert campaigns(api.ras) == {"keep-me": "active"}
    assert api.ras.card(ICCID) is not None
    refused = [e for e in api.ras.accounts.audit_log(50) if e.result == "403 forbidden"]
    by_action = {e.action: e for e in refused}
    assert set(by_action) >= {"campaign.cancel", "campaign.create"}
    for entry in by_action.values():
        assert entry.actor == "the-operator"  # the cookie went along: the Origin stopped it
        assert entry.detail == "cross-origin request refused"
        assert entry.address == "127.0.0.1"
    # The console in the first tab is still logged in and still works.
    assert page.eval("fetch('/api/v1/auth/me').then(r => r.status)") == 200


def test_uploaded_page_runs_no_script_in_the_console_origin(api: Api, browser: Chromium) -> None:
    payload = (
        b"<!doctype html><title>promo</title><script>"
        b"fetch('/api/v1/auth/me').then(r => r.json()).then(me => fetch('/api/v1/campaigns', "
        b"{method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': "
        b"me.csrf_token}, body: JSON.stringify({name: 'xss'})}));"
        b"document.title = 'ran';</script>"
    )
    api.ras.put_content("/promo.html", payload, "text/html")
    page = browser.page()
    page.login(api.url, "the-operator", PASSWORD)
    page.goto(f"{api.url}/#/content/promo.html")
    href = page.wait(
        "[...document.querySelectorAll('a')].map(a => a.href)"
        ".find(h => h.includes('/api/v1/content/promo.html/versions/1'))"
    )
    # The console's link is a download, not a page.
    link = "document.querySelector('a[href$=\"promo.html/versions/1\"]')"
    assert page.eval(f"{link}.hasAttribute('download')")
    page.eval(f"{link}.click(); true")
    # Opened directly in a tab of the console's origin: a download again, never a document.
    other = browser.page()
    other.goto(f"{api.url}/login.html")
    navigation = other.send("Page.navigate", {"url": href})
    assert navigation.get("errorText") == "net::ERR_ABORTED", navigation
    other.wait("document.readyState === 'complete'")
    assert other.eval("location.pathname") == "/login.html"  # nothing replaced the page
    # The console keeps working and its title is its own.
    page.wait("document.querySelectorAll('tr[data-version]').length === 1")
    for tab in (page, other):
        assert tab.eval("document.title") != "ran"
    assert "xss" not in campaigns(api.ras)
    assert page.eval("location.pathname") == "/"


def test_admin_registers_a_card_with_keys_made_in_the_browser(api: Api, browser: Chromium) -> None:
    page = browser.page()
    page.login(api.url, "the-admin", PASSWORD)
    page.goto(f"{api.url}/#/cards")
    add = "[...document.querySelectorAll('button')].find(b => b.textContent === 'Add card')"
    page.wait(f"!!{add}")
    page.eval(f"{add}.click(); true")
    page.wait("!!document.querySelector('input[name=iccid]')")
    page.eval(
        "document.querySelector('input[name=iccid]').value = '8988211000000000011';"
        "[...document.querySelectorAll('button')].find(b => b.textContent === 'Register card')"
        ".click(); true"
    )
    shown = page.wait(
        "document.querySelectorAll('dl.keys dd').length === 3 && "
        "[...document.querySelectorAll('dl.keys dd')].map(d => d.textContent)"
    )
    match = re.fullmatch(r"([0-9A-F]{32})  \(check ([0-9A-F]{6})\)", shown[0])
    assert match is not None, shown
    psk_text, psk_check = match.groups()
    psk = bytes.fromhex(psk_text)
    assert api.ras.psk_lookup("scws-8988211000000000011") == psk
    assert psk_check == key_checksum(psk)
    assert len({s.split()[0] for s in shown}) == 3  # three different keys
    (entry,) = [e for e in api.ras.accounts.audit_log(20) if e.action == "card.create"]
    assert entry.actor == "the-admin"
    assert f"PSK check {psk_check}" in entry.detail
    assert psk_text not in entry.detail
