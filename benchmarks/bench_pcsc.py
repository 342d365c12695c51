"""The card through PC/SC: APDU round trips and whole pages with every APDU crossing pcscd,
next to the in-process card link (the baseline, in the same run).

    .venv/bin/python benchmarks/bench_pcsc.py [--apdus 300] [--pages 30] [--json FILE]
        [--no-docs]

Needs Debian's pcscd and vsmartcard-vpcd, and no other pcscd running (it starts its own, in
the foreground, with the vpcd reader on 127.0.0.1:35963). Rows:

  in-process     `VirtualUicc.transmit` in this process (the gateway's default link)
  pcscd          `openscws card --vpcd` into pcscd's vpcd reader, APDUs sent with
                 `openscws.aio.pcsc.PcscCard` (libpcsclite), the card re-arming TCP_QUICKACK
  pcscd, no ack  the same with OPENSCWS_VPCD_QUICKACK=0: vpcd writes each frame's length and
                 APDU apart with Nagle on, so the APDU waits for the card's delayed ACK

APDU: STATUS (80 F2 00 0C 00), one at a time, median and p95 of the round trip. Page: GET / of
the demo site (2,255 bytes, about 30 APDUs) through `openscws gateway --pcsc`, one keep-alive
connection, median; in-process: through `openscws up --no-admin`.

Writes the "Card links" section of docs/benchmarks.md (between its markers) unless --no-docs.
"""

from __future__ import annotations

import argparse
import http.client
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import _docs  # noqa: E402
from run import child_env, free_port, up_config, wait_connectable  # noqa: E402

from openscws.aio.pcsc import PcscCard, PcscError, wait_for_card  # noqa: E402
from openscws.aio.vicc import QUICK_ACK_ENV  # noqa: E402
from openscws.uicc.card import CardIdentity, VirtualUicc  # noqa: E402

VPCD_PORT = 35963
STATUS = bytes.fromhex("80F2000C00")
BEGIN = _docs.PCSC_BEGIN
END = _docs.PCSC_END


def openscws(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "openscws", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def apdu_times(transmit: Any, count: int) -> list[float]:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        answer = transmit(STATUS)
        times.append(time.perf_counter() - t)
        assert answer[-2:] in (b"\x90\x00",) or answer[0] == 0x91, answer.hex()
    return times


def page_times(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for _ in range(count + 1):  # the first one opens the connection: not counted
            t = time.perf_counter()
            conn.request("GET", "/")
            body = conn.getresponse().read()
            times.append(time.perf_counter() - t)
            assert len(body) > 1000
    finally:
        conn.close()
    return times[1:]


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(len(ordered) * 0.95) - 1],
    }


