"""The card's SCWS administration commands: what the admin agent does with each HTTP request an
administration session brings (`application/vnd.oma-scws-http-request`, the media type OMA
registered with IANA).

**This is our reading, not the OMA TS** (whose administration command clauses could not be
read): PUT, GET and DELETE of resources and deleting a whole directory are confirmed topics of
SCWS V1.1; the `/.scws/` namespace, the transaction header and the JSON bodies are our own
choices. The table below is the whole contract; each row is one entry of `_ADMIN_ROUTES` or a
branch of `ScwsAdminExecutor._resource`, so it is easy to adapt.

=========================================  =====================================  ==============
request                                    effect                                 answer
=========================================  =====================================  ==============
``PUT <path>`` + Content-Type (and         stage the resource, last_modified =    201 new,
Content-Encoding, Content-Language,        now; X-SCWS-Realm names its            204 replaced
X-SCWS-Realm: <name>; empty = public;      protection realm; Cache-Control is     400 bad
Cache-Control: the resource's policy)      the resource's cache policy            policy
``GET`` / ``HEAD <path>``                  read through the transaction           200 / 404
                                           (the staged view)
``DELETE <path>``                          stage the delete                       204 / 404
``DELETE <dir>/``                          delete the whole directory (V1.1)      204 +
                                                                                  X-SCWS-Deleted
                                                                                  / 404 if none
``PUT /.scws/realms/<name>`` JSON          stage the realm ("basic_https_only":   201 / 204
{"users": {"alice": "pw"},                 Basic neither offered nor taken on
"schemes": ["Digest", "Basic"]}            plain HTTP)
``DELETE /.scws/realms/<name>``            stage its removal                      204 / 404
``PUT /.scws/values/<key>`` raw body       a card application's setting           201 / 204
``DELETE /.scws/values/<key>``                                                    204 / 404
``PUT /.scws/acp`` JSON {"rules":         the SCWS access rules (see             204
[{"app", "ports", "paths", "access"}]}     `openscws.acp.document`), stored
(or the earlier [{"app", "allow"}])        as the ARA-M's rules (value
                                           "scws.acp", GP SEAC coding): the
                                           refresh tag changes
``PUT /.scws/keys`` JSON {"psk_identity",  stage new agent keys (the card's        204
"psk_key" hex, "kic": {"version", "key"},  secure area), applied by the commit
"kid": {...}}                              with the rest; the keys they replace
                                           stay valid until a trigger names the
                                           new PSK identity
``GET /.scws/resources``                   audit: JSON [{path, etag, length,      200
                                           content_type, realm}] (staged view)
``POST /.scws/commit``                     commit the transaction                 200 +
                                                                                  X-SCWS-
                                                                                  Transaction,
                                                                                  {"committed":
                                                                                  n}
``GET /.scws/transactions/<txid>``         was it committed?                      200 / 404
=========================================  =====================================  ==============

Transactions: every mutating command (and the commit) carries ``X-SCWS-Transaction: <txid>``
(1 to 64 of ``[A-Za-z0-9._-]``). The first one begins ``store.begin(txid)``; another txid
while one is open is 409. A commit of a txid the store already committed answers
``{"committed": 0, "already": true}`` and applies nothing, so a retried session never applies
twice. `end` without a commit (the session failed, or ended without committing) aborts: the
card stays as it was. n counts staged changes (a directory delete counts each resource).

Errors are answered in HTTP terms inside the embedded response, never raised: a path that is
not absolute and normalised (``..``, ``.``, empty segments, control characters, ``?``, ``#``,
backslash) or that the store refuses (`StoreError`) is 400, as are a missing Content-Type and
malformed JSON; a body over `max_resource` is 413; an unknown ``/.scws/`` path 404; a wrong
method 405 with Allow; a mutating command without a txid 428; a value key under ``scws.`` 403
(those are set by their own commands, as ``/.scws/acp``). A HEAD answer is framed on its own,
so its Content-Length is 0 (the ETag says what a GET would bring). Nothing under ``/.scws/`` is
ever stored as a resource. A resource may name a realm not (yet) defined: the SCWS refuses
access to it (403) until the realm exists, so scripts need no particular order."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from openscws.acp.document import DocumentError, from_document
from openscws.acp.rules import encode_rules
from openscws.agent.credentials import AGENT_FILE, AgentCredentials, KeyChange
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse, Headers
from openscws.errors import ConfigError, HttpError, StoreError
from openscws.http._dates import format_http_date
from openscws.http.cache import normalize_cache_control
from openscws.scws.model import (
    Realm,
    Resource,
    ResourceStore,
    SecretTransaction,
    StoreTransaction,
    TransactionalStore,
)
from openscws.scws.paths import path_problem
from openscws.uicc.aram import RULES_KEY

__all__ = [
    "ACP_KEY",
    "ADMIN_PREFIX",
    "DELETED_HEADER",
    "REALM_HEADER",
    "TRANSACTION_HEADER",
    "ScwsAdminExecutor",
]

logger = logging.getLogger(__name__)

ADMIN_PREFIX: Final = "/.scws"
"""Namespace of the admin objects; never a resource path."""
TRANSACTION_HEADER: Final = "X-SCWS-Transaction"
REALM_HEADER: Final = "X-SCWS-Realm"
DELETED_HEADER: Final = "X-SCWS-Deleted"
ACP_KEY: Final = RULES_KEY
"""Value key of the access rules the card's ARA-M serves (`openscws.uicc.aram`)."""
RESERVED_VALUE_PREFIX: Final = "scws."
"""Value keys the executor owns (written through their own commands only)."""

