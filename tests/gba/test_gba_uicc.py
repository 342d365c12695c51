"""The terminal's APDUs towards the USIM and the Ua helpers, sans-IO: every answer of
AUTHENTICATE read into its case (RES, AUTS, MAC failure, no such context, refusal), EF_IMSI and
the IMPI of TS 23.003 §13.3, EF_GBABP's update, and the GBA realms on Ua."""

from __future__ import annotations

import pytest

from openscws.gba.digest import Challenge
from openscws.gba.ua import (
    naf_host_of_realm,
    ua_challenge,
    ua_credentials,
    ua_password,
    ua_realm,
    ua_verify,
)
from openscws.gba.uicc import (
    AkaAuts,
    AkaMacFailure,
    AkaNotSupported,
    AkaOk,
    CardRefused,
    authenticate_3g,
    decode_imsi,
    gba_bootstrap,
    gba_naf,
    impi_of_imsi,
    parse_aka,
    parse_naf,
    update_gbabp,
)
from openscws.uicc.usim import encode_imsi

RAND, AUTN = bytes(range(16)), bytes(range(16, 32))


def test_apdus() -> None:
    assert authenticate_3g(RAND, AUTN).hex().startswith("0088008122" + "10" + RAND.hex())
    assert gba_bootstrap(RAND, AUTN)[:6].hex() == "0088008423dd"
    assert gba_bootstrap(RAND, AUTN)[-1] == 0
    naf = gba_naf(b"naf.x" + bytes.fromhex("0100000002"), "u@x")
    assert naf.hex() == "0088008410" + "de0a6e61662e780100000002" + "03754078" + "00"
    with pytest.raises(ValueError, match="16 bytes"):
        gba_bootstrap(RAND[:15], AUTN)
    with pytest.raises(ValueError, match="255"):
        gba_naf(bytes(200), "x" * 100)
    upd = update_gbabp(16, "b@bsf", "2026-12-07T11:00:00Z")
    assert upd[:5].hex() == "00d600111b"
    assert upd[5:].startswith(b"\x05b@bsf\x14")


@pytest.mark.parametrize(
    ("response", "context", "want"),
    [
        ("db08" + "11" * 8 + "9000", "GBA", AkaOk(bytes([0x11]) * 8)),
        (
            "db08" + "11" * 8 + "10" + "22" * 16 + "10" + "33" * 16 + "08" + "44" * 8 + "9000",
            "3G",
            AkaOk(bytes([0x11]) * 8, bytes([0x22]) * 16, bytes([0x33]) * 16),
        ),
        ("dc0e" + "55" * 14 + "9000", "GBA", AkaAuts(bytes([0x55]) * 14)),
        ("9862", "GBA", AkaMacFailure()),
        ("9864", "GBA", AkaNotSupported(0x9864)),
        ("6a81", "3G", AkaNotSupported(0x6A81)),
    ],
)
def test_parse_aka(response: str, context: str, want: object) -> None:
    got = parse_aka(bytes.fromhex(response), context=context)
    assert got == want
    if isinstance(got, AkaOk) and isinstance(want, AkaOk):
        assert (got.ck, got.ik) == (want.ck, want.ik)


@pytest.mark.parametrize(
    ("response", "context", "message"),
    [
        ("6985", "GBA", "6985"),
        ("dc05" + "55" * 5 + "9000", "GBA", "malformed AUTS"),
        ("db08" + "11" * 4 + "9000", "GBA", "truncated"),
        ("aa00" + "9000", "GBA", "unknown answer tag AA"),
        ("db08" + "11" * 8 + "9000", "3G", "no RES, CK, IK"),
        ("90", "GBA", "6F00"),
    ],
)
def test_parse_aka_refusals(response: str, context: str, message: str) -> None:
    with pytest.raises(CardRefused, match=message):
        parse_aka(bytes.fromhex(response), context=context)


def test_parse_naf() -> None:
    key = bytes(range(32))
    assert parse_naf(b"\xdb\x20" + key + b"\x90\x00") == key
    with pytest.raises(CardRefused, match="6985"):
        parse_naf(bytes.fromhex("6985"))


def test_imsi_and_impi() -> None:
    assert decode_imsi(encode_imsi("001010123456789")) == "001010123456789"
    assert decode_imsi(encode_imsi("26201123456789")) == "26201123456789"
    with pytest.raises(CardRefused, match="empty"):
        decode_imsi(b"\xff" * 9)
    assert impi_of_imsi("001010123456789") == "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
    assert impi_of_imsi("310150123456789", 3) == (
        "310150123456789@ims.mnc150.mcc310.3gppnetwork.org"
    )


def test_ua_realm_and_round_trip() -> None:
    assert ua_realm("naf.example.net") == "3GPP-bootstrapping@naf.example.net"
    assert naf_host_of_realm("3GPP-bootstrapping@naf.example.net") == "naf.example.net"
    assert naf_host_of_realm("3GPP-bootstrapping-uicc@naf.example.net") == "naf.example.net"
    assert naf_host_of_realm("3GPP-bootstrapping@") is None
    assert naf_host_of_realm("operator") is None
    assert ua_password(bytes(32)) == b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ch = ua_challenge("naf.example.net")
    assert Challenge.parse(ch.format()) == ch
    key = bytes(range(32))
    creds = ua_credentials(ch, btid="b@bsf", naf_key=key, method="POST", uri="/x", body=b"hi")
    assert creds.username == "b@bsf"
    assert ua_verify(creds, naf_key=key, method="POST", body=b"hi")
    assert not ua_verify(creds, naf_key=bytes(32), method="POST", body=b"hi")
    assert not ua_verify(creds, naf_key=key, method="POST", body=b"ho")
