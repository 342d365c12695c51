"""The admin agent's secrets in the card's secure area: its SCP81 PSK, the OTA keys of its
TAR (the trigger's KIc / KID) and the last counter it accepted, and its defaults for the admin
server. Files (the card image's secure/ directory, 0600, written atomically):

    admin-agent.json   {"agent_id", "psk_identity", "psk_key" (hex), "server": {"address",
                        "port", "host", "uri"}, "tar" (hex), "kic": {version: hex},
                        "kid": {version: hex}, "retry": {"count", "delay"}}
    ota-counter.json   {"<tar hex>": counter}: rewritten on every accepted trigger, before the
                       trigger acts (TS 102 225 §5.1.1), so a replay after a crash is refused
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any, Final

from openscws.errors import ConfigError
from openscws.ota.packet import MinimumSecurityLevel, TarSecurity
from openscws.ota.spi import CounterMode, Integrity
from openscws.uicc.keystore import SecretStore, validate_identity, validate_psk

__all__ = ["ADMIN_TAR", "AgentCredentials", "AgentSecrets"]

AGENT_FILE: Final = "admin-agent.json"
COUNTER_FILE: Final = "ota-counter.json"
ADMIN_TAR: Final = bytes(3)
"""TAR 00 00 00: the issuer security domain (TS 101 220 Annex D), home of the SCP81 agent."""
MINIMUM: Final = MinimumSecurityLevel(
    integrity=Integrity.CC, ciphering=True, counter=CounterMode.HIGHER
)
"""What a trigger must carry: a cryptographic checksum, ciphering and a rising counter."""


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    agent_id: str
    psk_identity: str
    psk_key: bytes = field(repr=False)
    server_address: str = "127.0.0.1"
    """Where the card connects when the trigger names no destination address."""
    server_port: int = 4443
    server_host: str = "localhost"
    """The Host header when the trigger gives none."""
    server_uri: str = "/scws/admin"
    tar: bytes = ADMIN_TAR
    kic_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    kid_keys: dict[int, bytes] = field(default_factory=dict, repr=False)
    retry_count: int = 3
    retry_delay: float = 5.0

    def __post_init__(self) -> None:
        validate_identity(self.psk_identity)
        validate_psk(self.psk_key)
        ipaddress.ip_address(self.server_address)
        if not 0 < self.server_port < 65536:
            raise ConfigError(f"admin server port {self.server_port} out of range")
        if len(self.tar) != 3:
            raise ConfigError("a TAR is 3 bytes")

    def to_json(self) -> bytes:
        doc = {
            "agent_id": self.agent_id,
            "psk_identity": self.psk_identity,
            "psk_key": self.psk_key.hex(),
            "server": {
                "address": self.server_address,
                "port": self.server_port,
                "host": self.server_host,
                "uri": self.server_uri,
            },
            "tar": self.tar.hex(),
            "kic": {str(v): k.hex() for v, k in self.kic_keys.items()},
            "kid": {str(v): k.hex() for v, k in self.kid_keys.items()},
            "retry": {"count": self.retry_count, "delay": self.retry_delay},
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AgentCredentials:
        try:
            doc: dict[str, Any] = json.loads(data)
            server = doc.get("server", {})
            retry = doc.get("retry", {})
            return cls(
                agent_id=str(doc["agent_id"]),
                psk_identity=str(doc["psk_identity"]),
                psk_key=bytes.fromhex(doc["psk_key"]),
                server_address=str(server.get("address", "127.0.0.1")),
                server_port=int(server.get("port", 4443)),
                server_host=str(server.get("host", "localhost")),
                server_uri=str(server.get("uri", "/scws/admin")),
                tar=bytes.fromhex(doc.get("tar", "000000")),
                kic_keys={int(v): bytes.fromhex(k) for v, k in doc.get("kic", {}).items()},
                kid_keys={int(v): bytes.fromhex(k) for v, k in doc.get("kid", {}).items()},
                retry_count=int(retry.get("count", 3)),
                retry_delay=float(retry.get("delay", 5.0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{AGENT_FILE} is not valid: {exc}") from None


class AgentSecrets:
    """Reads and writes the agent's files in a `SecretStore` (the card image)."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store

    def credentials(self) -> AgentCredentials | None:
        data = self._store.get_secret(AGENT_FILE)
        return None if data is None else AgentCredentials.from_json(data)

    def set_credentials(self, credentials: AgentCredentials) -> None:
        self._store.set_secret(AGENT_FILE, credentials.to_json())

    def counters(self) -> dict[bytes, int]:
        data = self._store.get_secret(COUNTER_FILE)
        if data is None:
            return {}
        try:
            return {bytes.fromhex(t): int(n) for t, n in json.loads(data).items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise ConfigError(f"{COUNTER_FILE} is not valid: {exc}") from None

    def save_counter(self, tar: bytes, counter: int) -> None:
        counters = self.counters()
        counters[tar] = counter
        doc = {t.hex(): n for t, n in sorted(counters.items())}
        self._store.set_secret(COUNTER_FILE, json.dumps(doc).encode())

    def tar_table(self) -> dict[bytes, TarSecurity]:
        """The key table `ota.packet.check_command` needs (empty without credentials)."""
        creds = self.credentials()
        if creds is None:
            return {}
        return {
            creds.tar: TarSecurity(
                kic_keys=creds.kic_keys,
                kid_keys=creds.kid_keys,
                counter=self.counters().get(creds.tar, 0),
                minimum=MINIMUM,
            )
        }
