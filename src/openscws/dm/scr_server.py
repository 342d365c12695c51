"""A small DM server shell over `openscws.dm.session.ServerSession`, for `openscws dm scr` and
the client's tests: HTTPS (or HTTP) on one port, `POST /dm` with a SyncML DM message in either
form, one `ServerSession` per SessionID, HTTP Basic or Digest (MD5 or SHA-256, qop "auth")
at the transport when asked, and the TLS parameters and client certificate of each connection
recorded with the session. It serves one device account and one list of management commands
per session: enough to run every SCR item live. The full server, with devices and jobs in a
database, is `openscws dm serve`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import ssl
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import h11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from openscws.dm import message as m
from openscws.dm.errors import MessageError, ProtocolError
from openscws.dm.session import DeviceAccount, ServerSession
from openscws.dm.transport_auth import TransportAuthError, auth_params

__all__ = ["HttpAuth", "MiniDmServer", "Pki", "ServedSession", "make_pki", "server_context"]

log = logging.getLogger(__name__)

DM_PATH: Final = "/dm"
MAX_BODY: Final = 1 << 20
_HASHES: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """HTTP authentication the server asks for: `kind` "basic" or "digest"; `algorithm`
    MD5 or SHA-256 for Digest."""

    kind: str
    name: str
    secret: str
    algorithm: str = "MD5"
    realm: str = "openscws-dm"


@dataclass(slots=True)
class ServedSession:
    core: ServerSession
    tls: list[tuple[str, str]] = field(default_factory=list)
    """(version, suite) of each connection that carried a message of this session."""
    client_cert: bool = False
    http_user: str = ""


class MiniDmServer:
    def __init__(
        self,
        *,
        account: Callable[[], DeviceAccount],
        commands: Callable[[], list[m.Command]] = list,
        context: ssl.SSLContext | None = None,
        http_auth: HttpAuth | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_factory = account
        self.commands = commands
        self.context = context
        self.http_auth = http_auth
        self.host = host
        self.port = port
        self.sessions: dict[str, ServedSession] = {}
        self.accounts: dict[str, DeviceAccount] = {}  # kept across sessions (nonces)
        self.http_refusals = 0
        self.handshake_failures: list[str] = []
        self._server: asyncio.Server | None = None
        self._nonces: set[str] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{DM_PATH}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.context
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    def last(self) -> ServedSession | None:
        return list(self.sessions.values())[-1] if self.sessions else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        obj = writer.get_extra_info("ssl_object")
        tls: tuple[str, str] | None = None
        cert = False
        if isinstance(obj, ssl.SSLObject):
            cipher, version = obj.cipher(), obj.version()
            if cipher and version:
                tls = (version, cipher[0])
            cert = obj.getpeercert(binary_form=True) is not None
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read(conn, reader)
                if request is None:
                    break
                status, headers, out = self._answer(request, body, tls, cert)
                fields = [*headers, ("Content-Length", str(len(out)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=fields)) or b"")
                writer.write(conn.send(h11.Data(data=out)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (OSError, ssl.SSLError, h11.ProtocolError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _read(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        async with asyncio.timeout(30):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY:
                        raise h11.RemoteProtocolError("body too large")
                elif isinstance(event, h11.EndOfMessage):
                    return request, bytes(body)
                else:
                    return None, b""

    def _answer(
        self, req: h11.Request, body: bytes, tls: tuple[str, str] | None, cert: bool
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        text = [("Content-Type", "text/plain")]
        if req.target.split(b"?", 1)[0].decode() != DM_PATH:
            return 404, text, b"the DM server is at /dm\n"
        if req.method != b"POST":
            return 405, [*text, ("Allow", "POST")], b"POST a DM message\n"
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in req.headers}
        user = ""
        if self.http_auth is not None:
            who = self._http_check(headers.get("authorization", ""), req.target.decode())
            if who is None:
                self.http_refusals += 1
                return 401, [*text, ("WWW-Authenticate", self._challenge())], b"unauthorized\n"
            user = who
        ctype = headers.get("content-type", "").split(";", 1)[0].strip()
        try:
            msg = m.decode(body, ctype)
        except MessageError as exc:
            return 400, text, f"{exc}\n".encode()
        sid = msg.hdr.session_id
        served = self.sessions.get(sid)
        if served is None:
            device = msg.hdr.source.loc_uri
            account = self.accounts.setdefault(device, self.account_factory())
            core = ServerSession(
                server_uri=self.url,
                account=account,
                new_nonce=lambda: secrets.token_bytes(16),
                commands=self.commands(),
                wbxml_form=ctype == m.CONTENT_TYPE_WBXML,
            )
            served = self.sessions[sid] = ServedSession(core)
        if tls is not None:
            served.tls.append(tls)
        served.client_cert = served.client_cert or cert
        served.http_user = user or served.http_user
        try:
            out = served.core.receive(body, ctype, headers.get("x-syncml-hmac"))
        except ProtocolError as exc:
            return 400, text, f"{exc}\n".encode()
        except MessageError as exc:
            return 400, text, f"{exc}\n".encode()
        if out is None:
            return 200, [("Content-Type", ctype)], b""
        return 200, [("Content-Type", out.content_type), *out.headers], out.body

    def _challenge(self) -> str:
        a = self.http_auth
        assert a is not None
        if a.kind == "basic":
            return f'Basic realm="{a.realm}"'
        nonce = secrets.token_hex(16)
        self._nonces.add(nonce)
        return f'Digest realm="{a.realm}", qop="auth", algorithm={a.algorithm}, nonce="{nonce}"'

    def _http_check(self, value: str, uri: str) -> str | None:
        a = self.http_auth
        assert a is not None
        scheme, _, rest = value.partition(" ")
        if a.kind == "basic" and scheme.lower() == "basic":
            expected = base64.b64encode(f"{a.name}:{a.secret}".encode()).decode()
            return a.name if hmac.compare_digest(rest.strip(), expected) else None
        if a.kind != "digest" or scheme.lower() != "digest":
            return None
        try:
            p = _digest_params(rest)
        except ValueError:
            return None
        h = _HASHES[a.algorithm]
        if p.get("nonce") not in self._nonces or p.get("username") != a.name:
            return None
        if p.get("uri") != uri or p.get("qop") != "auth":
            return None
        ha1 = h(f"{a.name}:{a.realm}:{a.secret}".encode())
        ha2 = h(f"POST:{uri}".encode())
        want = h(f"{ha1}:{p['nonce']}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}".encode())
        return a.name if hmac.compare_digest(want, p.get("response", "")) else None


def _digest_params(text: str) -> dict[str, str]:
    try:
        return auth_params(text)
    except TransportAuthError:
        raise ValueError("not a Digest answer") from None


# -- TLS for the server side -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pki:
    """A throwaway CA with an RSA server certificate (localhost, 127.0.0.1) and an RSA client
    certificate, all PEM: the SCR run's own, never written anywhere but a private temp dir."""

    ca_pem: bytes
    server_pem: bytes
    server_key_pem: bytes
    client_pem: bytes
    client_key_pem: bytes


