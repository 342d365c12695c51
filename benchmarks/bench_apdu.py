"""Raw APDU throughput of the card <-> terminal pair, in memory: no sockets, no event loop.

A `VirtualUicc` (built exactly as `openscws up` builds it, over a MemoryStore) and a
`TerminalEngine` are driven by a bare loop that does what the gateway's pump does:
`engine.next_apdu` -> `card.transmit` -> `engine.receive_response`, carrying out `Write`
actions into an in-memory "client". The client downloads a resource repeatedly on one
keep-alive connection; every byte of it crosses the card as SEND DATA proactive commands
(FETCH + TERMINAL RESPONSE, at most 240 B each).

This bounds the gateway's bulk throughput: MB/s <= SEND DATA/s x 240 B.

    .venv/bin/python benchmarks/bench_apdu.py [--seconds 3] [--size 1048576] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from openscws.apdu.command import Ins
from openscws.bip.terminal import Listen, Write
from openscws.cat.commands import CommandType
from openscws.config import CardSettings
from openscws.scws.card import build_card
from openscws.scws.model import MemoryStore, Resource
from openscws.terminal.engine import TerminalEngine

PORT = 3516
ICCID = "8988211000000000003"


@dataclass
class Result:
    seconds: float
    downloads: int
    body_bytes: int
    apdus: int
    send_data: int
    card_s: float = 0.0  # time inside card.transmit (split mode only)
    terminal_s: float = 0.0  # time inside the engine (split mode only)

    @property
    def apdu_per_s(self) -> float:
        return self.apdus / self.seconds

    @property
    def send_data_per_s(self) -> float:
        return self.send_data / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.body_bytes / self.seconds / 1e6


def _command_type(fetched: bytes) -> int:
    """Type of a fetched proactive command: D0 L [81|01] 03 number TYPE qualifier ..."""
    start = 3 if fetched[1] == 0x81 else 2
    return fetched[start + 3]


class Pair:
    """A card and a terminal engine joined by a bare loop, and one in-memory client."""

    def __init__(self, body: bytes) -> None:
        store = MemoryStore()
        store.put(Resource("/big.bin", body, "application/octet-stream", last_modified=1))
        self.size = len(body)
        self.card = build_card(store, CardSettings(ports=(3516,)), ICCID)
        self.engine = TerminalEngine()
        self.card.power_on()
        self.received = bytearray()
        self.apdus = 0
        self.send_data = 0
        self.card_s = 0.0
        self.terminal_s = 0.0
        self.run_until(lambda: False)  # profile, event list, OPEN CHANNELs: settle
        channel = self.engine.client_connected(PORT)
        if channel is None:
            raise RuntimeError("the card opened no channel")
        self.channel = channel

    def run_until(self, done, *, split: bool = False) -> None:  # type: ignore[no-untyped-def]
        engine, card = self.engine, self.card
        actions = engine.channels.actions
        received = self.received
        now = time.time()
        pc = time.perf_counter
        while not done():
            apdu = engine.next_apdu(now)
            if apdu is None:
                return
            if split:
                t0 = pc()
                response = card.transmit(apdu, now)
                t1 = pc()
                engine.receive_response(response, now)
                self.card_s += t1 - t0
                self.terminal_s += pc() - t1
            else:
                response = card.transmit(apdu, now)
                engine.receive_response(response, now)
            self.apdus += 1
            if apdu[1] == Ins.FETCH and _command_type(response) == CommandType.SEND_DATA:
                self.send_data += 1
            if actions:
                for action in engine.pop_actions():
                    if isinstance(action, Write):
                        received += action.data
                    elif isinstance(action, Listen):
                        engine.listen_result(action.port, True)

    def download(self, *, split: bool = False) -> None:
        self.received.clear()
        self.engine.client_data(
            self.channel, b"GET /big.bin HTTP/1.1\r\nHost: card\r\nUser-Agent: bench\r\n\r\n"
        )
        state: dict[str, int] = {"need": -1}

        def done() -> bool:
            if state["need"] < 0:
                end = self.received.find(b"\r\n\r\n")
                if end < 0:
                    return False
                head = bytes(self.received[:end]).lower()
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                state["need"] = end + 4 + length
            return len(self.received) >= state["need"]

        self.run_until(done, split=split)
        if not done():
            raise RuntimeError("the card went idle before the response was complete")
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or len(body) != self.size:
            raise RuntimeError(f"bad response: {head[:60]!r}, {len(body)} B")


def measure(body: bytes, seconds: float, *, split: bool = False) -> Result:
    pair = Pair(body)
    pair.download(split=split)  # warm-up
    pair.apdus = pair.send_data = 0
    pair.card_s = pair.terminal_s = 0.0
    downloads = 0
    start = time.perf_counter()
    while True:
        pair.download(split=split)
        downloads += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return Result(
        elapsed,
        downloads,
        downloads * len(body),
        pair.apdus,
        pair.send_data,
        pair.card_s,
        pair.terminal_s,
    )


def run(seconds: float = 3.0, size: int = 1 << 20, repeat: int = 3) -> dict[str, float]:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    results = [measure(body, seconds / repeat) for _ in range(repeat)]
    best = sorted(results, key=lambda r: r.send_data_per_s)[len(results) // 2]  # median
    split = measure(body, min(1.0, seconds / repeat), split=True)
    busy = split.card_s + split.terminal_s
    return {
        "apdu_per_s": best.apdu_per_s,
        "send_data_per_s": best.send_data_per_s,
        "apdus_per_send_data": best.apdus / max(best.send_data, 1),
        "mb_per_s": best.mb_per_s,
        "bound_mb_per_s": best.send_data_per_s * 240 / 1e6,
        "send_data_per_s_all": statistics.median(r.send_data_per_s for r in results),
        "card_share": split.card_s / busy if busy else 0.0,
        "card_us_per_apdu": split.card_s / max(split.apdus, 1) * 1e6,
        "terminal_us_per_apdu": split.terminal_s / max(split.apdus, 1) * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time (split in 3)")
    p.add_argument("--size", type=int, default=1 << 20, help="resource size in bytes")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--quick", action="store_true", help="a short smoke run (0.3 s, 64 KiB)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.size = 0.3, 64 * 1024
    r = run(args.seconds, args.size)
    print(
        f"in-memory card<->terminal, {args.size} B downloads on one connection (median of 3):\n"
        f"  APDUs/s             {r['apdu_per_s']:>10,.0f}\n"
        f"  SEND DATA/s         {r['send_data_per_s']:>10,.0f}"
        f"   ({r['apdus_per_send_data']:.2f} APDUs per SEND DATA: FETCH + TERMINAL RESPONSE)\n"
        f"  body MB/s           {r['mb_per_s']:>10.2f}"
        f"   (bound SEND DATA/s x 240 B = {r['bound_mb_per_s']:.2f})\n"
        f"  per APDU: card {r['card_us_per_apdu']:.1f} us, terminal engine "
        f"{r['terminal_us_per_apdu']:.1f} us ({r['card_share']:.0%} card)"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
