"""cProfile of the gateway path: the card and the BIP gateway built in this process exactly as
`openscws up` builds them (CardImage -> build_card -> InProcessLink -> Gateway), serving a 1 MB
resource (and a 1 KB page) to a load client in a separate process, so the profile holds the
server side only.

    .venv/bin/python benchmarks/profile_gateway.py [--seconds 4] [--small-seconds 2]
        [--out benchmarks/profile_gateway.txt]

Writes the top 30 entries by cumulative and by own time (tottime) for the bulk phase (1 MB
downloads on one connection) and, if --small-seconds > 0, for a 1 KB request phase (4
keep-alive connections), plus how many bytes, requests and APDUs went through.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

from openscws.aio.gateway import Gateway, GatewayConfig  # noqa: E402
from openscws.aio.links import InProcessLink  # noqa: E402
from openscws.config import CardSettings  # noqa: E402
from openscws.scws.card import build_card  # noqa: E402
from openscws.store.cardimage import CardImage  # noqa: E402
from openscws.terminal.engine import TerminalEngine  # noqa: E402

CLIENT = r"""
import json, sys
sys.path.insert(0, {here!r})
import run as bench
port, mode, seconds, size = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
if mode == "bulk":
    expected = open({bulk!r}, "rb").read()
    r = bench.bulk_download(port, bench.BULK_PATH, expected, seconds, 10**9, check_body=True)
else:
    r = bench.py_requests(port, bench.PAGE_PATH, 4, seconds)
print(json.dumps(r))
"""


async def serve_phase(
    image: CardImage, port: int, client_argv: list[str], profiler: cProfile.Profile
) -> tuple[dict[str, float], int]:
    settings = CardSettings(ports=(3516,))
    card = build_card(image, settings, image.meta.iccid)
    engine = TerminalEngine()
    gw = Gateway(InProcessLink(card), engine, GatewayConfig(port_map={3516: port}))
    await gw.start()
    try:
        await gw.wait_listening()
        # Warm up outside the profile: channels, caches.
        warm = await asyncio.create_subprocess_exec(
            *client_argv[:-2], "0", client_argv[-1], stdout=asyncio.subprocess.PIPE
        )
        await warm.communicate()
        before = gw.apdu_count
        proc = await asyncio.create_subprocess_exec(*client_argv, stdout=asyncio.subprocess.PIPE)
        profiler.enable()
        out, _ = await proc.communicate()
        profiler.disable()
        if proc.returncode != 0:
            raise RuntimeError("the load client failed")
        return json.loads(out), gw.apdu_count - before
    finally:
        await gw.stop()


def report(title: str, profiler: cProfile.Profile, facts: str, top: int) -> str:
    out = io.StringIO()
    out.write(f"{'=' * 100}\n{title}\n{facts}\n{'=' * 100}\n")
    for key in ("cumulative", "tottime"):
        out.write(f"\n--- top {top} by {key} ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(key).print_stats(top)
    # Paths relative to src/ (several modules are called card.py) and to the stdlib.
    text = out.getvalue().replace(str(ROOT / "src") + "/", "")
    text = text.replace(str(Path(asyncio.__file__).parent.parent) + "/", "")
    return text.replace(sys.prefix + "/", "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=4.0, help="bulk phase length")
    p.add_argument("--small-seconds", type=float, default=2.0, help="1 KB phase (0: skip)")
    p.add_argument("--out", type=Path, default=HERE / "profile_gateway.txt")
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run: 0.5 s phases, the report not written",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.small_seconds = 0.5, 0.5
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="openscws-prof-") as tmpdir:
        tmp = Path(tmpdir)
        bench.make_files(tmp / "files")
        bench.make_image(tmp / "image", tmp / "files")
        image = CardImage.open(tmp / "image")
        code = CLIENT.format(here=str(HERE), bulk=str(tmp / "files" / "big.bin"))
        phases = [("bulk", args.seconds, "1 MB downloads, one keep-alive connection")]
        if args.small_seconds > 0:
            phases.append(("small", args.small_seconds, "1 KB page, 4 keep-alive connections"))
        for mode, seconds, what in phases:
            port = bench.free_port()
            argv_client = [sys.executable, "-c", code, str(port), mode, str(seconds), "0"]
            profiler = cProfile.Profile()
            t0 = time.perf_counter()
            result, apdus = asyncio.run(serve_phase(image, port, argv_client, profiler))
            wall = time.perf_counter() - t0
            if mode == "bulk":
                facts = (
                    f"{result['downloads']} x 1 MiB in {result['seconds']:.2f} s = "
                    f"{result['mbps']:.2f} MB/s under cProfile; {apdus} APDUs "
                    f"({apdus / result['seconds']:,.0f}/s)"
                )
            else:
                facts = (
                    f"{result['requests']} requests in {result['seconds']:.2f} s = "
                    f"{result['rps']:,.0f} req/s under cProfile; {apdus} APDUs "
                    f"({apdus / max(result['requests'], 1):.1f} per request)"
                )
            facts += f"; wall {wall:.1f} s"
            print(f"{mode}: {facts}", flush=True)
            sections.append(report(f"gateway path, {what}", profiler, facts, args.top))
        image.close()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = (
        "cProfile of the gateway path (card + BIP gateway in one process, load client in "
        "another).\n"
        "Command: .venv/bin/python benchmarks/profile_gateway.py\n"
        f"Python {sys.version.split()[0]}; generated {stamp}\n\n"
    )
    if args.quick:
        print(f"quick run: {args.out} left as it was")
        return 0
    args.out.write_text(header + "\n".join(sections))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
