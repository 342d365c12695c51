"""Complete remote administration sessions per second over a fleet of in-process virtual cards.

    .venv/bin/python benchmarks/bench_admin.py [--cards 1000] [--db sqlite|postgresql|memory]
        [--servers 1|2] [--sessions N | --duration S] [--quick] [--json [FILE]] [--profile]
        [--repeat 3] [--pg-fast] [--store memory|image] [--no-docs | --render FILE.json]

One session is what an operator's campaign costs per card: the admin server claims the job
and sends the trigger SMS (a TS 102 225 secured packet in an SMS-DELIVER), the card checks it
(SMS-PP download ENVELOPE), opens a BIP client channel to the server that sent it, runs
PSK-TLS and the GP Amd B exchange, takes one PUT (a 1 KiB page) and commits; the server
records the verdict and the session log. Processes (see benchmarks/_admin_fleet.py):

  loadgen   N cards, each a `VirtualUicc` with its admin agent behind its own `Gateway` over
            an `InProcessLink`, and a loopback SMS router (`POST /sms?msisdn=`)
  server    1 or 2 `RasServer` processes, each on its own port, on one shared database:
            SQLite (WAL, the file in a temporary directory) or PostgreSQL (a temporary
            cluster of Debian's postgresql, run as the postgres user, durable settings);
            `memory` is the reference ceiling: the same server with `MemoryRasService` in
            place of the database (each server its own share of the cards)

Measured: the cards are registered (`RasService.add_card`), one resource is put in the
repository, then the clock starts when a campaign over every card is created and stops when
the last job is done. sessions/s = jobs done / that time. More sessions than cards (--sessions,
--duration) run further campaign rounds, each created once half of the one before is done.
Session latency (p50/p95) is SessionLog.ended_at - started_at: from the card's TCP connection
to the verdict (queueing on a busy server included). CPU seconds of every process over the
measured window come from /proc (the PostgreSQL server's processes included).

By default the whole matrix runs, the baseline side by side: memory x1, memory x2 (the
ceiling), sqlite x1, sqlite x2, postgresql x1, postgresql x2, each --repeat times (cells
interleaved, the median run kept); --db / --servers pick cells (--servers takes 1 to 8, for
scaling experiments). The full matrix (not --quick) rewrites the "Remote administration
sessions" section of docs/benchmarks.md (between the bench_admin markers) unless --no-docs;
--render rewrites it from the --json of such a run. --profile adds one run of the last cell
with the load generator and server 0 under cProfile for the measured window, and summarises
it. The servers also time every `RasService` call they make and count its database round
trips (statements, BEGIN, COMMIT, ROLLBACK, the pool's ping of a connection that sat idle):
see "service_calls" in --json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import pstats
import pwd
import queue
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _admin_fleet as fleet  # noqa: E402
import _docs  # noqa: E402
from run import free_port  # noqa: E402

TARGET: Final = 100.0
"""Required sessions/s: PostgreSQL, two server processes, this 2-core machine."""
ADMIN_BEGIN: Final = _docs.ADMIN_BEGIN
ADMIN_END: Final = _docs.ADMIN_END
TICK: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Options:
    cards: int
    sessions: int | None
    duration: float | None
    body_size: int
    trigger_interval: float
    trigger_batch: int
    poll: float
    store: str
    pg_durable: bool
    log: Callable[[str], None]
    child_log_level: str = "WARNING"


# -- processes -----------------------------------------------------------------------------------


class Child:
    """A process of _admin_fleet.py, spoken to over its stdin / stdout lines."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_admin_fleet.py"), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no {kind} within {timeout:.0f} s") from None
            if line is None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            head, _, rest = line.partition(" ")
            if head == kind:
                doc: dict[str, Any] = json.loads(rest) if rest else {}
                return doc

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            self.send("stop")
            return self.expect("STATS", timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_stall() -> float:
    """Seconds some runnable task waited for a CPU (PSI "some" total), 0 without PSI."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return 0.0
    return int(first.rsplit("total=", 1)[1]) / 1e6


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK


# -- PostgreSQL ----------------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all((candidate / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


class PgCluster:
    """A throwaway cluster on 127.0.0.1 (as the postgres user when we are root)."""

    def __init__(self, durable: bool) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self.bindir = bindir
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = ["runuser", "-u", "postgres", "--"]
        # Not under a root-only directory: the postgres user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="openscws-bench-pg-"))
        if self.prefix:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self.durable = durable
        self._run(
            str(bindir / "initdb"),
            *("-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
            "--no-sync",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=100"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(bindir / "pg_ctl"),
            *("-D", str(self.data), "-o", options, "-l", str(self.root / "server.log")),
            *("-w", "start"),
        )

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")

    @property
    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def cpu(self) -> float:
        pid = self.postmaster
        return proc_cpu(pid) + sum(proc_cpu(c) for c in children_of(pid))

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def create_database(self) -> str:
        name = f"ras_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def version(self) -> str:
        done = subprocess.run(
            [str(self.bindir / "postgres"), "--version"], capture_output=True, text=True
        )
        return done.stdout.strip()

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- one cell of the matrix ------------------------------------------------------------------


@dataclass
class Drive:
    """How the campaign rounds of one cell are created and watched."""

    create_round: Callable[[int], None]
    """Creates round i (i from 0) over every card, or the first n cards of a partial one."""
    open_jobs: Callable[[], tuple[int, int]]
    """(open jobs in the newest round, open jobs in all rounds)."""
    sessions: Callable[[], list[tuple[float, float, str]]] = field(default=lambda: [])
    """(started, ended, outcome) of every session log of the cell's campaigns."""


def rounds_plan(opts: Options) -> tuple[int | None, list[int]]:
    """(rounds when fixed, else None; the size of each fixed round)."""
    if opts.duration is not None:
        return None, []
    total = opts.sessions or opts.cards
    full, rest = divmod(total, opts.cards)
    sizes = [opts.cards] * full + ([rest] if rest else [])
    return len(sizes), sizes


def drive_rounds(opts: Options, drive: Drive, timeout: float) -> tuple[float, int]:
    """Creates the rounds (the next once the newest is half done), waits for all of them;
    returns (the start time, how many rounds)."""
    fixed, sizes = rounds_plan(opts)
    start = time.time()
    drive.create_round(0)
    made = 1
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(0.25)
        newest, total_open = drive.open_jobs()
        more = (made < fixed) if fixed is not None else (time.time() - start < opts.duration)  # type: ignore[operator]
        if more and newest <= (sizes[made - 1] if sizes else opts.cards) // 2:
            drive.create_round(made)
            made += 1
            continue
        if not more and total_open == 0:
            return start, made
        if time.monotonic() > deadline:
            raise RuntimeError(f"campaign stuck: {total_open} jobs open after {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_cell(
    opts: Options,
    db_kind: str,
    servers: int,
    pg: PgCluster | None,
    work: Path,
    *,
    profile: Path | None = None,
) -> dict[str, Any]:
    from sqlalchemy import select

    from openscws.ras.db import RasDatabase, default_url
    from openscws.ras.models import Job, SessionLog
    from openscws.ras.service import RasPolicy, RasService
    from openscws.ras.vault import Vault

    log = opts.log
    seed = uuid.uuid4().hex
    cell = work / f"{db_kind}-{servers}-{uuid.uuid4().hex[:6]}"
    data_dir = cell / "ras"
    data_dir.mkdir(parents=True)
    children: list[Child] = []
    db: RasDatabase | None = None
    pg_name: str | None = None
    result: dict[str, Any] = {"db": db_kind, "servers": servers, "cards": opts.cards}
    try:
        provision_s = 0.0
        service: RasService | None = None
        url = "memory"
        if db_kind != "memory":
            if db_kind == "sqlite":
                url = default_url(data_dir)
            else:
                assert pg is not None
                pg_name = pg.create_database()
                url = pg.url(pg_name)
            db = RasDatabase(url)
            db.upgrade()
            service = RasService(db, Vault.create(data_dir), RasPolicy())
            t = time.perf_counter()
            fleet.register_cards(service, seed, opts.cards)
            service.put_content(
                fleet.CONTENT_PATH, fleet.content_body(opts.body_size), fleet.CONTENT_TYPE
            )
            provision_s = time.perf_counter() - t
            log(f"  {opts.cards} cards registered in {provision_s:.1f} s")
        ports = [free_port() for _ in range(servers)]
        gen_argv = [
            "loadgen",
            *("--cards", str(opts.cards), "--seed", seed, "--admin-port", str(ports[0])),
            *("--poll", str(opts.poll), "--store", opts.store),
            *("--image-dir", str(cell / "cards")),
            *("--log-level", opts.child_log_level),
        ]
        if profile is not None:
            gen_argv += ["--profile", str(profile / "loadgen.prof")]
        gen = Child("loadgen", gen_argv, cell / "loadgen.log")
        children.append(gen)
        ready = gen.expect("READY", 300)
        log(f"  {opts.cards} cards up in {ready['setup_s']:.1f} s")
        srv: list[Child] = []
        for k, port in enumerate(ports):
            argv = [
                "server",
                *("--db", url, "--data-dir", str(data_dir), "--port", str(port)),
                *("--router", ready["router"], "--index", str(k), "--servers", str(servers)),
                *("--cards", str(opts.cards), "--seed", seed),
                *("--body-size", str(opts.body_size)),
                *("--trigger-interval", str(opts.trigger_interval)),
                *("--trigger-batch", str(opts.trigger_batch)),
                *("--log-level", opts.child_log_level),
            ]
            if profile is not None and k == 0:
                argv += ["--profile", str(profile / "server0.prof")]
            child = Child(f"server{k}", argv, cell / f"server{k}.log")
            children.append(child)
            srv.append(child)
        for child in srv:
            child.expect("READY", 60)

        campaigns: list[int] = []
        if service is not None:
            assert db is not None
            svc, database = service, db
            _, sizes = rounds_plan(opts)
            iccids = [fleet.card_keys(seed, i).iccid for i in range(opts.cards)]

            def create_round(i: int) -> None:
                n = sizes[i] if sizes else opts.cards
                cards = None if n == opts.cards else iccids[:n]
                campaigns.append(svc.create_campaign(f"bench round {i}", cards=cards).id)

            def open_jobs() -> tuple[int, int]:
                counts = [svc.campaign_progress(c) for c in campaigns]
                opened = [sum(c.values()) - c["done"] - c["failed"] for c in counts]
                return opened[-1], sum(opened)

            def sessions() -> list[tuple[float, float, str]]:
                with database.read() as s:
                    rows = s.execute(
                        select(SessionLog.started_at, SessionLog.ended_at, SessionLog.outcome)
                        .join(Job, Job.id == SessionLog.job_id)
                        .where(Job.campaign_id.in_(campaigns))
                    ).all()
                return [(a.timestamp(), (b or a).timestamp(), str(o)) for a, b, o in rows]

            drive = Drive(create_round, open_jobs, sessions)
        else:

            def create_round(i: int) -> None:
                for child in srv:
                    child.send("round")
                for child in srv:
                    child.expect("OK", 30)

            def open_jobs() -> tuple[int, int]:
                newest = total = 0
                for child in srv:
                    child.send("progress")
                for child in srv:
                    doc = child.expect("PROGRESS", 30)
                    newest += doc["open_newest"]
                    total += doc["open"]
                return newest, total

            def sessions() -> list[tuple[float, float, str]]:
                out: list[tuple[float, float, str]] = []
                for child in srv:
                    child.send("result")
                for child in srv:
                    out += [tuple(x) for x in child.expect("RESULT", 60)["sessions"]]  # type: ignore[misc]
                return out

            drive = Drive(create_round, open_jobs, sessions)

        pids = {"loadgen": gen.pid, **{c.name: c.pid for c in srv}}
        cpu0 = {name: proc_cpu(pid) for name, pid in pids.items()}
        pg0 = pg.cpu() if pg is not None and db_kind == "postgresql" else 0.0
        busy0, self0, stall0 = machine_busy(), sum(os.times()[:2]), cpu_stall()
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        expected = (opts.sessions or opts.cards) if opts.duration is None else opts.cards
        timeout = max(120.0, expected / 5.0) + (opts.duration or 0.0)
        profiled = [c for c in children if profile is not None and c.name in ("loadgen", "server0")]
        for child in profiled:
            child.send("prof-start")
            child.expect("OK", 30)
        log(f"  {db_kind} x{servers}: running ...")
        start, rounds = drive_rounds(opts, drive, timeout)
        wall_end = time.time()
        for child in profiled:
            child.send("prof-stop")
            child.expect("OK", 30)
        cpu1 = {name: proc_cpu(pid) for name, pid in pids.items()}
        pg1 = pg.cpu() if pg is not None and db_kind == "postgresql" else 0.0
        busy1, self1, stall1 = machine_busy(), sum(os.times()[:2]), cpu_stall()

        logs = drive.sessions()
        done = [(a, b) for a, b, o in logs if o == "done"]
        end = max((b for _, b in done), default=wall_end)
        elapsed = max(end - start, 1e-9)
        latencies = [(b - a) * 1000.0 for a, b in done]
        stats = {child.name: child.stop() for child in [*srv, gen]}
        children.clear()
        window = wall_end - start
        cpu = {name: cpu1[name] - cpu0[name] for name in pids}
        cpu["postgres"] = pg1 - pg0
        cpu["orchestrator"] = self1 - self0
        ours = sum(cpu.values())
        result.update(
            url=url if db_kind != "postgresql" else "postgresql (temporary cluster)",
            rounds=rounds,
            done=len(done),
            sessions_logged=len(logs),
            not_done=len(logs) - len(done),
            elapsed_s=elapsed,
            sessions_per_s=len(done) / elapsed,
            latency_ms={
                "p50": percentile(latencies, 0.50),
                "p95": percentile(latencies, 0.95),
                "max": max(latencies, default=float("nan")),
                "mean": statistics.fmean(latencies) if latencies else float("nan"),
            },
            window_s=window,
            cpu_s=cpu,
            cpu_ms_per_session={k: v * 1000.0 / max(1, len(done)) for k, v in cpu.items()},
            machine_busy_s=busy1 - busy0,
            other_busy_s=max(0.0, (busy1 - busy0) - ours),
            machine_capacity_s=window * (os.cpu_count() or 1),
            cpu_stall_share=(stall1 - stall0) / window if window > 0 else 0.0,
            per_server={
                name: {
                    k: s[k]
                    for k in ("sessions_done", "triggers_sent", "service_calls", "db_round_trips")
                }
                for name, s in stats.items()
                if name.startswith("server")
            },
            loadgen=stats["loadgen"],
            provision_s=provision_s,
            loadavg_before=" ".join(load_before),
        )
        for name, st in stats.items():
            for call, t in st.get("service_calls", {}).items():
                log(
                    f"    {name} {call:15s} {t['calls']:6d} calls, {t['total_s']:6.2f} s, "
                    f"mean {t['mean_ms']:6.2f} ms, p50 {t['p50_ms']:6.2f}, "
                    f"p95 {t['p95_ms']:6.2f}, max {t['max_ms']:7.1f}, "
                    f"{t.get('round_trips_per_call', 0):.1f} round trips"
                )
        log(
            f"  {db_kind} x{servers}: {len(done)} sessions in {elapsed:.2f} s = "
            f"{result['sessions_per_s']:.1f}/s, p50 {result['latency_ms']['p50']:.0f} ms, "
            f"p95 {result['latency_ms']['p95']:.0f} ms, CPU "
            + ", ".join(f"{k} {v:.1f}s" for k, v in cpu.items())
        )
        return result
    except BaseException:
        for child in children:
            opts.log(f"--- {child.name} log tail:\n{child.tail()}")
        raise
    finally:
        for child in children:
            child.kill()
        if db is not None:
            db.dispose()
        if pg is not None and pg_name is not None:
            with contextlib.suppress(Exception):
                pg.drop_database(pg_name)


# -- profiles ------------------------------------------------------------------------------------

_GROUPS: Final = (
    ("sqlalchemy", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("sqlite3", "sqlite3"),
    ("alembic", "alembic"),
    ("/ssl.py", "ssl module"),
    ("_ssl.", "OpenSSL (_ssl)"),
    ("openscws/tls/", "openscws.tls"),
    ("openscws/amdb/", "openscws.amdb"),
    ("openscws/ras/", "openscws.ras"),
    ("openscws/agent/", "openscws.agent"),
    ("openscws/ota/", "openscws.ota"),
    ("openscws/cat/", "openscws.cat"),
    ("openscws/bip/", "openscws.bip"),
    ("openscws/terminal/", "openscws.terminal"),
    ("openscws/uicc/", "openscws.uicc"),
    ("openscws/aio/", "openscws.aio"),
    ("openscws/scws/", "openscws.scws"),
    ("openscws/http/", "openscws.http"),
    ("openscws/", "openscws (other)"),
    ("cryptography", "cryptography"),
    ("h11/", "h11"),
    ("asyncio", "asyncio"),
    ("selectors", "asyncio"),
    ("_admin_fleet", "benchmark harness"),
    ("logging", "logging"),
)


def _group(filename: str, func: str) -> str:
    key = f"{filename}:{func}"
    for needle, name in _GROUPS:
        if needle in key:
            return name
    if filename == "~":
        if "select" in func or "epoll" in func or "poll" in func:
            return "waiting (epoll)"
        if "_ssl" in func or "SSL" in func:
            return "OpenSSL (_ssl)"
        if "socket" in func or "send" in func or "recv" in func:
            return "sockets"
        return "builtins"
    return "other Python"


def profile_summary(path: Path, top: int = 18) -> dict[str, Any]:
    st = pstats.Stats(str(path))
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    groups: dict[str, float] = {}
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in raw.items():
        groups[_group(filename, func)] = groups.get(_group(filename, func), 0.0) + tt
        short = filename.split("/site-packages/")[-1].split("/src/")[-1]
        rows.append((tt, ct, nc, re.sub(r" at 0x[0-9a-f]+", "", f"{short}:{line}({func})")))
    rows.sort(reverse=True)
    cum = sorted(
        (
            (ct, nc, f"{f.split('/site-packages/')[-1].split('/src/')[-1]}:{ln}({fn})")
            for (f, ln, fn), (_cc, nc, _tt, ct, _c) in raw.items()
        ),
        reverse=True,
    )
    return {
        "total_s": total,
        "groups": sorted(groups.items(), key=lambda kv: -kv[1]),
        "top_tottime": [
            {"tottime_s": tt, "cumtime_s": ct, "calls": nc, "where": w}
            for tt, ct, nc, w in rows[:top]
        ],
        "top_cumtime": [{"cumtime_s": ct, "calls": nc, "where": w} for ct, nc, w in cum[:top]],
    }


# -- report --------------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rev = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    import sqlalchemy

    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": __import__("sqlite3").sqlite_version,
        "openssl": __import__("ssl").OPENSSL_VERSION,
        "revision": rev,
    }


def label(cell: dict[str, Any]) -> str:
    names = {
        "memory": "no database (MemoryRasService)",
        "sqlite": "SQLite (WAL, synchronous=FULL)",
        "postgresql": "PostgreSQL",
    }
    n = cell["servers"]
    return f"{names[cell['db']]}, {n} server{'s' if n > 1 else ''}"


def find(cells: list[dict[str, Any]], db: str, servers: int) -> dict[str, Any] | None:
    return next((c for c in cells if c["db"] == db and c["servers"] == servers), None)


def ratios(cells: list[dict[str, Any]]) -> list[tuple[str, float]]:
    out = []
    names = {"memory": "no database", "sqlite": "SQLite", "postgresql": "PostgreSQL"}
    for db in ("memory", "sqlite", "postgresql"):
        one, two = find(cells, db, 1), find(cells, db, 2)
        if one and two:
            rate = two["sessions_per_s"] / one["sessions_per_s"]
            out.append((f"{names[db]}: 2 servers / 1 server", rate))
    for db in ("sqlite", "postgresql"):
        for n in (1, 2):
            cell, ceiling = find(cells, db, n), find(cells, "memory", n)
            if cell and ceiling:
                out.append(
                    (
                        f"{names[db]} x{n} / no database x{n}",
                        cell["sessions_per_s"] / ceiling["sessions_per_s"],
                    )
                )
    pg2, sq2 = find(cells, "postgresql", 2), find(cells, "sqlite", 2)
    if pg2 and sq2:
        out.append(("PostgreSQL x2 / SQLite x2", pg2["sessions_per_s"] / sq2["sessions_per_s"]))
    return out


def cpu_cell(cell: dict[str, Any], key: str) -> str:
    per = cell["cpu_ms_per_session"]
    if key == "servers":
        value = sum(v for k, v in per.items() if k.startswith("server"))
    else:
        value = per.get(key, 0.0)
    return f"{value:.1f}" if value else "-"


def db_wait(cell: dict[str, Any]) -> tuple[float, float]:
    """(wall ms inside service calls per done session, summed over the servers' database
    threads; how many calls were in flight on average over the run)."""
    total = sum(
        t["total_s"] for s in cell["per_server"].values() for t in s["service_calls"].values()
    )
    in_flight = total / cell["window_s"] if cell["window_s"] else 0.0
    return 1000.0 * total / max(1, cell["done"]), in_flight


def call_table(cell: dict[str, Any]) -> list[str]:
    """Per service call, over every server of the cell: calls per session, mean wall time,
    database round trips per call."""
    merged: dict[str, dict[str, float]] = {}
    for s in cell["per_server"].values():
        for name, t in s["service_calls"].items():
            m = merged.setdefault(name, {"calls": 0, "total_s": 0.0, "trips": 0.0})
            m["calls"] += t["calls"]
            m["total_s"] += t["total_s"]
            m["trips"] += t.get("round_trips_per_call", 0.0) * t["calls"]
    done = max(1, cell["done"])
    rows = [
        "| service call | calls per session | mean ms | round trips per call | ms per session |",
        "|---|---:|---:|---:|---:|",
    ]
    per_session = trips = 0.0
    for name, m in sorted(merged.items(), key=lambda kv: -kv[1]["total_s"]):
        calls = int(m["calls"])
        ms = 1000.0 * m["total_s"] / done
        per_session += ms
        trips += m["trips"] / done
        rows.append(
            f"| `{name}` | {calls / done:.2f} | {1000.0 * m['total_s'] / calls:.2f} | "
            f"{m['trips'] / calls:.1f} | {ms:.1f} |"
        )
    rows.append(f"| all | | | {trips:.1f} per session | {per_session:.1f} |")
    return rows


def loadgen_note(cells: list[dict[str, Any]]) -> str:
    cell = find(cells, "memory", 1)
    if cell is None:
        return ""
    busy = cell["cpu_s"]["loadgen"] / (cell["window_s"] or 1.0)
    return f" (it was busy {busy:.0%} of a core in the 1-server run)"


def budget_row(cell: dict[str, Any], nproc: int) -> str:
    per = sum(v for k, v in cell["cpu_ms_per_session"].items() if k != "orchestrator")
    window = cell["window_s"] or 1.0
    free = max(0.0, nproc - cell["other_busy_s"] / window)
    return (
        f"| {label(cell)} | {per:.1f} | {1000.0 * nproc / per:.0f} | "
        f"{1000.0 * free / per:.0f} | {cell['sessions_per_s']:.1f} |"
    )


def cores(cell: dict[str, Any]) -> str:
    window = cell["window_s"] or 1.0
    ours = sum(cell["cpu_s"].values()) / window
    return f"{ours:.2f} / {cell['other_busy_s'] / window:.2f}"


def wrap(text: str, *, bullet: bool = False) -> str:
    if bullet:
        return textwrap.fill(
            text, 88, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False
        )
    return textwrap.fill(text, 88, break_on_hyphens=False)


def markdown(
    cells: list[dict[str, Any]],
    info: dict[str, str],
    opts: dict[str, Any],
    command: str,
    profiles: dict[str, Any] | None,
    pg_version: str,
    *,
    when: str | None = None,
) -> str:
    when = when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    pg2 = find(cells, "postgresql", 2)
    met = pg2 is not None and pg2["sessions_per_s"] >= TARGET
    repeat = max((len(c.get("runs_sessions_per_s", [1])) for c in cells), default=1)
    store = (
        "a `MemoryStore` and a dict for the secure files (no disk in the card)"
        if opts["store"] == "memory"
        else "a `CardImage` per card in a temporary directory"
    )
    durability = (
        "default durability (fsync, synchronous_commit on)"
        if opts["pg_durable"]
        else "fsync=off, synchronous_commit=off (`--pg-fast`)"
    )
    lines = [
        "## Remote administration sessions",
        "",
        wrap(
            "Complete admin sessions per second over a fleet of in-process virtual cards: the "
            "admin server claims the job and sends the trigger SMS, the card checks the "
            "secured packet (SMS-PP download ENVELOPE), opens a BIP client channel to that "
            f"server, runs PSK-TLS and the Amd B exchange, takes one PUT (a "
            f"{opts['body_size']:,}-byte page) and commits; the server records the verdict "
            "and the session log. Generated by `benchmarks/bench_admin.py` (the processes "
            "are in `benchmarks/_admin_fleet.py`)."
        ),
        "",
        "```sh",
        command,
        ".venv/bin/python benchmarks/bench_admin.py --db postgresql --servers 2   # one cell",
        ".venv/bin/python benchmarks/bench_admin.py --profile --db postgresql --servers 2",
        ".venv/bin/python benchmarks/bench_admin.py --quick --no-docs              # smoke run",
        "```",
        "",
        wrap(
            f"Machine: {info['nproc']} x {info['cpu']}; Python {info['python']}, SQLAlchemy "
            f"{info['sqlalchemy']}, SQLite {info['sqlite']}, {pg_version}, {info['openssl']}; "
            f"source {info['revision']}; run {when}.",
            bullet=True,
        ),
        wrap(
            f"{opts['cards']:,} cards in one load-generator process: each a `VirtualUicc` "
            "with its admin agent (no server ports) behind its own `Gateway` over an "
            f"`InProcessLink`; the card store is {store}. Triggers reach the cards through a "
            "loopback SMS router in that process (`POST /sms?msisdn=`, the TPDUs of "
            "`LocalTerminalSender.tpdus`, keep-alive connections).",
            bullet=True,
        ),
        wrap(
            f"Sessions: {opts['sessions_text']}; each cell measured {repeat} times, cells "
            "interleaved, the median run shown (every run's sessions/s in the runs column).",
            bullet=True,
        ),
        wrap(
            "Servers: `RasServer` processes on their own ports (a trigger names the port of "
            "the server that sent it), one shared database made fresh for every run, "
            f"trigger_interval {opts['trigger_interval']:g} s, trigger_batch "
            f"{opts['trigger_batch']}. SQLite: WAL, synchronous=FULL (the project's "
            f"setting). PostgreSQL: a temporary cluster with {durability}.",
            bullet=True,
        ),
        wrap(
            f"Load generator, servers and PostgreSQL share the machine's {info['nproc']} "
            "cores, and the machine was shared with other work while this ran. The last "
            "columns say how many cores the benchmark's processes used on average over the "
            "run, how many the rest of the machine used (/proc/stat busy time minus ours), "
            "and the share of the run during which some runnable task waited for a CPU "
            "(Linux PSI `cpu some`): when the machine is full, every database round trip "
            "also waits for a CPU.",
            bullet=True,
        ),
        "",
        "| database, servers | sessions/s | runs | p50 ms | p95 ms | not done | "
        "CPU ms/session: load gen | servers | PostgreSQL | DB calls: ms/session, in flight | "
        "cores: ours / other work | CPU pressure |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for c in cells:
        lat = c["latency_ms"]
        runs = ", ".join(f"{v:.0f}" for v in c.get("runs_sessions_per_s", []))
        wait_ms, wait_share = db_wait(c)
        waited = f"{wait_ms:.1f} ms, {wait_share:.1f}" if c["db"] != "memory" else "-"
        lines.append(
            f"| {label(c)} | **{c['sessions_per_s']:.1f}** | {runs} | {lat['p50']:.0f} | "
            f"{lat['p95']:.0f} | {c['not_done']} | {cpu_cell(c, 'loadgen')} | "
            f"{cpu_cell(c, 'servers')} | {cpu_cell(c, 'postgres')} | {waited} | "
            f"{cores(c)} | {c.get('cpu_stall_share', 0.0):.0%} |"
        )
    lines += ["", "| ratio (medians) | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios(cells)]
    lines += [
        "",
        f"Target (PostgreSQL, 2 servers, >= {TARGET:g} sessions/s): "
        + ("**met**" if met else "**NOT met**" if pg2 is not None else "not measured")
        + (f" (median {pg2['sessions_per_s']:.1f}/s)." if pg2 is not None else "."),
        "",
        wrap(
            "The CPU budget: every process's CPU per session added up, and the rate that "
            f"budget allows on {info['nproc']} idle cores, and on the cores other work left "
            "free during the run (what the machine could give the benchmark at best):"
        ),
        "",
        "| database, servers | CPU ms per session, all processes | sessions/s on idle cores "
        "| sessions/s on the cores left free | measured sessions/s |",
        "|---|---:|---:|---:|---:|",
        *(budget_row(c, int(info["nproc"])) for c in cells),
        "",
        "Reading the tables:",
        "",
        wrap(
            "sessions/s = jobs done / (the last done session's end - the campaign's "
            "creation); `not done` counts session logs that ended otherwise (retry, "
            "failure). p50 / p95 are SessionLog.ended_at - started_at, from the card's TCP "
            "connection to the verdict: every card is triggered at once, so they include "
            "queueing on a busy server.",
            bullet=True,
        ),
        wrap(
            "CPU is per done session over the measured window, from /proc: the load "
            "generator (cards, gateways, SMS router), all server processes, the PostgreSQL "
            "cluster's processes (SQLite runs inside the servers). The load generator is one "
            "Python process doing the cards' half of every session (APDUs, TLS client, Amd B "
            "client, OTA checks), and it competes with the servers for the same cores.",
            bullet=True,
        ),
        wrap(
            "DB calls: `RasServer` makes its `RasService` calls on worker threads "
            "(EndpointConfig.db_workers, 4), so its event loop goes on with other sessions "
            "meanwhile. The first figure is the wall time inside those calls per done "
            "session (all servers, waiting for locks, commits and the CPU included), the "
            "second how many calls were in flight on average over the run.",
            bullet=True,
        ),
        wrap(
            "no database: the same `RasServer`, triggers, TLS and Amd B with "
            "`MemoryRasService` (benchmarks/_admin_fleet.py) in place of `RasService`: the "
            "ceiling the cards, the protocol stack and this machine put on the rate, without "
            "database work. There the load generator is the limit: one Python process, "
            f"so at most one core{loadgen_note(cells)}.",
            bullet=True,
        ),
    ]
    for db, n in (("postgresql", 2), ("sqlite", 1)):
        cell = find(cells, db, n)
        if cell is None:
            continue
        lines += [
            "",
            wrap(
                f"Database calls of the median {label(cell)} run (wall time, so waiting "
                "included; round trips: statements, BEGIN, COMMIT, ROLLBACK and the pool's ping "
                "of a connection idle over 5 s, each a round trip to the server on "
                "PostgreSQL):"
            ),
            "",
            *call_table(cell),
        ]
    if profiles:
        lines += ["", f"### Where the time goes ({profiles['cell']}, cProfile)", ""]
        lines += [
            "One more run of that cell with the load generator and server 0 under cProfile",
            "(wall-clock timer, so time blocked in a call counts; profiling slows both, so",
            "the shares matter, not the seconds; since Python 3.12 cProfile sees every",
            "thread, so the server's database threads are in it):",
            "",
            "| process | share of profiled time by package (tottime) |",
            "|---|---|",
        ]
        for name, prof in profiles["processes"].items():
            total = prof["total_s"] or 1.0
            parts = ", ".join(
                f"{g} {t / total:.0%}" for g, t in prof["groups"][:9] if t / total >= 0.01
            )
            lines.append(f"| {name} | {parts} |")
        lines += ["", "Functions with the most time of their own (tottime):", ""]
        for name, prof in profiles["processes"].items():
            lines += [f"{name}:", "", "| tottime s | calls | function |", "|---:|---:|---|"]
            for row in prof["top_tottime"][:10]:
                where = re.sub(r" at 0x[0-9a-f]+", "", row["where"])
                lines.append(f"| {row['tottime_s']:.2f} | {row['calls']:,} | `{where}` |")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def splice(path: Path, section: str) -> None:
    """Replaces this benchmark's section of the page (see _docs.splice)."""
    _docs.splice(path, ADMIN_BEGIN, ADMIN_END, section)


# -- main ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def cluster_if(needed: bool, durable: bool) -> Iterator[PgCluster | None]:
    if not needed:
        yield None
        return
    pg = PgCluster(durable)
    try:
        yield pg
    finally:
        pg.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Complete admin sessions per second (trigger, PSK-TLS, one PUT, end) over "
        "in-process virtual cards, SQLite vs PostgreSQL, one server process vs two. See the "
        "module docstring.",
    )
    p.add_argument("--cards", type=int, default=None, help="virtual cards (default 1000)")
    p.add_argument(
        "--db",
        action="append",
        choices=("sqlite", "postgresql", "memory"),
        help="database(s) to measure (repeat; default: all three, memory being the ceiling)",
    )
    p.add_argument(
        "--servers",
        action="append",
        type=int,
        choices=range(1, 9),
        metavar="{1,2,...}",
        help="server processes (repeat; default: 1 and 2)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--sessions", type=int, help="sessions per cell (default: one per card)")
    how.add_argument(
        "--duration", type=float, help="keep creating campaign rounds for this many seconds"
    )
    p.add_argument("--json", nargs="?", const="-", help="write every number (to FILE or stdout)")
    p.add_argument("--quick", action="store_true", help="100 cards, no docs: a smoke run")
    p.add_argument("--profile", action="store_true", help="add a cProfile run of the last cell")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--body-size", type=int, default=1024, help="bytes of the PUT resource")
    p.add_argument("--trigger-interval", type=float, default=0.05)
    p.add_argument("--trigger-batch", type=int, default=100)
    p.add_argument("--poll", type=float, default=5.0, help="terminals' STATUS poll interval, s")
    p.add_argument(
        "--store",
        choices=("memory", "image"),
        default="memory",
        help="the cards' content store: MemoryStore, or a CardImage each in a temp dir",
    )
    p.add_argument(
        "--pg-fast",
        action="store_true",
        help="PostgreSQL with fsync=off, synchronous_commit=off (default: durable)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    p.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: rewrite the docs section from a --json file of a full run",
    )
    p.add_argument("--child-log-level", default="WARNING", help="the processes' log level")
    p.add_argument("--repeat", type=int, help="runs per cell, the median kept (default 3)")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        section = markdown(
            saved["cells"],
            saved["machine"],
            saved["options"],
            saved["command"],
            saved["profiles"],
            saved["pg_version"],
            when=saved["when"],
        )
        splice(args.docs, section)
        print(f"wrote the admin section of {args.docs} from {args.render}", file=sys.stderr)
        return 0

    cards = args.cards or (100 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    dbs = args.db or ["memory", "sqlite", "postgresql"]
    servers = sorted(set(args.servers or [1, 2]))
    cells = [(d, n) for d in ("memory", "sqlite", "postgresql") if d in dbs for n in servers]
    full_matrix = args.db is None and args.servers is None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    opts = Options(
        cards=cards,
        sessions=args.sessions,
        duration=args.duration,
        body_size=args.body_size,
        trigger_interval=args.trigger_interval,
        trigger_batch=args.trigger_batch,
        poll=args.poll,
        store=args.store,
        pg_durable=not args.pg_fast,
        log=log,
        child_log_level=args.child_log_level,
    )
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="openscws-bench-admin-"))
    results: list[dict[str, Any]] = []
    profiles: dict[str, Any] | None = None
    pg_version = "PostgreSQL not used"
    started = time.time()
    try:
        with cluster_if(any(d == "postgresql" for d, _ in cells), opts.pg_durable) as pg:
            if pg is not None:
                pg_version = pg.version()
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in cells}
            for r in range(repeat):
                for db_kind, n in cells:
                    log(f"{db_kind} x{n} ({cards} cards), run {r + 1} of {repeat} ...")
                    runs[db_kind, n].append(run_cell(opts, db_kind, n, pg, work))
            for cell_runs in runs.values():
                ordered = sorted(cell_runs, key=lambda c: c["sessions_per_s"])
                median = dict(ordered[(len(ordered) - 1) // 2])
                median["runs_sessions_per_s"] = [c["sessions_per_s"] for c in cell_runs]
                results.append(median)
            if args.profile and cells:
                db_kind, n = cells[-1]
                pdir = work / "profile"
                pdir.mkdir()
                log(f"profiling {db_kind} x{n} ...")
                cell = run_cell(opts, db_kind, n, pg, work, profile=pdir)
                profiles = {
                    "cell": f"{label(cell)}, {cell['sessions_per_s']:.1f} sessions/s profiled",
                    "processes": {
                        "server 0": profile_summary(pdir / "server0.prof"),
                        "load generator": profile_summary(pdir / "loadgen.prof"),
                    },
                }
                for name, prof in profiles["processes"].items():
                    log(f"\n{name}: {prof['total_s']:.1f} s profiled")
                    for g, t in prof["groups"][:12]:
                        log(f"  {g:24s} {t:7.2f} s  {t / prof['total_s']:.0%}")
                    for row in prof["top_tottime"]:
                        log(
                            f"    {row['tottime_s']:7.2f} {row['cumtime_s']:7.2f} "
                            f"{row['calls']:>9,} {row['where']}"
                        )
                    log("  by cumtime:")
                    for row in prof["top_cumtime"]:
                        log(f"    {row['cumtime_s']:7.2f} {row['calls']:>9,} {row['where']}")
                if args.keep:
                    log(f"profiles: {pdir}")
    finally:
        if args.keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if opts.duration is not None:
        sessions_text = f"campaign rounds for {opts.duration:g} s per cell"
    elif opts.sessions:
        sessions_text = f"{opts.sessions:,} sessions per cell"
    else:
        sessions_text = "one campaign over every card per cell (one session per card)"
    doc_opts = {
        "cards": cards,
        "store": opts.store,
        "sessions_text": sessions_text,
        "trigger_interval": opts.trigger_interval,
        "trigger_batch": opts.trigger_batch,
        "body_size": opts.body_size,
        "pg_durable": opts.pg_durable,
    }
    given = list(argv if argv is not None else sys.argv[1:])
    shown = []
    i = 0
    while i < len(given):
        arg = given[i]
        i += 1
        if arg in ("--json", "--docs"):  # where the output goes is not part of the command
            if i < len(given) and (arg == "--docs" or not given[i].startswith("--")):
                i += 1
            continue
        if arg.startswith(("--json=", "--docs=")) or arg == "--keep":
            continue
        shown.append(shlex.quote(arg))
    command = " ".join([".venv/bin/python benchmarks/bench_admin.py", *shown])
    out = sys.stderr if args.json == "-" else sys.stdout
    print(file=out)
    print(f"{'cell':48s} {'done':>6s} {'s/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s}", file=out)
    for c in results:
        lat = c["latency_ms"]
        print(
            f"{label(c):48s} {c['done']:6d} {c['sessions_per_s']:8.1f} "
            f"{lat['p50']:8.0f} {lat['p95']:8.0f}",
            file=out,
        )
    for name, value in ratios(results):
        print(f"  {name}: {value:.2f}", file=out)
    pg2 = find(results, "postgresql", 2)
    if pg2 is not None:
        verdict = "met" if pg2["sessions_per_s"] >= TARGET else "NOT met"
        print(f"target >= {TARGET:g}/s on PostgreSQL x2: {verdict}", file=out)
    print(f"wall time {time.time() - started:.0f} s", file=out)

    if args.json:
        doc = {
            "machine": info,
            "options": doc_opts,
            "cells": results,
            "ratios": dict(ratios(results)),
            "profiles": profiles,
            "command": command,
            "pg_version": pg_version,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "full_matrix": full_matrix and not args.quick,
        }
        text = json.dumps(doc, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    if full_matrix and not args.quick and not args.no_docs:
        splice(
            args.docs,
            markdown(results, info, doc_opts, command, profiles, pg_version, when=None),
        )
        log(f"wrote the admin section of {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
