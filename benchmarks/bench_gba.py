"""Complete GBA bootstraps per second against `openscws bsf`, SQLite and PostgreSQL side by side.

    .venv/bin/python benchmarks/bench_gba.py [--quick] [--db sqlite|postgresql]
        [--bootstraps N] [--clients C] [--subscribers S] [--json FILE] [--docs FILE | --no-docs]

One bootstrap is what a terminal costs the BSF (3GPP TS 24.109 §4): the request with the IMPI,
the BSF taking a vector (its SQN committed), MILENAGE, the challenge stored, the 401; the
terminal's USIM check (MILENAGE in software here, `aka.vector.check_autn`) and the answer with
RES; the BSF checking it and storing the session (B-TID, Ks); the 200 with BootstrappingInfo,
its rspauth checked by the terminal. Two HTTP round trips, each on a new TCP connection.

The BSF is its own process (`python -m openscws bsf --no-zn -q`), with its database: SQLite
(WAL, synchronous FULL, a file in a temporary directory) or PostgreSQL (a temporary cluster of
Debian's postgresql, durable settings). The load generator is this process: C asyncio clients,
each bootstrapping its own subscriber in a loop until N bootstraps are done. bootstraps/s = N /
wall time; latency is one whole bootstrap (both round trips). --quick: SQLite, few bootstraps,
never writes the docs. A full run (both databases) rewrites the "GBA bootstraps" section of
docs/benchmarks.md between its markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _docs  # noqa: E402
from run import free_port  # noqa: E402

from openscws.aka.milenage import Milenage  # noqa: E402
from openscws.aka.vector import SqnState, UsimAnswer, check_autn  # noqa: E402
from openscws.bsf.db import BsfDatabase, default_url  # noqa: E402
from openscws.bsf.hss import SqlHss, SubscriberKeys  # noqa: E402
from openscws.gba.client import http_request  # noqa: E402
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient  # noqa: E402
from openscws.ras.vault import Vault  # noqa: E402

TARGET: Final = 200.0
"""Bootstraps/s asked for on PostgreSQL."""
K: Final = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC: Final = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
GBA_BEGIN: Final = _docs.GBA_BEGIN
GBA_END: Final = _docs.GBA_END


def impi(n: int) -> str:
    return f"00101{n:010d}@ims.mnc001.mcc001.3gppnetwork.org"


def prepare(data_dir: Path, url: str, subscribers: int) -> None:
    vault = Vault.create(data_dir)
    db = BsfDatabase(url)
    try:
        db.upgrade()
        hss = SqlHss(db, vault)
        for n in range(subscribers):
            hss.add(SubscriberKeys(impi(n), K, OPC))
    finally:
        db.dispose()


async def bootstrap_once(url: str, who: str, usim: SqnState, milenage: Milenage) -> None:
    client = UbClient(who, "127.0.0.1")
    request = client.identity_request()
    for _ in range(3):
        answer = await http_request(url, request.method, request.headers)
        got = client.receive(answer.status, answer.headers, answer.body)
        if isinstance(got, Bootstrapped):
            return
        assert isinstance(got, NeedAka)
        aka = check_autn(milenage, usim, got.rand, got.autn)
        if not isinstance(aka, UsimAnswer):
            raise RuntimeError(f"the USIM refused the BSF's AUTN: {aka}")
        request = client.answer(aka.res)
    raise RuntimeError("no 200")


async def load(url: str, bootstraps: int, clients: int) -> tuple[float, list[float]]:
    milenage = Milenage(K, OPC)
    left = [bootstraps]
    latencies: list[float] = []

    async def worker(n: int) -> None:
        usim = SqnState()
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            await bootstrap_once(url, impi(n), usim, milenage)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(clients)))
    return time.perf_counter() - start, latencies


def run_cell(db: str, opts: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="openscws-bench-gba-"))
    cluster = None
    try:
        if db == "postgresql":
            from bench_admin import PgCluster

            cluster = PgCluster(durable=True)
            url = cluster.url(cluster.create_database())
        else:
            url = default_url(tmp)
        prepare(tmp, url, opts.clients)
        port = free_port()
        log = (tmp / "bsf.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "openscws", "bsf", "--data-dir", str(tmp), "--db", url,
             "--port", str(port), "--no-zn", "-q", "--name", "bsf.bench"],
            stdout=subprocess.PIPE, stderr=log, cwd=ROOT,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            line = server.stdout.readline().decode()
            if "BSF Ub ready" not in line:
                raise RuntimeError(f"the BSF did not start: {(tmp / 'bsf.log').read_text()}")
            ub = f"http://127.0.0.1:{port}/"
            asyncio.run(load(ub, min(opts.clients * 2, opts.bootstraps), opts.clients))  # warm
            cpu0 = server_cpu(server.pid, cluster)
            wall, lat = asyncio.run(load(ub, opts.bootstraps, opts.clients))
            cpu = server_cpu(server.pid, cluster) - cpu0
        finally:
            server.terminate()
            server.wait(20)
            log.close()
        lat.sort()
        return {
            "db": db,
            "bootstraps": len(lat),
            "clients": opts.clients,
            "seconds": round(wall, 3),
            "bootstraps_per_s": round(len(lat) / wall, 1),
            "server_cpu_ms_per_bootstrap": round(cpu / len(lat) * 1000, 2),
            "load_average": round(os.getloadavg()[0], 1),
            "latency_ms": {
                "p50": round(statistics.median(lat) * 1000, 2),
                "p95": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2),
            },
        }
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def server_cpu(pid: int, cluster: Any) -> float:
    """CPU seconds of the BSF process, and of the PostgreSQL server when there is one."""
    from bench_admin import proc_cpu

    return proc_cpu(pid) + (cluster.cpu() if cluster is not None else 0.0)


def render(cells: list[dict[str, Any]]) -> str:
    by = {c["db"]: c for c in cells}
    rows = [
        f"| {c['db']} | {c['bootstraps_per_s']} | {c['latency_ms']['p50']} | "
        f"{c['latency_ms']['p95']} | {c['server_cpu_ms_per_bootstrap']} | "
        f"{c['load_average']} |"
        for c in cells
    ]
    ratio = ""
    if "sqlite" in by and "postgresql" in by:
        r = by["postgresql"]["bootstraps_per_s"] / by["sqlite"]["bootstraps_per_s"]
        ratio = (
            f"\nPostgreSQL / SQLite: {r:.2f}. Target on PostgreSQL: {TARGET:.0f}/s. The server's\n"
            "CPU per bootstrap (the BSF process and, for PostgreSQL, the database server) bounds\n"
            "what one free core could do: 1000 / that figure. The load average column is the\n"
            "machine's during the run (other jobs included): above 2 on 2 CPUs, the figures\n"
            "measure the share of CPU the BSF got, not the BSF.\n"
        )
    first = cells[0]
    return (
        "## GBA bootstraps\n\n"
        "Complete bootstraps per second against `openscws bsf` (benchmarks/bench_gba.py): two\n"
        "HTTP round trips on new connections, MILENAGE at both ends, three database\n"
        f"transactions (two of them writes); {first['clients']} concurrent terminals, "
        f"{first['bootstraps']} bootstraps a database, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs shared with the load generator.\n\n"
        "| database | bootstraps/s | p50 ms | p95 ms | server CPU ms / bootstrap | load avg |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n" + ratio
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--db", choices=("sqlite", "postgresql"), action="append")
    p.add_argument("--bootstraps", type=int)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--json", type=Path)
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-docs", action="store_true")
    opts = p.parse_args()
    dbs = opts.db or (["sqlite"] if opts.quick else ["sqlite", "postgresql"])
    if opts.bootstraps is None:
        opts.bootstraps = 20 if opts.quick else 1000
    cells = [run_cell(db, opts) for db in dbs]
    for c in cells:
        print(
            f"{c['db']:>10}: {c['bootstraps_per_s']:8.1f} bootstraps/s  "
            f"p50 {c['latency_ms']['p50']} ms  p95 {c['latency_ms']['p95']} ms  "
            f"server CPU {c['server_cpu_ms_per_bootstrap']} ms/bootstrap  "
            f"(load average {c['load_average']})",
            flush=True,
        )
    if opts.json:
        opts.json.write_text(json.dumps({"cells": cells}, indent=2))
    full = not opts.quick and set(dbs) == {"sqlite", "postgresql"}
    if full and not opts.no_docs:
        _docs.splice(opts.docs, GBA_BEGIN, GBA_END, render(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
