"""The SCWS push: the trigger packet in a SIP MESSAGE, and the push client's checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openscws.ota import KeyRef
from openscws.ota.sms import SmsAddress, SmsDeliver, command_packet_of
from openscws.push.content import (
    SCWS_APP_ID,
    PushRefused,
    accept_contact,
    app_id_of,
    build_push,
    check_push,
    contact_apps,
    feature_value,
)
from openscws.push.gateway import push_tpdu
from openscws.push.sip import SipRequest, parse_message
from openscws.ras.trigger import CardOtaKeys, build_trigger

KEYS = CardOtaKeys(
    tar=bytes.fromhex("B20100"),
    kic=KeyRef(1, 2),
    kid=KeyRef(1, 2),
    kic_key=bytes(range(16)),
    kid_key=bytes(range(16, 32)),
)
PACKET = build_trigger(
    KEYS,
    7,
    admin_host="127.0.0.1",
    admin_port=29443,
    admin_uri="/scws/admin",
    agent_id=None,
    psk_identity="scws01",
)
TRUSTED = frozenset({"sip:ppg@scws.test"})
SERVES = frozenset({SCWS_APP_ID})


def message(**changes: str) -> SipRequest:
    args = {
        "target": "sip:device1@scws.test",
        "ppg": "sip:ppg@scws.test",
        "packet": PACKET,
        "via_host": "127.0.0.1",
        "via_port": 29060,
        "transport": "udp",
        "branch": "z9hG4bK1",
        "from_tag": "f1",
        "call_id": "c1",
    }
    return build_push(**{**args, **changes})  # type: ignore[arg-type]


def test_app_ids() -> None:
    assert app_id_of("36965") == app_id_of("0x9065") == SCWS_APP_ID
    assert feature_value(SCWS_APP_ID) == "push.scws"
    assert accept_contact("36965") == '*;+g.oma.pusheventapp="push.scws";require;explicit'
    assert contact_apps('<sip:d@h>;+g.oma.pusheventapp="push.scws,mms.ua"') == {
        "push.scws",
        "mms.ua",
    }
    assert contact_apps(accept_contact(SCWS_APP_ID)) == {"push.scws"}
    with pytest.raises(ValueError, match="not one this project knows"):
        app_id_of("12")


def test_message_carries_the_trigger_packet_unchanged() -> None:
    req = message()
    wire = req.encode()
    assert wire.startswith(b"MESSAGE sip:device1@scws.test SIP/2.0\r\nVia: SIP/2.0/UDP ")
    parsed = parse_message(wire)
    assert isinstance(parsed, SipRequest)
    push = check_push(parsed, trusted=TRUSTED, serves=SERVES)
    assert push.body == PACKET
    assert push.app_id == SCWS_APP_ID
    # The terminal wraps it exactly as an SMS: TP-PID 7F, class 2, UDH 02 70 00.
    tpdu = push_tpdu(
        push.body, SmsAddress.from_digits("12345", 0x81), datetime(2026, 1, 1, tzinfo=UTC)
    )
    sms = SmsDeliver.decode(tpdu)
    assert command_packet_of(sms).encode() == PACKET


def test_spoofed_sender_is_403() -> None:
    req = message(ppg="sip:mallory@evil.test")
    with pytest.raises(PushRefused) as info:
        check_push(req, trusted=TRUSTED, serves=SERVES)
    assert info.value.status == 403


def test_asserted_identity_wins_over_from() -> None:
    req = message(ppg="sip:ppg@scws.test").with_header(
        "P-Asserted-Identity", "<sip:mallory@evil.test>"
    )
    with pytest.raises(PushRefused) as info:
        check_push(req, trusted=TRUSTED, serves=SERVES)
    assert info.value.status == 403


def test_other_application_is_488_and_bad_body() -> None:
    req = message().without("X-Wap-Application-Id").without("Accept-Contact")
    with pytest.raises(PushRefused) as info:
        check_push(req, trusted=TRUSTED, serves=SERVES)
    assert info.value.status == 488
    # the feature tag alone is enough
    assert check_push(message().without("X-Wap-Application-Id"), trusted=TRUSTED, serves=SERVES)
    with pytest.raises(PushRefused) as info:
        check_push(
            message().without("Content-Type").with_header("Content-Type", "text/plain"),
            trusted=TRUSTED,
            serves=SERVES,
        )
    assert info.value.status == 415
    with pytest.raises(ValueError, match="z9hG4bK"):
        message(branch="nomagic")
