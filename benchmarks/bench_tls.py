"""HTTPS with TLS terminated in the card, through the BIP gateway, next to `openssl s_server`.

    .venv/bin/python benchmarks/bench_tls.py [--quick] [--json [FILE]]

One run measures, side by side:

1. Full TLS handshakes per second, certificate (RSA 2048: TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256
   and TLS 1.3 with the default suites) and PSK (TLS 1.2 PSK-AES128-CBC-SHA, the SCWS §11.1.1
   suite, and PSK-AES128-GCM-SHA256), against

   gateway   `python -m openscws up` (card + BIP gateway in one process), HTTPS port 4116
   s_server  `openssl s_server` on this machine with the SAME key, certificate chain, PSK
             identity/key and cipher string, `-no_cache -no_ticket -num_tickets 0` (nothing
             can resume) and `-www`

   The client is the same for both: this process, one Python `ssl` connection after the
   other, each a fresh TCP connection and a full handshake (no session is ever offered for
   reuse) closed as soon as the handshake is done. The first handshake of every point checks
   the protocol, the suite and (certificate cases) that the server sent the card's certificate.

2. Bulk MB/s through the same gateway: a 1 MiB resource (put in the card image with
   `openscws content put`) downloaded repeatedly over one keep-alive connection, by the same
   client code, over HTTP (port 3516) and HTTPS (port 4116): TLS 1.3 with
   `card.tls_record_limit` 1024 (the default) and 16384 (a second gateway on a copy of the
   image), and PSK-AES128-CBC-SHA at 1024. A probe download per HTTPS row counts the records
   the card sent.

Every point is warmed up, then measured `repeat` times with the servers interleaved; the
median is reported. All servers listen on 127.0.0.1, ephemeral ports; bounded by time and count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import run as base  # noqa: E402  (benchmarks/run.py: server start-up, content, client pieces)

BULK_PATH = base.BULK_PATH
PSK_IDENTITY = "card1"
PSK_KEY_HEX = "00112233445566778899aabbccddeeff"
PSK_KEY = bytes.fromhex(PSK_KEY_HEX)
TARGET_PSK_RATIO = 1 / 3
TARGET_HTTPS_RATIO = 0.5


@dataclass(frozen=True)
class Plan:
    hs_seconds: float  # per handshakes/s point
    hs_max: int
    warmup_handshakes: int
    bulk_seconds: float  # per MB/s point (at least one download)
    bulk_max_downloads: int
    repeat: int = 3


FULL = Plan(
    hs_seconds=3.0, hs_max=20_000, warmup_handshakes=20, bulk_seconds=3.0, bulk_max_downloads=200
)
QUICK = Plan(
    hs_seconds=1.0, hs_max=5_000, warmup_handshakes=5, bulk_seconds=1.0, bulk_max_downloads=50
)


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    version: str
    cipher: str | None  # TLS <= 1.2 suite; None: TLS 1.3 and its default suites
    psk: bool


CASES = (
    Case(
        "cert-tls12",
        "certificate (RSA 2048), TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256",
        "TLSv1.2",
        "ECDHE-RSA-AES128-GCM-SHA256",
        False,
    ),
    Case("cert-tls13", "certificate (RSA 2048), TLS 1.3, default suites", "TLSv1.3", None, False),
    Case("psk-cbc", "PSK, TLS 1.2 PSK-AES128-CBC-SHA", "TLSv1.2", "PSK-AES128-CBC-SHA", True),
    Case("psk-gcm", "PSK, TLS 1.2 PSK-AES128-GCM-SHA256", "TLSv1.2", "PSK-AES128-GCM-SHA256", True),
)
HS_SERVERS = ("gateway", "s_server")


@dataclass(frozen=True)
class Bulk:
    key: str
    label: str
    server: str  # which gateway
    case: Case | None  # None: plain HTTP


BULKS = (
    Bulk("http", "HTTP (port 3516)", "gw1024", None),
    Bulk("https-1024", "HTTPS TLS 1.3, record limit 1024 (default)", "gw1024", CASES[1]),
    Bulk("https-16384", "HTTPS TLS 1.3, record limit 16384", "gw16384", CASES[1]),
    Bulk("psk-1024", "HTTPS PSK-AES128-CBC-SHA, record limit 1024", "gw1024", CASES[2]),
)


def client_context(case: Case) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the card's certificate is compared by hand, once
    if case.version == "TLSv1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        assert case.cipher is not None
        ctx.set_ciphers(case.cipher)
    if case.psk:
        ctx.set_psk_client_callback(lambda hint: (PSK_IDENTITY, PSK_KEY))
    return ctx


def _tcp(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- the card image and the servers --------------------------------------------------------------


@dataclass
class Setup:
    tmp: Path
    image: Path
    leaf_pem: Path
    rest_pem: Path
    key_pem: Path
    leaf_der: bytes
    bulk: bytes


def cli(*args: str | Path) -> None:
    argv = [sys.executable, "-m", "openscws", *map(str, args)]
    env = base.child_env()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    if out.returncode:
        raise RuntimeError(f"{' '.join(argv[2:])} failed:\n{out.stdout}{out.stderr}")


def write_config(path: Path, tmp: Path, record_limit: int) -> Path:
    """Free ports for the admin server, its API and the SMS entry point (`base.up_config`):
    the two gateways of a run must not both take the default admin port. "compat": the SCWS
    suite PSK-AES128-CBC-SHA is a CBC suite, compat only."""
    return base.up_config(path, tmp, f'tls_record_limit = {record_limit}\ntls_profile = "compat"')


def prepare(tmp: Path) -> Setup:
    """A card image with the 1 MiB resource, its RSA key and device certificate, PSK on."""
    files = tmp / "files"
    _, bulk = base.make_files(files)
    image = tmp / "image"
    cfg = write_config(tmp / "gw1024.toml", tmp, 1024)
    cli("card", "init", "--issue", "--no-demo", "-q", "-c", cfg, "--data-dir", image)
    cli("content", "put", files / "big.bin", BULK_PATH, "-q", "-c", cfg, "--data-dir", image)
    cli("card", "psk", "add", PSK_IDENTITY, "--key", PSK_KEY_HEX, "-q", "--data-dir", image)
    cli("card", "psk", "enable", "-q", "--data-dir", image)
    pem = (image / "secure" / "device-chain.pem").read_text()
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", pem, re.S)
    if len(certs) < 2:
        raise RuntimeError("device-chain.pem: expected the device certificate and its CA")
    leaf, rest = tmp / "leaf.pem", tmp / "chain-rest.pem"
    leaf.write_text(certs[0])
    rest.write_text("".join(certs[1:]))
    return Setup(
        tmp=tmp,
        image=image,
        leaf_pem=leaf,
        rest_pem=rest,
        key_pem=image / "secure" / "card-key.pem",
        leaf_der=ssl.PEM_cert_to_DER_cert(certs[0]),
        bulk=bulk,
    )


def card_cipher_string() -> str:
    """The TLS <= 1.2 cipher string the card's context uses with PSK on (tls/context.py)."""
    from openscws.tls.context import cert_cipher_string

    return cert_cipher_string("compat", psk=True)


