"""The BCAST service provisioning messages of the smartcard profile (OMA BCAST Services §5.1.5
and §5.1.6), sans-IO: five requests the BSP-C POSTs to the BSM and their responses, as typed
values with an XML codec.

The body media type is `application/vnd.oma.bcast.sprov+xml` (IANA media types registry).
The element and attribute names and the status code numbers could not be read in a public copy
of OMA-TS-BCAST_Services here: they are the project's reading, all declared in `MESSAGES`,
`StatusCode` and the `_A_*` names below and nowhere else, so correcting them is a change here.

    <ServiceRequest requestID="r1">                 the requests differ in the root name
      <PurchaseItem globalIDRef="urn:x:pi:1"/>      Service Request, Subscription Renewal,
    </ServiceRequest>                               Unsubscribe, Token Purchase: items
    <TokenPurchaseRequest requestID="r2" numberOfTokens="5"> <PurchaseItem .../> </...>
    <LTKMRequest requestID="r3">
      <KeyID keyDomainID="00f110" SEKPEKID="00010002"/>   hex, 3 and 4 bytes
    </LTKMRequest>
    <ServiceResponse requestID="r1" globalStatusCode="0">
      <PurchaseItem globalIDRef="urn:x:pi:1" itemwiseStatusCode="0"/>
    </ServiceResponse>

Parsing is by expat with no DTD at all: a DOCTYPE (so any entity, any billion-laughs body),
a processing instruction, an unbound namespace prefix, a body over `MAX_BODY` bytes, more than
`MAX_ITEMS` items or nesting deeper than `MAX_DEPTH` are refused. Every problem is an
`SprovError` carrying the status a response gives (Mal-formed Message Error)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Final
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from openscws.errors import OpenScwsError

__all__ = [
    "MAX_BODY",
    "MEDIA_TYPE",
    "MESSAGES",
    "ItemStatus",
    "KeyId",
    "MessageKind",
    "Request",
    "Response",
    "SprovError",
    "StatusCode",
    "parse_request",
    "parse_response",
]

MEDIA_TYPE: Final = "application/vnd.oma.bcast.sprov+xml"
MAX_BODY: Final = 16384
MAX_ITEMS: Final = 64
MAX_DEPTH: Final = 4
MAX_VALUE: Final = 256


class StatusCode(IntEnum):
    """Global and itemwise status codes (OMA BCAST Services §5.1.6; numbers: project's reading)."""

    SUCCESS = 0
    DEVICE_AUTHENTICATION_FAILED = 1
    USER_AUTHENTICATION_FAILED = 2
    PURCHASE_ITEM_UNKNOWN = 3
    DEVICE_AUTHORIZATION_FAILED = 4
    USER_AUTHORIZATION_FAILED = 5
    DEVICE_NOT_REGISTERED = 6
    SERVER_ERROR = 7
    MALFORMED_MESSAGE = 8
    CHARGING_ERROR = 9
    NO_SUBSCRIPTION = 10
    OPERATION_NOT_PERMITTED = 11
    UNSUPPORTED_VERSION = 12
    INVALID_REQUEST = 13
    EXPIRED_TOKEN = 14


class MessageKind(Enum):
    SERVICE = "service"
    RENEWAL = "renewal"
    UNSUBSCRIBE = "unsubscribe"
    TOKEN_PURCHASE = "token_purchase"
    LTKM = "ltkm"


MESSAGES: Final = {
    MessageKind.SERVICE: ("ServiceRequest", "ServiceResponse"),
    MessageKind.RENEWAL: ("SubscriptionRenewalRequest", "SubscriptionRenewalResponse"),
    MessageKind.UNSUBSCRIBE: ("UnsubscribeRequest", "UnsubscribeResponse"),
    MessageKind.TOKEN_PURCHASE: ("TokenPurchaseRequest", "TokenPurchaseResponse"),
    MessageKind.LTKM: ("LTKMRequest", "LTKMResponse"),
}
"""Root elements of each request and response (project's reading of §5.1.5)."""
_BY_REQUEST: Final = {req: kind for kind, (req, _resp) in MESSAGES.items()}
_BY_RESPONSE: Final = {resp: kind for kind, (_req, resp) in MESSAGES.items()}

_E_ITEM: Final = "PurchaseItem"
_E_KEY: Final = "KeyID"
_A_REQUEST_ID: Final = "requestID"
_A_GLOBAL: Final = "globalStatusCode"
_A_ITEMWISE: Final = "itemwiseStatusCode"
_A_GLOBAL_ID: Final = "globalIDRef"
_A_TOKENS: Final = "numberOfTokens"
_A_DOMAIN: Final = "keyDomainID"
_A_SEKPEK: Final = "SEKPEKID"
_NS_SEP: Final = "\x01"
_HEX: Final = re.compile(r"[0-9A-Fa-f]+")


class SprovError(OpenScwsError):
    """A provisioning body the BSM (or BSP-C) refuses; `status` is the code to answer with."""

    def __init__(self, reason: str, status: StatusCode = StatusCode.MALFORMED_MESSAGE) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class KeyId:
    """A SEK/PEK id: Key Domain ID (3 bytes) and SEK/PEK ID (4 bytes), as in EF_MSK."""

    key_domain: bytes
    key_id: bytes

    def __post_init__(self) -> None:
        if len(self.key_domain) != 3 or len(self.key_id) != 4:
            raise SprovError("a key domain is 3 bytes and a SEK/PEK ID 4 bytes")


@dataclass(frozen=True, slots=True)
class Request:
    kind: MessageKind
    request_id: str
    items: tuple[str, ...] = ()
    """globalIDRef of each purchase item (all but the LTKM Request)."""
    tokens: int | None = None
    """Token Purchase: the number of tokens."""
    keys: tuple[KeyId, ...] = ()
    """LTKM Request: the SEK/PEK whose LTKMs are wanted."""

    def to_xml(self) -> bytes:
        root = MESSAGES[self.kind][0]
        attrs = {_A_REQUEST_ID: self.request_id}
        if self.tokens is not None:
            attrs[_A_TOKENS] = str(self.tokens)
        children = [_element(_E_ITEM, {_A_GLOBAL_ID: i}) for i in self.items]
        children += [_key_element(k, None) for k in self.keys]
        return _document(root, attrs, children)


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """One item of a response: a purchase item (`ref`) or a key (`key`), with its status."""

    status: StatusCode
    ref: str | None = None
    key: KeyId | None = None


@dataclass(frozen=True, slots=True)
class Response:
    kind: MessageKind
    request_id: str
    status: StatusCode
    items: tuple[ItemStatus, ...] = ()
    tokens: int | None = None

    def to_xml(self) -> bytes:
        root = MESSAGES[self.kind][1]
        attrs = {_A_REQUEST_ID: self.request_id, _A_GLOBAL: str(int(self.status))}
        if self.tokens is not None:
            attrs[_A_TOKENS] = str(self.tokens)
        children = []
        for item in self.items:
            if item.key is not None:
                children.append(_key_element(item.key, item.status))
            else:
                attrs_item = {_A_GLOBAL_ID: item.ref or "", _A_ITEMWISE: str(int(item.status))}
                children.append(_element(_E_ITEM, attrs_item))
        return _document(root, attrs, children)


def _element(name: str, attrs: dict[str, str]) -> str:
    return f"<{name}" + "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items()) + "/>"


def _key_element(key: KeyId, status: StatusCode | None) -> str:
    attrs = {_A_DOMAIN: key.key_domain.hex(), _A_SEKPEK: key.key_id.hex()}
    if status is not None:
        attrs[_A_ITEMWISE] = str(int(status))
    return _element(_E_KEY, attrs)


def _document(root: str, attrs: dict[str, str], children: list[str]) -> bytes:
    head = _element(root, attrs)[:-2] + ">"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "".join(children) + f"</{root}>\n"
    ).encode()


