"""WBXML for SyncML DM 1.2 (`application/vnd.syncml.dm+wbxml`), sans-IO, declared once as
tables.

No kept WBXML library exists for Python (the one on PyPI is an unmaintained 2015 wrapper of
the C libwbxml), so the codec is here: the global tokens of WAP-192-WBXML (WBXML 1.2 and
1.3 §5.8.4), and the two code pages a DM message uses, with the tag tokens of
OMA-TS-SyncML_RepPro (SyncML 1.2, code page 0, "SYNCML:SYNCML1.2") and OMA-TS-SyncML_MetInf
(code page 1, "syncml:metinf"). The DM Representation Protocol (OMA-TS-DM_RepPro §5) uses
those two pages and no other; SyncML's DevInf document type is a Data Synchronization object
that DM does not carry (a DM device describes itself through its ./DevInfo tree instead).

Document (WBXML §5.3): version, publicid, charset, strtbl, body. We write version 1.2 (0x02),
the registered public identifier 0x1201 ("-//SYNCML//DTD SyncML 1.2//EN"), UTF-8 (MIBenum
106) and an empty string table; we read versions 1.1 to 1.3, the identifier as a number or
as a string-table literal, and string-table references (STR_T). Text is STR_I, bytes
content is OPAQUE. SyncML has no attributes: a tag with the attribute bit is refused."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from openscws.dm.element import MAX_DEPTH, METINF_NS, SYNCML_NS, Content, Element
from openscws.dm.errors import MessageError

__all__ = ["CODE_PAGES", "PUBLIC_ID", "decode", "encode"]

VERSION: Final = 0x02  # WBXML 1.2 (WBXML §5.4: major - 1 in the high nibble, minor low)
READ_VERSIONS: Final = frozenset({0x01, 0x02, 0x03})
PUBLIC_ID: Final = 0x1201  # OMNA WBXML public identifiers: SyncML 1.2
PUBLIC_ID_TEXT: Final = "-//SYNCML//DTD SyncML 1.2//EN"
UTF8: Final = 106  # IANA MIBenum
MAX_MB_BYTES: Final = 5  # mb_u_int32 (WBXML §5.1)


class Token(enum.IntEnum):
    """Global tokens, WBXML §5.8.4.7, valid on every code page."""

    SWITCH_PAGE = 0x00
    END = 0x01
    ENTITY = 0x02
    STR_I = 0x03
    LITERAL = 0x04
    EXT_I_0 = 0x40
    EXT_I_1 = 0x41
    EXT_I_2 = 0x42
    PI = 0x43
    LITERAL_C = 0x44
    EXT_T_0 = 0x80
    EXT_T_1 = 0x81
    EXT_T_2 = 0x82
    STR_T = 0x83
    LITERAL_A = 0x84
    EXT_0 = 0xC0
    EXT_1 = 0xC1
    EXT_2 = 0xC2
    OPAQUE = 0xC3
    LITERAL_AC = 0xC4


TAG_ATTRS: Final = 0x80  # WBXML §5.8.2: bit 7 = attributes follow
TAG_CONTENT: Final = 0x40  # bit 6 = content follows


@dataclass(frozen=True, slots=True)
class CodePage:
    ns: str
    tags: dict[int, str]


_SYNCML_TAGS = (
    # OMA-TS-SyncML_RepPro V1.2 §8 (WBXML code page 0), tokens 0x05.. in order.
    "Add Alert Archive Atomic Chal Cmd CmdID CmdRef Copy Cred Data Delete Exec Final Get Item "
    "Lang LocName LocURI Map MapItem Meta MsgID MsgRef NoResp NoResults Put Replace RespURI "
    "Results Search Sequence SessionID SftDel Source SourceRef Status Sync SyncBody SyncHdr "
    "SyncML Target TargetRef - VerDTD VerProto NumberOfChanges MoreData Field Filter Record "
    "FilterType SourceParent TargetParent Move Correlator"
).split()
_METINF_TAGS = (
    # OMA-TS-SyncML_MetInf V1.2 §6 (WBXML code page 1), tokens 0x05.. in order.
    "Anchor EMI Format FreeID FreeMem Last Mark MaxMsgSize Mem MetInf Next NextNonce "
    "SharedMem Size Type Version MaxObjSize FieldLevel"
).split()

CODE_PAGES: Final = {
    0: CodePage(SYNCML_NS, {0x05 + i: t for i, t in enumerate(_SYNCML_TAGS) if t != "-"}),
    1: CodePage(METINF_NS, {0x05 + i: t for i, t in enumerate(_METINF_TAGS)}),
}
_TOKENS: Final = {
    (page.ns, tag): (number, token)
    for number, page in CODE_PAGES.items()
    for token, tag in page.tags.items()
}
# XML namespaces are case-sensitive, but peers write the SyncML one in either case.
_NS_ALIASES: Final = {SYNCML_NS.lower(): SYNCML_NS, METINF_NS.lower(): METINF_NS}


def _mb(value: int) -> bytes:
    if not 0 <= value < 1 << 32:
        raise ValueError("mb_u_int32 out of range")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def encode(root: Element) -> bytes:
    """The WBXML 1.2 form of a SyncML DM document."""
    out = bytearray((VERSION, *_mb(PUBLIC_ID), *_mb(UTF8), 0))
    page = 0
    # Iterative walk: an element, then its content, then None for its END.
    work: list[Content | None] = [root]
    depth = 0
    while work:
        item = work.pop()
        if item is None:
            out.append(Token.END)
            depth -= 1
        elif isinstance(item, Element):
            key = (_NS_ALIASES.get(item.ns.lower(), item.ns), item.tag)
            if key not in _TOKENS:
                raise ValueError(f"<{item.tag} xmlns={item.ns!r}> has no WBXML token")
            number, token = _TOKENS[key]
            if number != page:
                out += bytes((Token.SWITCH_PAGE, number))
                page = number
            if item.content:
                if depth >= MAX_DEPTH:
                    raise ValueError(f"element tree deeper than {MAX_DEPTH}")
                out.append(token | TAG_CONTENT)
                depth += 1
                work.append(None)
                work.extend(reversed(item.content))
            else:
                out.append(token)
        elif isinstance(item, str):
            raw = item.encode("utf-8")
            if b"\0" in raw:
                raise ValueError("text with NUL cannot be STR_I")
            if raw:
                out += bytes((Token.STR_I, *raw, 0))
        else:
            out += bytes((Token.OPAQUE, *_mb(len(item)), *item))
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, reason: str) -> MessageError:
        return MessageError(f"WBXML: {reason}", self.data, self.pos)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def mb(self) -> int:
        value = 0
        for _ in range(MAX_MB_BYTES):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                if value >= 1 << 32:
                    raise self.fail("mb_u_int32 out of range")
                return value
        raise self.fail("mb_u_int32 longer than 5 bytes")

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.fail("length beyond the document")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail("inline string without its terminator")
        chunk = self.data[self.pos : end]
        self.pos = end + 1
        return chunk


def _text(r: _Reader, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise r.fail("string is not UTF-8") from None


def _table_string(r: _Reader, table: bytes, index: int) -> str:
    if index >= len(table):
        raise r.fail("string table reference out of the table")
    end = table.find(b"\0", index)
    return _text(r, table[index : end if end >= 0 else len(table)])


def decode(data: bytes) -> Element:
    """The tree of a WBXML SyncML DM document; `MessageError` (status 400) for anything else."""
    r = _Reader(data)
    version = r.byte()
    if version not in READ_VERSIONS:
        raise r.fail(f"version {(version >> 4) + 1}.{version & 0xF} is not WBXML 1.1-1.3")
    public_id = r.mb()
    literal = r.mb() if public_id == 0 else None
    charset = r.mb()
    if charset not in (UTF8, 0):  # 0: unknown, read as the default UTF-8
        raise r.fail(f"charset MIBenum {charset} (UTF-8 only)")
    table = r.take(r.mb())
    if literal is not None:
        if _table_string(r, table, literal) != PUBLIC_ID_TEXT:
            raise r.fail("public identifier is not SyncML 1.2")
    elif public_id not in (PUBLIC_ID, 1):  # 1: unknown or missing (WBXML §7.2.1)
        raise r.fail(f"public identifier {public_id:#x} is not SyncML 1.2")
    page = 0
    stack: list[tuple[str, str, list[Content]]] = []
    root: Element | None = None
    while root is None:
        token = r.byte()
        if token == Token.SWITCH_PAGE:
            page = r.byte()
            if page not in CODE_PAGES:
                raise r.fail(f"code page {page} is not a SyncML DM page")
        elif token == Token.END:
            if not stack:
                raise r.fail("END outside an element")
            tag, ns, content = stack.pop()
            el = Element(tag, ns, tuple(content)).normalized()
            if stack:
                stack[-1][2].append(el)
            else:
                root = el
        elif token in (Token.STR_I, Token.STR_T, Token.OPAQUE, Token.ENTITY):
            if not stack:
                raise r.fail("content outside the root element")
            item: Content
            if token == Token.STR_I:
                item = _text(r, r.cstring())
            elif token == Token.STR_T:
                item = _table_string(r, table, r.mb())
            elif token == Token.ENTITY:
                code = r.mb()
                if not 0 < code <= 0x10FFFF or 0xD800 <= code < 0xE000:
                    raise r.fail(f"character entity {code:#x}")
                item = chr(code)
            else:
                item = r.take(r.mb())
            stack[-1][2].append(item)
        elif token & 0x3F < 0x05:
            raise r.fail(f"token {token:#04x} ({Token(token).name}) has no place in SyncML DM")
        else:
            if token & TAG_ATTRS:
                raise r.fail("SyncML elements have no attributes")
            if (token & 0x3F) not in CODE_PAGES[page].tags:
                raise r.fail(f"tag token {token & 0x3F:#04x} unknown on code page {page}")
            tag = CODE_PAGES[page].tags[token & 0x3F]
            if stack and len(stack) >= MAX_DEPTH:
                raise r.fail(f"elements nested deeper than {MAX_DEPTH}")
            if token & TAG_CONTENT:
                stack.append((tag, CODE_PAGES[page].ns, []))
            else:
                el = Element(tag, CODE_PAGES[page].ns)
                if stack:
                    stack[-1][2].append(el)
                else:
                    root = el
    if r.pos != len(data):
        raise r.fail("bytes after the root element")
    return root
