"""Complete GBA bootstraps per second against `openscws bsf`, SQLite and PostgreSQL side by side.

    .venv/bin/python benchmarks/bench_gba.py [--quick] [--db sqlite|postgresql]
        [--bootstraps N] [--clients C] [--workers W] [--baseline TREE] [--rounds R] [--json FILE]
        [--docs FILE | --no-docs]

One bootstrap is what a terminal costs the BSF (3GPP TS 24.109 §4): the request with the IMPI,
the BSF taking a vector (its SQN committed), MILENAGE, the challenge stored, the 401; the
terminal's USIM check (MILENAGE in software here, `aka.vector.check_autn`) and the answer with
RES; the BSF checking it and storing the session (B-TID, Ks); the 200 with BootstrappingInfo,
its rspauth checked by the terminal. Two HTTP round trips, each on a new TCP connection.

The BSF is its own process (`python -m openscws bsf --no-zn -q`), with its database: SQLite
(WAL, synchronous FULL, a file in a temporary directory) or PostgreSQL (a temporary cluster of
Debian's postgresql, durable settings). The load generator is this process: C asyncio clients,
each bootstrapping its own subscriber in a loop until N bootstraps are done. bootstraps/s = N /
wall time; latency is one whole bootstrap (both round trips). The harness (database, server
process, CPU sampling: the server's apart from this load generator's) is `_servers.py`.
--baseline TREE runs another source tree's BSF (e.g. a worktree of main) in the same run, each
database after this tree's. --quick: SQLite, few bootstraps, never writes the docs. A full
run (both databases) rewrites the "GBA bootstraps" section of docs/benchmarks.md between its
markers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Final

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _docs  # noqa: E402
from _servers import cell_figures, served_cell  # noqa: E402
from run import free_port  # noqa: E402

from openscws.aka.milenage import Milenage  # noqa: E402
from openscws.aka.vector import SqnState, UsimAnswer, check_autn  # noqa: E402
from openscws.bsf.db import BsfDatabase  # noqa: E402
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


def run_cell(db: str, opts: argparse.Namespace, tree: str = "this") -> dict[str, Any]:
    """One database, one tree: "this" (the checkout this script is in) or "baseline" (the
    source tree given by --baseline, run with the same interpreter and load)."""
    env = None
    if tree == "baseline":
        env = {**os.environ, "PYTHONPATH": str(Path(opts.baseline).resolve() / "src")}

    def command(data_dir: Path, url: str) -> list[str]:
        workers = ("--workers", str(opts.workers)) if opts.workers > 1 else ()
        return [sys.executable, "-m", "openscws", "bsf", "--data-dir", str(data_dir),
                "--db", url, "--port", str(port), "--no-zn", "-q", "--name", "bsf.bench",
                *workers]  # fmt: skip

    port = free_port()
    prep = functools.partial(prepare, subscribers=opts.clients)
    with served_cell(db, "bsf", prep, command, "BSF Ub ready", env=env) as cell:
        ub = f"http://127.0.0.1:{port}/"
        asyncio.run(load(ub, min(opts.clients * 2, opts.bootstraps), opts.clients))  # warm
        with cell.measure() as m:
            wall, lat = asyncio.run(load(ub, opts.bootstraps, opts.clients))
    got = cell_figures(m, lat, wall)
    return {
        "db": db,
        "tree": tree,
        "workers": opts.workers,
        "bootstraps": got["done"],
        "clients": opts.clients,
        "seconds": got["seconds"],
        "bootstraps_per_s": got["per_s"],
        "server_cpu_ms_per_bootstrap": got["server_cpu_ms"],
        "client_cpu_ms_per_bootstrap": got["client_cpu_ms"],
        "per_core_bootstraps_per_s": got["per_core_per_s"],
        "load_average": got["load_average"],
        "latency_ms": got["latency_ms"],
    }


def median_cell(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell from its rounds: the median of each figure (the machine is shared, and the
    rounds of the two trees alternate, so that both see the same spread of load)."""
    if len(runs) == 1:
        return {**runs[0], "rounds": 1}
    figures = (
        "seconds", "bootstraps_per_s", "server_cpu_ms_per_bootstrap",
        "client_cpu_ms_per_bootstrap", "per_core_bootstraps_per_s", "load_average",
    )  # fmt: skip
    cell = {**runs[0], "rounds": len(runs)}
    for name in figures:
        cell[name] = round(statistics.median(r[name] for r in runs), 3)
    for q in ("p50", "p95"):
        cell["latency_ms"] = {**cell["latency_ms"]}
        cell["latency_ms"][q] = round(statistics.median(r["latency_ms"][q] for r in runs), 2)
    return cell


