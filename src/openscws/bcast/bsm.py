"""The BSM's BSP-M, sans-IO: one provisioning request in (method, path, headers, body, now),
the HTTP answer and the LTKM datagrams to push out.

Every request passes `BsmDigest` with the subscriber's SRK: no or bad credentials get 401
with a challenge. A body that does not parse gets 400, a body on the wrong endpoint 400, a
wrong method 405, a wrong media type 415. Otherwise the answer is 200 with the message's
response and its global and itemwise status:

- Service Request, Token Purchase: an unknown item gets Purchase Item Unknown; a known one is
  subscribed (implicit registration) and its SEK/PEKs are pushed as LTKMs.
- Subscription Renewal: an item not subscribed gets No Subscription; else it is renewed and
  its LTKMs are pushed again.
- Unsubscribe: an item not subscribed gets No Subscription; else it is removed.
- LTKM Request: an unknown key gets Invalid Request, a key of no subscribed item No
  Subscription; else its LTKM is pushed.

The global status is Success when every item succeeded, else the first failing item's status
(project's reading). The subscription change, the token count and the LTKM counters are handed
to the store in one `commit`, so a store that commits them in one transaction never keeps a
subscription without its LTKMs or the other way round."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from openscws.bcast.auth import BsmDigest, Refused
from openscws.bcast.bspc import PATHS
from openscws.bcast.keys import srk_password
from openscws.bcast.ltkm import Ltkm, build_ltkm
from openscws.bcast.sprov import (
    MEDIA_TYPE,
    ItemStatus,
    KeyId,
    MessageKind,
    Request,
    Response,
    SprovError,
    StatusCode,
    parse_request,
)

__all__ = ["BsmAnswer", "BsmCore", "BsmStore", "MemoryStore", "Push", "UserKeys"]

_KINDS: Final = {path: kind for kind, path in PATHS.items()}


@dataclass(frozen=True, slots=True)
class UserKeys:
    """A subscriber's keys towards this BSM: the SRK (digest password) and the SMK (MUK or TK)."""

    srk: bytes
    smk: bytes

    def __repr__(self) -> str:
        return "UserKeys(<secret>)"


@dataclass(frozen=True, slots=True)
class Push:
    """One LTKM datagram for the user; `ltkm` lets the shell match an acknowledgement."""

    username: str
    datagram: bytes
    ltkm: Ltkm


@dataclass(frozen=True, slots=True)
class BsmAnswer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    pushes: tuple[Push, ...] = ()


class BsmStore(Protocol):
    """The catalogue and the subscriptions (a database in the server; `MemoryStore` here)."""

    def item_keys(self, ref: str) -> tuple[KeyId, ...] | None:
        """The SEK/PEKs of a purchase item; None for an unknown item."""

    def key(self, key: KeyId) -> bytes | None:
        """The SEK/PEK value; None for an unknown key."""

    def subscriptions(self, user: str) -> frozenset[str]: ...

    def commit(
        self, user: str, *, add: Iterable[str], remove: Iterable[str], tokens: int, ltkms: int
    ) -> int:
        """Apply the change and reserve `ltkms` MIKEY counters for the user, atomically; the
        first reserved counter."""