# -- parsing ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tree:
    root: str
    attrs: dict[str, str]
    children: list[tuple[str, dict[str, str]]]


class _Parser:
    def __init__(self) -> None:
        self.depth = 0
        self.root: str | None = None
        self.attrs: dict[str, str] = {}
        self.children: list[tuple[str, dict[str, str]]] = []

    def run(self, body: bytes) -> _Tree:
        if len(body) > MAX_BODY:
            raise SprovError(f"body over {MAX_BODY} bytes")
        parser = expat.ParserCreate(namespace_separator=_NS_SEP)
        parser.StartDoctypeDeclHandler = self._refuse
        parser.EntityDeclHandler = self._refuse
        parser.ProcessingInstructionHandler = self._refuse
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        try:
            parser.Parse(body, True)
        except expat.ExpatError as exc:
            raise SprovError(f"not well-formed XML: {exc}") from None
        if self.root is None:
            raise SprovError("no root element")
        return _Tree(self.root, self.attrs, self.children)

    def _refuse(self, *_args: object) -> None:
        raise SprovError("DTDs, entities and processing instructions are not accepted")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SprovError("elements nested too deep")
        local = name.rsplit(_NS_SEP, 1)[-1]
        clean = {k.rsplit(_NS_SEP, 1)[-1]: v for k, v in attrs.items()}
        if any(len(v) > MAX_VALUE for v in clean.values()):
            raise SprovError(f"an attribute value over {MAX_VALUE} characters")
        if self.depth == 1:
            self.root, self.attrs = local, clean
        elif self.depth == 2:
            if len(self.children) >= MAX_ITEMS:
                raise SprovError(f"more than {MAX_ITEMS} items")
            self.children.append((local, clean))

    def _end(self, _name: str) -> None:
        self.depth -= 1


