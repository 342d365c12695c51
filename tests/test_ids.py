"""Identities, defined once (openscws.ids)."""

from __future__ import annotations

import pytest

from openscws.ids import (
    DEFAULT_ICCID,
    check_iccid,
    default_agent_id,
    default_psk_identity,
    iccid_problem,
    luhn_digit,
)


def test_luhn_digit_of_known_numbers() -> None:
    # ISO/IEC 7812-1's worked number, and an ICCID printed on a real SIM.
    assert luhn_digit("7992739871") == 3
    assert luhn_digit("894450010219830482") == 6


def test_the_default_iccid_is_valid() -> None:
    assert iccid_problem(DEFAULT_ICCID) is None


@pytest.mark.parametrize(
    ("iccid", "reason"),
    [
        ("8988211000000000001", "Luhn check: its last digit would be 3"),
        ("898821100000000003", "19 or 20 digits"),
        ("89882110000000000x3", "decimal digits"),
        ("\uff18" * 19, "decimal digits"),  # fullwidth digits are not ASCII digits
    ],
)
def test_bad_iccids(iccid: str, reason: str) -> None:
    assert reason in (iccid_problem(iccid) or "")
    with pytest.raises(ValueError, match=reason):
        check_iccid(iccid)


def test_names_at_the_admin_server() -> None:
    assert default_psk_identity("8988211000000000003") == "scws-8988211000000000003"
    assert default_agent_id("8988211000000000003") == "//se-id/iccid/8988211000000000003"
