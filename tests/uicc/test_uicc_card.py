"""The virtual UICC's APDU dispatcher and the vpcd framing (TS 102 221 §10-11, spec digest
§1 and §6). `transmit` never raises: every refusal is a status word."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.bip.card import BipServerApp, ServerConfig
from openscws.cat.commands import CommandType, MoreTime, SetUpEventList
from openscws.cat.envelopes import SmsPpDownload
from openscws.cat.objects import CommandDetails, Device, DeviceIdentities, Event, SmsTpdu
from openscws.cat.profile import GATEWAY_PROFILE
from openscws.errors import DecodeError
from openscws.uicc.card import DEFAULT_ATR, CardIdentity, VirtualUicc
from openscws.uicc.files import decode_iccid, encode_iccid
from openscws.uicc.toolkit import Toolkit
from openscws.uicc.vpcd import Control, Deframer, frame

ICCID = "89882390000012345678"

# cat-bip-apdu.md §1.6 (WS-SIM, PYCAT): TERMINAL PROFILE with the gateway profile
TERMINAL_PROFILE = bytes.fromhex("8010000011 13016800010C00000000001FE200000005")
# cat-bip-apdu.md §3.7, §4.1 (PYCAT): the SET UP EVENT LIST the card sends first
SET_UP_EVENT_LIST = bytes.fromhex("D00D8103010500820281829902090A")


class _NoHandler:
    def __call__(self, channel: int) -> object:
        raise AssertionError("no client expected")


def make_card(*, bip: bool = True) -> VirtualUicc:
    toolkit = Toolkit()
    if bip:
        toolkit.register(BipServerApp(ServerConfig(), {3516: _NoHandler()}))  # type: ignore[dict-item]
    card = VirtualUicc(CardIdentity(ICCID), toolkit)
    card.power_on()
    return card


def tx(card: VirtualUicc, hexstr: str) -> bytes:
    return card.transmit(bytes.fromhex(hexstr), 0.0)


def test_atr() -> None:
    # cat-bip-apdu.md §1.4 (PYCAT sysmocom_sja2.py): the SJA2 ATR, TCK valid
    atr = bytes.fromhex("3B9F96801F878031E073FE211B674A4C753034054BA9")
    card = make_card()
    assert card.atr == DEFAULT_ATR == atr
    tck = 0
    for b in atr[1:-1]:
        tck ^= b
    assert tck == atr[-1]


def test_select_and_read_iccid() -> None:
    card = make_card()
    # cat-bip-apdu.md §1.5 (PYAPDU): SELECT by FID, no data returned (P2 0C)
    assert tx(card, "00A4000C022FE2") == b"\x90\x00"
    # READ BINARY 10 bytes: swapped-nibble BCD (TS 102 221 §13.2)
    rsp = tx(card, "00B000000A")
    assert rsp == bytes.fromhex("98883209000021436587 9000")
    assert decode_iccid(rsp[:-2]) == ICCID


def test_select_iccid_fcp_and_read_whole_file() -> None:
    card = make_card()
    rsp = tx(card, "00A40004022FE200")
    assert rsp[-2:] == b"\x90\x00"
    assert rsp[0] == 0x62
    assert bytes.fromhex("83022FE2") in rsp
    assert bytes.fromhex("8002000A") in rsp
    assert tx(card, "00B0000000")[:-2] == encode_iccid(ICCID)


def test_iccid_codec() -> None:
    assert encode_iccid("8988239000001234567") == bytes.fromhex("988832090000214365F7")
    assert decode_iccid(bytes.fromhex("988832090000214365F7")) == "8988239000001234567"
    with pytest.raises(ValueError, match="ICCID"):
        encode_iccid("12ab")


def test_ef_dir_record() -> None:
    card = make_card()
    assert tx(card, "00A4000C022F00") == b"\x90\x00"
    rsp = tx(card, "00B2010420")
    assert rsp[-2:] == b"\x90\x00"
    # cat-bip-apdu.md §1.5 (PYAPDU): the USIM AID
    assert bytes.fromhex("A0000000871002") in rsp
    assert tx(card, "00B2020420") == bytes.fromhex("6A88")


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A4000C023F01", "6A82"),  # no such file
        ("00A4040C07A0000000871002", "6A82"),  # no AID selection
        ("00A4080C022FE2", "6A86"),
        ("00B000000A", "6986"),  # MF selected: no EF
        ("00DA000000", "6D00"),  # INS not supported
        ("A0F2000000", "6E00"),  # CLA A0 (2G) refused
        ("8012", "6700"),
        ("80C2000005", "6700"),
        ("80C2000003FFFFFF", "6A80"),  # envelope data malformed
    ],
)
def test_refusals(apdu: str, sw: str) -> None:
    assert tx(make_card(), apdu) == bytes.fromhex(sw)


def test_fetch_with_nothing_pending() -> None:
    card = make_card()
    assert tx(card, "8012000010") == bytes.fromhex("6985")


def test_profile_fetch_and_terminal_response() -> None:
    card = make_card()
    # cat-bip-apdu.md §4.1: TP -> 91 0F
    assert card.transmit(TERMINAL_PROFILE, 0.0) == bytes.fromhex("910F")
    # cat-bip-apdu.md §1.2 (SWSIM): a FETCH with Le too short gets 6C XX
    assert tx(card, "8012000005") == bytes.fromhex("6C0F")
    # the pending command survives; still announced on any successful command
    assert tx(card, "80F2000C00") == bytes.fromhex("910F")
    assert tx(card, "801200000F") == SET_UP_EVENT_LIST + b"\x90\x00"
    # fetched twice: the TR is owed
    assert tx(card, "801200000F") == bytes.fromhex("6985")
    # a TR whose command details do not echo the command
    assert tx(card, "801400000C 810302050082028281830100") == bytes.fromhex("6985")
    assert tx(card, "801400000C 810301050182028281830100") == bytes.fromhex("6985")
    # cat-bip-apdu.md §3.7 (PYCAT): the right TR -> next command, OPEN CHANNEL (§3.1)
    assert tx(card, "801400000C 810301050082028281830100") == bytes.fromhex("9114")
    assert tx(card, "8012000014") == bytes.fromhex("D012810302400082028182B9020578BC03030DBC 9000")
    # a TR with no command fetched
    assert tx(card, "8014000003 830100") == bytes.fromhex("6A80")


def test_terminal_response_without_fetch() -> None:
    card = make_card()
    assert tx(card, "801400000C 810301050082028281830100") == bytes.fromhex("6985")


def test_fetch_t0_and_transparent_forms() -> None:
    card = make_card()
    card.transmit(TERMINAL_PROFILE, 0.0)
    # FETCH with Le 00 (= 256) is long enough
    assert tx(card, "8012000000")[:-2] == SET_UP_EVENT_LIST


def test_terminal_profile_t0_case3_and_event_list_build() -> None:
    assert SetUpEventList.build(1, (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS)).encode() == (
        SET_UP_EVENT_LIST
    )
    card = make_card(bip=False)
    assert card.transmit(TERMINAL_PROFILE, 0.0) == b"\x90\x00"
    assert card.toolkit.profile is not None
    assert card.toolkit.profile.features == GATEWAY_PROFILE.features


def test_reserved_channel_state_in_an_event_is_wrong_data() -> None:
    card = make_card()
    card.transmit(TERMINAL_PROFILE, 0.0)
    assert tx(card, "801200000F")[-2:] == b"\x90\x00"
    assert tx(card, "801400000C 810301050082028281830100") == bytes.fromhex("9114")
    tx(card, "8012000014")
    assert tx(card, "8014000014 8103024000820282818301 00B8024100B9020578") == bytes.fromhex("9114")
    # cat-bip-apdu.md §2.8 (GD-BIP, MTK-BIP): b8..b7 = 11 is reserved
    assert tx(card, "80C200000D D60B99010A82028281B802C100") == bytes.fromhex("6A80")


# -- fuzz -------------------------------------------------------------------------------------

VALID = [
    TERMINAL_PROFILE.hex(),
    "801200000F",
    "8012000014",
    "801400000C810301050082028281830100",
    "8014000014810302400082028281830100B8024100B9020578",
    "8014000014810303400082028281830100B8024200B9020578",
    "80C200000DD60B99010A82028281B8028100",
    "80C2000010D60E99010982028281B8028100B7015A",
    "80F2000C00",
    "00A4000C022FE2",
    "00B000000A",
]
apdus = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(VALID).map(bytes.fromhex),
    st.tuples(
        st.sampled_from(VALID).map(bytes.fromhex), st.binary(max_size=4), st.integers(0, 40)
    ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] + len(t[1]) :]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(apdus, max_size=12))
def test_fuzz_transmit(sequence: list[bytes]) -> None:
    card = make_card()
    for raw in sequence:
        rsp = card.transmit(raw, 0.0)
        assert isinstance(rsp, bytes)
        assert len(rsp) >= 2
        assert rsp[-2] in (
            0x90,
            0x91,
            0x93,
            0x61,
            0x62,
            0x63,
            0x67,
            0x68,  # functions in CLA not supported (a logical channel not open)
            0x69,
            0x6A,
            0x6B,
            0x6C,
            0x6D,
            0x6E,
            0x6F,
        )


# -- vpcd -------------------------------------------------------------------------------------


def test_vpcd_frames() -> None:
    # cat-bip-apdu.md §6 (VSC): get-ATR control and its answer
    assert frame(bytes((Control.GET_ATR,))) == bytes.fromhex("000104")
    assert frame(DEFAULT_ATR) == bytes.fromhex("0016") + DEFAULT_ATR
    with pytest.raises(ValueError, match="payload"):
        frame(b"")


def test_vpcd_deframer_whole_bytewise_trailer() -> None:
    # cat-bip-apdu.md §6 (VSC): `00 01 04`, then FETCH `00 05 80 12 00 00 14`
    stream = bytes.fromhex("000104 00058012000014")
    expected = [b"\x04", bytes.fromhex("8012000014")]
    assert Deframer().feed(stream) == expected
    d = Deframer()
    got: list[bytes] = []
    for b in stream:
        got += d.feed(bytes((b,)))
    assert got == expected
    d = Deframer()
    assert d.feed(stream + b"\x00") == expected
    assert d.feed(b"\x01\x02") == [b"\x02"]  # the trailer survives


def test_vpcd_zero_length_frame() -> None:
    with pytest.raises(DecodeError):
        Deframer().feed(b"\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_fuzz_deframer(raw: bytes, cuts: list[int]) -> None:
    points = sorted({0, len(raw), *(c for c in cuts if c < len(raw))})
    d = Deframer()
    got: list[bytes] = []
    try:
        for a, b in itertools.pairwise(points):
            got += d.feed(raw[a:b])
    except DecodeError:
        return
    whole = Deframer().feed(raw)
    assert got == whole


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=5), st.integers(1, 50))
def test_deframer_round_trip(payloads: list[bytes], step: int) -> None:
    stream = b"".join(frame(p) for p in payloads)
    d = Deframer()
    got: list[bytes] = []
    for i in range(0, len(stream), step):
        got += d.feed(stream[i : i + step])
    assert got == payloads


def test_a_new_terminal_after_a_fetch_without_tr_starts_clean() -> None:
    # A gateway killed between FETCH and its TERMINAL RESPONSE: the next one resets the card
    # and sends TERMINAL PROFILE; the card must not wait forever for the old TR.
    card = make_card()
    assert card.transmit(TERMINAL_PROFILE, 0.0) == bytes.fromhex("910F")
    assert tx(card, "801200000F") == SET_UP_EVENT_LIST + b"\x90\x00"
    card.power_on()
    assert card.transmit(TERMINAL_PROFILE, 0.0) == bytes.fromhex("910F")
    again = tx(card, "801200000F")
    # The same command again, with the next command number (§8.6).
    assert again[:4] + again[5:] == SET_UP_EVENT_LIST[:4] + SET_UP_EVENT_LIST[5:] + b"\x90\x00"
    assert tx(card, "801400000C 810302050082028281830100") == bytes.fromhex("9114")


class _Faulty:
    """A toolkit application with a bug in one of its methods (`where`), next to the SCWS.
    It sends one MORE TIME, so that it gets a TERMINAL RESPONSE too."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.calls = 0
        self.sent = False

    def _maybe_fail(self, name: str) -> None:
        if name == self.where:
            self.calls += 1
            raise RuntimeError(f"bug in {name}")

    def on_terminal_profile(self, profile: object, now: float) -> None:
        self._maybe_fail("profile")

    def on_envelope(self, envelope: object, now: float) -> bytes | None:
        self._maybe_fail("envelope")
        return None

    def next_command(self, number: int, now: float) -> MoreTime | None:
        self._maybe_fail("command")
        if self.sent:
            return None
        self.sent = True
        return MoreTime(
            details=CommandDetails(number, CommandType.MORE_TIME),
            devices=DeviceIdentities(Device.UICC, Device.TERMINAL),
        )

    def on_terminal_response(self, command: object, response: object, now: float) -> None:
        self._maybe_fail("response")

    def next_timer(self) -> float | None:
        return 0.0 if self.where == "timer" else None

    def on_timer(self, now: float) -> None:
        self._maybe_fail("timer")


