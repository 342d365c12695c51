"""HTTP authentication of the DM client at the transport level, sans-IO: what the DM account's
`AppAuth` entry with AAuthLevel `HTTP` asks for (OMA-TS-DM_StdObj V1.2 §7.1.3: AAuthType
HTTP-BASIC or HTTP-DIGEST; OMA-TS-DM_Security: transport-level authentication over HTTP).

    HTTP-BASIC   Authorization: Basic B64(name ":" secret)                RFC 7617
    HTTP-DIGEST  Authorization: Digest ... response="..."                 RFC 7616
                 H = MD5 or SHA-256 (the server's `algorithm`), qop "auth":
                 HA1 = H(name ":" realm ":" secret), HA2 = H(method ":" uri)
                 response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)
                 without qop (RFC 2069): response = H(HA1 ":" nonce ":" HA2)

Basic is sent on the first request (the account says the server wants it); Digest answers the
server's `WWW-Authenticate` challenge and reuses its nonce with a growing nonce count until the
server says `stale=true` or challenges again. Malformed challenges raise `TransportAuthError`."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from openscws.errors import OpenScwsError

__all__ = [
    "DigestChallenge",
    "HttpCredentials",
    "TransportAuthError",
    "auth_params",
    "parse_challenges",
]

HTTP_BASIC: Final = "HTTP-BASIC"
HTTP_DIGEST: Final = "HTTP-DIGEST"
_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM: Final = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)")\s*(?:,|$)')
MAX_FIELD: Final = 8192


class TransportAuthError(OpenScwsError):
    """A WWW-Authenticate field that does not parse, or a scheme the account cannot answer."""


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def auth_params(text: str) -> dict[str, str]:
    """The `name=value` parameters of a challenge or an Authorization value (RFC 7235 §2.1)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if m is None or m.end() == pos:
            raise TransportAuthError(f"malformed WWW-Authenticate parameters: {text!r}")
        value = m.group(2) if m.group(2) is not None else re.sub(r"\\(.)", r"\1", m.group(3))
        out[m.group(1).lower()] = value
        pos = m.end()
    return out


def parse_challenges(values: list[str]) -> list[DigestChallenge | str]:
    """The challenges of the `WWW-Authenticate` fields: a `DigestChallenge` per Digest one
    (in the server's order), the scheme name for any other (e.g. "Basic")."""
    out: list[DigestChallenge | str] = []
    for value in values:
        if len(value) > MAX_FIELD:
            raise TransportAuthError("WWW-Authenticate field too long")
        # One field may carry several challenges; split before each "<scheme> " start.
        for part in re.split(r",\s*(?=(?:Digest|Basic|Bearer)\s)", value.strip()):
            scheme, _, rest = part.strip().partition(" ")
            if scheme.lower() != "digest":
                out.append(scheme)
                continue
            p = auth_params(rest)
            if "realm" not in p or "nonce" not in p:
                raise TransportAuthError("a Digest challenge needs realm and nonce")
            algorithm = p.get("algorithm", "MD5").upper()
            qop = tuple(q.strip() for q in p["qop"].split(",")) if "qop" in p else ()
            out.append(
                DigestChallenge(
                    p["realm"],
                    p["nonce"],
                    algorithm,
                    qop,
                    p.get("opaque"),
                    p.get("stale", "").lower() == "true",
                )
            )
    return out


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class HttpCredentials:
    """The transport credentials of one DM account: `kind` HTTP-BASIC or HTTP-DIGEST.
    `new_cnonce` gives the client nonce of each Digest answer (randomness from the shell)."""

    kind: str
    name: str
    secret: str
    new_cnonce: Callable[[], str]
    challenge: DigestChallenge | None = field(default=None, repr=False)
    nc: int = 0

    def __post_init__(self) -> None:
        if self.kind not in (HTTP_BASIC, HTTP_DIGEST):
            raise TransportAuthError(f"transport AAuthType {self.kind!r} (HTTP-BASIC, HTTP-DIGEST)")

    def authorization(self, method: str, uri: str) -> str | None:
        """The Authorization field for the next request, or None before any Digest challenge."""
        if self.kind == HTTP_BASIC:
            token = base64.b64encode(f"{self.name}:{self.secret}".encode()).decode("ascii")
            return f"Basic {token}"
        ch = self.challenge
        if ch is None:
            return None
        h = _HASHES[ch.algorithm]
        ha1 = h(f"{self.name}:{ch.realm}:{self.secret}".encode())
        ha2 = h(f"{method}:{uri}".encode())
        parts = [
            f"username={_quote(self.name)}",
            f"realm={_quote(ch.realm)}",
            f"nonce={_quote(ch.nonce)}",
            f"uri={_quote(uri)}",
            f"algorithm={ch.algorithm}",
        ]
        if "auth" in ch.qop:
            self.nc += 1
            nc = f"{self.nc:08x}"
            cnonce = self.new_cnonce()
            response = h(f"{ha1}:{ch.nonce}:{nc}:{cnonce}:auth:{ha2}".encode())
            parts += ["qop=auth", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
        elif ch.qop:
            raise TransportAuthError(f"Digest qop {','.join(ch.qop)!r}: only auth is answered")
        else:
            response = h(f"{ha1}:{ch.nonce}:{ha2}".encode())
        parts.append(f"response={_quote(response)}")
        if ch.opaque is not None:
            parts.append(f"opaque={_quote(ch.opaque)}")
        return "Digest " + ", ".join(parts)

    def challenged(self, values: list[str]) -> bool:
        """Takes a 401's challenges; True when a retry can succeed (a Digest challenge this
        account answers that is new, or stale), False when the credentials were refused."""
        if self.kind == HTTP_BASIC:
            return False
        digests = [
            c
            for c in parse_challenges(values)
            if isinstance(c, DigestChallenge) and c.algorithm in _HASHES
        ]
        if not digests:
            return False
        # Prefer SHA-256 when the server offers both (RFC 7616 §3.7).
        pick = next((c for c in digests if c.algorithm == "SHA-256"), digests[0])
        retry = self.challenge is None or pick.stale
        self.challenge, self.nc = pick, 0
        return retry
