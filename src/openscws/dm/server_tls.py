"""The DM server's TLS profile (OMA-TS-DM_Security, transport layer security).

The DM security profile asks a DM server for TLS 1.1 (mandatory), TLS 1.0 and TLS 1.2
(optional), SSL 3.0 (optional) and PSK-TLS, and forbids SSL 2.0. This module builds the one
`ssl.SSLContext` the DM server listens with:

* **Versions**: TLS 1.0, 1.1 and 1.2 (`min_tls` raises the floor). SSL 2.0 and 3.0 are never
  enabled (this OpenSSL has no SSL 3.0 at all); TLS 1.3 is not offered, because PSK-TLS as
  RFC 4279 defines it, and the DM profile, stop at TLS 1.2.
* **Certificate suites** (`CERT_SUITES`): the forward-secret AES and ChaCha20 suites and
  TLS_RSA_WITH_AES_128_CBC_SHA, named one by one: no RC4, 3DES, NULL, export, MD5 or
  anonymous suite; what OpenSSL enables is checked against the list once more.
* **PSK suites** (`PSK_SUITES`, RFC 4279 and RFC 5487): the six AES-128 SHA-256 suites the DM
  security profile lists, each enabled only if this OpenSSL has it. The DHE_PSK ones need DH
  parameters: the ffdhe2048 group of RFC 7919 is loaded. The RSA_PSK ones need the server's
  RSA certificate.
* **Client certificates** (X.509 transport authentication) are asked for when a client CA is
  configured; a certificate from another CA fails the handshake (alert unknown_ca).

**OpenSSL security level.** OpenSSL 3 refuses, at security level 1 and above, the MD5+SHA-1
and SHA-1 handshake signatures TLS 1.0 and 1.1 need with a certificate. As TLS 1.1 is
mandatory for DM, a context that enables TLS 1.0 or 1.1 runs at ``@SECLEVEL=0``. That level
governs nothing else here: the suite list is fixed above and checked, the server's own key is
ours (RSA 2048 or P-256), the DH group is ffdhe2048, and a client certificate is checked by
`weak_certificate` after the handshake (RSA under 2048 bits, EC under 256 bits, or an MD5 or
SHA-1 signature is refused with 403). With ``min_tls = "1.2"`` the default level applies."""

from __future__ import annotations

import ssl
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openscws.errors import ConfigError
from openscws.tls.context import FFDHE2048_PEM
from openscws.tls.psk import PskKeys, server_key

__all__ = [
    "ALLOWED_CERT_SUITES",
    "CERT_SUITES",
    "PSK_SUITES",
    "TLS_VERSIONS",
    "DmTls",
    "PskSuite",
    "available_psk_suites",
    "certificate_fingerprint",
    "dm_server_context",
    "weak_certificate",
]


@dataclass(frozen=True, slots=True)
class PskSuite:
    name: str
    """The IANA name."""
    openssl: str
    code: int
    clause: str


PSK_SUITES: Final = (
    PskSuite("TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256", 0x00A8, "RFC 5487 §2"),
    PskSuite("TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256", 0x00AE, "RFC 5487 §3"),
    PskSuite(
        "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", "DHE-PSK-AES128-GCM-SHA256", 0x00AA, "RFC 5487 §2"
    ),
    PskSuite(
        "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", "DHE-PSK-AES128-CBC-SHA256", 0x00B2, "RFC 5487 §3"
    ),
    PskSuite(
        "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", "RSA-PSK-AES128-GCM-SHA256", 0x00AC, "RFC 5487 §2"
    ),
    PskSuite(
        "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256", "RSA-PSK-AES128-CBC-SHA256", 0x00B6, "RFC 5487 §3"
    ),
)
"""The PSK-TLS suites of the DM security profile (OMA-TS-DM_Security), RFC 4279 key
exchanges with RFC 5487's SHA-256 suites."""

CERT_SUITES: Final = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "DHE-RSA-AES128-SHA256",
    "DHE-RSA-AES256-SHA256",
    "DHE-RSA-AES128-SHA",
    "DHE-RSA-AES256-SHA",
    "AES128-SHA",
)
"""The certificate suites, in the server's order of preference: forward-secret AEAD first,
then the forward-secret CBC suites TLS 1.0 and 1.1 need, and TLS_RSA_WITH_AES_128_CBC_SHA
(RFC 5246 §9's mandatory suite). No RC4, 3DES, NULL, export, MD5 or anonymous suite."""
ALLOWED_CERT_SUITES: Final = frozenset(CERT_SUITES)
"""Every certificate suite the context may end up with; anything else OpenSSL enables is a
configuration error."""

TLS_VERSIONS: Final = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
}
"""`min_tls` values; the maximum is TLS 1.2."""

_MIN_RSA_BITS: Final = 2048
_MIN_EC_BITS: Final = 256
_WEAK_HASHES: Final = ("md5", "sha1")


def available_psk_suites() -> tuple[PskSuite, ...]:
    """The profile's PSK suites this OpenSSL can negotiate."""
    out = []
    for suite in PSK_SUITES:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.set_ciphers(suite.openssl)
        except ssl.SSLError:
            continue
        if any(c["name"] == suite.openssl for c in ctx.get_ciphers()):
            out.append(suite)
    return tuple(out)


