"""A sample card application: the card's facts (ICCID, uptime), the site's request counters
and a persistent visit counter.

Mounted on a prefix (say "/cardinfo"):

- ``GET /cardinfo`` (or ``/cardinfo/``): an HTML page in the demo site's style (``/style.css``);
  each GET counts one visit.
- ``GET /cardinfo/json``: the same as JSON; also counts a visit.
- ``GET /cardinfo/log?lines=N``: a plain-text log of N lines (default 100, at most 10000),
  produced line by line as the card sends it, so it goes out chunked to HTTP/1.1 clients.
- ``POST /cardinfo/reset``: sets the counter back to zero, then redirects (303) to the page.
- ``HEAD`` of either page shows the current count without counting a visit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html import escape
from urllib.parse import parse_qs

from openscws.errors import HttpError
from openscws.scws.apps import AppContext, Request, Response

__all__ = ["CardInfoApp"]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} &middot; Smart Card Web Server</title>
  <link rel="stylesheet" href="/style.css">
</head>
<body>
  <header class="hero">
    <div>
      <h1>{title}</h1>
      <p class="lead">Made just now by a card application, inside the SIM card.</p>
    </div>
  </header>

  <main>
    <section class="card">
      <h2>The card</h2>
      <table class="facts">
{rows}
        <tr><th>Uptime</th><td id="uptime">{uptime}</td></tr>
      </table>
    </section>

    <section class="card">
      <h2>Requests since the card started</h2>
      <table class="facts">
        <tr><th>All requests</th><td id="requests">{requests}</td></tr>
        <tr><th>Over HTTPS</th><td id="https">{https}</td></tr>
        <tr><th>To card applications</th><td id="applications">{applications}</td></tr>
        <tr><th>Answered 304 Not Modified</th><td id="not-modified">{not_modified}</td></tr>
        <tr><th>Refused (4xx, 5xx)</th><td id="errors">{errors}</td></tr>
      </table>
      <p>Visits to this page, kept in the card image: <strong id="visits">{visits}</strong></p>
      <form method="post" action="{reset}">
        <button type="submit">Reset the visit counter</button>
      </form>
    </section>

    <p><a href="/index.html">&larr; Back to the home page</a></p>
  </main>
</body>
</html>
"""


def format_uptime(seconds: float) -> str:
    """ "3 d 04:05:06", or "04:05:06" under a day."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} d {clock}" if days else clock


class CardInfoApp:
    """Shows `AppContext.card`, the uptime and request counters of `AppContext.counters`, and
    counts visits in the store (key "<prefix>/visits")."""

    methods = frozenset({"GET", "POST"})

    def __init__(self, title: str = "Card information") -> None:
        self.title = title

    @staticmethod
    def _key(ctx: AppContext) -> str:
        return f"{ctx.prefix}/visits"

    def _visits(self, ctx: AppContext) -> int:
        raw = ctx.get_value(self._key(ctx))
        try:
            return int(raw) if raw else 0
        except ValueError:
            return 0

    def handle(self, request: Request, ctx: AppContext) -> Response:
        sub = request.path[len(ctx.prefix) :].strip("/") if ctx.prefix != "/" else ""
        if request.method == "POST":
            if sub != "reset":
                raise HttpError(404, "no such action")
            ctx.set_value(self._key(ctx), b"0")
            return Response(303, (("Location", ctx.prefix), ("Content-Length", "0")))
        if sub == "log":
            return self._log(request, ctx)
        if sub not in ("", "json"):
            raise HttpError(404, "no such page")
        visits = self._visits(ctx)
        if request.method == "GET":
            visits += 1
            ctx.set_value(self._key(ctx), str(visits).encode("ascii"))
        headers = (("Cache-Control", "no-store"),)
        c = ctx.counters
        uptime = c.uptime(ctx.now)
        requests = {
            "requests": c.requests,
            "https": c.https,
            "applications": c.applications,
            "not_modified": c.not_modified,
            "errors": c.errors,
        }
        if sub == "json":
            doc = {
                "card": dict(ctx.card),
                "uptime_seconds": int(uptime),
                "requests": requests,
                "visits": visits,
            }
            return Response.json(json.dumps(doc, sort_keys=True), headers=headers)
        rows = "\n".join(
            f"        <tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
            for k, v in sorted(ctx.card.items())
        )
        page = _PAGE.format(
            title=escape(self.title),
            rows=rows,
            uptime=format_uptime(uptime),
            visits=visits,
            reset=escape(ctx.prefix.rstrip("/") + "/reset"),
            **requests,
        )
        return Response.html(page, headers=headers)

    def _log(self, request: Request, ctx: AppContext) -> Response:
        try:
            lines = int(parse_qs(request.query).get("lines", ["100"])[0])
        except ValueError:
            raise HttpError(400, "lines must be a number") from None
        if not 0 <= lines <= 10_000:
            raise HttpError(400, "lines must be between 0 and 10000")
        iccid = ctx.card.get("ICCID", "?")

        def produce() -> Iterator[bytes]:
            # A body of unknown length, made as it is sent: the engine frames it chunked.
            for i in range(1, lines + 1):
                yield f"{i:05d} card {iccid}: line {i} of {lines}\n".encode("ascii")

        return Response(
            200,
            (("Content-Type", "text/plain; charset=us-ascii"), ("Cache-Control", "no-store")),
            produce(),
        )
