"""HTTP authentication for protected realms: Basic (RFC 7617) and Digest (RFC 7616).

Digest is offered with SHA-256 and MD5, `qop=auth` only. Nonces are stateless: a timestamp
and a counter, authenticated with an HMAC under a per-site secret, so the card needs no table
of issued nonces. Only the highest nonce-count seen per nonce is kept (bounded), to refuse
replays."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from urllib.parse import unquote

from openscws.errors import HttpError
from openscws.scws.model import Realm

__all__ = [
    "DIGEST_ALGORITHMS",
    "Authenticator",
    "digest_response",
    "parse_auth_params",
]

DIGEST_ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    # RFC 7616 §3.2, in the order challenges are sent (strongest first, §3.7).
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
}

# RFC 9110 §11.2: auth-param = token BWS "=" BWS ( token / quoted-string )
_AUTH_PARAM = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[!#$%&\'*+\-.^_`|~0-9A-Za-z/:]+)\s*(,|$)'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_NC = re.compile(r"[0-9a-fA-F]{8}")
_NONCE_PAYLOAD = struct.Struct(">QQ")  # issue time (unix seconds), issue counter
_MAC_LEN = 16


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse a comma-separated auth-param list (names lower-cased, quoted strings unquoted).

    Raises `HttpError(400)` on syntax errors or repeated parameters."""
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _AUTH_PARAM.match(text, pos)
        if m is None:
            raise HttpError(400, "malformed Authorization parameters")
        name, value = m.group(1).lower(), m.group(2)
        if value.startswith('"'):
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        if name in params:
            raise HttpError(400, f"repeated Authorization parameter {name}")
        params[name] = value
        pos = m.end()
    return params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The Digest `response` value (RFC 7616 §3.4.1) for qop=auth:
    KD(H(A1), nonce:nc:cnonce:qop:H(A2)) with A1 = user:realm:password, A2 = method:uri."""
    h = DIGEST_ALGORITHMS[algorithm]
    ha1 = h(f"{username}:{realm}:{password}".encode())
    ha2 = h(f"{method}:{uri}".encode())
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


class Authenticator:
    """Checks Authorization headers against a `Realm` and builds the 401 challenges."""

    def __init__(
        self, secret: bytes, *, nonce_lifetime: float = 300.0, max_tracked_nonces: int = 256
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self._secret = secret
        self.nonce_lifetime = nonce_lifetime
        self._max_tracked = max_tracked_nonces
        self._counter = 0
        self._nc_seen: dict[str, int] = {}  # nonce -> highest nonce-count accepted
        self._nc_issue: dict[str, tuple[int, int]] = {}  # nonce -> (time, counter)
        self._forgotten_below = 0  # nonces issued before this counter may have lost their nc

    # -- nonces -------------------------------------------------------------------------------

    def _mac(self, payload: bytes, realm: str) -> bytes:
        return hmac.digest(self._secret, payload + realm.encode(), "sha256")[:_MAC_LEN]

    def make_nonce(self, realm: str, now: float) -> str:
        """A fresh nonce for `realm`, bound to the issue time `now`."""
        self._counter += 1
        payload = _NONCE_PAYLOAD.pack(max(int(now), 0), self._counter)
        return base64.urlsafe_b64encode(payload + self._mac(payload, realm)).decode().rstrip("=")

    def _open_nonce(self, nonce: str, realm: str) -> tuple[int, int] | None:
        """(issue time, counter) of a nonce this site issued for `realm`, else None."""
        if len(nonce) != 43:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        payload, mac = raw[: _NONCE_PAYLOAD.size], raw[_NONCE_PAYLOAD.size :]
        if not hmac.compare_digest(mac, self._mac(payload, realm)):
            return None
        issued, counter = _NONCE_PAYLOAD.unpack(payload)
        return issued, counter

    def _prune(self, now: float) -> None:
        limit = now - self.nonce_lifetime
        for nonce, (issued, _) in list(self._nc_issue.items()):
            if issued < limit:
                del self._nc_issue[nonce], self._nc_seen[nonce]
        while len(self._nc_seen) > self._max_tracked:
            oldest = min(self._nc_issue, key=lambda n: self._nc_issue[n][1])
            self._forgotten_below = max(self._forgotten_below, self._nc_issue[oldest][1] + 1)
            del self._nc_issue[oldest], self._nc_seen[oldest]

    # -- challenges ---------------------------------------------------------------------------

    def challenges(
        self, realm: Realm, now: float, *, stale: bool = False
    ) -> tuple[tuple[str, str], ...]:
        """WWW-Authenticate fields for `realm`: one per Digest algorithm (SHA-256 first) and
        one for Basic, in the order of `realm.schemes`."""
        out: list[tuple[str, str]] = []
        for scheme in realm.schemes:
            if scheme.lower() == "digest":
                for algorithm in DIGEST_ALGORITHMS:
                    value = (
                        f'Digest realm={_quote(realm.name)}, qop="auth", '
                        f'algorithm={algorithm}, nonce="{self.make_nonce(realm.name, now)}"'
                    )
                    if stale:
                        value += ", stale=true"
                    out.append(("WWW-Authenticate", value))
            elif scheme.lower() == "basic":
                out.append(
                    ("WWW-Authenticate", f'Basic realm={_quote(realm.name)}, charset="UTF-8"')
                )
        return tuple(out)

    def _deny(self, realm: Realm, now: float, reason: str, *, stale: bool = False) -> HttpError:
        return HttpError(401, reason, self.challenges(realm, now, stale=stale))

    # -- verification -------------------------------------------------------------------------

    def authenticate(
        self, realm: Realm, method: str, target: str, authorization: str | None, now: float
    ) -> str:
        """The user name an Authorization header proves, or raise `HttpError` (401 with the
        challenges, or 400 for a malformed header)."""
        if authorization is None:
            raise self._deny(realm, now, "authentication required")
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        offered = {s.lower() for s in realm.schemes}
        if scheme == "basic" and "basic" in offered:
            return self._basic(realm, rest.strip(), now)
        if scheme == "digest" and "digest" in offered:
            return self._digest(realm, method, target, parse_auth_params(rest), now)
        raise self._deny(realm, now, f"authentication scheme {scheme!r} not offered")

    def _basic(self, realm: Realm, token: str, now: float) -> str:
        # RFC 7617 §2: base64(user-id ":" password), UTF-8 as announced by charset.
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise HttpError(400, "malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise HttpError(400, "malformed Basic credentials")
        expected = realm.users.get(user)
        if expected is None:
            # Compare anyway so unknown and known users take similar time.
            hmac.compare_digest(password.encode(), password.encode())
            raise self._deny(realm, now, "unknown user")
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise self._deny(realm, now, "wrong password")
        return user

    def _digest_user(self, realm: Realm, params: dict[str, str], algorithm: str) -> str | None:
        if "username*" in params:
            # RFC 7616 §3.4.4 / RFC 8187 ext-value: charset'lang'pct-encoded
            charset, _, rest = params["username*"].partition("'")
            _, _, encoded = rest.partition("'")
            if charset.lower() != "utf-8" or "username" in params:
                raise HttpError(400, "bad username* parameter")
            return unquote(encoded, errors="strict")
        username = params.get("username")
        if username is None:
            raise HttpError(400, "Digest credentials without username")
        if params.get("userhash", "false").lower() == "true":
            # RFC 7616 §3.4.4: username = H(username ":" realm)
            h = DIGEST_ALGORITHMS[algorithm]
            for user in realm.users:
                if hmac.compare_digest(h(f"{user}:{realm.name}".encode()), username):
                    return user
            return None
        return username

    def _digest(
        self, realm: Realm, method: str, target: str, params: dict[str, str], now: float
    ) -> str:
        for required in ("realm", "nonce", "uri", "response", "qop", "nc", "cnonce"):
            if required not in params:
                raise self._deny(realm, now, f"Digest credentials without {required}")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in DIGEST_ALGORITHMS:
            raise self._deny(realm, now, f"unsupported algorithm {algorithm}")
        if params["qop"].lower() != "auth":
            raise self._deny(realm, now, "only qop=auth is supported")
        if params["realm"] != realm.name:
            raise self._deny(realm, now, "wrong realm")
        if params["uri"] != target:
            raise HttpError(400, "Digest uri does not match the request-target")
        nc_text = params["nc"]
        if _NC.fullmatch(nc_text) is None:
            raise HttpError(400, "malformed nonce-count")
        nonce = params["nonce"]
        issue = self._open_nonce(nonce, realm.name)
        if issue is None:
            raise self._deny(realm, now, "nonce not issued by this card")
        try:
            user = self._digest_user(realm, params, algorithm)
        except UnicodeDecodeError:
            raise HttpError(400, "bad username* parameter") from None
        password = realm.users.get(user) if user is not None else None
        if user is None or password is None:
            raise self._deny(realm, now, "unknown user")
        expected = digest_response(
            algorithm,
            username=user,
            realm=realm.name,
            password=password,
            method=method,
            uri=params["uri"],
            nonce=nonce,
            nc=nc_text,
            cnonce=params["cnonce"],
            qop="auth",
        )
        if not hmac.compare_digest(expected, params["response"].lower()):
            raise self._deny(realm, now, "wrong response")
        issued, counter = issue
        if now - issued > self.nonce_lifetime or issued > now + 1:
            raise self._deny(realm, now, "stale nonce", stale=True)
        nc = int(nc_text, 16)
        last = self._nc_seen.get(nonce)
        if last is None and counter < self._forgotten_below:
            raise self._deny(realm, now, "nonce no longer tracked", stale=True)
        if last is not None and nc <= last:
            raise self._deny(realm, now, "nonce-count replayed")
        self._nc_seen[nonce] = nc
        self._nc_issue[nonce] = issue
        if len(self._nc_seen) > self._max_tracked:
            self._prune(now)
        return user