@dataclass
class Gateway:
    server: base.Server
    http_port: int
    https_port: int


def start_gateway(setup: Setup, name: str, image: Path, record_limit: int) -> Gateway:
    cfg = write_config(setup.tmp / f"{name}.toml", setup.tmp, record_limit)
    http, https = base.free_port(), base.free_port()
    server = base.start_server(
        name,
        [
            sys.executable,
            "-m",
            "openscws",
            "up",
            "-c",
            str(cfg),
            "--data-dir",
            str(image),
            "--port-map",
            f"3516={http}",
            "--port-map",
            f"4116={https}",
            "--no-demo",
            "--no-admin",  # the admin server's ports are not this benchmark's
            "-q",
        ],
        http,
    )
    base.wait_connectable(https)
    return Gateway(server, http, https)


@dataclass
class SServer:
    proc: subprocess.Popen[bytes]
    port: int
    argv: list[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_s_server(setup: Setup) -> SServer:
    port = base.free_port()
    argv = [
        "openssl",
        "s_server",
        "-accept",
        f"127.0.0.1:{port}",
        "-cert",
        str(setup.leaf_pem),
        "-cert_chain",
        str(setup.rest_pem),
        "-key",
        str(setup.key_pem),
        "-psk_identity",
        PSK_IDENTITY,
        "-psk",
        PSK_KEY_HEX,
        "-cipher",
        card_cipher_string(),
        "-serverpref",
        "-no_cache",
        "-no_ticket",
        "-num_tickets",
        "0",
        "-www",
        "-quiet",
    ]
    log = (setup.tmp / "s_server.log").open("wb")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    try:
        base.wait_connectable(port)
    except OSError:
        proc.kill()
        raise
    return SServer(proc, port, argv)


# -- measurements --------------------------------------------------------------------------------


def handshakes(port: int, case: Case, seconds: float, max_n: int, leaf_der: bytes) -> dict:
    """Sequential full handshakes, each on a fresh connection, closed right after."""
    ctx = client_context(case)
    hostname = None if case.psk else "localhost"
    n = errors = 0
    negotiated: tuple[str, str] | None = None
    start = time.perf_counter()
    deadline = start + seconds
    while n < max_n:
        try:
            with _tcp(port) as raw, ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                if tls.session_reused:
                    raise RuntimeError("a session was resumed")
                if negotiated is None:
                    cipher = tls.cipher()
                    negotiated = (str(tls.version()), cipher[0] if cipher else "?")
                    if negotiated[0] != case.version or (
                        case.cipher is not None and negotiated[1] != case.cipher
                    ):
                        raise RuntimeError(f"{case.key}: negotiated {negotiated}")
                    if not case.psk and tls.getpeercert(binary_form=True) != leaf_der:
                        raise RuntimeError("the server did not send the card's certificate")
        except (OSError, ssl.SSLError) as exc:
            errors += 1
            if errors > 10:
                raise RuntimeError(f"{case.key} on port {port}: {exc}") from exc
            continue
        n += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "rate": n / elapsed,
        "handshakes": n,
        "errors": errors,
        "seconds": elapsed,
        "negotiated": negotiated,
    }


