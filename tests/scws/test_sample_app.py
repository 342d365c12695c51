"""The sample CardInfoApp, over the wire."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from httpwire import (
    CARD,
    LAST_MODIFIED_DATE,
    NOW,
    TEST_LIMITS,
    exchange,
    get,
    make_conn,
    make_site,
    post,
)

from openscws.demo import demo_files
from openscws.http import HttpServerConnection
from openscws.http.limits import RamBudget
from openscws.scws.apps import CardApp
from openscws.scws.sample_app import CardInfoApp, format_uptime
from openscws.scws.site import Site

VOID = {"meta", "br", "img", "input", "link", "hr"}


class _TagChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.visits = ""
        self._in_visits = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)
        self._in_visits = ("id", "visits") in attrs

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)
        self._in_visits = False

    def handle_data(self, data: str) -> None:
        if self._in_visits:
            self.visits += data


def _visits(html: bytes) -> int:
    checker = _TagChecker()
    checker.feed(html.decode())
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return int(checker.visits)


def test_is_a_card_app() -> None:
    assert isinstance(CardInfoApp(), CardApp)


def test_page_counts_visits_and_shows_facts(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/cardinfo") + get("/cardinfo/"), ["GET", "GET"])
    assert a.status == 200
    assert a.header("content-type") == "text/html; charset=utf-8"
    assert a.body.startswith(b"<!DOCTYPE html>")
    assert CARD["ICCID"].encode() in a.body
    assert b"<th>IMSI</th>" in a.body
    assert (_visits(a.body), _visits(b.body)) == (1, 2)
    assert a.header("cache-control") == "no-store"


def test_head_does_not_count(conn: HttpServerConnection) -> None:
    h, g = exchange(conn, get("/cardinfo", method="HEAD") + get("/cardinfo"), ["HEAD", "GET"])
    assert h.status == 200
    assert h.body == b""
    assert h.header("content-length")
    assert _visits(g.body) == 1


def test_json_variant(conn: HttpServerConnection) -> None:
    exchange(conn, get("/cardinfo"), ["GET"])
    (r,) = exchange(conn, get("/cardinfo/json"), ["GET"])
    assert r.header("content-type") == "application/json"
    doc = json.loads(r.body)
    assert doc == {
        "card": CARD,
        "uptime_seconds": 0,
        "requests": {
            "requests": 2,
            "https": 0,
            "applications": 2,
            "not_modified": 0,
            "errors": 0,
        },
        "visits": 2,
    }


def _cell(html: bytes, ident: str) -> str:
    match = re.search(rf'<td id="{ident}">([^<]*)</td>', html.decode())
    assert match, ident
    return match.group(1)


def test_page_keeps_the_home_pages_promise() -> None:
    """The demo home page's tile promises "ICCID, uptime, request counters": the page has each,
    from the card, styled with the site's stylesheet."""
    home = demo_files()["/index.html"].decode()
    promise = re.search(r'href="/app/info">.*?<p>(.*?)</p>', home, re.DOTALL)
    assert promise
    assert "ICCID, uptime, request counters" in promise.group(1)

    site = make_site(started=NOW - (2 * 86_400 + 3725))
    conn = make_conn(site)
    not_modified = get("/index.html", f"If-Modified-Since: {LAST_MODIFIED_DATE}")
    script = get("/style.css") + not_modified + get("/nope") + get("/cardinfo")
    *_, page = exchange(conn, script, ["GET"] * 4)
    assert page.status == 200
    assert CARD["ICCID"] in page.body.decode()
    assert _cell(page.body, "uptime") == "2 d 01:02:05"
    counts = {k: _cell(page.body, k) for k in ("requests", "https", "applications")}
    assert counts == {"requests": "4", "https": "0", "applications": "1"}
    assert (_cell(page.body, "not-modified"), _cell(page.body, "errors")) == ("1", "1")
    assert '<link rel="stylesheet" href="/style.css">' in page.body.decode()
    css = demo_files()["/style.css"].decode()
    for cls in re.findall(r'class="([\w-]+)"', page.body.decode()):
        assert f".{cls}" in css, cls
    assert _visits(page.body) == 1


def test_counters_count_https_and_application_errors() -> None:
    site = make_site(started=NOW)
    conn = make_conn(site)
    exchange(conn, post("/cardinfo/nope", b"") + get("/cardinfo/log?lines=x"), ["POST", "GET"])
    c = site.counters
    assert (c.requests, c.applications, c.errors, c.https) == (2, 2, 2, 0)
    https = HttpServerConnection(
        site, TEST_LIMITS, RamBudget.for_limits(TEST_LIMITS), scheme="https", now=NOW
    )
    exchange(https, get("/index.html"), ["GET"])
    assert (c.requests, c.https, c.errors) == (3, 1, 2)


def test_uptime_format() -> None:
    assert format_uptime(0) == "00:00:00"
    assert format_uptime(59.9) == "00:00:59"
    assert format_uptime(86_399) == "23:59:59"
    assert format_uptime(86_400 + 61) == "1 d 00:01:01"


def test_uptime_counts_from_the_first_request_without_a_start_time(site: Site) -> None:
    assert site.counters.started is None
    assert site.counters.uptime(NOW) == 0.0
    exchange(make_conn(site), get("/index.html"), ["GET"])
    assert site.counters.started == NOW
    assert site.counters.uptime(NOW + 90) == 90.0


def test_reset(conn: HttpServerConnection, site: Site) -> None:
    exchange(conn, get("/cardinfo") + get("/cardinfo"), ["GET", "GET"])
    assert site.store.get_value("/cardinfo/visits") == b"2"
    reset, page = exchange(conn, post("/cardinfo/reset", b"") + get("/cardinfo"), ["POST", "GET"])
    assert reset.status == 303
    assert reset.header("location") == "/cardinfo"
    assert reset.header("content-length") == "0"
    assert _visits(page.body) == 1


def test_unknown_subpaths_404(conn: HttpServerConnection) -> None:
    a, b = exchange(conn, get("/cardinfo/nope") + post("/cardinfo/nope", b"x"), ["GET", "POST"])
    assert (a.status, b.status) == (404, 404)


def test_facts_are_escaped(site: Site) -> None:
    site.card = {"<b>": "a&b"}  # type: ignore[misc]
    from httpwire import make_conn

    conn = make_conn(site)
    (r,) = exchange(conn, get("/cardinfo"), ["GET"])
    assert b"<th>&lt;b&gt;</th><td>a&amp;b</td>" in r.body
    _visits(r.body)
