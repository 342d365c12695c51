"""Requests/s for the 1 KB page at 1, 4 and 64 keep-alive connections (wrk), through the
BIP gateway and, side by side, through the same HTTP engine without BIP (direct_server.py).

The card has six server channels at most (the terminal's seven less the one kept for the
admin agent), four of them for 3516 when HTTPS is idle: 64 connections are many more clients
than channels. The figures show what that costs: the 64-connection rate against the
4-connection one (target: at least 0.8), with no socket error and no non-2xx answer. On a
shared machine req/s follow the other jobs' load; the server process's CPU time per request
(from /proc, Linux) does much less, so the page gives it too, and the load average.

    .venv/bin/python benchmarks/bench_conns.py [--quick] [--seconds 10] [--docs PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _docs  # noqa: E402
import run  # noqa: E402

BEGIN = _docs.CONNS_BEGIN
END = _docs.CONNS_END
CONNECTIONS = (1, 4, 64)
TARGET = 0.8


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (0.0 where /proc is not there)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(seconds: float, log: object = print) -> dict[str, dict[int, dict[str, float]]]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="openscws-conns-") as tmp:
        root = Path(tmp)
        run.make_files(root / "files")
        run.make_image(root / "image", root / "files")
        servers = run.start_all(root)
        try:
            for name in ("gateway", "direct"):
                port = servers[name].port
                run.wrk_requests(port, run.PAGE_PATH, 4, 1)  # warm-up
                results[name] = {}
                pid = servers[name].proc.pid
                for conns in CONNECTIONS:
                    cpu = cpu_seconds(pid)
                    got = run.wrk_requests(port, run.PAGE_PATH, conns, seconds)
                    used = cpu_seconds(pid) - cpu
                    got["cpu_us"] = used / got["requests"] * 1e6 if got["requests"] else 0.0
                    got["load"] = os.getloadavg()[0]
                    results[name][conns] = got
                    if callable(log):
                        log(
                            f"{name:8s} {conns:3d} connections: {got['rps']:8.0f} req/s, "
                            f"{got['cpu_us']:.0f} us CPU/request, {int(got['errors'])} errors"
                        )
        finally:
            for server in servers.values():
                server.stop()
    return results


def section(results: dict[str, dict[int, dict[str, float]]], seconds: float) -> str:
    gw = results["gateway"]
    ratio = gw[64]["rps"] / gw[4]["rps"] if gw[4]["rps"] else 0.0
    errors = sum(int(r["errors"]) for per in results.values() for r in per.values())
    lines = [
        "## Many clients, few channels",
        "",
        f"wrk, keep-alive, the 1 KB page, {seconds:g} s per point (`benchmarks/bench_conns.py`):",
        "",
        "| server | 1 connection | 4 connections | 64 connections |",
        "|---|---|---|---|",
    ]
    for name, per in results.items():
        cells = " | ".join(f"{per[c]['rps']:.0f} req/s" for c in CONNECTIONS)
        lines.append(f"| {name} | {cells} |")
    lines += ["", "Server CPU time per request:", ""]
    lines += [
        "| server | 1 connection | 4 connections | 64 connections |",
        "|---|---|---|---|",
    ]
    for name, per in results.items():
        cells = " | ".join(f"{per[c].get('cpu_us', 0.0):.0f} us" for c in CONNECTIONS)
        lines.append(f"| {name} | {cells} |")
    verdict = "met" if ratio >= TARGET and not errors else "NOT met"
    cpu4, cpu64 = gw[4].get("cpu_us", 0.0), gw[64].get("cpu_us", 0.0)
    loads = [r.get("load", 0.0) for per in results.values() for r in per.values()]
    lines += [
        "",
        f"Through the gateway, 64 connections give {ratio:.2f} times the 4-connection rate "
        f"(target {TARGET}: {verdict}); socket errors and non-2xx answers: {errors}.",
    ]
    if cpu4 and cpu64:
        lines.append(
            f"By CPU time per request, 64 connections cost {cpu64 / cpu4:.2f} times what 4 do "
            f"(the rate they allow: {cpu4 / cpu64:.2f} times). Machine load average during "
            f"the run: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 s per point")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--docs", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not installed: apt-get install wrk", file=sys.stderr)
        return 2
    seconds = 1.0 if args.quick else args.seconds
    results = measure(seconds)
    text = section(results, seconds)
    print(text)
    if not args.no_docs:
        _docs.splice(args.docs, BEGIN, END, text)
    errors = sum(int(r["errors"]) for per in results.values() for r in per.values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
