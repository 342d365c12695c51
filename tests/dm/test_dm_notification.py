"""Package #0, the DM server's session alert: the header bits, the digest (with the
resynchronisation nonces), round trips, and malformed messages refused as DecodeError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openscws.dm.notification import SessionAlert, UiMode, digest
from openscws.errors import DecodeError

ALERT = SessionAlert("com.example.dmserver", 0x1234, UiMode.BACKGROUND)


def test_header_and_digest() -> None:
    trigger = ALERT.trigger()
    # version 11 (10 bits), ui-mode 01, initiator 1, 27 zero bits, session 1234, length 20.
    assert trigger[:8].hex() == "02d8000000123414"
    assert trigger[8:] == b"com.example.dmserver"
    message = ALERT.encode("srvpwd", b"0x00000000")
    assert message[:16].hex() == "579d33461dbb55c996454d4f05f27264"
    assert ALERT.encode("srvpwd", bytes(4))[:16].hex() == "4f734d3fdbcdd78e7126d72b9ce30a9e"
    got, alert = SessionAlert.decode(message)
    assert alert == ALERT
    assert got == digest("com.example.dmserver", "srvpwd", b"0x00000000", trigger)


def test_check_tries_the_stored_nonce_then_resynchronisation() -> None:
    stored = b"\x01\x02\x03\x04"
    assert SessionAlert.check(ALERT.encode("srvpwd", stored), "srvpwd", [stored]) == stored
    # A server that lost the nonce uses the resynchronisation one, in either spelling.
    for resync in (b"0x00000000", bytes(4)):
        assert SessionAlert.check(ALERT.encode("srvpwd", resync), "srvpwd", [stored]) == resync
    # The wrong password or an unknown nonce: nothing to act on.
    assert SessionAlert.check(ALERT.encode("other", stored), "srvpwd", [stored]) is None
    assert SessionAlert.check(ALERT.encode("srvpwd", b"zz"), "srvpwd", [stored]) is None


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (bytes(20), "shorter"),
        (bytes(16) + bytes.fromhex("02d8000000123414") + b"short", "length"),
        (bytes(16) + bytes.fromhex("0318000000123401") + b"x", "version 1.2"),  # 12 is taken
        (bytes(16) + bytes.fromhex("0418000000123401") + b"x", "version 1.6"),
        (bytes(16) + bytes.fromhex("02d8000001123401") + b"x", "future-use"),
        (bytes(16) + bytes.fromhex("02d8000000123400"), "shorter"),
    ],
)
def test_malformed(message: bytes, reason: str) -> None:
    if reason == "version 1.2":
        assert SessionAlert.decode(message)[1].version == 12  # accepted, defensively
        return
    with pytest.raises(DecodeError, match=reason):
        SessionAlert.decode(message)


@given(
    server_id=st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255),
    session=st.integers(0, 0xFFFF),
    ui=st.sampled_from(list(UiMode)),
    initiator=st.booleans(),
    body=st.binary(max_size=40),
)
def test_round_trip(server_id: str, session: int, ui: UiMode, initiator: bool, body: bytes) -> None:
    alert = SessionAlert(server_id, session, ui, initiator, body)
    message = alert.encode("pw", b"n")
    assert SessionAlert.decode(message)[1] == alert
    assert SessionAlert.check(message, "pw", [b"n"]) == b"n"


@given(st.binary(max_size=64))
def test_random_bytes_are_refused_or_read(data: bytes) -> None:
    try:
        SessionAlert.decode(data)
    except DecodeError:
        pass
