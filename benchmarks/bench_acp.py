"""New connections per second through the SCWS Gateway's port 3516 with the access control
off and on, side by side in one run.

    .venv/bin/python benchmarks/bench_acp.py [--connections 40] [--rounds 40] [--quick]
        [--json FILE] [--no-docs]

Three `openscws up --no-admin` processes, each on its own card image and free ports, logging
at their default level (INFO: every access decision is a log line) to a file:

  acp off      `[gateway] acp = false`: no enforcer at all (the gateway as it was)
  no rules     the enforcer on, a card without SCWS rules (access unrestricted)
  50 rules     the enforcer on, 50 rules on the card; the one that admits this benchmark's
               Python (by the SHA-256 of its executable) is the last, so every connection
               costs the identity lookup (sock_diag netlink, /proc/<pid>/fd, the executable's
               hash, cached per file) and a decision over all 50

Each connection: connect, `GET /style.css` (the demo site's stylesheet) with `Connection:
close`, read to the end, close; one client, one connection at a time. The servers take turns
in short rounds, so a busy spell of the machine hits them alike. Two figures per row:

  per CPU-second       connections / the server process's CPU time (user + system, from
                       /proc/<pid>/stat) over all its rounds: what one core sustains, and far
                       less disturbed by other load on the machine than the wall clock
  connections/s        wall clock: the best round (the least disturbed, as timeit takes the
                       fastest run) and the median of the rounds

Target: 50 rules / acp off >= 0.8, on the CPU-second figure (and shown on the wall clock).

Writes the "Access control" section of docs/benchmarks.md unless --no-docs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _docs  # noqa: E402
from run import free_port, wait_connectable  # noqa: E402

from openscws.acp.rules import AccessRule, RuleSet  # noqa: E402
from openscws.store.acprules import save_rules  # noqa: E402
from openscws.store.cardimage import CardImage  # noqa: E402

TARGET = 0.8
PATH = "/style.css"
ROWS = ("acp off", "no rules", "50 rules")


def fifty_rules() -> RuleSet:
    """49 rules that do not match this process (other hashes, other users, path rules for
    others), then the one that admits it."""
    rules = []
    for n in range(49):
        digest = hashlib.sha256(f"other program {n}".encode()).digest()
        match n % 3:
            case 0:
                rules.append(AccessRule(app_hash=digest))
            case 1:
                rules.append(AccessRule(uid=60000 + n, ports=frozenset({3516})))
            case _:
                rules.append(AccessRule(app_hash=digest[:20], paths=(f"/app{n}/",)))
    me = hashlib.sha256(Path(os.path.realpath(sys.executable)).read_bytes()).digest()
    rules.append(AccessRule(app_hash=me, ports=frozenset({3516})))
    return RuleSet(tuple(rules))


def make_card(root: Path, name: str) -> tuple[Path, Path]:
    data = root / name / "card"
    done = subprocess.run(
        [sys.executable, "-m", "openscws", "init", "--data-dir", str(data), "-q"],
        capture_output=True,
        check=False,
        env={**os.environ, "XDG_DATA_HOME": str(root / name / "xdg")},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode())
    config = root / name / "openscws.toml"
    config.write_text(
        f"[gateway]\nacp = {'false' if name == 'acp off' else 'true'}\nsms_port = 0\n"
        f'[ca]\ndir = "{root / name / "ca"}"\n'
    )
    if name == "50 rules":
        with CardImage.open(data) as image:
            save_rules(image, fifty_rules())
    return data, config


class Server:
    """`openscws up` with its log (stderr) in a file, as a service manager would keep it."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log_path = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
            )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "SCWS ready: http://" in line:
                break
        else:
            raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")
        wait_connectable(port)

    @property
    def log(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5): fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections(port: int, count: int) -> float:
    """Connections per second: `count` connections, one after the other."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    raw = request.encode()
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(raw)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            if not got.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"port {port}: {got[:200]!r}")
    return count / (time.perf_counter() - start)


def run(count: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-acp-") as tmp:
        root = Path(tmp)
        servers = {}
        try:
            for name in ROWS:
                data, config = make_card(root, name)
                port, tls = free_port(), free_port()
                argv = [sys.executable, "-m", "openscws", "up", "--no-admin", "-c", str(config)]
                argv += ["--data-dir", str(data), "--port-map", f"3516={port}"]
                argv += ["--port-map", f"4116={tls}"]
                servers[name] = Server(argv, port, root / f"{name}.log")
            for server in servers.values():
                connections(server.port, min(50, count))  # warm up (hash cache, code paths)
            rates: dict[str, list[float]] = {name: [] for name in ROWS}
            cpu = dict.fromkeys(ROWS, 0.0)
            for n in range(rounds):
                order = ROWS if n % 2 == 0 else ROWS[::-1]
                for name in order:
                    server = servers[name]
                    before = cpu_seconds(server.proc.pid)
                    rates[name].append(connections(server.port, count))
                    cpu[name] += cpu_seconds(server.proc.pid) - before
        finally:
            for server in servers.values():
                server.stop()
            logged = servers["50 rules"].log
        allowed = sum("ALLOW port 3516" in line for line in logged)
    rows = {
        name: {
            "median_per_s": statistics.median(r),
            "best_per_s": max(r),
            "per_cpu_s": count * rounds / max(cpu[name], 1e-9),
            "rounds": [round(x, 1) for x in r],
        }
        for name, r in rates.items()
    }
    off_cpu = rows["acp off"]["per_cpu_s"]
    return {
        "connections": count,
        "rounds": rounds,
        "rows": rows,
        "ratio_rules_vs_off": rows["50 rules"]["per_cpu_s"] / off_cpu,
        "ratio_no_rules_vs_off": rows["no rules"]["per_cpu_s"] / off_cpu,
        "wall_ratio_rules_vs_off": rows["50 rules"]["best_per_s"] / rows["acp off"]["best_per_s"],
        "decisions_logged": allowed,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def section(result: dict[str, Any]) -> str:
    rows = result["rows"]
    off = rows["acp off"]["best_per_s"]
    off_cpu = rows["acp off"]["per_cpu_s"]
    lines = [
        "## Access control: new connections through 3516",
        "",
        "New connections per second through the gateway's port 3516 (connect, `GET "
        f"{PATH}` with `Connection: close`, read, close; one at a time), with the access",
        "control off and on (docs/acp.md). Generated by `benchmarks/bench_acp.py`:",
        "",
        "```sh",
        ".venv/bin/python benchmarks/bench_acp.py",
        "```",
        "",
        f"- {result['cpus']} CPUs, Python {result['python']}; run {result['when']}; "
        f"{result['connections']} connections per round, {result['rounds']} rounds, the "
        "servers taking turns; per CPU-second: connections over the server's CPU time (user "
        "+ system); connections/s: the best round, and the median of the rounds (the machine "
        "is shared: its wall clock varies from round to round).",
        "- 50 rules: the rule admitting the benchmark's Python (by its executable's SHA-256) "
        "is the last; each connection is identified (sock_diag, /proc/<pid>/fd, the hash "
        f"cached per file) and logged at INFO ({result['decisions_logged']} ALLOW lines).",
        "",
        "| gateway | connections per CPU-second | vs acp off | connections/s, best round "
        "| vs acp off | connections/s, median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ROWS:
        row = rows[name]
        best, per_cpu = row["best_per_s"], row["per_cpu_s"]
        lines.append(
            f"| {name} | {per_cpu:.0f} | {per_cpu / off_cpu:.2f} | {best:.0f} | {best / off:.2f} "
            f"| {row['median_per_s']:.0f} |"
        )
    ratio = result["ratio_rules_vs_off"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines += [
        "",
        f"Target: 50 rules / acp off >= {TARGET} (per CPU-second): {ratio:.2f}, {verdict}; "
        f"best rounds on the wall clock {result['wall_ratio_rules_vs_off']:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=40, help="per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 connections, 2 rounds, no docs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    args = parser.parse_args()
    count, rounds = (10, 2) if args.quick else (args.connections, args.rounds)
    result = run(count, rounds)
    text = section(result)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    if not args.quick and not args.no_docs:
        _docs.splice(ROOT / "docs" / "benchmarks.md", _docs.ACP_BEGIN, _docs.ACP_END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
