"""The Ub bootstrapping exchange (3GPP TS 24.109 §4, TS 33.220 §4.5.2 and §5.3.2), sans-IO:
the states of one bootstrapping at the BSF and at the UE as tables, and the UE's side as a
machine that turns HTTP responses into the next request.

    UE                                            BSF
    GET / Authorization: Digest username=IMPI, nonce="", response=""
                                      401 WWW-Authenticate: Digest nonce=base64(RAND||AUTN),
                                          algorithm=AKAv1-MD5, qop="auth-int"
    (the USIM checks AUTN and answers RES, or AUTS, or refuses: MAC failure)
    GET / Authorization: Digest ..., response=MD5 digest over RES (auts="..." on SQN failure)
                                      200 Authentication-Info: rspauth=...
                                          application/vnd.3gpp.bsf+xml: B-TID, lifetime
                                      (after AUTS: 401 with a new challenge)

Both ends step their state through `step(table, state, event)`: an event the table does not
allow raises `UbStateError` (at the BSF, a nonce used a second time is exactly that)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Final

from openscws.errors import OpenScwsError
from openscws.gba.bootstrap_xml import MEDIA_TYPE, BootstrappingInfo, BootstrapXmlError
from openscws.gba.digest import (
    AKA_V1_MD5,
    AuthenticationInfo,
    Challenge,
    Credentials,
    DigestError,
    aka_nonce,
    check_response,
    digest_response,
    rspauth,
    split_aka_nonce,
    sync_failure_password,
)

__all__ = [
    "BSF_TABLE",
    "CLIENT_TABLE",
    "FAILURE_STATUS",
    "PRODUCT_TOKEN",
    "Bootstrapped",
    "BsfEvent",
    "BsfState",
    "ClientEvent",
    "ClientState",
    "NeedAka",
    "UbClient",
    "UbFailure",
    "UbRequest",
    "UbStateError",
    "bsf_bootstrapped",
    "bsf_challenge",
    "bsf_judge",
    "step",
]

PRODUCT_TOKEN: Final = "3gpp-gba-tmpi"
"""TS 33.220 §4.5.2: the product token both ends put in User-Agent / Server on Ub."""
MAX_RESYNCS: Final = 2
"""AUTS rounds the UE makes in one bootstrapping before it gives up."""


class UbStateError(OpenScwsError):
    """An event the state table does not allow in the current state."""


class UbFailure(OpenScwsError):
    """A bootstrapping that cannot complete, with the reason in Ub's own terms."""


class BsfState(StrEnum):
    """One challenge at the BSF, stored with it (the nonce is its key)."""

    CHALLENGED = "challenged"
    BOOTSTRAPPED = "bootstrapped"
    RESYNCED = "resynced"
    FAILED = "failed"


class BsfEvent(Enum):
    RES_OK = "RES matches XRES"
    RES_WRONG = "RES does not match XRES"
    AUTS_OK = "AUTS checks (MAC-S)"
    AUTS_BAD = "AUTS does not check"


BSF_TABLE: Final[Mapping[tuple[BsfState, BsfEvent], BsfState]] = {
    (BsfState.CHALLENGED, BsfEvent.RES_OK): BsfState.BOOTSTRAPPED,
    (BsfState.CHALLENGED, BsfEvent.RES_WRONG): BsfState.FAILED,
    (BsfState.CHALLENGED, BsfEvent.AUTS_OK): BsfState.RESYNCED,
    (BsfState.CHALLENGED, BsfEvent.AUTS_BAD): BsfState.FAILED,
}
"""A challenge is answered once: every state but CHALLENGED is final."""


class ClientState(Enum):
    IDLE = "idle"
    IDENTITY_SENT = "identity sent"
    CHALLENGED = "challenged"
    RESPONSE_SENT = "response sent"
    AUTS_SENT = "AUTS sent"
    BOOTSTRAPPED = "bootstrapped"
    FAILED = "failed"


class ClientEvent(Enum):
    SEND_IDENTITY = "send identity"
    GOT_CHALLENGE = "401 with a challenge"
    SEND_RESPONSE = "send response"
    SEND_AUTS = "send AUTS"
    MAC_FAILURE = "the USIM refuses AUTN"
    GOT_BOOTSTRAPPED = "200 with BootstrappingInfo"
    GOT_REFUSAL = "any other answer"


