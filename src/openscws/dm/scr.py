"""`openscws dm scr`: the DM security conformance items (DM-SEC-C-001..011 for the client,
DM-SEC-S-001..010 for the server, after the transport-security requirements of
OMA-TS-DM_Security), each run live: a real TLS handshake or a whole DM session between the
terminal's DM client and a DM server started here on free loopback ports: the client items
against the server shell of `openscws.dm.scr_server` (it forces one version or suite at a
time), the server items against the real DM server (`openscws dm serve`'s service, database
and HTTPS shell, `openscws.dm.scr_real`); or, with `--server URL`, the server items as
handshakes against that server. The versions and PSK suites are checked again against OpenSSL's
own `s_server` and `s_client` where they are installed.

Each item ends as one of:

* **supported**: the handshake or session happened as the item asks; the evidence says what
  was negotiated and reported, on both ends.
* **not supported**: with the reason. SSL 3.0, RC4 and 3DES are compiled out of this OpenSSL:
  they are "not supported by this TLS stack", never a pass.
* **failed**: the item was tried and did not hold; the evidence says what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from openscws.dm import auth, client_store
from openscws.dm.client import DmClient, DmClientError, SessionReport
from openscws.dm.client_store import AccountSettings
from openscws.dm.scr_server import HttpAuth, MiniDmServer, Pki, ServedSession, make_pki
from openscws.dm.scr_server import server_context as scr_server_context
from openscws.dm.session import DeviceAccount
from openscws.dm.transport import (
    TlsInfo,
    TlsSettings,
    Transport,
    TransportError,
    client_context,
    psk_suites,
)
from openscws.errors import ConfigError

if TYPE_CHECKING:
    from openscws.dm.scr_real import _Real

__all__ = ["ITEMS", "Outcome", "render_markdown", "render_text", "run_scr"]

SUPPORTED: Final = "supported"
NOT_SUPPORTED: Final = "not supported"
FAILED: Final = "failed"
NO_STACK: Final = "not supported by this TLS stack"
PSK_ID: Final = "IMEI:490154203237518"
PSK_KEY: Final = bytes.fromhex("4f70656e53435753204420534352214b")
NAMES: Final = {"1.0": "TLSv1", "1.1": "TLSv1.1", "1.2": "TLSv1.2"}
WEAK_SUITES: Final = (
    ("SSL_RSA_WITH_RC4_128_SHA / TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"),
    ("SSL_RSA_WITH_3DES_EDE_CBC_SHA / TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
)

ITEMS: Final = {
    "DM-SEC-C-001": ("MUST", "client runs a DM session over TLS 1.1"),
    "DM-SEC-C-002": ("SHOULD", "client runs a DM session over TLS 1.0"),
    "DM-SEC-C-003": ("SHOULD", "client runs a DM session over TLS 1.2"),
    "DM-SEC-C-004": ("SHOULD", "client supports SSL 3.0 (and its RC4 and 3DES suites)"),
    "DM-SEC-C-005": ("MUST NOT", "client never runs a session over SSL 2.0 or lower"),
    "DM-SEC-C-006": ("SHOULD", "client supports PSK-TLS with the DM PSK suites"),
    "DM-SEC-C-007": ("MUST", "client identifies which protocol the server uses"),
    "DM-SEC-C-008": ("MUST", "client logs the TLS version and suite and reports them"),
    "DM-SEC-C-009": ("MAY", "client authenticates with HTTP Basic (<x>/Auth, transport)"),
    "DM-SEC-C-010": ("MAY", "client authenticates with HTTP Digest (<x>/Auth, transport)"),
    "DM-SEC-C-011": ("MAY", "client authenticates with an X.509 certificate (TLS)"),
    "DM-SEC-S-001": ("MUST", "server runs a DM session over TLS 1.1"),
    "DM-SEC-S-002": ("SHOULD", "server runs a DM session over TLS 1.0"),
    "DM-SEC-S-003": ("SHOULD", "server runs a DM session over TLS 1.2"),
    "DM-SEC-S-004": ("SHOULD", "server supports SSL 3.0"),
    "DM-SEC-S-005": ("MUST NOT", "server never accepts SSL 2.0 or lower"),
    "DM-SEC-S-006": ("SHOULD", "server supports PSK-TLS with the DM PSK suites"),
    "DM-SEC-S-007": ("SHOULD", "server supports the RC4 and 3DES suites of the DM profile"),
    "DM-SEC-S-008": ("MUST", "server authenticates a client with HTTP Basic"),
    "DM-SEC-S-009": ("MUST", "server authenticates a client with HTTP Digest"),
    "DM-SEC-S-010": ("MUST", "server authenticates a client by its X.509 certificate"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    item: str
    result: str
    evidence: str

    @property
    def level(self) -> str:
        return ITEMS[self.item][0]

    @property
    def text(self) -> str:
        return ITEMS[self.item][1]


def _account() -> DeviceAccount:
    return DeviceAccount(
        "scr-device",
        "scr-client-secret",
        auth.AUTH_MD5,
        b"",
        server_id="openscws-scr",
        server_password="scr-server-secret",
        server_auth_type=auth.AUTH_MD5,
    )


@dataclass
class _Run:
    pki: Pki
    tmp: Path
    external: str | None
    outcomes: list[Outcome] = field(default_factory=list)
    peers: dict[str, list[tuple[bool, str]]] = field(default_factory=dict)
    n: int = 0

    def add(self, item: str, result: str, evidence: str) -> None:
        self.outcomes.append(Outcome(item, result, evidence))

    def peer(self, item: str, ok: bool, evidence: str) -> None:
        """A third-party check of an item: its evidence is added, and it fails the item."""
        self.peers.setdefault(item, []).append((ok, evidence))

    def merged(self) -> list[Outcome]:
        out = []
        for o in self.outcomes:
            checks = self.peers.get(o.item, [])
            if not checks or o.result == NOT_SUPPORTED:
                out.append(o)
                continue
            failed = any(not ok for ok, _ in checks)
            evidence = o.evidence + "; " + "; ".join(e for _, e in checks)
            out.append(Outcome(o.item, FAILED if failed else o.result, evidence))
        return out

    def ca(self) -> Path:
        path = self.tmp / "ca.pem"
        if not path.exists():
            path.write_bytes(self.pki.ca_pem)
        return path

    async def session(
        self,
        *,
        versions: tuple[str, str] = ("1.0", "1.2"),
        suites: str = "",
        psk: bool = False,
        client_tls: TlsSettings | None = None,
        http: HttpAuth | None = None,
        client_http: tuple[str, str, str] | None = None,
        require_cert: bool = False,
        client_cert: bool = False,
        pki: Pki | None = None,
    ) -> tuple[SessionReport, ServedSession | None, MiniDmServer]:
        """One DM session between our client and a fresh server configured as asked."""
        context = scr_server_context(
            self.pki,
            versions=versions,
            suites=suites,
            psk=(PSK_ID, PSK_KEY) if psk else None,
            require_client_cert=require_cert,
        )
        server = MiniDmServer(account=_account, context=context, http_auth=http)
        await server.start()
        try:
            self.n += 1
            path = self.tmp / f"tree-{self.n}.json"
            tree = client_store.new_tree(PSK_ID)
            tls = client_tls or TlsSettings(min_version="1.0", ca_file=self.ca())
            kind, name, secret = client_http or ("", "", "")
            acc = AccountSettings(
                server_id="openscws-scr",
                server_url=server.url,
                client_name="scr-device",
                client_secret="scr-client-secret",
                server_secret="scr-server-secret",
                http_auth=kind,
                http_name=name,
                http_secret=secret,
                client_cert_pem=(pki or self.pki).client_pem if client_cert else b"",
                client_key_pem=(pki or self.pki).client_key_pem if client_cert else b"",
                tls=tls,
            )
            client_store.add_account(tree, "1", acc)
            client_store.save(tree, path)
            client = DmClient(path, timeout=15)
            try:
                report = await client.run("1")
            except DmClientError as exc:
                report = client.last or SessionReport("1", server.url, "")
                report.state = f"failed: {exc}"
            return report, server.last(), server
        finally:
            await server.close()


def _both(report: SessionReport, served: ServedSession | None) -> str:
    theirs = f"{served.tls[0][0]} {served.tls[0][1]}" if served and served.tls else "nothing"
    return (
        f"session {report.session_id or '-'} {report.state}; client negotiated "
        f"{report.tls_version} {report.tls_suite}; server saw {theirs}"
    )


def _ok(report: SessionReport, served: ServedSession | None, version: str) -> bool:
    return (
        report.state == "ended"
        and report.tls_version == version
        and served is not None
        and bool(served.tls)
        and served.tls[0] == (report.tls_version, report.tls_suite)
    )


async def _versions(run: _Run) -> None:
    for n, version in (("001", "1.1"), ("002", "1.0"), ("003", "1.2")):
        report, served, _ = await run.session(versions=(version, version))
        ok = _ok(report, served, NAMES[version])
        run.add(f"DM-SEC-C-{n}", SUPPORTED if ok else FAILED, _both(report, served))


def _ssl3(run: _Run) -> None:
    why = []
    try:
        client_context(TlsSettings(min_version="3.0", max_version="1.2"))
    except ConfigError as exc:
        why.append(str(exc))
    why.append(f"ssl.HAS_SSLv3 is {ssl.HAS_SSLv3} in {ssl.OPENSSL_VERSION}")
    for iana, name in WEAK_SUITES:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.set_ciphers(name + ":@SECLEVEL=0")
            has = any(s["name"] == name for s in ctx.get_ciphers())
        except ssl.SSLError:
            has = False
        why.append(f"{iana} ({name}): {'present' if has else 'absent'}")
    evidence = "; ".join(why)
    run.add("DM-SEC-C-004", NOT_SUPPORTED, f"{NO_STACK}: {evidence}")
    run.add("DM-SEC-S-004", NOT_SUPPORTED, f"{NO_STACK}: {evidence}")
    run.add("DM-SEC-S-007", NOT_SUPPORTED, f"{NO_STACK}: {'; '.join(why[2:])}")


def _client_hello(tls: TlsSettings) -> bytes:
    ctx = client_context(tls)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _no_sslv2_client(run: _Run) -> None:
    hello = _client_hello(TlsSettings(min_version="1.0", check_hostname=False))
    record = hello[:3].hex(" ")
    client_version = hello[9:11]
    ok = hello[0] == 0x16 and hello[1:3] >= b"\x03\x01" and client_version >= b"\x03\x01"
    evidence = (
        f"ClientHello of the widest profile (TLS 1.0 up): record {record}, client_version "
        f"{client_version.hex(' ')}; a TLS handshake record, not an SSL 2.0 CLIENT-HELLO; "
        f"SSL 2.0 is not in {ssl.OPENSSL_VERSION}"
    )
    run.add("DM-SEC-C-005", SUPPORTED if ok else FAILED, evidence)


SSLV2_HELLO: Final = bytes(
    (0x80, 28, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, 0x80)
) + bytes(range(16))
"""An SSL 2.0 CLIENT-HELLO (version 0002) offering SSL_CK_RC4_128_WITH_MD5."""


async def _sslv2_probe(url_host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(url_host, port)
    try:
        writer.write(SSLV2_HELLO)
        await writer.drain()
        async with asyncio.timeout(5):
            got = await reader.read(64)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not got:
        return "closed"
    if got[0] == 0x15:
        return f"TLS alert {got[:7].hex(' ')}"
    return f"answered {got[:8].hex(' ')}"


async def _no_sslv2_server(run: _Run, host: str, port: int) -> None:
    try:
        answer = await _sslv2_probe(host, port)
    except (OSError, TimeoutError) as exc:
        answer = f"connection error {str(exc) or type(exc).__name__}"
    ok = answer == "closed" or answer.startswith("TLS alert") or "reset" in answer.lower()
    evidence = f"an SSL 2.0 CLIENT-HELLO to {host}:{port}: {answer}"
    run.add("DM-SEC-S-005", SUPPORTED if ok else FAILED, evidence)


async def _psk(run: _Run) -> None:
    done: list[str] = []
    bad: list[str] = []
    for iana, name in psk_suites():
        tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK_KEY, suites=name)
        report, served, _ = await run.session(suites=name, psk=True, client_tls=tls)
        if _ok(report, served, "TLSv1.2") and report.tls_suite == name:
            done.append(iana)
        else:
            bad.append(f"{iana}: {_both(report, served)}")
    missing = [iana for iana, name in _DM_PSK if name not in {n for _, n in psk_suites()}]
    evidence = f"sessions over {', '.join(done) or 'none'}"
    if missing:
        evidence += f"; {NO_STACK}: {', '.join(missing)}"
    if bad:
        evidence += "; failed: " + "; ".join(bad)
    result = FAILED if bad else SUPPORTED if done else NOT_SUPPORTED
    run.add("DM-SEC-C-006", result, evidence)


async def _identify(run: _Run) -> None:
    """The client tells apart servers that choose TLS 1.0, 1.1 and 1.2, while offering all."""
    seen = []
    ok = True
    for version in ("1.0", "1.1", "1.2"):
        report, served, _ = await run.session(versions=(version, version))
        theirs = served.tls[0][0] if served and served.tls else "nothing"
        seen.append(f"server {NAMES[version]}: client found {report.tls_version or '-'}")
        ok = ok and report.tls_version == NAMES[version] == theirs
    run.add("DM-SEC-C-007", SUPPORTED if ok else FAILED, "; ".join(seen))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _capture(name: str) -> Iterator[_Capture]:
    logger = logging.getLogger(name)
    handler = _Capture()
    old, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the evidence, not a line on the console
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
        logger.propagate = propagate


async def _report(run: _Run) -> None:
    with _capture("openscws.dm.transport") as logged:
        report, served, _ = await run.session(versions=("1.2", "1.2"))
    sent = served.core.devinfo if served else {}
    v, s = sent.get("Ext/TLS/Version", ""), sent.get("Ext/TLS/Suite", "")
    line = next((x for x in logged.lines if "TLS" in x), "")
    ok = bool(line) and _ok(report, served, "TLSv1.2") and (v, s) == served.tls[0]  # type: ignore[union-attr]
    evidence = (
        f"logged: {line!r}; Package #1 carried ./DevInfo/Ext/TLS/Version={v} and "
        f"./DevInfo/Ext/TLS/Suite={s}; {_both(report, served)}"
    )
    run.add("DM-SEC-C-008", SUPPORTED if ok else FAILED, evidence)


async def _http(run: _Run) -> None:
    for n_c, kind in (("009", "basic"), ("010", "digest")):
        algorithms = ("MD5",) if kind == "basic" else ("MD5", "SHA-256")
        parts, ok = [], True
        for algorithm in algorithms:
            http = HttpAuth(kind, "scr-http", "scr-http-secret", algorithm)
            creds = (f"HTTP-{kind.upper()}", "scr-http", "scr-http-secret")
            report, served, _ = await run.session(versions=("1.2", "1.2"), http=http,
                                                  client_http=creds)  # fmt: skip
            good = report.state == "ended" and served is not None and served.http_user
            wrong = ("HTTP-" + kind.upper(), "scr-http", "wrong")
            bad, _, server = await run.session(versions=("1.2", "1.2"), http=http,
                                               client_http=wrong)  # fmt: skip
            refused = "HTTP 401" in bad.state and server.http_refusals > 0
            label = kind if kind == "basic" else f"digest {algorithm}"
            parts.append(
                f"{label}: session {report.state} as {served.http_user if served else '-'}, "
                f"wrong password refused with 401: {'yes' if refused else 'no'}"
            )
            ok = ok and bool(good) and refused
        evidence = "; ".join(parts)
        run.add(f"DM-SEC-C-{n_c}", SUPPORTED if ok else FAILED, evidence)


async def _x509(run: _Run) -> None:
    report, served, _ = await run.session(require_cert=True, client_cert=True)
    good = report.state == "ended" and served is not None and served.client_cert
    none, _, _ = await run.session(require_cert=True)
    refused = none.state.startswith("failed")
    stranger = make_pki()  # a certificate the server's CA did not issue
    other, _, _ = await run.session(require_cert=True, client_cert=True, pki=stranger)
    unknown = other.state.startswith("failed")
    evidence = (
        f"with the account's certificate: {_both(report, served)}, server verified it: "
        f"{'yes' if good else 'no'}; without one: {none.state}; with one from an unknown CA: "
        f"{other.state}"
    )
    ok = bool(good) and refused and unknown
    run.add("DM-SEC-C-011", SUPPORTED if ok else FAILED, evidence)


async def _external_server(run: _Run, url: str, ca: Path | None) -> None:
    """The server items as handshakes against `url` (no DM account there is assumed)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443

    async def shake(tls: TlsSettings) -> TlsInfo | str:
        t = Transport(client_context(tls), timeout=10)
        try:
            info = await t.connect(url)
            return info if info is not None else "no TLS"
        except TransportError as exc:
            return str(exc)
        finally:
            await t.close()

    for n, version in (("001", "1.1"), ("002", "1.0"), ("003", "1.2")):
        tls = TlsSettings(min_version=version, max_version=version, ca_file=ca)
        got = await shake(tls)
        ok = isinstance(got, TlsInfo) and got.version == NAMES[version]
        run.add(f"DM-SEC-S-{n}", SUPPORTED if ok else NOT_SUPPORTED, f"handshake: {got}")
    await _no_sslv2_server(run, host, port)
    done = []
    for iana, name in psk_suites():
        tls = TlsSettings(psk_identity=PSK_ID, psk_key=PSK_KEY, suites=name)
        got = await shake(tls)
        if isinstance(got, TlsInfo):
            done.append(iana)
    run.add(
        "DM-SEC-S-006",
        SUPPORTED if done else NOT_SUPPORTED,
        f"PSK handshakes with identity {PSK_ID}: {', '.join(done) or 'none completed'}",
    )
    for n in ("008", "009", "010"):
        run.add(
            f"DM-SEC-S-{n}",
            NOT_SUPPORTED,
            "not checked against an external server: it needs a device account there",
        )


