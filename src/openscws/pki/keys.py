"""Key pairs and certificate signing requests, with `cryptography`."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from openscws.errors import ConfigError

__all__ = [
    "KeyType",
    "PrivateKey",
    "build_csr",
    "generate_key",
    "key_from_pem",
    "key_to_pem",
    "san_for",
]

KeyType = Literal["rsa", "ec"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(key_type: KeyType = "rsa") -> PrivateKey:
    """RSA 2048 (WAP-211's algorithm) or ECDSA P-256."""
    match key_type:
        case "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "ec":
            return ec.generate_private_key(ec.SECP256R1())
        case _:
            raise ConfigError(f"unknown key type {key_type!r} (rsa or ec)")


def key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(data: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a usable private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"unsupported key type {type(key).__name__}")
    return key


def san_for(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    """iPAddress entries for addresses, dNSName for the rest."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def build_csr(
    key: PrivateKey,
    *,
    common_name: str,
    serial_number: str | None = None,
    organization: str | None = None,
    country: str | None = None,
    hosts: Iterable[str] = (),
) -> x509.CertificateSigningRequest:
    """A PKCS#10 request signed by `key` (proof of possession), naming the card."""
    attributes = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if serial_number:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    hosts = list(hosts)
    if hosts:
        builder = builder.add_extension(san_for(hosts), critical=False)
    return builder.sign(key, hashes.SHA256())
