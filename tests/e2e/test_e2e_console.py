"""The web console in headless Chromium, against the REST API served by uvicorn (`serve_api`,
on 127.0.0.1) over a real SQLite-backed RasService.

The jobs are driven through their real life cycle (claim_triggers / open_session /
finish_job), so a campaign has cards in every state. Chromium (driven over the DevTools
protocol, cdp.py) logs in through the console's login form as an operator, runs the console's
JavaScript, and the assertions read the rendered DOM. The campaign view's screenshot is
docs/img/console-campaign.png: written when missing, or rewritten with
OPENSCWS_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cdp import Chromium, Page

from openscws.ids import luhn_digit
from openscws.ras.api import create_app
from openscws.ras.api_server import ApiServer, serve_api, stop_api
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.models import Role
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

pytestmark = pytest.mark.e2e

WIDTH, HEIGHT = 1280, 900
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "console-campaign.png"
OWNER = "ras-e2e:1"
TAR = bytes(3)
OPERATOR, PASSWORD = "olga", "a long enough password"


def iccid(n: int) -> str:
    """Card n's ICCID: 19 digits, the last the E.118 Luhn check digit."""
    base = f"8988211000000{n:05d}"
    return base + str(luhn_digit(base))


def keys_of(n: int) -> tuple[bytes, bytes, bytes]:
    seed = hashlib.sha256(f"console card {n}".encode()).digest()
    return seed[:16], seed[16:32], hashlib.sha256(seed).digest()[:16]


@dataclass
class World:
    """What `populate` made: the mixed campaign's id and each card's state and last error."""

    campaign_id: int
    states: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)


