"""Which TLS versions and suites really negotiate with each profile, found by handshakes.

The cipher strings in `openscws.tls.context` say what OpenSSL *enables*; what a client can
actually *negotiate* also depends on the key (RSA key exchange needs an RSA key), on DH
parameters (no DHE without them), on the security level and on the version (TLS 1.0 has no
AEAD suite). So this module asks the stacks: for every suite this OpenSSL knows (its
``ALL:COMPLEMENTOFALL`` list) and every version from TLS 1.0 to 1.2, a client pinned to that one
suite and version runs a handshake in memory against the endpoint's server context, built by
the same builder the endpoint uses:

* **card** (HTTPS port 4116): `server_context` with an RSA 2048 key and certificate like the
  card's (keyUsage digitalSignature and keyEncipherment), PSK-TLS enabled;
* **admin** (the admin server's PSK-TLS port): `psk_server_context`.

In "compat", TLS_PSK_WITH_3DES_EDE_CBC_SHA is served by GnuTLS (`openscws.tls.gnutls`), so
it is tried with a GnuTLS client pinned to each version. TLS 1.3 suites cannot be pinned
from Python's `ssl` (it has no `set_ciphersuites`): TLS 1.3 lists the suites the server
context enables, once a TLS 1.3 handshake completed (PSK contexts stop at TLS 1.2).

`openscws doctor` prints these tables; docs/tls.md carries them (`render_markdown`), and a
test regenerates them so the page cannot drift. Nothing here opens a socket."""

from __future__ import annotations

import datetime
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from openscws.tls.context import Profile, psk_server_context, server_context
from openscws.tls.psk import PskKeys

__all__ = ["Endpoint", "Negotiable", "negotiable", "render_markdown", "render_text"]

Endpoint = Literal["card", "admin"]

VERSIONS: Final = (
    ("TLSv1", ssl.TLSVersion.TLSv1),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
)
TLS13: Final = "TLSv1.3"
_KEY: Final = bytes(range(16))
_IDENTITY: Final = "suites"
GNUTLS_3DES: Final = "PSK-3DES-EDE-CBC-SHA"
"""The OpenSSL spelling of TLS_PSK_WITH_3DES_EDE_CBC_SHA, served by GnuTLS."""
_GNUTLS_ENDPOINTS: Final = ("card", "admin")
"""Endpoints that hand a 3DES-only PSK client to GnuTLS in "compat"."""
_GNUTLS_VERSION: Final = {
    "TLSv1": "VERS-TLS1.0",
    "TLSv1.1": "VERS-TLS1.1",
    "TLSv1.2": "VERS-TLS1.2",
}


@dataclass(frozen=True, slots=True)
class Negotiable:
    """What negotiates with one endpoint in one profile: per version, (OpenSSL name, IANA
    code, stack) in OpenSSL's order. `stack` is "openssl" or "gnutls"."""

    endpoint: Endpoint
    profile: Profile
    versions: dict[str, tuple[tuple[str, int, str], ...]]

    @property
    def suites(self) -> frozenset[str]:
        return frozenset(name for row in self.versions.values() for name, _, _ in row)


def _throwaway_rsa() -> tuple[bytes, bytes]:
    """A self-signed RSA 2048 certificate with the card's key usages, and its key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36500))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _known_suites() -> list[tuple[str, int]]:
    """Every TLS <= 1.2 suite this OpenSSL has: (name, IANA code)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    return [
        (str(s["name"]), int(s["id"]) & 0xFFFF)
        for s in ctx.get_ciphers()
        if s["protocol"] != "TLSv1.3"
    ]


def _lookup(identity: str | None) -> bytes | None:
    return _KEY if identity == _IDENTITY else None


def _client(version: ssl.TLSVersion, suite: str | None) -> ssl.SSLContext | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = version
            ctx.maximum_version = version
        if suite is not None:
            ctx.set_ciphers(suite + ":@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return None
    if suite is not None and "PSK" in suite:
        ctx.set_psk_client_callback(lambda hint: (_IDENTITY, _KEY))
    return ctx


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, str] | None:
    """(protocol, suite) of an in-memory handshake between the two contexts, or None."""
    bios = [ssl.MemoryBIO() for _ in range(4)]  # server in/out, client in/out
    ends = (
        server.wrap_bio(bios[0], bios[1], server_side=True),
        client.wrap_bio(bios[2], bios[3], server_side=False),
    )
    done = [False, False]
    for _ in range(12):
        for n, end in enumerate(ends):
            if not done[n]:
                try:
                    end.do_handshake()
                    done[n] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    return None
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
        if all(done):
            cipher = ends[0].cipher()
            version = ends[0].version()
            return None if cipher is None or version is None else (version, cipher[0])
    return None