# An SMS-PP download: goes to every app's on_envelope.
_SMS = SmsPpDownload(tpdu=SmsTpdu(b"\x04\x00")).encode()
_SMS_ENVELOPE = (bytes((0x80, 0xC2, 0, 0, len(_SMS))) + _SMS).hex()


def _fetch(card: VirtualUicc) -> bytes:
    """FETCHes the pending command (after a STATUS says how long it is)."""
    sw = tx(card, "80F2000C00")
    assert sw[0] == 0x91, sw.hex()
    return card.transmit(bytes((0x80, 0x12, 0, 0, sw[1])), 0.0)


@pytest.mark.parametrize("where", ["profile", "envelope", "command", "response", "timer"])
def test_an_application_that_raises_is_logged_and_the_card_carries_on(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = _Faulty(where)
    toolkit = Toolkit()
    toolkit.register(faulty)  # type: ignore[arg-type]
    toolkit.register(BipServerApp(ServerConfig(), {3516: _NoHandler()}))  # type: ignore[dict-item]
    card = VirtualUicc(CardIdentity(ICCID), toolkit)
    card.power_on()
    assert card.transmit(TERMINAL_PROFILE, 0.0)[0] in (0x90, 0x91)
    answers: list[bytes] = []
    # The first proactive command of each app (of the SCWS only, if the other fails to build
    # one) is fetched and answered.
    for _ in range(1 if where == "command" else 2):
        command = _fetch(card)
        assert command[-2:] == b"\x90\x00"
        details = command[2:7]  # 81 03 nn tt qq
        answers.append(tx(card, f"801400000C {details.hex()} 82028281830100"))
    for _ in range(3):
        answers.append(tx(card, "80F2000C00"))
    answers.append(tx(card, _SMS_ENVELOPE))
    assert faulty.calls >= 1
    assert all(len(a) == 2 for a in answers)
    # A failure on an envelope or a TERMINAL RESPONSE is answered 6F 00; elsewhere the app
    # is skipped and the card answers as usual.
    assert (b"\x6f\x00" in answers) == (where in ("envelope", "response"))
    assert "failed" in caplog.text
    assert caplog.text.count("Traceback") <= 1  # the same fault is logged in full once
    # The SCWS carries on: it has its next OPEN CHANNEL waiting.
    command = _fetch(card)
    assert command[5] == CommandType.OPEN_CHANNEL