def bulk_download(
    connect: Callable[[], socket.socket],
    expected: bytes,
    seconds: float,
    max_n: int,
    check_body: bool,
) -> dict:
    """Sequential GETs of the 1 MiB resource on one keep-alive connection (the same client
    code for HTTP and HTTPS); MB/s of body bytes (10^6 B/s)."""
    with connect() as sock:
        return base.download_loop(sock, BULK_PATH, expected, seconds, max_n, check_body)


def record_probe(port: int, case: Case, size: int) -> dict:
    """One download over a raw socket and a MemoryBIO client, counting the card's records."""
    ctx = client_context(case)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=None if case.psk else "localhost")
    lengths: list[int] = []
    header = bytearray()
    due = 0
    handshake_records = 0
    sent = False
    body = bytearray()
    with _tcp(port) as sock:
        while True:
            try:
                obj.do_handshake()
                if not sent:
                    handshake_records = len(lengths)
                    obj.write(base.request_bytes(BULK_PATH))
                    sent = True
            except ssl.SSLWantReadError:
                pass
            if out.pending:
                sock.sendall(out.read())
            if sent:
                try:
                    while chunk := obj.read(65536):
                        body += chunk
                except ssl.SSLWantReadError:
                    pass
                end = body.find(b"\r\n\r\n")
                if end >= 0 and len(body) >= end + 4 + size:
                    break
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed during the record probe")
            inc.write(data)
            at = 0
            while at < len(data):
                if due:
                    take = min(due, len(data) - at)
                    due -= take
                    at += take
                    continue
                take = min(5 - len(header), len(data) - at)
                header += data[at : at + take]
                at += take
                if len(header) == 5:
                    due = int.from_bytes(header[3:5])
                    lengths.append(due)
                    header.clear()
    response = lengths[handshake_records:]
    return {
        "records": len(response),
        "largest": max(response, default=0),
        "handshake_largest": max(lengths[:handshake_records], default=0),
    }


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def run(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    hs: dict[str, dict[str, list[float]]] = {c.key: {s: [] for s in HS_SERVERS} for c in CASES}
    negotiated: dict[str, dict[str, Any]] = {c.key: {} for c in CASES}
    errors = 0
    bulk: dict[str, list[float]] = {b.key: [] for b in BULKS}
    records: dict[str, dict] = {}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="openscws-bench-tls-") as tmpdir:
        setup = prepare(Path(tmpdir))
        image16 = setup.tmp / "image16384"
        shutil.copytree(setup.image, image16)
        (image16 / "lock").unlink(missing_ok=True)
        gateways: dict[str, Gateway] = {}
        sserver: SServer | None = None
        try:
            gateways["gw1024"] = start_gateway(setup, "gw1024", setup.image, 1024)
            gateways["gw16384"] = start_gateway(setup, "gw16384", image16, 16384)
            sserver = start_s_server(setup)
            hs_port = {"gateway": gateways["gw1024"].https_port, "s_server": sserver.port}

            def connector(b: Bulk) -> Callable[[], socket.socket]:
                gw = gateways[b.server]
                if b.case is None:
                    return lambda: _tcp(gw.http_port)
                ctx = client_context(b.case)
                name = None if b.case.psk else "localhost"
                return lambda: ctx.wrap_socket(_tcp(gw.https_port), server_hostname=name)

            # Warm-up (the card opens channels on demand) and one checked download each.
            for case in CASES:
                for server in HS_SERVERS:
                    handshakes(hs_port[server], case, 60.0, plan.warmup_handshakes, setup.leaf_der)
            for b in BULKS:
                bulk_download(connector(b), setup.bulk, 0.0, 1, check_body=True)
                if b.case is not None:
                    records[b.key] = record_probe(
                        gateways[b.server].https_port, b.case, len(setup.bulk)
                    )
            for rep in range(plan.repeat):
                for case in CASES:
                    for server in HS_SERVERS:
                        r = handshakes(
                            hs_port[server], case, plan.hs_seconds, plan.hs_max, setup.leaf_der
                        )
                        hs[case.key][server].append(r["rate"])
                        negotiated[case.key][server] = r["negotiated"]
                        errors += r["errors"]
                    g, s = hs[case.key]["gateway"][-1], hs[case.key]["s_server"][-1]
                    log(
                        f"  rep {rep + 1} {case.key:<10} gateway {g:>7.0f} hs/s   "
                        f"s_server {s:>7.0f} hs/s   ratio {g / s:.2f}"
                    )
                for b in BULKS:
                    r = bulk_download(
                        connector(b),
                        setup.bulk,
                        plan.bulk_seconds,
                        plan.bulk_max_downloads,
                        check_body=rep == 0,
                    )
                    bulk[b.key].append(r["mbps"])
                    log(
                        f"  rep {rep + 1} {b.key:<11} {r['mbps']:>7.2f} MB/s "
                        f"({r['downloads']} x 1 MiB)"
                    )
            for name, gw in gateways.items():
                if gw.server.proc.poll() is not None:
                    raise RuntimeError(f"{name} died:\n" + "\n".join(gw.server.log[-20:]))
            if sserver.proc.poll() is not None:
                raise RuntimeError("openssl s_server died")
            s_argv = sserver.argv
        finally:
            for gw in gateways.values():
                gw.server.stop()
            if sserver is not None:
                sserver.stop()
    handshake = {
        c.key: {
            "label": c.label,
            "gateway": median(hs[c.key]["gateway"]),
            "s_server": median(hs[c.key]["s_server"]),
            "ratio": median(hs[c.key]["gateway"]) / median(hs[c.key]["s_server"]),
            "negotiated": negotiated[c.key],
            "samples": hs[c.key],
        }
        for c in CASES
    }
    http = median(bulk["http"])
    bulks = {
        b.key: {
            "label": b.label,
            "mbps": median(bulk[b.key]),
            "vs_http": median(bulk[b.key]) / http,
            "records": records.get(b.key),
            "samples": bulk[b.key],
        }
        for b in BULKS
    }
    return {
        "when": when,
        "loadavg": loadavg,
        "plan": asdict(plan),
        "openssl": openssl_version(),
        "python_openssl": ssl.OPENSSL_VERSION,
        "s_server_argv": [
            re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", re.sub(r"^/.*/", "", a)) for a in s_argv
        ],
        "handshakes": handshake,
        "handshake_errors": errors,
        "bulk": bulks,
    }


