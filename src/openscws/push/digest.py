"""HTTP Digest authentication as SIP uses it (RFC 3261 §22.4 over RFC 2617, `qop=auth`, MD5 or
RFC 8760's SHA-256), sans-IO: the registrar's challenge and check, the client's answer."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["Challenge", "DigestError", "authorization", "parse_params", "verify"]

_PARAM: Final = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(?:,|$)')
_HASHES: Final = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


class DigestError(ValueError):
    """A challenge or credentials header that does not parse."""


def parse_params(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            raise DigestError(f"digest parameters {rest[pos : pos + 40]!r}")
        value = m.group(2)
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        params[m.group(1).lower()] = value
        pos = m.end()
    return scheme, params


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    opaque: str | None = None

    def header(self) -> str:
        opaque = f', opaque="{self.opaque}"' if self.opaque else ""
        return (
            f'Digest realm="{self.realm}", nonce="{self.nonce}", '
            f'algorithm={self.algorithm}, qop="auth"{opaque}'
        )

    @classmethod
    def parse(cls, header: str) -> Challenge:
        scheme, params = parse_params(header)
        if scheme.lower() != "digest" or "realm" not in params or "nonce" not in params:
            raise DigestError("not a Digest challenge with realm and nonce")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in _HASHES:
            raise DigestError(f"digest algorithm {algorithm!r}")
        qops = [q.strip() for q in params.get("qop", "auth").split(",")]
        if "auth" not in qops:
            raise DigestError("the challenge offers no qop=auth")
        return cls(params["realm"], params["nonce"], algorithm, params.get("opaque"))


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm](text.encode()).hexdigest()


def _response(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
) -> str:
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The `Authorization` header value answering `challenge`."""
    count = f"{nc:08x}"
    response = _response(
        challenge.algorithm,
        username,
        challenge.realm,
        password,
        method,
        uri,
        challenge.nonce,
        count,
        cnonce,
    )
    opaque = f', opaque="{challenge.opaque}"' if challenge.opaque else ""
    return (
        f'Digest username="{username}", realm="{challenge.realm}", nonce="{challenge.nonce}", '
        f'uri="{uri}", response="{response}", algorithm={challenge.algorithm}, '
        f'cnonce="{cnonce}", qop=auth, nc={count}{opaque}'
    )


def verify(header: str, *, method: str, realm: str, passwords: dict[str, str]) -> tuple[str, str]:
    """(username, nonce) when `header` answers correctly for a known user; DigestError
    otherwise. The caller checks that the nonce is one it issued and still fresh."""
    scheme, params = parse_params(header)
    if scheme.lower() != "digest":
        raise DigestError("not Digest credentials")
    needed = ("username", "realm", "nonce", "uri", "response", "cnonce", "nc")
    if any(k not in params for k in needed) or params.get("qop") != "auth":
        raise DigestError("incomplete Digest credentials")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES or params["realm"] != realm:
        raise DigestError("wrong realm or algorithm")
    password = passwords.get(params["username"])
    expected = _response(
        algorithm,
        params["username"],
        realm,
        password or "",
        method,
        params["uri"],
        params["nonce"],
        params["nc"],
        params["cnonce"],
    )
    if password is None or not hmac.compare_digest(expected, params["response"].lower()):
        raise DigestError("wrong Digest response")
    return params["username"], params["nonce"]
