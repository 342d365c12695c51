"""SMS-DELIVER framing, the SMS-PP download ENVELOPE, and a trigger end to end: server seals,
terminal wraps, card unwraps and checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from openscws.cat.envelopes import SmsPpDownload, decode_envelope
from openscws.cat.objects import Address
from openscws.errors import DecodeError
from openscws.ota.packet import (
    COMMAND_UDH,
    RESPONSE_UDH,
    CommandPacket,
    CommandRejected,
    MinimumSecurityLevel,
    OtaKeys,
    PorStatus,
    TarSecurity,
    check_command,
    open_response,
    proof_of_receipt,
    rejection_receipt,
    seal_command,
)
from openscws.ota.sms import (
    COMMAND_HEADER,
    DCS_DATA_CLASS2_GENERAL,
    RESPONSE_HEADER,
    InformationElement,
    ServiceCentreTimeStamp,
    SmsAddress,
    SmsDeliver,
    UserDataHeader,
    command_envelope,
    command_packet_of,
    command_sms,
    response_packet_of,
    response_user_data,
)
from openscws.ota.spi import CipherAlgorithm, CounterMode, Integrity, KeyRef, PorRequest, Spi
from openscws.ota.trigger import TriggerParameters

h = bytes.fromhex

# asterix SecurePacket.py test_SPI1531: the ENVELOPE (SMS-PP download) of a captured card
# session (Gemalto tool log in the test), key KIc 263B..., counter 0x76
CAPTURED_ENVELOPE = h(
    "D13A820283818B3444038119F07FF6151124135822042502700000201115351515C000004D5C2C7F43D3E7"
    "74316C66CE8E1D5045755BACEF5DC83203"
)
CAPTURED_KIC = h("263B48DBCBC1C21C0AA13E4D4516C446")


def test_captured_envelope_end_to_end() -> None:
    envelope = decode_envelope(CAPTURED_ENVELOPE)
    assert isinstance(envelope, SmsPpDownload)
    sms = SmsDeliver.decode(envelope.tpdu.tpdu)
    assert sms.originating == SmsAddress(0x81, 3, h("19F0"))
    assert sms.originating.digits == "910"
    assert (sms.pid, sms.dcs, sms.more_messages) == (0x7F, 0xF6, False)
    assert sms.header == COMMAND_HEADER
    assert sms.encode() == envelope.tpdu.tpdu
    packet = command_packet_of(sms)
    table = {h("C00000"): TarSecurity(kic_keys={1: CAPTURED_KIC}, counter=0x75)}
    accepted = check_command(packet.encode(), table)
    assert accepted.data == h("80CA00E00000C0000000")
    assert accepted.new_counter == 0x76
    # and back: the same packet, address and stamp give the same ENVELOPE byte for byte
    rebuilt = command_envelope(packet, originating=sms.originating, scts=sms.scts)
    assert rebuilt == CAPTURED_ENVELOPE
    # the captured stamp is not swapped BCD (it reads 15-11-24 13:58:22 in plain order)
    with pytest.raises(DecodeError):
        sms.scts.to_datetime()


# pySim tests/unittests/test_ota.py SmsOtaTestCase 3DES-SJA5-CIPHERED-CC encoded_tpdu, except
# TP-UDL: pySim's test passes tp_udl=3 by hand, so its vector says 03 where the user data is
# 0x25 octets long. The rest (first octet 40, OA 0881214365 87, PID 7F, DCS F6, SCTS
# 22705200000000, UDH 027000) is taken as is.
PYSIM_TPDU = h(
    "400881214365877ff622705200000000"
    "25"
    "02700000201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"
)


def test_pysim_tpdu() -> None:
    sms = SmsDeliver.decode(PYSIM_TPDU)
    assert sms.originating == SmsAddress.from_digits("12345678", 0x81)
    assert sms.more_messages is True  # first octet 40: TP-MMS clear
    assert sms.scts.to_datetime() == datetime(2022, 7, 25, tzinfo=UTC)
    assert sms.encode() == PYSIM_TPDU
    packet = command_packet_of(sms)
    assert packet.encode().hex() == (
        "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"
    )
    built = command_sms(
        packet,
        originating=sms.originating,
        scts=ServiceCentreTimeStamp.from_datetime(datetime(2022, 7, 25, tzinfo=UTC)),
    )
    assert built.encode() == h("44") + PYSIM_TPDU[1:]  # ours says "no more messages"


def test_pysim_tpdu_with_its_udl_is_refused() -> None:
    with pytest.raises(DecodeError, match="TP-UDL"):
        SmsDeliver.decode(PYSIM_TPDU[:16] + b"\x03" + PYSIM_TPDU[17:])


@pytest.mark.parametrize(
    ("digits", "ton_npi", "encoded"),
    [
        # pySim tests/unittests/test_sms.py Test_AddressField
        ("12345", 0x91, "05912143f5"),
        ("1234", 0x80, "04802143"),
        ("123", 0x80, "038021f3"),
    ],
)
def test_addresses(digits: str, ton_npi: int, encoded: str) -> None:
    address = SmsAddress.from_digits(digits, ton_npi)
    assert address.encode() == h(encoded)
    assert SmsAddress.pull(h(encoded) + b"\x99", 0) == (address, len(h(encoded)))
    assert address.digits == digits


@pytest.mark.parametrize(
    ("raw", "ies", "rest"),
    [
        # pySim tests/unittests/test_sms.py Test_SMS_UDH
        ("027100", [(0x71, "")], ""),
        ("027100abcdef", [(0x71, "")], "abcdef"),
        ("03710110", [(0x71, "10")], ""),
        ("0571007001ffabcd", [(0x71, ""), (0x70, "ff")], "abcd"),
        # pySim Test_ConcatenatedSmsReassembler ground truth UDH from an SJA5 card
        ("0700030102017100", [(0x00, "010201"), (0x71, "")], ""),
    ],
)
def test_user_data_headers(raw: str, ies: list[tuple[int, str]], rest: str) -> None:
    header, tail = UserDataHeader.pull(h(raw))
    assert header.elements == tuple(InformationElement(i, h(d)) for i, d in ies)
    assert tail == h(rest)
    assert header.encode() + tail == h(raw)


def test_fixed_headers() -> None:
    assert COMMAND_HEADER.encode() == COMMAND_UDH == h("027000")
    assert RESPONSE_HEADER.encode() == RESPONSE_UDH == h("027100")


PLUS_2 = timezone(timedelta(hours=2))
MINUS_3_30 = timezone(-timedelta(hours=3, minutes=30))


@pytest.mark.parametrize(
    ("when", "raw"),
    [
        (datetime(2022, 7, 25, tzinfo=UTC), "22705200000000"),
        # +02:00 = 8 quarters; -03:30 = 14 quarters with the sign bit (b4 of the zone octet)
        (datetime(2024, 12, 31, 23, 59, 58, tzinfo=PLUS_2), "42211332958580"),
        (datetime(2009, 1, 2, 3, 4, 5, tzinfo=MINUS_3_30), "90102030405049"),
    ],
)
def test_service_centre_time_stamps(when: datetime, raw: str) -> None:
    stamp = ServiceCentreTimeStamp.from_datetime(when)
    assert stamp.raw == h(raw)
    assert stamp.to_datetime() == when
    assert stamp.to_datetime().utcoffset() == when.utcoffset()


def test_service_centre_time_stamp_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        ServiceCentreTimeStamp.from_datetime(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="quarter"):
        ServiceCentreTimeStamp.from_datetime(
            datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10)))
        )


def test_dcs() -> None:
    sms = SmsDeliver.decode(PYSIM_TPDU)
    general = SmsDeliver.decode(PYSIM_TPDU[:8] + bytes((DCS_DATA_CLASS2_GENERAL,)) + PYSIM_TPDU[9:])
    assert general.dcs == 0x16
    assert command_packet_of(general) == command_packet_of(sms)
    with pytest.raises(DecodeError, match="septet"):
        SmsDeliver.decode(PYSIM_TPDU[:8] + b"\x00" + PYSIM_TPDU[9:])


def test_command_packet_of_refuses_other_messages() -> None:
    sms = SmsDeliver.decode(PYSIM_TPDU)
    for wrong in (
        SmsDeliver(originating=sms.originating, scts=sms.scts, user_data=sms.user_data, pid=0),
        SmsDeliver(originating=sms.originating, scts=sms.scts, user_data=sms.user_data),
        SmsDeliver(
            originating=sms.originating,
            scts=sms.scts,
            user_data=sms.user_data,
            header=UserDataHeader(
                (InformationElement(0x00, h("010201")), InformationElement(0x70))
            ),
        ),
    ):
        with pytest.raises(DecodeError):
            command_packet_of(wrong)


def test_too_long_for_one_sms() -> None:
    sms = SmsDeliver.decode(PYSIM_TPDU)
    long = SmsDeliver(
        originating=sms.originating, scts=sms.scts, header=COMMAND_HEADER, user_data=bytes(138)
    )
    with pytest.raises(ValueError, match="one SMS holds 140"):
        long.encode()


# -- the trigger, end to end ---------------------------------------------------------------------

SD_TAR = h("000000")
AES = KeyRef(1, CipherAlgorithm.AES_CBC)
KEYS = OtaKeys(bytes(range(16)), bytes(range(16, 32)))
SPI = Spi(
    integrity=Integrity.CC,
    ciphering=True,
    counter=CounterMode.HIGHER,
    por=PorRequest.ON_ERROR,
    por_integrity=Integrity.CC,
    por_ciphering=True,
)
CARD = {
    SD_TAR: TarSecurity(
        kic_keys={1: KEYS.kic},
        kid_keys={1: KEYS.kid},
        counter=41,
        minimum=MinimumSecurityLevel(
            integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
        ),
    )
}
TRIGGER = h(
    "8148" "8346"
    "8413" "350103" "390205DC" "3C030201BB" "3E0521C0000201"
    "850A" "06" + b"scws01".hex() + "024001"
    "8923" "8A0B" + b"ras.example".hex() + "8B07" + b"agent01".hex()
    + "8C0B" + b"/scws/admin".hex()
)  # fmt: skip


def _trigger_envelope(counter: int) -> bytes:
    packet = seal_command(
        spi=SPI, kic=AES, kid=AES, tar=SD_TAR, counter=counter, data=TRIGGER, keys=KEYS
    )
    return command_envelope(
        packet,
        originating=SmsAddress.from_digits("4915112345678"),
        scts=ServiceCentreTimeStamp.from_datetime(datetime(2025, 3, 1, 12, 0, tzinfo=UTC)),
        service_centre=Address(0x91, h("945100000000")),
    )


def _card_receives(envelope: bytes) -> bytes:
    decoded = decode_envelope(envelope)
    assert isinstance(decoded, SmsPpDownload)
    return command_packet_of(SmsDeliver.decode(decoded.tpdu.tpdu)).encode()


def test_trigger_end_to_end() -> None:
    envelope = _trigger_envelope(42)
    assert envelope[0] == 0xD1
    assert len(envelope) <= 2 + 255
    accepted = check_command(_card_receives(envelope), CARD)
    assert accepted.new_counter == 42
    trigger = TriggerParameters.decode(accepted.data)
    assert trigger.session.http_post is not None
    assert trigger.session.http_post.host == "ras.example"
    assert proof_of_receipt(accepted) is None  # PoR on error only


def test_replayed_trigger_gets_a_counter_low_por() -> None:
    envelope = _trigger_envelope(41)  # the card already holds 41
    with pytest.raises(CommandRejected) as info:
        check_command(_card_receives(envelope), CARD)
    assert info.value.status == PorStatus.CNTR_LOW
    receipt = rejection_receipt(info.value)
    assert receipt is not None
    user_data = response_user_data(receipt)
    udh, packet = response_packet_of(user_data)
    assert udh == RESPONSE_UDH
    content = open_response(packet, spi=SPI, kic=AES, kid=AES, keys=KEYS, udh=udh)
    assert content.status == PorStatus.CNTR_LOW
    assert content.counter == 41


def test_forged_trigger_gets_a_cc_failure() -> None:
    packet = CommandPacket.decode(_card_receives(_trigger_envelope(50)))
    forged = bytearray(packet.encode())
    forged[-3] ^= 0xFF
    with pytest.raises(CommandRejected) as info:
        check_command(bytes(forged), CARD)
    assert info.value.status == PorStatus.RC_CC_DS_FAILED
