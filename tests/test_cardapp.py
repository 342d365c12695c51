"""The plug-in API for card applications (openscws.cardapp): loading by entry point or
module path, the application's own values, and failures that answer 500 while the card goes
on serving."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "http"))
from httpwire import exchange, get, make_conn, post

from openscws.cardapp import (
    CardApplication,
    Context,
    HttpError,
    Request,
    Response,
    Values,
    load_card_apps,
)
from openscws.http import HttpServerConnection
from openscws.scws.card import build_site
from openscws.scws.model import MemoryStore

PLUGIN = """
from openscws.cardapp import Context, HttpError, Request, Response

class Counter:
    prefix = "/count"
    methods = frozenset({"GET", "POST"})

    def handle(self, request: Request, ctx: Context) -> Response:
        if request.path == "/count/boom":
            raise RuntimeError("the plug-in has a bug")
        if request.path == "/count/wrong":
            return "not a response"
        if request.path == "/count/missing":
            raise HttpError(404, "no such counter")
        n = int(ctx.values.get("n") or b"0") + (request.method == "POST")
        ctx.values.set("n", str(n).encode())
        return Response.text(f"{ctx.name}: {n}")

def broken_factory():
    raise ImportError("a dependency is missing")

class NoHandle:
    prefix = "/x"
    methods = frozenset({"GET"})

class RelativePrefix(Counter):
    prefix = "count"
"""


@pytest.fixture
def plugin_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "counter_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "counter_plugin"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("counter_plugin", None)


def serve(*targets: str) -> tuple[MemoryStore, HttpServerConnection]:
    store = MemoryStore()
    apps = load_card_apps(targets)
    site = build_site(store, "8988211000000000003", apps=apps)
    return store, make_conn(site)


def test_a_module_path_app_serves_and_keeps_state(plugin_module: str) -> None:
    store, conn = serve(f"{plugin_module}:Counter")
    (r,) = exchange(conn, get("/count"), ["GET"])
    assert (r.status, r.body) == (200, b"counter_plugin.Counter: 0")
    (r,) = exchange(conn, post("/count", b""), ["POST"])
    assert r.body == b"counter_plugin.Counter: 1"
    # Its values are its own, namespaced in the card image's values.
    assert store.get_value("apps/counter_plugin.Counter/n") == b"1"
    assert store.get_value("n") is None


def test_an_app_that_raises_answers_500_and_the_card_keeps_serving(
    plugin_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, conn = serve(f"{plugin_module}:Counter")
    with caplog.at_level(logging.ERROR, "openscws.card_apps"):
        (r,) = exchange(conn, get("/count/boom"), ["GET"])
    assert r.status == 500
    assert b"the plug-in has a bug" not in r.body  # the cause is logged, not shown
    (line,) = [rec.getMessage() for rec in caplog.records if rec.name == "openscws.card_apps"]
    assert line == (
        "card application counter_plugin.Counter failed on GET /count/boom: RuntimeError: "
        "the plug-in has a bug"
    )
    (r,) = exchange(conn, get("/count/wrong"), ["GET"])
    assert r.status == 500
    (r,) = exchange(conn, get("/count/missing"), ["GET"])
    assert r.status == 404
    (r,) = exchange(conn, get("/count"), ["GET"])
    assert r.status == 200
    (r,) = exchange(conn, get("/app/info/json"), ["GET"])
    assert r.status == 200
    assert json.loads(r.body)["requests"]["errors"] == 3


def test_apps_that_cannot_load_are_reported_not_fatal(plugin_module: str) -> None:
    loaded = load_card_apps(
        [
            f"{plugin_module}:broken_factory",
            f"{plugin_module}:NoHandle",
            f"{plugin_module}:RelativePrefix",
            f"{plugin_module}:Absent",
            "no_such_module_here:App",
            "no-colon",
            f"{plugin_module}:Counter",
        ]
    )
    errors = [str(app.error) for app in loaded]
    assert errors[0] == "ImportError: a dependency is missing"
    assert "no prefix, methods and handle" in errors[1]
    assert "absolute path" in errors[2]
    assert errors[3].startswith("AttributeError")
    assert errors[4].startswith("ModuleNotFoundError")
    assert "module:attribute" in errors[5]
    assert loaded[6].error is None
    assert loaded[6].prefix == "/count"
    assert all(app.source == "settings card.apps" for app in loaded)


def test_entry_points_are_loaded_by_name(
    plugin_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import openscws.cardapp as cardapp

    def fake_entry_points(group: str) -> list[EntryPoint]:
        assert group == "openscws.card_apps"
        return [EntryPoint("counter", f"{plugin_module}:Counter", group)]

    monkeypatch.setattr(cardapp, "entry_points", fake_entry_points)
    (app,) = load_card_apps()
    assert (app.name, app.prefix, app.error) == ("counter", "/count", None)
    assert app.source == "entry point"


def test_values_limits() -> None:
    values = Values(MemoryStore(), "apps/t/")
    values.set("k", b"v")
    assert values.get("k") == b"v"
    values.delete("k")
    assert values.get("k") is None
    with pytest.raises(ValueError, match="at most 16384 bytes"):
        values.set("k", b"x" * 16385)
    with pytest.raises(ValueError, match="1 to 128 characters"):
        values.set("k" * 129, b"")
    with pytest.raises(TypeError):
        values.set("k", "text")


def test_the_guestbook_example_is_a_card_application() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "card-app-guestbook"))
    try:
        from openscws_guestbook import Guestbook
    finally:
        sys.path.pop(0)
    app = Guestbook()
    assert isinstance(app, CardApplication)
    store = MemoryStore()
    ctx = Context(Values(store, "apps/guestbook/"), {}, 1e9, "/guestbook", "guestbook")
    answer = app.handle(
        Request("POST", "/guestbook", "/guestbook", body=b"name=Ann&message=%3Cb%3Ehi"), ctx
    )
    assert (answer.status, answer.headers) == (303, (("Location", "/guestbook"),))
    page = app.handle(Request("GET", "/guestbook", "/guestbook"), ctx)
    assert isinstance(page.body, bytes)
    assert b"<li><b>Ann</b>: &lt;b&gt;hi</li>" in page.body
    with pytest.raises(HttpError) as refused:
        app.handle(Request("POST", "/guestbook", "/guestbook", body=b"name=&message=x"), ctx)
    assert refused.value.status == 400
    assert isinstance(Response.text("x"), Response)
