"""HTTP Digest authentication (RFC 2617) with the AKA algorithm of RFC 3310, sans-IO: the
`WWW-Authenticate`, `Authorization` and `Authentication-Info` fields, parsed and formatted, and
the request digest with qop "auth" and "auth-int" (the latter over the entity body).

    HA1      = MD5(username ":" realm ":" password)                  RFC 2617 §3.2.2.2
    HA2      = MD5(method ":" uri)                 qop=auth          §3.2.2.3
             = MD5(method ":" uri ":" MD5(body))   qop=auth-int
    response = MD5(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)  §3.2.2.1
             = MD5(HA1 ":" nonce ":" HA2)          no qop (RFC 2069 compatibility)
    rspauth  = the response again with an empty method (Authentication-Info, §3.2.3)

RFC 3310 (AKAv1-MD5): the nonce is base64(RAND || AUTN || server data) (§3.1), the password
is RES, its raw bytes (§3.2); on a synchronisation failure the client answers with
`auts="base64(AUTS)"` and a response computed over an empty password (§3.4): see
`sync_failure_password`.

Every malformed field raises `DigestError`, nothing else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Final

from openscws.errors import OpenScwsError

__all__ = [
    "AKA_V1_MD5",
    "AuthenticationInfo",
    "Challenge",
    "Credentials",
    "DigestError",
    "aka_nonce",
    "body_hash",
    "check_response",
    "digest_response",
    "rspauth",
    "split_aka_nonce",
    "sync_failure_password",
]

AKA_V1_MD5: Final = "AKAv1-MD5"
MD5: Final = "MD5"
_ALGORITHMS: Final = frozenset({AKA_V1_MD5.lower(), MD5.lower()})
_QOPS: Final = frozenset({"auth", "auth-int"})
MAX_FIELD: Final = 8192
"""A field longer than this is refused before parsing."""

# RFC 7230 §3.2.6: token and quoted-string (with quoted-pair).
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM: Final = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:({_TOKEN})|"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t -~])*)")'
    r"[ \t]*(,|$)"
)
_NC: Final = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""What a quoted-string cannot carry: control characters other than HTAB."""
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