def populate(ras: RasService) -> World:
    now = datetime.now(UTC)
    secrets: list[str] = []
    for n in range(7):
        psk, kic, kid = keys_of(n)
        secrets += [k.hex() for k in (psk, kic, kid)] + [k.hex().upper() for k in (psk, kic, kid)]
        ras.add_card(
            iccid(n),
            f"+4915550100{n:02d}",
            psk_identity=f"scws-{iccid(n)}",
            psk_key=psk,
            agent_id=f"//se-id/iccid/{iccid(n)}",
            ota_tar=TAR,
            kic_key=kic,
            kid_key=kid,
            now=now - timedelta(days=2),
        )
    page = b"<!doctype html><title>Operator portal</title><h1>Welcome</h1>"
    ras.put_content("/index.html", page, "text/html", language="en", now=now - timedelta(days=2))
    ras.put_content(
        "/style.css", b"body{font:14px sans-serif}", "text/css", now=now - timedelta(days=2)
    )
    ras.put_content("/old.html", b"<p>old</p>", "text/html", now=now - timedelta(days=2))
    ras.put_content(
        "/img/banner.png", b"\x89PNG" + bytes(2400), "image/png", now=now - timedelta(hours=3)
    )
    ras.put_content(
        "/promo/spring.html", b"<h1>Spring offers</h1>" * 20, "text/html", realm="subscribers"
    )
    ras.put_content("/index.html", page + b"<a href=/promo/spring.html>Offers</a>", "text/html")
    ras.delete_content("/old.html", now=now - timedelta(minutes=20))

    def session(n: int, at: datetime, outcome: str, reason: str | None, lines: list[str]) -> None:
        work = ras.open_session(f"scws-{iccid(n)}", OWNER, at)
        assert work is not None
        if outcome != "in_session":
            assert ras.finish_job(work.job_id, OWNER, outcome, reason, at + timedelta(seconds=4))  # type: ignore[arg-type]
        ras.log_session(
            iccid(n),
            job_id=work.job_id,
            started_at=at,
            ended_at=None if outcome == "in_session" else at + timedelta(seconds=4),
            outcome="running" if outcome == "in_session" else outcome,
            detail=[f"PSK-TLS: identity scws-{iccid(n)}, TLS 1.2", *lines],
        )

    # Campaign 1: finished long ago.
    t = now - timedelta(days=1)
    ras.create_campaign(
        "launch-site",
        paths=["/index.html", "/style.css"],
        cards=[iccid(0), iccid(1), iccid(2)],
        now=t,
    )
    for n in range(3):
        session(
            n,
            t + timedelta(minutes=n + 1),
            "done",
            None,
            ["PUT /index.html v1: 201", "PUT /style.css v1: 201"],
        )

    # Campaign 2: card 6 still triggered, which holds its later jobs back (FIFO per card).
    t = now - timedelta(minutes=10)
    ras.create_campaign(
        "css-hotfix", paths=["/style.css"], cards=[iccid(0), iccid(1), iccid(6)], now=t
    )
    for n in (0, 1):
        session(n, t + timedelta(minutes=1), "done", None, ["PUT /style.css v1: 204"])
    claimed = ras.claim_triggers(OWNER, 10, now - timedelta(seconds=20))
    assert [w.iccid for w in claimed] == [iccid(6)]

    # Campaign 3: every state at once.
    t = now - timedelta(minutes=3)
    spring = ras.create_campaign(
        "spring-promo",
        paths=["/index.html", "/promo/spring.html", "/img/banner.png", "/old.html"],
        trigger="sip-push",
        now=t,
    )
    lines = ["DELETE /old.html: 204", "PUT /index.html v2: 201", "PUT /promo/spring.html v1: 201"]
    session(0, t + timedelta(seconds=30), "done", None, [*lines, "PUT /img/banner.png v1: 201"])
    session(1, t + timedelta(seconds=50), "done", None, [*lines, "PUT /img/banner.png v1: 201"])
    refused = "the card answered 507 Insufficient Storage to PUT /img/banner.png"
    session(
        2, t + timedelta(seconds=70), "failed", refused, [*lines, "PUT /img/banner.png v1: 507"]
    )
    session(3, now - timedelta(seconds=8), "in_session", None, ["DELETE /old.html: 204"])
    claimed = ras.claim_triggers(OWNER, 10, now - timedelta(seconds=40))
    assert sorted(w.iccid for w in claimed) == [iccid(4), iccid(5)]
    throttled = "trigger not sent: PAP undeliverable 4001 Service Unavailable: SIP 480"
    assert ras.finish_job(
        next(w.job_id for w in claimed if w.iccid == iccid(5)), OWNER, "retry", throttled, now
    )
    # the PPG's answers to the pushes: card 4's delivered, card 5's not (retried)
    ras.record_pap_codes({w.job_id: 1000 if w.iccid == iccid(4) else 4001 for w in claimed})
    states = {
        iccid(0): "done",
        iccid(1): "done",
        iccid(2): "failed",
        iccid(3): "in_session",
        iccid(4): "triggered",
        iccid(5): "pending",
        iccid(6): "pending",
    }
    errors = {iccid(2): refused, iccid(5): throttled}
    return World(spring.id, states, errors, secrets)


# -- the server and the browser --------------------------------------------------------------


@dataclass
class Console:
    url: str
    world: World
    ras: RasService


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console")
    db = RasDatabase(default_url(root))
    db.upgrade()
    ras = RasService(db, Vault.create(root / "vault"))
    ras.accounts.add_user(OPERATOR, PASSWORD, Role.OPERATOR)
    world = populate(ras)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-loop", daemon=True)
    thread.start()
    server: ApiServer | None = None
    try:
        app = create_app(ras)
        server = asyncio.run_coroutine_threadsafe(serve_api(app, "127.0.0.1", 0), loop).result(20)
        assert server.url.startswith("http://127.0.0.1:")
        yield Console(server.url.rstrip("/"), world, ras)
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


@pytest.fixture
def page(browser: Chromium, console: Console) -> Page:
    """A tab logged in to the console as an operator, through the login form."""
    tab = browser.page()
    tab.login(console.url, OPERATOR, PASSWORD)
    return tab


def view(page: Page, url: str, ready: str) -> str:
    """The DOM of the console at `url` once the JavaScript `ready` holds."""
    page.goto(url)
    page.wait(ready)
    return page.html()


