"""The access control policy as a JSON document: what `PUT /.scws/acp` carries, what
`openscws card acp ls --json` prints and what an admin campaign's `acp` operation sends. One
document form, converted to and from the card's rules (`acp.rules`), which are what the card
stores.

    {"rules": [
      {"app": "sha256:<64 hex>" | "sha1:<40 hex>" | "uid:<n>" | "any",
       "uid": <n>,                    optional: also require this local user
       "ports": [3516, 4116],         optional, default both
       "paths": ["/prefix/", ...],    optional, default the whole port
       "access": "allow" | "deny"}    optional, default allow
    ]}

The earlier form of the command, a list of {"app": "<SHA-256 hex>" | "*", "allow": [prefix,
...]}, is still read (as SHA-256 or any, both ports, those prefixes)."""

from __future__ import annotations

import re
from typing import Any, Final

from openscws.acp.rules import ANY_PORTS, AccessRule, RuleSet

__all__ = ["DocumentError", "from_document", "parse_identity", "rule_to_json", "to_document"]

MAX_RULES: Final = 256
_HEX: Final = re.compile(r"[0-9a-f]+")


class DocumentError(ValueError):
    """A policy document that cannot be used; the message says why, in its own terms."""


def parse_identity(text: str) -> tuple[bytes, int | None]:
    """`sha256:<hex>`, `sha1:<hex>`, `uid:<n>`, `any` (and a hash and uid joined by '+') ->
    (application hash, user id)."""
    app_hash = b""
    uid: int | None = None
    for part in text.strip().lower().split("+"):
        kind, _, value = part.partition(":")
        if kind == "any" and not value and text.strip().lower() == "any":
            return b"", None
        if kind in ("sha256", "sha1") and not app_hash:
            size = 64 if kind == "sha256" else 40
            if len(value) != size or not _HEX.fullmatch(value):
                raise DocumentError(f"{kind}: needs {size} hex digits")
            app_hash = bytes.fromhex(value)
        elif kind == "uid" and uid is None and value.isdigit() and int(value) < 1 << 32:
            uid = int(value)
        else:
            raise DocumentError(
                f"unknown identity {part!r}: sha256:<hex>, sha1:<hex>, uid:<n> or any"
            )
    return app_hash, uid


def _ports(value: Any) -> frozenset[int]:
    if value is None:
        return ANY_PORTS
    if (
        not isinstance(value, list)
        or not value
        or not all(type(p) is int and 0 < p < 1 << 16 for p in value)
    ):
        raise DocumentError("ports is a non-empty list of port numbers")
    return frozenset(value)


def _paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise DocumentError("paths is a list of URL path prefixes")
    for path in value:
        if not path.startswith("/") or not path.isprintable() or "?" in path or "#" in path:
            raise DocumentError(f"a path prefix is an absolute URL path: {path[:40]!r}")
    return tuple(value)


def _rule(data: Any) -> AccessRule:
    if not isinstance(data, dict):
        raise DocumentError("each rule is a JSON object")
    if set(data) == {"app", "allow"}:  # the earlier form
        app = data["app"]
        if not isinstance(app, str):
            raise DocumentError("app must be a string")
        text = "any" if app == "*" else f"sha256:{app.lower()}"
        app_hash, uid = parse_identity(text)
        return _make(app_hash, uid, ANY_PORTS, _paths(data["allow"]), True)
    unknown = set(data) - {"app", "uid", "ports", "paths", "access"}
    if unknown or "app" not in data:
        raise DocumentError('a rule is {"app", "uid"?, "ports"?, "paths"?, "access"?}')
    if not isinstance(data["app"], str):
        raise DocumentError("app must be a string")
    app_hash, uid = parse_identity(data["app"])
    if "uid" in data:
        extra = data["uid"]
        if type(extra) is not int or not 0 <= extra < 1 << 32 or uid not in (None, extra):
            raise DocumentError("uid is a user id (and agrees with app)")
        uid = extra
    access = data.get("access", "allow")
    if access not in ("allow", "deny"):
        raise DocumentError('access is "allow" or "deny"')
    return _make(
        app_hash, uid, _ports(data.get("ports")), _paths(data.get("paths")), access == "allow"
    )


def _make(
    app_hash: bytes, uid: int | None, ports: frozenset[int], paths: tuple[str, ...], allow: bool
) -> AccessRule:
    try:
        return AccessRule(app_hash=app_hash, uid=uid, ports=ports, paths=paths, allow=allow)
    except ValueError as e:
        raise DocumentError(str(e)) from None


def from_document(data: Any) -> RuleSet:
    """A parsed JSON document (either form) -> RuleSet; DocumentError says what is wrong."""
    if isinstance(data, dict) and set(data) == {"rules"}:
        items = data["rules"]
    elif isinstance(data, list):
        items = data
    else:
        raise DocumentError('the policy is {"rules": [...]}')
    if not isinstance(items, list):
        raise DocumentError("rules is a list")
    if len(items) > MAX_RULES:
        raise DocumentError(f"at most {MAX_RULES} rules")
    return RuleSet(tuple(_rule(item) for item in items))


def rule_to_json(rule: AccessRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "app": rule.identity,
        "ports": sorted(rule.ports),
        "access": "allow" if rule.allow else "deny",
    }
    if rule.paths:
        out["paths"] = list(rule.paths)
    return out


def to_document(rules: RuleSet) -> dict[str, Any]:
    """The SCWS rules of `rules` as a document (other SEAC rules are not shown)."""
    return {"rules": [rule_to_json(r) for r in rules.scws_rules]}
