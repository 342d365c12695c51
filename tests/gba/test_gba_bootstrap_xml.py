"""The BootstrappingInfo body of TS 24.109 Annex C: round trip, unknown content ignored, and
only BootstrapXmlError for anything else (DTDs and entities refused)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.gba.bootstrap_xml import BootstrappingInfo, BootstrapXmlError

WHEN = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def test_round_trip() -> None:
    info = BootstrappingInfo("AAECAwQFBgcICQoLDA0ODw==@bsf.example.net", WHEN)
    xml = info.to_xml()
    assert b'<BootstrappingInfo xmlns="uri:3gpp-gba">' in xml
    assert b"<lifetime>2026-12-07T12:00:00Z</lifetime>" in xml
    assert BootstrappingInfo.parse(xml) == info


def test_extension_and_unknown_things_are_ignored() -> None:
    xml = (
        b'<?xml version="1.0"?><gba:BootstrappingInfo xmlns:gba="uri:3gpp-gba" x="1">'
        b"<gba:btid>b@bsf</gba:btid><gba:lifetime>2026-12-07T12:00:00.5Z</gba:lifetime>"
        b"<gba:Extension><currenttime>2026-12-07T11:00:00Z</currenttime></gba:Extension>"
        b"<other/></gba:BootstrappingInfo>"
    )
    assert BootstrappingInfo.parse(xml) == BootstrappingInfo("b@bsf", WHEN)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<BootstrappingInfo><btid>b</btid></BootstrappingInfo>", "root is"),
        (b'<BootstrappingInfo xmlns="uri:3gpp-gba"><btid>b</btid></BootstrappingInfo>', "lifetime"),
        (
            b'<BootstrappingInfo xmlns="uri:3gpp-gba"><lifetime>2026-12-07T12:00:00Z</lifetime>'
            b"</BootstrappingInfo>",
            "btid",
        ),
        (
            b'<BootstrappingInfo xmlns="uri:3gpp-gba"><btid>b</btid>'
            b"<lifetime>2026-12-07T12:00:00+01:00</lifetime></BootstrappingInfo>",
            "ending in Z",
        ),
        (
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><BootstrappingInfo xmlns="uri:3gpp-gba">'
            b"<btid>&a;</btid></BootstrappingInfo>",
            "DTD",
        ),
        (b"<BootstrappingInfo", "well-formed"),
        (b"x" * 20000, "over"),
    ],
)
def test_refused(xml: bytes, message: str) -> None:
    with pytest.raises(BootstrapXmlError, match=message):
        BootstrappingInfo.parse(xml)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_only_typed_errors(data: bytes) -> None:
    try:
        BootstrappingInfo.parse(data)
    except BootstrapXmlError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1))
def test_fuzz_btid_round_trip(btid: str) -> None:
    info = BootstrappingInfo(btid.strip() or "x", WHEN)
    assert BootstrappingInfo.parse(info.to_xml()) == info
