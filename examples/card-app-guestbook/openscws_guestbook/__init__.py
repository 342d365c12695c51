"""A guest book inside the SIM card: an openscws card application (docs/card-apps.md).

GET /guestbook: the form and the latest entries. POST /guestbook (a form: name, message):
stores the entry in the card and redirects (303) back to the page."""

from __future__ import annotations

import json
from html import escape
from urllib.parse import parse_qs

from openscws.cardapp import Context, HttpError, Request, Response

__all__ = ["Guestbook"]

KEPT = 20
"""Entries the card keeps (the oldest go): a card's storage is small."""
MAX_NAME = 40
MAX_MESSAGE = 280

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Guest book</title>
</head>
<body>
  <h1>Guest book</h1>
  <p>Kept inside the SIM card: {count} entries.</p>
  <form method="post" action="{action}">
    <label>Name <input name="name" maxlength="{max_name}" required></label>
    <label>Message <input name="message" maxlength="{max_message}" required></label>
    <button type="submit">Sign</button>
  </form>
  <ol id="entries">
{entries}
  </ol>
</body>
</html>
"""


class Guestbook:
    """The guest book on /guestbook; its entries are one JSON value, newest first."""

    prefix = "/guestbook"
    methods = frozenset({"GET", "POST"})

    def handle(self, request: Request, ctx: Context) -> Response:
        if request.path.rstrip("/") != ctx.prefix:
            raise HttpError(404, "no such page")
        entries = self._entries(ctx)
        if request.method == "POST":
            form = parse_qs(request.body.decode("utf-8", "replace"))
            name = form.get("name", [""])[0].strip()
            message = form.get("message", [""])[0].strip()
            if not name or not message:
                raise HttpError(400, "a name and a message, please")
            if len(name) > MAX_NAME or len(message) > MAX_MESSAGE:
                raise HttpError(400, "too long for the card")
            entries.insert(0, {"name": name, "message": message, "at": int(ctx.now)})
            ctx.values.set("entries", json.dumps(entries[:KEPT]).encode())
            return Response(303, (("Location", ctx.prefix),))
        items = "\n".join(
            f"    <li><b>{escape(str(e['name']))}</b>: {escape(str(e['message']))}</li>"
            for e in entries
        )
        page = PAGE.format(
            count=len(entries),
            action=escape(ctx.prefix),
            max_name=MAX_NAME,
            max_message=MAX_MESSAGE,
            entries=items,
        )
        return Response.html(page, headers=(("Cache-Control", "no-store"),))

    @staticmethod
    def _entries(ctx: Context) -> list[dict[str, object]]:
        raw = ctx.values.get("entries")
        if raw is None:
            return []
        loaded = json.loads(raw)
        return loaded if isinstance(loaded, list) else []
