"""The Push Access Protocol (WAP-247 PAP 2.x, OMA Push): the XML documents a push initiator and
a Push Proxy Gateway exchange over HTTP, as typed values, sans-IO.

Parsing is safe by construction: expat with no DTD processing beyond the DOCTYPE line, every
entity declaration (internal or external, the "billion laughs" form included) and every
external entity reference refused, a size cap, and no text content kept. Anything refused or
malformed raises `PapError` with the PAP code to answer (2000 Bad Request, 2002 Address Error,
3002 Version Not Supported), which a PPG sends back in a `badmessage-response`.

Documents are written with the PAP 2.1 DOCTYPE; any PAP DOCTYPE (1.0 to 2.x) is read, because
PPGs answer with their own (Kannel always answers with PAP 1.0's)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Final
from urllib.parse import quote, unquote
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

from openscws.errors import OpenScwsError

__all__ = [
    "MAX_DOCUMENT",
    "PAP_DOCTYPE",
    "Address",
    "AddressType",
    "BadMessageResponse",
    "CancelMessage",
    "CancelResponse",
    "CancelResult",
    "MessageState",
    "PapCode",
    "PapDocument",
    "PapError",
    "ProgressNote",
    "PushMessage",
    "PushResponse",
    "QualityOfService",
    "ResultNotificationMessage",
    "ResultNotificationResponse",
    "StatusQueryMessage",
    "StatusQueryResponse",
    "StatusQueryResult",
    "encode",
    "format_time",
    "parse",
    "parse_time",
]

MAX_DOCUMENT: Final = 64 * 1024
"""Bytes of PAP control entity accepted; a push-message with one address is a few hundred."""
MAX_DEPTH: Final = 4
"""`pap` > message > address/result > address is as deep as PAP goes."""

PAP_DOCTYPE: Final = (
    '<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" '
    '"http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd">'
)


class PapCode(IntEnum):
    """PAP status codes (`code` attributes). 1xxx success, 2xxx initiator error, 3xxx PPG
    error, 4xxx service failure, 5xxx the mobile client aborted."""

    OK = 1000
    ACCEPTED_FOR_PROCESSING = 1001
    BAD_REQUEST = 2000
    FORBIDDEN = 2001
    ADDRESS_ERROR = 2002
    ADDRESS_NOT_FOUND = 2003
    PUSH_ID_NOT_FOUND = 2004
    CAPABILITIES_MISMATCH = 2005
    REQUIRED_CAPABILITIES_NOT_SUPPORTED = 2006
    DUPLICATE_PUSH_ID = 2007
    CANCELLATION_NOT_POSSIBLE = 2008
    INTERNAL_SERVER_ERROR = 3000
    NOT_IMPLEMENTED = 3001
    VERSION_NOT_SUPPORTED = 3002
    NOT_POSSIBLE = 3003
    CAPABILITY_MATCHING_NOT_SUPPORTED = 3004
    MULTIPLE_ADDRESSES_NOT_SUPPORTED = 3005
    TRANSFORMATION_FAILURE = 3006
    DELIVERY_METHOD_NOT_POSSIBLE = 3007
    CAPABILITIES_NOT_AVAILABLE = 3008
    REQUIRED_NETWORK_NOT_AVAILABLE = 3009
    REQUIRED_BEARER_NOT_AVAILABLE = 3010
    REPLACEMENT_NOT_SUPPORTED = 3011
    SERVICE_FAILURE = 4000
    SERVICE_UNAVAILABLE = 4001
    MOBILE_CLIENT_ABORTED = 5000


def code_name(code: int) -> str:
    """`2003 Address Not Found`; codes outside the table keep their class."""
    try:
        return f"{code} {PapCode(code).name.replace('_', ' ').title()}"
    except ValueError:
        classes = {1: "Success", 2: "Client Error", 3: "Server Error", 4: "Service Failure"}
        return f"{code} {classes.get(code // 1000, 'Mobile Client Aborted')}"


def is_success(code: int) -> bool:
    return 1000 <= code < 2000


class MessageState(StrEnum):
    UNDELIVERABLE = "undeliverable"
    PENDING = "pending"
    EXPIRED = "expired"
    DELIVERED = "delivered"
    ABORTED = "aborted"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class PapError(OpenScwsError):
    """A PAP document refused; `code` is the PAP code to answer with."""

    def __init__(self, code: int, reason: str, fragment: str = "") -> None:
        super().__init__(f"PAP {code}: {reason}")
        self.code = code
        self.reason = reason
        self.fragment = fragment[:200]


# -- time stamps and addresses ---------------------------------------------------------------------

_TIME: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z\Z")


def parse_time(text: str) -> datetime:
    """PAP time stamps are UTC `YYYY-MM-DDThh:mm:ssZ`."""
    m = _TIME.match(text)
    if m is None:
        raise PapError(PapCode.BAD_REQUEST, f"time stamp {text!r} is not YYYY-MM-DDThh:mm:ssZ")
    try:
        y, mo, d, h, mi, sec = (int(g) for g in m.groups())
        return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
    except ValueError as e:
        raise PapError(PapCode.BAD_REQUEST, f"time stamp {text!r}: {e}") from None


def format_time(when: datetime) -> str:
    utc = when.astimezone(UTC)
    if utc.year < 1000:  # strftime's %Y does not pad those years
        return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    date = f"{utc.year}-{utc.month:02d}-{utc.day:02d}"
    return f"{date}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"


class AddressType(StrEnum):
    PLMN = "PLMN"
    IPV4 = "IPv4"
    IPV6 = "IPv6"
    USER = "USER"


_ADDRESS: Final = re.compile(
    r"WAPPUSH=([^/@]+)/TYPE=([A-Za-z0-9_]+)(?:@([A-Za-z0-9.\-]+))?\Z", re.I
)
_PLMN: Final = re.compile(r"\+?[0-9]{1,20}\Z")
_SIP_URI: Final = re.compile(r"sips?:[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+@[A-Za-z0-9.\-\[\]:]+\Z")
_TEL_URI: Final = re.compile(r"tel:\+?[0-9\-.()]{1,32}\Z")


_ADDRESS_TYPES: Final = {t.value.upper(): t for t in AddressType}


@dataclass(frozen=True, slots=True)
class Address:
    """A PAP `address-value`: WAP PPG Service's `WAPPUSH=<client>/TYPE=<type>[@<ppg>]`.

    The project's reading for SIP push targets: a SIP (or tel) URI rides as a user-defined
    address, `%`-escaped, `WAPPUSH=sip%3Adevice1%40scws.test/TYPE=USER@ppg`; a bare `sip:` URI is
    accepted on the way in and written in that form on the way out. `PLMN` addresses carry an
    international number."""

    client: str
    type: AddressType
    ppg: str | None = None

    def __post_init__(self) -> None:
        if self.type is AddressType.PLMN and not _PLMN.match(self.client):
            raise PapError(PapCode.ADDRESS_ERROR, f"PLMN address {self.client!r} is not a number")
        if self.type is AddressType.USER and not (
            _SIP_URI.match(self.client) or _TEL_URI.match(self.client)
        ):
            raise PapError(
                PapCode.ADDRESS_ERROR, f"user address {self.client!r} is not a sip: or tel: URI"
            )

    @classmethod
    def sip(cls, uri: str, ppg: str | None = None) -> Address:
        return cls(uri, AddressType.USER, ppg)

    @classmethod
    def parse(cls, value: str) -> Address:
        if _SIP_URI.match(value) or _TEL_URI.match(value):
            return cls(value, AddressType.USER)
        m = _ADDRESS.match(value)
        if m is None:
            raise PapError(
                PapCode.ADDRESS_ERROR, f"address {value[:80]!r} is not WAPPUSH=.../TYPE="
            )
        client, kind, ppg = m.groups()
        address_type = _ADDRESS_TYPES.get(kind.upper())
        if address_type is None:
            raise PapError(PapCode.ADDRESS_ERROR, f"address type {kind!r} is not supported")
        try:
            client = unquote(client, errors="strict")
        except UnicodeDecodeError:
            raise PapError(PapCode.ADDRESS_ERROR, "the address's %-escapes are not UTF-8") from None
        return cls(client, address_type, ppg)

    @property
    def value(self) -> str:
        client = quote(self.client, safe="+") if self.type is AddressType.USER else self.client
        suffix = f"@{self.ppg}" if self.ppg else ""
        return f"WAPPUSH={client}/TYPE={self.type.value}{suffix}"


# -- the documents ---------------------------------------------------------------------------------


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class DeliveryMethod(StrEnum):
    CONFIRMED = "confirmed"
    PREFERCONFIRMED = "preferconfirmed"
    UNCONFIRMED = "unconfirmed"
    NOTSPECIFIED = "notspecified"


@dataclass(frozen=True, slots=True)
class QualityOfService:
    priority: Priority = Priority.MEDIUM
    delivery_method: DeliveryMethod = DeliveryMethod.NOTSPECIFIED
    network: str | None = None
    bearer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushMessage:
    push_id: str
    addresses: tuple[Address, ...]
    deliver_before: datetime | None = None
    deliver_after: datetime | None = None
    source_reference: str | None = None
    notify_to: str | None = None
    progress_notes: bool = False
    qos: QualityOfService | None = None


@dataclass(frozen=True, slots=True)
class ProgressNote:
    stage: str
    note: str | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushResponse:
    push_id: str
    code: int
    desc: str | None = None
    reply_time: datetime | None = None
    sender_address: str | None = None
    sender_name: str | None = None
    notes: tuple[ProgressNote, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BadMessageResponse:
    code: int
    desc: str | None = None
    fragment: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultNotificationMessage:
    push_id: str
    address: Address
    state: MessageState
    code: int
    desc: str | None = None
    event_time: datetime | None = None
    received_time: datetime | None = None
    sender_address: str | None = None
    sender_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultNotificationResponse:
    push_id: str
    code: int
    address: Address | None = None
    desc: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQueryMessage:
    push_id: str
    addresses: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQueryResult:
    state: MessageState
    code: int
    addresses: tuple[Address, ...] = ()
    desc: str | None = None
    event_time: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusQueryResponse:
    push_id: str
    results: tuple[StatusQueryResult, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelMessage:
    push_id: str
    addresses: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResult:
    code: int
    addresses: tuple[Address, ...] = ()
    desc: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelResponse:
    push_id: str
    results: tuple[CancelResult, ...]


type PapDocument = (
    PushMessage
    | PushResponse
    | BadMessageResponse
    | ResultNotificationMessage
    | ResultNotificationResponse
    | StatusQueryMessage
    | StatusQueryResponse
    | CancelMessage
    | CancelResponse
)


# -- a minimal safe XML tree -----------------------------------------------------------------------


@dataclass(slots=True)
class _Element:
    name: str
    attrs: dict[str, str]
    children: list[_Element] = field(default_factory=list)

    def only(self, name: str) -> _Element | None:
        found = [c for c in self.children if c.name == name]
        if len(found) > 1:
            raise PapError(PapCode.BAD_REQUEST, f"<{self.name}> has {len(found)} <{name}>")
        return found[0] if found else None

    def all(self, name: str) -> Iterator[_Element]:
        return (c for c in self.children if c.name == name)

    def required(self, attr: str) -> str:
        value = self.attrs.get(attr)
        if value is None or not value.strip():
            raise PapError(PapCode.BAD_REQUEST, f"<{self.name}> lacks {attr}")
        return value

    def optional_time(self, attr: str) -> datetime | None:
        value = self.attrs.get(attr)
        return None if value is None else parse_time(value)

    def code(self) -> int:
        text = self.required("code").strip()
        if not text.isascii() or not text.isdigit() or not 1000 <= int(text) <= 5999:
            raise PapError(PapCode.BAD_REQUEST, f"<{self.name}> code {text[:10]!r}")
        return int(text)

    def state(self) -> MessageState:
        text = self.required("message-state")
        try:
            return MessageState(text)
        except ValueError:
            raise PapError(PapCode.BAD_REQUEST, f"message-state {text[:20]!r}") from None


def _refuse(what: str) -> Callable[..., None]:
    def handler(*_: object) -> None:
        raise PapError(PapCode.BAD_REQUEST, f"{what} refused")

    return handler


def _tree(data: bytes) -> _Element:
    if len(data) > MAX_DOCUMENT:
        raise PapError(PapCode.BAD_REQUEST, f"document of {len(data)} bytes exceeds {MAX_DOCUMENT}")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse("entity declaration")
    parser.UnparsedEntityDeclHandler = _refuse("unparsed entity declaration")
    parser.ExternalEntityRefHandler = _refuse("external entity")  # type: ignore[assignment]
    parser.NotationDeclHandler = _refuse("notation declaration")
    stack: list[_Element] = []
    root: list[_Element] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise PapError(PapCode.BAD_REQUEST, "document nested too deep")
        element = _Element(name, attrs)
        if stack:
            stack[-1].children.append(element)
        elif root:
            raise PapError(PapCode.BAD_REQUEST, "more than one root")
        else:
            root.append(element)
        stack.append(element)

    def end(_: str) -> None:
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise PapError(
            PapCode.BAD_REQUEST, f"not well-formed XML: {expat.ErrorString(e.code)}"
        ) from None
    except (LookupError, ValueError) as e:  # an unknown encoding in the XML declaration
        raise PapError(PapCode.BAD_REQUEST, f"not well-formed XML: {e}") from None
    if not root or root[0].name != "pap":
        raise PapError(PapCode.BAD_REQUEST, "the root element is not <pap>")
    return root[0]


def _addresses(element: _Element) -> tuple[Address, ...]:
    return tuple(Address.parse(a.required("address-value")) for a in element.all("address"))


def parse(data: bytes) -> PapDocument:
    """One PAP document. Raises PapError (with the code to answer) for anything else."""
    pap = _tree(data)
    if len(pap.children) != 1:
        raise PapError(PapCode.BAD_REQUEST, "<pap> must hold exactly one message")
    e = pap.children[0]
    parser = _PARSERS.get(e.name)
    if parser is None:
        raise PapError(PapCode.NOT_IMPLEMENTED, f"<{e.name[:40]}> is not supported")
    return parser(e)


def _push_message(e: _Element) -> PushMessage:
    addresses = _addresses(e)
    if not addresses:
        raise PapError(PapCode.BAD_REQUEST, "<push-message> has no <address>")
    qos = e.only("quality-of-service")
    notes = e.attrs.get("progress-notes-requested", "false")
    if notes not in ("true", "false"):
        raise PapError(PapCode.BAD_REQUEST, f"progress-notes-requested {notes[:10]!r}")
    quality = None
    if qos is not None:
        try:
            quality = QualityOfService(
                Priority(qos.attrs.get("priority", "medium")),
                DeliveryMethod(qos.attrs.get("delivery-method", "notspecified")),
                qos.attrs.get("network"),
                qos.attrs.get("bearer"),
            )
        except ValueError:
            raise PapError(PapCode.BAD_REQUEST, "<quality-of-service> value") from None
    return PushMessage(
        push_id=e.required("push-id"),
        addresses=addresses,
        deliver_before=e.optional_time("deliver-before-timestamp"),
        deliver_after=e.optional_time("deliver-after-timestamp"),
        source_reference=e.attrs.get("source-reference"),
        notify_to=e.attrs.get("ppg-notify-requested-to"),
        progress_notes=notes == "true",
        qos=quality,
    )


def _push_response(e: _Element) -> PushResponse:
    result = e.only("response-result")
    if result is None:
        raise PapError(PapCode.BAD_REQUEST, "<push-response> has no <response-result>")
    notes = tuple(
        ProgressNote(n.required("stage"), n.attrs.get("note"), n.optional_time("time"))
        for n in e.all("progress-note")
    )
    return PushResponse(
        push_id=e.required("push-id"),
        code=result.code(),
        desc=result.attrs.get("desc"),
        reply_time=e.optional_time("reply-time"),
        sender_address=e.attrs.get("sender-address"),
        sender_name=e.attrs.get("sender-name"),
        notes=notes,
    )


def _bad_message(e: _Element) -> BadMessageResponse:
    return BadMessageResponse(
        code=e.code(), desc=e.attrs.get("desc"), fragment=e.attrs.get("bad-message-fragment")
    )


def _result_notification(e: _Element) -> ResultNotificationMessage:
    addresses = _addresses(e)
    if len(addresses) != 1:
        raise PapError(PapCode.BAD_REQUEST, "<resultnotification-message> needs one <address>")
    return ResultNotificationMessage(
        push_id=e.required("push-id"),
        address=addresses[0],
        state=e.state(),
        code=e.code(),
        desc=e.attrs.get("desc"),
        event_time=e.optional_time("event-time"),
        received_time=e.optional_time("received-time"),
        sender_address=e.attrs.get("sender-address"),
        sender_name=e.attrs.get("sender-name"),
    )


def _result_notification_response(e: _Element) -> ResultNotificationResponse:
    addresses = _addresses(e)
    return ResultNotificationResponse(
        push_id=e.required("push-id"),
        code=e.code(),
        address=addresses[0] if addresses else None,
        desc=e.attrs.get("desc"),
    )


def _status_query(e: _Element) -> StatusQueryMessage:
    return StatusQueryMessage(push_id=e.required("push-id"), addresses=_addresses(e))


def _status_query_response(e: _Element) -> StatusQueryResponse:
    results = tuple(
        StatusQueryResult(
            state=r.state(),
            code=r.code(),
            addresses=_addresses(r),
            desc=r.attrs.get("desc"),
            event_time=r.optional_time("event-time"),
        )
        for r in e.all("statusquery-result")
    )
    if not results:
        raise PapError(PapCode.BAD_REQUEST, "<statusquery-response> has no result")
    return StatusQueryResponse(push_id=e.required("push-id"), results=results)


def _cancel(e: _Element) -> CancelMessage:
    return CancelMessage(push_id=e.required("push-id"), addresses=_addresses(e))


def _cancel_response(e: _Element) -> CancelResponse:
    results = tuple(
        CancelResult(code=r.code(), addresses=_addresses(r), desc=r.attrs.get("desc"))
        for r in e.all("cancel-result")
    )
    if not results:
        raise PapError(PapCode.BAD_REQUEST, "<cancel-response> has no result")
    return CancelResponse(push_id=e.required("push-id"), results=results)


_PARSERS: Final[dict[str, Callable[[_Element], PapDocument]]] = {
    "push-message": _push_message,
    "push-response": _push_response,
    "badmessage-response": _bad_message,
    "resultnotification-message": _result_notification,
    "resultnotification-response": _result_notification_response,
    "statusquery-message": _status_query,
    "statusquery-response": _status_query_response,
    "cancel-message": _cancel,
    "cancel-response": _cancel_response,
}


# -- writing ---------------------------------------------------------------------------------------


_NEEDS_QUOTING: Final = re.compile(r"[&<>\"\n\r\t]")
"""What `quoteattr` changes; a value without any of it is written between double quotes."""


def _quoteattr(value: str) -> str:
    if _NEEDS_QUOTING.search(value) is None:
        return f'"{value}"'
    return quoteattr(value)


@functools.cache
def _attr_name(key: str) -> str:
    """Python keyword -> PAP attribute name (`push_id` -> `push-id`)."""
    return key.replace("_", "-")


def _attrs(**values: str | datetime | int | None) -> str:
    out = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = format_time(value)
        out.append(f" {_attr_name(key)}={_quoteattr(str(value))}")
    return "".join(out)


def _address_xml(addresses: tuple[Address, ...]) -> str:
    return "".join(f"<address{_attrs(address_value=a.value)}/>" for a in addresses)


def _body(document: PapDocument) -> str:
    match document:
        case PushMessage():
            qos = ""
            if document.qos is not None:
                q = document.qos
                qos = (
                    "<quality-of-service"
                    + _attrs(
                        priority=q.priority.value,
                        delivery_method=q.delivery_method.value,
                        network=q.network,
                        bearer=q.bearer,
                    )
                    + "/>"
                )
            attrs = _attrs(
                push_id=document.push_id,
                deliver_before_timestamp=document.deliver_before,
                deliver_after_timestamp=document.deliver_after,
                source_reference=document.source_reference,
                ppg_notify_requested_to=document.notify_to,
                progress_notes_requested="true" if document.progress_notes else None,
            )
            return f"<push-message{attrs}>{_address_xml(document.addresses)}{qos}</push-message>"
        case PushResponse():
            notes = "".join(
                f"<progress-note{_attrs(stage=n.stage, note=n.note, time=n.time)}/>"
                for n in document.notes
            )
            attrs = _attrs(
                push_id=document.push_id,
                sender_address=document.sender_address,
                sender_name=document.sender_name,
                reply_time=document.reply_time,
            )
            result = f"<response-result{_attrs(code=document.code, desc=document.desc)}/>"
            return f"<push-response{attrs}>{notes}{result}</push-response>"
        case BadMessageResponse():
            attrs = _attrs(
                code=document.code, desc=document.desc, bad_message_fragment=document.fragment
            )
            return f"<badmessage-response{attrs}/>"
        case ResultNotificationMessage():
            attrs = _attrs(
                push_id=document.push_id,
                sender_address=document.sender_address,
                sender_name=document.sender_name,
                received_time=document.received_time,
                event_time=document.event_time,
                message_state=document.state.value,
                code=document.code,
                desc=document.desc,
            )
            body = _address_xml((document.address,))
            return f"<resultnotification-message{attrs}>{body}</resultnotification-message>"
        case ResultNotificationResponse():
            attrs = _attrs(push_id=document.push_id, code=document.code, desc=document.desc)
            body = _address_xml((document.address,) if document.address else ())
            return f"<resultnotification-response{attrs}>{body}</resultnotification-response>"
        case StatusQueryMessage():
            return _wrap(
                "statusquery-message",
                _attrs(push_id=document.push_id),
                _address_xml(document.addresses),
            )
        case StatusQueryResponse():
            results = "".join(
                _wrap(
                    "statusquery-result",
                    _attrs(
                        event_time=r.event_time,
                        message_state=r.state.value,
                        code=r.code,
                        desc=r.desc,
                    ),
                    _address_xml(r.addresses),
                )
                for r in document.results
            )
            return _wrap("statusquery-response", _attrs(push_id=document.push_id), results)
        case CancelMessage():
            return _wrap(
                "cancel-message", _attrs(push_id=document.push_id), _address_xml(document.addresses)
            )
        case CancelResponse():
            results = "".join(
                _wrap("cancel-result", _attrs(code=r.code, desc=r.desc), _address_xml(r.addresses))
                for r in document.results
            )
            return _wrap("cancel-response", _attrs(push_id=document.push_id), results)


def _wrap(name: str, attrs: str, inner: str) -> str:
    return f"<{name}{attrs}>{inner}</{name}>"


def encode(document: PapDocument) -> bytes:
    """The document as UTF-8 XML with the PAP 2.1 DOCTYPE."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{PAP_DOCTYPE}\n<pap>{_body(document)}</pap>\n'
    ).encode()
