"""Every push-path parser gives its typed error on garbage, never another exception: PAP XML,
PAP addresses, the multipart submission, SIP datagrams and streams, the push client's checks,
SCWS-6 bodies. Mutations of valid inputs reach deeper than random bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.errors import HttpError
from openscws.ota import KeyRef
from openscws.push import pap
from openscws.push.content import SCWS_APP_ID, PushRefused, build_push, check_push
from openscws.push.gateway import check_scws6
from openscws.push.pap import Address, PapError
from openscws.push.sip import SipError, SipRequest, StreamFramer, parse_message
from openscws.push.submission import ContentEntity, build_submission, parse_submission
from openscws.ras.trigger import CardOtaKeys, build_trigger

SERVES = frozenset({SCWS_APP_ID})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = CardOtaKeys(
    tar=b"\xb2\x01\x00", kic=KeyRef(1, 2), kid=KeyRef(1, 2), kic_key=bytes(16), kid_key=bytes(16)
)
PACKET = build_trigger(
    KEYS, 1, admin_host="127.0.0.1", admin_port=1, admin_uri="/a", agent_id=None, psk_identity="p"
)
SIP_ADDRESS = Address.sip("sip:device1@scws.test", "ppg")
PUSH = pap.PushMessage(push_id="p1", addresses=(SIP_ADDRESS,), notify_to="http://127.0.0.1/n")
VALID_PAP = [
    pap.encode(d)
    for d in (
        PUSH,
        pap.PushResponse(push_id="p1", code=1001),
        pap.ResultNotificationMessage(
            push_id="p1", address=SIP_ADDRESS, state=pap.MessageState.DELIVERED, code=1000
        ),
        pap.StatusQueryResponse(
            push_id="p1",
            results=(pap.StatusQueryResult(state=pap.MessageState.PENDING, code=1001),),
        ),
        pap.CancelMessage(push_id="p1", addresses=(SIP_ADDRESS,)),
    )
]
SUB_HEADER, SUB_BODY = build_submission(
    PUSH, ContentEntity("application/octet-stream", PACKET, SCWS_APP_ID), "bnd"
)
VALID_SIP = [
    build_push(
        target="sip:device1@scws.test",
        ppg="sip:ppg@scws.test",
        packet=PACKET,
        via_host="127.0.0.1",
        via_port=5060,
        transport="UDP",
        branch="z9hG4bK1",
        from_tag="t",
        call_id="c",
    ).encode(),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/TCP [::1]:5\r\n"
    b"f: <sip:a@b>;tag=1\r\nt: sip:c@d;tag=2\r\ni: x\r\nCSeq: 1 MESSAGE\r\nl: 0\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        op = draw(st.integers(0, 2))
        at = draw(st.integers(0, len(data) - 1))
        if op == 0:
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            del data[at : at + draw(st.integers(1, 20))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated(VALID_PAP)))
def test_pap_parse(data: bytes) -> None:
    try:
        doc = pap.parse(data)
    except PapError as e:
        code = e.code
    else:
        assert pap.parse(pap.encode(doc)) == doc
        code = 1000
    assert 1000 <= code < 4000


@FUZZ
@given(st.text(max_size=80))
def test_address_parse(text: str) -> None:
    try:
        address = Address.parse(text)
    except PapError as e:
        code = e.code
    else:
        assert Address.parse(address.value) == address
        code = pap.PapCode.ADDRESS_ERROR
    assert code == pap.PapCode.ADDRESS_ERROR


@FUZZ
@given(mutated([SUB_BODY]), st.sampled_from([SUB_HEADER, "multipart/related; boundary=bnd"]))
def test_submission_parse(body: bytes, header: str) -> None:
    code = 1000
    try:
        parse_submission(header, body)
    except PapError as e:
        code = e.code
    assert 1000 <= code < 4000


@FUZZ
@given(st.one_of(st.binary(max_size=400), mutated(VALID_SIP)))
def test_sip_parse(data: bytes) -> None:
    status = 200
    try:
        msg = parse_message(data)
    except SipError as e:
        status = e.status
    else:
        assert parse_message(msg.encode()) == msg
        if isinstance(msg, SipRequest):
            try:
                check_push(msg, trusted=frozenset({"sip:ppg@scws.test"}), serves=SERVES)
            except PushRefused as refused:
                status = refused.status
    assert status in (200, 400, 403, 405, 415, 488, 513)


@FUZZ
@given(mutated(VALID_SIP), st.integers(1, 50))
def test_sip_stream(data: bytes, chunk: int) -> None:
    framer = StreamFramer()
    status = 200
    try:
        for i in range(0, len(data), chunk):
            framer.feed(data[i : i + chunk])
    except SipError as e:
        status = e.status
    assert status in (200, 400, 513)


@FUZZ
@given(
    st.one_of(st.binary(max_size=200), mutated([PACKET])),
    st.sampled_from(["application/octet-stream", "text/plain", None]),
    st.sampled_from([SCWS_APP_ID, "36965", "x-wap-application:mms.ua", "junk", None]),
)
def test_scws6(body: bytes, content_type: str | None, app_id: str | None) -> None:
    status = 204
    try:
        packet = check_scws6(loopback=True, content_type=content_type, app_id=app_id, body=body)
    except HttpError as e:
        status = e.status
    else:
        assert packet == body
    assert status in (204, 400, 415)


def test_scws6_refuses_remote_callers() -> None:
    status = 204
    try:
        check_scws6(
            loopback=False, content_type="application/octet-stream", app_id=None, body=PACKET
        )
    except HttpError as e:
        status = e.status
    assert status == 403
