"""GP Amendment B administration session triggering parameters (Table 3-3, §3.8, §3.11)."""

from __future__ import annotations

import pytest

from openscws.cat.objects import (
    AddressType,
    BearerDescription,
    BearerType,
    BufferSize,
    OtherAddress,
    TextString,
    TransportLevel,
    TransportProtocol,
)
from openscws.codec.tlv import ComprehensionTlv
from openscws.errors import DecodeError
from openscws.ota.trigger import (
    BerTlv,
    ConnectionParameters,
    DnsResolutionParameters,
    HttpPostParameters,
    RetryPolicy,
    SecurityParameters,
    SessionParameters,
    TriggerParameters,
)

h = bytes.fromhex

# A worked example of the GP Amendment B §3.8 trigger (our own values), 74 bytes
DIGEST_EXAMPLE = h(
    "8148"
    "8346"
    "8413" "350103" "390205DC" "3C030201BB" "3E0521C0000201"
    "850A" "06" + b"scws01".hex() + "024001"
    "8923" "8A0B" + b"ras.example".hex() + "8B07" + b"agent01".hex()
    + "8C0B" + b"/scws/admin".hex()
)  # fmt: skip

DIGEST_OBJECT = TriggerParameters(
    session=SessionParameters(
        connection=ConnectionParameters(
            bearer=BearerDescription(BearerType.DEFAULT),
            buffer_size=BufferSize(1500),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 443),
            destination=OtherAddress(AddressType.IPV4, h("C0000201")),
        ),
        security=SecurityParameters(psk_identity=b"scws01", key_version=0x40, key_id=0x01),
        http_post=HttpPostParameters(host="ras.example", agent_id="agent01", uri="/scws/admin"),
    )
)


def test_digest_example() -> None:
    assert len(DIGEST_EXAMPLE) == 74
    decoded = TriggerParameters.decode(DIGEST_EXAMPLE)
    assert decoded == DIGEST_OBJECT
    assert decoded.encode() == DIGEST_EXAMPLE
    assert DIGEST_OBJECT.encode() == DIGEST_EXAMPLE


def test_tcp_client_builder_matches_the_example() -> None:
    built = ConnectionParameters.tcp_client(h("C0000201"), 443)
    assert built == DIGEST_OBJECT.session.connection


def test_pysim_security_parameters_vector() -> None:
    # pySim pySim/global_platform/http.py SecurityParams._test_de_encode
    raw = h("850804deadbeef020040")
    value = raw[2:]
    params = SecurityParameters.from_value(value)
    assert params == SecurityParameters(psk_identity=h("deadbeef"), key_version=0, key_id=0x40)
    assert params.value() == value
    with_hash = SecurityParameters(psk_identity=b"id", key_version=1, key_id=2, hash_type=3)
    assert SecurityParameters.from_value(with_hash.value()) == with_hash


@pytest.mark.parametrize(
    ("tlv", "field", "text"),
    [
        # pySim AdminHostParam._test_de_encode
        ("8a0a61646d696e2e686f7374", "host", "admin.host"),
        # pySim AdminUriParam._test_de_encode
        ("8c1668747470733a2f2f61646d696e2e686f73742f757269", "uri", "https://admin.host/uri"),
    ],
)
def test_pysim_http_post_vectors(tlv: str, field: str, text: str) -> None:
    params = HttpPostParameters.from_value(h(tlv))
    assert getattr(params, field) == text
    assert params.value() == h(tlv)


@pytest.mark.parametrize(
    "value",
    [
        h(""),
        h("05616263"),  # identity runs past the end
        h("0161030102"),  # key reference length 3
        h("01610201020304"),  # two bytes after the key references
    ],
)
def test_bad_security_parameters(value: bytes) -> None:
    with pytest.raises(DecodeError):
        SecurityParameters.from_value(value)


def test_retry_policy() -> None:
    policy = RetryPolicy.with_delay(3, 3600 + 2 * 60 + 45)
    assert policy.waiting_delay == h("2503102054")  # 01:02:45, semi-octets swapped
    assert policy.delay_seconds == 3765
    assert RetryPolicy.from_value(policy.value()) == policy
    opaque = RetryPolicy.from_value(h("00020102030405AA"))
    assert opaque.counter == 2
    assert opaque.delay_seconds is None
    assert opaque.report_failure == h("AA")
    assert opaque.value() == h("000201020304 05AA")
    with pytest.raises(DecodeError):
        RetryPolicy.from_value(h("0001020304"))
    with pytest.raises(ValueError, match="5 bytes"):
        RetryPolicy(counter=1, waiting_delay=b"")


def test_full_tree_round_trip() -> None:
    trigger = TriggerParameters(
        session=SessionParameters(
            connection=ConnectionParameters(
                bearer=BearerDescription(BearerType.GPRS, h("0303")),
                buffer_size=BufferSize(1400),
                login=TextString(0x04, b"user"),
                password=TextString(0x04, b"pass"),
                transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 8443),
                destination=OtherAddress(AddressType.IPV6, bytes(range(16))),
                cr=frozenset({0x35, 0x3C}),
            ),
            security=SecurityParameters(psk_identity=b"card-7", key_version=0x41, key_id=5),
            extended_security=h("0102"),
            retry=RetryPolicy.with_delay(5, 30),
            http_post=HttpPostParameters(uri="/admin?cmd=1"),
        ),
        dns=DnsResolutionParameters(
            ras_fqdn=b"\x03ras\x07example",
            connection=ConnectionParameters.tcp_client(h("0A000001"), 53),
        ),
    )
    raw = trigger.encode()
    assert TriggerParameters.decode(raw) == trigger
    assert TriggerParameters.decode(raw).encode() == raw
    # CR set where asked, clear elsewhere
    connection = trigger.session.connection
    assert connection is not None
    assert connection.value()[0] == 0xB5
    assert h("B902") not in connection.value()
    assert h("3902") in connection.value()


def test_unknown_tags_survive() -> None:
    raw = h("810A83049F2A0177C0020102")
    trigger = TriggerParameters.decode(raw)
    assert trigger.session.extra == (BerTlv(0x9F2A, h("77")),)
    assert trigger.extra == (BerTlv(0xC0, h("0102")),)
    assert trigger.encode() == raw
    connection = ConnectionParameters.from_value(h("3501037E0100"))
    assert connection.extra == (ComprehensionTlv(0x7E, h("00")),)
    assert connection.value() == h("3501037E0100")


@pytest.mark.parametrize(
    "raw",
    [
        h("8100"),  # no session parameters
        h("83028400"),  # not an 81
        h("810483008300"),  # session parameters twice
        h("810483028400") + b"\x00",  # trailing byte
        h("8107830589038A01FF"),  # host not UTF-8
        h("8103830184"),  # length missing
        h("810483029F"),  # tag truncated
    ],
)
def test_bad_triggers(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        TriggerParameters.decode(raw)


def test_a_tag_out_of_place_is_kept_not_refused() -> None:
    raw = h("810583038A01FF")  # 8A directly in 83 instead of inside 89
    trigger = TriggerParameters.decode(raw)
    assert trigger.session.extra == (BerTlv(0x8A, h("FF")),)
    assert trigger.encode() == raw
