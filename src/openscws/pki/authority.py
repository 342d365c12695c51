"""The card issuer's certification authority (SCWS §11.1.2: the device certificate "shall be
provisioned by the card issuer and be signed by a trusted authority of the card issuer").

In memory only: `openscws.store.issuer` keeps it on disk. The certificates follow
`openscws.pki.profile`. `now` is always an argument: nothing here reads the clock."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openscws.errors import ConfigError
from openscws.pki.keys import KeyType, PrivateKey, generate_key, key_from_pem, key_to_pem, san_for
from openscws.pki.profile import MAX_SERVER_CERT_BYTES, SERIAL_BYTES

__all__ = ["DEFAULT_CA_NAME", "CertificateAuthority", "IssuedCertificate", "parse_csr"]

DEFAULT_CA_NAME: Final = "openscws card issuer CA"
_SUBJECT_OIDS: Final = (
    NameOID.COUNTRY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.COMMON_NAME,
    NameOID.SERIAL_NUMBER,
)
_BACKDATE: Final = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    serial: int
    pem: bytes


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A PEM or DER CSR whose self-signature verifies, else ConfigError."""
    try:
        csr = (
            x509.load_pem_x509_csr(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_csr(data)
        )
    except ValueError as exc:
        raise ConfigError(f"not a certificate signing request: {exc}") from exc
    if not csr.is_signature_valid:
        raise ConfigError("the CSR's signature does not verify (no proof of key possession)")
    return csr


def _key_usage(signing: bool, *, encipher: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signing,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing,
        crl_sign=signing,
        encipher_only=False,
        decipher_only=False,
    )


class CertificateAuthority:
    """A CA key and its self-signed certificate."""

    def __init__(self, key: PrivateKey, certificate: x509.Certificate) -> None:
        if certificate.public_key() != key.public_key():
            raise ConfigError("the CA key does not match the CA certificate")
        self._key = key
        self.certificate = certificate

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """For the CA's own store only."""
        return key_to_pem(self._key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise ConfigError(f"not a CA certificate: {exc}") from exc
        return cls(key_from_pem(key_pem), cert)

    @classmethod
    def create(
        cls,
        *,
        now: datetime.datetime,
        common_name: str = DEFAULT_CA_NAME,
        organization: str = "openscws",
        country: str | None = None,
        key_type: KeyType = "rsa",
        days: int = 3650,
    ) -> CertificateAuthority:
        key = generate_key(key_type)
        attributes = []
        if country:
            attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        # (CA names: WAP-211 §6.6.4 / Annex B, at most 5 single-attribute RDNs.)
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        name = x509.Name(attributes)
        start = now - _BACKDATE
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(_serial())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def sign(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        now: datetime.datetime,
        days: int = 825,
        hosts: Iterable[str] | None = None,
    ) -> IssuedCertificate:
        """Sign a device certificate for `csr` following `SERVER_PROFILE`.

        The subject keeps the CSR's countryName, organizationName, commonName and
        serialNumber attributes (others are dropped); subjectAltName is `hosts`, or the
        CSR's own, or the commonName."""
        if not csr.is_signature_valid:
            raise ConfigError("the CSR's signature does not verify")
        kept = [a for a in csr.subject if a.oid in _SUBJECT_OIDS]
        if not any(a.oid == NameOID.COMMON_NAME for a in kept):
            raise ConfigError("the CSR names no commonName (the server's host name)")
        public_key = csr.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise ConfigError(f"unsupported key in the CSR: {type(public_key).__name__}")
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
            raise ConfigError(f"RSA key of {public_key.key_size} bits is too small (< 2048)")
        if hosts is not None:
            san = san_for(hosts)
        else:
            try:
                san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                cn = next(a.value for a in kept if a.oid == NameOID.COMMON_NAME)
                san = san_for([str(cn)])
        start = now - _BACKDATE
        serial = _serial()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(kept))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(
                _key_usage(False, encipher=isinstance(public_key, rsa.RSAPublicKey)),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(san, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        size = len(cert.public_bytes(serialization.Encoding.DER))
        if size > MAX_SERVER_CERT_BYTES:
            raise ConfigError(
                f"the certificate would be {size} octets, over WAP-211's {MAX_SERVER_CERT_BYTES}"
                " (use fewer hosts or shorter names)"
            )
        return IssuedCertificate(serial, cert.public_bytes(serialization.Encoding.PEM))


def _serial() -> int:
    """A positive serial of SERIAL_BYTES octets whose DER INTEGER needs no sign octet."""
    return int.from_bytes(os.urandom(SERIAL_BYTES)) >> 1 | 1 << (SERIAL_BYTES * 8 - 2)
