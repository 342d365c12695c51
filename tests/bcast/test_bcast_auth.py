"""HTTP Digest on the BSM: the BSP-C's credentials and an independent client (httpx's
DigestAuth, given base64(MRK)) pass; a wrong password, a replayed nonce-count, an unknown
B-TID, a foreign nonce, an expired nonce (stale=TRUE), another URI, malformed fields: 401."""

from __future__ import annotations

import itertools
import threading

import httpx
import pytest

from openscws.bcast.auth import Authorized, BsmDigest, Refused, RefusedReason, client_credentials
from openscws.bcast.keys import mbms_keys_gba_me, srk_password
from openscws.gba.digest import Challenge

MRK = mbms_keys_gba_me(bytes(range(32))).mrk
BTID = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"
URI = "/bcast/service"
BODY = b'<ServiceRequest requestID="1"><PurchaseItem globalIDRef="a"/></ServiceRequest>'


def passwords(user: str) -> bytes | None:
    return srk_password(MRK) if user == BTID else None


def bsm() -> BsmDigest:
    counter = itertools.count()
    return BsmDigest("bsm.example.org", lifetime=60, random=lambda n: next(counter).to_bytes(n))


def verify(
    guard: BsmDigest, header: str | None, now: float = 10.0, uri: str = URI
) -> Authorized | Refused:
    return guard.verify(header, method="POST", uri=uri, body=BODY, now=now, password_of=passwords)


def creds(
    challenge: Challenge, password: bytes = srk_password(MRK), nc: int = 1, user: str = BTID
) -> str:
    return client_credentials(
        challenge, username=user, password=password, method="POST", uri=URI, body=BODY, nc=nc
    ).format()


def test_challenge_then_success_then_next_nc() -> None:
    guard = bsm()
    first = verify(guard, None)
    assert isinstance(first, Refused)
    assert first.reason is RefusedReason.MISSING
    assert first.challenge.realm == "3GPP-bootstrapping@bsm.example.org"
    assert set(first.challenge.qop) == {"auth", "auth-int"}
    assert verify(guard, creds(first.challenge)) == Authorized(BTID)
    assert verify(guard, creds(first.challenge, nc=2)) == Authorized(BTID)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: creds(c, password=b"wrong"), RefusedReason.BAD_RESPONSE),
        (lambda c: creds(c, password=MRK), RefusedReason.BAD_RESPONSE),  # raw, not base64
        (lambda c: creds(c, user="other@bsf.example.org"), RefusedReason.UNKNOWN_USER),
        (
            lambda c: creds(Challenge(c.realm, "Zm9yZWlnbg==", "MD5", c.qop, c.opaque)),
            RefusedReason.UNKNOWN_NONCE,
        ),
        (
            lambda c: creds(Challenge("other", c.nonce, "MD5", c.qop, c.opaque)),
            RefusedReason.UNKNOWN_NONCE,
        ),
        (lambda c: 'Digest username="x"', RefusedReason.MALFORMED),
        (lambda c: "Basic eDp5", RefusedReason.MALFORMED),
    ],
)
def test_refusals(make: object, reason: RefusedReason) -> None:
    guard = bsm()
    challenge = verify(guard, None)
    assert isinstance(challenge, Refused)
    outcome = verify(guard, make(challenge.challenge))  # type: ignore[operator]
    assert isinstance(outcome, Refused)
    assert outcome.reason is reason
    assert outcome.challenge.nonce != challenge.challenge.nonce


def test_replayed_nonce_count() -> None:
    guard = bsm()
    challenge = verify(guard, None)
    assert isinstance(challenge, Refused)
    header = creds(challenge.challenge, nc=3)
    assert verify(guard, header) == Authorized(BTID)
    for nc in (3, 2):
        outcome = verify(guard, creds(challenge.challenge, nc=nc))
        assert isinstance(outcome, Refused)
        assert outcome.reason is RefusedReason.REPLAY


def test_other_uri_and_stale_nonce() -> None:
    guard = bsm()
    challenge = verify(guard, None)
    assert isinstance(challenge, Refused)
    header = creds(challenge.challenge)
    outcome = verify(guard, header, uri="/bcast/ltkm")
    assert isinstance(outcome, Refused)
    assert outcome.reason is RefusedReason.WRONG_URI
    stale = verify(guard, header, now=100.0)
    assert isinstance(stale, Refused)
    assert stale.reason is RefusedReason.STALE
    assert stale.challenge.stale


def test_httpx_digest_client_with_the_mrk_passes() -> None:
    guard = bsm()
    refused = verify(guard, None)
    assert isinstance(refused, Refused)
    for password, ok in ((srk_password(MRK).decode(), True), ("not-the-mrk", False)):
        auth = httpx.DigestAuth(BTID, password)
        request = httpx.Request("POST", "http://bsm.example.org" + URI, content=BODY)
        flow = auth.sync_auth_flow(request)
        next(flow)
        challenge = guard.challenge(10.0)
        response = httpx.Response(
            401, headers={"WWW-Authenticate": challenge.format()}, request=request
        )
        retry = flow.send(response)
        outcome = verify(guard, retry.headers["Authorization"])
        assert isinstance(outcome, Authorized) is ok


def test_concurrent_replays_pass_once() -> None:
    """The BSM checks requests in worker threads: one nonce-count passes once, however many
    copies race."""
    guard = bsm()
    challenge = verify(guard, None)
    assert isinstance(challenge, Refused)
    header = creds(challenge.challenge, nc=1)
    outcomes: list[Authorized | Refused] = []
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        outcomes.append(verify(guard, header))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, Authorized) for o in outcomes) == 1
    assert {o.reason for o in outcomes if isinstance(o, Refused)} == {RefusedReason.REPLAY}


def test_nonces_expire_oldest_first_and_stay_capped() -> None:
    digest = BsmDigest("bsm.example.org", lifetime=10, max_nonces=5)
    issued = [digest.challenge(float(t)).nonce for t in range(5)]
    assert list(digest._nonces) == issued
    fresh = digest.challenge(12.0).nonce  # issued at 0 and 1 are past their lifetime
    assert list(digest._nonces) == [*issued[2:], fresh]
    more = [digest.challenge(12.0).nonce for _ in range(3)]
    assert len(digest._nonces) == 5  # the cap drops the oldest live ones
    assert list(digest._nonces) == [*issued[4:], fresh, *more]