def render(cells: list[dict[str, Any]]) -> str:
    def row(c: dict[str, Any]) -> str:
        return (
            f"| {c['db']} | {c['tree']} | {c['bootstraps_per_s']} | {c['latency_ms']['p50']} | "
            f"{c['latency_ms']['p95']} | {c['server_cpu_ms_per_bootstrap']} | "
            f"{c['per_core_bootstraps_per_s']} | {c['client_cpu_ms_per_bootstrap']} | "
            f"{c['load_average']} |"
        )

    by = {(c["db"], c["tree"]): c for c in cells}
    notes = []
    for db in ("sqlite", "postgresql"):
        this, base = by.get((db, "this")), by.get((db, "baseline"))
        if this and base:
            notes.append(
                f"{db}: server CPU per bootstrap {this['server_cpu_ms_per_bootstrap']} ms against "
                f"{base['server_cpu_ms_per_bootstrap']} ms for the baseline (ratio "
                f"{this['server_cpu_ms_per_bootstrap'] / base['server_cpu_ms_per_bootstrap']:.2f}"
                f"); bootstraps/s ratio "
                f"{this['bootstraps_per_s'] / base['bootstraps_per_s']:.2f}."
            )
    if ("sqlite", "this") in by and ("postgresql", "this") in by:
        pg, lite = by["postgresql", "this"], by["sqlite", "this"]
        notes.append(
            f"PostgreSQL / SQLite: {pg['bootstraps_per_s'] / lite['bootstraps_per_s']:.2f}. "
            f"Target on PostgreSQL: {TARGET:.0f}/s; per free core, at the measured CPU cost: "
            f"{pg['per_core_bootstraps_per_s']}/s."
        )
    first = cells[0]
    workers = f", {first['workers']} BSF worker processes" if first["workers"] > 1 else ""
    return (
        "## GBA bootstraps\n\n"
        "Complete bootstraps per second against `openscws bsf` (benchmarks/bench_gba.py): two\n"
        "HTTP round trips on new connections, MILENAGE at both ends, two write transactions\n"
        f"(the baseline: three); {first['clients']} concurrent terminals, "
        f"{first['bootstraps']} bootstraps a run, the median of {first['rounds']} runs a cell "
        f"(the trees taking turns){workers}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs shared with the load generator "
        'and, here, with other jobs. "baseline" is the tree before the BSF\'s CPU work (same\n'
        "interpreter, database and load, in the same run).\n\n"
        "The load-independent figure is the server's CPU per bootstrap: the BSF process (with\n"
        'its workers) and, for PostgreSQL, the database server; "per core" is 1000 / that\n'
        "figure, the rate one free core would give. The load generator's own CPU per\n"
        "bootstrap is apart (client CPU). Above a load average of 2 on 2 CPUs, bootstraps/s\n"
        "measures the share of CPU the BSF got, not the BSF.\n\n"
        "| database | tree | bootstraps/s | p50 ms | p95 ms | server CPU ms / bootstrap | "
        "per core /s | client CPU ms / bootstrap | load avg |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(row(c) for c in cells)
        + "\n\n"
        + "\n".join(notes)
        + ("\n" if notes else "")
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--db", choices=("sqlite", "postgresql"), action="append")
    p.add_argument("--bootstraps", type=int)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="BSF worker processes (bsf --workers)")
    p.add_argument(
        "--baseline", type=Path, help="a source tree (e.g. a worktree of main) to run side by side"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs of each cell, the trees taking turns; the table has each figure's median",
    )
    p.add_argument("--json", type=Path)
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-docs", action="store_true")
    opts = p.parse_args()
    dbs = opts.db or (["sqlite"] if opts.quick else ["sqlite", "postgresql"])
    if opts.bootstraps is None:
        opts.bootstraps = 20 if opts.quick else 1000
    trees = ["this", "baseline"] if opts.baseline else ["this"]
    runs = []
    for db in dbs:
        for _ in range(opts.rounds):
            for tree in trees:
                runs.append(run_cell(db, opts, tree))
                c = runs[-1]
                print(
                    f"{c['db']:>10} {c['tree']:>8}: {c['bootstraps_per_s']:8.1f} bootstraps/s  "
                    f"p50 {c['latency_ms']['p50']} ms  p95 {c['latency_ms']['p95']} ms  "
                    f"server CPU {c['server_cpu_ms_per_bootstrap']} ms/bootstrap "
                    f"({c['per_core_bootstraps_per_s']}/s per core)  "
                    f"client CPU {c['client_cpu_ms_per_bootstrap']} ms  "
                    f"(load average {c['load_average']})",
                    flush=True,
                )
    cells = [median_cell([r for r in runs if (r["db"], r["tree"]) == key]) for key in
             dict.fromkeys((r["db"], r["tree"]) for r in runs)]  # fmt: skip
    if opts.json:
        opts.json.write_text(json.dumps({"cells": cells, "runs": runs}, indent=2))
    full = not opts.quick and set(dbs) == {"sqlite", "postgresql"}
    if full and not opts.no_docs:
        _docs.splice(opts.docs, GBA_BEGIN, GBA_END, render(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
