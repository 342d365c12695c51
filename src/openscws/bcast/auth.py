"""HTTP Digest on the BSM's provisioning endpoints (RFC 2617, via openscws.gba.digest), sans-IO.

The password is the SRK: the MRK (GBA, username = B-TID) or the Auth-Key ((R-)UIM, username =
the NAI), encoded by `openscws.bcast.keys.srk_password`. The BSM offers MD5 with qop "auth"
and "auth-int", so generic clients (curl --digest, Python requests' HTTPDigestAuth) given that
password pass too.

`BsmDigest` issues nonces and checks each Authorization: the realm and opaque it issued, the
request URI, a nonce it knows and has not expired, a nonce-count strictly above the last one
seen with that nonce (replay protection), a username the caller can resolve to a password
(otherwise 401 with a fresh challenge: the terminal re-bootstraps, the BSF's discipline for an
unknown or expired B-TID), and the response. An expired nonce with a correct response gets
401 with stale=TRUE. Time and randomness come in as arguments."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from openscws.gba.digest import (
    MD5,
    Challenge,
    Credentials,
    DigestError,
    check_response,
    digest_response,
)

__all__ = ["Authorized", "BsmDigest", "Refused", "RefusedReason", "client_credentials"]

BSM_REALM_PREFIX: Final = "3GPP-bootstrapping@"
"""The realm a GBA-keyed NAF announces (TS 24.109 §5.2): the BSM's FQDN after it."""


class RefusedReason(Enum):
    MISSING = "no credentials"
    MALFORMED = "malformed credentials"
    UNKNOWN_NONCE = "nonce not issued here"
    STALE = "nonce expired"
    REPLAY = "nonce count not increasing"
    UNKNOWN_USER = "unknown B-TID or NAI"
    BAD_RESPONSE = "wrong digest"
    WRONG_URI = "digest URI is not the request's"


@dataclass(frozen=True, slots=True)
class Authorized:
    username: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer 401 with `challenge` in WWW-Authenticate."""

    reason: RefusedReason
    challenge: Challenge


@dataclass(slots=True)
class _Nonce:
    issued: float
    last_nc: int = 0


@dataclass(slots=True)
class BsmDigest:
    bsm_fqdn: str
    lifetime: float = 300.0
    max_nonces: int = 100_000
    random: Callable[[int], bytes] = os.urandom
    _nonces: dict[str, _Nonce] = field(default_factory=dict)
    _opaque: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """The BSM checks requests in worker threads: nonce state changes under this lock."""

    def __post_init__(self) -> None:
        self._opaque = self.random(16).hex()

    @property
    def realm(self) -> str:
        return BSM_REALM_PREFIX + self.bsm_fqdn

    def challenge(self, now: float, *, stale: bool = False) -> Challenge:
        nonce = base64.b64encode(self.random(24)).decode()
        with self._lock:
            self._expire(now)
            self._nonces[nonce] = _Nonce(now)
        return Challenge(
            realm=self.realm,
            nonce=nonce,
            algorithm=MD5,
            qop=("auth", "auth-int"),
            opaque=self._opaque,
            stale=stale,
        )

    def _expire(self, now: float) -> None:
        # Nonces are kept in the order they were issued: the expired ones are at the front,
        # so each challenge costs what it expires, not a walk over every live nonce.
        nonces = self._nonces
        while nonces:
            oldest = next(iter(nonces))
            if now - nonces[oldest].issued <= self.lifetime and len(nonces) < self.max_nonces:
                break
            del nonces[oldest]

    def verify(
        self,
        authorization: str | None,
        *,
        method: str,
        uri: str,
        body: bytes,
        now: float,
        password_of: Callable[[str], bytes | None],
    ) -> Authorized | Refused:
        """Check one request's Authorization. `password_of` maps a username to its password
        (None: unknown). A refused nonce-count leaves the nonce's state unchanged."""

        def refuse(reason: RefusedReason, stale: bool = False) -> Refused:
            return Refused(reason, self.challenge(now, stale=stale))

        if authorization is None:
            return refuse(RefusedReason.MISSING)
        try:
            creds = Credentials.parse(authorization)
        except DigestError:
            return refuse(RefusedReason.MALFORMED)
        if creds.realm != self.realm or creds.opaque != self._opaque:
            return refuse(RefusedReason.UNKNOWN_NONCE)
        if (creds.algorithm or MD5).lower() != MD5.lower() or creds.qop not in ("auth", "auth-int"):
            return refuse(RefusedReason.MALFORMED)
        if creds.uri != uri:
            return refuse(RefusedReason.WRONG_URI)
        with self._lock:
            known = creds.nonce in self._nonces
        if not known:
            return refuse(RefusedReason.UNKNOWN_NONCE)
        password = password_of(creds.username)  # may block (database, Zn): not under the lock
        if password is None:
            return refuse(RefusedReason.UNKNOWN_USER)
        if not check_response(creds, password=password, method=method, body=body):
            return refuse(RefusedReason.BAD_RESPONSE)
        nc = int(creds.nc or "0", 16)
        with self._lock:
            state = self._nonces.get(creds.nonce)
            if state is not None and now - state.issued > self.lifetime:
                del self._nonces[creds.nonce]
                state, stale = None, True
            else:
                stale = False
            if state is not None and nc > state.last_nc:
                state.last_nc = nc
                return Authorized(creds.username)
        if stale:
            return refuse(RefusedReason.STALE, stale=True)
        if state is None:
            return refuse(RefusedReason.UNKNOWN_NONCE)
        return refuse(RefusedReason.REPLAY)


def client_credentials(
    challenge: Challenge,
    *,
    username: str,
    password: bytes,
    method: str,
    uri: str,
    body: bytes,
    nc: int = 1,
    random: Callable[[int], bytes] = os.urandom,
) -> Credentials:
    """The BSP-C's Authorization for `challenge` (qop auth-int when offered, over the body)."""
    qop = "auth-int" if "auth-int" in challenge.qop else "auth"
    nc_text, cnonce = f"{nc:08x}", random(8).hex()
    response = digest_response(
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=MD5,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        opaque=challenge.opaque,
    )