CLIENT_TABLE: Final[Mapping[tuple[ClientState, ClientEvent], ClientState]] = {
    (ClientState.IDLE, ClientEvent.SEND_IDENTITY): ClientState.IDENTITY_SENT,
    (ClientState.IDENTITY_SENT, ClientEvent.GOT_CHALLENGE): ClientState.CHALLENGED,
    (ClientState.IDENTITY_SENT, ClientEvent.GOT_REFUSAL): ClientState.FAILED,
    (ClientState.CHALLENGED, ClientEvent.SEND_RESPONSE): ClientState.RESPONSE_SENT,
    (ClientState.CHALLENGED, ClientEvent.SEND_AUTS): ClientState.AUTS_SENT,
    (ClientState.CHALLENGED, ClientEvent.MAC_FAILURE): ClientState.FAILED,
    (ClientState.RESPONSE_SENT, ClientEvent.GOT_BOOTSTRAPPED): ClientState.BOOTSTRAPPED,
    (ClientState.RESPONSE_SENT, ClientEvent.GOT_REFUSAL): ClientState.FAILED,
    (ClientState.AUTS_SENT, ClientEvent.GOT_CHALLENGE): ClientState.CHALLENGED,
    (ClientState.AUTS_SENT, ClientEvent.GOT_REFUSAL): ClientState.FAILED,
}

FAILURE_STATUS: Final[Mapping[str, int]] = {
    "malformed": 400,
    "no-identity": 400,
    "unknown-user": 403,
    "res-wrong": 403,
    "auts-wrong": 403,
    "replayed-nonce": 401,
    "unknown-nonce": 401,
}
"""The BSF's answer to each failure (this project's reading of TS 24.109 §4.3-§4.5 and RFC
2617): a request that does not parse is 400; a user who failed authentication (wrong RES, an
AUTS whose MAC-S does not check, an unknown IMPI) gets 403 and must start over; a nonce the
BSF no longer holds, or holds as already answered (a replay), gets 401 with a fresh challenge."""


def step[S, E](table: Mapping[tuple[S, E], S], state: S, event: E) -> S:
    try:
        return table[(state, event)]
    except KeyError:
        raise UbStateError(f"{event} is not allowed in state {state}") from None


