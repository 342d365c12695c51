"""The DM server's HTTP transport check, sans-IO (`dm.server_auth`): a good Digest answer to
a live nonce is a `NonceUse` for the caller to record, never a decision taken from the
check's own memory, so two server processes sharing the Digest secret give the same verdict
and the shared record alone decides a replay."""

from __future__ import annotations

import hashlib
import re

import pytest

from openscws.dm.server_auth import Challenger, Credentials, NonceUse, parse_authorization

REALM = "openscws DM"
SECRET = b"k" * 32
T0 = 1_800_000_000_000


def answer(
    challenger: Challenger,
    issued_ms: int,
    *,
    password: str = "pw",
    nc: str = "00000001",
    algorithm: str = "SHA-256",
    uri: str = "/dm",
) -> Credentials:
    """The Authorization a client computes for the challenge issued at `issued_ms`."""
    text = next(v for _, v in challenger.challenges(issued_ms) if f"algorithm={algorithm}" in v)
    nonce = re.search(r'nonce="([^"]+)"', text)
    assert nonce is not None
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1 = hx(f"user:{REALM}:{password}")
    response = hx(f"{ha1}:{nonce[1]}:{nc}:c0ffee:auth:{hx(f'POST:{uri}')}")
    cred = parse_authorization(
        f'Digest username="user", realm="{REALM}", nonce="{nonce[1]}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc={nc}, cnonce="c0ffee", response="{response}"'
    )
    assert cred is not None
    return cred


def check(challenger: Challenger, cred: Credentials, now_ms: int) -> object:
    return challenger.check_digest(cred, "POST", "user", "pw", now_ms)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_good_answer_is_a_use_to_record(algorithm: str) -> None:
    c = Challenger(REALM, secret=SECRET)
    cred = answer(c, T0, algorithm=algorithm, nc="0000000A")
    verdict = check(c, cred, T0 + 1000)
    assert verdict == NonceUse(cred.params["nonce"], "0000000a", T0)


def test_the_check_keeps_no_memory_of_uses() -> None:
    """The same answer twice gets the same verdict: whether it is a replay is the record's
    to say (the server's database), not the memory of one process."""
    c = Challenger(REALM, secret=SECRET)
    cred = answer(c, T0)
    first = check(c, cred, T0 + 10)
    assert isinstance(first, NonceUse)
    assert check(c, cred, T0 + 20) == first


def test_another_process_with_the_secret_gives_the_same_use() -> None:
    a, b = Challenger(REALM, secret=SECRET), Challenger(REALM, secret=SECRET)
    cred = answer(a, T0)
    assert check(b, cred, T0 + 10) == check(a, cred, T0 + 10)
    assert check(Challenger(REALM, secret=b"x" * 32), cred, T0 + 10) == "bad"


def test_each_nonce_count_is_its_own_use() -> None:
    c = Challenger(REALM, secret=SECRET)
    one = check(c, answer(c, T0, nc="00000001"), T0 + 10)
    two = check(c, answer(c, T0, nc="00000002"), T0 + 10)
    assert isinstance(one, NonceUse)
    assert isinstance(two, NonceUse)
    assert (one.nonce, one.issued_ms) == (two.nonce, two.issued_ms)
    assert (one.nc, two.nc) == ("00000001", "00000002")


def test_an_expired_nonce_is_stale_and_a_future_one_bad() -> None:
    c = Challenger(REALM, secret=SECRET, nonce_lifetime_s=300)
    cred = answer(c, T0)
    assert isinstance(check(c, cred, T0 + 300_000), NonceUse)
    assert check(c, cred, T0 + 300_001) == "stale"
    assert check(c, cred, T0 - 1) == "bad"  # issued after "now": not a nonce of ours


@pytest.mark.parametrize(("password", "nc"), [("wrong", "00000001"), ("pw", "1")])
def test_bad_answers_give_nothing_to_record(password: str, nc: str) -> None:
    c = Challenger(REALM, secret=SECRET)
    assert check(c, answer(c, T0, password=password, nc=nc), T0 + 10) == "bad"


def test_a_forged_nonce_is_bad() -> None:
    c = Challenger(REALM, secret=SECRET)
    cred = answer(c, T0)
    forged = Credentials("digest", "user", {**cred.params, "nonce": "A" + cred.params["nonce"]})
    assert check(c, forged, T0 + 10) == "bad"
