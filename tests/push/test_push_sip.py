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