@dataclass(frozen=True, slots=True)
class UbRequest:
    """What the UE sends next: method, target and header fields (no body on Ub)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class NeedAka:
    """The BSF's challenge: run AUTHENTICATE (GBA or 3G context) with these, then call
    `UbClient.answer`, `answer_auts` or `mac_failure`."""

    rand: bytes
    autn: bytes


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    btid: str
    lifetime: datetime
    rand: bytes


@dataclass
class UbClient:
    """The UE's side of one bootstrapping. `realm` is the BSF's host name (TS 24.109 A.3)."""

    impi: str
    realm: str
    uri: str = "/"
    user_agent: str = f"openscws GBA client; {PRODUCT_TOKEN}"
    random: Callable[[int], bytes] = os.urandom
    state: ClientState = ClientState.IDLE
    _challenge: Challenge | None = field(default=None, repr=False)
    _sent: Credentials | None = field(default=None, repr=False)
    _password: bytes = field(default=b"", repr=False)
    _resyncs: int = 0

    def _go(self, event: ClientEvent) -> None:
        self.state = step(CLIENT_TABLE, self.state, event)

    def _request(self, credentials: Credentials) -> UbRequest:
        self._sent = credentials
        return UbRequest(
            "GET",
            self.uri,
            (
                ("User-Agent", self.user_agent),
                ("Accept", "*/*"),
                ("Authorization", credentials.format()),
            ),
        )

    def identity_request(self) -> UbRequest:
        """The first request: the IMPI, an empty nonce and response (TS 24.109 A.3 step 1)."""
        self._go(ClientEvent.SEND_IDENTITY)
        return self._request(Credentials(self.impi, self.realm, "", self.uri, ""))

    def receive(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> NeedAka | Bootstrapped:
        """The BSF's answer (header names lower-case). Raises UbFailure when the
        bootstrapping cannot go on."""
        if status == 401 and self.state in (ClientState.IDENTITY_SENT, ClientState.AUTS_SENT):
            try:
                challenge = Challenge.parse(headers.get("www-authenticate", ""))
                rand, autn, _ = split_aka_nonce(challenge.nonce)
            except DigestError as exc:
                self._go(ClientEvent.GOT_REFUSAL)
                raise UbFailure(f"the BSF's challenge does not parse: {exc}") from None
            if challenge.algorithm.lower() != AKA_V1_MD5.lower():
                self._go(ClientEvent.GOT_REFUSAL)
                raise UbFailure(f"the BSF asks for {challenge.algorithm}, not {AKA_V1_MD5}")
            self._go(ClientEvent.GOT_CHALLENGE)
            self._challenge = challenge
            return NeedAka(rand, autn)
        if status == 200 and self.state is ClientState.RESPONSE_SENT:
            self._check_server(headers, body)
            try:
                info = BootstrappingInfo.parse(body)
            except BootstrapXmlError as exc:
                self._go(ClientEvent.GOT_REFUSAL)
                raise UbFailure(f"the BSF's body: {exc}") from None
            self._go(ClientEvent.GOT_BOOTSTRAPPED)
            assert self._challenge is not None
            rand, _, _ = split_aka_nonce(self._challenge.nonce)
            return Bootstrapped(info.btid, info.lifetime, rand)
        event_state = self.state
        self._go(ClientEvent.GOT_REFUSAL)
        raise UbFailure(f"the BSF answered {status} in state {event_state.value}")

    def _check_server(self, headers: Mapping[str, str], body: bytes) -> None:
        """Authentication-Info's rspauth proves the BSF knew XRES (RFC 2617 §3.2.3), over the
        body too with auth-int."""
        assert self._sent is not None
        if headers.get("content-type", "").split(";")[0].strip().lower() != MEDIA_TYPE:
            self._go(ClientEvent.GOT_REFUSAL)
            raise UbFailure(f"the BSF's 200 is not {MEDIA_TYPE}")
        try:
            info = AuthenticationInfo.parse(headers.get("authentication-info", ""))
        except DigestError as exc:
            self._go(ClientEvent.GOT_REFUSAL)
            raise UbFailure(f"the BSF's Authentication-Info: {exc}") from None
        expected = rspauth(self._sent, password=self._password, body=body)
        if info.rspauth.lower() != expected:
            self._go(ClientEvent.GOT_REFUSAL)
            raise UbFailure("the BSF's rspauth does not check: not the BSF that challenged")

    def _credentials(self, password: bytes, auts: bytes | None = None) -> Credentials:
        challenge = self._challenge
        assert challenge is not None
        qop = "auth-int" if "auth-int" in challenge.qop else ("auth" if challenge.qop else None)
        nc, cnonce = ("00000001", self.random(16).hex()) if qop else (None, None)
        response = digest_response(
            username=self.impi,
            realm=challenge.realm,
            password=password,
            method="GET",
            uri=self.uri,
            nonce=challenge.nonce,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
        )
        return Credentials(
            username=self.impi,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=self.uri,
            response=response,
            algorithm=challenge.algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=challenge.opaque,
            auts=base64.b64encode(auts).decode() if auts is not None else None,
        )

    def answer(self, res: bytes) -> UbRequest:
        """The USIM's RES is the password (RFC 3310 §3.2)."""
        self._go(ClientEvent.SEND_RESPONSE)
        self._password = res
        return self._request(self._credentials(res))

    def answer_auts(self, auts: bytes) -> UbRequest:
        """The USIM found SQN out of range: send AUTS (RFC 3310 §3.4)."""
        if len(auts) != 14:
            raise UbFailure("AUTS is 14 bytes")
        if self._resyncs >= MAX_RESYNCS:
            self._go(ClientEvent.MAC_FAILURE)
            raise UbFailure(f"the USIM asked to resynchronise {MAX_RESYNCS + 1} times in a row")
        self._resyncs += 1
        self._go(ClientEvent.SEND_AUTS)
        return self._request(self._credentials(sync_failure_password(), auts))

    def mac_failure(self) -> None:
        """The USIM refused AUTN (SW 98 62): the BSF is not authenticated; stop."""
        self._go(ClientEvent.MAC_FAILURE)


# -- the BSF's side, as pure functions (the shell keeps the state in its database) ----------


def bsf_challenge(realm: str, rand: bytes, autn: bytes, opaque: str) -> Challenge:
    """The 401's challenge: nonce = base64(RAND || AUTN), AKAv1-MD5, qop auth-int."""
    return Challenge(
        realm=realm, nonce=aka_nonce(rand, autn), algorithm=AKA_V1_MD5, qop=("auth-int",),
        opaque=opaque,
    )  # fmt: skip


def bsf_judge(credentials: Credentials, xres: bytes, method: str, body: bytes = b"") -> BsfEvent:
    """RES_OK when the response is the digest over XRES (RFC 3310 §3.2), else RES_WRONG."""
    if credentials.qop != "auth-int":
        return BsfEvent.RES_WRONG  # the challenge offered auth-int only (TS 24.109 §4.2)
    ok = check_response(credentials, password=xres, method=method, body=body)
    return BsfEvent.RES_OK if ok else BsfEvent.RES_WRONG


def bsf_bootstrapped(
    credentials: Credentials, xres: bytes, info: BootstrappingInfo
) -> tuple[tuple[tuple[str, str], ...], bytes]:
    """The 200's header fields and body: Authentication-Info with rspauth over the body."""
    body = info.to_xml()
    auth_info = AuthenticationInfo(
        rspauth=rspauth(credentials, password=xres, body=body),
        qop=credentials.qop,
        cnonce=credentials.cnonce,
        nc=credentials.nc,
    )
    return (
        ("Content-Type", MEDIA_TYPE),
        ("Authentication-Info", auth_info.format()),
    ), body
