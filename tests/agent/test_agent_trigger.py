"""The admin agent's trigger check on a real VirtualUicc, driven by real APDUs: an SMS-PP
download ENVELOPE with a sealed trigger starts a session (OPEN CHANNEL in client mode to the
address the trigger names); a replayed, forged or misaddressed one is refused with its PoR
status and starts nothing; the counter is stored before the trigger acts."""

from __future__ import annotations

from datetime import UTC, datetime

from openscws.agent.app import AdminAgentApp
from openscws.agent.commands import ScwsAdminExecutor
from openscws.agent.credentials import ADMIN_TAR, AgentCredentials, AgentSecrets
from openscws.apdu.command import CommandApdu
from openscws.cat.commands import OpenChannel, decode_command
from openscws.cat.objects import TransportProtocol
from openscws.cat.profile import Feature, TerminalProfile
from openscws.ota.packet import CommandPacket, PorStatus
from openscws.ota.sms import (
    ServiceCentreTimeStamp,
    SmsAddress,
    command_envelope,
    response_packet_of,
)
from openscws.ota.spi import KeyRef
from openscws.ras.trigger import CardOtaKeys, build_trigger
from openscws.scws.model import MemoryStore
from openscws.uicc.card import CardIdentity, VirtualUicc

KIC = bytes(range(16))
KID = bytes(range(16, 32))
PSK = bytes(range(32, 48))
NOW = 1_000.0


class Secrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


def _card() -> tuple[VirtualUicc, AdminAgentApp, AgentSecrets]:
    secrets = AgentSecrets(Secrets())
    secrets.set_credentials(
        AgentCredentials(
            agent_id="//agent",
            psk_identity="card-1",
            psk_key=PSK,
            kic_keys={1: KIC},
            kid_keys={1: KID},
        )
    )
    store = MemoryStore()
    app = AdminAgentApp(secrets, lambda: ScwsAdminExecutor(store, max_resource=1 << 20))
    card = VirtualUicc(CardIdentity("8988211000000000003"))
    card.toolkit.register(app)
    card.power_on()
    profile = TerminalProfile(
        frozenset({Feature.OPEN_CHANNEL, Feature.TCP_CLIENT_REMOTE, Feature.SEND_DATA}), 7
    )
    card.transmit(CommandApdu(0x80, 0x10, 0, 0, profile.encode()).encode(), NOW)
    return card, app, secrets


def _trigger(counter: int, *, kid: bytes = KID, tar: bytes = ADMIN_TAR) -> bytes:
    keys = CardOtaKeys(
        tar=tar, kic=KeyRef.from_byte(0x12), kid=KeyRef.from_byte(0x12), kic_key=KIC, kid_key=kid
    )
    packet = build_trigger(
        keys,
        counter,
        admin_host="ras.example",
        admin_address="192.0.2.7",
        admin_port=4443,
        admin_uri="/scws/admin",
        agent_id=None,
        psk_identity="card-1",
    )
    envelope = command_envelope(
        CommandPacket.decode(packet),
        originating=SmsAddress.from_digits("12345"),
        scts=ServiceCentreTimeStamp.from_datetime(datetime(2026, 11, 22, tzinfo=UTC)),
    )
    return CommandApdu(0x80, 0xC2, 0, 0, envelope).encode()


def _por_status(response: bytes) -> int:
    _, packet = response_packet_of(response[:-2])
    return packet.sealed[6] if packet.check_length == 0 else -1  # CNTR(5) PCNTR(1) status


def _fetch(card: VirtualUicc, sw: bytes) -> OpenChannel | None:
    if sw[0] != 0x91:
        return None
    raw = card.transmit(bytes((0x80, 0x12, 0, 0, sw[1])), NOW)
    command = decode_command(raw[:-2])
    assert isinstance(command, OpenChannel)
    return command


def test_a_valid_trigger_opens_a_client_channel_to_the_named_server() -> None:
    card, app, secrets = _card()
    response = card.transmit(_trigger(1), NOW)
    assert response[-2] == 0x91, response.hex()  # a proactive command waits
    assert secrets.counters()[ADMIN_TAR] == 1
    command = _fetch(card, response[-2:])
    assert command is not None
    assert command.transport is not None
    assert command.transport.protocol == TransportProtocol.TCP_CLIENT_REMOTE
    assert command.transport.port == 4443
    assert command.destination is not None
    assert command.destination.address == bytes((192, 0, 2, 7))
    assert app.busy


def test_a_replayed_trigger_is_refused_with_counter_low_and_starts_nothing() -> None:
    card, _, secrets = _card()
    apdu = _trigger(5)
    first = card.transmit(apdu, NOW)
    assert _fetch(card, first[-2:]) is not None  # the first one starts a session
    card2, app2, secrets2 = _card()
    secrets2.save_counter(ADMIN_TAR, secrets.counters()[ADMIN_TAR])  # same card, restarted
    response = card2.transmit(apdu, NOW)
    assert response[-2:] == b"\x90\x00"
    assert _por_status(response) == PorStatus.CNTR_LOW
    assert not app2.busy


def test_a_forged_trigger_is_refused_with_a_checksum_failure() -> None:
    card, app, secrets = _card()
    response = card.transmit(_trigger(1, kid=bytes(16)), NOW)
    assert response[-2:] == b"\x90\x00"
    assert _por_status(response) in (PorStatus.RC_CC_DS_FAILED, PorStatus.CIPHERING_ERROR)
    assert not app.busy
    assert secrets.counters() == {}


def test_an_unknown_tar_is_refused_with_tar_unknown() -> None:
    card, app, _ = _card()
    response = card.transmit(_trigger(1, tar=b"\xb0\x00\x10"), NOW)
    assert _por_status(response) == PorStatus.TAR_UNKNOWN
    assert not app.busy


def test_agent_suites_follow_the_card_profile() -> None:
    """modern: OpenSSL's TLS 1.2 PSK list; compat: GnuTLS with both SCWS §11.1.1.1 suites;
    explicit suites: exactly those."""
    from openscws.tls import gnutls

    secrets = AgentSecrets(Secrets())
    store = MemoryStore()

    def executor() -> ScwsAdminExecutor:
        return ScwsAdminExecutor(store, max_resource=1 << 20)

    assert AdminAgentApp(secrets, executor).psk_priority is None
    compat = AdminAgentApp(secrets, executor, tls_profile="compat")
    assert compat.psk_priority == gnutls.PSK_AGENT_COMPAT_PRIORITY
    only = AdminAgentApp(secrets, executor, psk_suites=("TLS_PSK_WITH_3DES_EDE_CBC_SHA",))
    assert only.psk_priority is not None
    if gnutls.available() is None:
        codes = {code for code, _ in gnutls.priority_suites(compat.psk_priority)}
        assert {0x008B, 0x008C} <= codes
        assert {code for code, _ in gnutls.priority_suites(only.psk_priority)} == {0x008B}
