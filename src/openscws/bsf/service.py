"""The BSF's behaviour over its database: Ub (TS 24.109 §4) and Zn (the NAF key service), each
as one call from a request to an `HttpAnswer`. Blocking (database, MILENAGE): the server runs
the calls in worker threads.

Ub, per request (`gba.ub` has the messages and the tables):

* no nonce: the IMPI's next vector from the HSS (its SQN committed first), the challenge stored
  under its nonce with XRES and Ks = CK || IK sealed, then 401 with the challenge;
* a stored nonce, answered with RES: in one transaction, the challenge read, RES judged, the
  challenge CHALLENGED -> BOOTSTRAPPED in one conditional UPDATE and the new session (B-TID,
  Ks, lifetime) inserted, then 200;
* a stored nonce with AUTS: the HSS resynchronises (MAC-S checked), then a new 401;
* failures answer as `gba.ub.FAILURE_STATUS` says, each with one log line (never a key).

A bootstrap is thus two write transactions (SQL core statements built once, no ORM unit of
work); each failure logs one warning, a success only at DEBUG (no log line per request).

Zn (this project's reading of TS 33.220 §4.5.3 and TS 29.109, which specify Diameter): the NAF
POSTs JSON {"btid", "naf_fqdn", "ua_protocol"} with `Authorization: Bearer <token>`; the token
names the one NAF FQDN it may ask keys for; the answer is JSON with the IMPI, the GBA type, the
key lifetime and Ks_NAF (GBA_ME) or Ks_ext_NAF and Ks_int_NAF (GBA_U), hex."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from openscws.bsf.db import BsfDatabase
from openscws.bsf.hss import Hss, SqlHss
from openscws.bsf.models import (
    CHALLENGES,
    SESSIONS,
    BootstrapSession,
    GbaType,
    NafClient,
    PendingChallenge,
)
from openscws.gba.bootstrap_xml import BootstrappingInfo, format_lifetime
from openscws.gba.digest import Credentials, DigestError, check_response, sync_failure_password
from openscws.gba.kdf import b_tid, ks_int_naf, ks_naf, naf_id
from openscws.gba.ub import (
    BSF_TABLE,
    FAILURE_STATUS,
    PRODUCT_TOKEN,
    BsfEvent,
    BsfState,
    UbStateError,
    bsf_bootstrapped,
    bsf_challenge,
    bsf_judge,
    step,
)
from openscws.ras.db import Conflict, NotFound
from openscws.ras.vault import Vault

__all__ = ["CHALLENGE_TTL_S", "BsfService", "HttpAnswer", "ZnKeys"]

log = logging.getLogger(__name__)

CHALLENGE_TTL_S: Final = 300
"""How long a challenge may be answered."""
SERVER: Final = f"openscws-bsf {PRODUCT_TOKEN}"
_SERVER_FIELD: Final = ("Server", SERVER)
MAX_ZN_BODY: Final = 4096

# Ub's statements, built once: a bootstrap runs them on a bare connection (`BsfDatabase.
# transaction`), without the ORM's unit of work.
_PENDING: Final = select(
    CHALLENGES.c.impi, CHALLENGES.c.rand, CHALLENGES.c.xres, CHALLENGES.c.ks,
    CHALLENGES.c.gba_type, CHALLENGES.c.state, CHALLENGES.c.created_ms,
).where(CHALLENGES.c.nonce == bindparam("b_nonce"))  # fmt: skip
_ANSWERED: Final = (
    update(CHALLENGES)
    .where(CHALLENGES.c.nonce == bindparam("b_nonce"))
    .where(CHALLENGES.c.state == bindparam("was"))
    .values(state=bindparam("new"))
)
_NEW_CHALLENGE: Final = insert(CHALLENGES)
_NEW_SESSION: Final = insert(SESSIONS)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ZnKeys:
    """What the BSF tells a NAF about one B-TID (the NAF's keys stay out of repr)."""

    btid: str
    impi: str
    gba_type: GbaType
    lifetime: datetime
    keys: dict[str, bytes]

    def __repr__(self) -> str:
        return f"ZnKeys({self.btid!r}, {self.impi!r}, {self.gba_type}, {self.lifetime})"


class BsfService:
    def __init__(
        self,
        db: BsfDatabase,
        vault: Vault,
        hss: Hss,
        *,
        server_name: str,
        lifetime_s: int = 3600,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if lifetime_s <= 0:
            raise ValueError("the key lifetime is a positive number of seconds")
        self.db = db
        self.vault = vault
        self.hss = hss
        self.server_name = server_name
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.random = random

    # -- Ub ---------------------------------------------------------------------------------

    def ub(self, method: str, authorization: str | None, body: bytes = b"") -> HttpAnswer:
        if authorization is None:
            log.warning("Ub: request without Authorization (it must carry the IMPI)")
            return self._fail("no-identity")
        try:
            creds = Credentials.parse(authorization)
        except DigestError as exc:
            log.warning("Ub: malformed Authorization: %s", exc)
            return self._fail("malformed")
        impi = creds.username
        if not creds.nonce:
            return self._challenge(impi)
        if creds.auts is not None:
            return self._resync(creds, method, body)
        now_ms = self._now_ms()
        btid = gba_type = ""
        xres = b""
        outcome: BsfEvent | str
        with self.db.transaction() as c:
            rec = c.execute(_PENDING, {"b_nonce": creds.nonce}).one_or_none()
            if rec is None or now_ms - rec.created_ms > CHALLENGE_TTL_S * 1000:
                outcome = "stale"
            elif rec.impi != impi:
                log.warning("Ub: %s: answers a nonce issued to another IMPI", impi)
                return self._fail("res-wrong")
            else:
                xres = self._open(creds.nonce, "xres", rec.xres)
                outcome = BsfEvent.RES_WRONG
                if creds.realm == self.server_name:
                    outcome = bsf_judge(creds, xres, method, body)
                if not self._consume(c, creds.nonce, BsfState(rec.state), outcome):
                    outcome = "replayed"
                elif outcome is BsfEvent.RES_OK:
                    btid, gba_type = b_tid(rec.rand, self.server_name), rec.gba_type
                    ks = self._open(creds.nonce, "ks", rec.ks)
                    c.execute(
                        _NEW_SESSION,
                        {
                            "btid": btid,
                            "impi": impi,
                            "rand": rec.rand,
                            "ks": self.vault.seal(ks, f"bsf/session/{btid}/ks"),
                            "gba_type": gba_type,
                            "created_ms": now_ms,
                            "expires_ms": now_ms + self.lifetime_s * 1000,
                        },
                    )
        if outcome == "stale":
            log.warning("Ub: %s: unknown or expired nonce: a new challenge", impi)
            return self._challenge(impi, stale=True)
        if outcome == "replayed":
            log.warning("Ub: %s: replayed nonce (already answered): a new challenge", impi)
            return self._challenge(impi)
        if outcome is BsfEvent.RES_WRONG:
            log.warning("Ub: %s: wrong RES (user authentication failed)", impi)
            return self._fail("res-wrong")
        lifetime = datetime.fromtimestamp((now_ms + self.lifetime_s * 1000) / 1000, UTC)
        fields, xml = bsf_bootstrapped(creds, xres, BootstrappingInfo(btid, lifetime))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Ub: %s bootstrapped (%s): B-TID %s until %s", impi, gba_type, btid,
                      format_lifetime(lifetime))  # fmt: skip
        return HttpAnswer(200, (_SERVER_FIELD, *fields), xml)

    def _resync(self, creds: Credentials, method: str, body: bytes) -> HttpAnswer:
        """An answer with AUTS: the HSS takes SQN_MS (MAC-S checked) outside the challenge's
        transaction, since the subscriber store may be this database."""
        impi = creds.username
        try:
            auts = creds.auts_bytes
        except DigestError as exc:
            log.warning("Ub: %s: malformed auts: %s", impi, exc)
            return self._fail("malformed")
        assert auts is not None
        with self.db.transaction() as c:
            rec = c.execute(_PENDING, {"b_nonce": creds.nonce}).one_or_none()
        if rec is None or self._now_ms() - rec.created_ms > CHALLENGE_TTL_S * 1000:
            log.warning("Ub: %s: unknown or expired nonce: a new challenge", impi)
            return self._challenge(impi, stale=True)
        if rec.impi != impi:
            log.warning("Ub: %s: answers a nonce issued to another IMPI", impi)
            return self._fail("res-wrong")
        ok = check_response(creds, password=sync_failure_password(), method=method, body=body)
        ok = ok and self.hss.resync(impi, rec.rand, auts)
        event = BsfEvent.AUTS_OK if ok else BsfEvent.AUTS_BAD
        with self.db.transaction() as c:
            consumed = self._consume(c, creds.nonce, BsfState(rec.state), event)
        if not consumed:
            log.warning("Ub: %s: replayed nonce (already answered): a new challenge", impi)
            return self._challenge(impi)
        if not ok:
            log.warning("Ub: %s: AUTS does not check (MAC-S or digest): refused", impi)
            return self._fail("auts-wrong")
        log.info("Ub: %s: SQN resynchronised from AUTS: a new challenge", impi)
        return self._challenge(impi)

    @staticmethod
    def _consume(c: Connection, nonce: str, state: BsfState, event: BsfEvent) -> bool:
        """CHALLENGED -> the event's state (`gba.ub.BSF_TABLE`), exactly once even under
        concurrent answers (one conditional UPDATE); False when the table does not allow the
        event in the state read, or another answer took the challenge first: a replay."""
        try:
            new = step(BSF_TABLE, state, event)
        except UbStateError:
            return False
        done = c.execute(_ANSWERED, {"b_nonce": nonce, "was": state.value, "new": new.value})
        return _rowcount(done) == 1

    def _challenge(self, impi: str, *, stale: bool = False) -> HttpAnswer:
        """A vector, its challenge stored, the 401. The SQN is committed before the 401
        leaves: together with the challenge when the subscriber store is this database,
        else by the store itself first."""
        with self.db.transaction() as c:
            if isinstance(self.hss, SqlHss) and self.hss.db is self.db:
                got = self.hss.vector_in(c, impi)
            else:
                got = self.hss.vector(impi)
            if got is None:
                log.warning("Ub: %s: unknown IMPI", impi)
                return self._fail("unknown-user")
            vector, gba_type = got
            challenge = bsf_challenge(
                self.server_name, vector.rand, vector.autn, self.random(16).hex()
            )
            if stale:
                challenge = replace(challenge, stale=True)
            where = f"bsf/challenge/{challenge.nonce}"
            c.execute(
                _NEW_CHALLENGE,
                {
                    "nonce": challenge.nonce,
                    "impi": impi,
                    "rand": vector.rand,
                    "xres": self.vault.seal(vector.xres, f"{where}/xres"),
                    "ks": self.vault.seal(vector.ck + vector.ik, f"{where}/ks"),
                    "gba_type": str(gba_type),
                    "state": BsfState.CHALLENGED.value,
                    "created_ms": self._now_ms(),
                },
            )
        log.debug("Ub: %s challenged (%s)", impi, gba_type)
        return HttpAnswer(401, (_SERVER_FIELD, ("WWW-Authenticate", challenge.format())), b"")

    def _fail(self, reason: str) -> HttpAnswer:
        return HttpAnswer(FAILURE_STATUS[reason], (_SERVER_FIELD,), b"")

    # -- Zn ---------------------------------------------------------------------------------

    def zn(self, authorization: str | None, body: bytes) -> HttpAnswer:
        scheme, _, token = (authorization or "").partition(" ")
        naf = self._naf_of(token.strip()) if scheme.lower() == "bearer" else None
        if naf is None:
            log.warning("Zn: request without a valid NAF token")
            return _json(401, {"error": "a NAF token is required"}, ("WWW-Authenticate", "Bearer"))
        if len(body) > MAX_ZN_BODY:
            return _json(413, {"error": "request too large"})
        try:
            req = json.loads(body)
            btid, fqdn = req["btid"], req["naf_fqdn"]
            ua = bytes.fromhex(req["ua_protocol"])
            if not (isinstance(btid, str) and isinstance(fqdn, str) and len(ua) == 5):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            log.warning("Zn: %s: malformed request", naf)
            return _json(400, {"error": 'JSON {"btid", "naf_fqdn", "ua_protocol": 10 hex digits}'})
        if fqdn.lower() != naf:
            log.warning("Zn: NAF %s asked for the keys of NAF %s: refused", naf, fqdn)
            return _json(403, {"error": f"this token is for {naf}"})
        keys = self.naf_keys(btid, naf_id(fqdn.lower(), ua))
        if keys is None:
            log.warning("Zn: %s: unknown or expired B-TID %s", naf, btid)
            return _json(404, {"error": "unknown or expired B-TID"})
        log.info("Zn: %s: keys of %s (%s) given", naf, btid, keys.gba_type)
        return _json(
            200,
            {
                "btid": keys.btid,
                "impi": keys.impi,
                "gba_type": str(keys.gba_type),
                "lifetime": format_lifetime(keys.lifetime),
                **{name: value.hex() for name, value in keys.keys.items()},
            },
        )

    def naf_keys(self, btid: str, naf: bytes) -> ZnKeys | None:
        """Ks_NAF (GBA_ME) or Ks_ext_NAF and Ks_int_NAF (GBA_U) of `btid` for NAF_Id `naf`
        (TS 33.220 §4.5.3, §5.3.3); None when the B-TID is unknown or its lifetime is over."""
        with self.db.read() as s:
            row = s.get(BootstrapSession, btid)
            if row is None or row.expires_ms <= self._now_ms():
                return None
            s.expunge(row)
        ks = self.vault.unseal(row.ks, f"bsf/session/{btid}/ks")
        gba_type = GbaType(row.gba_type)
        ext = ks_naf(ks, row.rand, row.impi, naf)
        keys = (
            {"ks_ext_naf": ext, "ks_int_naf": ks_int_naf(ks, row.rand, row.impi, naf)}
            if gba_type is GbaType.GBA_U
            else {"ks_naf": ext}
        )
        lifetime = datetime.fromtimestamp(row.expires_ms / 1000, UTC)
        return ZnKeys(btid, row.impi, gba_type, lifetime, keys)

    def _naf_of(self, token: str) -> str | None:
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        with self.db.read() as s:
            return s.execute(
                select(NafClient.fqdn).where(NafClient.token_hash == digest)
            ).scalar_one_or_none()

    def add_naf(self, fqdn: str) -> str:
        """Registers a NAF for Zn and returns its new token (shown once, stored hashed)."""
        fqdn = fqdn.strip().lower().rstrip(".")
        if not fqdn or len(fqdn) > 255:
            raise Conflict("a NAF FQDN is 1..255 characters")
        token = secrets.token_urlsafe(32)
        with self.db.write() as s:
            if s.get(NafClient, fqdn) is not None:
                raise Conflict(f"NAF {fqdn} exists (rm it first to issue a new token)")
            s.add(
                NafClient(
                    fqdn=fqdn,
                    token_hash=hashlib.sha256(token.encode()).digest(),
                    created_ms=self._now_ms(),
                )
            )
        return token

    def list_nafs(self) -> list[str]:
        with self.db.read() as s:
            return list(s.execute(select(NafClient.fqdn).order_by(NafClient.fqdn)).scalars())

    def remove_naf(self, fqdn: str) -> None:
        with self.db.write() as s:
            if _rowcount(s.execute(delete(NafClient).where(NafClient.fqdn == fqdn.lower()))) == 0:
                raise NotFound(f"no NAF {fqdn}")

    # -- housekeeping -----------------------------------------------------------------------

    def purge(self) -> tuple[int, int]:
        """Drops challenges past their time and sessions past their lifetime."""
        now = self._now_ms()
        with self.db.write() as s:
            c = _rowcount(
                s.execute(
                    delete(PendingChallenge).where(
                        PendingChallenge.created_ms < now - CHALLENGE_TTL_S * 1000
                    )
                )
            )
            k = _rowcount(
                s.execute(delete(BootstrapSession).where(BootstrapSession.expires_ms <= now))
            )
        return c, k

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _open(self, nonce: str, column: str, blob: bytes) -> bytes:
        return self.vault.unseal(blob, f"bsf/challenge/{nonce}/{column}")


def _json(status: int, payload: dict[str, str], *extra: tuple[str, str]) -> HttpAnswer:
    return HttpAnswer(
        status,
        (("Server", SERVER), ("Content-Type", "application/json"), ("Cache-Control", "no-store"),
         *extra),
        json.dumps(payload).encode(),
    )  # fmt: skip


def _rowcount(result: object) -> int:
    count: int = getattr(result, "rowcount", 0)
    return count