class DmTls:
    """The context, and what each connection's handshake told it: the PSK identity the
    client used. OpenSSL names it only to the server callback, which Python calls with the
    identity alone, so the shell sets `active` to the connection around each handshake step
    (everything runs on one event loop thread).

    The keys live in a database, and OpenSSL's callback is synchronous: the shell reads the
    identity from the ClientKeyExchange first (`openscws.tls.psk_peek`), fetches its key off
    the event loop and hands it over with `prefetched`, so the callback finds it in memory.
    `keys` (the table itself) is only asked when nothing was fetched."""

    def __init__(
        self,
        context: ssl.SSLContext,
        psk_suites: tuple[PskSuite, ...],
        keys: PskKeys | None,
        psk_context: ssl.SSLContext | None = None,
    ) -> None:
        self.context = context
        self.psk_suites = psk_suites
        self.keys = keys
        self.psk_context = psk_context
        """For a ClientHello offering PSK suites only (None: `context` serves all)."""
        self._cert_codes = frozenset(int(c["id"]) & 0xFFFF for c in context.get_ciphers()) - {
            s.code for s in psk_suites
        }
        self._identities: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        self._fetched: weakref.WeakKeyDictionary[object, tuple[str, bytes | None]] = (
            weakref.WeakKeyDictionary()
        )
        self.active: object | None = None
        """The connection whose handshake step runs now (set by the shell around it)."""

    def prefetched(self, connection: object, identity: str, key: bytes | None) -> None:
        """The key (None: unknown) the table gave for `identity` on `connection`."""
        self._fetched[connection] = (identity, key)

    def key(self, identity: str | None) -> bytes:
        """What the callback answers for the active connection: the prefetched key, else
        the table's; a decoy for an unknown identity (`openscws.tls.psk`)."""
        assert self.keys is not None
        conn = self.active
        if conn is not None:
            self.remember(conn, identity)
            got = self._fetched.get(conn)
            if got is not None and got[0] == identity:
                return server_key(lambda _: got[1], identity)
        return self.keys.key(identity)

    def context_for(self, offered: tuple[int, ...]) -> ssl.SSLContext:
        """The context for a ClientHello offering `offered` (IANA suite codes)."""
        if self.psk_context is not None and not self._cert_codes.intersection(offered):
            return self.psk_context
        return self.context

    def remember(self, connection: object, identity: str | None) -> None:
        if identity is not None:
            self._identities[connection] = identity

    def psk_identity(self, connection: object) -> str | None:
        return self._identities.get(connection)


def dm_server_context(
    cert: Path,
    key: Path,
    *,
    psk: PskKeys | None = None,
    client_ca: Path | None = None,
    min_tls: str = "1.0",
) -> DmTls:
    """The DM server's context (see the module's docstring). `psk` enables the PSK suites;
    `client_ca` asks for client certificates from that CA (optional per connection: a client
    without one authenticates another way, a client with another CA's fails).

    With both, a second context without the certificate request serves the clients that
    offer PSK suites only (`DmTls.psk_context`): a PSK handshake carries no client
    certificate, and some clients (GnuTLS) end an RSA_PSK handshake that asks for one."""
    version = TLS_VERSIONS.get(min_tls)
    if version is None:
        raise ConfigError(f"min_tls {min_tls!r}: one of {', '.join(TLS_VERSIONS)}")
    suites = available_psk_suites() if psk is not None else ()
    own = _first_certificate(cert)
    weak = None if own is None else weak_certificate(own)
    if weak is not None:
        raise ConfigError(f"DM server TLS: the certificate {cert} is too weak: {weak}")
    ctx = _context(cert, key, version, suites, client_ca)
    psk_ctx = _context(cert, key, version, suites, None) if suites and client_ca else None
    tls = DmTls(ctx, suites, psk, psk_ctx)
    if psk is not None:
        for c in (ctx, psk_ctx):
            if c is not None:
                c.set_psk_server_callback(tls.key, psk.hint)
    return tls


def _context(
    cert: Path,
    key: Path,
    version: ssl.TLSVersion,
    suites: tuple[PskSuite, ...],
    client_ca: Path | None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS 1.0/1.1: the DM profile's deliberate use
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_TICKET
    )
    ciphers = ":".join(CERT_SUITES)
    if suites:
        ciphers += ":" + ":".join(s.openssl for s in suites)
    if version < ssl.TLSVersion.TLSv1_2:
        ciphers += ":@SECLEVEL=0"
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise ConfigError(f"OpenSSL enables none of the DM suites: {exc}") from exc
    psk_names = {s.openssl for s in suites}
    for c in ctx.get_ciphers():
        name = str(c["name"])
        if c["protocol"] == "TLSv1.3":
            continue  # listed by OpenSSL, never negotiated: the maximum is TLS 1.2
        if name not in ALLOWED_CERT_SUITES and name not in psk_names:
            raise ConfigError(f"refusing to enable TLS suite {name} for the DM server")
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"DM server TLS: no such file {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"DM server TLS: cannot use {cert} with {key}: {exc}") from None
    with tempfile.NamedTemporaryFile(prefix="openscws-dh-") as dh:
        dh.write(FFDHE2048_PEM)
        dh.flush()
        ctx.load_dh_params(dh.name)
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"DM server TLS: cannot read the client CA {client_ca}: {exc}"
            ) from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _first_certificate(path: Path) -> bytes | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None  # OpenSSL has read it: not PEM we can parse here, left as it is
    return cert.public_bytes(serialization.Encoding.DER)


def weak_certificate(der: bytes) -> str | None:
    """Why a certificate is too weak for the DM server (its own, or a client's), or None."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "the certificate does not parse"
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits (at least {_MIN_RSA_BITS})"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < _MIN_EC_BITS:
        return f"EC key of {key.curve.key_size} bits (at least {_MIN_EC_BITS})"
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in _WEAK_HASHES:
        return f"signed with {algorithm.name.upper()}"
    return None


def certificate_fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, lower-case hex: how a device account names its
    client certificate."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()
