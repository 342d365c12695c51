"""The DM server's console: server-rendered pages on the DM server's HTTPS port under
``/console``, behind the admin server's accounts (`ras.accounts.Accounts`: the same users,
roles, console sessions and audit trail as the admin and BSM consoles).

    GET  /console/login        the login form
    POST /console/login        name and password; a session cookie (HttpOnly, Secure,
                               SameSite=Strict) and a redirect to /console
    POST /console/logout       ends the session
    GET  /console              viewer    the devices (no secret) and the jobs, newest first
    GET  /console/jobs/{id}    viewer    one job: its commands, state and stored results
    POST /console/jobs         operator  a new job, as POST /api/v1/dm/jobs makes it (with
                                         the device's Package #0 by SMS when the server has
                                         a notifier); the form carries the session's CSRF
                                         token

Without a session a page redirects to the login form (a POST gets 401); a role too low gets
403, so does a POST without the session's CSRF token or from a foreign Origin; a Host not of
this server gets 421. Pages run no script and load nothing (CSP ``default-src 'none'``),
may not be framed, are not cached; every value shown is HTML-escaped. Logins, logouts and
job creations, allowed or refused, go into the admin server's audit trail."""

from __future__ import annotations

import hmac
import html
import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, unquote

from openscws.dm.db import JOB_OPS, JobInfo
from openscws.ras.accounts import SESSION_TTL, Accounts, LoginThrottle, Principal
from openscws.ras.api_auth import SESSION_COOKIE, host_name
from openscws.ras.db import NotFound, RasError
from openscws.ras.models import Role

if TYPE_CHECKING:
    from openscws.dm.api import DmApi
    from openscws.dm.server import DmAnswer, DmRequest

__all__ = ["CONSOLE_PATH", "DmConsole"]

