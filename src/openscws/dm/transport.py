"""The DM client's transport: SyncML DM messages POSTed over HTTPS (OMA-TS-DM_Security, the
HTTP binding of OMA-TS-SyncML_HTTPBinding), a thin asyncio shell around h11 and `ssl`.

TLS profile of a DM account (`TlsSettings`):

* versions TLS 1.0 to 1.2, TLS 1.1 and 1.2 by default (TLS 1.1 is the DM profile's mandatory
  version). SSL 2.0 and SSL 3.0 are never offered: this OpenSSL has no SSL 3.0 at all, and
  asking for it is refused as "not supported by this TLS stack".
* with certificates: forward-secret AES suites and TLS_RSA_WITH_AES_128_CBC_SHA (the suite
  every TLS implementation has), never RC4, 3DES, NULL, export or anonymous ones. TLS 1.0 and
  1.1 sign the handshake with MD5+SHA-1, which OpenSSL 3 rates below its security level 1, so
  when the account allows them the context runs at security level 0; everything else about
  the context stays strict (the server certificate is verified against the account's CA or
  the system's).
* PSK-TLS (RFC 4279, RFC 5487) when the account has a PSK identity and key: the suites
  TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_128_CBC_SHA256, TLS_DHE_PSK_WITH_AES_128_
  GCM_SHA256, TLS_DHE_PSK_WITH_AES_128_CBC_SHA256, TLS_RSA_PSK_WITH_AES_128_GCM_SHA256 and
  TLS_RSA_PSK_WITH_AES_128_CBC_SHA256, those of them this OpenSSL has (`psk_suites`). The GCM
  ones need TLS 1.2.
* an X.509 client certificate and key (the account's transport credential of type TRANSPORT).

After each handshake the client records the protocol version the server chose and the suite
(`TlsInfo`), logs them, and the session reports them (see `openscws.dm.client`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import h11

from openscws.dm.transport_auth import HttpCredentials
from openscws.errors import ConfigError, OpenScwsError
from openscws.tls.context import CERT_CIPHERS_COMPAT

__all__ = [
    "DM_PSK_SUITES",
    "HttpReply",
    "TlsInfo",
    "TlsSettings",
    "Transport",
    "TransportError",
    "client_context",
    "psk_suites",
]

log = logging.getLogger(__name__)

VERSIONS: Final = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
COMPILED_OUT: Final = {"2.0": "SSL 2.0", "3.0": "SSL 3.0"}
DM_PSK_SUITES: Final = (
    ("TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256"),
    ("TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256"),
    ("TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", "DHE-PSK-AES128-GCM-SHA256"),
    ("TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", "DHE-PSK-AES128-CBC-SHA256"),
    ("TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", "RSA-PSK-AES128-GCM-SHA256"),
    ("TLS_RSA_PSK_WITH_AES_128_CBC_SHA256", "RSA-PSK-AES128-CBC-SHA256"),
)
"""The PSK-TLS suites of the DM security profile: (IANA name, OpenSSL name)."""
_FORBIDDEN: Final = ("NULL", "RC4", "EXP", "ADH", "AECDH", "MD5", "DES-CBC", "anon")
MAX_RESPONSE: Final = 1 << 22
TIMEOUT_S: Final = 30.0


class TransportError(OpenScwsError):
    """A connection, handshake or HTTP exchange with the DM server that did not succeed."""


def psk_suites() -> tuple[tuple[str, str], ...]:
    """The DM PSK suites this OpenSSL can enable."""
    out = []
    for iana, name in DM_PSK_SUITES:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.set_ciphers(name)
        except ssl.SSLError:
            continue
        if any(s["name"] == name for s in ctx.get_ciphers()):
            out.append((iana, name))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    min_version: str = "1.1"
    max_version: str = "1.2"
    suites: str = ""
    """An OpenSSL cipher string that replaces the default suites (interop tests pin one)."""
    psk_identity: str = ""
    psk_key: bytes = field(default=b"", repr=False)
    ca_file: Path | None = None
    client_cert_pem: bytes = b""
    client_key_pem: bytes = field(default=b"", repr=False)
    check_hostname: bool = True


def _version(text: str) -> ssl.TLSVersion:
    if text in COMPILED_OUT:
        raise ConfigError(f"{COMPILED_OUT[text]}: not supported by this TLS stack")
    if text not in VERSIONS:
        raise ConfigError(f"TLS version {text!r}: one of {', '.join(VERSIONS)}")
    return VERSIONS[text]


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """The SSLContext of one DM account (see the module text)."""
    low, high = _version(tls.min_version), _version(tls.max_version)
    if low > high:
        raise ConfigError(f"TLS min version {tls.min_version} above max {tls.max_version}")
    psk = bool(tls.psk_identity)
    if psk and not tls.psk_key:
        raise ConfigError("a PSK identity needs its key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if psk else high
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    if tls.suites:
        ciphers = tls.suites
    elif psk:
        ciphers = ":".join(name for _, name in psk_suites())
    else:
        ciphers = CERT_CIPHERS_COMPAT
    if low < ssl.TLSVersion.TLSv1_2:
        ciphers += ":@SECLEVEL=0"  # TLS 1.0/1.1 handshake signatures (see the module text)
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise ConfigError(f"OpenSSL enables none of the suites {ciphers!r}") from exc
    for suite in ctx.get_ciphers():
        if suite["protocol"] != "TLSv1.3" and any(b in str(suite["name"]) for b in _FORBIDDEN):
            raise ConfigError(f"refusing to offer the weak TLS suite {suite['name']}")
    if psk:
        identity, key = tls.psk_identity, tls.psk_key
        ctx.set_psk_client_callback(lambda hint: (identity, key))
    if tls.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read the CA file {tls.ca_file}: {exc}") from exc
        ctx.check_hostname = tls.check_hostname
    elif psk:
        # The PSK authenticates the server; RSA-PSK's certificate is checked only with a CA.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_default_certs()
        ctx.check_hostname = tls.check_hostname
    if tls.client_cert_pem:
        _load_client_cert(ctx, tls.client_cert_pem, tls.client_key_pem)
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """`load_cert_chain` reads files only: the PEMs go to a private temporary directory
    (0700, files 0600) for the instant OpenSSL reads them."""
    with tempfile.TemporaryDirectory(prefix="openscws-dm-") as tmp:
        paths = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        try:
            for path, data in zip(paths, (cert, key), strict=True):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(paths[0], paths[1])
        except ssl.SSLError as exc:
            raise ConfigError(f"cannot load the client certificate or key: {exc}") from exc
        finally:
            for path in paths:
                path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What a handshake negotiated: the protocol the server chose and the suite."""

    version: str
    suite: str
    bits: int

    def __str__(self) -> str:
        return f"{self.version} {self.suite}"


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class Transport:
    """One DM session's HTTP(S) connection: POSTs each message, keeps the connection while
    the server does, reconnects (a new handshake) when it closes. `allow_http` admits plain
    http:// URLs (tests and a local server only: the DM profile is HTTPS)."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        credentials: HttpCredentials | None = None,
        allow_http: bool = False,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.context = context
        self.credentials = credentials
        self.allow_http = allow_http
        self.timeout = timeout
        self.tls: TlsInfo | None = None
        self.handshakes: list[TlsInfo] = []
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._peer: tuple[str, int, bool] | None = None
        self._conn: h11.Connection | None = None
        self._served = 0  # answers received on this connection

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def connect(self, url: str) -> TlsInfo | None:
        """Opens (or keeps) the connection to `url`'s server; the TLS parameters, if any."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"not an http(s) URL: {url!r}")
        https = parts.scheme == "https"
        if not https and not self.allow_http:
            raise TransportError(f"{url}: the DM server address must be https://")
        peer = (parts.hostname, parts.port or (443 if https else 80), https)
        if self._streams is not None and self._peer == peer:
            return self.tls
        await self.close()
        if https and self.context is None:
            raise TransportError("an https:// server needs a TLS context")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    peer[0], peer[1], ssl=self.context if https else None
                )
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake with {peer[0]}:{peer[1]} failed: {exc}") from None
        except ConnectionRefusedError as exc:
            raise TransportError(f"cannot connect to {peer[0]}:{peer[1]}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            # Reset or closed during the handshake: the server refused its parameters (a TLS
            # alert such as bad_record_mac for a wrong PSK arrives as a closed connection).
            what = f"TLS handshake with {peer[0]}:{peer[1]}" if https else f"{peer[0]}:{peer[1]}"
            raise TransportError(f"{what} failed: {str(exc) or type(exc).__name__}") from None
        self._streams, self._peer = (reader, writer), peer
        self._conn = h11.Connection(h11.CLIENT)
        self._served = 0
        self.tls = None
        obj = writer.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject):
            cipher, version = obj.cipher(), obj.version()
            if cipher is not None and version is not None:
                self.tls = TlsInfo(version, cipher[0], cipher[2])
                self.handshakes.append(self.tls)
                log.info("DM server %s:%d: TLS %s, suite %s", peer[0], peer[1], version, cipher[0])
        return self.tls

    async def post(
        self, url: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
    ) -> HttpReply:
        """POSTs one message; answers a Digest challenge once per challenge."""
        reply = await self._post_once(url, body, headers)
        creds = self.credentials
        if reply.status == 401 and creds is not None:
            if creds.challenged(reply.headers.get("www-authenticate", [])):
                reply = await self._post_once(url, body, headers)
        return reply

    async def _post_once(
        self, url: str, body: bytes, headers: tuple[tuple[str, str], ...]
    ) -> HttpReply:
        for attempt in (1, 2):
            await self.connect(url)
            try:
                return await self._exchange(url, body, headers)
            except _Closed:
                await self.close()  # the server closed a kept-alive connection: once more
                if attempt == 2:
                    raise TransportError(f"{url}: the server closed the connection") from None
            except (OSError, ssl.SSLError, h11.ProtocolError, TimeoutError) as exc:
                await self.close()
                raise TransportError(f"POST {url}: {str(exc) or type(exc).__name__}") from None
        raise AssertionError("unreachable")

    async def _exchange(
        self, url: str, body: bytes, headers: tuple[tuple[str, str], ...]
    ) -> HttpReply:
        assert self._streams is not None
        assert self._conn is not None
        reader, writer = self._streams
        conn = self._conn
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        fields = [("Host", parts.netloc), *headers, ("Content-Length", str(len(body)))]
        if self.credentials is not None:
            authorization = self.credentials.authorization("POST", target)
            if authorization is not None:
                fields.append(("Authorization", authorization))
        reused = self._served > 0
        writer.write(conn.send(h11.Request(method="POST", target=target, headers=fields)) or b"")
        writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        status, data = 0, bytearray()
        got: dict[str, list[str]] = {}
        async with asyncio.timeout(self.timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = await reader.read(65536)
                    if not chunk and status == 0 and reused:
                        raise _Closed
                    conn.receive_data(chunk)
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    for name, value in event.headers:
                        got.setdefault(name.decode("latin-1").lower(), []).append(
                            value.decode("latin-1")
                        )
                elif isinstance(event, h11.Data):
                    data += event.data
                    if len(data) > MAX_RESPONSE:
                        raise TransportError("the DM server's answer is too large")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise TransportError(f"{url}: the server closed the connection")
        self._served += 1
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return HttpReply(status, got, bytes(data))


class _Closed(Exception):
    """The server closed the connection before answering."""