_DM_PSK: Final = (
    ("TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256"),
    ("TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256"),
    ("TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", "DHE-PSK-AES128-GCM-SHA256"),
    ("TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", "DHE-PSK-AES128-CBC-SHA256"),
    ("TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", "RSA-PSK-AES128-GCM-SHA256"),
    ("TLS_RSA_PSK_WITH_AES_128_CBC_SHA256", "RSA-PSK-AES128-CBC-SHA256"),
)


async def run_scr(
    server_url: str | None = None,
    progress: Callable[[str], None] | None = None,
    ca: Path | None = None,
) -> list[Outcome]:
    """Every item, in order. `server_url`: run the server items against that server, whose
    certificate is checked against `ca` (else the system's CAs)."""
    with tempfile.TemporaryDirectory(prefix="openscws-scr-") as tmp:
        run = _Run(make_pki(), Path(tmp), server_url)
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("TLS versions", lambda: _versions(run)),
            ("PSK-TLS suites", lambda: _psk(run)),
            ("protocol identification", lambda: _identify(run)),
            ("TLS report", lambda: _report(run)),
            ("HTTP authentication", lambda: _http(run)),
            ("X.509 client certificates", lambda: _x509(run)),
        ]
        for label, step in steps:
            if progress is not None:
                progress(label)
            await step()
        _ssl3(run)
        _no_sslv2_client(run)
        if server_url is not None:
            await _external_server(run, server_url, ca)
        else:
            from openscws.dm.scr_real import server_items

            if progress is not None:
                progress("server items against dm serve")
            await server_items(run)
        if progress is not None:
            progress("third-party peers (openssl s_server, s_client)")
        await _third_party(run, server_url is None)
        order = list(ITEMS)
        return sorted(run.merged(), key=lambda o: order.index(o.item))


