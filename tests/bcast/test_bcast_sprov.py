"""BCAST service provisioning messages: each of the five requests and its response round-trips
through the XML codec; bad bodies (external entities, billion laughs, unknown roots, missing
fields, too many items) give `SprovError` with the Mal-formed Message status, also under
fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.bcast.sprov import (
    MAX_BODY,
    MAX_ITEMS,
    MESSAGES,
    ItemStatus,
    KeyId,
    MessageKind,
    Request,
    Response,
    SprovError,
    StatusCode,
    parse_request,
    parse_response,
)

KEY = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))

REQUESTS = [
    Request(MessageKind.SERVICE, "r1", ("urn:oma:bcast:pi:1", "urn:oma:bcast:pi:2")),
    Request(MessageKind.RENEWAL, "r2", ("urn:oma:bcast:pi:1",)),
    Request(MessageKind.UNSUBSCRIBE, "r3", ("urn:oma:bcast:pi:1",)),
    Request(MessageKind.TOKEN_PURCHASE, "r4", ("urn:oma:bcast:pi:9",), tokens=5),
    Request(MessageKind.LTKM, "r5", keys=(KEY,)),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.kind.value)
def test_request_roundtrip(request_: Request) -> None:
    body = request_.to_xml()
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<' + MESSAGES[request_.kind][0].encode()
    )
    assert parse_request(body) == request_


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
@pytest.mark.parametrize(
    "status", [StatusCode.SUCCESS, StatusCode.PURCHASE_ITEM_UNKNOWN, StatusCode.SERVER_ERROR]
)
def test_response_roundtrip(kind: MessageKind, status: StatusCode) -> None:
    items = (
        (ItemStatus(status, key=KEY),)
        if kind is MessageKind.LTKM
        else (
            ItemStatus(status, ref="urn:oma:bcast:pi:1"),
            ItemStatus(StatusCode.SUCCESS, ref="x&<y>"),
        )
    )
    tokens = 5 if kind is MessageKind.TOKEN_PURCHASE else None
    response = Response(kind, "r&1", status, items, tokens)
    assert parse_response(response.to_xml()) == response


def test_literal_request_and_namespaces_ignored() -> None:
    body = (
        b'<ServiceRequest xmlns="urn:example" requestID="42">'
        b'<PurchaseItem globalIDRef="urn:pi:1"><Extra/></PurchaseItem><Unknown a="1"/>'
        b"</ServiceRequest>"
    )
    assert parse_request(body) == Request(MessageKind.SERVICE, "42", ("urn:pi:1",))


BAD_REQUESTS = [
    b"",
    b"<ServiceRequest",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<ServiceRequest requestID="1"><PurchaseItem globalIDRef="&x;"/></ServiceRequest>',
    b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><ServiceRequest requestID="&c;"/>',
    b'<ServiceRequest requestID="1"><PurchaseItem globalIDRef="&undefined;"/></ServiceRequest>',
    b'<?evil?><ServiceRequest requestID="1"><PurchaseItem globalIDRef="a"/></ServiceRequest>',
    b'<Other requestID="1"/>',
    b'<ServiceRequest><PurchaseItem globalIDRef="a"/></ServiceRequest>',
    b'<ServiceRequest requestID="1"/>',
    b'<ServiceRequest requestID="1"><PurchaseItem/></ServiceRequest>',
    b'<ServiceRequest requestID="1"><PurchaseItem globalIDRef="a"/>'
    b'<PurchaseItem globalIDRef="a"/></ServiceRequest>',
    b'<ServiceRequest requestID="1">'
    b'<KeyID keyDomainID="00f110" SEKPEKID="00010002"/></ServiceRequest>',
    b'<TokenPurchaseRequest requestID="1"><PurchaseItem globalIDRef="a"/></TokenPurchaseRequest>',
    b'<TokenPurchaseRequest requestID="1" numberOfTokens="0">'
    b'<PurchaseItem globalIDRef="a"/></TokenPurchaseRequest>',
    b'<TokenPurchaseRequest requestID="1" numberOfTokens="-3">'
    b'<PurchaseItem globalIDRef="a"/></TokenPurchaseRequest>',
    b'<LTKMRequest requestID="1"/>',
    b'<LTKMRequest requestID="1"><KeyID keyDomainID="00f1" SEKPEKID="00010002"/></LTKMRequest>',
    b'<LTKMRequest requestID="1"><KeyID keyDomainID="00f110" SEKPEKID="zz010002"/></LTKMRequest>',
    b'<p:ServiceRequest requestID="1"/>',
    b'<ServiceRequest requestID="1"><a><b><c><d/></c></b></a></ServiceRequest>',
    b'<ServiceRequest requestID="'
    + b"x" * 300
    + b'"><PurchaseItem globalIDRef="a"/></ServiceRequest>',
    b'<ServiceRequest requestID="1">'
    + b"".join(b'<PurchaseItem globalIDRef="%d"/>' % i for i in range(MAX_ITEMS + 1))
    + b"</ServiceRequest>",
    b'<ServiceRequest requestID="1">' + b" " * MAX_BODY + b"</ServiceRequest>",
]


@pytest.mark.parametrize("body", BAD_REQUESTS)
def test_bad_requests(body: bytes) -> None:
    with pytest.raises(SprovError) as err:
        parse_request(body)
    assert err.value.status is StatusCode.MALFORMED_MESSAGE


@pytest.mark.parametrize(
    "body",
    [
        b'<ServiceResponse requestID="1"/>',
        b'<ServiceResponse requestID="1" globalStatusCode="99"/>',
        b'<ServiceResponse requestID="1" globalStatusCode="0">'
        b'<PurchaseItem globalIDRef="a"/></ServiceResponse>',
        b'<ServiceRequest requestID="1" globalStatusCode="0"/>',
    ],
)
def test_bad_responses(body: bytes) -> None:
    with pytest.raises(SprovError):
        parse_response(body)


def test_key_id_sizes_checked() -> None:
    with pytest.raises(SprovError):
        KeyId(b"\x00", b"\x00" * 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_parsers_raise_only_sprov_errors(body: bytes) -> None:
    for parse in (parse_request, parse_response):
        try:
            parse(body)
        except SprovError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(REQUESTS),
    st.integers(0, 10_000),
    st.sampled_from([b"<", b">", b"&", b'"', b"\x00", b"\xff", b"<!DOCTYPE x>"]),
)
def test_fuzz_mutated_requests(request_: Request, where: int, junk: bytes) -> None:
    body = request_.to_xml()
    pos = where % (len(body) + 1)
    try:
        parse_request(body[:pos] + junk + body[pos:])
    except SprovError:
        pass
