"""`ssl.SSLContext` builders for the card's TLS endpoints (OMA SCWS §11 security protocols).

Two kinds of context:

* **Certificate** (`server_context`): the SCWS as local HTTPS server on port 4116, server
  authentication with its device certificate (SCWS §11.1.2; the spec asks for TLS 1.0 with a
  WAP-profiled X.509 certificate).
* **PSK-TLS** (`psk_server_context`, `psk_client_context`): RFC 4279, for the SCWS
  administration agent and the remote administration server (SCWS §11.1.1). The spec's
  suites are TLS_PSK_WITH_AES_128_CBC_SHA and TLS_PSK_WITH_3DES_EDE_CBC_SHA.

Profiles:

* ``"modern"``: TLS 1.2, plus TLS 1.3 where OpenSSL has it (PSK contexts: TLS 1.2 only).
* ``"compat"``: also TLS 1.0 and 1.1. Certificate contexts then run at OpenSSL security
  level 0, because OpenSSL 3 refuses TLS 1.0/1.1's MD5+SHA-1 handshake signatures at level 1
  and above; PSK handshakes sign nothing and keep the default level. Use it only for peers
  that need it (the spec's TLS 1.0 server authentication, §11.1.2).

Both profiles never offer SSLv2/3, RC4, NULL encryption, export, single-DES, MD5 or
anonymous suites; every builder checks the suites OpenSSL actually enabled and raises
`ConfigError` if one slipped through. TLS 1.3 PSK (external PSK via session resumption
callbacks) is a different mechanism that Python's `set_psk_*_callback` does not drive, so PSK
contexts cap the version at TLS 1.2.

None of this reads the clock or opens sockets. `server_context` does write the key to a
private temporary file for an instant: see its docstring."""

from __future__ import annotations

import os
import ssl
import tempfile
import warnings
from pathlib import Path
from typing import Final, Literal

from openscws.errors import ConfigError
from openscws.tls._openssl import disable_session_cache, tune_connection
from openscws.tls.psk import PskKeys

__all__ = [
    "CERT_CIPHERS",
    "CERT_CIPHERS_COMPAT",
    "FFDHE2048_PEM",
    "PSK_CIPHERS",
    "PSK_CIPHERS_MODERN",
    "PSK_SPEC_SUITES",
    "RSA_KX_SUITE",
    "Profile",
    "cert_cipher_string",
    "describe_stack",
    "psk_cipher_string",
    "psk_client_context",
    "psk_server_context",
    "server_context",
]

Profile = Literal["modern", "compat"]

_WEAK: Final = "!aNULL:!eNULL:!EXPORT:!RC4:!MD5:!DES:!3DES:!SRP:!DSS"
_EXCLUDE: Final = _WEAK + ":!kRSA"
CERT_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:" + _EXCLUDE
"""Certificate suites of the "modern" profile, TLS 1.2: forward secret AEAD only (TLS 1.3
suites are OpenSSL's own and always AEAD). No static-RSA key exchange, no CBC."""
RSA_KX_SUITE: Final = "AES128-SHA"
"""TLS_RSA_WITH_AES_128_CBC_SHA (0x002F): the suite every TLS 1.0-1.2 implementation must have
(RFC 5246 §9, "mandatory cipher suite"), so the one a TLS 1.0 client of SCWS §11.1.2 surely
offers. Static RSA key exchange (no forward secrecy, needs an RSA card key): "compat" only,
and the only static-RSA suite ever offered."""
CERT_CIPHERS_COMPAT: Final = (
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:"
    + RSA_KX_SUITE
    + ":"
    + _WEAK
)
"""The "compat" profile adds the AES-CBC suites that TLS 1.0 and 1.1 need: the forward secret
ones (ECDHE-RSA-AES128-SHA, DHE-RSA-AES128-SHA and kin) and `RSA_KX_SUITE`; still no 3DES
with certificates, nor anything weaker."""

