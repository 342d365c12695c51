"""The Push Proxy Gateway's decisions, sans-IO: who may push (initiator authentication), which
SIP target a PAP address names, what a SIP answer means for the push (delivered, retry later,
or undeliverable with which PAP code), the retry schedule, and the PAP answers.

SIP outcome -> PAP (the project's reading of OMA Push's PPG service over SIP; the public texts
we could read give no table):

| SIP final response / event            | retried | state when final | PAP code |
|---------------------------------------|---------|------------------|----------|
| 2xx                                   | -       | delivered        | 1000     |
| 404, 604 (no such user)               | no      | undeliverable    | 2003     |
| 403, 603                              | no      | undeliverable    | 2001     |
| 415, 488, 606 (the client refused)    | no      | undeliverable    | 4000     |
| 408, timer F, transport error         | yes     | timeout          | 4000     |
| 480, 486, 503, 5xx, no registration   | yes     | undeliverable    | 4001     |
| other 4xx/6xx                         | no      | undeliverable    | 4000     |
| deliver-before-timestamp passed       | -       | expired          | 4000     |"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from openscws.push.pap import Address, AddressType, MessageState, PapCode, PapError

__all__ = [
    "DeliveryPolicy",
    "Initiator",
    "Outcome",
    "authenticate",
    "next_attempt",
    "outcome_of",
    "target_of",
]

TIMEOUT: Final = None
"""`outcome_of(TIMEOUT)`: timer F fired or the transport failed."""


@dataclass(frozen=True, slots=True)
class Initiator:
    """A push initiator allowed to submit: HTTP Basic `name:secret`, or `Bearer secret`."""

    name: str
    secret: str

    def __repr__(self) -> str:
        return f"Initiator({self.name!r})"


def authenticate(authorization: str | None, initiators: tuple[Initiator, ...]) -> Initiator | None:
    """The initiator an `Authorization` header proves, or None (answer 401)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, colon, secret = decoded.partition(":")
        if not colon:
            return None
        found = None
        for initiator in initiators:
            same_name = hmac.compare_digest(initiator.name.encode(), name.encode())
            same_secret = hmac.compare_digest(initiator.secret.encode(), secret.encode())
            if same_name and same_secret:
                found = initiator
        return found
    if scheme.lower() == "bearer":
        found = None
        for initiator in initiators:
            if hmac.compare_digest(initiator.secret.encode(), value.encode()):
                found = initiator
        return found
    return None


def target_of(address: Address, plmn_domain: str | None) -> str:
    """The SIP AOR a PAP address names: the URI of a USER address; `sip:<number>@<domain>` for a
    PLMN address when the PPG has a domain for numbers. PapError 2002 otherwise."""
    if address.type is AddressType.USER and address.client.lower().startswith("sip:"):
        return address.client
    if address.type is AddressType.PLMN and plmn_domain:
        return f"sip:{address.client}@{plmn_domain}"
    raise PapError(PapCode.ADDRESS_ERROR, f"{address.value} has no SIP target here")


@dataclass(frozen=True, slots=True)
class Outcome:
    final: bool
    state: MessageState
    code: int
    desc: str


def outcome_of(status: int | None) -> Outcome:
    """What a SIP final response (None: no response) means for the push."""
    if status is None or status == 408:
        return Outcome(False, MessageState.TIMEOUT, PapCode.SERVICE_FAILURE, "no answer (408)")
    if 200 <= status < 300:
        return Outcome(True, MessageState.DELIVERED, PapCode.OK, f"SIP {status}")
    desc = f"SIP {status}"
    if status in (404, 604):
        return Outcome(True, MessageState.UNDELIVERABLE, PapCode.ADDRESS_NOT_FOUND, desc)
    if status in (403, 603):
        return Outcome(True, MessageState.UNDELIVERABLE, PapCode.FORBIDDEN, desc)
    if status in (480, 486, 503) or 500 <= status < 600:
        return Outcome(False, MessageState.UNDELIVERABLE, PapCode.SERVICE_UNAVAILABLE, desc)
    return Outcome(True, MessageState.UNDELIVERABLE, PapCode.SERVICE_FAILURE, desc)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 6
    backoff: float = 2.0
    """Seconds before the first retry; doubled each time."""
    backoff_cap: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff <= 0 or self.backoff_cap < self.backoff:
            raise ValueError("max_attempts >= 1 and 0 < backoff <= backoff_cap")


def next_attempt(
    attempts: int, now: datetime, policy: DeliveryPolicy, deliver_before: datetime | None
) -> datetime | None:
    """When to try again after `attempts` failed tries, or None when the push is given up."""
    if attempts >= policy.max_attempts:
        return None
    delay = min(policy.backoff * 2 ** (attempts - 1), policy.backoff_cap)
    when = now + timedelta(seconds=delay)
    if deliver_before is not None and when >= deliver_before:
        return None
    return when
