"""Identities, defined once (openscws.ids)."""

from __future__ import annotations

import pytest

from openscws.ids import (
    DEFAULT_ICCID,
    check_iccid,
    default_agent_id,
    default_psk_identity,
    fleet_iccid,
    fleet_msisdn,
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


def test_fleet_iccids_count_up_and_pass_luhn() -> None:
    first = DEFAULT_ICCID
    ids = [fleet_iccid(first, i) for i in range(25)]
    assert ids[0] == first
    assert ids[1] == "8988211000000000011"
    assert len(set(ids)) == 25
    for iccid in ids:
        assert iccid_problem(iccid) is None
        assert len(iccid) == len(first)
    with pytest.raises(ValueError, match="Luhn"):
        fleet_iccid("8988211000000000004", 1)
    nines = "9" * 18
    with pytest.raises(ValueError, match="no room"):
        fleet_iccid(nines + str(luhn_digit(nines)), 1)


def test_fleet_msisdns_count_up() -> None:
    assert fleet_msisdn("+15550100001", 0) == "+15550100001"
    assert fleet_msisdn("+15550100001", 19) == "+15550100020"
    assert fleet_msisdn("0700", 5) == "0705"
    with pytest.raises(ValueError, match="no room"):
        fleet_msisdn("999", 1)
