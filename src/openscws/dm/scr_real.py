"""The server items of `openscws dm scr` (DM-SEC-S-001..003, 005, 006, 008..010) against the
real DM server: `openscws dm serve`'s service and HTTPS shell (`dm.server`, `dm.server_tls`,
its database and vault in the run's private temp dir) on a free loopback port, with the
terminal's DM client (`dm.client`) as the other end. What the server negotiated is read from
each request it handled (`DmRequest.tls`), beside what the client reports."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from openscws.dm import auth, client_store
from openscws.dm.client import DmClient, DmClientError, SessionReport
from openscws.dm.client_store import AccountSettings
from openscws.dm.db import DmDatabase, DmStore, default_url
from openscws.dm.db_models import HttpAuth
from openscws.dm.scr_server import Pki, make_pki
from openscws.dm.server import DmAnswer, DmRequest, DmServer, DmService, start_dm_server
from openscws.dm.server_tls import dm_server_context
from openscws.dm.transport import TlsSettings, psk_suites
from openscws.ras.vault import Vault
from openscws.tls.psk import PskKeys

if TYPE_CHECKING:
    from openscws.dm.scr import _Run

__all__ = ["dm_serve", "server_items"]

SERVER_ID = "openscws-scr"
APP = ("scr-device", "scr-client-secret")
SRV_SECRET = "scr-server-secret"
HTTP = ("scr-http", "scr-http-secret")


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the real server saw it."""

    version: str | None
    cipher: str | None
    psk_identity: str | None
    client_cert: bool
    status: int


class _Recording(DmService):
    """The DM server's service, noting each request's TLS parameters and answer."""

    def __init__(self, store: DmStore) -> None:
        super().__init__(store, server_uri="")
        self.seen: list[Seen] = []

    def handle(self, req: DmRequest) -> DmAnswer:
        answer = super().handle(req)
        t = req.tls
        self.seen.append(
            Seen(t.version, t.cipher, t.psk_identity, t.peer_cert is not None, answer.status)
        )
        return answer


@dataclass
class _Real:
    store: DmStore
    service: _Recording
    server: DmServer
    n: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, dev_id: str, **transport: object) -> None:
        self.store.add_device(
            dev_id, app_auth=auth.AUTH_MD5, app_username=APP[0], app_password=APP[1],
            server_id=SERVER_ID, server_password=SRV_SECRET, server_auth=auth.AUTH_MD5,
            **transport,  # type: ignore[arg-type]
        )  # fmt: skip


@contextlib.asynccontextmanager
async def dm_serve(run: _Run) -> AsyncIterator[_Real]:
    root = Path(tempfile.mkdtemp(prefix="dm-serve-", dir=run.tmp))
    cert, key, client_ca = root / "cert.pem", root / "key.pem", root / "client-ca.pem"
    cert.write_bytes(run.pki.server_pem)
    key.write_bytes(run.pki.server_key_pem)
    key.chmod(0o600)
    client_ca.write_bytes(run.pki.ca_pem)
    vault = Vault.create(root)
    db = DmDatabase(default_url(root))
    try:
        db.upgrade()
        store = DmStore(db, vault)
        tls = dm_server_context(
            cert, key, psk=PskKeys(store.psk_key, "openscws-dm"), client_ca=client_ca
        )
        service = _Recording(store)
        server = await start_dm_server(service, tls, host="127.0.0.1", port=0)
        service.server_uri = server.url
        try:
            yield _Real(store, service, server)
        finally:
            await server.stop()
    finally:
        db.dispose()


async def _session(
    run: _Run,
    real: _Real,
    dev_id: str,
    *,
    tls: TlsSettings | None = None,
    http: tuple[str, str, str] = ("", "", ""),
    pki: Pki | None = None,
) -> tuple[SessionReport, list[Seen]]:
    """One session of our client (DevId `dev_id`) with the real server; what it saw."""
    real.n += 1
    path = run.tmp / f"real-tree-{real.n}.json"
    tree = client_store.new_tree(dev_id)
    acc = AccountSettings(
        server_id=SERVER_ID,
        server_url=real.server.url,
        client_name=APP[0],
        client_secret=APP[1],
        server_secret=SRV_SECRET,
        http_auth=http[0],
        http_name=http[1],
        http_secret=http[2],
        client_cert_pem=pki.client_pem if pki else b"",
        client_key_pem=pki.client_key_pem if pki else b"",
        tls=tls or TlsSettings(min_version="1.0", ca_file=run.ca()),
    )
    client_store.add_account(tree, "1", acc)
    client_store.save(tree, path)
    client = DmClient(path, timeout=15)
    before = len(real.service.seen)
    try:
        report = await client.run("1")
    except DmClientError as exc:
        report = client.last or SessionReport("1", real.server.url, "")
        report.state = f"failed: {exc}"
    return report, real.service.seen[before:]