def _gnutls_3des(version: str) -> bool:
    from openscws.tls import gnutls
    from openscws.tls.alert import TlsAlert

    if gnutls.available() is not None:
        return False
    priority = f"NONE:+{_GNUTLS_VERSION[version]}:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"
    try:
        suite, protocol = gnutls.self_test(priority)
    except (gnutls.GnutlsUnavailable, TlsAlert):
        return False
    return suite == "TLS_PSK_3DES_EDE_CBC_SHA1" and protocol == version


def negotiable(endpoint: Endpoint, profile: Profile) -> Negotiable:
    """Run the handshakes (a few hundred, in memory: about a second)."""
    server: ssl.SSLContext
    if endpoint == "card":
        chain, key = _throwaway_rsa()
        server = server_context(chain, key, profile=profile, psk=PskKeys(_lookup))
    else:
        server = psk_server_context(PskKeys(_lookup), profile=profile)
    known = _known_suites()
    versions: dict[str, tuple[tuple[str, int, str], ...]] = {}
    for label, version in VERSIONS:
        row: list[tuple[str, int, str]] = []
        for name, code in known:
            client = _client(version, name)
            if client is not None and handshake(server, client) == (label, name):
                row.append((name, code, "openssl"))
        if profile == "compat" and endpoint in _GNUTLS_ENDPOINTS and _gnutls_3des(label):
            row.append((GNUTLS_3DES, 0x008B, "gnutls"))
        if row:
            versions[label] = tuple(row)
    client13 = _client(ssl.TLSVersion.TLSv1_3, None) if ssl.HAS_TLSv1_3 else None
    if client13 is not None and handshake(server, client13) is not None:
        versions[TLS13] = tuple(
            (str(s["name"]), int(s["id"]) & 0xFFFF, "openssl")
            for s in server.get_ciphers()
            if s["protocol"] == "TLSv1.3"
        )
    return Negotiable(endpoint, profile, versions)


_TITLES: Final[dict[Endpoint, str]] = {
    "card": "card HTTPS port 4116 (`card.tls_profile`; RSA key, PSK-TLS enabled)",
    "admin": "admin server PSK-TLS port (`admin.tls_profile`)",
}


def _name(name: str, code: int, stack: str) -> str:
    tail = ", GnuTLS" if stack == "gnutls" else ""
    return f"{name} (0x{code:04X}{tail})"


def render_markdown(tables: list[Negotiable]) -> str:
    """One Markdown table per endpoint and profile: version, then its suites."""
    out: list[str] = []
    for table in tables:
        out.append(f"**{_TITLES[table.endpoint]}, `{table.profile}`**")
        out.append("")
        out.append("| version | suites that negotiate |")
        out.append("|---|---|")
        for version, row in table.versions.items():
            names = ", ".join(_name(*suite) for suite in row)
            out.append(f"| {version} | {names} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def render_text(table: Negotiable, say: Callable[[str], None]) -> None:
    """The same for `openscws doctor`, one line per version."""
    say(f"{_TITLES[table.endpoint]}, {table.profile}:")
    for version, row in table.versions.items():
        say(f"  {version}: " + " ".join(name for name, _, _ in row))


def all_tables() -> list[Negotiable]:
    return [
        negotiable(endpoint, profile)
        for endpoint in ("card", "admin")
        for profile in ("modern", "compat")
    ]


BEGIN: Final = "<!-- tls-suites: begin (generated by scripts/tls-suites) -->"
END: Final = "<!-- tls-suites: end -->"


def splice(page: str, tables: str) -> str:
    """`page` with the text between `BEGIN` and `END` replaced by `tables`."""
    start, stop = page.find(BEGIN), page.find(END)
    if start < 0 or stop <= start:
        raise ValueError("the page has no tls-suites markers")
    return page[: start + len(BEGIN)] + "\n\n" + tables + "\n" + page[stop:]


def section(page: str) -> str | None:
    start, stop = page.find(BEGIN), page.find(END)
    if start < 0 or stop <= start:
        return None
    return page[start + len(BEGIN) : stop].strip("\n") + "\n"
