"""GBA end to end over real sockets on 127.0.0.1: the BSF (Ub, Zn), the terminal's GBA client
with the virtual card through the in-process card link, and a test NAF that challenges on Ua
and fetches the keys of the B-TID from the BSF on Zn.

GBA_U (the card's GBA context, EF_GBABP written, Ks_ext_NAF from the card) and GBA_ME (the 3G
context, Ks_NAF derived in the terminal): the NAF gets from the BSF the very key the terminal
used, and the Digest request on Ua succeeds. Then AUTS over the wire, and bootstrapping again
when the key lifetime ends or the NAF rejects the B-TID."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest

from openscws.aio.links import InProcessLink
from openscws.aka.vector import SqnState
from openscws.bsf.db import BsfDatabase, default_url
from openscws.bsf.hss import SqlHss, SubscriberKeys
from openscws.bsf.models import GbaType
from openscws.bsf.server import start_bsf
from openscws.bsf.service import BsfService
from openscws.gba.client import CardAka, GbaClient, fetch_naf_keys
from openscws.gba.digest import Credentials, DigestError
from openscws.gba.kdf import UA_HTTP_DIGEST, naf_id
from openscws.gba.ua import ua_challenge, ua_verify
from openscws.gba.uicc import impi_of_imsi
from openscws.ras.vault import Vault
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.usim import UsimApp, UsimKeys, UsimSecrets

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010123456789"
IMPI = impi_of_imsi(IMSI)
NAF_FQDN = "127.0.0.1"


class Secrets:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def get_secret(self, name: str) -> bytes | None:
        return self.files.get(name)

    def set_secret(self, name: str, data: bytes) -> None:
        self.files[name] = data

    def delete_secret(self, name: str) -> bool:
        return self.files.pop(name, None) is not None


def make_card(last_seq: int = 0) -> VirtualUicc:
    secrets = Secrets()
    sqn = SqnState()
    if last_seq:
        sqn.accept(last_seq << 5)
    UsimSecrets(secrets).set_keys(UsimKeys(IMSI, K, OPC), sqn=sqn)
    usim = UsimApp.from_secrets(UsimSecrets(secrets))
    card = VirtualUicc(CardIdentity("8988211000000000003"), usim=usim)
    card.power_on()
    return card


@dataclass
class DemoNaf:
    """A NAF on Ua: 401 with a GBA challenge; with credentials, the keys from Zn and a check."""

    zn_url: str
    token: str
    seen: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert request is not None
        auth = dict(request.headers).get(b"authorization")
        status, fields, payload = await self._answer(request, auth, bytes(body))
        fields.append(("Content-Length", str(len(payload))))
        writer.write(conn.send(h11.Response(status_code=status, headers=fields)) or b"")
        writer.write(conn.send(h11.Data(data=payload)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        writer.close()

    async def _answer(
        self, request: h11.Request, auth: bytes | None, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        challenge = [("WWW-Authenticate", ua_challenge(NAF_FQDN).format())]
        if auth is None:
            return 401, challenge, b""
        try:
            creds = Credentials.parse(auth.decode())
        except DigestError:
            return 400, [], b""
        keys = await fetch_naf_keys(self.zn_url, self.token, creds.username, NAF_FQDN)
        if keys is None:  # unknown or expired B-TID: bootstrapping required
            return 401, challenge, b""
        self.seen.append(dict(keys))
        key = bytes.fromhex(keys.get("ks_ext_naf") or keys["ks_naf"])
        if not ua_verify(creds, naf_key=key, method=request.method.decode(), body=body):
            return 401, challenge, b""
        return 200, [("Content-Type", "text/plain")], f"hello {keys['impi']}".encode()


@dataclass
class World:
    service: BsfService
    hss: SqlHss
    ub_url: str
    naf: DemoNaf
    naf_url: str
    clock: list[float]


@asynccontextmanager
async def world(
    tmp_path: Path, gba_type: GbaType, *, sqn: int = 0, ub_port: int = 0
) -> AsyncIterator[World]:
    vault = Vault.create(tmp_path / "bsf")
    db = BsfDatabase(default_url(tmp_path / "bsf"))
    db.upgrade()
    hss = SqlHss(db, vault)
    hss.add(SubscriberKeys(IMPI, K, OPC, sqn=sqn, gba_type=gba_type))
    now = [1_900_000_000.0]
    service = BsfService(db, vault, hss, server_name="bsf.openscws.test", clock=lambda: now[0])
    bsf = await start_bsf(service, port=ub_port, zn_port=0)
    assert bsf.zn_url is not None
    naf = DemoNaf(bsf.zn_url, service.add_naf(NAF_FQDN))
    server = await asyncio.start_server(naf.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield World(service, hss, bsf.ub_url, naf, f"http://{NAF_FQDN}:{port}/service?x=1", now)
    finally:
        server.close()
        await server.wait_closed()
        await bsf.stop()
        db.dispose()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


@pytest.mark.parametrize(
    ("gba_type", "mode"), [(GbaType.GBA_U, "auto"), (GbaType.GBA_ME, "GBA_ME")]
)
def test_bootstrap_and_ua(tmp_path: Path, gba_type: GbaType, mode: str) -> None:
    async def main() -> None:
        async with world(tmp_path, gba_type) as w:
            card = make_card()
            client = GbaClient(CardAka(InProcessLink(card)), w.ub_url, mode=mode)  # type: ignore[arg-type]
            client.clock = lambda: w.clock[0]
            boot = await client.bootstrap()
            assert boot.gba == ("GBA_U" if gba_type is GbaType.GBA_U else "GBA_ME")
            assert boot.btid == base64.b64encode(boot.rand).decode() + "@bsf.openscws.test"
            assert client.impi == IMPI
            key = await client.naf_key(NAF_FQDN)
            got = await fetch_naf_keys(w.naf.zn_url, w.naf.token, boot.btid, NAF_FQDN)
            assert got is not None
            assert got["impi"] == IMPI
            assert card.usim is not None
            if gba_type is GbaType.GBA_U:
                assert bytes.fromhex(got["ks_ext_naf"]) == key
                # Ks_int_NAF stayed in the card, and equals what the NAF got.
                naf = naf_id(NAF_FQDN, UA_HTTP_DIGEST)
                assert card.usim.ks_int_naf(naf) == bytes.fromhex(got["ks_int_naf"])
                assert card.usim.gba.btid == boot.btid.encode()
                assert boot.ks == b""
            else:
                assert bytes.fromhex(got["ks_naf"]) == key
                assert card.usim.gba.btid == b""  # the GBA context was never used
            answer = await client.ua_request(w.naf_url, "POST", b"<req/>")
            assert answer.status == 200
            assert answer.body == f"hello {IMPI}".encode()

    run(main)


def test_auts_over_the_wire(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, GbaType.GBA_U, sqn=0) as w:
            client = GbaClient(CardAka(InProcessLink(make_card(last_seq=9000))), w.ub_url)
            boot = await client.bootstrap()
            assert boot.gba == "GBA_U"
            assert w.hss.list()[0].sqn == 9001 << 5

    run(main)


def test_bootstrap_again_on_expiry_and_rejection(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path, GbaType.GBA_U) as w:
            client = GbaClient(CardAka(InProcessLink(make_card())), w.ub_url)
            client.clock = lambda: w.clock[0]
            assert (await client.ua_request(w.naf_url)).status == 200
            first = client.current
            assert first is not None
            # The key lifetime is over for the terminal: it bootstraps before asking.
            w.clock[0] += 4000
            assert (await client.ua_request(w.naf_url)).status == 200
            second = client.current
            assert second is not None
            assert second.btid != first.btid
            # The BSF forgot the B-TID (its lifetime ended there first): the NAF rejects it,
            # the terminal bootstraps again and the second try passes.
            w.clock[0] += 4000
            client.clock = lambda: w.clock[0] - 8000
            assert (await client.ua_request(w.naf_url)).status == 200
            third = client.current
            assert third is not None
            assert third.btid not in (first.btid, second.btid)

    run(main)


def _pki(directory: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate for the NAF."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = {}
    for n, (name, usage) in enumerate(
        (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("naf", ExtendedKeyUsageOID.CLIENT_AUTH)),
        start=2,
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(n)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out[name] = (cert_path, key_path)
    return ca_path, out


def test_ub_over_https_and_zn_over_mutual_tls(tmp_path: Path) -> None:
    import ssl

    from openscws.bsf.server import TlsFiles
    from openscws.gba.client import GbaError

    ca, certs = _pki(tmp_path / "pki")
    server_tls = TlsFiles(*certs["server"])

    async def main() -> None:
        vault = Vault.create(tmp_path / "bsf")
        db = BsfDatabase(default_url(tmp_path / "bsf"))
        db.upgrade()
        hss = SqlHss(db, vault)
        hss.add(SubscriberKeys(IMPI, K, OPC))
        service = BsfService(db, vault, hss, server_name="bsf.openscws.test")
        token = service.add_naf(NAF_FQDN)
        bsf = await start_bsf(
            service, tls=server_tls, zn_tls=TlsFiles(*certs["server"], client_ca=ca)
        )
        try:
            assert bsf.ub_url.startswith("https://")
            assert bsf.zn_url is not None
            assert bsf.zn_url.startswith("https://")
            trust = ssl.create_default_context(cafile=str(ca))
            client = GbaClient(CardAka(InProcessLink(make_card())), bsf.ub_url, ssl_context=trust)
            boot = await client.bootstrap()
            key = await client.naf_key(NAF_FQDN)
            # Zn refuses a NAF without a client certificate ...
            with pytest.raises(GbaError):
                await fetch_naf_keys(bsf.zn_url, token, boot.btid, NAF_FQDN, ssl_context=trust)
            # ... and answers one with a certificate from the CA (and its token).
            naf_ctx = ssl.create_default_context(cafile=str(ca))
            naf_ctx.load_cert_chain(*certs["naf"])
            got = await fetch_naf_keys(bsf.zn_url, token, boot.btid, NAF_FQDN, ssl_context=naf_ctx)
            assert got is not None
            assert bytes.fromhex(got["ks_ext_naf"]) == key
        finally:
            await bsf.stop()
            db.dispose()

    run(main)


def test_card_refuses_a_foreign_network(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The BSF's AUTN was made with another K: the card answers 98 62, the terminal stops with
    a clear error and sends nothing more; the BSF's challenge stays unanswered."""
    from openscws.gba.client import GbaError

    async def main() -> None:
        async with world(tmp_path, GbaType.GBA_U) as w:
            w.hss.add(SubscriberKeys(IMPI, bytes(16), OPC), replace=True)
            client = GbaClient(CardAka(InProcessLink(make_card())), w.ub_url)
            with pytest.raises(GbaError, match="MAC failure"):
                await client.bootstrap()
            assert client.current is None

    run(main)