FFDHE2048_PEM: Final = b"""\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
"""The group for DHE key exchange: ffdhe2048 of RFC 7919 Appendix A.1 (a 2048-bit safe prime,
generator 2), as PKCS #3 DHParameter in PEM (`openssl genpkey -genparam -algorithm DH -pkeyopt
group:ffdhe2048` prints exactly this). Without DH parameters OpenSSL never picks a DHE suite.
RFC 7919 §3 recommends the named groups over freshly generated ones."""

PSK_SPEC_SUITES: Final = ("PSK-AES128-CBC-SHA", "PSK-3DES-EDE-CBC-SHA")
"""OpenSSL names of SCWS §11.1.1.1's TLS_PSK_WITH_AES_128_CBC_SHA (0x008C) and
TLS_PSK_WITH_3DES_EDE_CBC_SHA (0x008B)."""

PSK_CIPHERS_MODERN: Final = "PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305"
"""Plain PSK suites of the "modern" profile: AEAD only, like its certificate suites."""
PSK_CIPHERS: Final = PSK_CIPHERS_MODERN + ":PSK-AES128-CBC-SHA256:PSK-AES128-CBC-SHA"
"""Plain PSK suites of the "compat" profile (no certificate, no (EC)DHE: a card has no spare
RAM or CPU for them): the AEAD ones first, then the CBC ones, among them the spec's
TLS_PSK_WITH_AES_128_CBC_SHA. The 3DES one is added too where this OpenSSL still has it (see
`describe_stack`); where it has not, the HTTPS port and the admin server serve it through
GnuTLS (`openscws.tls.gnutls`, `openscws.tls.dispatch`)."""


def psk_cipher_string(profile: Profile) -> str:
    """The PSK suites a profile offers by default: "modern" AEAD only, "compat" adds CBC."""
    return PSK_CIPHERS if profile == "compat" else PSK_CIPHERS_MODERN


# Substrings of OpenSSL suite names that must never be enabled.
_FORBIDDEN_NAMES: Final = ("NULL", "RC4", "EXP", "ADH", "AECDH", "MD5", "DES-CBC", "anon")
_ALLOWED: Final = frozenset({"PSK-3DES-EDE-CBC-SHA"})  # the spec's own (§11.1.1.1)
_FORBIDDEN_AUTH: Final = ("auth-null",)


def _set_profile(ctx: ssl.SSLContext, profile: Profile, *, psk: bool) -> None:
    match profile:
        case "modern":
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        case "compat":
            # Python deprecates TLS 1.0/1.1; this profile is the documented, deliberate use.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
        case _:
            raise ConfigError(f"unknown TLS profile {profile!r} (modern or compat)")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if psk else ssl.TLSVersion.MAXIMUM_SUPPORTED
    # TLS ≤ 1.2 renegotiation lets a client make the card redo the handshake at will.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION


def _set_ciphers(ctx: ssl.SSLContext, ciphers: str, profile: Profile, *, psk: bool) -> None:
    if profile == "compat" and not psk:  # see describe_stack: tls1_0_cert_needs_seclevel0
        ciphers += ":@SECLEVEL=0"
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise ConfigError(f"OpenSSL enables none of the suites {ciphers!r}: {exc}") from exc
    _check_ciphers(ctx)


def _check_ciphers(ctx: ssl.SSLContext) -> None:
    for suite in ctx.get_ciphers():
        name = str(suite["name"])
        auth = str(suite.get("auth", ""))
        if name in _ALLOWED:
            continue
        if any(bad in name for bad in _FORBIDDEN_NAMES) or auth in _FORBIDDEN_AUTH:
            raise ConfigError(f"refusing to enable weak TLS suite {name}")


def _available(cipher: str, profile: Profile = "compat") -> str | None:
    """None if `cipher` can be enabled here, else OpenSSL's reason."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.set_ciphers(cipher + (":@SECLEVEL=0" if profile == "compat" else ""))
    except ssl.SSLError as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    if not any(s["name"] == cipher for s in ctx.get_ciphers()):
        return "not in this OpenSSL's suite table"
    return None


def server_context(
    cert_chain_pem: bytes,
    key_pem: bytes,
    *,
    profile: Profile = "modern",
    psk: PskKeys | None = None,
) -> ssl.SSLContext:
    """The certificate-authenticated server context (SCWS §11.1.2).

    With `psk` (a key table and hint) the same context also offers the PSK suites (SCWS
    §11.1: the local HTTPS server MAY implement PSK-TLS too), after the certificate ones:
    OpenSSL follows the client's order, so a client that wants PSK offers only PSK suites
    (`openssl s_client -psk ... -cipher PSK`, or gnutls-cli's PSK priority). PSK suites
    need TLS <= 1.2: a client that offers TLS 1.3 gets a certificate handshake.

    `cert_chain_pem` is the leaf certificate followed by any intermediates, `key_pem` its
    unencrypted private key (PEM). `ssl.SSLContext.load_cert_chain` only reads files, so both
    are written to a fresh `tempfile.mkdtemp` directory (mode 0700, files created 0600 with
    O_EXCL) and removed as soon as OpenSSL has loaded them, success or not. The key therefore
    touches the temp file system for an instant: point TMPDIR at a tmpfs to keep it off disk.

    Nothing is resumed (see `_no_resumption`): tickets are bytes on the BIP link and
    cached sessions are state on the card."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_profile(ctx, profile, psk=False)
    _set_ciphers(ctx, cert_cipher_string(profile, psk=psk is not None), profile, psk=False)
    if psk is not None:
        _set_psk_server(ctx, psk)
    _no_resumption(ctx)
    with tempfile.TemporaryDirectory(prefix="openscws-tls-") as tmp:
        cert_path = Path(tmp) / "chain.pem"
        key_path = Path(tmp) / "key.pem"
        dh_path = Path(tmp) / "dh.pem"
        try:
            _write_private(cert_path, cert_chain_pem)
            _write_private(key_path, key_pem)
            ctx.load_cert_chain(cert_path, key_path)
            _write_private(dh_path, FFDHE2048_PEM)
            ctx.load_dh_params(str(dh_path))
        except ssl.SSLError as exc:
            raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from exc
        finally:
            for path in (key_path, cert_path, dh_path):
                path.unlink(missing_ok=True)
    return ctx


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def psk_server_context(
    keys: PskKeys,
    *,
    profile: Profile = "modern",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A PSK-TLS server context (RFC 4279, SCWS §11.1.1), TLS ≤ 1.2.

    `keys.lookup(identity)` gives the key for a client's PSK identity, or None for an unknown
    identity (the handshake then fails as with a wrong key: `openscws.tls.psk`). It runs
    inside OpenSSL's callback: it must not raise, and it must never log the key.
    `keys.hint` is sent in the ServerKeyExchange. The "compat" profile also enables
    TLS 1.0/1.1 and, where this OpenSSL still has it, PSK-3DES-EDE-CBC-SHA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_profile(ctx, profile, psk=True)
    chosen = psk_cipher_string(profile) if ciphers is None else ciphers
    _set_ciphers(ctx, _psk_ciphers(chosen, profile), profile, psk=True)
    _set_psk_server(ctx, keys)
    _no_resumption(ctx)
    return ctx


def _no_resumption(ctx: ssl.SSLContext) -> None:
    """No TLS 1.3 tickets, no TLS 1.2 tickets, no server session cache: the card keeps no
    session state and every handshake is a full one (as SGP.02 asks of eUICCs)."""
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET
    disable_session_cache(ctx)


def cert_cipher_string(profile: Profile, *, psk: bool = False) -> str:
    """The OpenSSL cipher string of a certificate context (TLS <= 1.2), with the plain PSK
    suites after the certificate ones when `psk`. "-PSK" (not "!PSK") first, so that the PSK
    suites named after it are not excluded for good."""
    base = CERT_CIPHERS_COMPAT if profile == "compat" else CERT_CIPHERS
    base += ":-PSK"
    return base + ":" + _psk_ciphers(psk_cipher_string(profile), profile) if psk else base


def _psk_ciphers(ciphers: str, profile: Profile) -> str:
    if profile == "compat" and _available("PSK-3DES-EDE-CBC-SHA") is None:
        ciphers += ":PSK-3DES-EDE-CBC-SHA"
    return ciphers


def _set_psk_server(ctx: ssl.SSLContext, keys: PskKeys) -> None:
    # An unknown identity gets a decoy: it fails as a wrong key does (no identity oracle).
    ctx.set_psk_server_callback(keys.key, keys.hint)


def psk_client_context(
    identity: str,
    key: bytes,
    *,
    profile: Profile = "modern",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A PSK-TLS client context (the SCWS administration agent's side, SCWS §11.1.1).

    There is no certificate to verify: the peer proves itself by knowing `key`."""
    if not key:
        raise ConfigError("a PSK must not be empty")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _set_profile(ctx, profile, psk=True)
    chosen = psk_cipher_string(profile) if ciphers is None else ciphers
    _set_ciphers(ctx, _psk_ciphers(chosen, profile), profile, psk=True)

    def callback(hint: str | None) -> tuple[str, bytes]:
        return identity, key

    ctx.set_psk_client_callback(callback)
    return ctx


def _psk_handshake(version: ssl.TLSVersion, ciphers: str) -> bool:
    """Whether a PSK handshake pinned to `version` with `ciphers` (a complete OpenSSL
    cipher string) completes, run in memory between two throwaway contexts."""
    key = bytes(16)
    contexts = []
    for side in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        ctx = ssl.SSLContext(side)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = version
                ctx.maximum_version = version
            ctx.set_ciphers(ciphers)
        except (ValueError, ssl.SSLError):
            return False
        contexts.append(ctx)
    server_ctx, client_ctx = contexts
    server_ctx.set_psk_server_callback(lambda identity: key)
    client_ctx.set_psk_client_callback(lambda hint: ("doctor", key))
    bios = [ssl.MemoryBIO() for _ in range(4)]  # server in/out, client in/out
    server = server_ctx.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_ctx.wrap_bio(bios[2], bios[3], server_side=False)
    done = [False, False]
    for _ in range(10):
        for n, obj in enumerate((server, client)):
            if not done[n]:
                try:
                    obj.do_handshake()
                    done[n] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError:
                    return False
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
        if all(done):
            return obj.version() is not None
    return False


def describe_stack() -> dict[str, str | bool]:
    """What this Python/OpenSSL can do for the SCWS, for `openscws doctor`.

    Keys: ``openssl`` (version string), ``tls1_0`` / ``tls1_1`` / ``tls1_3`` (compiled in),
    ``tls1_0_psk_handshake`` (a TLS 1.0 PSK-AES128-CBC-SHA handshake at the default
    security level completes, tried in memory), ``tls1_0_cert_needs_seclevel0`` (OpenSSL 3
    rates TLS 1.0/1.1's MD5+SHA-1 handshake signatures below level 1, so certificate TLS 1.0
    needs level 0; PSK handshakes sign nothing and are not affected),
    ``psk`` (`SSLContext.set_psk_server_callback` exists, Python ≥ 3.13),
    ``max_fragment_length`` (a client connection here can ask for RFC 6066
    max_fragment_length through libssl, `_openssl.tune_connection`; a server can only honour
    it, which OpenSSL does), for
    each spec PSK suite ``<name>`` (bool: OpenSSL has it) and ``<name>_why`` (why not, or
    ""), and for GnuTLS (`openscws.tls.gnutls`, which serves TLS_PSK_WITH_3DES_EDE_CBC_SHA
    where OpenSSL cannot): ``gnutls`` (its version, or ""), ``gnutls_3des`` (bool: an
    in-memory PSK handshake between a 3DES-only GnuTLS client and the card's GnuTLS server
    negotiated TLS_PSK_3DES_EDE_CBC_SHA1) and ``gnutls_3des_why`` (why not, or "")."""
    info: dict[str, str | bool] = {
        "openssl": ssl.OPENSSL_VERSION,
        "tls1_0": ssl.HAS_TLSv1,
        "tls1_1": ssl.HAS_TLSv1_1,
        "tls1_3": ssl.HAS_TLSv1_3,
        "tls1_0_psk_handshake": _psk_handshake(ssl.TLSVersion.TLSv1, "PSK-AES128-CBC-SHA"),
        "tls1_0_cert_needs_seclevel0": ssl.OPENSSL_VERSION_INFO >= (3, 0),
        "psk": hasattr(ssl.SSLContext, "set_psk_server_callback"),
        "max_fragment_length": _client_asks_mfl(),
    }
    for suite in PSK_SPEC_SUITES:
        why = _available(suite)
        if why is not None and "3DES" in suite:
            why += (
                ": this libssl has no 3DES TLS suites (current OpenSSL compiles them only"
                " with enable-weak-ssl-ciphers)"
            )
        info[suite] = why is None
        info[suite + "_why"] = why or ""
    info.update(_describe_gnutls())
    return info


def _client_asks_mfl() -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    obj = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="localhost")
    return tune_connection(obj, 1024).max_fragment_length == 1024


def _describe_gnutls() -> dict[str, str | bool]:
    from openscws.tls import gnutls
    from openscws.tls.alert import TlsAlert

    why = gnutls.available()
    if why is None:
        try:
            suite, protocol = gnutls.self_test()
        except (gnutls.GnutlsUnavailable, TlsAlert) as exc:
            why = f"the in-memory 3DES handshake failed: {exc}"
        else:
            if suite != "TLS_PSK_3DES_EDE_CBC_SHA1":
                why = f"the in-memory handshake negotiated {suite} {protocol}, not 3DES"
    return {
        "gnutls": gnutls.version() or "",
        "gnutls_3des": why is None,
        "gnutls_3des_why": why or "",
    }
