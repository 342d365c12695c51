"""The SyncML DM 1.2 message: typed, both forms from one declaration, safe XML parsing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.dm import message as m
from openscws.dm.element import from_xml
from openscws.dm.errors import MessageError

XML = m.CONTENT_TYPE_XML
WBXML = m.CONTENT_TYPE_WBXML


def pkg1(session_id: str = "0") -> m.SyncML:
    """A client-initiated Package #1 (OMA-TS-DM_Protocol §8 shape)."""
    return m.SyncML(
        hdr=m.SyncHdr(
            session_id=session_id,
            msg_id=1,
            target=m.Target(loc_uri="https://dm.example/"),
            source=m.Source(loc_uri="IMEI:493005100592800", loc_name="Bruce2"),
            cred=m.Cred(
                meta=m.Meta(type="syncml:auth-md5", format="b64"),
                data="Zz6EivR3yeaaENcRN6lpAQ==",
            ),
            meta=m.Meta(max_msg_size=16384, max_obj_size=65536),
        ),
        body=m.SyncBody(
            commands=(
                m.Alert(cmd_id=1, data=m.AlertCode.CLIENT_INITIATED),
                m.Replace(
                    cmd_id=2,
                    items=tuple(
                        m.Item(source=m.Source(loc_uri=f"./DevInfo/{k}"), data=v)
                        for k, v in (("DevId", "IMEI:493005100592800"), ("Lang", "en"))
                    ),
                ),
            ),
            final=True,
        ),
    )


def pkg2() -> m.SyncML:
    return m.SyncML(
        hdr=m.SyncHdr(
            session_id="0",
            msg_id=1,
            target=m.Target(loc_uri="IMEI:493005100592800"),
            source=m.Source(loc_uri="https://dm.example/"),
        ),
        body=m.SyncBody(
            commands=(
                m.Status(
                    cmd_id=1,
                    msg_ref=1,
                    cmd_ref=0,
                    cmd="SyncHdr",
                    target_refs=("https://dm.example/",),
                    source_refs=("IMEI:493005100592800",),
                    chal=m.Chal(
                        meta=m.Meta(type="syncml:auth-md5", format="b64", next_nonce="Tm9uY2U=")
                    ),
                    data=212,
                ),
                m.Atomic(
                    cmd_id=2,
                    commands=(
                        m.Add(
                            cmd_id=3,
                            items=(
                                m.Item(
                                    target=m.Target(loc_uri="./a"),
                                    meta=m.Meta(format="chr", type="text/plain"),
                                    data="x",
                                ),
                            ),
                        ),
                        m.Sequence(
                            cmd_id=4,
                            commands=(
                                m.Exec(cmd_id=5, item=m.Item(target=m.Target(loc_uri="./b"))),
                            ),
                        ),
                    ),
                ),
                m.Get(cmd_id=6, items=(m.Item(target=m.Target(loc_uri="./DevInfo/DevId")),)),
                m.Delete(cmd_id=7, no_resp=True, items=(m.Item(target=m.Target(loc_uri="./c")),)),
                m.Copy(
                    cmd_id=8,
                    items=(m.Item(target=m.Target(loc_uri="./d"), source=m.Source(loc_uri="./c")),),
                ),
                m.Results(
                    cmd_id=9,
                    msg_ref=1,
                    cmd_ref=6,
                    items=(m.Item(source=m.Source(loc_uri="./x"), data=b"\x00\xff"),),
                ),
                m.Alert(cmd_id=10, data=m.AlertCode.NEXT_MESSAGE),
            ),
            final=False,
        ),
    )


@pytest.mark.parametrize("msg", [pkg1(), pkg1("1A2B"), pkg2()])
def test_both_forms_round_trip(msg: m.SyncML) -> None:
    assert m.decode(m.encode(msg, wbxml_form=True), WBXML) == msg
    if msg != pkg2():  # binary Data has no XML form
        assert m.decode(m.encode(msg), XML + "; charset=UTF-8") == msg


def test_xml_shape() -> None:
    xml = m.encode(pkg1())
    assert b"<SessionID>0</SessionID>" in xml  # session id 0 is legal
    assert b"<VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>" in xml
    assert b'<MaxMsgSize xmlns="syncml:metinf">16384</MaxMsgSize>' in xml
    assert b"<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>" in xml
    assert xml.endswith(b"<Final/></SyncBody></SyncML>")