class DigestError(OpenScwsError):
    """A Digest field that does not parse or lacks what the scheme requires."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """`WWW-Authenticate: Digest ...` (RFC 2617 §3.2.1)."""

    realm: str
    nonce: str
    algorithm: str = AKA_V1_MD5
    qop: tuple[str, ...] = ("auth-int",)
    opaque: str | None = None
    stale: bool = False

    def format(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)

    @classmethod
    def parse(cls, value: str) -> Challenge:
        params = _parse_digest(value)
        realm, nonce = _need(params, "realm"), _need(params, "nonce")
        algorithm = params.get("algorithm", MD5)
        if algorithm.lower() not in _ALGORITHMS:
            raise DigestError(f"algorithm {algorithm!r} is neither {AKA_V1_MD5} nor MD5")
        offered = params.get("qop", "")
        qop = tuple(q.strip() for q in offered.split(",") if q.strip())
        unknown = [q for q in qop if q not in _QOPS]
        if unknown:
            raise DigestError(f"qop {unknown[0]!r} is neither auth nor auth-int")
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=algorithm,
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """`Authorization: Digest ...` (RFC 2617 §3.2.2, RFC 3310 §3.4 for `auts`)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str | None = None
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    auts: str | None = None

    def format(self) -> str:
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
        ]
        if self.qop is not None:
            parts += [f"qop={self.qop}", f"nc={self.nc}", f"cnonce={_quote(self.cnonce or '')}"]
        parts.append(f"response={_quote(self.response)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.algorithm is not None:
            parts.append(f"algorithm={self.algorithm}")
        if self.auts is not None:
            parts.append(f"auts={_quote(self.auts)}")
        return "Digest " + ", ".join(parts)

    @classmethod
    def parse(cls, value: str) -> Credentials:
        params = _parse_digest(value)
        qop = params.get("qop")
        if qop is not None:
            if qop not in _QOPS:
                raise DigestError(f"qop {qop!r} is neither auth nor auth-int")
            if not _NC.fullmatch(params.get("nc", "")):
                raise DigestError("nc must be 8 hex digits when qop is given")
            if "cnonce" not in params:
                raise DigestError("cnonce is required when qop is given")
        algorithm = params.get("algorithm")
        if algorithm is not None and algorithm.lower() not in _ALGORITHMS:
            raise DigestError(f"algorithm {algorithm!r} is neither {AKA_V1_MD5} nor MD5")
        return cls(
            username=_need(params, "username"),
            realm=_need(params, "realm"),
            nonce=_need(params, "nonce", empty=True),
            uri=_need(params, "uri"),
            response=_need(params, "response", empty=True),
            algorithm=algorithm,
            qop=qop,
            nc=params.get("nc"),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
            auts=params.get("auts"),
        )

    @property
    def auts_bytes(self) -> bytes | None:
        """AUTS, 14 bytes, when the field carries one (RFC 3310 §3.4)."""
        if self.auts is None:
            return None
        auts = _b64(self.auts, "auts")
        if len(auts) != 14:
            raise DigestError(f"auts must be 14 bytes, not {len(auts)}")
        return auts


@dataclass(frozen=True, slots=True)
class AuthenticationInfo:
    """`Authentication-Info: ...` (RFC 2617 §3.2.3): the server's proof, `rspauth`."""

    rspauth: str
    qop: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    nextnonce: str | None = None

    def format(self) -> str:
        parts = []
        if self.nextnonce is not None:
            parts.append(f"nextnonce={_quote(self.nextnonce)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        parts.append(f"rspauth={_quote(self.rspauth)}")
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        return ", ".join(parts)

    @classmethod
    def parse(cls, value: str) -> AuthenticationInfo:
        params = _parse_params(value)
        qop = params.get("qop")
        if qop is not None and qop not in _QOPS:
            raise DigestError(f"qop {qop!r} is neither auth nor auth-int")
        return cls(
            rspauth=_need(params, "rspauth"),
            qop=qop,
            cnonce=params.get("cnonce"),
            nc=params.get("nc"),
            nextnonce=params.get("nextnonce"),
        )


# -- the digest ------------------------------------------------------------------------------


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def body_hash(body: bytes) -> str:
    """H(entity-body), the hex MD5 qop=auth-int puts into HA2."""
    return _md5_hex(body)


def digest_response(
    *,
    username: str,
    realm: str,
    password: bytes,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The 32 hex digits of `response` (RFC 2617 §3.2.2.1). `password` is bytes: RES for
    AKAv1-MD5 is binary (RFC 3310 §3.2)."""
    ha1 = _md5_hex(username.encode() + b":" + realm.encode() + b":" + password)
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + body_hash(body)
    elif qop not in (None, "auth"):
        raise DigestError(f"qop {qop!r} is neither auth nor auth-int")
    ha2 = _md5_hex(a2.encode())
    if qop is None:
        return _md5_hex(f"{ha1}:{nonce}:{ha2}".encode())
    if nc is None or cnonce is None:
        raise DigestError("nc and cnonce are required with qop")
    return _md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def check_response(credentials: Credentials, *, password: bytes, method: str, body: bytes) -> bool:
    """Whether `credentials.response` is the digest of `password` (constant time)."""
    expected = digest_response(
        username=credentials.username,
        realm=credentials.realm,
        password=password,
        method=method,
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
        body=body,
    )
    return hmac.compare_digest(expected.encode(), credentials.response.lower().encode())


def rspauth(credentials: Credentials, *, password: bytes, body: bytes = b"") -> str:
    """The server's `rspauth` for the response it sends with `body` (RFC 2617 §3.2.3: the
    request digest with an empty method; auth-int hashes the response's body)."""
    return digest_response(
        username=credentials.username,
        realm=credentials.realm,
        password=password,
        method="",
        uri=credentials.uri,
        nonce=credentials.nonce,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
        body=body,
    )


# -- AKA (RFC 3310) --------------------------------------------------------------------------


def aka_nonce(rand: bytes, autn: bytes, server_data: bytes = b"") -> str:
    """RFC 3310 §3.1: nonce = base64(RAND || AUTN || server specific data)."""
    if len(rand) != 16 or len(autn) != 16:
        raise DigestError("RAND and AUTN are 16 bytes each")
    return base64.b64encode(rand + autn + server_data).decode("ascii")


def split_aka_nonce(nonce: str) -> tuple[bytes, bytes, bytes]:
    """(RAND, AUTN, server data) of an AKAv1 nonce."""
    raw = _b64(nonce, "nonce")
    if len(raw) < 32:
        raise DigestError(f"an AKA nonce holds RAND and AUTN (32 bytes), this one {len(raw)}")
    return raw[:16], raw[16:32], raw[32:]


def sync_failure_password() -> bytes:
    """The password of the response that carries `auts` (RFC 3310 §3.4, as this project reads
    it: the empty string, since the client has no RES). The BSF checks the response with the
    same password, and AUTS itself with MAC-S (TS 33.102 §6.3.5)."""
    return b""


# -- field syntax ----------------------------------------------------------------------------


def _quote(value: str) -> str:
    if _CONTROL.search(value):
        raise DigestError("a Digest parameter cannot hold control characters (CR, LF, ...)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(quoted: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise DigestError(f"{name} is not base64") from None


def _need(params: dict[str, str], name: str, *, empty: bool = False) -> str:
    value = params.get(name)
    if value is None:
        raise DigestError(f"the {name} parameter is missing")
    if not value and not empty:
        raise DigestError(f"the {name} parameter is empty")
    return value


def _parse_digest(value: str) -> dict[str, str]:
    if len(value) > MAX_FIELD:
        raise DigestError(f"field longer than {MAX_FIELD} characters")
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"scheme {scheme!r} is not Digest")
    return _parse_params(rest)


def _parse_params(value: str) -> dict[str, str]:
    """auth-param *( "," auth-param ): names lower-cased, quoted-pairs undone; a repeated
    name, a bare token or trailing junk is an error."""
    if len(value) > MAX_FIELD:
        raise DigestError(f"field longer than {MAX_FIELD} characters")
    params: dict[str, str] = {}
    pos = 0
    text = value.strip(" \t")
    if not text:
        raise DigestError("no parameters")
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if m is None:
            raise DigestError(f"malformed parameter at offset {pos}")
        name = m.group(1).lower()
        if name in params:
            raise DigestError(f"parameter {name!r} given twice")
        token, quoted = m.group(2), m.group(3)
        params[name] = token if token is not None else _unquote(quoted)
        pos = m.end()
        if m.group(4) == "," and pos >= len(text):
            raise DigestError("trailing comma")
    return params
