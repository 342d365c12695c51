"""The terminal's BSP-C, sans-IO: one provisioning exchange with the Digest retry, and the LTKM
receiver of the GBA_ME path (the terminal verifies the LTKM; with GBA_U the card does).

An exchange follows `TABLE`: the request goes out without credentials, the BSM's 401 brings
the challenge, the retry carries the Digest with the SRK, and the 200's body is the response.
A 401 to the retry ends the exchange (the terminal re-bootstraps) unless it says stale=TRUE,
which is retried once with the new nonce. Anything the table does not allow is a
`BspcError`. HTTP itself is the shell's business: this takes and gives status, headers, body."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from openscws.bcast.auth import client_credentials
from openscws.bcast.keys import srk_password
from openscws.bcast.ltkm import Ltkm, build_verification, open_ltkm
from openscws.bcast.mikey import ReplayGuard
from openscws.bcast.sprov import (
    MEDIA_TYPE,
    KeyId,
    MessageKind,
    Request,
    Response,
    SprovError,
    parse_response,
)
from openscws.errors import OpenScwsError
from openscws.gba.digest import Challenge, DigestError

__all__ = [
    "PATHS",
    "TABLE",
    "BspcError",
    "BspcExchange",
    "BspcState",
    "HttpRequest",
    "LtkmReceiver",
]

PATHS: Final = {
    MessageKind.SERVICE: "/bcast/service",
    MessageKind.RENEWAL: "/bcast/renewal",
    MessageKind.UNSUBSCRIBE: "/bcast/unsubscribe",
    MessageKind.TOKEN_PURCHASE: "/bcast/token-purchase",
    MessageKind.LTKM: "/bcast/ltkm",
}
"""The BSM's endpoint per message (the project's choice; the BSM answers each on its own)."""


class BspcError(OpenScwsError):
    """The exchange failed; `status` is the last HTTP status (0: none)."""

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status


class BspcState(Enum):
    IDLE = "idle"
    SENT = "sent"
    AUTHENTICATING = "authenticating"
    STALE_RETRY = "stale-retry"
    DONE = "done"
    FAILED = "failed"


TABLE: Final = {
    (BspcState.IDLE, "send"): BspcState.SENT,
    (BspcState.SENT, "401"): BspcState.AUTHENTICATING,
    (BspcState.SENT, "200"): BspcState.DONE,
    (BspcState.AUTHENTICATING, "200"): BspcState.DONE,
    (BspcState.AUTHENTICATING, "401-stale"): BspcState.STALE_RETRY,
    (BspcState.STALE_RETRY, "200"): BspcState.DONE,
}
"""Allowed (state, event) -> state; every other pair fails the exchange."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(slots=True)
class BspcExchange:
    """One request to the BSM. `username` is the B-TID (GBA) or the NAI; `srk` the MRK or the
    Auth-Key."""

    request: Request
    username: str
    srk: bytes = field(repr=False)
    random: Callable[[int], bytes] = os.urandom
    state: BspcState = BspcState.IDLE

    def _step(self, event: str, status: int = 0) -> None:
        nxt = TABLE.get((self.state, event))
        if nxt is None:
            failed_in = self.state
            self.state = BspcState.FAILED
            raise BspcError(f"{event} not allowed in state {failed_in.value}", status)
        self.state = nxt

    @property
    def path(self) -> str:
        return PATHS[self.request.kind]

    def start(self) -> HttpRequest:
        self._step("send")
        return self._http(None)

    def _http(self, authorization: str | None) -> HttpRequest:
        headers = [("Content-Type", MEDIA_TYPE)]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        return HttpRequest("POST", self.path, tuple(headers), self.request.to_xml())

    def receive(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> HttpRequest | Response:
        """The BSM's answer: the retry to send, or the final response."""
        fields = {k.lower(): v for k, v in headers}
        if status == 401:
            try:
                challenge = Challenge.parse(fields.get("www-authenticate", ""))
            except DigestError as exc:
                self.state = BspcState.FAILED
                raise BspcError(f"401 without a usable Digest challenge: {exc}", 401) from None
            stale = self.state is BspcState.AUTHENTICATING and challenge.stale
            self._step("401-stale" if stale else "401", 401)
            body_out = self.request.to_xml()
            credentials = client_credentials(
                challenge,
                username=self.username,
                password=srk_password(self.srk),
                method="POST",
                uri=self.path,
                body=body_out,
                random=self.random,
            )
            return self._http(credentials.format())
        if status != 200:
            self.state = BspcState.FAILED
            raise BspcError(f"the BSM answered {status}", status)
        self._step("200", 200)
        try:
            response = parse_response(body)
        except SprovError as exc:
            self.state = BspcState.FAILED
            raise BspcError(f"the BSM's response: {exc.reason}", 200) from None
        if response.kind is not self.request.kind or response.request_id != self.request.request_id:
            self.state = BspcState.FAILED
            raise BspcError("the response is for another request", 200)
        return response


@dataclass(slots=True)
class LtkmReceiver:
    """GBA_ME (and the (R-)UIM path with a terminal-held TK): verifies LTKMs with the SMK,
    keeps the keys and the replay state, acknowledges when asked, and tells which expected
    keys are still missing after `timeout` seconds (for an LTKM Request)."""

    smk: bytes = field(repr=False)
    timeout: float = 30.0
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    keys: dict[KeyId, bytes] = field(default_factory=dict, repr=False)
    _expected: dict[KeyId, float] = field(default_factory=dict)

    def expect(self, keys: Iterable[KeyId], now: float) -> None:
        for key in keys:
            if key not in self.keys:
                self._expected.setdefault(key, now)

    def datagram(self, data: bytes, now: float) -> tuple[Ltkm, bytes | None]:
        """One datagram: the LTKM it carried and the acknowledgement to send back (or None).
        Raises a `MikeyError` for anything refused."""
        ltkm = open_ltkm(data, self.smk, self.guard, now)
        key = KeyId(ltkm.key_domain, ltkm.key_id)
        self.keys[key] = ltkm.key
        self._expected.pop(key, None)
        return ltkm, (build_verification(ltkm, self.smk) if ltkm.ack else None)

    def missing(self, now: float) -> tuple[KeyId, ...]:
        return tuple(k for k, since in self._expected.items() if now - since >= self.timeout)
