"""A DM server for tests: its database, vault, certificates (its own CA, a client CA and a
rogue CA), running on a free port in a background event loop; and a minimal DM client over
HTTPS built on the session core (`ClientSession`)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import http.client
import os
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openscws.dm import auth
from openscws.dm.db import DmDatabase, DmStore, default_url
from openscws.dm.server import (
    DmServer,
    DmService,
    ensure_server_certificate,
    start_dm_server,
)
from openscws.dm.server_tls import dm_server_context
from openscws.dm.session import ClientSession, Outgoing
from openscws.dm.tree import AppAuth, Tree, dm_account, standard_tree
from openscws.ras.vault import Vault
from openscws.tls.psk import PskKeys

NOW = datetime.datetime.now(datetime.UTC)
SERVER_URI = "https://127.0.0.1/dm"


def make_ca(name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_client_cert(
    ca: tuple[rsa.RSAPrivateKey, x509.Certificate], name: str, *, rsa_bits: int = 0
) -> tuple[bytes, bytes, bytes]:
    """(certificate PEM, key PEM, certificate DER) for a device: EC P-256, or RSA."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        if rsa_bits
        else ec.generate_private_key(ec.SECP256R1())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca[0], hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key_pem,
        cert.public_bytes(serialization.Encoding.DER),
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Env:
    root: Path
    store: DmStore
    service: DmService
    server: DmServer
    loop: asyncio.AbstractEventLoop
    ca_file: Path
    """The server certificate's CA (what clients trust)."""
    client_ca: tuple[rsa.RSAPrivateKey, x509.Certificate]
    rogue_ca: tuple[rsa.RSAPrivateKey, x509.Certificate]
    loop_thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.port

    def write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return path


@dataclass
class _Running:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread


def run_env(
    root: Path, *, min_tls: str = "1.0", digest_secret: bytes | None = None
) -> Iterator[Env]:
    vault = Vault.create(root)
    db = DmDatabase(default_url(root))
    db.upgrade()
    store = DmStore(db, vault)
    cert, key, ca_file = ensure_server_certificate(
        root / "tls", ("127.0.0.1", "localhost"), now=NOW
    )
    client_ca = make_ca("DM device CA")
    rogue_ca = make_ca("rogue CA")
    ca_path = root / "client-ca.pem"
    ca_path.write_bytes(pem(client_ca[1]))
    tls = dm_server_context(
        cert, key, psk=PskKeys(store.psk_key, "dm"), client_ca=ca_path, min_tls=min_tls
    )
    service = DmService(store, server_uri=SERVER_URI, digest_secret=digest_secret)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start_dm_server(service, tls), loop).result(10)
    try:
        yield Env(root, store, service, server, loop, ca_file, client_ca, rogue_ca, thread)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        db.dispose()


# -- the device side ------------------------------------------------------------------------


def client(dev_id: str, **kw: object) -> ClientSession:
    """A device's session with a fresh SessionID."""
    global _session_ids
    _session_ids += 1
    return ClientSession(device_tree(dev_id), "1", session_id=f"{_session_ids:X}", **kw)  # type: ignore[arg-type]


_session_ids = 0


def device_tree(dev_id: str, *, kind: str = "DIGEST", secret: str = "s3cret") -> Tree:
    tree = standard_tree(dev_id=dev_id, man="openscws", mod="virtual")
    dm_account(
        tree,
        "1",
        server_id="openscws-dm",
        addr=SERVER_URI,
        auth=(AppAuth("CLCRED", kind, "dev", secret, b"stale"),),
    )
    return tree


def add_device(env: Env, dev_id: str, **kw: object) -> None:
    options: dict[str, object] = {
        "app_auth": auth.AUTH_MD5,
        "app_username": "dev",
        "app_password": "s3cret",
        "server_id": "openscws-dm",
        "server_password": "srv-secret",
    }
    options.update(kw)
    env.store.add_device(dev_id, **options)  # type: ignore[arg-type]


def cert_context(
    env: Env, cert: tuple[bytes, bytes] | None = None, *, seclevel0: bool = False
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(env.ca_file))
    ctx.check_hostname = False
    if seclevel0:  # lets a test offer a key OpenSSL would not send at its default level
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if cert is not None:
        c = env.write("client-cert.pem", cert[0])
        k = env.write("client-key.pem", cert[1])
        ctx.load_cert_chain(c, k)
    return ctx


def digest_header(
    challenge: str,
    user: str,
    password: str,
    method: str,
    uri: str,
    algorithm: str,
    *,
    nc: str = "00000001",
) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    realm, nonce = params["realm"], params["nonce"]
    cnonce = "0a4f113b"
    ha1 = hx(f"{user}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    response = hx(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"'
    )


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def post(
    env: Env | int,
    ctx: ssl.SSLContext,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
    path: str = "/dm",
    method: str = "POST",
) -> Reply:
    port = env if isinstance(env, int) else env.port
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body, {"Content-Type": content_type, **(headers or {})})
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read())
    finally:
        conn.close()


Transport = Callable[[Outgoing], Reply]


def run_session(client: ClientSession, send: Transport) -> list[Reply]:
    """Drives the device's session to its end over `send`; the HTTP replies."""
    replies = []
    out: Outgoing | None = client.start()
    while out is not None:
        reply = send(out)
        replies.append(reply)
        assert reply.status == 200, (reply.status, reply.body)
        hmac = reply.headers.get(auth.HMAC_HEADER)
        out = client.receive(reply.body, reply.headers["Content-Type"], hmac)
        assert len(replies) < 30
    return replies


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
