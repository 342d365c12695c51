"""The DM server's REST API, on the DM server's HTTPS port under ``/api/v1/dm/``, with the
admin server's API tokens (`Authorization: Bearer oscws_...`, `ras.accounts.Accounts`): a
token of a viewer reads, an operator also creates jobs, an admin also adds and removes
devices. JSON in and out; device secrets go in and never come out.

    GET    /api/v1/dm/devices                  viewer    the devices (no secret)
    POST   /api/v1/dm/devices                  admin     add one (201)
    DELETE /api/v1/dm/devices/{dev_id}         admin     remove one and its jobs (204)
    GET    /api/v1/dm/jobs[?dev_id=...]        viewer    the jobs
    POST   /api/v1/dm/jobs                     operator  {"dev_id", "commands": [...]} (201);
                                                         with a notifier, the device's
                                                         Package #0 goes out by SMS and
                                                         "notification" says how it went
    GET    /api/v1/dm/jobs/{id}                viewer    one job with its results

Errors are RFC 9457 problem documents (`application/problem+json`) with the HTTP status."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote

from openscws.dm.db import APP_AUTH, DmStore, JobInfo
from openscws.dm.db_models import HttpAuth
from openscws.ras.db import Conflict, NotFound, RasError
from openscws.ras.models import Role

if TYPE_CHECKING:
    from openscws.dm.server import DmAnswer, DmRequest
    from openscws.dm.server_notify import Notice, Notifier
    from openscws.ras.accounts import Accounts

__all__ = ["API_PREFIX", "DmApi"]

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1/dm/"
MAX_JSON: Final = 256 * 1024


class _Problem(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _json(status: int, value: object) -> DmAnswer:
    from openscws.dm.server import DmAnswer

    body = json.dumps(value, indent=None).encode()
    return DmAnswer(status, (("Content-Type", "application/json"),), body)


def _problem(status: int, detail: str, *extra: tuple[str, str]) -> DmAnswer:
    from openscws.dm.server import DmAnswer

    body = json.dumps({"status": status, "title": detail}).encode()
    return DmAnswer(status, (("Content-Type", "application/problem+json"), *extra), body)


class DmApi:
    def __init__(
        self, store: DmStore, accounts: Accounts, notifier: Notifier | None = None
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.notifier = notifier

    def handle(self, req: DmRequest) -> DmAnswer:
        """The answer; a state-changing request, allowed or refused, goes into the admin
        server's audit trail (who, what, the HTTP status)."""
        answer, actor = self._answer(req)
        if req.method not in ("GET", "HEAD"):
            path = req.path.partition("?")[0]
            self.accounts.audit(actor, f"dm {req.method}", path, str(answer.status))
        return answer

    def _answer(self, req: DmRequest) -> tuple[DmAnswer, str]:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        principal = (
            self.accounts.authenticate_token(token.strip()) if scheme.lower() == "bearer" else None
        )
        if principal is None:
            return _problem(401, "an API token is needed", ("WWW-Authenticate", "Bearer")), "-"
        actor = principal.actor
        path, _, query = req.path.partition("?")
        parts = [unquote(p) for p in path.removeprefix(API_PREFIX).split("/") if p]
        try:
            need, run = self._route(req.method, parts, parse_qs(query), req.body)
            if principal.role.rank < need.rank:
                return _problem(403, f"this needs the {need} role"), actor
            return run(), actor
        except _Problem as p:
            return _problem(p.status, p.detail), actor
        except NotFound as exc:
            return _problem(404, str(exc)), actor
        except Conflict as exc:
            return _problem(409, str(exc)), actor
        except (ValueError, RasError) as exc:
            return _problem(422, str(exc)), actor

    def _route(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: bytes
    ) -> tuple[Role, Callable[[], DmAnswer]]:
        match method, parts:
            case "GET", ["devices"]:
                return Role.VIEWER, lambda: _json(200, [d.as_dict() for d in self.store.devices()])
            case "POST", ["devices"]:
                return Role.ADMIN, lambda: self._add_device(_body(body))
            case "DELETE", ["devices", dev_id]:
                return Role.ADMIN, lambda: self._remove(dev_id)
            case "GET", ["jobs"]:
                dev = query.get("dev_id", [None])[0]
                return Role.VIEWER, lambda: _json(200, [j.as_dict() for j in self.store.jobs(dev)])
            case "POST", ["jobs"]:
                return Role.OPERATOR, lambda: self._create_job(_body(body))
            case "GET", ["jobs", job_id]:
                return Role.VIEWER, lambda: self._job(job_id)
            case _, ["devices"] | ["devices", _] | ["jobs"] | ["jobs", _]:
                raise _Problem(405, f"{method} is not allowed here")
        raise _Problem(404, "no such resource")

    def _remove(self, dev_id: str) -> DmAnswer:
        from openscws.dm.server import DmAnswer

        self.store.remove_device(dev_id)
        return DmAnswer(204)

    def _job(self, job_id: str) -> DmAnswer:
        job = self.store.job(int(job_id)) if job_id.isdigit() else None
        if job is None:
            raise _Problem(404, f"no job {job_id}")
        return _json(200, job.as_dict())

    def _create_job(self, doc: dict[str, Any]) -> DmAnswer:
        dev_id = doc.get("dev_id")
        if not isinstance(dev_id, str):
            raise _Problem(422, "dev_id: a string")
        job, notice = self.create_job(dev_id, doc.get("commands"))
        out = job.as_dict()
        if notice is not None:
            out["notification"] = notice.as_dict()
        return _json(201, out)

    def create_job(self, dev_id: str, commands: object) -> tuple[JobInfo, Notice | None]:
        """A new job of `dev_id` (its commands checked by `dm.db.check_commands`) and, with a
        notifier, what became of its Package #0 (the REST API and the console both create
        jobs here). NotFound for an unknown device, ValueError for bad commands."""
        job = self.store.create_job(dev_id, commands)
        return job, None if self.notifier is None else self.notifier.notify(job)

    def _add_device(self, doc: dict[str, Any]) -> DmAnswer:
        allowed = {
            "dev_id", "app_auth", "app_username", "app_password", "server_id",
            "server_password", "server_auth", "http_auth", "http_username", "http_password",
            "cert_sha256", "psk_identity", "psk_key", "msisdn",
        }  # fmt: skip
        unknown = set(doc) - allowed
        if unknown:
            raise _Problem(422, f"unknown fields: {', '.join(sorted(unknown))}")
        for name in ("dev_id", "app_username", "app_password", "server_id", "server_password"):
            if not isinstance(doc.get(name), str):
                raise _Problem(422, f"{name}: a string")
        for name in allowed - {"psk_key"}:
            if doc.get(name) is not None and not isinstance(doc[name], str):
                raise _Problem(422, f"{name}: a string")
        app = APP_AUTH.get(doc.get("app_auth") or "md5")
        if app is None:
            raise _Problem(422, f"app_auth: one of {', '.join(APP_AUTH)}")
        server = doc.get("server_auth")
        if server is not None and server not in APP_AUTH:
            raise _Problem(422, f"server_auth: one of {', '.join(APP_AUTH)}")
        try:
            http = HttpAuth(doc.get("http_auth") or "none")
        except ValueError:
            raise _Problem(422, f"http_auth: one of {', '.join(HttpAuth)}") from None
        psk: bytes | None = None
        if doc.get("psk_key") is not None:
            try:
                psk = base64.b64decode(str(doc["psk_key"]), validate=True)
            except binascii.Error:
                raise _Problem(422, "psk_key: base64") from None
        info = self.store.add_device(
            doc["dev_id"],
            app_auth=app,
            app_username=doc["app_username"],
            app_password=doc["app_password"],
            server_id=doc["server_id"],
            server_password=doc["server_password"],
            server_auth=None if server is None else APP_AUTH[server],
            http_auth=http,
            http_username=doc.get("http_username"),
            http_password=doc.get("http_password"),
            cert_sha256=doc.get("cert_sha256"),
            psk_identity=doc.get("psk_identity"),
            psk_key=psk,
            msisdn=doc.get("msisdn"),
        )
        return _json(201, info.as_dict())


def _body(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_JSON:
        raise _Problem(413, "body too large")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Problem(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise _Problem(400, "the body is a JSON object")
    return doc
