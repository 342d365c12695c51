"""The issuer CA and the WAP-profiled device certificate (WAP-211, SCWS §11.1.2)."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openscws.errors import ConfigError
from openscws.pki.authority import CertificateAuthority, parse_csr
from openscws.pki.keys import build_csr, generate_key, key_from_pem, key_to_pem
from openscws.pki.profile import (
    CA_PROFILE,
    DEFAULT_HOSTS,
    MAX_CA_CERT_BYTES,
    MAX_SERVER_CERT_BYTES,
    SERIAL_BYTES,
    SERVER_PROFILE,
)

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
ICCID = "8988211000000000003"


@pytest.fixture(scope="module", params=["rsa", "ec"])
def ca(request: pytest.FixtureRequest) -> CertificateAuthority:
    return CertificateAuthority.create(now=NOW, key_type=request.param)


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    return generate_key("rsa")


def _csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    return build_csr(
        key,
        common_name="localhost",
        serial_number=ICCID,
        organization="openscws SCWS",
        hosts=DEFAULT_HOSTS,
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_ca_certificate_follows_wap211_6_6(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    assert cert.version is x509.Version.v3
    assert cert.subject == cert.issuer  # §6.6.4 self-signed
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert 0 < cert.serial_number < 1 << (SERIAL_BYTES * 8 - 1)  # §6.2.1: <= 8 octets
    assert len(_der(cert)) <= MAX_CA_CERT_BYTES
    cert.verify_directly_issued_by(cert)


def test_device_certificate_follows_the_profile(
    ca: CertificateAuthority, card_key: rsa.RSAPrivateKey
) -> None:
    issued = ca.sign(_csr(card_key), now=NOW)
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert cert.serial_number == issued.serial
    assert cert.version is x509.Version.v3
    assert cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.public_key() == card_key.public_key()
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    # Subject: O, CN, serialNumber (PrintableString), one attribute per RDN, <= 5 RDNs.
    rdns = list(cert.subject.rdns)
    assert len(rdns) <= 5
    assert all(len(r) == 1 for r in rdns)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    serial_attr = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0]
    assert serial_attr.value == ICCID
    assert serial_attr._type.name == "PrintableString"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 825
    assert len(_der(cert)) <= MAX_SERVER_CERT_BYTES  # WAP-211 §6.1


def test_ec_card_key_gets_no_key_encipherment(ca: CertificateAuthority) -> None:
    key = generate_key("ec")
    cert = x509.load_pem_x509_certificate(ca.sign(_csr(key), now=NOW).pem)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_encipherment


def test_serials_are_unique(ca: CertificateAuthority, card_key: rsa.RSAPrivateKey) -> None:
    serials = {ca.sign(_csr(card_key), now=NOW).serial for _ in range(20)}
    assert len(serials) == 20


def test_hosts_override_the_csr(ca: CertificateAuthority, card_key: rsa.RSAPrivateKey) -> None:
    cert = x509.load_pem_x509_certificate(
        ca.sign(_csr(card_key), now=NOW, hosts=("scws.example",)).pem
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["scws.example"]


def test_csr_without_san_gets_its_common_name(
    ca: CertificateAuthority, card_key: rsa.RSAPrivateKey
) -> None:
    csr = build_csr(card_key, common_name="card.local")
    cert = x509.load_pem_x509_certificate(ca.sign(csr, now=NOW).pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["card.local"]


def test_unknown_subject_attributes_are_dropped(
    ca: CertificateAuthority, card_key: rsa.RSAPrivateKey
) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "x@example.org"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(card_key, hashes.SHA256())
    cert = x509.load_pem_x509_certificate(ca.sign(csr, now=NOW).pem)
    assert not cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)


def test_refusals(ca: CertificateAuthority, card_key: rsa.RSAPrivateKey) -> None:
    no_cn = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))
        .sign(card_key, hashes.SHA256())
    )
    with pytest.raises(ConfigError, match="commonName"):
        ca.sign(no_cn, now=NOW)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="too small"):
        ca.sign(build_csr(small, common_name="localhost"), now=NOW)
    many = tuple(f"host{n}.example.org" for n in range(40))
    with pytest.raises(ConfigError, match="WAP-211"):
        ca.sign(_csr(card_key), now=NOW, hosts=many)


def test_parse_csr_checks_pem_der_and_signature(card_key: rsa.RSAPrivateKey) -> None:
    csr = _csr(card_key)
    pem = csr.public_bytes(serialization.Encoding.PEM)
    der = csr.public_bytes(serialization.Encoding.DER)
    assert parse_csr(pem).subject == csr.subject
    assert parse_csr(der).subject == csr.subject
    with pytest.raises(ConfigError, match="not a certificate signing request"):
        parse_csr(b"garbage")
    tampered = bytearray(der)
    tampered[-5] ^= 0xFF  # inside the signature
    with pytest.raises(ConfigError):
        parse_csr(bytes(tampered))


def test_ca_round_trips_through_pem(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem)
    assert again.certificate == ca.certificate
    other = CertificateAuthority.create(now=NOW, key_type="ec")
    with pytest.raises(ConfigError, match="does not match"):
        CertificateAuthority.from_pem(ca.cert_pem, other.key_pem)


def test_keys_round_trip_and_refuse_garbage() -> None:
    key = generate_key("ec")
    assert key_from_pem(key_to_pem(key)).public_key() == key.public_key()
    with pytest.raises(ConfigError):
        key_from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError):
        generate_key("dsa")  # type: ignore[arg-type]


def test_profiles_name_their_clauses() -> None:
    for rule in (*SERVER_PROFILE, *CA_PROFILE):
        assert rule.field
        assert rule.value
        assert rule.source
    assert any("WAP-211 §6.4" in r.source for r in SERVER_PROFILE)
