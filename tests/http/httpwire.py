"""Test helpers: a card site in memory, raw requests in, responses parsed by h11's client."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import h11

from openscws.errors import HttpError
from openscws.http import CardLimits, HttpServerConnection, RamBudget
from openscws.scws.apps import AppContext, Request, Response
from openscws.scws.model import MemoryStore, Realm, Resource
from openscws.scws.sample_app import CardInfoApp
from openscws.scws.site import Site

NOW = 1_700_000_000.0
"""Tue, 14 Nov 2023 22:13:20 GMT"""
NOW_DATE = "Tue, 14 Nov 2023 22:13:20 GMT"
LAST_MODIFIED = 1_600_000_000  # Sun, 13 Sep 2020 12:26:40 GMT
LAST_MODIFIED_DATE = "Sun, 13 Sep 2020 12:26:40 GMT"
INDEX = b"<!DOCTYPE html><title>SCWS</title><p>Hello from the card</p>\n"
SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "http-auth@example.org"
USER, PASSWORD = "Mufasa", "Circle of Life"
CARD = {"ICCID": "8944500102198304826", "IMSI": "001010123456789"}

TEST_LIMITS = CardLimits(
    max_request_target=256,
    max_header_bytes=1024,
    max_body=1024,
    ram_budget=4096,
    max_pipeline_bytes=512,
)


class EchoApp:
    """POST echoes the body; GET /x/stream streams numbered chunks; GET /x/boom fails."""

    methods = frozenset({"GET", "POST", "PUT"})

    def handle(self, request: Request, ctx: AppContext) -> Response:
        sub = request.path[len(ctx.prefix) :]
        if sub == "/stream":
            return Response(200, (("Content-Type", "text/plain"),), _chunks(5))
        if sub == "/boom":
            raise RuntimeError("application bug")
        if sub == "/teapot":
            raise HttpError(418, "short and stout")
        if sub == "/badheader":
            return Response(200, (("X-Bad", "a\r\nInjected: yes"),), b"x")
        if sub == "/badstream":
            return Response(200, (), _failing())
        if sub == "/user":
            return Response.text(request.user or "-")
        return Response(
            200,
            (("Content-Type", "application/octet-stream"), ("X-Query", request.query)),
            request.body,
        )


def _chunks(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield f"chunk {i}\n".encode()


def _failing() -> Iterator[bytes]:
    yield b"first"
    raise RuntimeError("stream bug")


def make_site(**kwargs: object) -> Site:
    store = MemoryStore()
    store.put(Resource("/index.html", INDEX, "text/html; charset=utf-8", LAST_MODIFIED))
    store.put(Resource("/style.css", b"body{}", "text/css"))
    store.put(Resource("/docs/index.html", b"<p>docs</p>", "text/html"))
    store.put(Resource("/dir/index.html", b"<p>protected</p>", "text/html", realm=REALM))
    store.put(Resource("/basic.html", b"<p>basic</p>", "text/html", realm="basic-only"))
    store.put(Resource("/orphan.html", b"<p>?</p>", "text/html", realm="missing"))
    store.put_realm(Realm(REALM, {USER: PASSWORD}))
    store.put_realm(Realm("basic-only", {"alice": "sëcret"}, schemes=("Basic",)))
    kwargs.setdefault("secret", SECRET)
    site = Site(store, card=CARD, **kwargs)  # type: ignore[arg-type]
    site.register_app("/echo", EchoApp())
    site.register_app("/cardinfo", CardInfoApp())
    site.register_app("/admin/echo", EchoApp(), realm=REALM)
    return site


def make_conn(
    site: Site | None = None, limits: CardLimits = TEST_LIMITS, budget: RamBudget | None = None
) -> HttpServerConnection:
    return HttpServerConnection(
        site or make_site(), limits, budget or RamBudget.for_limits(limits), now=NOW
    )


@dataclass
class Parsed:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    interim: list[int] = field(default_factory=list)
    http_version: str = "1.1"

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


def parse_responses(raw: bytes, methods: Sequence[str], *, eof: bool = False) -> list[Parsed]:
    """Parse one response per entry of `methods` (the request method each answers), in
    order, with h11's client side; all of `raw` must be consumed."""
    rest = raw
    out: list[Parsed] = []
    for i, method in enumerate(methods):
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "card")]))
        client.send(h11.EndOfMessage())
        client.receive_data(rest)
        if eof and i == len(methods) - 1:
            client.receive_data(b"")
        parsed: Parsed | None = None
        interim: list[int] = []
        while True:
            event = client.next_event()
            if isinstance(event, h11.InformationalResponse):
                interim.append(event.status_code)
            elif isinstance(event, h11.Response):
                parsed = Parsed(
                    event.status_code,
                    [(n.decode(), v.decode("latin-1")) for n, v in event.headers],
                    interim=interim,
                    http_version=event.http_version.decode(),
                )
            elif isinstance(event, h11.Data):
                assert parsed is not None
                parsed.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"incomplete response {i}: {event!r}; rest={rest!r}")
        assert parsed is not None
        out.append(parsed)
        rest = client.trailing_data[0]
    assert rest == b"", f"unparsed output: {rest!r}"
    return out


def exchange(
    conn: HttpServerConnection,
    data: bytes,
    methods: Sequence[str],
    *,
    now: float = NOW,
    split: int | None = None,
    eof: bool = False,
) -> list[Parsed]:
    """Feed `data` (whole, or in pieces of `split` bytes), then parse the answers."""
    if split is None:
        conn.receive_data(data, now)
    else:
        for i in range(0, len(data), split):
            conn.receive_data(data[i : i + split], now)
    return parse_responses(conn.data_to_send(), methods, eof=eof)


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: card", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = get(path, f"Content-Length: {len(body)}", *headers, method="POST")
    return head + body
