"""HTTP transport authentication of the DM server (OMA-TS-DM_Security: the transport
credentials of a DM account, AAuthLevel HTTP in OMA-TS-DM_StdObj's DMAcc), sans-IO: headers
and `now` in, a verdict out.

* **Basic** (RFC 7617): `Authorization: Basic base64(user ":" password)`.
* **Digest** (RFC 7616) with algorithm MD5 or SHA-256 and qop "auth". The server's nonce is
  `base64(issued_ms || HMAC-SHA-256(secret, issued_ms))`: it needs no table to check, and
  expires after `nonce_lifetime_s` (then the challenge says stale=true). A good answer to a
  live nonce is a `NonceUse`: the (nonce, nc) pair the caller records as used, once, where
  every server process sharing the secret sees it (the DM server: its database). A pair
  already recorded is a replayed request (RFC 7616 §5.5), answered with 401 and a fresh
  challenge. The check itself keeps no memory, so no process can accept what another
  already accepted.

Every refusal is the same 401 with both challenges, whether the user is unknown or the
password wrong. Passwords are compared in constant time and never logged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "DIGEST_ALGORITHMS",
    "Challenger",
    "Credentials",
    "DigestVerdict",
    "NonceUse",
    "parse_authorization",
]

DIGEST_ALGORITHMS: Final = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
"""The algorithms a challenge offers (RFC 7616): one WWW-Authenticate each, SHA-256 first as
the one preferred, MD5 for older clients."""
_PARAM: Final = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*(,|$)')
_NONCE_STAMP: Final = 8


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an Authorization header says: the scheme ("basic" or "digest"), the user name,
    and the scheme's parameters (Basic: the password)."""

    scheme: str
    username: str
    params: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the password or the response
        return f"Credentials({self.scheme!r}, {self.username!r})"


@dataclass(frozen=True, slots=True)
class NonceUse:
    """A good Digest answer to a live nonce: accepted if (nonce, nc) was never used before.
    The caller records the pair in one step that fails if it is there already (RFC 7616
    §3.4: the nonce count lets the server detect a replayed request). `issued_ms` is the
    nonce's issue time (it is in the nonce): the record may go once the nonce has expired."""

    nonce: str
    nc: str
    """Eight lower-case hex digits."""
    issued_ms: int


DigestVerdict = NonceUse | Literal["stale", "bad"]
"""What `Challenger.check_digest` says: a `NonceUse` to record, "stale" (a good answer to an
expired nonce: challenge again with stale=true) or "bad"."""


def parse_authorization(value: str | None) -> Credentials | None:
    """The credentials of an Authorization header; None if absent or malformed."""
    if not value or len(value) > 4096:
        return None
    scheme, _, rest = value.strip().partition(" ")
    match scheme.lower():
        case "basic":
            try:
                raw = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = raw.partition(":")
            if not sep:
                return None
            return Credentials("basic", user, {"password": password})
        case "digest":
            params: dict[str, str] = {}
            pos = 0
            rest = rest.strip()
            while pos < len(rest):
                m = _PARAM.match(rest, pos)
                if m is None or m.end() == pos:
                    return None
                name = m.group(1).lower()
                quoted: str | None = m.group(3)
                text = quoted if quoted is not None else m.group(2)
                if name in params:
                    return None
                params[name] = re.sub(r"\\(.)", r"\1", text)
                pos = m.end()
            name_given = params.get("username")
            if name_given is None:
                return None
            return Credentials("digest", name_given, params)
    return None


class Challenger:
    """Issues and checks the Digest nonces of one server process (realm `realm`)."""

    def __init__(
        self, realm: str, *, secret: bytes | None = None, nonce_lifetime_s: float = 300.0
    ) -> None:
        self.realm = realm
        self._secret = secret or secrets.token_bytes(32)
        self.lifetime_ms = int(nonce_lifetime_s * 1000)

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.new(self._secret, stamp, hashlib.sha256).digest()

    def nonce(self, now_ms: int) -> str:
        stamp = now_ms.to_bytes(_NONCE_STAMP, "big")
        return base64.b64encode(stamp + self._mac(stamp)).decode("ascii")

    def challenges(self, now_ms: int, *, stale: bool = False) -> list[tuple[str, str]]:
        """The WWW-Authenticate headers of a 401: Digest SHA-256 and MD5, and Basic."""
        nonce = self.nonce(now_ms)
        opaque = hashlib.sha256(self._secret + b"opaque").hexdigest()[:32]
        out = []
        for alg in ("SHA-256", "MD5"):
            text = (
                f'Digest realm="{self.realm}", qop="auth", algorithm={alg}, '
                f'nonce="{nonce}", opaque="{opaque}"'
            )
            if stale:
                text += ", stale=true"
            out.append(("WWW-Authenticate", text))
        out.append(("WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'))
        return out

    def _issued_ms(self, nonce: str) -> int | None:
        try:
            raw = base64.b64decode(nonce, validate=True)
        except binascii.Error:
            return None
        stamp, mac = raw[:_NONCE_STAMP], raw[_NONCE_STAMP:]
        if len(stamp) != _NONCE_STAMP or not hmac.compare_digest(mac, self._mac(stamp)):
            return None
        return int.from_bytes(stamp, "big")

    def check_basic(self, cred: Credentials, username: str, password: str) -> bool:
        ok_user = hmac.compare_digest(cred.username.encode(), username.encode())
        given = cred.params.get("password", "").encode()
        return hmac.compare_digest(given, password.encode()) and ok_user

    def check_digest(
        self, cred: Credentials, method: str, username: str, password: str, now_ms: int
    ) -> DigestVerdict:
        """The verdict on a Digest answer (see `DigestVerdict`). It is not the last word
        on a `NonceUse`: the request is accepted only if its (nonce, nc) gets recorded."""
        p = cred.params
        alg = p.get("algorithm", "MD5")
        h = DIGEST_ALGORITHMS.get(alg)
        nonce, nc, cnonce = p.get("nonce", ""), p.get("nc", ""), p.get("cnonce", "")
        if h is None or p.get("qop") != "auth" or p.get("realm") != self.realm:
            return "bad"
        if not re.fullmatch(r"[0-9a-fA-F]{8}", nc) or not cnonce:
            return "bad"
        issued_ms = self._issued_ms(nonce)
        if issued_ms is None or issued_ms > now_ms:
            return "bad"

        def hx(text: str) -> str:
            return h(text.encode("utf-8")).hexdigest()

        ha1 = hx(f"{username}:{self.realm}:{password}")
        ha2 = hx(f"{method}:{p.get('uri', '')}")
        expected = hx(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        ok = hmac.compare_digest(expected, p.get("response", "").lower())
        ok = hmac.compare_digest(cred.username.encode(), username.encode()) and ok
        if not ok:
            return "bad"
        if now_ms - issued_ms > self.lifetime_ms:
            return "stale"
        return NonceUse(nonce, nc.lower(), issued_ms)
