"""SIP message codec: the forms SIPp and Kamailio send, TCP framing, and 400 for the rest."""

from __future__ import annotations

import pytest

from openscws.push.sip import (
    CSeq,
    NameAddr,
    SipError,
    SipRequest,
    SipResponse,
    StreamFramer,
    Via,
    _split_by_grammar,
    parse_message,
    response_to,
    uri_user_host,
)

# A MESSAGE as relayed by a proxy: two Via (SIPp's [last_Via:] joins them with ", "),
# compact forms, folded header.
RELAYED = (
    b"MESSAGE sip:device1@127.0.0.1:29070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy.1, "
    b"SIP/2.0/UDP 127.0.0.1:5080;received=127.0.0.1;rport=5080;branch=z9hG4bK-18247-1-0\r\n"
    b"Max-Forwards: 69\r\n"
    b"f: <sip:ppg@scws.test>;tag=18247SIPpTag001\r\n"
    b"t: <sip:device1@scws.test>\r\n"
    b"i: 1-18247@127.0.0.1\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b'Accept-Contact: *;+g.oma.pusheventapp="push.scws"\r\n'
    b"  ;require;explicit\r\n"
    b"c: application/octet-stream\r\n"
    b"l: 5\r\n\r\n"
    b"\x01\x02\x03\x04\x05trailing"
)


def test_parse_relayed_message() -> None:
    msg = parse_message(RELAYED)
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri) == ("MESSAGE", "sip:device1@127.0.0.1:29070")
    assert msg.body == b"\x01\x02\x03\x04\x05"
    assert len(msg.values("Via")) == 2
    assert msg.top_via.branch == "z9hG4bKproxy.1"
    assert msg.header("Call-ID") == "1-18247@127.0.0.1"
    assert msg.header("accept-contact") == '*;+g.oma.pusheventapp="push.scws" ;require;explicit'
    assert msg.cseq == CSeq(1, "MESSAGE")
    assert NameAddr.parse(msg.header("From") or "").tag == "18247SIPpTag001"


def test_response_copies_every_via() -> None:
    req = parse_message(RELAYED)
    assert isinstance(req, SipRequest)
    resp = response_to(req, 200, to_tag="abc")
    again = parse_message(resp.encode())
    assert isinstance(again, SipResponse)
    assert (again.status, again.reason) == (200, "OK")
    assert again.values("Via") == req.values("Via")
    assert NameAddr.parse(again.header("To") or "").tag == "abc"
    assert again.body == b""
    assert b"\r\nContent-Length: 0\r\n" in resp.encode()


def test_encode_round_trip() -> None:
    req = parse_message(RELAYED)
    assert parse_message(req.encode()) == req


def test_via_reply_address() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5080;rport;branch=z9hG4bK1")
    assert via.reply_address(("127.0.0.1", 40000)) == ("10.0.0.1", 40000)
    via = Via.parse("SIP/2.0/TCP [::1];branch=z9hG4bK1;received=::1;rport=7")
    assert via.reply_address(("::1", 1)) == ("::1", 7)
    assert str(Via.parse("SIP/2.0/udp h:1;branch=z9hG4bKx")) == "SIP/2.0/UDP h:1;branch=z9hG4bKx"


def test_name_addr_forms() -> None:
    assert NameAddr.parse('"PPG" <sip:ppg@scws.test>;tag=1').display == "PPG"
    assert NameAddr.parse("sip:ppg@scws.test;tag=2").tag == "2"
    contact = NameAddr.parse('<sip:d@127.0.0.1:5070;transport=tcp>;+g.oma.pusheventapp="push.scws"')
    assert contact.uri == "sip:d@127.0.0.1:5070;transport=tcp"
    assert contact.params["+g.oma.pusheventapp"] == '"push.scws"'
    assert uri_user_host(contact.uri) == ("d", "127.0.0.1:5070")


def test_stream_framing() -> None:
    req = parse_message(RELAYED)
    data = b"\r\n\r\n" + req.encode() + req.encode()
    framer = StreamFramer()
    out = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [req, req]
    with pytest.raises(SipError):
        StreamFramer().feed(RELAYED.replace(b"l: 5\r\n", b""))


BAD = [
    b"",
    b"MESSAGE sip:a@b SIP/2.0\r\n",
    b"MESSAGE sip:a@b SIP/3.0\r\n\r\n",
    b"MESSAGE notauri SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n",
    RELAYED.replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 REGISTER"),
    RELAYED.replace(b"CSeq: 1 MESSAGE", b"CSeq: one MESSAGE"),
    RELAYED.replace(b"i: 1-18247@127.0.0.1\r\n", b""),
    RELAYED.replace(b"l: 5", b"l: 50"),
    RELAYED.replace(b"l: 5", b"l: -5"),
    RELAYED.replace(b"Via: SIP/2.0/UDP 127.0.0.1:5060", b"Via: HTTP/1.1 x"),
    RELAYED.replace(b"t: <sip:device1@scws.test>", b"t: nobody"),
    RELAYED.replace(b"Max-Forwards: 69", b"Max Forwards: 69"),
    b"SIP/2.0 999 Odd\r\n\r\n",
    b"\xff\xfe\r\n\r\n",
]


@pytest.mark.parametrize("data", BAD)
def test_malformed_is_400(data: bytes) -> None:
    with pytest.raises(SipError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_too_large_is_513() -> None:
    with pytest.raises(SipError) as info:
        parse_message(RELAYED + b"x" * 70000)
    assert info.value.status == 513


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport",
        "  <sip:a@b>;expires=60  ",
        "",
        "   ",
        "SIP/2.0/UDP a:1;branch=z9hG4bK1, SIP/2.0/TCP b:2;branch=z9hG4bK2",
        '"Doe, John" <sip:j@b>, <sip:k@b;x=1,2>',
        '"a\\"," <sip:a@b>',
        ",,x,,",
    ],
)
def test_values_split_as_declared(value: str) -> None:
    msg = SipRequest((("Contact", value),), b"", "REGISTER", "sip:r")
    assert msg.values("Contact") == _split_by_grammar(value)
    assert msg.values("m") == _split_by_grammar(value)  # the compact name asks the same header


def test_header_index_follows_the_headers() -> None:
    msg = parse_message(RELAYED)
    assert msg.header("call-id") == msg.header("i") == "1-18247@127.0.0.1"
    assert msg.header("Expires") is None
    assert msg.values("Contact") == []
    # Repeated headers keep their order; what `values` returns is the caller's to change.
    two = msg.with_header("Via", "SIP/2.0/TCP c:3;branch=z9hG4bK3")
    vias = two.values("Via")
    assert len(vias) == 3
    assert vias[2].startswith("SIP/2.0/TCP c:3")
    vias.clear()
    assert len(two.values("Via")) == 3
    assert len(msg.values("Via")) == 2
    # A derived message is indexed (and its top Via parsed) afresh.
    first = two.without("Via").with_header("Via", "SIP/2.0/UDP d:4;branch=z9hG4bK4")
    assert first.top_via.host == "d"
    assert first.top_via.branch == "z9hG4bK4"
    assert msg.top_via.host == "127.0.0.1"
    assert msg.top_via.port == 5060
    assert first.without("Via").values("Via") == []
    with pytest.raises(SipError):
        _ = first.without("Via").top_via
    # The index is not part of a message's identity.
    assert parse_message(RELAYED) == msg
    assert hash(parse_message(RELAYED)) == hash(msg)
    response = parse_message(response_to(msg, 200, to_tag="x").encode())
    assert isinstance(response, SipResponse)
    assert response.top_via.branch == "z9hG4bKproxy.1"