def _request_id(attrs: dict[str, str]) -> str:
    value = attrs.get(_A_REQUEST_ID, "")
    if not value:
        raise SprovError(f"no {_A_REQUEST_ID}")
    return value


def _int(value: str | None, what: str, limit: int) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 9:
        raise SprovError(f"{what} is not a decimal number")
    number = int(value)
    if number > limit:
        raise SprovError(f"{what} {number} over {limit}")
    return number


def _status(value: str | None, what: str) -> StatusCode:
    try:
        return StatusCode(_int(value, what, 255))
    except ValueError:
        raise SprovError(f"{what} {value} is not a known status code") from None


def _hex(value: str | None, size: int, what: str) -> bytes:
    if value is None or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise SprovError(f"{what} is not {size} bytes of hex")
    return bytes.fromhex(value)


def _key(attrs: dict[str, str]) -> KeyId:
    return KeyId(_hex(attrs.get(_A_DOMAIN), 3, _A_DOMAIN), _hex(attrs.get(_A_SEKPEK), 4, _A_SEKPEK))


def _item_ref(attrs: dict[str, str]) -> str:
    ref = attrs.get(_A_GLOBAL_ID, "")
    if not ref:
        raise SprovError(f"a {_E_ITEM} without {_A_GLOBAL_ID}")
    return ref


def parse_request(body: bytes) -> Request:
    tree = _Parser().run(body)
    kind = _BY_REQUEST.get(tree.root)
    if kind is None:
        raise SprovError(f"{tree.root!r} is not a provisioning request")
    request_id = _request_id(tree.attrs)
    items = tuple(_item_ref(a) for name, a in tree.children if name == _E_ITEM)
    keys = tuple(_key(a) for name, a in tree.children if name == _E_KEY)
    tokens = None
    if kind is MessageKind.LTKM:
        if items or not keys:
            raise SprovError("an LTKM Request lists keys, not purchase items")
    else:
        if keys or not items:
            raise SprovError("the request lists no purchase item")
        if len(set(items)) != len(items):
            raise SprovError("a purchase item is listed twice")
    if kind is MessageKind.TOKEN_PURCHASE:
        tokens = _int(tree.attrs.get(_A_TOKENS), _A_TOKENS, 1_000_000)
        if tokens == 0:
            raise SprovError("a token purchase of zero tokens")
    return Request(kind, request_id, items, tokens, keys)


def parse_response(body: bytes) -> Response:
    tree = _Parser().run(body)
    kind = _BY_RESPONSE.get(tree.root)
    if kind is None:
        raise SprovError(f"{tree.root!r} is not a provisioning response")
    request_id = _request_id(tree.attrs)
    status = _status(tree.attrs.get(_A_GLOBAL), _A_GLOBAL)
    items: list[ItemStatus] = []
    for name, attrs in tree.children:
        if name == _E_ITEM:
            items.append(
                ItemStatus(_status(attrs.get(_A_ITEMWISE), _A_ITEMWISE), ref=_item_ref(attrs))
            )
        elif name == _E_KEY:
            items.append(ItemStatus(_status(attrs.get(_A_ITEMWISE), _A_ITEMWISE), key=_key(attrs)))
    tokens = None
    if _A_TOKENS in tree.attrs:
        tokens = _int(tree.attrs[_A_TOKENS], _A_TOKENS, 1_000_000)
    return Response(kind, request_id, status, tuple(items), tokens)
