"""HTTP Digest (RFC 2617) and Digest AKA (RFC 3310): the RFC 2617 §3.5 example, the Ub
messages of TS 24.109 Annex A as printed there, round trips, and fuzzing: only DigestError."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.gba.digest import (
    AKA_V1_MD5,
    AuthenticationInfo,
    Challenge,
    Credentials,
    DigestError,
    aka_nonce,
    body_hash,
    check_response,
    digest_response,
    rspauth,
    split_aka_nonce,
    sync_failure_password,
)


def test_rfc2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / "Circle Of Life", qop=auth.
    got = digest_response(
        username="Mufasa",
        realm="testrealm@host.com",
        password=b"Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


def test_ts24109_sync_failure_request_parses() -> None:
    # TS 24.109 table A.4-1 (Authorization of the GET carrying AUTS), the placeholders
    # replaced by real base64.
    auts = bytes(range(14))
    nonce = aka_nonce(bytes(16), bytes(range(16)), b"srv")
    field = (
        'Digest username="user1_private@home1.net", realm="bsf.home1.net", '
        f'nonce="{nonce}", uri="/", qop=auth-int, nc=00000001, '
        'cnonce="6629fae49393a05397450978507c4ef1", '
        'response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f30e41", algorithm=AKAv1-MD5, '
        f'auts="{base64.b64encode(auts).decode()}"'
    )
    c = Credentials.parse(field)
    assert (c.username, c.realm, c.uri, c.qop, c.nc) == (
        "user1_private@home1.net",
        "bsf.home1.net",
        "/",
        "auth-int",
        "00000001",
    )
    assert c.auts_bytes == auts
    assert split_aka_nonce(c.nonce) == (bytes(16), bytes(range(16)), b"srv")


def test_initial_request_with_empty_nonce_and_response() -> None:
    # TS 24.109 table A.3-1.
    c = Credentials.parse(
        'Digest username="user1_private@home1.net", realm="bsf.home1.net", nonce="", '
        'uri="/", response=""'
    )
    assert (c.nonce, c.response, c.qop) == ("", "", None)
    assert Credentials.parse(c.format()) == c


def test_aka_round_trip_auth_int() -> None:
    rand, autn, res = bytes(range(16)), bytes(range(16, 32)), bytes.fromhex("a54211d5e3ba50bf")
    challenge = Challenge(realm="bsf.example.net", nonce=aka_nonce(rand, autn), opaque="op")
    header = challenge.format()
    assert "algorithm=AKAv1-MD5" in header
    assert 'qop="auth-int"' in header
    back = Challenge.parse(header)
    assert back == challenge
    body = b"<x/>"
    response = digest_response(
        username="u@x", realm=back.realm, password=res, method="GET", uri="/",
        nonce=back.nonce, qop="auth-int", nc="00000001", cnonce="ab", body=body,
    )  # fmt: skip
    creds = Credentials("u@x", back.realm, back.nonce, "/", response, AKA_V1_MD5, "auth-int",
                        "00000001", "ab", "op")  # fmt: skip
    parsed = Credentials.parse(creds.format())
    assert parsed == creds
    assert check_response(parsed, password=res, method="GET", body=body)
    assert not check_response(parsed, password=res[:-1] + b"\0", method="GET", body=body)
    assert not check_response(parsed, password=res, method="GET", body=b"<y/>")
    info = AuthenticationInfo(rspauth(parsed, password=res, body=b"resp"), "auth-int", "ab",
                              "00000001")  # fmt: skip
    assert AuthenticationInfo.parse(info.format()) == info
    assert body_hash(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert sync_failure_password() == b""


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("Basic abc", "not Digest"),
        ('Digest realm="r"', "nonce parameter is missing"),
        ('Digest realm="r", nonce="n", algorithm=SHA-256', "algorithm"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "qop"),
        ('Digest realm="r", realm="s", nonce="n"', "twice"),
        ('Digest realm="r", nonce="n",', "trailing comma"),
        ('Digest realm="r" nonce="n"', "malformed"),
        ('Digest realm="unterminated, nonce="n"', "malformed"),
    ],
)
def test_bad_challenges(field: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        Challenge.parse(field)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ('Digest username="u", realm="r", nonce="", uri="/"', "response"),
        ('Digest username="u", realm="r", nonce="", uri="/", response="", qop=auth', "nc"),
        (
            'Digest username="u", realm="r", nonce="", uri="/", response="", qop=auth, nc=00000001',
            "cnonce",
        ),
        ('Digest username="", realm="r", nonce="", uri="/", response=""', "username"),
    ],
)
def test_bad_credentials(field: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        Credentials.parse(field)


def test_bad_auts_and_nonce() -> None:
    c = Credentials("u", "r", "n", "/", "", auts="AAEC")
    with pytest.raises(DigestError, match="14 bytes"):
        _ = c.auts_bytes
    with pytest.raises(DigestError, match="not base64"):
        _ = Credentials("u", "r", "n", "/", "", auts="!!").auts_bytes
    with pytest.raises(DigestError, match="32 bytes"):
        split_aka_nonce(base64.b64encode(bytes(31)).decode())
    with pytest.raises(DigestError, match="CR, LF"):
        Challenge("a\r\nX-Injected: 1", "n").format()


_FIELD_CHARS = st.sampled_from(list('Digest usernam=realm,nonce"\\ \t/=qop auts-int0123,"'))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.text(_FIELD_CHARS, max_size=120)))
def test_fuzz_parsers_raise_digest_error_only(text: str) -> None:
    for parse in (Challenge.parse, Credentials.parse, AuthenticationInfo.parse):
        try:
            parse(text)
        except DigestError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40),
)
def test_fuzz_round_trip(realm: str, opaque: str) -> None:
    ch = Challenge(realm=realm, nonce=aka_nonce(bytes(16), bytes(16)), opaque=opaque)
    assert Challenge.parse(ch.format()) == ch