async def _s_client(port: int, args: list[str], ca: Path) -> dict[str, str]:
    """`openssl s_client -brief` against 127.0.0.1:port: its "Protocol version" and
    "Ciphersuite" lines (empty when the handshake failed)."""
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca), "-brief",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(20):
        out, _ = await proc.communicate()
    got = {}
    for line in out.decode(errors="replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep and key in ("Protocol version", "Ciphersuite"):
            got[key] = value.strip()
    return got


async def _third_party(run: _Run, own_server: bool) -> None:
    """The versions and PSK suites again, against OpenSSL's own programs: our client against
    `openssl s_server`, and `openssl s_client` against the real DM server (`dm serve`'s, as
    the server items run). Missing programs add a note, not a failure."""
    import shutil

    if shutil.which("openssl") is None:
        for item in ("DM-SEC-C-001", "DM-SEC-C-006"):
            run.peer(item, True, "openssl not installed here: no third-party check")
        return
    checks: list[tuple[str, str, str, bool]] = [
        (f"DM-SEC-{{}}-{n}", v, "AES128-SHA", False)
        for n, v in (("001", "1.1"), ("002", "1.0"), ("003", "1.2"))
    ]
    checks += [("DM-SEC-{}-006", "1.2", name, True) for _, name in psk_suites()]
    async with contextlib.AsyncExitStack() as stack:
        real = None
        if own_server:
            from openscws.dm.db_models import HttpAuth as DeviceAuth
            from openscws.dm.scr_real import dm_serve

            real = await stack.enter_async_context(dm_serve(run))
            real.add("scr:s_client", http_auth=DeviceAuth.PSK, psk_identity=PSK_ID, psk_key=PSK_KEY)
        await _peer_checks(run, checks, real)


async def _peer_checks(
    run: _Run, checks: list[tuple[str, str, str, bool]], real: _Real | None
) -> None:
    from openscws.dm.scr_peers import OPENSSL_VERSIONS, PeerUnavailable, openssl_server
    from openscws.tls.context import FFDHE2048_PEM

    pki = run.pki
    for item, version, suite, psk in checks:
        extra: dict[str, bytes] = {}
        if not psk or suite.startswith("RSA-PSK"):
            extra = {"cert_pem": pki.server_pem, "key_pem": pki.server_key_pem}
        if suite.startswith("DHE-PSK"):
            extra = {"dh_pem": FFDHE2048_PEM}
        tls = TlsSettings(
            min_version=version,
            max_version=version,
            suites=suite,
            psk_identity=PSK_ID if psk else "",
            psk_key=PSK_KEY if psk else b"",
            ca_file=run.ca(),
        )
        try:
            with openssl_server(
                version=version, suite=suite, psk=PSK_KEY if psk else None, **extra
            ) as peer:
                t = Transport(client_context(tls), timeout=10)
                try:
                    info: TlsInfo | str | None = await t.connect(f"https://127.0.0.1:{peer.port}/")
                except TransportError as exc:
                    info = str(exc)
                finally:
                    await t.close()
                agreed = await asyncio.to_thread(peer.wait_for, f"CIPHER is {suite}")
        except PeerUnavailable as exc:
            run.peer(item.format("C"), False, f"openssl s_server: {exc}")
            continue
        ok = isinstance(info, TlsInfo) and info == TlsInfo(NAMES[version], suite, info.bits)
        run.peer(
            item.format("C"),
            ok and agreed,
            f"openssl s_server {NAMES[version]} {suite}: client found {info}, "
            f"s_server {'agrees' if agreed else 'does not agree'}",
        )
        if real is None:
            continue
        args = [OPENSSL_VERSIONS[version], "-cipher", f"{suite}:@SECLEVEL=0"]
        if psk:
            args += ["-psk", PSK_KEY.hex(), "-psk_identity", PSK_ID]
        got = await _s_client(real.server.port, args, run.ca())
        want = {"Protocol version": NAMES[version], "Ciphersuite": suite}
        run.peer(
            item.format("S"),
            got == want,
            f"openssl s_client {NAMES[version]} {suite} against dm serve: "
            f"{got.get('Protocol version', '-')} {got.get('Ciphersuite', 'no handshake')}",
        )


def render_text(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.item} {o.level:8} {o.result:13} {o.text}\n    {o.evidence}" for o in outcomes]


def render_markdown(outcomes: list[Outcome]) -> str:
    lines = [
        "| item | level | requirement (our reading) | result | evidence |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        evidence = o.evidence.replace("|", "\\|")
        lines.append(f"| {o.item} | {o.level} | {o.text} | **{o.result}** | {evidence} |")
    return "\n".join(lines) + "\n"
