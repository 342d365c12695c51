"""The sample CardInfoApp, over the wire."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from httpwire import CARD, exchange, get, post

from openscws.http import HttpServerConnection
from openscws.scws.apps import CardApp
from openscws.scws.sample_app import CardInfoApp
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
    assert json.loads(r.body) == {"card": CARD, "visits": 2}


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
