"""PAP documents: round trips, the forms real PPGs write, and refusal of unsafe XML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from xml.sax.saxutils import quoteattr

import pytest

from openscws.push import pap
from openscws.push.pap import (
    Address,
    AddressType,
    BadMessageResponse,
    CancelMessage,
    CancelResponse,
    CancelResult,
    MessageState,
    PapCode,
    PapError,
    PushMessage,
    PushResponse,
    QualityOfService,
    ResultNotificationMessage,
    ResultNotificationResponse,
    StatusQueryMessage,
    StatusQueryResponse,
    StatusQueryResult,
)
from openscws.push.submission import ContentEntity, build_submission, parse_submission

WHEN = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
SIP = Address.sip("sip:device1@scws.test", "ppg.scws.test")

DOCUMENTS: list[pap.PapDocument] = [
    PushMessage(
        push_id="job-1@ras",
        addresses=(SIP, Address("+15551234567", AddressType.PLMN)),
        deliver_before=WHEN,
        notify_to="http://127.0.0.1:1/pap/notify",
        progress_notes=True,
        qos=QualityOfService(),
    ),
    PushResponse(push_id="job-1@ras", code=1001, desc="Accepted", reply_time=WHEN),
    BadMessageResponse(code=2000, desc="bad", fragment="<pap>&lt;"),
    ResultNotificationMessage(
        push_id="job-1@ras", address=SIP, state=MessageState.DELIVERED, code=1000, event_time=WHEN
    ),
    ResultNotificationResponse(push_id="job-1@ras", code=1000, address=SIP),
    StatusQueryMessage(push_id="job-1@ras", addresses=(SIP,)),
    StatusQueryResponse(
        push_id="job-1@ras",
        results=(StatusQueryResult(state=MessageState.PENDING, code=1001, addresses=(SIP,)),),
    ),
    CancelMessage(push_id="job-1@ras"),
    CancelResponse(push_id="job-1@ras", results=(CancelResult(code=1000, addresses=(SIP,)),)),
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: type(d).__name__)
def test_round_trip(document: pap.PapDocument) -> None:
    data = pap.encode(document)
    assert data.startswith(b'<?xml version="1.0"')
    assert b"-//WAPFORUM//DTD PAP 2.1//EN" in data
    assert pap.parse(data) == document


def test_sip_address_is_escaped_user_type() -> None:
    assert SIP.value == "WAPPUSH=sip%3Adevice1%40scws.test/TYPE=USER@ppg.scws.test"
    assert Address.parse(SIP.value) == SIP
    assert Address.parse("sip:device1@scws.test") == Address.sip("sip:device1@scws.test")
    assert Address.parse("wappush=+15551234567/type=plmn").type is AddressType.PLMN


@pytest.mark.parametrize(
    "value",
    [
        "WAPPUSH=/TYPE=PLMN",
        "WAPPUSH=abc/TYPE=PLMN@ppg",
        "WAPPUSH=x/TYPE=NOPE",
        "WAPPUSH=notauri/TYPE=USER",
        "WAPPUSH=sip%Adevice1%40scws.test/TYPE=USER@ppg",  # %AD is not UTF-8
        "mailto:someone@example.com",
        "",
    ],
)
def test_malformed_address_is_2002(value: str) -> None:
    with pytest.raises(PapError) as info:
        Address.parse(value)
    assert info.value.code == PapCode.ADDRESS_ERROR


def test_kannel_style_response_with_pap_10_doctype() -> None:
    # Kannel answers with the PAP 1.0 DOCTYPE and a space before '='.
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 1.0//EN" '
        b'"http://www.wapforum.org/DTD/pap_1.0.dtd">\n<pap>\n<push-response push-id="x1">\n'
        b'<response-result code ="1001" desc="The request has been accepted for processing">'
        b"</response-result>\n</push-response>\n</pap>\n"
    )
    doc = pap.parse(data)
    assert isinstance(doc, PushResponse)
    assert (doc.push_id, doc.code) == ("x1", 1001)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE pap [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<pap><push-message push-id="&lol2;"><address address-value="sip:a@b"/></push-message></pap>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE pap [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<pap><push-message push-id="&xxe;"><address address-value="sip:a@b"/></push-message></pap>"""

PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE pap [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>
<pap><cancel-message push-id="a"/></pap>"""

UNDECLARED = b"""<pap><cancel-message push-id="&nope;"/></pap>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL, PARAMETER, UNDECLARED])
def test_unsafe_xml_is_2000(data: bytes) -> None:
    with pytest.raises(PapError) as info:
        pap.parse(data)
    assert info.value.code == PapCode.BAD_REQUEST


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<pap/>", 2000),
        (b"<notpap><cancel-message push-id='a'/></notpap>", 2000),
        (b"<pap><ccq-message query-id='q'/></pap>", 3001),
        (b"<pap><push-message push-id='a'/></pap>", 2000),
        (b"<pap><push-message><address address-value='sip:a@b'/></push-message></pap>", 2000),
        (
            b"<pap><push-response push-id='a'><response-result code='x'/></push-response></pap>",
            2000,
        ),
        (b"<pap><cancel-message push-id='a'/><cancel-message push-id='b'/></pap>", 2000),
        (b"<pap><statusquery-response push-id='a'/></pap>", 2000),
        (
            b"<pap><push-message push-id='a' deliver-before-timestamp='tomorrow'>"
            b"<address address-value='sip:a@b'/></push-message></pap>",
            2000,
        ),
        (b"<pap><a><b><c><d/></c></b></a></pap>", 2000),
        (b"x" * (pap.MAX_DOCUMENT + 1), 2000),
    ],
)
def test_bad_documents(data: bytes, code: int) -> None:
    with pytest.raises(PapError) as info:
        pap.parse(data)
    assert info.value.code == code


def test_code_names() -> None:
    assert pap.code_name(2003) == "2003 Address Not Found"
    assert pap.code_name(2501) == "2501 Client Error"
    assert pap.is_success(1001)
    assert not pap.is_success(4000)


def test_submission_round_trip() -> None:
    message = DOCUMENTS[0]
    assert isinstance(message, PushMessage)
    content = ContentEntity("application/octet-stream", b"\x00\r\n--b\x01", "36965")
    header, body = build_submission(message, content, "b0undary-1")
    assert header.startswith("multipart/related")
    assert b"X-Wap-Application-Id: 36965\r\n" in body
    parsed = parse_submission(header, body)
    assert parsed.message == message
    assert parsed.content == content


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("application/xml", b"<pap/>"),
        ("multipart/related", b""),
        ('multipart/related; boundary="b"', b"--b\r\nContent-Type: application/xml\r\n\r\nx"),
        (
            'multipart/related; boundary="b"',
            b"--b\r\nContent-Type: text/plain\r\n\r\nx"
            b"\r\n--b\r\nContent-Type: a/b\r\n\r\ny\r\n--b--",
        ),
        (
            'multipart/related; boundary="b"',
            b"--b\r\nContent-Type: application/xml\r\n\r\n<pap><cancel-message push-id='a'/></pap>"
            b"\r\n--b\r\nContent-Type: a/b\r\n\r\ny\r\n--b--",
        ),
    ],
)
def test_bad_submissions(header: str, body: bytes) -> None:
    with pytest.raises(PapError) as info:
        parse_submission(header, body)
    assert info.value.code == PapCode.BAD_REQUEST


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        "http://127.0.0.1:8080/pap-notify?x=1",
        "a&b",
        "<tag>",
        'say "hi"',
        "it's",
        "both ' and \"",
        "line\nbreak\rand\ttab",
        "é ü ✓",
    ],
)
def test_attribute_quoting_is_quoteattr(value: str) -> None:
    assert pap._quoteattr(value) == quoteattr(value)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 12, 7, 17, 5, 9, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 3, 4, 5, 6, 7, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_format_time_is_the_declared_form(when: datetime) -> None:
    assert pap.format_time(when) == when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
