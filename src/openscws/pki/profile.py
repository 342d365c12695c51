"""The device certificate profile: WAP-profiled X.509 server certificates (WAP-211-WAPCert,
as OMA SCWS §11.1.2 asks), declared once as data with the clause beside each field.

`SERVER_PROFILE` and `CA_PROFILE` drive `openscws.pki.authority` and are printed by
`openscws ca profile`, so what a certificate carries and why is visible in one place.
docs/tls-wapcert.md records what WAP-211 says, with sources and what is unconfirmed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CA_PROFILE",
    "DEFAULT_HOSTS",
    "MAX_CA_CERT_BYTES",
    "MAX_SERVER_CERT_BYTES",
    "SERIAL_BYTES",
    "SERVER_PROFILE",
    "FieldRule",
]


@dataclass(frozen=True, slots=True)
class FieldRule:
    field: str
    """Certificate field or extension."""
    value: str
    """What openscws puts there."""
    source: str
    """Clause it follows (WAP-211-WAPCert, RFC 5280) and, where we deviate, why."""


SERIAL_BYTES: Final = 8
"""Random positive serial numbers of 8 octets (RFC 5280 §4.1.2.2 allows up to 20)."""

MAX_SERVER_CERT_BYTES: Final = 1000
"""WAP-211 §6.1: the size every WAP phone must accept for a server certificate."""
MAX_CA_CERT_BYTES: Final = 2000
"""WAP-211 §6.1: the same for CA certificates."""

DEFAULT_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
"""Names the SCWS is reached by on the terminal (SCWS §7: http(s)://127.0.0.1:4116/)."""

SERVER_PROFILE: Final = (
    FieldRule("version", "v3 (2)", "WAP-211 Annex B: v3 when extensions are present"),
    FieldRule(
        "serialNumber",
        f"random positive integer, {SERIAL_BYTES} octets",
        "WAP-211 §6.4.2: at most 20 octets (CA serials §6.2.1: at most 8; we use 8 for both)",
    ),
    FieldRule(
        "signature",
        "sha256WithRSAEncryption (RSA issuer) or ecdsa-with-SHA256 (EC issuer)",
        "WAP-211 §6.4.3 defines only sha1WithRSAEncryption and ecdsa-with-SHA1; current TLS "
        "stacks refuse SHA-1 certificate signatures, so SHA-256 is used (a deliberate deviation)",
    ),
    FieldRule("issuer", "the issuer CA's subject", "WAP-211 §6.4.4: never empty"),
    FieldRule(
        "validity",
        "UTCTime, notBefore = issue time - 1 h, notAfter = notBefore + days (default 825)",
        "WAP-211 adds no rule (its examples use UTCTime); RFC 5280 §4.1.2.5",
    ),
    FieldRule(
        "subject",
        "organizationName, commonName = the host name (localhost), serialNumber = the ICCID; "
        "one attribute per RDN, at most 5 RDNs, UTF8String (serialNumber PrintableString)",
        "WAP-211 §6.4.5 and Annex B (at most 5 single-attribute RDNs), §8.1.1 (serialNumber "
        "attribute, PrintableString); WAP-211 mandates no attribute, CN is for TLS 1.0 clients",
    ),
    FieldRule(
        "subjectPublicKeyInfo",
        "the card's key: RSA 2048 (default) or ECDSA P-256",
        "WAP-211 §6.4.6: rsaEncryption or id-ecPublicKey; clients must take RSA up to 2048 bits "
        "(§9.1) but EC only up to 233 bits, so RSA is the default",
    ),
    FieldRule(
        "keyUsage (critical)",
        "digitalSignature + keyEncipherment (RSA) / digitalSignature (EC)",
        "WAP-211 §6.4.7: should be present and critical, bits per RFC 2246 §7.4.2",
    ),
    FieldRule(
        "extendedKeyUsage",
        "id-kp-serverAuth",
        "WAP-211 §6.4.7: should be present and must then include id-kp-serverAuth",
    ),
    FieldRule(
        "subjectAltName",
        "dNSName localhost, iPAddress 127.0.0.1 and ::1",
        "WAP-211 §6.4.7: should be present, dNSName recommended; iPAddress because the SCWS "
        "URL is https://127.0.0.1:4116/ (RFC 2818 §3.1)",
    ),
    FieldRule(
        "authorityKeyIdentifier",
        "keyIdentifier: SHA-1 of the issuer's public key",
        "WAP-211 §6.4.7: should be present, keyIdentifier form",
    ),
    FieldRule(
        "size",
        "at most 1000 octets DER (checked when signing)",
        "WAP-211 §6.1: phones must accept server certificates of at least 1000 octets",
    ),
)
"""The card's device certificate (SCWS §11.1.2, TLS server authentication)."""

CA_PROFILE: Final = (
    FieldRule("version", "v3 (2)", "WAP-211 Annex B"),
    FieldRule("serialNumber", f"random positive, {SERIAL_BYTES} octets", "WAP-211 §6.2.1"),
    FieldRule("subject = issuer", "organizationName, commonName", "WAP-211 §6.6.4: self-signed"),
    FieldRule("subjectPublicKeyInfo", "RSA 2048 (default) or ECDSA P-256", "WAP-211 §6.6.5"),
    FieldRule(
        "basicConstraints (critical)",
        "cA TRUE, pathLenConstraint 0",
        "WAP-211 §6.6.6: must be present and critical with cA TRUE",
    ),
    FieldRule("keyUsage (critical)", "keyCertSign, cRLSign", "WAP-211 §6.6.6: keyCertSign set"),
    FieldRule("subjectKeyIdentifier", "SHA-1 of the CA public key", "WAP-211 §6.6.6"),
    FieldRule("validity", "default 10 years", "RFC 5280 §4.1.2.5"),
    FieldRule("size", "at most 2000 octets DER", "WAP-211 §6.1"),
)
"""The card issuer's trusted authority (SCWS §11.1.2: "signed by a trusted authority of the
card issuer")."""
