"""The admin agent's secrets in the card's secure area: its SCP81 PSK, the OTA keys of its
TAR (the trigger's KIc / KID) and the last counter it accepted, and its defaults for the admin
server. Files (the card image's secure/ directory, 0600, written atomically):

    admin-agent.json   {"agent_id", "psk_identity", "psk_key" (hex), "server": {"address",
                        "port", "host", "uri"}, "tar" (hex), "kic": {version: hex},
                        "kid": {version: hex}, "retry": {"count", "delay"},
                        "previous": {"psk": {identity: hex}, "kic": [version],
                        "kid": [version]}}
                       "previous" names what a key change (`rekey`) replaced: still
                       accepted until a trigger names the new PSK identity, so a session
                       that committed the change on the card but whose end the server
                       never recorded can be retried under the old keys
    ota-counter.json   {"<tar hex>": counter}: rewritten on every accepted trigger, before the
                       trigger acts (TS 102 225 §5.1.1), so a replay after a crash is refused
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

from openscws.errors import ConfigError
from openscws.ota.packet import MinimumSecurityLevel, TarSecurity
from openscws.ota.spi import CounterMode, Integrity
from openscws.uicc.keystore import SecretStore, validate_identity, validate_psk

__all__ = ["ADMIN_TAR", "AGENT_FILE", "AgentCredentials", "AgentSecrets", "KeyChange"]

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
    previous_psks: dict[str, bytes] = field(default_factory=dict, repr=False)
    """PSK identities a key change replaced, still accepted (see the module docstring)."""
    previous_kic: tuple[int, ...] = ()
    """KIc key versions a key change replaced: dropped with previous_psks."""
    previous_kid: tuple[int, ...] = ()

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
        if self.previous_psks or self.previous_kic or self.previous_kid:
            doc["previous"] = {
                "psk": {i: k.hex() for i, k in self.previous_psks.items()},
                "kic": list(self.previous_kic),
                "kid": list(self.previous_kid),
            }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    def psk_for(self, identity: str) -> bytes | None:
        """The PSK of `identity`: the current one, or one a key change replaced."""
        if identity == self.psk_identity:
            return self.psk_key
        return self.previous_psks.get(identity)

    def rekeyed(self, change: KeyChange) -> AgentCredentials:
        """These credentials after `change`: the new PSK and key versions current, the ones
        in use now kept as "previous" (older previous ones dropped)."""
        if change.psk_identity == self.psk_identity:
            raise ConfigError("a key change needs a new PSK identity")
        kic = {v: k for v, k in self.kic_keys.items() if v not in self.previous_kic}
        kid = {v: k for v, k in self.kid_keys.items() if v not in self.previous_kid}
        return replace(
            self,
            psk_identity=change.psk_identity,
            psk_key=change.psk_key,
            kic_keys={**kic, change.kic_version: change.kic_key},
            kid_keys={**kid, change.kid_version: change.kid_key},
            previous_psks={self.psk_identity: self.psk_key},
            previous_kic=tuple(v for v in kic if v != change.kic_version),
            previous_kid=tuple(v for v in kid if v != change.kid_version),
        )

    def settled(self) -> AgentCredentials:
        """Without what a key change replaced (the server has moved to the new keys)."""
        return replace(
            self,
            kic_keys={v: k for v, k in self.kic_keys.items() if v not in self.previous_kic},
            kid_keys={v: k for v, k in self.kid_keys.items() if v not in self.previous_kid},
            previous_psks={},
            previous_kic=(),
            previous_kid=(),
        )

    @classmethod
    def from_json(cls, data: bytes) -> AgentCredentials:
        try:
            doc: dict[str, Any] = json.loads(data)
            server = doc.get("server", {})
            retry = doc.get("retry", {})
            previous = doc.get("previous", {})
            return cls(
                previous_psks={
                    str(i): bytes.fromhex(k) for i, k in previous.get("psk", {}).items()
                },
                previous_kic=tuple(int(v) for v in previous.get("kic", ())),
                previous_kid=tuple(int(v) for v in previous.get("kid", ())),
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


@dataclass(frozen=True, slots=True)
class KeyChange:
    """New keys for the agent, as the admin server sends them (`PUT /.scws/keys`)."""

    psk_identity: str
    psk_key: bytes = field(repr=False)
    kic_version: int
    kic_key: bytes = field(repr=False)
    kid_version: int
    kid_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        validate_identity(self.psk_identity)
        validate_psk(self.psk_key)
        for name, version, key in (
            ("KIc", self.kic_version, self.kic_key),
            ("KID", self.kid_version, self.kid_key),
        ):
            if not 1 <= version <= 15:
                raise ConfigError(f"{name} key version must be 1..15")
            if len(key) not in (8, 16, 24, 32):
                raise ConfigError(f"{name} key must be 8, 16, 24 or 32 bytes")

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "psk_identity": self.psk_identity,
                "psk_key": self.psk_key.hex(),
                "kic": {"version": self.kic_version, "key": self.kic_key.hex()},
                "kid": {"version": self.kid_version, "key": self.kid_key.hex()},
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeyChange:
        """ConfigError for anything malformed (the message names no key material)."""
        try:
            doc = json.loads(data)
            return cls(
                psk_identity=str(doc["psk_identity"]),
                psk_key=bytes.fromhex(doc["psk_key"]),
                kic_version=int(doc["kic"]["version"]),
                kic_key=bytes.fromhex(doc["kic"]["key"]),
                kid_version=int(doc["kid"]["version"]),
                kid_key=bytes.fromhex(doc["kid"]["key"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"not a key change: {type(exc).__name__}") from None


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
