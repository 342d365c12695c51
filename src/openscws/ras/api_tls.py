"""TLS for the REST API and web console (the operators' side of the admin server).

Three ways, `admin.api_tls`:

- "off": plain HTTP, allowed on loopback addresses only. A non-loopback `admin.api_host`
  without TLS is refused at start (`check_api_bind`) unless `admin.api_insecure_bind`
  (`--insecure-bind`) says otherwise, and then it is logged loudly.
- "ca": a certificate issued from the project's issuer CA (the one that signs the card's
  device certificate, `[ca] dir`), kept in `<admin data dir>/api-tls/` (key 0600) and issued
  again when it is missing, due to expire, from another CA, or for other names.
- "files": the operator's own certificate chain and key (`admin.api_cert`, `admin.api_key`).

The context is strict whatever the certificate: TLS 1.2 and 1.3 only, and on TLS 1.2 only
ECDHE key exchange with AEAD suites (AES-GCM, ChaCha20-Poly1305), RFC 9325 §4.2's
recommendation; TLS 1.3's suites are all AEAD. No compression, no renegotiation, the
server's suite order, no TLS 1.2 session tickets."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from openscws.config import AdminSettings, Settings
from openscws.errors import ConfigError
from openscws.pki.authority import parse_csr
from openscws.pki.keys import build_csr, generate_key, key_to_pem
from openscws.pki.profile import DEFAULT_HOSTS
from openscws.store.atomic import atomic_write, fsync_dir
from openscws.store.issuer import IssuerCa

__all__ = [
    "API_TLS_DIR",
    "TLS12_CIPHERS",
    "ApiTls",
    "api_tls",
    "check_api_bind",
    "ensure_api_certificate",
    "is_loopback",
    "server_context",
]

log = logging.getLogger(__name__)

API_TLS_DIR: Final = "api-tls"
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK:!SHA1"
"""OpenSSL cipher string for TLS 1.2: ECDHE with AES-GCM or ChaCha20-Poly1305, nothing else."""
_RENEW_BEFORE: Final = datetime.timedelta(days=30)
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "*"})


@dataclass(frozen=True, slots=True)
class ApiTls:
    """What the API serves: the context, and where its certificate came from."""

    context: ssl.SSLContext
    cert_path: Path
    ca_path: Path | None
    """The issuer CA to trust (curl --cacert), when the certificate came from it."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The API's TLS context for a certificate chain and key (PEM files)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_NO_TICKET
    )
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"REST API TLS: no such file {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"REST API TLS: cannot use the certificate {cert} with the key {key}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    return context


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (a name is resolved)."""
    if host in _WILDCARDS:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in infos
    )


def check_api_bind(admin: AdminSettings, *, warn: bool = True) -> None:
    """Refuses plain HTTP on a non-loopback address (ConfigError, one line saying what to
    set), unless `api_insecure_bind`: then a loud warning (when `warn`)."""
    if admin.api_tls != "off" or is_loopback(admin.api_host):
        return
    if not admin.api_insecure_bind:
        raise ConfigError(
            f"the REST API and console would listen on {admin.api_host} (not a loopback "
            'address) without TLS: set admin.api_tls = "ca" (a certificate from the issuer '
            'CA) or "files" with admin.api_cert and admin.api_key (--api-tls, --api-cert, '
            "--api-key), or bind to 127.0.0.1; --insecure-bind serves plain HTTP anyway"
        )
    log.warning(
        "INSECURE: the REST API and console listen on %s:%d WITHOUT TLS "
        "(--insecure-bind / admin.api_insecure_bind): passwords, tokens and card data cross "
        'the network in the clear; set admin.api_tls to "ca" or "files"',
        admin.api_host,
        admin.api_port,
    )


def _hosts(admin: AdminSettings) -> tuple[str, ...]:
    hosts = list(DEFAULT_HOSTS)
    extra = list(admin.api_hosts)
    if admin.api_host in _WILDCARDS:
        extra.append(socket.gethostname())
    else:
        extra.append(admin.api_host.strip("[]"))
    for host in extra:
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return names


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _reason_to_issue(
    cert_path: Path, key_path: Path, ca: IssuerCa, hosts: tuple[str, ...], now: datetime.datetime
) -> str | None:
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        return "none yet"
    except (OSError, ValueError, TypeError):
        return "the stored one is damaged"
    cert = chain[0]
    if cert.not_valid_after_utc - _RENEW_BEFORE < now:
        return "the stored one expires soon"
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "the stored one is from another CA"
    if cert.public_key() != key.public_key():
        return "the stored key does not match it"
    if not {_normal(h) for h in hosts} <= {_normal(n) for n in _names(cert)}:
        return "the names changed"
    return None


def ensure_api_certificate(
    admin: AdminSettings, ca_dir: Path, *, now: datetime.datetime, days: int = 825
) -> tuple[Path, Path, Path]:
    """(certificate chain, key, CA certificate) for api_tls "ca": the stored pair when still
    good, else a new EC P-256 key and a certificate from the issuer CA (created if missing).
    The key is written (0600) before the certificate, so a crash between the two leaves a
    mismatch that the next start replaces."""
    directory = admin.data_dir / API_TLS_DIR
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if IssuerCa.exists(ca_dir):
        ca = IssuerCa.open(ca_dir)
    else:
        try:
            ca = IssuerCa.create(ca_dir, now=now)
            log.info("created the issuer CA at %s", ca_dir)
        except ConfigError:
            ca = IssuerCa.open(ca_dir)  # another process made it meanwhile
    hosts = _hosts(admin)
    why = _reason_to_issue(cert_path, key_path, ca, hosts, now)
    if why is None:
        return cert_path, key_path, ca.cert_path
    key = generate_key("ec")
    csr = parse_csr(
        build_csr(
            key, common_name=hosts[0], organization="openscws admin server", hosts=hosts
        ).public_bytes(serialization.Encoding.PEM)
    )
    issued, _ = ca.sign(csr, now=now, days=days, hosts=hosts)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(key_path, (key_to_pem(key),), 0o600)
        atomic_write(cert_path, (issued.pem + ca.cert_pem,), 0o644)
        fsync_dir(directory)
    except OSError as exc:
        raise ConfigError(f"cannot write the REST API certificate in {directory}: {exc}") from None
    log.info(
        "REST API certificate issued by %s for %s (%s)",
        ca.certificate.subject.rfc4514_string(),
        ", ".join(hosts),
        why,
    )
    return cert_path, key_path, ca.cert_path


def _check_key_file(key: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if key.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH):
            raise ConfigError(f"the REST API's TLS key {key} is readable by others: chmod 600 it")


def api_tls(settings: Settings, *, now: datetime.datetime | None = None) -> ApiTls | None:
    """The REST API's TLS as configured (None for "off"), after `check_api_bind`."""
    admin = settings.admin
    check_api_bind(admin)
    match admin.api_tls:
        case "ca":
            when = now or datetime.datetime.now(datetime.UTC)
            cert, key, ca = ensure_api_certificate(
                admin, settings.ca.dir, now=when, days=settings.ca.days
            )
            return ApiTls(server_context(cert, key), cert, ca)
        case "files":
            given, secret = admin.api_cert, admin.api_key
            if given is None or secret is None:
                raise ConfigError('admin.api_tls = "files" needs admin.api_cert and admin.api_key')
            _check_key_file(secret)
            return ApiTls(server_context(given, secret), given, None)
    return None
