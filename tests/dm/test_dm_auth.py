"""OMA DM 1.2 credentials against the DM Protocol's own examples (§2.4.4: Bruce2 / OhBehave),
and the x-syncml-hmac header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.dm.auth import (
    HmacHeader,
    basic_credential,
    md5_credential,
    message_mac,
    verify,
)
from openscws.errors import DecodeError

BODY = b'<SyncML xmlns="SYNCML:SYNCML1.2"></SyncML>'


def test_spec_examples() -> None:
    assert basic_credential("Bruce2", "OhBehave") == "QnJ1Y2UyOk9oQmVoYXZl"  # §2.4.4.1
    assert md5_credential("Bruce2", "OhBehave", b"Nonce") == "Zz6EivR3yeaaENcRN6lpAQ=="  # §2.4.4.2
    assert message_mac("Bruce2", "OhBehave", b"Nonce", BODY) == "aSBvnDHzBa7JhdjeEEUR2g=="
    assert verify("Zz6EivR3yeaaENcRN6lpAQ==", md5_credential("Bruce2", "OhBehave", b"Nonce"))
    assert not verify("Zz6EivR3yeaaENcRN6lpAQ==", md5_credential("Bruce2", "OhBehave", b"nonce"))


def test_hmac_header() -> None:
    header = HmacHeader("Bruce2", message_mac("Bruce2", "OhBehave", b"Nonce", BODY))
    value = header.value()
    assert value == 'algorithm=MD5, username="Bruce2", mac=aSBvnDHzBa7JhdjeEEUR2g=='
    assert HmacHeader.parse(value) == header
    assert header.check("OhBehave", b"Nonce", BODY)
    assert not header.check("OhBehave", b"Nonce", BODY + b" ")  # one byte more: refused
    # algorithm is optional (MD5), order free, spaces around '=' allowed.
    parsed = HmacHeader.parse('mac = aSBvnDHzBa7JhdjeEEUR2g==, username="Bruce2"')
    assert parsed == header


@pytest.mark.parametrize(
    "value",
    [
        'username="Bruce2"',  # no mac
        "mac=abc",  # no username
        'algorithm=SHA1, username="a", mac=b',  # only MD5 is defined
        'username="a", username="b", mac=c',
        'username="a" mac=c',
    ],
)
def test_bad_hmac_headers(value: str) -> None:
    with pytest.raises(DecodeError):
        HmacHeader.parse(value)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1))
def test_usernames_survive_quoting(name: str) -> None:
    header = HmacHeader(name, "bWFj")
    assert HmacHeader.parse(header.value()) == header