CONSOLE_PATH: Final = "/console"
MAX_FORM: Final = 64 * 1024
MAX_JOBS_SHOWN: Final = 500
CSRF_FIELD: Final = "csrf"
_FORM_TYPE: Final = "application/x-www-form-urlencoded"
_CSP: Final = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
_SECURITY: Final = (
    ("Content-Security-Policy", _CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
_DEVICE_HEADINGS: Final = (
    "DevId", "AppAuth", "user name", "ServerID", "HTTP auth", "HTTP user",
    "client certificate SHA-256", "PSK identity", "MSISDN",
)  # fmt: skip
_LOGIN_FORM: Final = (
    f'<form method="post" action="{CONSOLE_PATH}/login">'
    '<label>User <input name="name" autocomplete="username" required></label> '
    '<label>Password <input name="password" type="password" '
    'autocomplete="current-password" required></label> '
    '<button type="submit">Log in</button></form>'
)


def _e(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _table(headings: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A table; the cells come HTML-escaped (or as markup made here)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class DmConsole:
    """Answers the console's requests (thread-safe; the database blocks, so the DM server's
    shell calls it in a worker thread). `hosts`: the names accepted in Host."""

    def __init__(
        self,
        api: DmApi,
        accounts: Accounts,
        hosts: Iterable[str],
        *,
        throttle: LoginThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.accounts = accounts
        self.hosts = frozenset(h.lower() for h in hosts)
        self.throttle = throttle or LoginThrottle()
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def owns(path: str) -> bool:
        path = path.partition("?")[0]
        return path == "/" or path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")

    # -- HTTP --

    def handle(self, req: DmRequest) -> DmAnswer:
        host = req.headers.get("host", "")
        if not self._host_ok(host):
            return self._page(
                "DM console", "<p>Not a host name of this server.</p>", 421, audit=None
            )
        path = req.path.partition("?")[0]
        parts = [unquote(p) for p in path.removeprefix(CONSOLE_PATH).split("/") if p]
        if path == "/":
            return self._redirect(CONSOLE_PATH)
        match req.method, parts:
            case "GET", ["login"]:
                return self._page("DM console: log in", _LOGIN_FORM)
            case "POST", ["login"]:
                return self._login(req)
            case "POST", ["logout"]:
                return self._logout(req)
            case "GET", []:
                return self._read(req, self._overview)
            case "GET", ["jobs", job_id]:
                return self._read(req, lambda p: self._job_page(p, job_id))
            case "POST", ["jobs"]:
                return self._create(req)
            case _, ["login"] | ["logout"] | [] | ["jobs"] | ["jobs", _]:
                return self._page("DM console", "<p>Method not allowed.</p>", 405)
        return self._page("DM console", "<p>No such page.</p>", 404)

    def _host_ok(self, host: str) -> bool:
        name = host_name(host)
        return bool(name) and name in self.hosts

    def _same_origin(self, req: DmRequest) -> bool:
        """The POST's Origin is this server's (a browser sends Origin with every POST)."""
        origin = req.headers.get("origin")
        return origin is None or origin.lower() == f"https://{req.headers.get('host', '')}".lower()

    def _principal(self, req: DmRequest) -> Principal | None:
        cookie = _cookie(req.headers.get("cookie", ""), SESSION_COOKIE)
        return None if cookie is None else self.accounts.session(cookie)

    # -- pages --

    def _page(
        self,
        title: str,
        body: str,
        status: int = 200,
        *extra: tuple[str, str],
        audit: tuple[DmRequest, str, str, str] | None = None,
    ) -> DmAnswer:
        from openscws.dm.server import DmAnswer

        if audit is not None:
            req, actor, action, target = audit
            self.accounts.audit(actor, action, target, str(status), address=req.peer)
        page = _PAGE.format(title=_e(title), body=body).encode()
        headers = (("Content-Type", "text/html; charset=utf-8"), *_SECURITY, *extra)
        return DmAnswer(status, headers, page)

    def _redirect(self, where: str, *extra: tuple[str, str]) -> DmAnswer:
        from openscws.dm.server import DmAnswer

        return DmAnswer(303, (("Location", where), *_SECURITY, *extra))

    def _read(self, req: DmRequest, render: Callable[[Principal], DmAnswer]) -> DmAnswer:
        principal = self._principal(req)
        if principal is None:
            return self._redirect(f"{CONSOLE_PATH}/login")
        return render(principal)

    def _head(self, principal: Principal) -> str:
        return (
            f"<p>{_e(principal.user)} ({_e(principal.role.value)}). "
            f'<a href="{CONSOLE_PATH}">Devices and jobs</a></p>'
            f'<form method="post" action="{CONSOLE_PATH}/logout">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(principal.csrf_token)}">'
            '<button type="submit">Log out</button></form>'
        )

    def _overview(self, principal: Principal) -> DmAnswer:
        store = self.api.store
        devices = store.devices()
        device_rows = (
            (
                _e(d.dev_id), _e(d.app_auth), _e(d.app_username), _e(d.server_id),
                _e(d.http_auth), _e(d.http_username), _e(d.cert_sha256), _e(d.psk_identity),
                _e(d.msisdn),
            )
            for d in devices
        )  # fmt: skip
        jobs = sorted(store.jobs(), key=lambda j: j.id, reverse=True)[:MAX_JOBS_SHOWN]
        job_rows = (
            (
                f'<a href="{CONSOLE_PATH}/jobs/{j.id}">{j.id}</a>',
                _e(j.dev_id),
                _e(j.state),
                _e(" ".join(f"{c['op']} {c['uri']}" for c in j.commands)),
                _e(_when(j.created_ms)),
                _e(_when(j.finished_ms)),
            )
            for j in jobs
        )
        body = (
            self._head(principal)
            + "<h2>Devices</h2>"
            + _table(_DEVICE_HEADINGS, device_rows)
            + f"<h2>Jobs (newest {MAX_JOBS_SHOWN})</h2>"
            + _table(("job", "DevId", "state", "commands", "created", "finished"), job_rows)
        )
        if principal.role.rank >= Role.OPERATOR.rank:
            body += self._job_form(principal, [d.dev_id for d in devices])
        return self._page("DM console", body)

    def _job_form(self, principal: Principal, dev_ids: list[str]) -> str:
        options = "".join(f'<option value="{_e(d)}">{_e(d)}</option>' for d in dev_ids)
        return (
            "<h2>New job</h2>"
            f'<form method="post" action="{CONSOLE_PATH}/jobs">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{_e(principal.csrf_token)}">'
            f'<label>Device <select name="dev_id" required>{options}</select></label><br>'
            "<label>Commands, one a line: OP URI [DATA], OP one of "
            f"{_e(', '.join(JOB_OPS))}<br>"
            '<textarea name="commands" rows="6" cols="80" required></textarea></label><br>'
            '<button type="submit">Create the job</button></form>'
        )

    def _job_page(self, principal: Principal, job_id: str) -> DmAnswer:
        job = self.api.store.job(int(job_id)) if job_id.isdigit() else None
        if job is None:
            return self._page(
                "DM console", self._head(principal) + f"<p>No job {_e(job_id)}.</p>", 404
            )
        return self._page(f"DM job {job.id}", self._head(principal) + _job_body(job))

    # -- changes --

    def _form(self, req: DmRequest) -> dict[str, str] | str:
        """The form's fields, or why it is refused."""
        if req.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM_TYPE:
            return "Send the form."
        if len(req.body) > MAX_FORM:
            return "The form is too large."
        raw = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in raw.items()}

    def _login(self, req: DmRequest) -> DmAnswer:
        title = "DM console: log in"
        form = self._form(req)
        name = form.get("name", "")[:64] if isinstance(form, dict) else ""
        audit = (req, name or "-", "dm.console.login", CONSOLE_PATH)
        if not self._same_origin(req):
            return self._page(title, "<p>Cross-origin login refused.</p>", 403, audit=audit)
        if isinstance(form, str):
            return self._page(title, f"<p>{_e(form)}</p>{_LOGIN_FORM}", 415, audit=audit)
        with self._lock:
            wait = self.throttle.locked_for(name, req.peer, self.clock())
        if wait > 0:
            text = f"<p>Too many failed logins: try again in {math.ceil(wait)} s.</p>"
            retry = ("Retry-After", str(math.ceil(wait)))
            return self._page(title, text + _LOGIN_FORM, 429, retry, audit=audit)
        user = self.accounts.check_password(name, form.get("password", ""))
        if user is None:
            with self._lock:
                self.throttle.failed(name, req.peer, self.clock())
            text = "<p>Wrong user name or password.</p>"
            return self._page(title, text + _LOGIN_FORM, 401, audit=audit)
        with self._lock:
            self.throttle.succeeded(name)
        cookie, _csrf = self.accounts.open_session(user.name, req.peer)
        self.accounts.audit(user.name, "dm.console.login", CONSOLE_PATH, "303", address=req.peer)
        ttl = int(SESSION_TTL.total_seconds())
        set_cookie = (
            f"{SESSION_COOKIE}={cookie}; Path={CONSOLE_PATH}; Max-Age={ttl}; "
            "HttpOnly; Secure; SameSite=Strict"
        )
        return self._redirect(CONSOLE_PATH, ("Set-Cookie", set_cookie))

    def _checked(
        self, req: DmRequest, action: str, need: Role
    ) -> tuple[Principal, dict[str, str]] | DmAnswer:
        """The session and form of a POST, or the page refusing it (audited)."""
        principal = self._principal(req)
        actor = "-" if principal is None else principal.actor
        audit = (req, actor, action, req.path.partition("?")[0])
        if principal is None:
            text = f'<p>Log in first: <a href="{CONSOLE_PATH}/login">log in</a>.</p>'
            return self._page("DM console", text, 401, audit=audit)
        form = self._form(req)
        sent = form.get(CSRF_FIELD, "") if isinstance(form, dict) else ""
        if not self._same_origin(req) or not hmac.compare_digest(
            sent.encode(), (principal.csrf_token or "").encode()
        ):
            text = "<p>Refused: a cross-site request or a stale form (reload the page).</p>"
            return self._page("DM console", text, 403, audit=audit)
        if isinstance(form, str):
            return self._page("DM console", f"<p>{_e(form)}</p>", 415, audit=audit)
        if principal.role.rank < need.rank:
            text = f"<p>This needs the {_e(need.value)} role.</p>"
            return self._page("DM console", text, 403, audit=audit)
        return principal, form

    def _logout(self, req: DmRequest) -> DmAnswer:
        checked = self._checked(req, "dm.console.logout", Role.VIEWER)
        if not isinstance(checked, tuple):
            return checked
        principal, _ = checked
        cookie = _cookie(req.headers.get("cookie", ""), SESSION_COOKIE)
        if cookie is not None:
            self.accounts.close_session(cookie)
        self.accounts.audit(
            principal.actor, "dm.console.logout", CONSOLE_PATH, "303", address=req.peer
        )
        gone = (
            f"{SESSION_COOKIE}=; Path={CONSOLE_PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        )
        return self._redirect(f"{CONSOLE_PATH}/login", ("Set-Cookie", gone))

    def _create(self, req: DmRequest) -> DmAnswer:
        checked = self._checked(req, "dm.console.job", Role.OPERATOR)
        if not isinstance(checked, tuple):
            return checked
        principal, form = checked
        dev_id = form.get("dev_id", "")
        audit = (req, principal.actor, "dm.console.job", dev_id)
        try:
            commands = parse_commands(form.get("commands", ""))
            job, notice = self.api.create_job(dev_id, commands)
        except NotFound as exc:
            note = f"<p>Refused: {_e(exc)}</p>"
            return self._page("DM console", self._head(principal) + note, 404, audit=audit)
        except (ValueError, RasError) as exc:
            note = f"<p>Refused: {_e(exc)}</p>"
            return self._page("DM console", self._head(principal) + note, 422, audit=audit)
        self.accounts.audit(
            principal.actor, "dm.console.job", f"{dev_id} job {job.id}", "201", address=req.peer
        )
        note = self._head(principal) + f"<p>Job {job.id} created.</p>"
        if notice is not None:
            note += (
                f"<p>Package #0 by SMS: {_e(notice.status)}"
                + (f" ({_e(notice.detail)})" if notice.detail else "")
                + "</p>"
            )
        return self._page(f"DM job {job.id}", note + _job_body(job), 201)


def _job_body(job: JobInfo) -> str:
    commands = _table(
        ("#", "op", "URI", "data"),
        (
            (str(i), _e(c["op"]), _e(c["uri"]), _e(c.get("data")))
            for i, c in enumerate(job.commands, 1)
        ),
    )
    results = _table(
        ("op", "URI", "status", "data"),
        (
            (_e(r.get("op")), _e(r.get("uri")), _e(r.get("status")), _e(r.get("data")))
            for r in job.results
        ),
    )
    return (
        f"<p>Device {_e(job.dev_id)}, state {_e(job.state)}, created {_e(_when(job.created_ms))}, "
        f"finished {_e(_when(job.finished_ms))}.</p>"
        f"<h2>Commands</h2>{commands}<h2>Results</h2>{results}"
    )


def parse_commands(text: str) -> list[dict[str, str | None]]:
    """The console's command lines, ``OP URI [DATA]`` one a line (DATA: the rest of the
    line), as the REST API's ``commands``; `dm.db.check_commands` checks them further."""
    out: list[dict[str, str | None]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        op, _, rest = line.strip().partition(" ")
        uri, _, data = rest.strip().partition(" ")
        out.append({"op": op, "uri": uri, "data": data if data else None})
    return out


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None
