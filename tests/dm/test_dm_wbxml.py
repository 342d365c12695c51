"""The WBXML codec of SyncML DM 1.2: round trips, the bytes libwbxml writes, refusals of bad
input (typed MessageError only), and Debian's libwbxml2-utils reading ours and writing
documents we read."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from dmtrees import trees
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.dm import wbxml
from openscws.dm.element import METINF_NS, Element, from_xml, to_xml
from openscws.dm.errors import MessageError

E = Element
PKG1_XML = (
    b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD>'
    b"<VerProto>DM/1.2</VerProto><SessionID>0</SessionID><MsgID>1</MsgID>"
    b"<Target><LocURI>https://s/</LocURI></Target><Source><LocURI>IMEI:1</LocURI></Source>"
    b'<Meta><MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize></Meta></SyncHdr>'
    b"<SyncBody><Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>"
)
# xml2wbxml -v 1.2 of PKG1_XML (libwbxml 0.11.8): public id 0x1201, UTF-8, no string table,
# SWITCH_PAGE 1 for MaxMsgSize and back to 0 before <SyncBody>.
PKG1_WBXML = bytes.fromhex(
    "02a4016a006d6c7103312e3200017203444d2f312e32000165033000015b033100016e570368747470733a"
    "2f2f732f000101675703494d45493a310001015a00014c0331363338340001010100006b464b033100014f"
    "0331323031000101120101"
)


def test_known_document() -> None:
    tree = from_xml(PKG1_XML)
    assert wbxml.encode(tree) == PKG1_WBXML
    assert wbxml.decode(PKG1_WBXML) == tree
    size = tree.child("SyncHdr").child("Meta").child("MaxMsgSize")  # type: ignore[union-attr]
    assert size == E("MaxMsgSize", METINF_NS, ("16384",))


def test_tables() -> None:
    syncml = wbxml.CODE_PAGES[0].tags
    assert (syncml[0x05], syncml[0x2D], syncml[0x3C]) == ("Add", "SyncML", "Correlator")
    assert 0x30 not in syncml  # reserved in SyncML 1.2
    metinf = wbxml.CODE_PAGES[1].tags
    assert (metinf[0x0C], metinf[0x10], metinf[0x16]) == ("MaxMsgSize", "NextNonce", "FieldLevel")


def test_string_table_literal_public_id_and_opaque() -> None:
    # publicid 0 + index 0 into the string table, a STR_T text, an OPAQUE Data, ENTITY.
    table = b"-//SYNCML//DTD SyncML 1.2//EN\0hello\0"
    doc = (
        bytes((0x03, 0x00, 0x00, 0x6A, len(table)))
        + table
        + bytes((0x6D, 0x6B, 0x4F, 0x83, 30, 0x01, 0x4F, 0xC3, 2, 0xFF, 0x00, 0x01))
        + bytes((0x4F, 0x02, 0x81, 0x63, 0x01, 0x01, 0x01))
    )
    tree = wbxml.decode(doc)
    body = tree.child("SyncBody")
    assert body is not None
    assert [d.content for d in body.children("Data")] == [("hello",), (b"\xff\x00",), ("\u00e3",)]
    assert wbxml.decode(wbxml.encode(tree)) == tree


@settings(deadline=None)
@given(trees())
def test_round_trip(tree: Element) -> None:
    tree = tree.normalized()
    assert wbxml.decode(wbxml.encode(tree)) == tree
    assert from_xml(to_xml(tree)) == tree


@settings(deadline=None)
@given(trees(), st.binary(max_size=8))
def test_opaque_round_trip(tree: Element, blob: bytes) -> None:
    tree = Element(tree.tag, tree.ns, (*tree.content, E("Data", content=(blob,)))).normalized()
    assert wbxml.decode(wbxml.encode(tree)) == tree


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        (b"", "truncated"),
        (b"\x09\x01\x6a\x00\x6d\x01", "version"),
        (b"\x02\x01\x04\x00\x6d\x01", "charset"),
        (b"\x02\x8a\x01\x6a\x00\x6d\x01", "public identifier"),
        (b"\x02\x01\x6a\x00\x6d", "truncated"),
        (b"\x02\x01\x6a\x00\xed\x01", "attributes"),
        (b"\x02\x01\x6a\x00\x7f\x01", "unknown"),
        (b"\x02\x01\x6a\x00\x00\x05\x6d\x01", "code page"),
        (b"\x02\x01\x6a\x00\x6d\x01\x01", "bytes after"),
        (b"\x02\x01\x6a\x00\x01", "END outside"),
        (b"\x02\x01\x6a\x00\x03a\x00", "outside the root"),
        (b"\x02\x01\x6a\x00\x6d\x03\xff\x00\x01", "UTF-8"),
        (b"\x02\x01\x6a\x00\x6d\xc3\x05ab\x01", "beyond"),
        (b"\x02\x01\x6a\x00\x6d\x03ab", "terminator"),
        (b"\x02\x01\x6a\x00\x6d\x83\x05\x01", "string table"),
        (b"\x02\x01\x6a\x00\x6d\x44\x01", "no place"),
        (b"\x02\x01\x6a\x00\x6d\x02\xc4\x80\x80\x00\x01", "entity"),
        (b"\x02\x01\x6a\xff\xff\xff\xff\xff\x7f", "5 bytes"),
        (b"\x02\x01\x6a\xff\xff\xff\xff\x7f", "out of range"),
        (b"\x02\x01\x6a\x00" + b"\x6d" * 65, "deeper"),
    ],
)
def test_refusals(doc: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why) as info:
        wbxml.decode(doc)
    assert info.value.status == 400


def test_encode_refuses_unknown_elements() -> None:
    with pytest.raises(ValueError, match="no WBXML token"):
        wbxml.encode(E("Nope"))
    with pytest.raises(ValueError, match="NUL"):
        wbxml.encode(E("Data", content=("a\0",)))


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_typed_errors_only(data: bytes) -> None:
    for doc in (data, PKG1_WBXML[:4] + data, PKG1_WBXML[: len(data) % len(PKG1_WBXML)] + data):
        try:
            wbxml.decode(doc)
        except MessageError:
            pass


@settings(deadline=None, max_examples=300)
@given(st.integers(0, len(PKG1_WBXML) - 1), st.integers(0, 255))
def test_fuzz_mutations(pos: int, value: int) -> None:
    doc = bytearray(PKG1_WBXML)
    doc[pos] = value
    try:
        wbxml.decode(bytes(doc))
    except MessageError:
        pass


# Documents for the libwbxml peer: a DM Package #2 shape with both code pages.
PEER_DOCS = [
    PKG1_XML,
    b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD></SyncHdr><SyncBody>'
    b"<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd>"
    b'<Chal><Meta><Type xmlns="syncml:metinf">syncml:auth-md5</Type>'
    b'<Format xmlns="syncml:metinf">b64</Format>'
    b'<NextNonce xmlns="syncml:metinf">Tm9uY2U=</NextNonce></Meta></Chal>'
    b"<Data>407</Data></Status><Get><CmdID>2</CmdID><Item><Target><LocURI>./DevInfo/DevId"
    b"</LocURI></Target></Item></Get><Replace><CmdID>3</CmdID><Item><Target><LocURI>./a&amp;b"
    b"</LocURI></Target><Data>caf\xc3\xa9 &lt;x&gt;</Data></Item></Replace><Final/>"
    b"</SyncBody></SyncML>",
]


def _as_text(el: Element) -> Element:
    """libwbxml writes SyncML <Data> as OPAQUE: the same document when read as UTF-8 text."""
    return Element(
        el.tag,
        el.ns,
        tuple(
            _as_text(c) if isinstance(c, Element) else c.decode() if isinstance(c, bytes) else c
            for c in el.content
        ),
    ).normalized()


def _run(tool: str, *args: str | Path) -> None:
    proc = subprocess.run([tool, *map(str, args)], capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


@pytest.mark.peer
@pytest.mark.parametrize("doc", PEER_DOCS)
def test_libwbxml_reads_ours(
    doc: bytes, tmp_path: Path, need_tool: Callable[[str, str], str]
) -> None:
    tool = need_tool("wbxml2xml", "libwbxml2-utils")
    tree = from_xml(doc)
    (tmp_path / "ours.wbxml").write_bytes(wbxml.encode(tree))
    _run(tool, "-m", "0", "-o", tmp_path / "theirs.xml", tmp_path / "ours.wbxml")
    assert from_xml((tmp_path / "theirs.xml").read_bytes()) == tree


@pytest.mark.peer
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("doc", PEER_DOCS)
def test_we_read_libwbxml(
    doc: bytes, version: str, tmp_path: Path, need_tool: Callable[[str, str], str]
) -> None:
    tool = need_tool("xml2wbxml", "libwbxml2-utils")
    (tmp_path / "in.xml").write_bytes(doc)
    _run(tool, "-v", version, "-o", tmp_path / "theirs.wbxml", tmp_path / "in.xml")
    theirs = (tmp_path / "theirs.wbxml").read_bytes()
    assert _as_text(wbxml.decode(theirs)) == from_xml(doc)
    if doc == PKG1_XML and version == "1.2":
        assert wbxml.encode(from_xml(doc)) == theirs
