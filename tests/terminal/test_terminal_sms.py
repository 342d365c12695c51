"""SMS-PP data download in the terminal's CAT engine (TS 102 223 §7.1, 3GPP TS 31.111
§7.1.1.2): the ENVELOPE bytes against a hand-built vector, when it is sent, and what each
card answer becomes (PoR, busy and its retries, GET RESPONSE, warnings, errors)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.cat.objects import Address
from openscws.terminal.engine import Phase, SmsResult, SmsStatus, TerminalEngine

# SMS-DELIVER (TS 23.040 §9.2.2.1), by hand: first octet 44 (TP-UDHI, no more messages),
# TP-OA 5 digits unknown/ISDN "12345", TP-PID 7F, TP-DCS F6, TP-SCTS 2025-11-22 10:00:00 +00,
# TP-UDL 0x13, TP-UD: UDH 02 70 00 and 16 bytes standing in for a command packet.
PACKET = bytes.fromhex("0010 0D 1609 25 25 B00010 0000000001 00")[:16]
TPDU = bytes.fromhex("44 05 81 2143F5 7F F6 52112201000000 13 027000") + PACKET
# TS 31.111 §7.1.1.2 / spec digest §5.1: D1, device identities network (83) -> UICC (81),
# Address (86) TON/NPI 91 and BCD "447700900123", SMS TPDU (8B).
ENVELOPE = bytes.fromhex("D132 82028381 86079144770009 1032 8B23") + TPDU
CENTRE = Address(0x91, bytes.fromhex("447700091032"))
POR = bytes.fromhex("027100 000D 0A B00010 0000000001 00 00")


def started() -> TerminalEngine:
    engine = TerminalEngine(sms_retry_interval=0.25, sms_busy_retries=2)
    engine.polling = False
    assert engine.next_apdu(0.0) is not None  # TERMINAL PROFILE
    engine.receive_response(b"\x90\x00", 0.0)
    return engine


def deliver(engine: TerminalEngine, **kwargs: Address) -> list[SmsResult]:
    results: list[SmsResult] = []
    engine.deliver_sms(TPDU, results.append, **kwargs)
    return results


def test_envelope_bytes_match_the_hand_built_vector() -> None:
    assert len(TPDU) == 35
    assert ENVELOPE[1] == len(ENVELOPE) - 2
    engine = started()
    results = deliver(engine, service_centre=CENTRE)
    assert engine.next_apdu(0.0) == bytes((0x80, 0xC2, 0, 0, len(ENVELOPE))) + ENVELOPE
    engine.receive_response(b"\x90\x00", 0.0)
    assert results == [SmsResult(SmsStatus.DELIVERED, 0x9000)]
    assert engine.next_apdu(0.0) is None


def test_without_service_centre_the_address_is_left_out() -> None:
    engine = started()
    deliver(engine)
    apdu = engine.next_apdu(0.0)
    assert apdu is not None
    assert apdu[5:] == bytes.fromhex("D129 82028381 8B23") + TPDU


def test_por_data_is_the_result_and_91_xx_is_fetched_next() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(POR + b"\x91\x0f", 0.0)
    assert results == [SmsResult(SmsStatus.POR, 0x910F, POR)]
    assert engine.next_apdu(0.0) == bytes.fromhex("801200000F")


def test_busy_is_retried_after_the_interval_then_reported() -> None:
    engine = started()
    results = deliver(engine)
    envelope = engine.next_apdu(0.0)
    engine.receive_response(b"\x93\x00", 0.0)
    assert engine.next_sms() == 0.25
    assert engine.next_apdu(0.1) is None  # not yet
    assert engine.next_apdu(0.25) == envelope
    engine.receive_response(b"\x93\x00", 0.25)
    assert engine.next_apdu(0.5) == envelope
    engine.receive_response(b"\x93\x00", 0.5)  # third 93 00: two retries were allowed
    assert results == [SmsResult(SmsStatus.BUSY, 0x9300)]
    assert engine.next_sms() is None
    assert engine.next_apdu(10.0) is None


def test_busy_then_accepted() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x93\x00", 0.0)
    engine.next_apdu(1.0)
    engine.receive_response(POR + b"\x90\x00", 1.0)
    assert results == [SmsResult(SmsStatus.POR, 0x9000, POR)]


def test_61_xx_gets_the_por_with_get_response() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(bytes((0x61, len(POR))), 0.0)
    assert results == []
    # pySim's GET RESPONSE: the command's CLA, Le = XX
    assert engine.next_apdu(0.0) == bytes((0x80, 0xC0, 0, 0, len(POR)))
    engine.receive_response(POR + b"\x90\x00", 0.0)
    assert results == [SmsResult(SmsStatus.POR, 0x9000, POR)]


def test_9f_xx_is_read_the_same_way() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x9f\x04", 0.0)
    assert engine.next_apdu(0.0) == bytes.fromhex("80C0000004")
    engine.receive_response(b"\x01\x02\x03\x04\x91\x10", 0.0)
    assert results == [SmsResult(SmsStatus.POR, 0x9110, b"\x01\x02\x03\x04")]
    assert engine.next_apdu(0.0) == bytes.fromhex("8012000010")


def test_warning_with_data_is_an_error_carrying_the_data() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(POR + b"\x62\x00", 0.0)
    assert results == [SmsResult(SmsStatus.ERROR, 0x6200, POR)]


def test_warning_without_data_asks_get_response_and_follows_6c() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x63\x00", 0.0)
    assert engine.next_apdu(0.0) == bytes.fromhex("80C0000000")
    engine.receive_response(b"\x6c\x08", 0.0)
    assert engine.next_apdu(0.0) == bytes.fromhex("80C0000008")
    engine.receive_response(POR[:8] + b"\x90\x00", 0.0)
    assert results == [SmsResult(SmsStatus.ERROR, 0x6300, POR[:8])]


def test_warning_whose_get_response_fails_keeps_the_warning() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x62\x82", 0.0)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x6d\x00", 0.0)  # our card has no GET RESPONSE
    assert results == [SmsResult(SmsStatus.ERROR, 0x6282)]


@pytest.mark.parametrize("sw", ["6F00", "6A80", "6985"])
def test_refusals_are_errors(sw: str) -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(bytes.fromhex(sw), 0.0)
    assert results == [SmsResult(SmsStatus.ERROR, int(sw, 16))]


def test_truncated_answer_is_an_error() -> None:
    engine = started()
    results = deliver(engine)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90", 0.0)
    assert results == [SmsResult(SmsStatus.ERROR, 0)]


def test_owed_terminal_response_goes_first() -> None:
    engine = started()
    # The card announces SET UP EVENT LIST (spec digest §3.7); the engine fetches it.
    suel = bytes.fromhex("D00D8103010500820281829902090A")
    engine.next_apdu(0.0)  # nothing queued yet: None
    results = deliver(engine)
    apdu = engine.next_apdu(0.0)
    assert apdu is not None
    assert apdu[1] == 0xC2
    engine.receive_response(bytes((0x91, len(suel))), 0.0)
    assert results == [SmsResult(SmsStatus.DELIVERED, 0x9100 | len(suel))]
    assert engine.next_apdu(0.0) == bytes((0x80, 0x12, 0, 0, len(suel)))
    second: list[SmsResult] = []
    engine.deliver_sms(TPDU, second.append)
    engine.receive_response(suel + b"\x90\x00", 0.0)
    tr = engine.next_apdu(0.0)
    assert tr == bytes.fromhex("801400000C810301050082028281830100")
    engine.receive_response(b"\x90\x00", 0.0)
    apdu = engine.next_apdu(0.0)
    assert apdu is not None
    assert apdu[1] == 0xC2
    engine.receive_response(b"\x90\x00", 0.0)
    assert second == [SmsResult(SmsStatus.DELIVERED, 0x9000)]


def test_nothing_is_sent_while_an_open_channel_waits_for_its_connection() -> None:
    engine = started()
    # cat-bip-apdu.md §3.2: OPEN CHANNEL client to 127.0.0.1:443
    open_client = bytes.fromhex("D01C810308400182028182B50103B9020578BC030201BBBE05217F000001")
    engine.polling = True
    assert engine.next_apdu(1.0) == bytes.fromhex("80F2000C00")
    engine.polling = False
    engine.receive_response(bytes((0x91, len(open_client))), 0.0)
    engine.next_apdu(0.0)
    engine.receive_response(open_client + b"\x90\x00", 0.0)
    assert engine.phase is Phase.BLOCKED
    results = deliver(engine)
    assert engine.next_apdu(0.0) is None
    engine.remote_connected(1, True)
    tr = engine.next_apdu(0.0)
    assert tr is not None
    assert tr[1] == 0x14
    engine.receive_response(b"\x90\x00", 0.0)
    apdu = engine.next_apdu(0.0)
    assert apdu is not None
    assert apdu[1] == 0xC2
    engine.receive_response(b"\x90\x00", 0.0)
    assert results == [SmsResult(SmsStatus.DELIVERED, 0x9000)]


def test_results_come_in_order_for_several_messages() -> None:
    engine = started()
    results: list[SmsResult] = []
    for _ in range(3):
        engine.deliver_sms(TPDU, results.append)
    for now, answer in enumerate((b"\x90\x00", b"\x93\x00", POR + b"\x90\x00", b"\x6f\x00")):
        engine.next_apdu(now)
        engine.receive_response(answer, now)
    assert [r.status for r in results] == [SmsStatus.DELIVERED, SmsStatus.POR, SmsStatus.ERROR]


def test_a_failing_callback_does_not_stop_the_engine() -> None:
    engine = started()

    def broken(result: SmsResult) -> None:
        raise RuntimeError("caller bug")

    engine.deliver_sms(TPDU, broken)
    engine.next_apdu(0.0)
    engine.receive_response(b"\x91\x0f", 0.0)
    assert engine.next_apdu(0.0) == bytes.fromhex("801200000F")


def test_an_envelope_beyond_one_apdu_is_refused() -> None:
    engine = started()
    with pytest.raises(ValueError, match="255"):
        engine.deliver_sms(b"\x44" * 250, lambda r: None)


def test_a_captured_envelope_is_rebuilt_byte_for_byte() -> None:
    """asterix SecurePacket.py test_SPI1531 (tests/ota/test_ota_sms.py): the SMS-PP download
    ENVELOPE of a captured card session, no service-centre address."""
    captured = bytes.fromhex(
        "D13A820283818B3444038119F07FF6151124135822042502700000201115351515C000004D5C2C7F"
        "43D3E774316C66CE8E1D5045755BACEF5DC83203"
    )
    engine = started()
    engine.deliver_sms(captured[8:], lambda r: None)
    assert engine.next_apdu(0.0) == bytes((0x80, 0xC2, 0, 0, len(captured))) + captured


# -- fuzz: any card answers, each SMS gets exactly one result -----------------------------------

SMS_ANSWERS = ["9000", "910F", "9300", "6110", "9F04", "6200", "6300", "6C08", "6F00", "6D00"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(SMS_ANSWERS).map(bytes.fromhex),
            st.binary(max_size=6),
            st.just(POR + b"\x90\x00"),
        ),
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_fuzz_each_sms_gets_one_result(answers: list[bytes], count: int) -> None:
    engine = started()
    results: list[list[SmsResult]] = [[] for _ in range(count)]
    for r in results:
        engine.deliver_sms(TPDU, r.append)
    now = 0.0
    for answer in [*answers, *[b"\x90\x00"] * 60]:
        now += 1.0
        if engine.next_apdu(now) is None:
            continue
        engine.receive_response(answer, now)
    assert [len(r) for r in results] == [1] * count
