"""Identities, defined once: what a valid ICCID is, and the names a card goes by at the
remote administration server (its PSK-TLS identity and its admin agent id).

Every command and the REST API take these from here, so a card enrolled by `openscws up`,
by `openscws admin card add` or by REST `POST /cards` carries the same names."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_ICCID",
    "check_iccid",
    "default_agent_id",
    "default_psk_identity",
    "fleet_iccid",
    "fleet_msisdn",
    "iccid_problem",
    "luhn_digit",
]

DEFAULT_ICCID: Final = "8988211000000000003"
"""The ICCID of a card image made with no settings: issuer 89 88 211, check digit 3."""


def luhn_digit(digits: str) -> int:
    """The Luhn check digit (ISO/IEC 7812-1 Annex B) that ITU-T E.118 puts last in an ICCID."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return (10 - total % 10) % 10


def iccid_problem(iccid: str) -> str | None:
    """Why `iccid` is not a valid ICCID (ITU-T E.118: 19 or 20 decimal digits, the last one
    the Luhn check digit of the others), or None when it is."""
    if not (iccid.isascii() and iccid.isdigit()):
        return f"an ICCID is decimal digits, not {iccid!r}"
    if len(iccid) not in (19, 20):
        return f"an ICCID has 19 or 20 digits, not {len(iccid)} ({iccid})"
    want = luhn_digit(iccid[:-1])
    if int(iccid[-1]) != want:
        return (
            f"ICCID {iccid} fails the ITU-T E.118 Luhn check: its last digit would be {want} "
            f"({iccid[:-1]}{want})"
        )
    return None


def check_iccid(iccid: str) -> str:
    """`iccid` if valid, else ValueError with the reason."""
    problem = iccid_problem(iccid)
    if problem is not None:
        raise ValueError(problem)
    return iccid


def default_psk_identity(iccid: str) -> str:
    """The PSK-TLS identity a card uses at the admin server (RFC 4279 §5.1: an opaque
    UTF-8 string): ``scws-<ICCID>``."""
    return f"scws-{iccid}"


def default_agent_id(iccid: str) -> str:
    """The admin agent id the card sends in X-Admin-From (GP Amendment B §3.4):
    ``//se-id/iccid/<ICCID>``."""
    return f"//se-id/iccid/{iccid}"


def fleet_iccid(first: str, index: int) -> str:
    """The ICCID of card `index` (0: `first` itself) of a fleet (`openscws up --cards N`):
    `first`'s digits before the check digit counted up by `index`, with its own Luhn digit.
    ValueError when `first` is not a valid ICCID or the count runs out of digits."""
    check_iccid(first)
    body = first[:-1]
    number = str(int(body) + index).zfill(len(body))
    if len(number) != len(body):
        raise ValueError(f"ICCID {first} has no room for {index} more cards")
    return number + str(luhn_digit(number))


def fleet_msisdn(first: str, index: int) -> str:
    """The MSISDN of card `index` (0: `first` itself) of a fleet: `first` counted up by
    `index`, same length, a leading '+' kept."""
    plus = "+" if first.startswith("+") else ""
    digits = first.removeprefix("+")
    number = str(int(digits) + index).zfill(len(digits))
    if len(number) != len(digits):
        raise ValueError(f"MSISDN {first} has no room for {index} more cards")
    return plus + number
