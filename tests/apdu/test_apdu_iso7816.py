"""The ISO/IEC 7816-3 T=0 timing model: etu, characters, procedure bytes and the four cases,
and the `--link` parameters."""

from __future__ import annotations

import pytest

from openscws.apdu.iso7816 import LinkTiming, parse_link
from openscws.errors import ConfigError


def test_default_etu_and_rate() -> None:
    t = LinkTiming()
    assert t.etu == pytest.approx(372 / 3.57e6)  # 104.2 us
    assert t.character == pytest.approx(12 * 372 / 3.57e6)
    assert t.bytes_per_second == pytest.approx(3.57e6 / (12 * 372))  # 799.8
    assert t.reversal_extra == pytest.approx(4 * t.etu)
    assert "etu = 104.20 us, 800 bytes/s" in t.describe()


def test_faster_pairs() -> None:
    assert LinkTiming(fi=512, di=8).etu == pytest.approx(512 / (8 * 3.57e6))
    assert LinkTiming(fi=512, di=16).bytes_per_second == pytest.approx(3.57e6 * 16 / (12 * 512))
    # N extra guard time: 12 + N etu a character, and a reversal costs nothing past N = 4.
    t = LinkTiming(n=6)
    assert t.character == pytest.approx(18 * t.etu)
    assert t.reversal_extra == 0


def test_the_four_cases() -> None:
    t = LinkTiming()
    c, r = t.character, t.reversal_extra
    case1 = t.exchange(bytes.fromhex("80F20000"), bytes.fromhex("9000"))
    assert (case1.to_card, case1.from_card, case1.procedure_bytes, case1.reversals) == (5, 2, 0, 1)
    assert case1.seconds == pytest.approx(7 * c + r)
    fetch = t.exchange(bytes.fromhex("801200000F"), bytes(15) + bytes.fromhex("9000"))
    assert (fetch.to_card, fetch.from_card, fetch.procedure_bytes) == (5, 1 + 15 + 2, 1)
    assert fetch.seconds == pytest.approx(23 * c + r)
    response = t.exchange(bytes.fromhex("8014000003") + b"abc", bytes.fromhex("910F"))
    assert (response.to_card, response.from_card, response.procedure_bytes) == (8, 3, 1)
    assert response.reversals == 3
    assert response.seconds == pytest.approx(11 * c + 3 * r)
    # Case 4: 61 xx, then GET RESPONSE (another header, INS, the data, SW).
    case4 = t.exchange(bytes.fromhex("80C2000002AABB00"), bytes(4) + bytes.fromhex("9000"))
    assert (case4.to_card, case4.from_card) == (5 + 2 + 5, 1 + 2 + 1 + 4 + 2)
    assert (case4.procedure_bytes, case4.reversals) == (2, 5)
    turn = LinkTiming(turnaround=0.002).exchange(bytes.fromhex("80F20000"), b"\x90\x00")
    assert turn.seconds == pytest.approx(case1.seconds + 0.002)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("direct", None),
        ("iso7816", LinkTiming()),
        ("iso7816:F=512,D=16", LinkTiming(fi=512, di=16)),
        ("iso7816:ta1=0x96", LinkTiming(fi=512, di=32)),
        ("iso7816:f=4MHz,fi=372,di=2,N=1", LinkTiming(clock=4e6, di=2, n=1)),
        ("iso7816:clock=3570kHz,turnaround=2ms", LinkTiming(turnaround=0.002)),
    ],
)
def test_parse(spec: str, want: LinkTiming | None) -> None:
    assert parse_link(spec) == want


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("serial", "'direct' or 'iso7816"),
        ("iso7816:F=500", "Fi = 500 is not an ISO/IEC 7816-3 value"),
        ("iso7816:D=3", "Di = 3 is not"),
        ("iso7816:f=6MHz", "with Fi = 372 the clock is 1 to 5 MHz"),
        ("iso7816:ta1=0x7F", "codes no Fi/Di"),
        ("iso7816:speed=9600", "unknown key 'speed'"),
        ("iso7816:F", "not key=value"),
        ("iso7816:f=fast", "is not a number"),
        ("direct:F=1", "takes no parameters"),
    ],
)
def test_parse_refuses(spec: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_link(spec)