def openssl_version() -> str:
    out = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    return out.stdout.strip()


# -- report --------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def psk_ok(result: dict[str, Any]) -> bool:
    return all(result["handshakes"][k]["ratio"] >= TARGET_PSK_RATIO for k in ("psk-cbc", "psk-gcm"))


def https_ok(result: dict[str, Any]) -> bool:
    return result["bulk"]["https-1024"]["vs_http"] >= TARGET_HTTPS_RATIO


def summary(result: dict[str, Any]) -> str:
    lines = []
    for key, h in result["handshakes"].items():
        lines.append(
            f"{key:<10} gateway {h['gateway']:>7.0f} hs/s  s_server {h['s_server']:>7.0f} hs/s"
            f"  ratio {h['ratio']:.2f}"
        )
    for key, b in result["bulk"].items():
        lines.append(f"{key:<11} {b['mbps']:>7.2f} MB/s  ({b['vs_http']:.2f} x HTTP)")
    lines.append(
        f"PSK target (gateway >= 1/3 s_server): {'met' if psk_ok(result) else 'NOT met'}; "
        f"HTTPS/HTTP target (>= {TARGET_HTTPS_RATIO}): {'met' if https_ok(result) else 'NOT met'}"
    )
    return "\n".join(lines)


def _neg(n: tuple[str, str] | list[str] | None) -> str:
    return "?" if not n else f"{n[0]} {n[1]}"


