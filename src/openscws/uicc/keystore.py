"""The card's secure area: its key pair, device certificate chain, PSK table and key-use
policy (OMA SCWS §11.1.2 "Public Key Pair and device certificate", §11.1.1 PSK-TLS).

The private key never leaves this object: no method returns it. Two callers may use it:

* the TLS layer, through `server_context` (the card's HTTPS endpoint on 4116);
* card applications named in the card's policy, through `signer(app)`; any other app gets
  `KeyUseDenied` ("SHALL allow the usage of these keys only to the TLS implementation or
  to authorized card applications, as defined by the card issuer internal security policy").

Storage goes through a `SecretStore` (the card image's secure/ directory: 0700, files 0600,
written atomically). Names used there:

    card-key.pem      PKCS#8 private key
    device-chain.pem  device certificate, then the issuer chain
    key-policy.json   {"apps": [names of card applications allowed to sign]}
    psk.json          {"enabled": bool, "hint": str | null, "keys": {identity: hex key}}
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from openscws.errors import ConfigError, KeyUseDenied
from openscws.pki.keys import KeyType, PrivateKey, build_csr, generate_key, key_from_pem, key_to_pem
from openscws.tls.context import Profile, server_context
from openscws.tls.psk import PskKeys

__all__ = ["CardKeyStore", "PskTable", "SecretStore"]

KEY_FILE: Final = "card-key.pem"
CHAIN_FILE: Final = "device-chain.pem"
POLICY_FILE: Final = "key-policy.json"
PSK_FILE: Final = "psk.json"

MIN_PSK_BYTES: Final = 16
MAX_PSK_BYTES: Final = 64
MAX_IDENTITY_BYTES: Final = 128


class SecretStore(Protocol):
    def get_secret(self, name: str) -> bytes | None: ...
    def set_secret(self, name: str, data: bytes) -> None: ...
    def delete_secret(self, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class PskTable:
    """The card's PSK-TLS identities (RFC 4279 §5.1: identity is UTF-8, up to 128 bytes)."""

    enabled: bool = False
    hint: str | None = None
    keys: dict[str, bytes] = field(default_factory=dict)

    def lookup(self, identity: str | None) -> bytes | None:
        if not self.enabled or identity is None:
            return None
        return self.keys.get(identity)

    def psk_keys(self) -> PskKeys:
        """The table and hint as every PSK-TLS server endpoint takes them."""
        return PskKeys(self.lookup, self.hint)

    def to_json(self) -> bytes:
        doc = {
            "enabled": self.enabled,
            "hint": self.hint,
            "keys": {k: v.hex() for k, v in sorted(self.keys.items())},
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PskTable:
        try:
            doc = json.loads(data)
            keys = {str(k): bytes.fromhex(v) for k, v in doc["keys"].items()}
            hint = doc.get("hint")
            return cls(bool(doc["enabled"]), None if hint is None else str(hint), keys)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"the card's {PSK_FILE} is corrupt: {exc}") from exc


def validate_identity(identity: str) -> str:
    raw = identity.encode("utf-8", "strict") if isinstance(identity, str) else b""
    if not raw or len(raw) > MAX_IDENTITY_BYTES or any(c < 0x20 or c == 0x7F for c in raw):
        raise ConfigError(
            f"a PSK identity is 1-{MAX_IDENTITY_BYTES} UTF-8 bytes without control characters"
        )
    return identity


def validate_psk(key: bytes) -> bytes:
    if not MIN_PSK_BYTES <= len(key) <= MAX_PSK_BYTES:
        raise ConfigError(f"a PSK is {MIN_PSK_BYTES}-{MAX_PSK_BYTES} bytes, not {len(key)}")
    return key