class Dom(HTMLParser):
    """The elements of a dumped page: (tag, attributes, text inside) in document order."""

    VOID = frozenset({"br", "img", "input", "meta", "link", "hr", "source", "wbr", "col"})

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in self.VOID:
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self._open:
            self.elements[i][2].append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[tuple[dict[str, str], str]]:
        def matches(t: str, a: dict[str, str]) -> bool:
            return (tag is None or t == tag) and all(
                a.get(k.replace("_", "-")) == v for k, v in attrs.items()
            )

        return [
            (a, " ".join("".join(text).split())) for t, a, text in self.elements if matches(t, a)
        ]


def percent(style: str) -> float:
    match = re.search(r"width:\s*([0-9.]+)%", style)
    assert match is not None, style
    return float(match.group(1))


def no_secrets(html: str, world: World) -> None:
    for secret in world.secrets:
        assert secret not in html


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.peer
def test_campaign_view_renders_progress_and_card_states(
    console: Console, page: Page, tmp_path: Path
) -> None:
    world = console.world
    url = f"{console.url}/#/campaigns/{world.campaign_id}"
    ready = (
        "document.querySelectorAll('#campaign tr[data-iccid]').length === 7 && "
        "document.querySelectorAll('tr[data-campaign]').length === 3"
    )
    html = view(page, url, ready)
    dom = Dom(html)

    # The list: three campaigns, newest first, each with its progress.
    rows = dom.find("tr", data_campaign=str(world.campaign_id))
    assert len(rows) == 1, html[-3000:]
    assert "spring-promo" in rows[0][1]
    assert "2 of 7 done · 1 failed" in rows[0][1]
    assert [a["data-campaign"] for a, _ in dom.find("tr") if "data-campaign" in a] == [
        str(world.campaign_id),
        str(world.campaign_id - 1),
        str(world.campaign_id - 2),
    ]
    launch = dom.find("tr", data_campaign=str(world.campaign_id - 2))[0][1]
    assert "finished" in launch
    assert "3 of 3 done" in launch

    # The detail: the big bar's counts and width per state, the legend, the percentage.
    (detail, text), *_ = dom.find("section", id="campaign")
    assert detail["data-campaign"] == str(world.campaign_id)
    assert "spring-promo" in text
    assert "43% finished" in text  # (2 done + 1 failed) of 7
    bars = [a for a, _ in dom.find("div", role="progressbar") if "progress-lg" in a["class"]]
    assert len(bars) == 1
    assert (bars[0]["data-done"], bars[0]["data-failed"], bars[0]["data-total"]) == ("2", "1", "7")
    assert (bars[0]["aria-valuenow"], bars[0]["aria-valuemax"]) == ("3", "7")
    # Segments in document order: the list's three bars, then the detail's (the last five).
    segments = [a for a, _ in dom.find("span") if "seg" in a.get("class", "").split()]
    widths = {a["data-state"]: percent(a.get("style", "")) for a in segments[-5:]}
    assert widths == pytest.approx(
        {
            "done": 200 / 7,
            "failed": 100 / 7,
            "in_session": 100 / 7,
            "triggered": 100 / 7,
            "pending": 200 / 7,
        },
        abs=0.01,
    )
    for state, count in {
        "done": 2,
        "failed": 1,
        "in_session": 1,
        "triggered": 1,
        "pending": 2,
    }.items():
        legend = dom.find("span", data_state=state)
        assert any(f"{count}" in t for a, t in legend if "legend-item" in a.get("class", "")), state
    for op in ("DELETE/old.html", "PUT/index.htmlv2", "PUT/promo/spring.htmlv1"):
        assert op in text.replace(" ", "")

    # One row per card: its state as a badge, its attempts and its last error.
    cards = {a["data-iccid"]: (a["data-state"], t) for a, t in dom.find("tr") if "data-iccid" in a}
    assert {k: v[0] for k, v in cards.items()} == world.states
    for state, row in cards.values():
        assert state.replace("_", " ") in row
    badges = [a["data-state"] for a, _ in dom.find("span") if "badge" in a.get("class", "")]
    assert Counter(badges) == Counter(world.states.values())
    for number, error in world.errors.items():
        assert error in cards[number][1]
    assert "1 / 5" in cards[iccid(5)][1]  # one attempt spent, the retry is pending
    assert "0 / 5" in cards[iccid(6)][1]  # held back behind its older, triggered job

    # The trigger per campaign, the PAP result code per card (SIP push).
    assert "SIP push" in rows[0][1]
    assert "default" in launch  # created without a trigger: the server's default
    assert "PAP result" in html
    pap = {a["data-pap"]: t for a, t in dom.find("span") if "data-pap" in a}
    assert set(pap) == {"1000", "4001"}
    assert "OK" in pap["1000"]
    assert "service unavailable" in pap["4001"]
    assert "1000" in cards[iccid(4)][1]
    assert "4001" in cards[iccid(5)][1]
    no_secrets(html, world)

    # The picture for the docs: the same view, rendered.
    shot = tmp_path / "console-campaign.png"
    shot.write_bytes(page.screenshot())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20]), int.from_bytes(data[20:24])) == (WIDTH, HEIGHT)
    assert 30_000 < len(data) < 1_500_000  # a rendered page, and small enough to commit
    if not SCREENSHOT.exists() or os.environ.get("OPENSCWS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


@pytest.mark.peer
def test_cards_content_and_session_views(console: Console, page: Page) -> None:
    world = console.world
    html = view(
        page, f"{console.url}/#/cards", "document.querySelectorAll('tr[data-iccid]').length === 7"
    )
    dom = Dom(html)
    rows = {a["data-iccid"]: t for a, t in dom.find("tr") if "data-iccid" in a}
    assert sorted(rows) == sorted(world.states)
    assert "scws-" + iccid(3) in rows[iccid(3)]
    assert "+491555010003" in rows[iccid(3)]
    # An operator's console offers no card registration or removal (the admin's).
    buttons = [t for _, t in dom.find("button")]
    assert "Add card" not in buttons
    assert "Remove" not in buttons
    assert "Log out" in buttons
    no_secrets(html, world)

    html = view(
        page,
        f"{console.url}/#/cards/{iccid(2)}",
        "document.querySelectorAll('article').length === 2 && "
        "document.querySelectorAll('tr[data-job]').length === 2",
    )
    dom = Dom(html)
    sessions = dom.find("article")
    assert len(sessions) == 2  # launch-site and spring-promo
    newest = sessions[0][1]
    assert sessions[0][0]["data-outcome"] == "failed"
    assert "PUT /img/banner.png v1: 507" in newest
    jobs = [a["data-state"] for a, _ in dom.find("tr") if "data-job" in a]
    assert jobs == ["failed", "done"]
    no_secrets(html, world)

    html = view(
        page,
        f"{console.url}/#/content/index.html",
        "document.querySelectorAll('tr[data-version]').length === 2",
    )
    dom = Dom(html)
    paths = [a["data-path"] for a, _ in dom.find("tr") if "data-path" in a]
    assert paths == ["/img/banner.png", "/index.html", "/promo/spring.html", "/style.css"]
    versions = [(a["data-version"], t) for a, t in dom.find("tr") if "data-version" in a]
    assert [v for v, _ in versions] == ["2", "1"]  # the history of /index.html, newest first
    assert "current" in versions[0][1]
    assert "older" in versions[1][1]


def test_console_assets_are_served_with_a_strict_policy(console: Console) -> None:
    for name, kind in (
        ("", "text/html"),
        ("console.css", "text/css"),
        ("console.js", "javascript"),
    ):
        with urllib.request.urlopen(f"{console.url}/{name}", timeout=10) as r:
            assert kind in r.headers["content-type"]
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert r.read()


def test_api_docs_page_renders_without_the_internet(console: Console, page: Page) -> None:
    """The API docs page's Swagger UI comes from the admin server itself: the operations are
    rendered (by its script) with no request leaving the machine."""
    html = view(page, f"{console.url}/api/docs", "document.body.innerText.includes('OAS 3.1')")
    dom = Dom(html)
    scripts = [a.get("src", "") for a, _ in dom.find("script") if a.get("src")]
    assert scripts
    assert all(src.startswith("/api/docs/assets/") for src in scripts), scripts
    # Rendered by swagger-ui-bundle.js: the operation paths and the OpenAPI 3.1 badge.
    assert "/api/v1/cards/{iccid}" in html
    assert "OAS 3.1" in html