def markdown(result: dict[str, Any], ram: dict[str, Any] | None) -> str:
    """The "TLS" section of docs/benchmarks.md."""
    import bench_tls_ram

    plan = result["plan"]
    hs = result["handshakes"]
    bulk = result["bulk"]
    lines = [
        "## TLS",
        "",
        "HTTPS on card port 4116, with TLS terminated inside the card (`TlsServerHandler` over",
        "`ssl.MemoryBIO`; the gateway relays TLS records as BIP APDUs), next to `openssl",
        "s_server` serving the same key, certificate chain and PSK on this machine.",
        f"`openssl s_server`: {result['openssl']}; the card and the client: Python's `ssl`",
        f"with {result['python_openssl']}. Measured {result['when']}, load average before:",
        f"{result['loadavg']}.",
        "",
        "```sh",
        ".venv/bin/python benchmarks/run.py --only tls      # this section only (rewrites it here)",
        ".venv/bin/python benchmarks/bench_tls.py [--quick] [--json [FILE]]",
        ".venv/bin/python benchmarks/bench_tls_ram.py [--json [FILE]]",
        "```",
        "",
        "### Full handshakes per second",
        "",
        f"Median of {plan['repeat']} runs of {plan['hs_seconds']:g} s each, gateway and "
        "s_server interleaved. One client (a",
        "Python `ssl` socket in the benchmark process) does one handshake after the other, each",
        "on a new TCP connection, never offering a session for resumption, and closes the",
        "connection as soon as its handshake is done. So this is a latency figure: through the",
        "gateway every flight also crosses the BIP exchange (channel status event, RECEIVE",
        "DATA, SEND DATA, then CLOSE CHANNEL and a channel reopened to listen), a cost per",
        "connection and per flight on top of the TLS work. The RSA 2048 signature weighs on",
        "both servers' certificate handshakes; a PSK handshake is so cheap for s_server that",
        "the BIP exchange is most of what separates the two.",
        "",
        "| handshake | gateway (`openscws up`), hs/s | `openssl s_server`, hs/s "
        "| gateway / s_server | negotiated |",
        "|---|---:|---:|---:|---|",
    ]
    for h in hs.values():
        lines.append(
            f"| {h['label']} | {h['gateway']:,.0f} | {h['s_server']:,.0f} | {h['ratio']:.2f} "
            f"| {_neg(h['negotiated'].get('gateway'))} |"
        )
    lines += [
        "",
        f"PSK target (gateway >= 1/3 of s_server, both PSK suites): {verdict(psk_ok(result))}. "
        f"Handshake errors over the whole run: {result['handshake_errors']}.",
        "",
        "`openssl s_server` ran as (the card's cipher string, its leaf certificate, CA",
        "certificate and key, the PSK `card1`):",
        "",
        "```sh",
        " ".join(shlex.quote(a) for a in result["s_server_argv"]),
        "```",
        "",
        "### Bulk: HTTPS and HTTP through the same gateway",
        "",
        "A 1 MiB resource downloaded again and again on one keep-alive connection, by the same",
        "client code over a plain and a TLS socket (median of "
        f"{plan['repeat']} runs of up to {plan['bulk_seconds']:g} s /",
        f"{plan['bulk_max_downloads']} downloads). MB = 10^6 bytes. The records columns come "
        "from a separate probe",
        "download (raw socket and a MemoryBIO client) and count the records carrying the",
        "response. Bulk through the gateway is bound by BIP (240 B per SEND DATA, see the APDU",
        "ceiling above), so what TLS costs is mostly its extra bytes on the link (record header,",
        "tag or MAC and padding per record) and one `SSLObject.write` per record.",
        "",
        "| transfer | MB/s | / HTTP | records per 1 MiB response | largest record, B |",
        "|---|---:|---:|---:|---:|",
    ]
    for b in bulk.values():
        rec = b["records"]
        recs = "-" if rec is None else f"{rec['records']:,}"
        largest = "-" if rec is None else f"{rec['largest']:,}"
        lines.append(
            f"| {b['label']} | {b['mbps']:.2f} | {b['vs_http']:.2f} | {recs} | {largest} |"
        )
    lines += [
        "",
        f"HTTPS / HTTP target (>= {TARGET_HTTPS_RATIO}, TLS 1.3 at the default record limit): "
        f"{verdict(https_ok(result))}.",
        "",
    ]
    if ram is not None:
        lines += [bench_tls_ram.BEGIN, bench_tls_ram.markdown(ram).rstrip("\n"), bench_tls_ram.END]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="TLS benchmarks (see the module docstring)")
    p.add_argument("--quick", action="store_true", help="short runs (about 30 s)")
    p.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="write the numbers (- for stdout)"
    )
    args = p.parse_args(argv)
    if shutil.which("openssl") is None:
        print("bench_tls needs the openssl command (apt-get install openssl)", file=sys.stderr)
        return 2
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {msg}", file=sys.stderr, flush=True)

    result = run(QUICK if args.quick else FULL, log)
    result["wall_seconds"] = time.monotonic() - started
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
