"""Gives a card image what HTTPS needs, as a card issuer's factory would: a key pair made in
the card, a CSR, a device certificate from the issuer CA, the chain installed in the card.

`ensure_card_tls` is idempotent: `openscws up` calls it on every start and it only acts
when something is missing, expired, or no longer matches the CA."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from openscws.errors import ConfigError
from openscws.pki.authority import parse_csr
from openscws.pki.keys import KeyType
from openscws.pki.profile import DEFAULT_HOSTS
from openscws.store.issuer import IssuerCa
from openscws.uicc.keystore import CardKeyStore

__all__ = ["TlsProvisioning", "ensure_card_tls", "issue_device_certificate"]

log = logging.getLogger(__name__)

_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class TlsProvisioning:
    generated_key: bool
    created_ca: bool
    issued: bool
    certificate: x509.Certificate
    ca_path: Path


def issue_device_certificate(
    keys: CardKeyStore,
    ca: IssuerCa,
    *,
    iccid: str,
    now: datetime.datetime,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    days: int = 825,
) -> x509.Certificate:
    """CSR from the card, signed by `ca`, chain (device certificate + CA) installed."""
    csr = parse_csr(
        keys.make_csr(
            common_name=hosts[0],
            serial_number=iccid,
            organization="openscws SCWS",
            hosts=hosts,
        )
    )
    issued, _ = ca.sign(csr, now=now, days=days, hosts=hosts)
    return keys.install_chain(issued.pem + ca.cert_pem)


def _needs_new_certificate(keys: CardKeyStore, ca: IssuerCa, now: datetime.datetime) -> str | None:
    cert = keys.device_certificate()
    if cert is None:
        return "the card has no device certificate"
    if cert.not_valid_after_utc - _RENEW_BEFORE < now:
        return "the device certificate expires soon"
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "the device certificate is not from this CA"
    if cert.public_key() != serialization.load_pem_public_key(keys.public_key_pem()):
        return "the device certificate is for another key"
    return None


def ensure_card_tls(
    keys: CardKeyStore,
    ca_dir: Path,
    *,
    iccid: str,
    now: datetime.datetime,
    key_type: KeyType = "rsa",
) -> TlsProvisioning:
    generated = created = issued = False
    if not keys.has_key:
        keys.generate(key_type)
        generated = True
        log.info("made the card's %s key pair", key_type.upper())
    if IssuerCa.exists(ca_dir):
        ca = IssuerCa.open(ca_dir)
    else:
        ca = IssuerCa.create(ca_dir, now=now, key_type=key_type)
        created = True
        log.info("created the issuer CA at %s", ca_dir)
    why = _needs_new_certificate(keys, ca, now)
    if why is not None:
        issue_device_certificate(keys, ca, iccid=iccid, now=now)
        issued = True
        log.info("%s: issued one from %s", why, ca.cert_path)
    cert = keys.device_certificate()
    if cert is None:  # pragma: no cover - install_chain just stored it
        raise ConfigError("the device certificate did not install")
    return TlsProvisioning(generated, created, issued, cert, ca.cert_path)
