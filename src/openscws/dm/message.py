"""The SyncML DM 1.2 message (OMA-TS-DM_RepPro V1.2 §5-§6, over OMA-TS-SyncML_RepPro V1.2
§5-§6 and OMA-TS-SyncML_MetInf V1.2), sans-IO: typed dataclasses, each field declared once
with its element name, from which both the XML (`application/vnd.syncml.dm+xml`) and the
WBXML (`application/vnd.syncml.dm+wbxml`) forms are encoded and decoded.

Each dataclass field carries a `Spec` in its metadata: the element's tag and namespace and
its kind (text, integer, empty-element flag, one child structure, repeated child structures,
or the ordered command list of SyncBody, Atomic and Sequence). Fields appear in the order of
the DTD's content models, and encoding writes them in that order. Decoding refuses elements
the declaration does not name, missing mandatory elements and non-numeric integers with
`MessageError` (status 400); it does not judge the session (MsgRef, credentials): that is the
session layer's job."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from openscws.dm import wbxml
from openscws.dm.element import METINF_NS, SYNCML_NS, Content, Element, from_xml, to_xml
from openscws.dm.errors import MessageError

__all__ = [
    "CONTENT_TYPE_WBXML",
    "CONTENT_TYPE_XML",
    "Add",
    "Alert",
    "AlertCode",
    "Atomic",
    "Chal",
    "Command",
    "Copy",
    "Cred",
    "Delete",
    "Exec",
    "Get",
    "Item",
    "Meta",
    "Replace",
    "Results",
    "Sequence",
    "Status",
    "SyncBody",
    "SyncHdr",
    "SyncML",
    "decode",
    "encode",
]

CONTENT_TYPE_XML: Final = "application/vnd.syncml.dm+xml"
CONTENT_TYPE_WBXML: Final = "application/vnd.syncml.dm+wbxml"
VER_DTD: Final = "1.2"
VER_PROTO: Final = "DM/1.2"
MAX_INT: Final = 2**32 - 1  # the numbers of a DM message (ids, sizes, codes) are unsigned 32-bit


class AlertCode(enum.IntEnum):
    """The session alerts of OMA-TS-DM_RepPro §4.2 this layer names."""

    SERVER_INITIATED = 1200
    CLIENT_INITIATED = 1201
    NEXT_MESSAGE = 1222
    SESSION_ABORT = 1223


class Kind(enum.Enum):
    TEXT = "text"
    INT = "int"
    FLAG = "flag"  # an empty element whose presence is the value
    DATA = "data"  # text, or bytes (WBXML OPAQUE)
    ONE = "one"
    MANY = "many"
    TEXTS = "texts"  # repeated text elements
    COMMANDS = "commands"


@dataclass(frozen=True, slots=True)
class Spec:
    tag: str
    kind: Kind
    ns: str = SYNCML_NS
    cls: type[Any] | None = None
    required: bool = False


def _f(tag: str, kind: Kind, *, ns: str = SYNCML_NS, cls: type[Any] | None = None) -> Any:
    """A mandatory field."""
    return field(metadata={"dm": Spec(tag, kind, ns, cls, True)})


def _o(
    tag: str, kind: Kind, *, ns: str = SYNCML_NS, cls: type[Any] | None = None, default: Any = None
) -> Any:
    """An optional field (None, False or empty when absent)."""
    spec = Spec(tag, kind, ns, cls)
    if kind in (Kind.MANY, Kind.TEXTS, Kind.COMMANDS):
        return field(default=(), metadata={"dm": spec})
    return field(default=False if kind is Kind.FLAG else default, metadata={"dm": spec})


M = METINF_NS


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """Meta information (OMA-TS-SyncML_MetInf §5), the elements DM uses."""

    TAG: ClassVar[str] = "Meta"
    format: str | None = _o("Format", Kind.TEXT, ns=M)
    type: str | None = _o("Type", Kind.TEXT, ns=M)
    mark: str | None = _o("Mark", Kind.TEXT, ns=M)
    size: int | None = _o("Size", Kind.INT, ns=M)
    next_nonce: str | None = _o("NextNonce", Kind.TEXT, ns=M)
    version: str | None = _o("Version", Kind.TEXT, ns=M)
    max_msg_size: int | None = _o("MaxMsgSize", Kind.INT, ns=M)
    max_obj_size: int | None = _o("MaxObjSize", Kind.INT, ns=M)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    TAG: ClassVar[str] = "Target"
    loc_uri: str = _f("LocURI", Kind.TEXT)
    loc_name: str | None = _o("LocName", Kind.TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    TAG: ClassVar[str] = "Source"
    loc_uri: str = _f("LocURI", Kind.TEXT)
    loc_name: str | None = _o("LocName", Kind.TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cred:
    TAG: ClassVar[str] = "Cred"
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    data: str = _f("Data", Kind.TEXT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chal:
    TAG: ClassVar[str] = "Chal"
    meta: Meta = _f("Meta", Kind.ONE, cls=Meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    TAG: ClassVar[str] = "Item"
    target: Target | None = _o("Target", Kind.ONE, cls=Target)
    source: Source | None = _o("Source", Kind.ONE, cls=Source)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    data: str | bytes | None = _o("Data", Kind.DATA)
    more_data: bool = _o("MoreData", Kind.FLAG)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncHdr:
    TAG: ClassVar[str] = "SyncHdr"
    ver_dtd: str = field(default=VER_DTD, metadata={"dm": Spec("VerDTD", Kind.TEXT, required=True)})
    ver_proto: str = field(
        default=VER_PROTO, metadata={"dm": Spec("VerProto", Kind.TEXT, required=True)}
    )
    session_id: str = _f("SessionID", Kind.TEXT)
    msg_id: int = _f("MsgID", Kind.INT)
    target: Target = _f("Target", Kind.ONE, cls=Target)
    source: Source = _f("Source", Kind.ONE, cls=Source)
    resp_uri: str | None = _o("RespURI", Kind.TEXT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    cred: Cred | None = _o("Cred", Kind.ONE, cls=Cred)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """Alert (SyncML_RepPro §6.6.2): `data` is the alert code."""

    TAG: ClassVar[str] = "Alert"
    cmd_id: int = _f("CmdID", Kind.INT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    cred: Cred | None = _o("Cred", Kind.ONE, cls=Cred)
    data: int | None = _o("Data", Kind.INT)
    correlator: str | None = _o("Correlator", Kind.TEXT)
    items: tuple[Item, ...] = _o("Item", Kind.MANY, cls=Item)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Status (SyncML_RepPro §6.6.15): `data` is the status code."""

    TAG: ClassVar[str] = "Status"
    cmd_id: int = _f("CmdID", Kind.INT)
    msg_ref: int = _f("MsgRef", Kind.INT)
    cmd_ref: int = _f("CmdRef", Kind.INT)
    cmd: str = _f("Cmd", Kind.TEXT)
    target_refs: tuple[str, ...] = _o("TargetRef", Kind.TEXTS)
    source_refs: tuple[str, ...] = _o("SourceRef", Kind.TEXTS)
    cred: Cred | None = _o("Cred", Kind.ONE, cls=Cred)
    chal: Chal | None = _o("Chal", Kind.ONE, cls=Chal)
    data: int = _f("Data", Kind.INT)
    items: tuple[Item, ...] = _o("Item", Kind.MANY, cls=Item)


