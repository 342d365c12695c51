"""The access rules' SEAC coding (GPD_SPE_013 Tables 4-2, 4-4, 6-3..6-9) and the SCWS-AR-DO."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.acp.document import DocumentError, from_document, parse_identity, to_document
from openscws.acp.rules import (
    DOS,
    AccessRule,
    AcpDecodeError,
    RuleSet,
    decode_refresh_tag,
    decode_rules,
    encode_refresh_tag,
    encode_rules,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CURL = hashlib.sha256(b"curl").digest()


def test_one_rule_bytes() -> None:
    rule = AccessRule(app_hash=CURL, ports=frozenset({3516}), paths=("/app/",))
    raw = encode_rules(RuleSet((rule,)))
    ref = bytes.fromhex("C000") + bytes.fromhex("C120") + CURL
    scws = bytes.fromhex("800101 81020DBC 8205") + b"/app/"
    ar = bytes.fromhex("D00100") + bytes.fromhex("FF53") + bytes((len(scws),)) + scws
    body = bytes((0xE1, len(ref))) + ref + bytes((0xE3, len(ar))) + ar
    expected = bytes.fromhex("FF40") + bytes((len(body) + 2, 0xE2, len(body))) + body
    assert raw == expected
    assert decode_rules(raw).rules == (
        AccessRule(
            app_hash=CURL,
            ports=frozenset({3516}),
            paths=("/app/",),
            other=((0xD0, b"\x00"),),
        ),
    )


def test_a_plain_seac_rule_is_read_and_ignored_by_the_scws() -> None:
    # An Android carrier-privilege rule: AID-REF-DO empty, a SHA-1, APDU always, PERM.
    ref = bytes.fromhex("4F00 C114") + bytes(20)
    ar = bytes.fromhex("D00101 DB080000000000000001")
    body = bytes((0xE1, len(ref))) + ref + bytes((0xE3, len(ar))) + ar
    raw = bytes.fromhex("FF40") + bytes((len(body) + 2, 0xE2, len(body))) + body
    rules = decode_rules(raw)
    assert len(rules.rules) == 1
    assert rules.scws_rules == ()
    assert encode_rules(rules) == raw


def test_large_rule_sets_use_long_lengths() -> None:
    rules = RuleSet(tuple(AccessRule(uid=n, paths=(f"/p{n}/",)) for n in range(50)))
    raw = encode_rules(rules)
    assert raw[2] == 0x82
    assert len(raw) > 256
    assert decode_rules(raw) == RuleSet(
        tuple(AccessRule(uid=n, paths=(f"/p{n}/",), other=((0xD0, b"\x00"),)) for n in range(50))
    )


def test_refresh_tag() -> None:
    assert decode_refresh_tag(encode_refresh_tag(b"12345678")) == b"12345678"
    with pytest.raises(AcpDecodeError):
        decode_refresh_tag(bytes.fromhex("DF200401020304"))


@pytest.mark.parametrize(
    ("hex_", "why"),
    [
        ("", "no Response-ALL"),
        ("FF4003E20100", "REF-AR-DO"),
        ("FF4002E200", "REF-DO"),
        ("FF40", "length missing"),
        ("FF4083000000", "length form"),
        ("FF4005E203E10100", "runs past"),
        ("FF40 0C E2 0A E1 04 C000 C100 E3 02 D000", "APDU-AR-DO"),
        ("FF40 0C E2 0A E1 04 C000 C103 E3 02 D0 00", "DeviceAppID-REF-DO"),
        ("FF40 0A E2 08 E1 02 C100 E3 02 D0 01 00", "AID-REF-DO"),
    ],
)
def test_malformed_rules_are_typed_errors(hex_: str, why: str) -> None:
    with pytest.raises(AcpDecodeError):
        decode_rules(bytes.fromhex(hex_.replace(" ", "")))


def test_every_do_names_its_clause() -> None:
    assert all(spec.clause for spec in DOS.values())
    assert "extension" in DOS[0xFF53].clause


def test_document_round_trip_and_earlier_form() -> None:
    doc = {
        "rules": [
            {"app": f"sha256:{CURL.hex()}", "ports": [3516], "paths": ["/app/"]},
            {"app": "uid:1000", "access": "deny"},
            {"app": "any", "ports": [4116]},
        ]
    }
    rules = from_document(doc)
    assert from_document(to_document(rules)) == rules
    assert decode_rules(encode_rules(rules)).scws_rules == tuple(
        AccessRule(r.app_hash, r.uid, r.ports, r.paths, r.allow, other=((0xD0, b"\x00"),))
        for r in rules.rules
    )
    old = from_document([{"app": CURL.hex().upper(), "allow": ["/a/"]}, {"app": "*", "allow": []}])
    assert old.rules[0].app_hash == CURL
    assert old.rules[0].paths == ("/a/",)
    assert old.rules[1].identity == "any"


@pytest.mark.parametrize(
    "doc",
    [
        {"rules": [{"app": "sha256:00"}]},
        {"rules": [{"app": "md5:00"}]},
        {"rules": [{"app": "any", "ports": []}]},
        {"rules": [{"app": "any", "paths": ["relative"]}]},
        {"rules": [{"app": "any", "access": "maybe"}]},
        {"rules": [{"app": "uid:1", "uid": 2}]},
        {"rules": "x"},
        {"policy": []},
    ],
)
def test_bad_documents(doc: object) -> None:
    with pytest.raises(DocumentError):
        from_document(doc)


def test_identity_notation() -> None:
    assert parse_identity("any") == (b"", None)
    assert parse_identity(f"sha1:{'ab' * 20}+uid:7") == (bytes.fromhex("ab" * 20), 7)
    with pytest.raises(DocumentError):
        parse_identity("any+uid:1")


# -- fuzz --------------------------------------------------------------------------------------

_TAGS = [*DOS, 0x80, 0x81, 0x82, 0x83, 0x00, 0x1F, 0x9F7F]


def _tlv(tag: int, value: bytes) -> bytes:
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    return head + (bytes((n,)) if n < 0x80 else bytes((0x81, n))) + value


_leaf = st.builds(_tlv, st.sampled_from(_TAGS), st.binary(max_size=34))
_tree = st.recursive(
    _leaf,
    lambda inner: st.builds(
        lambda tag, kids: _tlv(tag, b"".join(kids)),
        st.sampled_from(_TAGS),
        st.lists(inner, max_size=4),
    ),
    max_leaves=12,
)


@FUZZ
@given(st.one_of(st.binary(max_size=300), _tree, _tree.map(lambda t: _tlv(0xFF40, t))))
def test_fuzz_decoder_gives_typed_errors_only(data: bytes) -> None:
    try:
        rules = decode_rules(data)
    except AcpDecodeError:
        return
    # What decodes re-encodes to rules that decode the same.
    assert decode_rules(encode_rules(rules)) == rules


@FUZZ
@given(
    st.lists(
        st.builds(
            AccessRule,
            app_hash=st.sampled_from([b"", bytes(20), CURL]),
            uid=st.none() | st.integers(0, 2**32 - 1),
            ports=st.frozensets(st.integers(1, 65535), min_size=1, max_size=8),
            paths=st.lists(st.sampled_from(["/", "/a/", "/é/"]), max_size=3).map(tuple),
            allow=st.booleans(),
        ),
        max_size=6,
    )
)
def test_encode_decode_round_trip(rules: list[AccessRule]) -> None:
    decoded = decode_rules(encode_rules(RuleSet(tuple(rules))))
    assert [(r.app_hash, r.uid, r.ports, r.paths, r.allow) for r in decoded.rules] == [
        (r.app_hash, r.uid, r.ports, r.paths, r.allow) for r in rules
    ]
