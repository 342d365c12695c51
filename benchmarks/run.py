"""openscws benchmark suite: the SCWS through the BIP gateway, the same HTTP engine without BIP,
and the standard library's http.server, side by side on 127.0.0.1.

    .venv/bin/python benchmarks/run.py [--quick] [--json out.json] [--no-docs]
        [--no-tls | --only tls]

Servers (each its own process, so the load generator never shares their GIL):

  gateway   `python -m openscws up --no-demo -q --data-dir IMG --port-map 3516=PORT`: the
            virtual UICC and the terminal's BIP gateway in one process; every byte crosses
            encoded APDUs (ENVELOPE / FETCH / TERMINAL RESPONSE carrying RECEIVE/SEND DATA)
  direct    benchmarks/direct_server.py: HttpServerConnection + Site over the same card image,
            on a plain asyncio TCP server
  baseline  benchmarks/baseline_server.py: http.server (ThreadingHTTPServer +
            SimpleHTTPRequestHandler, HTTP/1.1) serving the same two files from a directory

Metrics: requests/s for a 1 KB page over keep-alive with 1 and 4 connections, each strictly
request/response (no pipelining), driven by wrk when installed (else a raw-socket Python
client); MB/s for a 1 MB resource downloaded several times in a row on one connection, every
length checked and the first body compared byte for byte. Every point is warmed up, then
measured 3 times, interleaving the servers; the median is reported. Then the in-memory APDU
micro-benchmark (benchmarks/bench_apdu.py) gives the ceiling BIP puts on bulk throughput.
Then the TLS benchmarks: benchmarks/bench_tls.py (handshakes/s through the gateway next to
`openssl s_server`, HTTPS vs HTTP bulk) and benchmarks/bench_tls_ram.py (card RAM per HTTPS
channel, in memory); --no-tls skips them, --only tls runs only them.

Writes docs/benchmarks.md unless --no-docs; with --only tls only its "TLS" section is
replaced (between the TLS_BEGIN/TLS_END markers), the rest of the page is left as it was. A full
write keeps the sections other benchmarks own (benchmarks/bench_admin.py's, between its
markers), and the TLS section when --no-tls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _docs  # noqa: E402

from openscws.aio.freeport import free_port as free_port  # noqa: E402  (for the benchmarks)

PAGE_PATH = "/index.html"
BULK_PATH = "/big.bin"
PAGE_SIZE = 1024
BULK_SIZE = 1 << 20
ICCID = "8988211000000000003"
SERVERS = ("gateway", "direct", "baseline")
CONCURRENCY = (1, 4)
TARGET_RATIO = 0.5
TARGET_BULK_MBS = 20.0
TLS_BEGIN = _docs.TLS_BEGIN
TLS_END = _docs.TLS_END
ADMIN_BEGIN = _docs.ADMIN_BEGIN
ADMIN_END = _docs.ADMIN_END
KEPT_SECTIONS = (
    (TLS_BEGIN, TLS_END),
    (ADMIN_BEGIN, ADMIN_END),
    (_docs.PCSC_BEGIN, _docs.PCSC_END),
    (_docs.GBA_BEGIN, _docs.GBA_END),
    (_docs.ACP_BEGIN, _docs.ACP_END),
    (_docs.CONNS_BEGIN, _docs.CONNS_END),
)


@dataclass(frozen=True)
class Plan:
    reqs_seconds: float  # per req/s measurement
    warmup_seconds: float
    bulk_seconds: float  # per MB/s measurement (at least one download)
    bulk_max_downloads: int
    apdu_seconds: float
    repeat: int = 3


FULL = Plan(
    reqs_seconds=3.0, warmup_seconds=1.0, bulk_seconds=3.0, bulk_max_downloads=300, apdu_seconds=3.0
)
QUICK = Plan(
    reqs_seconds=0.8, warmup_seconds=0.4, bulk_seconds=0.8, bulk_max_downloads=100, apdu_seconds=1.0
)


# -- content -------------------------------------------------------------------------------------


def make_files(root: Path) -> tuple[bytes, bytes]:
    filler = b"<p>The Smart Card Web Server answers from the SIM, one APDU at a time.</p>\n"
    head = b"<!doctype html>\n<html><head><title>openscws bench</title></head><body>\n"
    tail = b"</body></html>\n"
    page = head + filler * ((PAGE_SIZE - len(head) - len(tail)) // len(filler) + 1)
    page = page[: PAGE_SIZE - len(tail)] + tail
    assert len(page) == PAGE_SIZE
    bulk = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(BULK_SIZE))
    root.mkdir(parents=True)
    (root / PAGE_PATH.lstrip("/")).write_bytes(page)
    (root / BULK_PATH.lstrip("/")).write_bytes(bulk)
    return page, bulk


def make_image(image_dir: Path, files: Path) -> None:
    from openscws.store import content
    from openscws.store.cardimage import CardImage

    now = int(time.time())
    image = CardImage.create(image_dir, iccid=ICCID, now=now)
    for path in (PAGE_PATH, BULK_PATH):
        content.put_file(image, files / path.lstrip("/"), path, now=now)
    image.close()


# -- servers -------------------------------------------------------------------------------------


def up_config(path: Path, tmp: Path, card: str = "") -> Path:
    """Writes a settings file for `openscws up` / `openscws gateway` that keeps the run to
    itself: a free port for every listener that --port-map does not give (the admin server's
    PSK-TLS endpoint, its REST API, the gateway's SMS entry point), and the issuer CA and the
    admin server's state under `tmp`, not in ~/.local/share/openscws. `card` is extra lines of
    the [card] section. Two gateways started with two such files never share a port."""
    sms = free_port()
    lines = ["[card]", card] if card else []
    lines += [
        "[gateway]",
        f"sms_port = {sms}",
        "[ca]",
        f"dir = {json.dumps(str(tmp / 'ca'))}",
        "[admin]",
        f"data_dir = {json.dumps(str(tmp / ('ras-' + path.stem)))}",
        'db = ""',
        f"port = {free_port()}",
        f"api_port = {free_port()}",
        f'sms_url = "http://127.0.0.1:{sms}/sms"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def child_env() -> dict[str, str]:
    """The environment of the servers a benchmark starts: this one, with openscws on the path
    and without any OPENSCWS_* setting the user exported (a database, a port): the settings
    file the benchmark writes decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSCWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(name: str, argv: list[str], port: int | None, timeout: float = 20.0) -> Server:
    env = child_env()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    found: dict[str, int] = {}
    lines: list[str] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = re.search(r"ready: http://[^:/]+:(\d+)/", line)
            if m and not ready.is_set():
                found["port"] = int(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    if not ready.wait(timeout) or "port" not in found:
        proc.kill()
        raise RuntimeError(f"{name} server did not start:\n" + "\n".join(lines[-20:]))
    got = found["port"]
    if port is not None and got != port:
        proc.kill()
        raise RuntimeError(f"{name} listens on {got}, expected {port}")
    server = Server(name, proc, got, lines)
    wait_connectable(got)
    return server


def wait_connectable(
    port: int,
    timeout: float = 5.0,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
) -> None:
    """Until 127.0.0.1:`port` takes a TCP connection. With `proc`, its exit ends the wait
    early; with `log_file`, a failure (OSError) carries the log's tail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as e:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                if log_file is None:
                    raise
                tail = log_file.read_text(errors="replace")[-2000:]
                raise OSError(f"nothing on port {port}: {e}\n{tail}") from None
            time.sleep(0.05)


def start_all(tmp: Path) -> dict[str, Server]:
    py = sys.executable
    servers: dict[str, Server] = {}
    try:
        gw_port = free_port()
        # The card also serves HTTPS (4116): give it a free port; the file gives the admin
        # server, its API and the SMS entry point theirs and keeps the CA in `tmp`.
        config = up_config(tmp / "gateway.toml", tmp)
        servers["gateway"] = start_server(
            "gateway",
            [
                py,
                "-m",
                "openscws",
                "up",
                "-c",
                str(config),
                "--data-dir",
                str(tmp / "image"),
                "--port-map",
                f"3516={gw_port}",
                "--port-map",
                f"4116={free_port()}",
                "--no-demo",
                "-q",
            ],
            gw_port,
        )
        servers["direct"] = start_server(
            "direct", [py, str(HERE / "direct_server.py"), "--data-dir", str(tmp / "image")], None
        )
        servers["baseline"] = start_server(
            "baseline", [py, str(HERE / "baseline_server.py"), "--root", str(tmp / "files")], None
        )
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
    return servers


# -- HTTP client pieces --------------------------------------------------------------------------


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: openscws-bench\r\n\r\n".encode()


def _content_length(head: bytes) -> int:
    m = re.search(rb"\r\ncontent-length:[ \t]*(\d+)", head, re.IGNORECASE)
    if m is None:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    return int(m.group(1))


class _Conn:
    """One keep-alive connection doing strict request/response (no pipelining). A response
    with `Connection: close` ends it, as for any HTTP/1.1 client: the next request goes on a
    new connection (`reconnect`)."""

    __slots__ = ("buf", "close", "need", "port", "req", "sock", "status_ok")

    def __init__(self, port: int, req: bytes) -> None:
        self.port = port
        self.req = req
        self.sock = self._connect()
        self.buf = bytearray()
        self.need = -1
        self.status_ok = True
        self.close = False

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def reconnect(self) -> None:
        self.sock.close()
        self.sock = self._connect()
        self.close = False

    def feed(self, data: bytes) -> int:
        """Bytes in; the number of complete responses they finish (0 or 1)."""
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return 0
            head = bytes(self.buf[:end])
            self.status_ok = head.startswith(b"HTTP/1.1 200")
            self.close = re.search(rb"\r\nconnection:[ \t]*close", head, re.IGNORECASE) is not None
            self.need = end + 4 + _content_length(head)
        if len(self.buf) < self.need:
            return 0
        if len(self.buf) > self.need:
            raise RuntimeError("unsolicited bytes after a response")
        self.buf.clear()
        self.need = -1
        return 1


def py_requests(port: int, path: str, conns: int, seconds: float) -> dict[str, float]:
    """Requests/s with `conns` connections, each sequential request/response, in one thread."""
    req = request_bytes(path)
    sel = selectors.DefaultSelector()
    pool = [_Conn(port, req) for _ in range(conns)]
    done = errors = 0
    try:
        for c in pool:
            c.sock.sendall(req)
            sel.register(c.sock, selectors.EVENT_READ, c)
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            now = time.perf_counter()
            if now >= deadline:
                break
            for key, _ in sel.select(deadline - now):
                c = key.data
                data = c.sock.recv(262144)
                if not data:  # closed without saying so first: a dropped client
                    raise RuntimeError("server closed a keep-alive connection")
                if c.feed(data):
                    done += 1
                    errors += not c.status_ok
                    if c.close:  # announced: reconnect, as wrk does
                        sel.unregister(c.sock)
                        c.reconnect()
                        sel.register(c.sock, selectors.EVENT_READ, c)
                    c.sock.send(c.req)
        elapsed = time.perf_counter() - start
    finally:
        sel.close()
        for c in pool:
            c.sock.close()
    return {"rps": done / elapsed, "requests": done, "errors": errors, "seconds": elapsed}


_WRK_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def wrk_requests(port: int, path: str, conns: int, seconds: float) -> dict[str, float]:
    duration = max(1, round(seconds))
    argv = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    n = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if m is None or n is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if bad:
        errors += int(bad.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return {
        "rps": float(m.group(1)),
        "requests": int(n.group(1)),
        "errors": errors,
        "seconds": float(n.group(2)),
    }


def bulk_download(
    port: int, path: str, expected: bytes, seconds: float, max_n: int, check_body: bool
) -> dict[str, float]:
    """Sequential downloads on one keep-alive connection; MB/s of body bytes (10^6 B/s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return download_loop(sock, path, expected, seconds, max_n, check_body)


def download_loop(
    sock: socket.socket,
    path: str,
    expected: bytes,
    seconds: float,
    max_n: int,
    check_body: bool,
) -> dict[str, float]:
    """GET `path` again and again on `sock` (plain or TLS: the same client code for both)
    until `max_n` downloads or `seconds`; MB/s of body bytes (10^6 B/s)."""
    req = request_bytes(path)
    size = len(expected)
    buf = bytearray(size + 65536)
    view = memoryview(buf)
    n = 0
    start = time.perf_counter()
    while True:
        sock.sendall(req)
        got = 0
        end = -1
        while end < 0:
            k = sock.recv_into(view[got:], 65536)
            if not k:
                raise RuntimeError("connection closed mid-response")
            got += k
            end = buf.find(b"\r\n\r\n", 0, got)
        head = bytes(buf[:end])
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"bulk download failed: {head[:100]!r}")
        length = _content_length(head)
        if length != size:
            raise RuntimeError(f"Content-Length {length}, expected {size}")
        total = end + 4 + length
        if total > len(buf):
            buf.extend(bytes(total - len(buf)))
            view = memoryview(buf)
        while got < total:
            k = sock.recv_into(view[got:total], total - got)
            if not k:
                raise RuntimeError(f"connection closed after {got - end - 4} of {size} B")
            got += k
        if got != total:
            raise RuntimeError("unsolicited bytes after a response")
        if check_body and n == 0 and view[end + 4 : total] != expected:
            raise RuntimeError("the downloaded body differs from the file")
        n += 1
        elapsed = time.perf_counter() - start
        if n >= max_n or elapsed >= seconds:
            break
    return {"mbps": n * size / elapsed / 1e6, "downloads": n, "seconds": elapsed}


# -- the run -------------------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def contention_note(info: dict[str, str]) -> list[str]:
    """A paragraph for the page when the machine was busy with other work during the run
    (load average above the CPU count before or after it), else nothing."""
    after = info.get("loadavg_after", "")
    loads = [float(x) for x in (info["loadavg"].split()[:1] + after.split()[:1])]
    cpus = int(info["nproc"] or "1")
    if max(loads) <= cpus:
        return []
    return [
        "",
        f"**Shared machine.** The load average was {info['loadavg'].split()[0]} before the run "
        f"and {after.split()[0] if after else '?'} after it, above the {cpus} CPUs: other work "
        "ran during the measurements, so the figures on this page are lower than the same code "
        "gives on an idle machine, and a target shown as not met may be met there. Compare "
        "runs only on an idle machine.",
    ]


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True)
        wrk_version = (out.stdout or out.stderr).split(" [")[0].strip()
    try:
        import h11

        h11_version = h11.__version__
    except ImportError:  # pragma: no cover
        h11_version = "?"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        revision = head + (" + uncommitted changes in src/" if dirty else "")
    except OSError:
        revision = "unknown"
    return {
        "revision": revision or "unknown",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "h11": h11_version,
        "wrk": wrk_version,
    }


def run(plan: Plan, use_wrk: bool, log: Callable[[str], None]) -> dict[str, object]:
    results: dict[str, dict[str, list[float]]] = {
        s: {"rps1": [], "rps4": [], "mbps": [], "errors": []} for s in SERVERS
    }
    with tempfile.TemporaryDirectory(prefix="openscws-bench-") as tmpdir:
        tmp = Path(tmpdir)
        page, bulk = make_files(tmp / "files")
        make_image(tmp / "image", tmp / "files")
        servers = start_all(tmp)
        try:
            requester = wrk_requests if use_wrk else py_requests
            # Warm-up: every path once (the card opens channels on demand; caches fill).
            for name in SERVERS:
                port = servers[name].port
                for conns in CONCURRENCY:
                    py_requests(port, PAGE_PATH, conns, plan.warmup_seconds)
                bulk_download(port, BULK_PATH, bulk, 0.0, 1, check_body=True)
            for rep in range(plan.repeat):
                for name in SERVERS:
                    port = servers[name].port
                    for conns in CONCURRENCY:
                        r = requester(port, PAGE_PATH, conns, plan.reqs_seconds)
                        results[name][f"rps{conns}"].append(r["rps"])
                        results[name]["errors"].append(r["errors"])
                    b = bulk_download(
                        port,
                        BULK_PATH,
                        bulk,
                        plan.bulk_seconds,
                        plan.bulk_max_downloads,
                        check_body=rep == 0,
                    )
                    results[name]["mbps"].append(b["mbps"])
                    log(
                        f"  rep {rep + 1} {name:<8} 1 conn {results[name]['rps1'][-1]:>8.0f} "
                        f"req/s   4 conn {results[name]['rps4'][-1]:>8.0f} req/s   "
                        f"bulk {b['mbps']:>7.2f} MB/s ({b['downloads']} x 1 MB)"
                    )
            # Sanity: the page served is the page put.
            for name in SERVERS:
                c = _Conn(servers[name].port, request_bytes(PAGE_PATH))
                c.sock.setblocking(True)
                c.sock.sendall(c.req)
                data = b""
                while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < PAGE_SIZE:
                    chunk = c.sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                c.sock.close()
                if data.partition(b"\r\n\r\n")[2] != page:
                    raise RuntimeError(f"{name} served a different page")
            for name, server in servers.items():
                if server.proc.poll() is not None:
                    raise RuntimeError(f"{name} server died:\n" + "\n".join(server.log[-20:]))
        finally:
            for server in servers.values():
                server.stop()
    summary = {
        name: {
            "rps1": median(r["rps1"]),
            "rps4": median(r["rps4"]),
            "mbps": median(r["mbps"]),
            "errors": int(sum(r["errors"])),
            "samples": {k: v for k, v in r.items() if k != "errors"},
        }
        for name, r in results.items()
    }
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    g, d, b = summary["gateway"], summary["direct"], summary["baseline"]
    return {
        "gateway_direct_rps1": g["rps1"] / d["rps1"],
        "gateway_direct_rps4": g["rps4"] / d["rps4"],
        "gateway_direct_mbps": g["mbps"] / d["mbps"],
        "direct_baseline_rps1": d["rps1"] / b["rps1"],
        "direct_baseline_rps4": d["rps4"] / b["rps4"],
        "direct_baseline_mbps": d["mbps"] / b["mbps"],
        "gateway_mbps": g["mbps"],
    }


LABELS = {
    "gateway": "gateway (card + BIP gateway, `openscws up`)",
    "direct": "direct engine (HttpServerConnection + Site, asyncio TCP)",
    "baseline": "baseline (`http.server`, ThreadingHTTPServer, TCP_NODELAY)",
}


def per_run(summary: dict[str, dict[str, float]], key: str) -> list[float]:
    """gateway / direct for each run (the servers are measured in turn within a run)."""
    g = summary["gateway"]["samples"][key]  # type: ignore[index]
    d = summary["direct"]["samples"][key]  # type: ignore[index]
    return [a / b for a, b in zip(g, d, strict=True)]


def per_run_text(summary: dict[str, dict[str, float]]) -> str:
    parts = []
    for key, what in (("rps1", "1 conn"), ("rps4", "4 conns")):
        xs = per_run(summary, key)
        parts.append(f"{what} {', '.join(f'{x:.2f}' for x in xs)} ({min(xs):.2f}-{max(xs):.2f})")
    return "; ".join(parts)


def table(summary: dict[str, dict[str, float]]) -> str:
    rows = [
        "| server | 1 KB req/s, 1 conn | 1 KB req/s, 4 conns | 1 MB MB/s, 1 conn | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in summary:
        s = summary[name]
        rows.append(
            f"| {LABELS[name]} | {s['rps1']:,.0f} | {s['rps4']:,.0f} | "
            f"{s['mbps']:.2f} | {s['errors']} |"
        )
    return "\n".join(rows)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def write_docs(
    path: Path,
    info: dict[str, str],
    plan: Plan,
    command: str,
    use_wrk: bool,
    summary: dict[str, dict[str, float]],
    rat: dict[str, float],
    apdu: dict[str, float] | None,
    wall: float,
    tls_md: str | None = None,
) -> None:
    r_ok = min(rat["gateway_direct_rps1"], rat["gateway_direct_rps4"]) >= TARGET_RATIO
    b_ok = rat["gateway_mbps"] >= TARGET_BULK_MBS
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    gen = "wrk (`wrk -t1 -cN`, one thread)" if use_wrk else "the built-in Python raw-socket client"
    lines = [
        "# Benchmarks",
        "",
        "How fast the SCWS answers through the BIP gateway, next to the same HTTP engine without",
        "BIP and to the standard library's `http.server`. Generated by `benchmarks/run.py`;",
        "rerun it to refresh this page.",
        "",
        "## Machine",
        "",
        f"- CPUs: {info['nproc']} x {info['cpu']}",
        f"- Python {info['python']} ({info['platform']}), h11 {info['h11']}",
        f"- load generator: {gen}" + (f", {info['wrk']}" if use_wrk else ""),
        f"- source: {info['revision']}; load average before the run: {info['loadavg']}",
        f"- run: {when}, {'quick' if plan.reqs_seconds < 2 else 'full'} plan, "
        f"{wall:.0f} s wall time",
        *contention_note(info),
        "",
        "## Reproduce",
        "",
        "```sh",
        "apt-get install -y wrk        # optional: without it a Python client is used",
        command,
        ".venv/bin/python benchmarks/bench_apdu.py        # the in-memory APDU ceiling alone",
        ".venv/bin/python benchmarks/profile_gateway.py   # cProfile of the gateway path",
        ".venv/bin/python benchmarks/bench_tls.py         # TLS: handshakes/s, HTTPS bulk",
        ".venv/bin/python benchmarks/bench_tls_ram.py     # TLS: card RAM per HTTPS channel",
        "```",
        "",
        "## Results",
        "",
        f"Median of {plan.repeat} runs ({plan.reqs_seconds:g} s per req/s point, up to "
        f"{plan.bulk_seconds:g} s / {plan.bulk_max_downloads} downloads per MB/s point), after a "
        "warm-up; servers measured in turn within each run. MB = 10^6 bytes.",
        "",
        table(summary),
        "",
        "## Ratios and targets",
        "",
        "| ratio | value | target |",
        "|---|---:|---|",
        f"| gateway / direct, req/s, 1 conn | {rat['gateway_direct_rps1']:.2f} | >= "
        f"{TARGET_RATIO} {verdict(rat['gateway_direct_rps1'] >= TARGET_RATIO)} |",
        f"| gateway / direct, req/s, 4 conns | {rat['gateway_direct_rps4']:.2f} | >= "
        f"{TARGET_RATIO} {verdict(rat['gateway_direct_rps4'] >= TARGET_RATIO)} |",
        f"| gateway bulk | {rat['gateway_mbps']:.2f} MB/s | >= {TARGET_BULK_MBS:g} MB/s "
        f"{verdict(b_ok)} |",
        f"| gateway / direct, bulk MB/s | {rat['gateway_direct_mbps']:.3f} | - |",
        f"| direct / http.server, req/s, 1 conn | {rat['direct_baseline_rps1']:.2f} | - |",
        f"| direct / http.server, req/s, 4 conns | {rat['direct_baseline_rps4']:.2f} | - |",
        f"| direct / http.server, bulk MB/s | {rat['direct_baseline_mbps']:.2f} | - |",
        "",
        f"Request-rate target (gateway >= {TARGET_RATIO} x direct): {verdict(r_ok)}. "
        f"Bulk target (>= {TARGET_BULK_MBS:g} MB/s through the gateway): {verdict(b_ok)}.",
        "",
        f"Gateway / direct req/s in each run: {per_run_text(summary)}. The machine is shared:",
        "rates swing from run to run, so the medians above are the figures that count.",
        "",
    ]
    lines += [
        "Why the request-rate ratio is what it is, and what was done about it: "
        "[performance.md](performance.md).",
        "",
    ]
    if apdu is not None:
        lines += [
            "## The APDU ceiling",
            "",
            "`benchmarks/bench_apdu.py` drives the card and the terminal engine in memory (no",
            "sockets, no event loop) through 1 MB downloads. Each SEND DATA moves at most 240 B",
            "and costs two APDUs (FETCH, then TERMINAL RESPONSE), so its rate bounds the gateway's",
            "bulk throughput whatever the sockets do.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| APDUs/s | {apdu['apdu_per_s']:,.0f} |",
            f"| SEND DATA round trips/s | {apdu['send_data_per_s']:,.0f} |",
            f"| body MB/s in memory | {apdu['mb_per_s']:.2f} |",
            f"| ceiling: SEND DATA/s x 240 B | {apdu['bound_mb_per_s']:.2f} MB/s |",
            f"| time per APDU in the card (`VirtualUicc.transmit`) | "
            f"{apdu['card_us_per_apdu']:.1f} us |",
            f"| time per APDU in the terminal engine | {apdu['terminal_us_per_apdu']:.1f} us |",
            "",
            f"{TARGET_BULK_MBS:g} MB/s needs {TARGET_BULK_MBS * 1e6 / 240:,.0f} SEND DATA/s, i.e. "
            f"{TARGET_BULK_MBS * 1e6 / 240 * 2:,.0f} APDUs/s, or "
            f"{1e6 / (TARGET_BULK_MBS * 1e6 / 240 * 2):.1f} us per APDU for card and terminal "
            "together.",
            "",
        ]
    if tls_md is not None:
        lines += [TLS_BEGIN, tls_md.rstrip("\n"), TLS_END, ""]
    lines += [
        "## Method",
        "",
        "- Content: a 1024-byte HTML page and a 1 MiB binary, put in a fresh card image with",
        "  `CardImage` (what `openscws content put` does) and written as plain files for",
        "  `http.server`.",
        "- gateway: `python -m openscws up -c CONFIG --data-dir IMG --port-map 3516=PORT",
        "  --port-map 4116=PORT2 --no-demo -q` (CONFIG only puts the issuer CA in the temporary",
        "  directory; the HTTPS port idles), default settings (2 channels per port opened at",
        "  start, more on demand, up to 7; 8192-byte channel buffers).",
        "- direct: `benchmarks/direct_server.py`: the card's `build_site` over the same image, one",
        "  `HttpServerConnection` per TCP connection, the same `CardLimits` and `RamBudget`.",
        "- baseline: `benchmarks/baseline_server.py`: `ThreadingHTTPServer` +",
        '  `SimpleHTTPRequestHandler`, `protocol_version = "HTTP/1.1"`, request logging off,',
        "  `disable_nagle_algorithm = True`. The stock handler (Nagle on; `--nagle`) writes head",
        "  and body separately and manages ~23 req/s per connection (the 40 ms delayed ACK).",
        "- Each server is its own process; all listen on 127.0.0.1, ephemeral ports. The load",
        "  generator runs in another process and on the same machine, so on a small machine it",
        "  competes with the server for CPUs.",
        "- req/s: keep-alive connections, each sending its next request only after the whole",
        "  previous response arrived (no pipelining). `errors` counts non-2xx answers and socket",
        "  errors over all runs.",
        "- MB/s: one connection, the 1 MB resource downloaded repeatedly, each Content-Length",
        "  checked and the first body compared with the file.",
        "",
    ]
    # Sections other benchmarks wrote (and a TLS one this run did not measure) stay.
    _docs.rewrite(path, "\n".join(lines), KEPT_SECTIONS)


def run_tls(quick: bool, log: Callable[[str], None]) -> tuple[dict, dict, str]:
    """benchmarks/bench_tls.py and bench_tls_ram.py: (results, RAM table, markdown section)."""
    import bench_tls
    import bench_tls_ram

    log("TLS benchmarks (bench_tls.py): handshakes/s vs openssl s_server, HTTPS bulk ...")
    tls = bench_tls.run(bench_tls.QUICK if quick else bench_tls.FULL, log)
    log("card RAM per HTTPS channel (bench_tls_ram.py) ...")
    ram = bench_tls_ram.run()
    return tls, ram, bench_tls.markdown(tls, ram)


def splice_tls(path: Path, tls_md: str) -> None:
    """Replace the TLS section of an existing docs/benchmarks.md (between the markers), or
    insert it before "## Method" (else at the end); the rest of the page stays as it is."""
    _docs.splice(path, TLS_BEGIN, TLS_END, tls_md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="openscws benchmarks (see the module docstring)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="short runs, a smoke test of the whole plan: no docs unless --docs",
    )
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--no-wrk", action="store_true", help="use the Python client even with wrk")
    p.add_argument("--no-apdu", action="store_true", help="skip the in-memory APDU benchmark")
    p.add_argument("--no-tls", action="store_true", help="skip the TLS benchmarks")
    p.add_argument(
        "--only",
        choices=("tls",),
        help="run only the TLS benchmarks and replace only their section of the docs",
    )
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    p.add_argument("--docs", type=Path, help="the page to write (default docs/benchmarks.md)")
    args = p.parse_args(argv)
    if args.quick:  # a quick run's figures never replace the measured ones
        args.no_docs = args.no_docs or args.docs is None
    args.docs = args.docs or ROOT / "docs" / "benchmarks.md"
    if args.only == "tls" and args.no_tls:
        p.error("--only tls and --no-tls contradict each other")
    plan = QUICK if args.quick else FULL
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {msg}", flush=True)

    info = machine()
    if args.only == "tls":
        log(f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; TLS only")
        tls, ram, tls_md = run_tls(args.quick, log)
        print()
        print(sys.modules["bench_tls"].summary(tls))
        if not args.no_docs:
            splice_tls(args.docs, tls_md)
            log(f"replaced the TLS section of {args.docs}")
        if args.json:
            doc = {"machine": info, "tls": tls, "tls_ram": ram}
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.json}")
        return 0

    log(
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; load generator: "
        f"{'wrk' if use_wrk else 'Python client'}; plan: {'quick' if args.quick else 'full'}"
    )
    summary = run(plan, use_wrk, log)
    rat = ratios(summary)
    apdu = None
    if not args.no_apdu:
        import bench_apdu

        log("in-memory APDU benchmark ...")
        apdu = bench_apdu.run(plan.apdu_seconds)
    tls = ram = tls_md = None
    if not args.no_tls:
        tls, ram, tls_md = run_tls(args.quick, log)
    wall = time.monotonic() - started

    print()
    print(table(summary))
    print()
    rps_ok = min(rat["gateway_direct_rps1"], rat["gateway_direct_rps4"]) >= TARGET_RATIO
    print(
        f"gateway/direct req/s: 1 conn {rat['gateway_direct_rps1']:.2f}, 4 conns "
        f"{rat['gateway_direct_rps4']:.2f} (target >= {TARGET_RATIO}: "
        f"{'met' if rps_ok else 'NOT met'})"
    )
    print(f"gateway/direct req/s in each run: {per_run_text(summary)}")
    print(
        f"gateway bulk: {rat['gateway_mbps']:.2f} MB/s (target >= {TARGET_BULK_MBS:g}: "
        f"{'met' if rat['gateway_mbps'] >= TARGET_BULK_MBS else 'NOT met'}); "
        f"gateway/direct bulk {rat['gateway_direct_mbps']:.3f}"
    )
    print(
        f"direct/http.server: req/s 1 conn {rat['direct_baseline_rps1']:.2f}, 4 conns "
        f"{rat['direct_baseline_rps4']:.2f}, bulk {rat['direct_baseline_mbps']:.2f}"
    )
    if apdu is not None:
        print(
            f"in-memory APDUs: {apdu['apdu_per_s']:,.0f} APDU/s, "
            f"{apdu['send_data_per_s']:,.0f} SEND DATA/s -> ceiling "
            f"{apdu['bound_mb_per_s']:.2f} MB/s (card {apdu['card_us_per_apdu']:.1f} us + "
            f"terminal {apdu['terminal_us_per_apdu']:.1f} us per APDU)"
        )
    if tls is not None:
        print(sys.modules["bench_tls"].summary(tls))
    print(f"wall time {wall:.1f} s")

    command = ".venv/bin/python benchmarks/run.py" + (" --quick" if args.quick else "")
    if args.no_wrk:
        command += " --no-wrk"
    if args.no_tls:
        command += " --no-tls"
    info["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if not args.no_docs:
        args.docs.parent.mkdir(parents=True, exist_ok=True)
        write_docs(args.docs, info, plan, command, use_wrk, summary, rat, apdu, wall, tls_md)
        log(f"wrote {args.docs}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "plan": plan.__dict__,
                    "wrk": use_wrk,
                    "results": summary,
                    "ratios": rat,
                    "apdu": apdu,
                    "tls": tls,
                    "tls_ram": ram,
                    "wall_seconds": wall,
                },
                indent=2,
            )
            + "\n"
        )
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
