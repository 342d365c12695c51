"""The SMS trigger of an admin session, sans-IO: the GP Amendment B triggering parameters (tag
81) sealed into a TS 102 225 command packet for the card's admin agent TAR.

Security: cryptographic checksum with the KID key, ciphering with the KIc key, counter "must
be higher", PoR on error only (the card's TLS connection is the positive answer), checksummed
when the card can. The caller supplies the counter: `RasService.claim_triggers` increments the
card's stored counter in the same transaction that claims the job, so no counter is ever used
twice."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from openscws.cat.objects import (
    BearerDescription,
    BearerType,
    BufferSize,
    TransportLevel,
    TransportProtocol,
)
from openscws.ota import (
    ConnectionParameters,
    CounterMode,
    DnsResolutionParameters,
    HttpPostParameters,
    Integrity,
    KeyRef,
    OtaKeys,
    PorRequest,
    RetryPolicy,
    SecurityParameters,
    SessionParameters,
    Spi,
    TriggerParameters,
    seal_command,
)
from openscws.ota.sms import MAX_USER_DATA

__all__ = [
    "DEFAULT_PSK_KEY_ID",
    "DEFAULT_PSK_KEY_VERSION",
    "TRIGGER_SPI",
    "CardOtaKeys",
    "build_trigger",
    "trigger_parameters",
    "validate_ota_keys",
]

TRIGGER_SPI: Final = Spi(
    integrity=Integrity.CC,
    ciphering=True,
    counter=CounterMode.HIGHER,
    por=PorRequest.ON_ERROR,
    por_integrity=Integrity.CC,
)
"""SPI 16 0A (byte 1: CC, ciphered, counter higher; byte 2: PoR on error, PoR with CC)."""

DEFAULT_PSK_KEY_VERSION: Final = 0x40
"""Tag 85 key version of the SCP81 PSK (GP's 0x40..0x4F range for PSK-TLS
keys, as in pySim's SCP81 examples)."""
DEFAULT_PSK_KEY_ID: Final = 0x01

_SMS_HEADER: Final = 3  # 02 70 00 in front of the packet


@dataclass(frozen=True, slots=True, kw_only=True)
class CardOtaKeys:
    """One card's OTA addressing and keys. The keys stay out of repr."""

    tar: bytes
    kic: KeyRef
    kid: KeyRef
    kic_key: bytes = field(repr=False)
    kid_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.tar) != 3:
            raise ValueError("a TAR is 3 bytes")


def trigger_parameters(
    *,
    admin_host: str,
    admin_port: int,
    admin_uri: str,
    agent_id: str | None,
    psk_identity: str | bytes,
    admin_address: str | None = None,
    psk_key_version: int = DEFAULT_PSK_KEY_VERSION,
    psk_key_id: int = DEFAULT_PSK_KEY_ID,
    retry: RetryPolicy | None = None,
    buffer_size: int = 1500,
) -> TriggerParameters:
    """The 81 TLV. The card connects to `admin_address` (an IP literal), or to `admin_host`
    when that is an IP literal; otherwise it resolves `admin_host` first (B3 with D6).
    `agent_id` None leaves 8B out: the security domain's default X-Admin-From applies."""
    address = admin_address or admin_host
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    identity = psk_identity.encode() if isinstance(psk_identity, str) else psk_identity
    dns = None
    if ip is not None:
        connection = ConnectionParameters.tcp_client(ip.packed, admin_port, buffer_size=buffer_size)
    else:
        connection = ConnectionParameters(
            bearer=BearerDescription(BearerType.DEFAULT),
            buffer_size=BufferSize(buffer_size),
            transport=TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, admin_port),
        )
        dns = DnsResolutionParameters(ras_fqdn=admin_host.encode("idna"))
    return TriggerParameters(
        session=SessionParameters(
            connection=connection,
            security=SecurityParameters(
                psk_identity=identity, key_version=psk_key_version, key_id=psk_key_id
            ),
            retry=retry,
            http_post=HttpPostParameters(host=admin_host, agent_id=agent_id, uri=admin_uri),
        ),
        dns=dns,
    )


def build_trigger(
    keys: CardOtaKeys,
    counter: int,
    *,
    admin_host: str,
    admin_port: int,
    admin_uri: str,
    agent_id: str | None,
    psk_identity: str | bytes,
    admin_address: str | None = None,
    psk_key_version: int = DEFAULT_PSK_KEY_VERSION,
    psk_key_id: int = DEFAULT_PSK_KEY_ID,
    retry: RetryPolicy | None = None,
    cc_length: int = 8,
) -> bytes:
    """The secured command packet (CPL to the end) carrying the trigger, ready for
    `ota.command_sms` / an SMSC. Raises ValueError when the keys do not fit their algorithms
    or the packet does not fit one SMS. The budget is tight: with AES (16-byte blocks) and an
    8-byte CC, the 81 TLV may take 98 bytes, so long hosts, URIs and identities do not fit;
    `cc_length=4` or `agent_id=None` buys room."""
    params = trigger_parameters(
        admin_host=admin_host,
        admin_port=admin_port,
        admin_uri=admin_uri,
        agent_id=agent_id,
        psk_identity=psk_identity,
        admin_address=admin_address,
        psk_key_version=psk_key_version,
        psk_key_id=psk_key_id,
        retry=retry,
    )
    packet = seal_command(
        spi=TRIGGER_SPI,
        kic=keys.kic,
        kid=keys.kid,
        tar=keys.tar,
        counter=counter,
        data=params.encode(),
        keys=OtaKeys(kic=keys.kic_key, kid=keys.kid_key),
        cc_length=cc_length,
    ).encode()
    if len(packet) + _SMS_HEADER > MAX_USER_DATA:
        raise ValueError(
            f"the trigger is {len(packet)} bytes, one SMS carries {MAX_USER_DATA - _SMS_HEADER}: "
            "shorten the host, URI, agent id or PSK identity"
        )
    return packet


def validate_ota_keys(keys: CardOtaKeys) -> None:
    """Raises ValueError when the trigger cannot be sealed with these keys and algorithms."""
    seal_command(
        spi=TRIGGER_SPI,
        kic=keys.kic,
        kid=keys.kid,
        tar=keys.tar,
        counter=1,
        data=b"\x81\x00",
        keys=OtaKeys(kic=keys.kic_key, kid=keys.kid_key),
    )