MAX_KEY_BYTES: Final = 256
_TXID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REALM_NAME: Final = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")
"""Printable ASCII without '"' and '\\': it goes in a quoted realm="..." parameter."""
_MEDIA_TYPE: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+/[-!#$%&'*+.^_`|~0-9A-Za-z]+(;.*)?")
_PRINTABLE: Final = re.compile(r"[\x20-\x7e]+")
_SCHEMES: Final = {"digest": "Digest", "basic": "Basic"}
_TEXT: Final = (("Content-Type", "text/plain; charset=utf-8"),)
_JSON: Final = "application/json"
_RESOURCE_ALLOW: Final = "GET, HEAD, PUT, DELETE"


def _refuse(status: int, reason: str, headers: Headers = ()) -> HttpError:
    return HttpError(status, reason, headers)


def _error(exc: HttpError) -> EmbeddedResponse:
    return EmbeddedResponse(exc.status, exc.headers + _TEXT, exc.reason.encode("utf-8", "replace"))


def _json(status: int, data: object, headers: Headers = ()) -> EmbeddedResponse:
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return EmbeddedResponse(status, (("Content-Type", _JSON), *headers), body)


def _decode_segment(text: str, what: str) -> str:
    if "%" in text:
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise _refuse(400, f"{what} is not UTF-8") from None
    return text


def _check_path(path: str) -> str:
    """`path` if a card resource path (openscws.scws.paths: absolute, normalised, a single
    trailing "/" for a directory), else 400 with the reason."""
    problem = path_problem(path)
    if problem is not None:
        raise _refuse(400, problem)
    return path


def _target_path(target: str) -> str:
    if "?" in target or "#" in target:
        raise _refuse(400, "no query or fragment in admin commands")
    return _check_path(_decode_segment(target, "path"))


def _load_json(req: EmbeddedRequest) -> Any:
    try:
        return json.loads(req.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse(400, "malformed JSON") from None


def _header_text(req: EmbeddedRequest, name: str) -> str | None:
    value = req.header(name)
    if value is not None and value and not _PRINTABLE.fullmatch(value):
        raise _refuse(400, f"{name} must be printable ASCII")
    return value


@dataclass(frozen=True, slots=True)
class _Route:
    """An admin object: its methods, and whether its name follows (e.g. /.scws/realms/x)."""

    allow: tuple[str, ...]
    named: bool


_ADMIN_ROUTES: Final = {
    "realms": _Route(("PUT", "DELETE"), named=True),
    "values": _Route(("PUT", "DELETE"), named=True),
    "acp": _Route(("PUT",), named=False),
    "keys": _Route(("PUT",), named=False),
    "resources": _Route(("GET",), named=False),
    "commit": _Route(("POST",), named=False),
    "transactions": _Route(("GET",), named=True),
}


class ScwsAdminExecutor:
    """Runs one session's SCWS admin commands against `store` (an `amdb.client.
    CommandExecutor`); see the module docstring. `max_resource` bounds each body kept;
    `now_fn`, if given, dates resources instead of the session's `now` (a card clock)."""

    def __init__(
        self,
        store: TransactionalStore,
        *,
        max_resource: int,
        now_fn: Callable[[], float] | None = None,
    ) -> None:
        if max_resource <= 0:
            raise ValueError("max_resource must be positive")
        self._store = store
        self._max = max_resource
        self._now_fn = now_fn
        self._tx: StoreTransaction | None = None
        self._staged = 0

    @property
    def transaction(self) -> str | None:
        """The txid of the open transaction, if any."""
        return None if self._tx is None else self._tx.txid

    # -- CommandExecutor --------------------------------------------------------------------

    def execute(self, request: EmbeddedRequest, now: float) -> EmbeddedResponse:
        try:
            path = _target_path(request.target)
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                return self._admin(request, path[len(ADMIN_PREFIX) + 1 :])
            return self._resource(request, path, now)
        except HttpError as exc:
            return _error(exc)
        except StoreError as exc:
            return _error(_refuse(400, f"refused by the store: {exc}"))

    def end(self, ok: bool) -> None:
        """Abort whatever was not committed (on success too: an uncommitted change is void)."""
        txid = self._abort()
        if txid is not None:
            logger.info("admin session ended (ok=%s): transaction %s aborted", ok, txid)

    # -- transactions -----------------------------------------------------------------------

    def _abort(self) -> str | None:
        tx, self._tx, self._staged = self._tx, None, 0
        if tx is None:
            return None
        tx.abort()
        return tx.txid

    @property
    def _view(self) -> ResourceStore | StoreTransaction:
        return self._store if self._tx is None else self._tx

    @staticmethod
    def _txid(req: EmbeddedRequest) -> str:
        txid = req.header(TRANSACTION_HEADER)
        if txid is None:
            raise _refuse(428, f"{TRANSACTION_HEADER} required")
        if not _TXID.fullmatch(txid):
            raise _refuse(400, f"malformed {TRANSACTION_HEADER}")
        return txid

    def _begin(self, req: EmbeddedRequest) -> StoreTransaction:
        txid = self._txid(req)
        tx = self._tx
        if tx is None:
            tx = self._tx = self._store.begin(txid)
            self._staged = 0
        elif tx.txid != txid:
            raise _refuse(409, f"transaction {tx.txid} is open")
        return tx

    def _commit(self, req: EmbeddedRequest) -> EmbeddedResponse:
        txid = self._txid(req)
        tx = self._tx
        if tx is not None and tx.txid != txid:
            raise _refuse(409, f"transaction {tx.txid} is open")
        echo = ((TRANSACTION_HEADER, txid),)
        if self._store.committed(txid):
            self._abort()  # a retried session: its changes are in already
            return _json(200, {"committed": 0, "already": True}, echo)
        if tx is None:
            tx = self._store.begin(txid)  # nothing staged: still recorded as committed
        count, self._tx, self._staged = self._staged, None, 0
        try:
            tx.commit()
        except StoreError as exc:
            tx.abort()
            logger.error("commit of transaction %s failed: %s", txid, exc)
            raise _refuse(500, "commit failed") from None
        logger.info("transaction %s committed: %d changes", txid, count)
        return _json(200, {"committed": count}, echo)

    # -- resources --------------------------------------------------------------------------

    def _resource(self, req: EmbeddedRequest, path: str, now: float) -> EmbeddedResponse:
        match req.method:
            case "GET" | "HEAD":
                return self._read(path, head=req.method == "HEAD")
            case "PUT":
                return self._put(req, path, now)
            case "DELETE":
                return self._delete(req, path)
            case _:
                raise _refuse(405, f"{req.method} not allowed", (("Allow", _RESOURCE_ALLOW),))

    def _read(self, path: str, *, head: bool) -> EmbeddedResponse:
        resource = self._view.get(path)
        if resource is None:
            raise _refuse(404, "no such resource")
        headers = [("Content-Type", resource.content_type), ("ETag", resource.etag)]
        if resource.last_modified > 0:
            headers.append(("Last-Modified", format_http_date(resource.last_modified)))
        if resource.content_encoding:
            headers.append(("Content-Encoding", resource.content_encoding))
        if resource.content_language:
            headers.append(("Content-Language", resource.content_language))
        if resource.realm is not None:
            headers.append((REALM_HEADER, resource.realm))
        if resource.cache_control:
            headers.append(("Cache-Control", resource.cache_control))
        # An embedded message is framed on its own: a HEAD answer's Content-Length is 0.
        return EmbeddedResponse(200, tuple(headers), b"" if head else resource.body)

    def _put(self, req: EmbeddedRequest, path: str, now: float) -> EmbeddedResponse:
        if path.endswith("/"):
            raise _refuse(400, "a directory is not a resource")
        content_type = _header_text(req, "Content-Type")
        if not content_type or not _MEDIA_TYPE.fullmatch(content_type):
            raise _refuse(400, "Content-Type missing or malformed")
        encoding = _header_text(req, "Content-Encoding") or None
        language = _header_text(req, "Content-Language") or None
        realm = req.header(REALM_HEADER)
        if realm == "":
            realm = None
        elif realm is not None and not _REALM_NAME.fullmatch(realm):
            raise _refuse(400, f"malformed {REALM_HEADER}")
        cache_control = _header_text(req, "Cache-Control") or None
        if cache_control is not None:
            try:
                cache_control = normalize_cache_control(cache_control)
            except ValueError as exc:
                raise _refuse(400, str(exc)) from None
        self._check_size(req)
        tx = self._begin(req)
        clock = self._now_fn() if self._now_fn is not None else now
        resource = Resource(
            path,
            req.body,
            content_type,
            max(0, int(clock)),
            realm,
            content_encoding=encoding,
            content_language=language,
            cache_control=cache_control,
        )
        existed = tx.get(path) is not None
        tx.put(resource)
        self._staged += 1
        return EmbeddedResponse(204 if existed else 201, (("ETag", resource.etag),))

    def _delete(self, req: EmbeddedRequest, path: str) -> EmbeddedResponse:
        tx = self._begin(req)
        if path.endswith("/"):
            count = tx.delete_tree(path)
            if not count:
                raise _refuse(404, "no resource under that directory")
            self._staged += count
            return EmbeddedResponse(204, ((DELETED_HEADER, str(count)),))
        if not tx.delete(path):
            raise _refuse(404, "no such resource")
        self._staged += 1
        return EmbeddedResponse(204)

    def _check_size(self, req: EmbeddedRequest) -> None:
        if len(req.body) > self._max:
            raise _refuse(413, f"body over {self._max} bytes")

    # -- /.scws/ ----------------------------------------------------------------------------

    def _admin(self, req: EmbeddedRequest, rest: str) -> EmbeddedResponse:
        kind, slash, name = rest.partition("/")
        route = _ADMIN_ROUTES.get(kind)
        if route is None or route.named != bool(slash) or (route.named and not name):
            raise _refuse(404, "no such admin object")
        if req.method not in route.allow:
            allow = ", ".join(route.allow)
            raise _refuse(405, f"{req.method} not allowed", (("Allow", allow),))
        match kind:
            case "realms":
                return self._realm(req, name)
            case "values":
                return self._value(req, name)
            case "acp":
                return self._acp(req)
            case "keys":
                return self._keys(req)
            case "resources":
                return self._audit()
            case "commit":
                return self._commit(req)
            case _:  # "transactions"
                if not _TXID.fullmatch(name):
                    raise _refuse(400, "malformed transaction id")
                if not self._store.committed(name):
                    raise _refuse(404, "not committed")
                return _json(200, {"txid": name, "committed": True})

    def _realm(self, req: EmbeddedRequest, name: str) -> EmbeddedResponse:
        if not _REALM_NAME.fullmatch(name):
            raise _refuse(400, "malformed realm name")
        if req.method == "DELETE":
            if not self._begin(req).delete_realm(name):
                raise _refuse(404, "no such realm")
            self._staged += 1
            return EmbeddedResponse(204)
        self._check_size(req)
        realm = _parse_realm(name, _load_json(req))
        tx = self._begin(req)
        existed = tx.realm(name) is not None
        tx.put_realm(realm)
        self._staged += 1
        return EmbeddedResponse(204 if existed else 201)

    def _value(self, req: EmbeddedRequest, key: str) -> EmbeddedResponse:
        if not key or "\x00" in key or len(key.encode("utf-8", "replace")) > MAX_KEY_BYTES:
            raise _refuse(400, "malformed value key")
        if key.startswith(RESERVED_VALUE_PREFIX):
            raise _refuse(403, f"keys {RESERVED_VALUE_PREFIX}* are set by their own commands")
        if req.method == "DELETE":
            if not self._begin(req).delete_value(key):
                raise _refuse(404, "no such value")
            self._staged += 1
            return EmbeddedResponse(204)
        self._check_size(req)
        tx = self._begin(req)
        existed = tx.get_value(key) is not None
        tx.set_value(key, req.body)
        self._staged += 1
        return EmbeddedResponse(204 if existed else 201)

    def _acp(self, req: EmbeddedRequest) -> EmbeddedResponse:
        self._check_size(req)
        try:
            rules = from_document(_load_json(req))
        except DocumentError as e:
            raise _refuse(400, f"bad access rules: {e}") from None
        tx = self._begin(req)
        tx.set_value(ACP_KEY, encode_rules(rules))
        self._staged += 1
        return EmbeddedResponse(204)

    def _keys(self, req: EmbeddedRequest) -> EmbeddedResponse:
        self._check_size(req)
        try:
            change = KeyChange.from_json(req.body)
        except ConfigError as exc:
            raise _refuse(400, str(exc)) from None
        tx = self._begin(req)
        if not isinstance(tx, SecretTransaction):
            raise _refuse(501, "this card's store keeps no agent keys")
        current = tx.get_secret(AGENT_FILE)
        if current is None:
            raise _refuse(409, "the agent has no keys to change")
        try:
            new = AgentCredentials.from_json(current).rekeyed(change)
        except ConfigError as exc:
            raise _refuse(409, str(exc)) from None
        tx.set_secret(AGENT_FILE, new.to_json())
        self._staged += 1
        logger.info("agent keys staged: PSK identity %r", change.psk_identity)
        return EmbeddedResponse(204)

    def _audit(self) -> EmbeddedResponse:
        view = self._view
        listing = []
        for path in view.paths():
            resource = view.get(path)
            if resource is not None:
                listing.append(
                    {
                        "path": path,
                        "etag": resource.etag,
                        "length": len(resource.body),
                        "content_type": resource.content_type,
                        "realm": resource.realm,
                    }
                )
        return _json(200, listing)


# -- JSON bodies --------------------------------------------------------------------------------


def _parse_realm(name: str, data: Any) -> Realm:
    """{"users": {name: password}, "schemes": ["Digest", "Basic"], "basic_https_only": bool};
    all optional."""
    if not isinstance(data, dict) or not set(data) <= {"users", "schemes", "basic_https_only"}:
        raise _refuse(400, 'a realm is {"users": {...}, "schemes": [...]}')
    https_only = data.get("basic_https_only", False)
    if not isinstance(https_only, bool):
        raise _refuse(400, "basic_https_only is true or false")
    users = data.get("users", {})
    if not isinstance(users, dict) or not all(
        isinstance(u, str) and isinstance(p, str) for u, p in users.items()
    ):
        raise _refuse(400, "users must map names to passwords")
    for user, password in users.items():
        # RFC 7617: a Basic user-id has no ':'; no control characters anywhere.
        if not user or ":" in user or not user.isprintable() or not password.isprintable():
            raise _refuse(400, f"unusable user name or password for {user[:40]!r}")
    schemes_in = data.get("schemes", ["Digest", "Basic"])
    if not isinstance(schemes_in, list) or not schemes_in:
        raise _refuse(400, "schemes must be a non-empty list")
    schemes: list[str] = []
    for scheme in schemes_in:
        canonical = _SCHEMES.get(scheme.lower()) if isinstance(scheme, str) else None
        if canonical is None or canonical in schemes:
            raise _refuse(400, f"unknown or repeated scheme {scheme!r}")
        schemes.append(canonical)
    return Realm(name, dict(users), tuple(schemes), https_only)
