"""The issuer CA on disk, the card image's secure area, and first-run provisioning."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from openscws.errors import ConfigError, StoreError
from openscws.store import CardImage
from openscws.store.issuer import IssuerCa
from openscws.store.provision import ensure_card_tls
from openscws.uicc.keystore import CardKeyStore

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.UTC)


def test_secret_area_is_private_and_atomic(image: CardImage) -> None:
    assert image.get_secret("x.pem") is None
    image.set_secret("x.pem", b"one")
    image.set_secret("x.pem", b"two")
    assert image.get_secret("x.pem") == b"two"
    secure = image.root / "secure"
    assert stat.S_IMODE(secure.stat().st_mode) == 0o700
    assert stat.S_IMODE((secure / "x.pem").stat().st_mode) == 0o600
    assert [p.name for p in secure.iterdir()] == ["x.pem"]  # no temp file left
    assert image.delete_secret("x.pem")
    assert not image.delete_secret("x.pem")
    for bad in ("", "../card.json", ".hidden", "a/b", "UPPER"):
        with pytest.raises(StoreError, match="invalid secret name"):
            image.set_secret(bad, b"")
    with pytest.raises(StoreError, match="at most"):
        image.set_secret("big", b"x" * (1024 * 1024 + 1))


def test_stray_secret_temps_are_cleaned(image: CardImage) -> None:
    image.set_secret("k", b"v")
    stray = image.root / "secure" / ".tmp-k-1-dead"
    stray.write_bytes(b"half")
    image.set_secret("k", b"w")
    assert not stray.exists()


def test_ca_directory(tmp_path: Path) -> None:
    root = tmp_path / "ca"
    assert not IssuerCa.exists(root)
    with pytest.raises(ConfigError, match="openscws ca init"):
        IssuerCa.open(root)
    ca = IssuerCa.create(root, now=NOW, key_type="ec")
    assert IssuerCa.exists(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "ca-key.pem").stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        IssuerCa.create(root, now=NOW)
    again = IssuerCa.open(root)
    assert again.certificate == ca.certificate
    (root / "ca.pem").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a CA certificate"):
        IssuerCa.open(root)


def test_signing_records_each_certificate(tmp_path: Path, image: CardImage) -> None:
    from openscws.pki.authority import parse_csr

    ca = IssuerCa.create(tmp_path / "ca", now=NOW, key_type="ec")
    keys = CardKeyStore(image)
    keys.generate("ec")
    csr = parse_csr(keys.make_csr(common_name="localhost"))
    issued, path = ca.sign(csr, now=NOW)
    assert path.read_bytes() == issued.pem
    assert path.name == f"{issued.serial:016x}.pem"
    assert ca.issued() == [path]


def test_ensure_card_tls_is_idempotent(tmp_path: Path, image: CardImage) -> None:
    keys = CardKeyStore(image)
    ca_dir = tmp_path / "ca"
    first = ensure_card_tls(keys, ca_dir, iccid=image.meta.iccid, now=NOW, key_type="ec")
    assert first.generated_key
    assert first.created_ca
    assert first.issued
    assert first.ca_path == ca_dir / "ca.pem"
    cert = first.certificate
    assert cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == (
        image.meta.iccid
    )
    second = ensure_card_tls(keys, ca_dir, iccid=image.meta.iccid, now=NOW, key_type="ec")
    assert not (second.generated_key)
    assert not (second.created_ca)
    assert not (second.issued)
    assert second.certificate == cert
    # Close to expiry: a new certificate, same key.
    late = cert.not_valid_after_utc - datetime.timedelta(days=1)
    renewed = ensure_card_tls(keys, ca_dir, iccid=image.meta.iccid, now=late, key_type="ec")
    assert renewed.issued
    assert not renewed.generated_key
    assert renewed.certificate.serial_number != cert.serial_number
    # Another CA: the card's certificate is re-issued by it.
    os.rename(ca_dir, tmp_path / "old-ca")
    moved = ensure_card_tls(keys, ca_dir, iccid=image.meta.iccid, now=NOW, key_type="ec")
    assert moved.created_ca
    assert moved.issued
    moved.certificate.verify_directly_issued_by(IssuerCa.open(ca_dir).certificate)
    keys.server_context()  # loads
