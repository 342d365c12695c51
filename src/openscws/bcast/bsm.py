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
(project's reading). The store runs one `transact` per request: it reads the subscriber's
view (subscriptions, the items and keys asked for) and applies the change the core decides
from it (`decide`, a pure function), the tokens and the LTKM counters in one transaction, so a
store that does so never keeps a subscription without its LTKMs or the other way round, and
the decision is made on what the transaction sees."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
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

__all__ = [
    "BsmAnswer",
    "BsmCore",
    "BsmStore",
    "Change",
    "MemoryStore",
    "Push",
    "StoreView",
    "UserKeys",
]

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
    smk: bytes = field(default=b"", repr=False)
    """The SMK the pushes are keyed with (the shell checks their acknowledgements with it)."""


@dataclass(frozen=True, slots=True)
class StoreView:
    """What one request is decided on: the user's subscriptions, the SEK/PEKs of the items
    asked for and of those subscribed (None: no such item), and which of the keys asked for
    exist."""

    subscribed: frozenset[str]
    item_keys: Mapping[str, tuple[KeyId, ...] | None]
    known_keys: frozenset[KeyId]


@dataclass(frozen=True, slots=True)
class Change:
    """What a request changes: subscriptions added and removed, tokens bought, LTKM counters
    to reserve."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    tokens: int = 0
    ltkms: int = 0

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.tokens or self.ltkms)


class BsmStore(Protocol):
    """The catalogue and the subscriptions (a database in the server; `MemoryStore` here)."""

    def key(self, key: KeyId) -> bytes | None:
        """The SEK/PEK value; None for an unknown key."""

    def transact(
        self,
        user: str,
        refs: Collection[str],
        keys: Collection[KeyId],
        decide: Callable[[StoreView], Change],
    ) -> int:
        """In one transaction: read the user's view for `refs` and `keys`, apply the change
        `decide` makes of it and reserve its LTKM counters; the first reserved counter (0 when
        nothing changed)."""


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

    def transact(
        self,
        user: str,
        refs: Collection[str],
        keys: Collection[KeyId],
        decide: Callable[[StoreView], Change],
    ) -> int:
        subscribed = self.subscriptions(user)
        view = StoreView(
            subscribed,
            {ref: self.items.get(ref) for ref in {*refs, *subscribed}},
            frozenset(k for k in keys if k in self.keys),
        )
        change = decide(view)
        if not change:
            return 0
        return self.commit(
            user, add=change.add, remove=change.remove, tokens=change.tokens, ltkms=change.ltkms
        )

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
        content = (("Content-Type", MEDIA_TYPE),)
        return BsmAnswer(200, content, response.to_xml(), pushes, user_keys.smk)

    def _serve(
        self, request: Request, user: str, keys: UserKeys
    ) -> tuple[Response, tuple[Push, ...]]:
        kind = request.kind
        items: list[ItemStatus] = []
        deliver: list[KeyId] = []

        def decide(view: StoreView) -> Change:
            items.clear()
            deliver.clear()
            add: list[str] = []
            remove: list[str] = []
            if kind is MessageKind.LTKM:
                owned = {k for ref in view.subscribed for k in view.item_keys.get(ref) or ()}
                for key in request.keys:
                    if key not in view.known_keys:
                        items.append(ItemStatus(StatusCode.INVALID_REQUEST, key=key))
                    elif key not in owned:
                        items.append(ItemStatus(StatusCode.NO_SUBSCRIPTION, key=key))
                    else:
                        items.append(ItemStatus(StatusCode.SUCCESS, key=key))
                        deliver.append(key)
            else:
                for ref in request.items:
                    item_keys = view.item_keys.get(ref)
                    if item_keys is None:
                        status = StatusCode.PURCHASE_ITEM_UNKNOWN
                    elif kind in (MessageKind.SERVICE, MessageKind.TOKEN_PURCHASE):
                        status = StatusCode.SUCCESS
                        add.append(ref)
                        deliver.extend(item_keys)
                    elif ref not in view.subscribed:
                        status = StatusCode.NO_SUBSCRIPTION
                    elif kind is MessageKind.RENEWAL:
                        status = StatusCode.SUCCESS
                        deliver.extend(item_keys)
                    else:
                        status = StatusCode.SUCCESS
                        remove.append(ref)
                    items.append(ItemStatus(status, ref=ref))
            deliver[:] = dict.fromkeys(deliver)
            return Change(
                tuple(dict.fromkeys(add)), tuple(remove), request.tokens or 0, len(deliver)
            )

        first = self.store.transact(user, request.items, request.keys, decide)
        pushes = []
        for i, key in enumerate(deliver):
            value = self.store.key(key)
            if value is None:  # removed since: the LTKM cannot be made (keys are never removed)
                continue
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
