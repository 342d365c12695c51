"""The issuer CA on disk. Layout of a CA directory (mode 0700)::

    ca.pem            the CA certificate: give it to browsers and curl (--cacert)
    ca-key.pem        the CA private key, mode 0600
    issued/<hex>.pem  every certificate it signed, named by serial number

Every file is written atomically (openscws.store.atomic); ca.pem is written last, so its
presence marks a complete CA."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509

from openscws.errors import ConfigError
from openscws.pki.authority import DEFAULT_CA_NAME, CertificateAuthority, IssuedCertificate
from openscws.pki.keys import KeyType
from openscws.pki.profile import SERIAL_BYTES
from openscws.store.atomic import atomic_write

__all__ = ["IssuerCa"]


class IssuerCa:
    """A CA directory. Use `create` or `open`."""

    def __init__(self, root: Path, authority: CertificateAuthority) -> None:
        self.root = root
        self.authority = authority

    @property
    def cert_path(self) -> Path:
        return self.root / "ca.pem"

    @property
    def certificate(self) -> x509.Certificate:
        return self.authority.certificate

    @property
    def cert_pem(self) -> bytes:
        return self.authority.cert_pem

    @staticmethod
    def exists(root: Path) -> bool:
        return (Path(root) / "ca.pem").is_file()

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        now: datetime.datetime,
        common_name: str = DEFAULT_CA_NAME,
        organization: str = "openscws",
        key_type: KeyType = "rsa",
        days: int = 3650,
    ) -> IssuerCa:
        """A new CA in `root` (see `CertificateAuthority.create`)."""
        root = Path(root)
        if cls.exists(root):
            raise ConfigError(f"a CA already exists at {root}")
        authority = CertificateAuthority.create(
            now=now,
            common_name=common_name,
            organization=organization,
            key_type=key_type,
            days=days,
        )
        try:
            (root / "issued").mkdir(parents=True, exist_ok=True)
            os.chmod(root, 0o700)
            atomic_write(root / "ca-key.pem", (authority.key_pem,), 0o600)
            atomic_write(root / "ca.pem", (authority.cert_pem,))
        except OSError as exc:
            raise ConfigError(f"cannot write the CA at {root}: {exc}") from exc
        return cls(root, authority)

    @classmethod
    def open(cls, root: Path) -> IssuerCa:
        root = Path(root)
        try:
            cert_pem = (root / "ca.pem").read_bytes()
            key_pem = (root / "ca-key.pem").read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"no CA at {root}; create one with `openscws ca init`") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the CA at {root}: {exc}") from exc
        return cls(root, CertificateAuthority.from_pem(cert_pem, key_pem))

    def sign(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        now: datetime.datetime,
        days: int = 825,
        hosts: tuple[str, ...] | None = None,
    ) -> tuple[IssuedCertificate, Path]:
        """Sign and record the certificate under issued/."""
        issued = self.authority.sign(csr, now=now, days=days, hosts=hosts)
        path = self.root / "issued" / f"{issued.serial:0{SERIAL_BYTES * 2}x}.pem"
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, (issued.pem,))
        except OSError as exc:
            raise ConfigError(f"cannot record the issued certificate: {exc}") from exc
        return issued, path

    def issued(self) -> list[Path]:
        return sorted((self.root / "issued").glob("*.pem"))
