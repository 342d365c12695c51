"""The harness a server benchmark shares (bench_gba.py, bench_bsm.py): one cell is a server
process of `openscws` over its own database, SQLite (a file in a temporary directory) or
PostgreSQL (a throwaway durable cluster, `bench_admin.PgCluster`), loaded by this process.

    with served_cell("postgresql", "bsf", prepare, command, "BSF Ub ready") as cell:
        run_load(...)                               # warm-up
        with cell.measure() as m:
            wall, latencies = run_load(...)
        result = cell_figures(m, latencies, wall)  # CPU ms per operation, p50/p95, ...

`served_cell` picks the database, calls `prepare(data_dir, url)`, starts `command(data_dir,
url)` (its stdout's first line must hold `ready`, stderr goes to a log shown if it does not
start) and stops it all afterwards. `Cell.measure` samples CPU around the measured part: the
server's (its process and its children, e.g. worker processes, plus the PostgreSQL cluster's)
apart from the load generator's own, so that the figure is the server's even when both share
the machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

__all__ = ["Cell", "Measured", "cell_figures", "served_cell"]


@dataclass
class Measured:
    """CPU seconds spent while a `Cell.measure` block ran."""

    server_cpu_s: float = 0.0
    """The server process, its children and the database server."""
    client_cpu_s: float = 0.0
    """This process: the load generator."""
    load_average: float = 0.0


@dataclass
class Cell:
    db: str
    data_dir: Path
    url: str
    server: subprocess.Popen[bytes]
    cluster: Any = None
    first_line: str = ""
    measured: list[Measured] = field(default_factory=list)

    def server_cpu(self) -> float:
        """CPU seconds so far of the server, its child processes and the PostgreSQL cluster."""
        from bench_admin import children_of, proc_cpu

        pid = self.server.pid
        own = proc_cpu(pid) + sum(proc_cpu(child) for child in children_of(pid))
        return own + (self.cluster.cpu() if self.cluster is not None else 0.0)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measured]:
        m = Measured()
        server0, client0 = self.server_cpu(), time.process_time()
        yield m
        m.server_cpu_s = self.server_cpu() - server0
        m.client_cpu_s = time.process_time() - client0
        m.load_average = os.getloadavg()[0]
        self.measured.append(m)


def stop_process(proc: subprocess.Popen[bytes], wait: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `wait` seconds."""
    proc.terminate()
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cell_figures(m: Measured, latencies: list[float], wall: float) -> dict[str, Any]:
    """Rate, CPU per operation (server and load generator apart), the rate one free core
    would give at the server's CPU cost, latency percentiles, the machine's load."""
    done = len(latencies)
    lat = sorted(latencies)
    server_ms = m.server_cpu_s / done * 1000
    return {
        "done": done,
        "seconds": round(wall, 3),
        "per_s": round(done / wall, 1),
        "server_cpu_ms": round(server_ms, 3),
        "client_cpu_ms": round(m.client_cpu_s / done * 1000, 3),
        "per_core_per_s": round(1000 / server_ms, 1) if server_ms > 0 else None,
        "load_average": round(m.load_average, 1),
        "latency_ms": {
            "p50": round(statistics.median(lat) * 1000, 2),
            "p95": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2),
        },
    }


@contextlib.contextmanager
def served_cell(
    db: str,
    name: str,
    prepare: Callable[[Path, str], None],
    command: Callable[[Path, str], list[str]],
    ready: str,
    *,
    env: dict[str, str] | None = None,
) -> Iterator[Cell]:
    """A server `name` over a fresh `db` ("sqlite" or "postgresql"), started and ready."""
    tmp = Path(tempfile.mkdtemp(prefix=f"openscws-bench-{name}-"))
    cluster = None
    try:
        if db == "postgresql":
            from bench_admin import PgCluster

            cluster = PgCluster(durable=True)
            url = cluster.url(cluster.create_database())
        elif db == "sqlite":
            url = f"sqlite:///{tmp / (name + '.db')}"
        else:
            raise ValueError(f"unknown database {db!r}")
        prepare(tmp, url)
        log_path = tmp / f"{name}.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                command(tmp, url), stdout=subprocess.PIPE, stderr=log, cwd=ROOT, env=env
            )
            try:
                assert server.stdout is not None
                line = server.stdout.readline().decode()
                if ready not in line:
                    raise RuntimeError(f"{name} did not start: {log_path.read_text()}")
                yield Cell(db, tmp, url, server, cluster, line.strip())
            finally:
                stop_process(server, 20)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