def test_reads_a_doctype_naming_the_public_dtd() -> None:
    xml = m.encode(pkg1()).replace(
        b"?>", b'?><!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://x/d.dtd">', 1
    )
    assert m.decode(xml) == pkg1()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><SessionID>&c;</SessionID></SyncHdr></SyncML>'
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<SyncML xmlns="SYNCML:SYNCML1.2">&x;</SyncML>'
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE SyncML SYSTEM "file:///etc/passwd">'
    b'<SyncML xmlns="SYNCML:SYNCML1.2">&x;</SyncML>'
)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (BILLION_LAUGHS, "internal subset"),
        (EXTERNAL, "internal subset"),
        (EXTERNAL_DTD, "undeclared entity|undefined entity"),
        (b"<SyncML", "malformed"),
        (b"", "malformed"),
        (b'<SyncML xmlns="other"><SyncHdr/></SyncML>', "namespace"),
        (b'<SyncML xmlns="SYNCML:SYNCML1.2" a="1"/>', "attributes"),
        (b'<SyncML xmlns="SYNCML:SYNCML1.2"><SyncBody/></SyncML>', "lacks <SyncHdr>"),
        (m.encode(pkg1()).replace(b"<MsgID>1<", b"<MsgID>one<"), "not a number"),
        (m.encode(pkg1()).replace(b"<MsgID>1<", b"<MsgID>\xd9\xa1<"), "not a number"),
        (m.encode(pkg1()).replace(b"<CmdID>1</CmdID>", b""), "lacks <CmdID>"),
        (m.encode(pkg1()).replace(b"<Final/>", b"<Final>x</Final>"), "must be empty"),
        (m.encode(pkg1()).replace(b"<Final/>", b"<Bogus/>"), "may not hold <Bogus>"),
        (m.encode(pkg1()).replace(b"<Final/>", b"<Final/><Final/>"), "twice"),
        (m.encode(pkg1()).replace(b"<Final/>", b"<Final/>text"), "mixed content|text where"),
        (
            m.encode(pkg1()).replace(b"<Final/>", b"<Atomic><CmdID>9</CmdID><Results/></Atomic>"),
            "may not hold <Results>",
        ),
    ],
)
def test_refusals_are_status_400(body: bytes, why: str) -> None:
    with pytest.raises(MessageError, match=why) as info:
        m.decode(body)
    assert info.value.status == 400


def test_integers_are_unsigned_32_bit() -> None:
    with pytest.raises(MessageError, match="not a number"):
        m.decode(m.encode(pkg1()).replace(b"<MsgID>1<", b"<MsgID>4294967296<"))
    with pytest.raises(ValueError, match="out of"):
        m.encode(m.SyncML(hdr=pkg1().hdr, body=m.SyncBody(commands=(m.Alert(cmd_id=-1),))))


def test_content_types() -> None:
    with pytest.raises(MessageError, match="content type"):
        m.decode(m.encode(pkg1()), "text/xml")
    with pytest.raises(MessageError):  # WBXML body labelled XML
        m.decode(m.encode(pkg1(), wbxml_form=True), XML)


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
_item = st.builds(
    m.Item,
    target=st.none() | st.builds(m.Target, loc_uri=_text, loc_name=st.none() | _text),
    data=st.none() | _text,
    meta=st.none()
    | st.builds(m.Meta, format=st.none() | _text, size=st.none() | st.integers(0, 2**32 - 1)),
    more_data=st.booleans(),
)
_ids = st.integers(0, 2**31)
_leaf_cmd = st.one_of(
    st.builds(m.Get, cmd_id=_ids, items=st.lists(_item, max_size=3).map(tuple)),
    st.builds(m.Replace, cmd_id=_ids, no_resp=st.booleans(), items=st.lists(_item).map(tuple)),
    st.builds(m.Exec, cmd_id=_ids, item=_item, correlator=st.none() | _text),
    st.builds(m.Alert, cmd_id=_ids, data=st.none() | st.sampled_from(list(m.AlertCode))),
)
_cmd = st.recursive(
    _leaf_cmd,
    lambda inner: (
        st.builds(m.Atomic, cmd_id=_ids, commands=st.lists(inner, max_size=3).map(tuple))
        | st.builds(m.Sequence, cmd_id=_ids, commands=st.lists(inner, max_size=3).map(tuple))
    ),
    max_leaves=6,
)
_status = st.builds(
    m.Status,
    cmd_id=_ids,
    msg_ref=_ids,
    cmd_ref=_ids,
    cmd=_text,
    data=st.integers(100, 599),
    target_refs=st.lists(_text, max_size=2).map(tuple),
)
messages = st.builds(
    m.SyncML,
    hdr=st.builds(
        m.SyncHdr,
        session_id=_text,
        msg_id=_ids,
        target=st.builds(m.Target, loc_uri=_text),
        source=st.builds(m.Source, loc_uri=_text),
    ),
    body=st.builds(
        m.SyncBody,
        commands=st.lists(_cmd | _status, max_size=4).map(tuple),
        final=st.booleans(),
    ),
)


@settings(deadline=None)
@given(messages)
def test_typed_round_trip(msg: m.SyncML) -> None:
    assert m.decode(m.encode(msg, wbxml_form=True), WBXML) == msg
    assert m.decode(m.encode(msg), XML) == msg


@settings(deadline=None, max_examples=300)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=4), st.booleans())
def test_fuzz_typed_errors_only(pos: int, junk: bytes, wbxml_form: bool) -> None:
    doc = m.encode(pkg2() if wbxml_form else pkg1(), wbxml_form=wbxml_form)
    pos %= len(doc)
    mutated = doc[:pos] + junk + doc[pos + len(junk) :]
    try:
        m.decode(mutated, WBXML if wbxml_form else XML)
    except MessageError:
        pass


@pytest.mark.peer
def test_libwbxml_reads_our_messages(tmp_path: Path, need_tool: Callable[[str, str], str]) -> None:
    tool = need_tool("wbxml2xml", "libwbxml2-utils")
    msg = pkg1()
    (tmp_path / "m.wbxml").write_bytes(m.encode(msg, wbxml_form=True))
    subprocess.run(
        [tool, "-m", "0", "-o", str(tmp_path / "m.xml"), str(tmp_path / "m.wbxml")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert m.decode((tmp_path / "m.xml").read_bytes()) == msg
    assert from_xml((tmp_path / "m.xml").read_bytes()) == m.to_element(msg)
