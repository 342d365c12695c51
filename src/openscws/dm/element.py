"""The document tree both DM message forms share, and its XML form
(`application/vnd.syncml.dm+xml`), sans-IO.

An `Element` is a SyncML element: its local name, its namespace (`SYNCML:SYNCML1.2` for the
SyncML DTD, `syncml:metinf` for the Meta Information DTD) and its content, a tuple of child
elements, text, and (from WBXML OPAQUE only) bytes.

Parsing is safe by construction: a document type declaration may name the public DTD but may
carry no internal subset, and no entity is ever declared, expanded or fetched, so external
entities and entity-expansion ("billion laughs") bodies are refused with `MessageError`
(SyncML status 400) before any expansion happens. Whitespace-only text between elements is
not content (SyncML has no mixed content)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, NoReturn
from xml.parsers import expat
from xml.sax.saxutils import escape

from openscws.dm.errors import MessageError

__all__ = ["METINF_NS", "SYNCML_NS", "Content", "Element", "from_xml", "to_xml"]

SYNCML_NS: Final = "SYNCML:SYNCML1.2"
METINF_NS: Final = "syncml:metinf"
MAX_DEPTH: Final = 64

type Content = Element | str | bytes


@dataclass(frozen=True, slots=True)
class Element:
    tag: str
    ns: str = SYNCML_NS
    content: tuple[Content, ...] = field(default=())

    def children(self, tag: str | None = None) -> Iterator[Element]:
        for c in self.content:
            if isinstance(c, Element) and (tag is None or c.tag == tag):
                yield c

    def child(self, tag: str) -> Element | None:
        return next(self.children(tag), None)

    def text(self) -> str:
        """The element's text content (bytes from OPAQUE read as UTF-8)."""
        parts: list[str] = []
        for c in self.content:
            if isinstance(c, str):
                parts.append(c)
            elif isinstance(c, bytes):
                try:
                    parts.append(c.decode("utf-8"))
                except UnicodeDecodeError:
                    raise MessageError(f"<{self.tag}> holds binary data, not text") from None
            else:
                raise MessageError(f"<{self.tag}> holds <{c.tag}> where text is expected")
        return "".join(parts)

    def normalized(self) -> Element:
        """Adjacent text merged, empty text dropped: the form both codecs decode to."""
        out: list[Content] = []
        for c in self.content:
            if isinstance(c, Element):
                out.append(c.normalized())
            elif out and isinstance(out[-1], str) and isinstance(c, str):
                out[-1] += c
            elif c:
                out.append(c)
        return Element(self.tag, self.ns, tuple(out))


def to_xml(root: Element) -> bytes:
    """The XML form, UTF-8, without a document type declaration."""
    parts: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']

    def emit(el: Element, parent_ns: str | None, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ValueError(f"element tree deeper than {MAX_DEPTH}")
        ns = f' xmlns="{escape(el.ns, {'"': "&quot;"})}"' if el.ns != parent_ns else ""
        if not el.content:
            parts.append(f"<{el.tag}{ns}/>")
            return
        parts.append(f"<{el.tag}{ns}>")
        for c in el.content:
            if isinstance(c, Element):
                emit(c, el.ns, depth + 1)
            else:
                text = c if isinstance(c, str) else c.decode("utf-8")
                parts.append(escape(text, {"\r": "&#13;"}))
        parts.append(f"</{el.tag}>")

    emit(root, None, 0)
    return "".join(parts).encode("utf-8")


def from_xml(data: bytes) -> Element:
    """The tree of an XML DM message; `MessageError` for anything malformed or unsafe."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[tuple[str, str, list[Content]]] = []
    root: list[Element] = []

    def refuse(what: str) -> NoReturn:
        raise MessageError(f"XML DM message carries {what}")

    def doctype(name: str, sysid: str | None, pubid: str | None, internal: int) -> None:
        if internal:
            refuse("a DTD internal subset")

    def start(name: str, attrs: dict[str, str]) -> None:
        if attrs:
            refuse(f"attributes on <{name.rpartition(' ')[2]}>")
        if len(stack) >= MAX_DEPTH:
            refuse(f"elements nested deeper than {MAX_DEPTH}")
        if root:
            refuse("a second root element")
        ns, _, local = name.rpartition(" ")
        stack.append((local, ns, []))

    def end(name: str) -> None:
        local, ns, content = stack.pop()
        if any(isinstance(c, Element) for c in content):
            if any(isinstance(c, str) and c.strip() for c in content):
                refuse(f"mixed content in <{local}>")
            content = [c for c in content if isinstance(c, Element)]
        # The children are normalized already (their own `end`): merge this level only, so a
        # message decodes in time linear in its size.
        out: list[Content] = []
        for c in content:
            if out and isinstance(out[-1], str) and isinstance(c, str):
                out[-1] += c
            elif c:
                out.append(c)
        el = Element(local, ns, tuple(out))
        if stack:
            stack[-1][2].append(el)
        else:
            root.append(el)

    def chars(text: str) -> None:
        if not stack:
            return
        content = stack[-1][2]
        if content and isinstance(content[-1], str):
            content[-1] += text
        else:
            content.append(text)

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = lambda *a: refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = lambda *a: refuse("an entity declaration")
    parser.ExternalEntityRefHandler = lambda *a: refuse("an external entity")
    parser.SkippedEntityHandler = lambda *a: refuse("an undeclared entity reference")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise MessageError(f"malformed XML: {expat.errors.messages[exc.code]}", data) from None
    except RecursionError:
        raise MessageError("XML nested too deeply", data) from None
    except (LookupError, ValueError) as exc:  # an XML declaration's unknown or multi-byte
        raise MessageError(f"XML in an encoding this parser does not read: {exc}", data) from None
    if not root:
        raise MessageError("XML DM message without a root element", data)
    return root[0]
