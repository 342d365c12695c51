"""Defences of the card's HTTP engine against hostile pages in an allowed browser (sans-IO).
The SCWS Gateway decides which local programs reach the SCWS; a browser it admits can still
run any web site's scripts, so the SCWS itself checks each request:

- **Host** (RFC 9110 §7.2): only a local name or address reaches the SCWS, which defeats DNS
  rebinding (a page of rebind.example whose name later resolves to 127.0.0.1 sends
  `Host: rebind.example`). Local: `localhost` and `*.localhost` (RFC 6761 §6.3), loopback
  addresses (127.0.0.0/8, ::1), a name without a dot (only a local resolver gives it an
  address, never a public zone an attacker controls: the project's reading), and the names in
  `extra_names`. A port, when the Host has one, must be one the SCWS is reached on for the
  request's scheme (`ports`; None: the card does not know the terminal's local ports, and
  the port is not checked). Another name or port: 421 Misdirected Request (RFC 9110
  §15.5.20); a malformed Host: 400.
- **Origin** (RFC 6454): a request that may change state (any method but GET, HEAD and
  OPTIONS) to a card application must, when it carries Origin, come from the SCWS's own
  origin (same scheme, host and port as the request); otherwise 403. Without Origin (tools,
  the admin agent) it goes on.
- **Passwords** (`RealmThrottle`): wrong credentials for a realm are counted per realm in a
  sliding window; past `limit` failures the realm answers 429 Too Many Requests with
  Retry-After until the window has moved on (RFC 6585 §4). Per connection, the HTTP engine
  closes a connection after `PER_CONNECTION` failed attempts.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from openscws.errors import HttpError

__all__ = ["GUESSES", "PER_CONNECTION", "SAFE_METHODS", "HostPolicy", "RealmThrottle"]

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
PER_CONNECTION: Final = 3
"""Failed authentications on one connection before the engine closes it."""
GUESSES: Final = frozenset({"wrong password", "unknown user", "wrong response"})
"""The 401 reasons (`scws.auth`) that are wrong credentials, the ones counted; a stale nonce
or a scheme not offered is not a guess."""
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _split_authority(value: str) -> tuple[str, int | None]:
    """(host, port or None) of a Host value or an origin's authority; ValueError if malformed."""
    value = value.strip()
    if not value or any(c in value for c in " /\\@?#"):
        raise ValueError("malformed authority")
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("malformed IPv6 literal")
        host, rest = value[1:end], value[end + 1 :]
        ipaddress.IPv6Address(host)
        if rest and not rest.startswith(":"):
            raise ValueError("malformed port")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = value.partition(":")
        port_text = port_text_raw if colon else None
        if not host:
            raise ValueError("no host")
    if port_text is None:
        return host.lower(), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("malformed port")
    return host.lower(), int(port_text)


def _local(host: str, extra: frozenset[str]) -> bool:
    if host == "localhost" or host.endswith(".localhost") or host in extra:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return "." not in host


@dataclass(frozen=True, slots=True)
class HostPolicy:
    ports: dict[str, frozenset[int]] | None = None
    """Scheme -> the ports the SCWS is reached on (the card's and the terminal's local ones);
    None: not known here, ports not checked."""
    extra_names: frozenset[str] = frozenset()

    def check_host(self, scheme: str, host_header: str | None, http_version: str) -> None:
        if host_header is None:
            if http_version == "1.0":
                return  # HTTP/1.0 may omit Host (RFC 9112 §3.2); browsers never do
            raise HttpError(400, "Host missing")
        try:
            host, port = _split_authority(host_header)
        except ValueError:
            raise HttpError(400, "malformed Host") from None
        if not _local(host, self.extra_names):
            raise HttpError(421, f"this SCWS answers local names only, not {host[:60]!r}")
        if port is not None and self.ports is not None:
            allowed = self.ports.get(scheme, frozenset())
            if port not in allowed:
                raise HttpError(421, f"port {port} is not where this SCWS serves {scheme}")

    def check_origin(self, scheme: str, method: str, origin: str | None, host: str | None) -> None:
        """For a request to a card application: a state-changing one needs a same-origin
        Origin when it has one."""
        if origin is None or method in SAFE_METHODS:
            return
        refused = HttpError(403, "cross-origin request refused")
        o_scheme, sep, authority = origin.strip().partition("://")
        if not sep or o_scheme.lower() != scheme or host is None:
            raise refused
        try:
            o_host, o_port = _split_authority(authority)
            h_host, h_port = _split_authority(host)
        except ValueError:
            raise refused from None
        default = _DEFAULT_PORTS.get(scheme)
        if o_host != h_host or (o_port or default) != (h_port or default):
            raise refused


@dataclass
class RealmThrottle:
    """Failed authentications per realm: more than `limit` within `window` seconds and the
    realm refuses attempts (429) until the oldest failure leaves the window."""

    limit: int = 10
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def check(self, realm: str, now: float) -> None:
        times = self._failures.get(realm)
        if not times:
            return
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            wait = max(1, int(times[0] + self.window - now) + 1)
            raise HttpError(
                429, "too many failed attempts for this realm", (("Retry-After", str(wait)),)
            )

    def failed(self, realm: str, now: float) -> None:
        times = self._failures.setdefault(realm, deque())
        times.append(now)
        while len(times) > self.limit:
            times.popleft()
        if len(self._failures) > 256:  # realms are few; bound the table anyway
            self._failures.pop(next(iter(self._failures)))
