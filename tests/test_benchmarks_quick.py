"""Every benchmark's --quick mode, run as a smoke test: a benchmark that no longer starts
(an import gone, a port taken, a peer's output changed) fails the suite instead of rotting
until the next full run. Quick runs check that each harness works end to end, not how fast,
and never touch docs/benchmarks.md.

Benchmarks that need a third-party peer skip with the Debian package to install (and fail in
CI, where OPENSCWS_REQUIRE_PEERS=1)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DOCS = ROOT / "docs" / "benchmarks.md"
SERVERS = frozenset({"baseline_server.py", "direct_server.py"})
"""Servers benchmarks/run.py starts and measures: smoke-tested through run.py."""
ADMIN_CARDS = 5


def _check_admin(doc: dict[str, Any], out: str, tmp: Path) -> None:
    cells = {(c["db"], c["servers"]): c for c in doc["cells"]}
    assert set(cells) == {("sqlite", 1)}
    cell = cells["sqlite", 1]
    assert cell["done"] == ADMIN_CARDS
    assert cell["sessions_per_s"] > 0
    assert cell["latency_ms"]["p50"] > 0
    assert cell["loadgen"]["agent_sessions_ok"] == ADMIN_CARDS
    server0 = cell["per_server"]["server0"]
    assert server0["sessions_done"] == ADMIN_CARDS
    assert server0["service_calls"]["open_session"]["calls"] == ADMIN_CARDS
    assert not (tmp / "benchmarks.md").exists()  # a partial, quick run never writes docs


def _check_push(doc: dict[str, Any], out: str, tmp: Path) -> None:
    rows = {r["mode"]: r for r in doc["rows"]}
    # Kamailio's rows only where kamailio is installed (a note says so otherwise)
    inline = "sip-push, PPG in the bench process"
    kamailio = {"sip-push, Kamailio", "sip-push, Kamailio, PPG in the bench process"}
    assert {"sms", "sip-push", inline} <= set(rows) <= {"sms", "sip-push", inline, *kamailio}
    if "sip-push, Kamailio" not in rows:
        assert any("kamailio" in note for note in doc["notes"])
    # the PPG in its own process by default: its CPU read from /proc; none where it is inline
    assert rows["sip-push"]["ppg_cpu_ms_per_trigger"] is not None
    assert rows[inline]["ppg_cpu_ms_per_trigger"] is None
    for row in rows.values():
        assert row["cards"] == 20
        assert row["triggers_per_s"] > 0
        assert row["cpu_ms_per_trigger"] > 0
        assert row["duplicates"] == 0
    assert "| sip-push | 20 |" in out


def _check_pcsc(doc: dict[str, Any], out: str, tmp: Path) -> None:
    rows = doc["rows"]
    assert list(rows) == ["in-process", "pcscd", "pcscd, no quick ACK"]
    for row in rows.values():
        assert row["apdu"]["median_ms"] > 0
        assert row["page"]["median_ms"] > 0
    assert "| pcscd |" in out


def _check_bsm_vs(doc: dict[str, Any], out: str, tmp: Path) -> None:
    sides = doc["databases"]["sqlite"]
    for side in ("baseline", "this"):
        assert sides[side]["requests_per_s"] > 0
        assert sides[side]["server_cpu_ms_per_request"] > 0
        assert len(sides["cells"][side]) == 1
    assert "| sqlite | this tree |" in out


def _check_run(doc: dict[str, Any], out: str, tmp: Path) -> None:
    assert set(doc["results"]) >= {"gateway", "direct", "baseline"}
    assert doc["tls"] is not None  # the full plan's TLS part ran (two gateways at once)
    assert doc["apdu"]["apdu_per_s"] > 0


def _check_apdu(doc: dict[str, Any], out: str, tmp: Path) -> None:
    assert doc["apdu_per_s"] > 0
    assert doc["mb_per_s"] > 0


def _check_tls_ram(doc: dict[str, Any], out: str, tmp: Path) -> None:
    rows = {(r["tls"], r["record_limit"]): r for r in doc["rows"]}
    assert set(rows) == {
        ("tls13", None),
        ("tls13", 1024),
        ("card", None),
        ("card", 1024),
        ("none", None),
    }
    for key in (("tls13", None), ("tls13", 1024), ("card", None), ("card", 1024)):
        assert rows[key]["malloc_held_peak"] > 0
        assert rows[key]["malloc_held_handshake"] > 0
        assert rows[key]["client_largest_record"] > 0
    assert rows[("tls13", 1024)]["largest_response_record"] <= 1024 + 17
    assert rows[("tls13", None)]["largest_response_record"] > 1024
    # 1024 + IV + HMAC-SHA1 + padding
    assert rows[("card", 1024)]["largest_response_record"] <= 1024 + 16 + 20 + 16
    assert rows[("card", 1024)]["cipher"] == "PSK-AES128-CBC-SHA"
    # the card engine keeps no OpenSSL connection: far less per channel than OpenSSL
    assert (
        rows[("card", 1024)]["malloc_held_handshake"]
        < rows[("tls13", 1024)]["malloc_held_handshake"]
    )
    assert rows[("none", None)]["malloc_held_peak"] > 0
    assert "| static |" in out


def _check_acp(doc: dict[str, Any], out: str, tmp: Path) -> None:
    assert list(doc["rows"]) == ["acp off", "no rules", "50 rules"]
    for row in doc["rows"].values():
        assert row["best_per_s"] > 0
        assert row["per_cpu_s"] > 0
    # Every connection to the gateway with rules was admitted by the last rule, and logged.
    assert doc["decisions_logged"] >= 20
    assert "| 50 rules |" in out


def _check_link(doc: dict[str, Any], out: str, tmp: Path) -> None:
    rows = doc["rows"]
    assert list(rows) == ["in-process", "TA1 = 96 (512/32)"]
    assert rows["in-process"]["load_ms"]["median"] > 0
    # The timed link is slower than the in-process one: the page crossed it.
    assert rows["TA1 = 96 (512/32)"]["load_ms"]["median"] > rows["in-process"]["load_ms"]["median"]
    assert rows["in-process"]["resources"] >= 3
    assert "| in-process (`direct`) |" in out


def _check_bsm(doc: dict[str, Any], out: str, tmp: Path) -> None:
    cells = doc["cells"]
    assert [c["db"] for c in cells] == ["sqlite"]
    assert cells[0]["requests"] == 6
    assert cells[0]["requests_per_s"] > 0
    assert cells[0]["server_cpu_ms_per_request"] > 0
    assert not (tmp / "benchmarks.md").exists()  # a quick run never writes the docs


def _check_conns(doc: dict[str, Any], out: str, tmp: Path) -> None:
    text = (tmp / "benchmarks.md").read_text()
    assert "| gateway |" in text
    assert "| direct |" in text
    assert "socket errors and non-2xx answers: 0." in text


def _check_gba(doc: dict[str, Any], out: str, tmp: Path) -> None:
    cells = doc["cells"]
    assert [c["db"] for c in cells] == ["sqlite"]
    assert cells[0]["bootstraps"] == 6
    assert cells[0]["bootstraps_per_s"] > 0
    assert cells[0]["server_cpu_ms_per_bootstrap"] > 0


def _check_dm(doc: dict[str, Any], out: str, tmp: Path) -> None:
    cells = doc["cells"]
    assert [c["db"] for c in cells] == ["sqlite"]
    assert cells[0]["sessions"] == 6
    assert cells[0]["jobs_done"] == 6
    assert cells[0]["sessions_per_s"] > 0
    assert "sessions/s" in out


def _check_cpu(doc: dict[str, Any], out: str, tmp: Path) -> None:
    assert "memory, 1 conn: card+terminal" in out
    assert "1 conn: gateway" in out


def _check_profile(doc: dict[str, Any], out: str, tmp: Path) -> None:
    assert "bulk:" in out
    assert "small:" in out


def _pcsc_peers(
    need_file: Callable[[str, str], Path], peer_unavailable: Callable[[str], None]
) -> None:
    need_file("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd")
    if Path("/run/pcscd/pcscd.comm").exists():
        peer_unavailable("a pcscd is already running (/run/pcscd/pcscd.comm)")
    with socket.socket() as s:  # the vpcd driver's port is fixed in its configuration
        try:
            s.bind(("0.0.0.0", 35963))
        except OSError:
            peer_unavailable("port 35963 (vpcd) is in use")


@dataclass(frozen=True)
class Quick:
    """How the smoke test runs one benchmark: arguments after --quick (JSON and DOCS stand
    for files in the test's directory), the peer programs it needs, and what it checks."""

    args: tuple[str, ...] = ()
    tools: tuple[tuple[str, str], ...] = ()
    """(program, Debian package)."""
    peers: Callable[[Callable[[str, str], Path], Callable[[str], None]], None] | None = None
    """Further conditions: (need_file, peer_unavailable) -> None, skipping when unmet."""
    check: Callable[[dict[str, Any], str, Path], None] | None = None
    timeout: float = 300.0


QUICK: dict[str, Quick] = {
    "bench_acp.py": Quick(("--json", "JSON"), check=_check_acp, timeout=180),
    "bench_admin.py": Quick(
        (
            *("--cards", str(ADMIN_CARDS), "--repeat", "1", "--db", "sqlite", "--servers", "1"),
            *("--json", "JSON", "--docs", "DOCS"),
        ),
        check=_check_admin,
    ),
    "bench_apdu.py": Quick(("--json", "JSON"), check=_check_apdu),
    "bench_bsm.py": Quick(
        ("--requests", "6", "--clients", "2", "--json", "JSON", "--docs", "DOCS"),
        check=_check_bsm,
    ),
    "bench_bsm_vs.py": Quick(
        (
            *("--baseline", str(ROOT), "--requests", "6", "--clients", "2"),
            *("--json", "JSON", "--docs", "DOCS"),
        ),
        check=_check_bsm_vs,
    ),
    "bench_conns.py": Quick(("--docs", "DOCS"), tools=(("wrk", "wrk"),), check=_check_conns),
    "bench_dm.py": Quick(
        ("--devices", "6", "--clients", "2", "--json", "JSON", "--docs", "DOCS"),
        check=_check_dm,
    ),
    "bench_gba.py": Quick(
        ("--bootstraps", "6", "--clients", "2", "--json", "JSON", "--docs", "DOCS"),
        check=_check_gba,
    ),
    "bench_link.py": Quick(
        ("--json", "JSON"), tools=(("chromium", "chromium"),), check=_check_link, timeout=240
    ),
    "bench_pcsc.py": Quick(
        ("--json", "JSON"), tools=(("pcscd", "pcscd"),), peers=_pcsc_peers, check=_check_pcsc
    ),
    "bench_push.py": Quick(("--json", "JSON"), check=_check_push, timeout=240),
    "bench_tls.py": Quick(("--json", "JSON"), tools=(("openssl", "openssl"),), timeout=400),
    "bench_tls_ram.py": Quick(("--json", "JSON"), check=_check_tls_ram),
    # Its quick run (3 bursts of 5 s, a campaign in each) is an end-to-end test too:
    # exit status 0 only if every campaign finished and no client request failed.
    "burst_admin.py": Quick(("--json", "JSON"), timeout=240),
    "cpu_per_request.py": Quick(tools=(("wrk", "wrk"),), check=_check_cpu),
    "profile_gateway.py": Quick(check=_check_profile),
    "run.py": Quick(
        ("--json", "JSON"),
        tools=(("openssl", "openssl"), ("wrk", "wrk")),
        check=_check_run,
        timeout=600,
    ),
}


def _entry_points() -> list[str]:
    return sorted(
        p.name for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name not in SERVERS
    )


def test_every_benchmark_has_a_quick_run() -> None:
    """A new benchmark gets an entry above (and so a --quick mode), or this fails."""
    assert _entry_points() == sorted(QUICK)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.peer] if q.tools or q.peers else [])
        for name, q in sorted(QUICK.items())
    ],
)
def test_quick_run(
    name: str,
    tmp_path: Path,
    need_tool: Callable[[str, str], str],
    need_file: Callable[[str, str], Path],
    peer_unavailable: Callable[[str], None],
) -> None:
    quick = QUICK[name]
    for program, package in quick.tools:
        need_tool(program, package)
    if quick.peers is not None:
        quick.peers(need_file, peer_unavailable)
    files = {"JSON": str(tmp_path / "out.json"), "DOCS": str(tmp_path / "benchmarks.md")}
    argv = [sys.executable, str(BENCH / name), "--quick"]
    argv += [files.get(a, a) for a in quick.args]
    before = hashlib.sha256(DOCS.read_bytes()).hexdigest()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=quick.timeout, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert hashlib.sha256(DOCS.read_bytes()).hexdigest() == before, "a quick run wrote the docs"
    doc = json.loads(Path(files["JSON"]).read_text()) if "JSON" in quick.args else {}
    if quick.check is not None:
        quick.check(doc, done.stdout, tmp_path)
