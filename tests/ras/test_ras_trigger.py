"""The SMS trigger: what the RAS seals, the card side (`ota.check_command`) opens with the
same keys, and refuses when replayed."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest

from openscws.ota import (
    CommandRejected,
    CounterMode,
    Integrity,
    KeyRef,
    MinimumSecurityLevel,
    PorRequest,
    PorStatus,
    RetryPolicy,
    ServiceCentreTimeStamp,
    SmsAddress,
    TarSecurity,
    TriggerParameters,
    check_command,
    command_packet_of,
    command_sms,
    rejection_receipt,
)
from openscws.ota.packet import CommandPacket
from openscws.ras.trigger import TRIGGER_SPI, CardOtaKeys, build_trigger, validate_ota_keys

TAR = bytes.fromhex("B20100")
KIC = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
KID = bytes.fromhex("F0E0D0C0B0A090807060504030201000")
AES = CardOtaKeys(tar=TAR, kic=KeyRef(1, 2), kid=KeyRef(1, 2), kic_key=KIC, kid_key=KID)
ARGS: dict[str, Any] = {
    "admin_host": "192.0.2.1",
    "admin_port": 443,
    "admin_uri": "/scws/admin",
    "agent_id": "agent01",
    "psk_identity": "scws01",
}


def seal(counter: int, keys: CardOtaKeys = AES, **changes: Any) -> bytes:
    return build_trigger(keys, counter, **{**ARGS, **changes})


def card_table(counter: int, keys: CardOtaKeys = AES) -> dict[bytes, TarSecurity]:
    """The card's key table entry for the admin agent's TAR, as the card holds it."""
    return {
        keys.tar: TarSecurity(
            kic_keys={keys.kic.key_version: keys.kic_key},
            kid_keys={keys.kid.key_version: keys.kid_key},
            counter=counter,
            minimum=MinimumSecurityLevel(
                integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
            ),
        )
    }


def test_spi() -> None:
    assert TRIGGER_SPI.encode() == bytes.fromhex("160A")
    assert TRIGGER_SPI.por is PorRequest.ON_ERROR


def test_card_accepts_the_trigger() -> None:
    packet = seal(7)
    decoded = CommandPacket.decode(packet)
    assert (decoded.tar, decoded.spi, decoded.check_length) == (TAR, TRIGGER_SPI, 8)
    accepted = check_command(packet, card_table(6))
    assert accepted.new_counter == 7
    trigger = TriggerParameters.decode(accepted.data)
    session = trigger.session
    assert session.connection is not None
    assert session.connection.destination is not None
    assert session.connection.destination.address == bytes((192, 0, 2, 1))
    assert session.connection.transport is not None
    assert session.connection.transport.port == 443
    assert session.security is not None
    assert (session.security.psk_identity, session.security.key_version) == (b"scws01", 0x40)
    assert session.http_post is not None
    assert (session.http_post.host, session.http_post.agent_id, session.http_post.uri) == (
        "192.0.2.1",
        "agent01",
        "/scws/admin",
    )
    assert trigger.dns is None
    assert KIC not in packet
    assert b"scws01" not in packet


@pytest.mark.parametrize("stored", [7, 8])
def test_replay_is_refused(stored: int) -> None:
    packet = seal(7)
    with pytest.raises(CommandRejected) as info:
        check_command(packet, card_table(stored))
    assert info.value.status is PorStatus.CNTR_LOW
    por = rejection_receipt(info.value)  # PoR on error: the card answers
    assert por is not None
    assert por.sealed[6] == PorStatus.CNTR_LOW


def test_wrong_keys_are_refused() -> None:
    packet = seal(7)
    other = CardOtaKeys(
        tar=TAR, kic=KeyRef(1, 2), kid=KeyRef(1, 2), kic_key=KIC, kid_key=os.urandom(16)
    )
    with pytest.raises(CommandRejected) as info:
        check_command(packet, card_table(0, other))
    assert info.value.status is PorStatus.RC_CC_DS_FAILED
    tampered = bytearray(packet)
    tampered[-1] ^= 1
    with pytest.raises(CommandRejected) as info:
        check_command(bytes(tampered), card_table(0))
    assert info.value.status is PorStatus.RC_CC_DS_FAILED


def test_by_name_resolves_first() -> None:
    packet = seal(1, admin_host="ras.example", agent_id=None)
    trigger = TriggerParameters.decode(check_command(packet, card_table(0)).data)
    assert trigger.dns is not None
    assert trigger.dns.ras_fqdn == b"ras.example"
    assert trigger.session.connection is not None
    assert trigger.session.connection.destination is None
    assert trigger.session.http_post is not None
    assert trigger.session.http_post.agent_id is None


def test_retry_policy_and_triple_des() -> None:
    keys = CardOtaKeys(
        tar=TAR, kic=KeyRef(2, 5), kid=KeyRef(2, 5), kic_key=os.urandom(16), kid_key=KID
    )
    retry = RetryPolicy.with_delay(3, 90)
    packet = seal(2, keys, retry=retry)
    trigger = TriggerParameters.decode(check_command(packet, card_table(1, keys)).data)
    assert trigger.session.retry == retry


def test_travels_in_one_sms() -> None:
    packet = seal(3)
    sms = command_sms(
        CommandPacket.decode(packet),
        originating=SmsAddress.from_digits("12345"),
        scts=ServiceCentreTimeStamp.from_datetime(datetime(2025, 3, 1, 12, tzinfo=UTC)),
    )
    assert command_packet_of(sms).encode() == packet


def test_too_long_for_one_sms() -> None:
    with pytest.raises(ValueError, match="one SMS"):
        seal(1, admin_uri="/" + "x" * 80)


def test_keys_must_fit_their_algorithms() -> None:
    validate_ota_keys(AES)
    bad = CardOtaKeys(tar=TAR, kic=KeyRef(1, 2), kid=KeyRef(1, 2), kic_key=b"short", kid_key=KID)
    with pytest.raises(ValueError, match="KIc key"):
        validate_ota_keys(bad)
    assert "short" not in repr(bad)
    assert KID.hex() not in repr(bad)
    with pytest.raises(ValueError, match="TAR"):
        CardOtaKeys(tar=b"\0", kic=KeyRef(1, 2), kid=KeyRef(1, 2), kic_key=KIC, kid_key=KID)