def _saw(seen: list[Seen]) -> str:
    if not seen:
        return "nothing"
    s = seen[0]
    extra = f", PSK identity {s.psk_identity}" if s.psk_identity else ""
    extra += ", a client certificate" if s.client_cert else ""
    codes = " ".join(str(x.status) for x in seen)
    return f"{s.version} {s.cipher}{extra}; HTTP {codes}"


def _ok(report: SessionReport, seen: list[Seen], version: str) -> bool:
    return (
        report.state == "ended"
        and report.tls_version == version
        and bool(seen)
        and all((s.version, s.cipher) == (report.tls_version, report.tls_suite) for s in seen)
    )


def _both(report: SessionReport, seen: list[Seen]) -> str:
    return (
        f"dm serve: session {report.session_id or '-'} {report.state}; client negotiated "
        f"{report.tls_version} {report.tls_suite}; server saw {_saw(seen)}"
    )


async def server_items(run: _Run) -> None:
    from openscws.dm.scr import (
        FAILED,
        NAMES,
        NOT_SUPPORTED,
        PSK_ID,
        PSK_KEY,
        SUPPORTED,
        _no_sslv2_server,
    )

    async with dm_serve(run) as real:
        real.add("scr:tls")
        for n, version in (("001", "1.1"), ("002", "1.0"), ("003", "1.2")):
            tls = TlsSettings(min_version=version, max_version=version, ca_file=run.ca())
            report, seen = await _session(run, real, "scr:tls", tls=tls)
            ok = _ok(report, seen, NAMES[version])
            run.add(f"DM-SEC-S-{n}", SUPPORTED if ok else FAILED, _both(report, seen))

        await _no_sslv2_server(run, "127.0.0.1", real.server.port)

        real.add("scr:psk", http_auth=HttpAuth.PSK, psk_identity=PSK_ID, psk_key=PSK_KEY)
        done, bad = [], []
        for iana, name in psk_suites():
            tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK_KEY, suites=name)
            report, seen = await _session(run, real, "scr:psk", tls=tls)
            if (
                _ok(report, seen, "TLSv1.2")
                and report.tls_suite == name
                and all(s.psk_identity == PSK_ID for s in seen)
            ):
                done.append(iana)
            else:
                bad.append(f"{iana}: {_both(report, seen)}")
        evidence = f"dm serve: sessions over {', '.join(done) or 'none'}"
        if bad:
            evidence += "; failed: " + "; ".join(bad)
        run.add("DM-SEC-S-006", FAILED if bad else SUPPORTED if done else NOT_SUPPORTED, evidence)

        for n, kind in (("008", HttpAuth.BASIC), ("009", HttpAuth.DIGEST)):
            dev = f"scr:{kind}"
            real.add(dev, http_auth=kind, http_username=HTTP[0], http_password=HTTP[1])
            scheme = f"HTTP-{str(kind).upper()}"
            good, seen = await _session(run, real, dev, http=(scheme, *HTTP))
            wrong, refused = await _session(run, real, dev, http=(scheme, HTTP[0], "wrong"))
            ok_good = good.state == "ended" and bool(seen) and seen[-1].status == 200
            ok_wrong = "HTTP 401" in wrong.state and any(s.status == 401 for s in refused)
            evidence = (
                f"dm serve, {kind}: session {good.state}, server answered "
                f"{' '.join(str(s.status) for s in seen)}; wrong password refused with 401: "
                f"{'yes' if ok_wrong else 'no'}"
            )
            run.add(f"DM-SEC-S-{n}", SUPPORTED if ok_good and ok_wrong else FAILED, evidence)

        der = x509.load_pem_x509_certificate(run.pki.client_pem).public_bytes(Encoding.DER)
        pin = hashlib.sha256(der).hexdigest()
        real.add("scr:cert", http_auth=HttpAuth.CERT, cert_sha256=pin)
        report, seen = await _session(run, real, "scr:cert", pki=run.pki)
        verified = report.state == "ended" and bool(seen) and all(s.client_cert for s in seen)
        none, _ = await _session(run, real, "scr:cert")
        stranger = make_pki()  # a certificate the server's client CA did not issue
        other, _ = await _session(run, real, "scr:cert", pki=stranger)
        shut = none.state.startswith("failed") and other.state.startswith("failed")
        evidence = (
            f"{_both(report, seen)}; without a certificate: {none.state}; with one from an "
            f"unknown CA: {other.state}"
        )
        run.add("DM-SEC-S-010", SUPPORTED if verified and shut else FAILED, evidence)
