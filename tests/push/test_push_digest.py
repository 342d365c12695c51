"""Digest authentication for REGISTER: RFC 2617 §3.5's worked example, and refusals."""

from __future__ import annotations

import pytest

from openscws.push.digest import Challenge, DigestError, authorization, verify

RFC2617 = Challenge(
    "testrealm@host.com",
    "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    opaque="5ccc069c403ebaf9f0171e9517f40e41",
)


def test_rfc2617_example() -> None:
    header = authorization(
        RFC2617,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert verify(
        header, method="GET", realm="testrealm@host.com", passwords={"Mufasa": "Circle Of Life"}
    ) == ("Mufasa", RFC2617.nonce)
    assert Challenge.parse(RFC2617.header()) == RFC2617


@pytest.mark.parametrize(
    ("passwords", "method", "realm"),
    [
        ({"Mufasa": "wrong"}, "GET", "testrealm@host.com"),
        ({}, "GET", "testrealm@host.com"),
        ({"Mufasa": "Circle Of Life"}, "REGISTER", "testrealm@host.com"),
        ({"Mufasa": "Circle Of Life"}, "GET", "other"),
    ],
)
def test_refused(passwords: dict[str, str], method: str, realm: str) -> None:
    header = authorization(
        RFC2617,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    with pytest.raises(DigestError):
        verify(header, method=method, realm=realm, passwords=passwords)


@pytest.mark.parametrize(
    "header",
    [
        "Basic realm=x",
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=MD4',
        'Digest realm="r", nonce="n", qop="auth-int"',
        "Digest ,,,",
    ],
)
def test_bad_challenges(header: str) -> None:
    with pytest.raises(DigestError):
        Challenge.parse(header)


def test_sha256() -> None:
    challenge = Challenge("scws.test", "n1", algorithm="SHA-256")
    header = authorization(
        challenge, username="d", password="p", method="REGISTER", uri="sip:scws.test", cnonce="c"
    )
    assert verify(header, method="REGISTER", realm="scws.test", passwords={"d": "p"}) == ("d", "n1")
