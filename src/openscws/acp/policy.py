"""The SCWS Gateway's access decision, sans-IO: rules + the local application's identity + the
port (+ the request path on an HTTP port) -> allow or deny, with the rule that decided.

    card without the ARA-M, or without SCWS rules   unrestricted (every decision: allow)
    rules that cannot be read or parsed             deny everything (never allow-all)
    rules                                           deny by default

A rule matches an application when its hash (if any) equals the SHA-256 or SHA-1 of the
application's executable, and its user id (if any) equals the application's uid; "any" matches
every local application, even one whose process cannot be seen. A matching deny rule wins over
any allow rule. Path prefixes can only be checked where the gateway reads the requests (plain
HTTP, `http_ports`): there a connection is admitted when some allow rule matches the port, and
each request is then checked against the prefixes; on other ports (HTTPS, where the gateway sees
only TLS records) a rule with path prefixes neither allows nor denies anything."""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from openscws.acp.rules import AccessRule, RuleSet

__all__ = ["Decision", "Mode", "Policy", "Subject", "request_path"]

HTTP_PORTS: Final = frozenset({3516})


@dataclass(frozen=True, slots=True)
class Subject:
    """The local application as the gateway sees it; None: could not be seen."""

    uid: int | None = None
    sha256: bytes | None = None
    sha1: bytes | None = None


class Mode(enum.Enum):
    UNRESTRICTED = "unrestricted"
    RULES = "rules"
    DENY_ALL = "deny-all"


@dataclass(frozen=True, slots=True)
class Decision:
    allow: bool
    reason: str
    rule: AccessRule | None = None
    check_requests: bool = False
    """Admitted, but each request's path must be checked (`Policy.request`)."""


class Policy:
    def __init__(
        self,
        mode: Mode,
        rules: RuleSet | None = None,
        *,
        error: str = "",
        http_ports: frozenset[int] = HTTP_PORTS,
    ) -> None:
        self.mode = mode
        self.rules = rules.scws_rules if rules is not None else ()
        self.error = error
        self.http_ports = http_ports
        self.needs_exe = any(r.app_hash for r in self.rules)
        """Some rule names an executable hash: the application's process must be looked up."""
        self._index: dict[tuple[bytes, int | None], list[tuple[int, AccessRule]]] = {}
        """(hash or b"", uid or None) -> the rules naming exactly that, with their order."""
        for n, rule in enumerate(self.rules):
            self._index.setdefault((rule.app_hash, rule.uid), []).append((n, rule))
        self._names = {id(rule): rule.describe() for rule in self.rules}  # rules outlive it

    @classmethod
    def unrestricted(cls, why: str) -> Policy:
        return cls(Mode.UNRESTRICTED, error=why)

    @classmethod
    def deny_all(cls, error: str) -> Policy:
        return cls(Mode.DENY_ALL, error=error)

    def describe(self) -> str:
        if self.mode is Mode.UNRESTRICTED:
            return f"access unrestricted ({self.error})"
        if self.mode is Mode.DENY_ALL:
            return f"every connection refused: the card's access rules are unusable: {self.error}"
        n = len(self.rules)
        return f"{n} access rule{'' if n == 1 else 's'}, deny by default"

    def _matching(self, subject: Subject, port: int) -> list[AccessRule]:
        """The rules naming this application (by hash, or any) and port, in rule order."""
        index = self._index
        found: list[tuple[int, AccessRule]] = []
        for seen in (b"", subject.sha256, subject.sha1):
            if seen is not None:
                found += index.get((seen, None), ())
                if subject.uid is not None:
                    found += index.get((seen, subject.uid), ())
        if len(found) > 1:
            found.sort(key=_first)
        return [rule for _, rule in found if port in rule.ports]

    def admit(self, subject: Subject, port: int) -> Decision:
        """The decision for a new connection to card port `port`."""
        if self.mode is Mode.UNRESTRICTED:
            return Decision(True, "no access rules on the card")
        if self.mode is Mode.DENY_ALL:
            return Decision(False, "the card's access rules cannot be read")
        rules = self._matching(subject, port)
        paths_seen = port in self.http_ports
        for rule in rules:
            if not rule.allow and not rule.paths:
                return Decision(False, f"denied by rule: {self._names[id(rule)]}", rule)
        whole = [r for r in rules if r.allow and not r.paths]
        with_paths = [r for r in rules if r.paths] if paths_seen else []
        if whole and not any(not r.allow for r in with_paths):
            return Decision(True, f"allowed by rule: {self._names[id(whole[0])]}", whole[0])
        if with_paths and any(r.allow for r in [*whole, *with_paths]):
            first = next(r for r in [*whole, *with_paths] if r.allow)
            return Decision(True, f"admitted by rule: {self._names[id(first)]}", first, True)
        return Decision(False, f"no rule allows this application on port {port}")

    def request(self, subject: Subject, port: int, target: str) -> Decision:
        """The decision for one request (its request-target) on an admitted connection."""
        path = request_path(target)
        if path is None:
            return Decision(False, f"request target {target[:60]!r} is not a usable path")
        allowed: AccessRule | None = None
        for rule in self._matching(subject, port):
            if rule.paths and not any(_under(path, p) for p in rule.paths):
                continue
            if not rule.allow:
                return Decision(False, f"{path} denied by rule: {self._names[id(rule)]}", rule)
            allowed = allowed or rule
        if allowed is None:
            return Decision(False, f"no rule allows {path}")
        return Decision(True, f"{path} allowed by rule: {self._names[id(allowed)]}", allowed)


def _first(item: tuple[int, AccessRule]) -> int:
    return item[0]


def _under(path: str, prefix: str) -> bool:
    return path.startswith(prefix) or (prefix.endswith("/") and path == prefix[:-1])


def request_path(target: str) -> str | None:
    """The path a request-target (origin-form or absolute-form, RFC 9112 §3.2) reaches, percent-
    decoded and with dot segments removed (RFC 3986 §5.2.4), as the card resolves it; None when
    it cannot be a path (asterisk-form, control characters, backslash, undecodable)."""
    if target.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        target = urlsplit(target).path or "/"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\\" in decoded or not decoded.isprintable():
        return None
    normal = posixpath.normpath(decoded)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if decoded.endswith("/") and normal != "/":
        normal += "/"
    return normal