@dataclass(frozen=True, slots=True, kw_only=True)
class Results:
    TAG: ClassVar[str] = "Results"
    cmd_id: int = _f("CmdID", Kind.INT)
    msg_ref: int | None = _o("MsgRef", Kind.INT)
    cmd_ref: int = _f("CmdRef", Kind.INT)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    target_ref: str | None = _o("TargetRef", Kind.TEXT)
    source_ref: str | None = _o("SourceRef", Kind.TEXT)
    items: tuple[Item, ...] = _o("Item", Kind.MANY, cls=Item)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ItemCommand:
    """Get, Replace, Add, Delete and Copy share (CmdID, NoResp?, Cred?, Meta?, Item+)."""

    TAG: ClassVar[str] = ""
    cmd_id: int = _f("CmdID", Kind.INT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    cred: Cred | None = _o("Cred", Kind.ONE, cls=Cred)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    items: tuple[Item, ...] = _o("Item", Kind.MANY, cls=Item)


@dataclass(frozen=True, slots=True, kw_only=True)
class Get(_ItemCommand):
    TAG: ClassVar[str] = "Get"


@dataclass(frozen=True, slots=True, kw_only=True)
class Replace(_ItemCommand):
    TAG: ClassVar[str] = "Replace"


@dataclass(frozen=True, slots=True, kw_only=True)
class Add(_ItemCommand):
    TAG: ClassVar[str] = "Add"


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(_ItemCommand):
    TAG: ClassVar[str] = "Delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class Copy(_ItemCommand):
    TAG: ClassVar[str] = "Copy"


@dataclass(frozen=True, slots=True, kw_only=True)
class Exec:
    TAG: ClassVar[str] = "Exec"
    cmd_id: int = _f("CmdID", Kind.INT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    cred: Cred | None = _o("Cred", Kind.ONE, cls=Cred)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    correlator: str | None = _o("Correlator", Kind.TEXT)
    item: Item = _f("Item", Kind.ONE, cls=Item)


@dataclass(frozen=True, slots=True, kw_only=True)
class Atomic:
    TAG: ClassVar[str] = "Atomic"
    cmd_id: int = _f("CmdID", Kind.INT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    commands: tuple[Command, ...] = _o("", Kind.COMMANDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sequence:
    TAG: ClassVar[str] = "Sequence"
    cmd_id: int = _f("CmdID", Kind.INT)
    no_resp: bool = _o("NoResp", Kind.FLAG)
    meta: Meta | None = _o("Meta", Kind.ONE, cls=Meta)
    commands: tuple[Command, ...] = _o("", Kind.COMMANDS)


type Command = (
    Alert | Status | Results | Get | Replace | Add | Delete | Copy | Exec | Atomic | Sequence
)

COMMANDS: Final[dict[str, type[Any]]] = {
    c.TAG: c
    for c in (Alert, Status, Results, Get, Replace, Add, Delete, Copy, Exec, Atomic, Sequence)
}
# What each container may hold (SyncML_RepPro §6.6.3 Atomic, §6.6.17 Sequence; DM_RepPro §6).
_NESTED: Final = frozenset(
    {"Add", "Delete", "Copy", "Replace", "Atomic", "Sequence", "Get", "Exec", "Alert"}
)
INNER: Final[dict[str, frozenset[str]]] = {
    "SyncBody": frozenset(COMMANDS),
    "Atomic": _NESTED,
    "Sequence": _NESTED,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncBody:
    TAG: ClassVar[str] = "SyncBody"
    commands: tuple[Command, ...] = _o("", Kind.COMMANDS)
    final: bool = _o("Final", Kind.FLAG)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncML:
    TAG: ClassVar[str] = "SyncML"
    hdr: SyncHdr = _f("SyncHdr", Kind.ONE, cls=SyncHdr)
    body: SyncBody = _f("SyncBody", Kind.ONE, cls=SyncBody)


# -- one declaration, two directions ------------------------------------------------------


_FIELDS: dict[type[Any], tuple[tuple[str, Spec], ...]] = {}
_BY_TAG: dict[type[Any], tuple[dict[str, tuple[str, Spec]], str | None]] = {}


def _fields(cls: type[Any]) -> tuple[tuple[str, Spec], ...]:
    """A message class's fields and their specs (read once per class)."""
    got = _FIELDS.get(cls)
    if got is None:
        got = _FIELDS[cls] = tuple((f.name, f.metadata["dm"]) for f in dataclasses.fields(cls))
    return got


def _by_tag(cls: type[Any]) -> tuple[dict[str, tuple[str, Spec]], str | None]:
    """A message class's fields by their element's tag, and its commands field if any (made
    once per class)."""
    got = _BY_TAG.get(cls)
    if got is None:
        specs = _fields(cls)
        by_tag = {s.tag: (name, s) for name, s in specs if s.kind is not Kind.COMMANDS}
        commands = next((name for name, s in specs if s.kind is Kind.COMMANDS), None)
        got = _BY_TAG[cls] = (by_tag, commands)
    return got


def _leaf(spec: Spec, text: str | bytes) -> Element:
    return Element(spec.tag, spec.ns, (text,) if text != "" else ())


def _cls(spec: Spec) -> type[Any]:
    assert spec.cls is not None, spec.tag
    cls: type[Any] = spec.cls
    return cls


def to_element(obj: Any) -> Element:
    out: list[Content] = []
    for name, spec in _fields(type(obj)):
        value = getattr(obj, name)
        if spec.kind is Kind.COMMANDS:
            out.extend(to_element(c) for c in value)
        elif spec.kind is Kind.MANY:
            out.extend(to_element(v) for v in value)
        elif spec.kind is Kind.TEXTS:
            out.extend(_leaf(spec, v) for v in value)
        elif value is None or value is False:
            continue
        elif spec.kind is Kind.FLAG:
            out.append(Element(spec.tag, spec.ns))
        elif spec.kind is Kind.ONE:
            out.append(to_element(value))
        elif spec.kind is Kind.INT:
            if not 0 <= value <= MAX_INT:
                raise ValueError(f"<{spec.tag}> {value} out of 0..{MAX_INT}")
            out.append(_leaf(spec, str(value)))
        else:
            out.append(_leaf(spec, value))
    return Element(type(obj).TAG, SYNCML_NS, tuple(out))


def _int(el: Element) -> int:
    text = el.text().strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > MAX_INT:
        raise MessageError(f"<{el.tag}> is not a number up to {MAX_INT}: {text[:20]!r}")
    return int(text)


def from_element(cls: type[Any], el: Element) -> Any:
    if el.tag != cls.TAG:
        raise MessageError(f"<{cls.TAG}> expected, not <{el.tag}>")
    by_tag, commands = _by_tag(cls)
    values: dict[str, Any] = {}
    cmds: list[Any] = []
    for c in el.content:
        if not isinstance(c, Element):
            if isinstance(c, bytes) or c.strip():
                raise MessageError(f"<{el.tag}> holds text where elements are expected")
            continue
        if c.tag in by_tag and c.ns.lower() == by_tag[c.tag][1].ns.lower():
            name, spec = by_tag[c.tag]
            if spec.kind in (Kind.MANY, Kind.TEXTS):
                value: Any = from_element(_cls(spec), c) if spec.kind is Kind.MANY else c.text()
                values[name] = (*values.get(name, ()), value)
                continue
            if name in values:
                raise MessageError(f"<{el.tag}> has <{c.tag}> twice")
            if spec.kind is Kind.FLAG:
                if c.content:
                    raise MessageError(f"<{c.tag}> must be empty")
                values[name] = True
            elif spec.kind is Kind.ONE:
                values[name] = from_element(_cls(spec), c)
            elif spec.kind is Kind.INT:
                values[name] = _int(c)
            elif spec.kind is Kind.DATA:
                if len(c.content) == 1 and isinstance(c.content[0], bytes):
                    values[name] = c.content[0]
                else:
                    values[name] = c.text()
            else:
                values[name] = c.text()
        elif commands is not None and c.tag in INNER[el.tag] and c.ns == SYNCML_NS:
            cmds.append(from_element(COMMANDS[c.tag], c))
        else:
            raise MessageError(f"<{el.tag}> may not hold <{c.tag}>")
    for name, spec in _fields(cls):
        if spec.required and name not in values and spec.kind is not Kind.COMMANDS:
            raise MessageError(f"<{el.tag}> lacks <{spec.tag}>")
    if commands is not None:
        values[commands] = tuple(cmds)
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - the checks above cover the fields
        raise MessageError(f"<{el.tag}>: {exc}") from None


def encode(message: SyncML, *, wbxml_form: bool = False) -> bytes:
    """The message in its XML form, or WBXML with `wbxml_form`."""
    root = to_element(message)
    return wbxml.encode(root) if wbxml_form else to_xml(root)


def decode(data: bytes, content_type: str = CONTENT_TYPE_XML) -> SyncML:
    """A message in the form its HTTP content type names; `MessageError` (status 400) for a
    body that is not a SyncML DM message, or a content type that is not DM's."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == CONTENT_TYPE_XML:
        root = from_xml(data)
    elif media == CONTENT_TYPE_WBXML:
        root = wbxml.decode(data)
    else:
        raise MessageError(f"content type {media!r} is not a SyncML DM message")
    if root.ns.lower() != SYNCML_NS.lower():
        raise MessageError(f"root namespace {root.ns!r} is not {SYNCML_NS}")
    result: SyncML = from_element(SyncML, root)
    return result
