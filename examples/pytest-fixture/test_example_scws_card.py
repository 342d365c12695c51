"""A sample test suite for a project that talks to a SIM card's web server: copy this file
into your own tests. With openscws installed the `scws_card` fixture is there (the plugin
loads by itself); it starts a virtual card and its BIP gateway in the test's process."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from openscws.testing import CardHarness


def fetch(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10, context=context) as answer:
        return answer.status, answer.headers["Content-Type"], answer.read()


def test_the_card_serves_what_we_put(scws_card: CardHarness) -> None:
    scws_card.put("/hello.html", "<h1>Hello from the SIM</h1>")
    status, content_type, body = fetch(scws_card.url("/hello.html"))
    assert status == 200
    assert content_type.startswith("text/html")
    assert body == b"<h1>Hello from the SIM</h1>"


def test_the_request_crossed_the_bip_channel(scws_card: CardHarness) -> None:
    scws_card.put("/data.json", b'{"balance": 42}', content_type="application/json")
    scws_card.clear_trace()
    fetch(scws_card.url("/data.json"))
    trace = scws_card.trace()
    # The request came in by RECEIVE DATA, the answer went out by SEND DATA.
    assert any("RECEIVE_DATA" in line and "GET /data.json" in line for line in trace), trace
    assert any("SEND_DATA" in line and "HTTP/1.1 200" in line for line in trace), trace


def test_https_with_the_cards_certificate(scws_card: CardHarness) -> None:
    scws_card.put("/secure.html", "<p>over TLS, terminated inside the card</p>")
    context = ssl.create_default_context(cafile=scws_card.ca_pem)
    context.check_hostname = False  # the card's certificate names the card, not 127.0.0.1
    status, _, body = fetch(scws_card.url("/secure.html", https=True), context)
    assert status == 200
    assert body == b"<p>over TLS, terminated inside the card</p>"


def test_a_deleted_page_is_gone(scws_card: CardHarness) -> None:
    scws_card.put("/old.html", "old")
    assert scws_card.delete("/old.html")
    with pytest.raises(urllib.error.HTTPError) as gone:
        fetch(scws_card.url("/old.html"))
    assert gone.value.code == 404
    gone.value.close()


def test_a_card_with_the_demo_site(scws_card_factory: Callable[..., CardHarness]) -> None:
    card = scws_card_factory(demo=True)
    status, _, body = fetch(card.url("/"))
    assert status == 200
    assert b"Smart Card Web Server" in body
    assert "/style.css" in card.paths()