@dataclass(slots=True)
class MemoryStore:
    """A store in memory (tests, one-off runs): nothing survives the process."""

    items: dict[str, tuple[KeyId, ...]] = field(default_factory=dict)
    keys: dict[KeyId, bytes] = field(default_factory=dict, repr=False)
    subs: dict[str, set[str]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def item_keys(self, ref: str) -> tuple[KeyId, ...] | None:
        return self.items.get(ref)

    def key(self, key: KeyId) -> bytes | None:
        return self.keys.get(key)

    def subscriptions(self, user: str) -> frozenset[str]:
        return frozenset(self.subs.get(user, ()))

    def commit(
        self, user: str, *, add: Iterable[str], remove: Iterable[str], tokens: int, ltkms: int
    ) -> int:
        subs = self.subs.setdefault(user, set())
        subs.update(add)
        subs.difference_update(remove)
        self.tokens[user] = self.tokens.get(user, 0) + tokens
        first = self.counters.get(user, 0) + 1
        self.counters[user] = first + ltkms - 1
        return first


@dataclass(slots=True)
class BsmCore:
    fqdn: str
    store: BsmStore
    keys_of: Callable[[str], UserKeys | None]
    """B-TID (via the BSF's Zn) or NAI (via the RK store) to the user's keys."""
    digest: BsmDigest = field(init=False)
    ack: bool = True

    def __post_init__(self) -> None:
        self.digest = BsmDigest(self.fqdn)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> BsmAnswer:
        kind = _KINDS.get(path)
        if kind is None:
            return BsmAnswer(404)
        if method != "POST":
            return BsmAnswer(405, (("Allow", "POST"),))
        fields = {k.lower(): v for k, v in headers.items()}
        if fields.get("content-type", "").split(";")[0].strip().lower() != MEDIA_TYPE:
            return BsmAnswer(415)
        cache: dict[str, UserKeys | None] = {}

        def password(user: str) -> bytes | None:
            cache[user] = self.keys_of(user)
            found = cache[user]
            return None if found is None else srk_password(found.srk)

        outcome = self.digest.verify(
            fields.get("authorization"), method=method, uri=path, body=body, now=now,
            password_of=password,
        )  # fmt: skip
        if isinstance(outcome, Refused):
            return BsmAnswer(401, (("WWW-Authenticate", outcome.challenge.format()),))
        user = outcome.username
        user_keys = cache[user]
        assert user_keys is not None
        try:
            request = parse_request(body)
        except SprovError:
            return BsmAnswer(400)
        if request.kind is not kind:
            return BsmAnswer(400)
        response, pushes = self._serve(request, user, user_keys)
        return BsmAnswer(200, (("Content-Type", MEDIA_TYPE),), response.to_xml(), pushes)

    def _serve(
        self, request: Request, user: str, keys: UserKeys
    ) -> tuple[Response, tuple[Push, ...]]:
        subscribed = self.store.subscriptions(user)
        items: list[ItemStatus] = []
        add: list[str] = []
        remove: list[str] = []
        deliver: list[KeyId] = []
        kind = request.kind
        if kind is MessageKind.LTKM:
            owned = {k for ref in subscribed for k in self.store.item_keys(ref) or ()}
            for key in request.keys:
                if self.store.key(key) is None:
                    items.append(ItemStatus(StatusCode.INVALID_REQUEST, key=key))
                elif key not in owned:
                    items.append(ItemStatus(StatusCode.NO_SUBSCRIPTION, key=key))
                else:
                    items.append(ItemStatus(StatusCode.SUCCESS, key=key))
                    deliver.append(key)
        else:
            for ref in request.items:
                item_keys = self.store.item_keys(ref)
                if item_keys is None:
                    status = StatusCode.PURCHASE_ITEM_UNKNOWN
                elif kind in (MessageKind.SERVICE, MessageKind.TOKEN_PURCHASE):
                    status = StatusCode.SUCCESS
                    add.append(ref)
                    deliver.extend(item_keys)
                elif ref not in subscribed:
                    status = StatusCode.NO_SUBSCRIPTION
                elif kind is MessageKind.RENEWAL:
                    status = StatusCode.SUCCESS
                    deliver.extend(item_keys)
                else:
                    status = StatusCode.SUCCESS
                    remove.append(ref)
                items.append(ItemStatus(status, ref=ref))
        deliver = list(dict.fromkeys(deliver))
        tokens = request.tokens or 0
        first = 0
        if add or remove or tokens or deliver:
            first = self.store.commit(
                user, add=add, remove=remove, tokens=tokens, ltkms=len(deliver)
            )
        pushes = []
        for i, key in enumerate(deliver):
            value = self.store.key(key)
            assert value is not None
            ltkm = Ltkm(
                key.key_domain, key.key_id, value, first + i, self.fqdn.encode(), user.encode(),
                self.ack,
            )  # fmt: skip
            pushes.append(Push(user, build_ltkm(ltkm, keys.smk), ltkm))
        failed = [i.status for i in items if i.status is not StatusCode.SUCCESS]
        global_status = failed[0] if failed else StatusCode.SUCCESS
        response = Response(
            kind, request.request_id, global_status, tuple(items),
            request.tokens if kind is MessageKind.TOKEN_PURCHASE else None,
        )  # fmt: skip
        return response, tuple(pushes)