class CardKeyStore:
    """The card's keys, over a `SecretStore` (the card image)."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store

    # -- key pair ---------------------------------------------------------------------------

    def _key(self) -> PrivateKey:
        data = self._store.get_secret(KEY_FILE)
        if data is None:
            raise ConfigError("the card has no key pair yet: run `openscws card init`")
        return key_from_pem(data)

    @property
    def has_key(self) -> bool:
        return self._store.get_secret(KEY_FILE) is not None

    def generate(self, key_type: KeyType = "rsa", *, replace: bool = False) -> None:
        """Make the card's key pair inside the card. A new pair voids the old certificate."""
        if self.has_key and not replace:
            raise ConfigError("the card already has a key pair (replace it with --force)")
        key = generate_key(key_type)
        self._store.set_secret(KEY_FILE, key_to_pem(key))
        self._store.delete_secret(CHAIN_FILE)

    def public_key_pem(self) -> bytes:
        return (
            self._key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def key_type(self) -> KeyType:
        return "rsa" if isinstance(self._key(), rsa.RSAPrivateKey) else "ec"

    def make_csr(
        self,
        *,
        common_name: str,
        serial_number: str | None = None,
        organization: str | None = None,
        hosts: Iterable[str] = (),
    ) -> bytes:
        """A PEM CSR for the card's key, signed inside the card."""
        csr = build_csr(
            self._key(),
            common_name=common_name,
            serial_number=serial_number,
            organization=organization,
            hosts=hosts,
        )
        return csr.public_bytes(serialization.Encoding.PEM)

    # -- device certificate ---------------------------------------------------------------

    def install_chain(self, chain_pem: bytes) -> x509.Certificate:
        """Store the device certificate (first) and its issuers; the leaf must certify the
        card's own public key."""
        try:
            certs = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as exc:
            raise ConfigError(f"not a PEM certificate chain: {exc}") from exc
        leaf = certs[0]
        if leaf.public_key() != self._key().public_key():
            raise ConfigError("the certificate is not for this card's key pair")
        for child, parent in itertools.pairwise(certs):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise ConfigError(f"the chain is broken at {child.subject}: {exc}") from exc
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        self._store.set_secret(CHAIN_FILE, data)
        return leaf

    def chain_pem(self) -> bytes | None:
        return self._store.get_secret(CHAIN_FILE)

    def device_certificate(self) -> x509.Certificate | None:
        data = self.chain_pem()
        return None if data is None else x509.load_pem_x509_certificates(data)[0]

    # -- the TLS layer's use ----------------------------------------------------------------

    def server_context(
        self, profile: Profile = "modern", table: PskTable | None = None
    ) -> ssl.SSLContext:
        """The context for the card's HTTPS server: the device certificate, plus the PSK
        suites when PSK-TLS is enabled in `table` (default: the card's, read now; a caller
        that also needs the table passes the one it read, so both see the same)."""
        chain = self.chain_pem()
        if chain is None:
            raise ConfigError("the card has no device certificate: run `openscws card init`")
        if table is None:
            table = self.psk_table()
        psk = table.psk_keys() if table.enabled and table.keys else None
        return server_context(chain, key_to_pem(self._key()), profile=profile, psk=psk)

    # -- card applications' use -------------------------------------------------------------

    def authorised_apps(self) -> tuple[str, ...]:
        data = self._store.get_secret(POLICY_FILE)
        if data is None:
            return ()
        try:
            apps = json.loads(data)["apps"]
            return tuple(str(a) for a in apps)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the card's {POLICY_FILE} is corrupt: {exc}") from exc

    def set_authorised_apps(self, apps: Iterable[str]) -> None:
        doc = {"apps": sorted(set(apps))}
        self._store.set_secret(POLICY_FILE, json.dumps(doc).encode())

    def signer(self, app: str) -> Callable[[bytes], bytes]:
        """A signing function for card application `app`, if the policy allows it:
        RSA PKCS#1 v1.5 or ECDSA, both with SHA-256. Else `KeyUseDenied`."""
        if app not in self.authorised_apps():
            raise KeyUseDenied(f"card application {app!r} may not use the card's private key")
        key = self._key()

        def sign(data: bytes) -> bytes:
            if isinstance(key, rsa.RSAPrivateKey):
                return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            return key.sign(data, ec.ECDSA(hashes.SHA256()))

        return sign

    # -- PSK-TLS ----------------------------------------------------------------------------

    def psk_table(self) -> PskTable:
        data = self._store.get_secret(PSK_FILE)
        return PskTable() if data is None else PskTable.from_json(data)

    def _save_psk(self, table: PskTable) -> None:
        self._store.set_secret(PSK_FILE, table.to_json())

    def add_psk(self, identity: str, key: bytes) -> None:
        table = self.psk_table()
        keys = {**table.keys, validate_identity(identity): validate_psk(key)}
        self._save_psk(PskTable(table.enabled, table.hint, keys))

    def remove_psk(self, identity: str) -> bool:
        table = self.psk_table()
        if identity not in table.keys:
            return False
        keys = {k: v for k, v in table.keys.items() if k != identity}
        self._save_psk(PskTable(table.enabled, table.hint, keys))
        return True

    def set_psk_enabled(self, enabled: bool, hint: str | None = None) -> None:
        table = self.psk_table()
        if enabled and not table.keys:
            raise ConfigError("add a PSK identity first (`openscws card psk add`)")
        new_hint = table.hint if hint is None else validate_identity(hint)
        self._save_psk(PskTable(enabled, new_hint, table.keys))