def ready_line(proc_log: Path, timeout: float) -> int:
    """The local port of 3516 from an `openscws` process's "SCWS ready" line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc_log.read_text(errors="replace").splitlines():
            if line.startswith("SCWS ready: http://"):
                return int(line.rsplit(":", 1)[1].strip("/"))
        time.sleep(0.1)
    raise SystemExit(f"no 'SCWS ready' in {proc_log}:\n{proc_log.read_text()}")


def run(apdus: int, pages: int, work: Path) -> dict[str, Any]:
    env = {**child_env(), "XDG_DATA_HOME": str(work / "xdg")}
    # Free ports for everything besides the card's: SMS entry point, admin server, its API.
    cfg = str(up_config(work / "pcsc.toml", work))
    card_dir = str(work / "card")
    subprocess.run(
        [sys.executable, "-m", "openscws", "init", "--data-dir", card_dir, "-q"],
        env=env,
        check=True,
        capture_output=True,
    )
    rows: dict[str, Any] = {}

    # The baseline: the card in this process.
    card = VirtualUicc(CardIdentity("8988211000000000003"))
    card.power_on()
    rows["in-process"] = {"apdu": summary(apdu_times(lambda a: card.transmit(a, 0.0), apdus))}
    http_port = free_port()
    up = openscws(
        "up",
        "-c",
        cfg,
        "--no-admin",
        "--data-dir",
        card_dir,
        "--port-map",
        f"3516={http_port}",
        "--port-map",
        f"4116={free_port()}",
        env=env,
        log=work / "up.log",
    )
    try:
        wait_connectable(http_port, 60)
        rows["in-process"]["page"] = summary(page_times(http_port, pages))
    finally:
        stop(up)

    pcscd = subprocess.Popen(
        [shutil.which("pcscd") or "pcscd", "--foreground"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_connectable(VPCD_PORT, 15)
        for name, quick in (("pcscd", "1"), ("pcscd, no quick ACK", "0")):
            card_env = {**env, QUICK_ACK_ENV: quick}
            vicc = openscws(
                "card",
                "--data-dir",
                card_dir,
                "--vpcd",
                f"127.0.0.1:{VPCD_PORT}",
                env=card_env,
                log=work / f"card-{quick}.log",
            )
            try:
                held: PcscCard = wait_for_card("Virtual PCD", timeout=30)
                held.reset()
                row = {"apdu": summary(apdu_times(held.transmit, apdus))}
                held.close()
                http_port = free_port()
                gateway = openscws(
                    "gateway",
                    "-c",
                    cfg,
                    "--pcsc",
                    "Virtual PCD",
                    "--port-map",
                    f"3516={http_port}",
                    "--port-map",
                    f"4116={free_port()}",
                    env=env,
                    log=work / f"gateway-{quick}.log",
                )
                try:
                    ready_line(work / f"gateway-{quick}.log", 60)
                    row["page"] = summary(page_times(http_port, pages))
                finally:
                    stop(gateway)
                rows[name] = row
            finally:
                stop(vicc)
                time.sleep(0.5)  # pcscd notices the card is gone
    finally:
        stop(pcscd)
    return {
        "rows": rows,
        "apdus": apdus,
        "pages": pages,
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "run": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    base = rows["in-process"]
    lines = [
        "## Card links: in-process and through pcscd",
        "",
        "The same card reached in-process (the gateway's default) and through PC/SC, every",
        "APDU crossing pcscd and its vpcd driver (`openscws gateway --pcsc`; docs/cards.md).",
        "Generated by `benchmarks/bench_pcsc.py`:",
        "",
        "```sh",
        ".venv/bin/python benchmarks/bench_pcsc.py",
        "```",
        "",
        f"- {result['machine']}; run {result['run']}; STATUS APDUs: {result['apdus']} one at",
        f"  a time; pages: GET / (2,255 bytes) {result['pages']} times on one keep-alive",
        "  connection; in-process pages through `openscws up --no-admin`.",
        "- pcscd, no quick ACK: the card process with OPENSCWS_VPCD_QUICKACK=0, as it was",
        "  before it re-armed TCP_QUICKACK after each read.",
        "",
        "| card link | APDU median ms | APDU p95 ms | page median ms | APDU vs in-process | "
        "page vs in-process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['apdu']['median_ms']:.3f} | {row['apdu']['p95_ms']:.3f} | "
            f"{row['page']['median_ms']:.1f} | "
            f"{row['apdu']['median_ms'] / base['apdu']['median_ms']:.0f}x | "
            f"{row['page']['median_ms'] / base['page']['median_ms']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--apdus", type=int, default=300)
    p.add_argument("--pages", type=int, default=30)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--docs", type=Path, help="the page to write (default docs/benchmarks.md)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run: 5 APDUs, 2 pages, no docs unless --docs",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.apdus, args.pages = 5, 2
        args.no_docs = args.no_docs or args.docs is None
    args.docs = args.docs or ROOT / "docs" / "benchmarks.md"
    if (
        shutil.which("pcscd") is None
        or not Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists()
    ):
        print("needs Debian packages pcscd and vsmartcard-vpcd", file=sys.stderr)
        return 2
    if Path("/run/pcscd/pcscd.comm").exists():
        print("a pcscd is already running: stop it first (this starts its own)", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pcsc-") as tmp:
            result = run(args.apdus, args.pages, Path(tmp))
    except PcscError as exc:
        print(f"PC/SC: {exc}", file=sys.stderr)
        return 1
    text = markdown(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_docs:
        _docs.splice(args.docs, BEGIN, END, text)
        print(f"wrote the card-link section of {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