def make_pki(now: datetime.datetime | None = None) -> Pki:
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(days=1)
    end = start + datetime.timedelta(days=30)

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("openscws DM SCR CA"))
        .issuer_name(name("openscws DM SCR CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, k: rsa.RSAPrivateKey, server: bool) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            alt = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(ca_key, hashes.SHA256())

    s_key, c_key = key(), key()
    enc = serialization.Encoding.PEM
    return Pki(
        ca.public_bytes(enc),
        leaf("localhost", s_key, True).public_bytes(enc),
        pem(s_key),
        leaf("IMEI:490154203237518", c_key, False).public_bytes(enc),
        pem(c_key),
    )


def server_context(
    pki: Pki,
    *,
    versions: tuple[str, str] = ("1.0", "1.2"),
    suites: str = "",
    psk: tuple[str, bytes] | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """The SCR server's context: TLS `versions` (inclusive), `suites` (an OpenSSL cipher
    string; default the DM client's certificate suites, or the PSK ones with `psk`), DH
    parameters for DHE, and the client certificate checked against the SCR CA when asked."""
    from openscws.dm.transport import VERSIONS, psk_suites
    from openscws.tls.context import CERT_CIPHERS_COMPAT, FFDHE2048_PEM

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = VERSIONS[versions[0]]
        ctx.maximum_version = VERSIONS[versions[1]]
    default = ":".join(n for _, n in psk_suites()) if psk else CERT_CIPHERS_COMPAT
    ctx.set_ciphers((suites or default) + ":@SECLEVEL=0")
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    if psk is not None:
        identity, secret = psk
        ctx.set_psk_server_callback(lambda who: secret if who == identity else b"")
    with tempfile.TemporaryDirectory(prefix="openscws-scr-") as tmp:
        files = {}
        for label, data in (
            ("cert", pki.server_pem),
            ("key", pki.server_key_pem),
            ("ca", pki.ca_pem),
            ("dh", FFDHE2048_PEM),
        ):
            path = Path(tmp) / f"{label}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            files[label] = path
        ctx.load_cert_chain(files["cert"], files["key"])
        ctx.load_dh_params(str(files["dh"]))
        if require_client_cert:
            ctx.load_verify_locations(cafile=str(files["ca"]))
            ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
