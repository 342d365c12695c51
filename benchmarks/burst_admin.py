"""Remote administration under browsing load: a burst of HTTP and HTTPS keep-alive clients
through the gateway while an admin campaign runs, all in one process (card, gateway, admin
server), as `openscws up` runs them.

Each run draws a burst shape (clients per port, think time, ramp-up), starts the burst, and
during it creates a campaign. It reports every client request as answered (2xx), refused (a
clean 503 with Retry-After), retried (sent on a keep-alive connection the card had just
closed while idle, and answered on a new one, as RFC 9112 §9.3.1 lets a client do) or failed
(anything else: a reset, a truncated response, no answer), and when the campaign finished,
counted from the burst's end.

    .venv/bin/python benchmarks/burst_admin.py [--runs 20] [--seconds 30]
        [--http 200] [--https 50] [--seed 1] [--quick]

The test suite runs a few short bursts (tests/e2e/test_e2e_burst_admin.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from openscws.aio.freeport import free_port
from openscws.aio.stack import Stack, start_stack, under
from openscws.config import Settings

PATHS = ["/", "/index.html", "/style.css", "/img/card.png"]


@dataclass(frozen=True)
class Shape:
    http: int
    https: int
    seconds: float
    think: float
    """Longest pause between a response and the next request (uniform from 0)."""
    ramp: float
    """Clients start spread over this many seconds."""
    campaign_at: float
    """Fraction of the burst after which the campaign is created."""

    @classmethod
    def draw(cls, rng: random.Random, http: int, https: int, seconds: float) -> Shape:
        return cls(
            http=rng.randint(max(1, http // 2), http),
            https=rng.randint(max(1, https // 2), https),
            seconds=seconds,
            think=rng.choice([0.0, 0.02, 0.1, 0.3, 1.0]),
            ramp=rng.choice([0.0, 0.5, seconds / 3]),
            campaign_at=rng.uniform(0.1, 0.6),
        )


@dataclass
class Tally:
    ok: int = 0
    refused: int = 0
    retried: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failed += 1
        if len(self.failures) < 20:
            self.failures.append(why)


@dataclass
class Outcome:
    shape: Shape
    http: Tally
    https: Tally
    campaign: dict[str, int]
    finished_after_burst: float | None
    """Seconds from the burst's end to the campaign's end (negative: during the burst);
    None if it had not finished 10 s after the burst."""


def settings_for(root: Path) -> Settings:
    s = under(Settings(), root)
    return replace(
        s,
        gateway=replace(
            s.gateway,
            port_map={3516: free_port(), 4116: free_port()},
            sms_port=free_port(),
            poll_interval=0.2,
        ),
        admin=replace(s.admin, port=0, trigger_interval=0.1, retry_base=0.2, retry_max=1.0),
    )


class _Gone(Exception):
    """The connection ended before any byte of the response."""


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise _Gone from None
        raise
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


async def _client(
    port: int,
    tls: ssl.SSLContext | None,
    shape: Shape,
    end: float,
    rng: random.Random,
    tally: Tally,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, shape.ramp))
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while loop.time() < end:
        reused = conn is not None
        if conn is not None and conn[0].at_eof():
            conn[1].close()
            conn, reused = None, False
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(
                        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
                    ),
                    15,
                )
            reader, writer = conn
            path = rng.choice(PATHS)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: card\r\n\r\n".encode())
            status, headers = await asyncio.wait_for(_response(reader), 20)
        except _Gone:
            if conn is not None:
                conn[1].close()
            conn = None
            if reused:
                tally.retried += 1  # closed while idle, as the request left: send it again
                continue
            tally.fail("connection closed before any answer")
            continue
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError, ValueError) as e:
            tally.fail(f"{type(e).__name__}: {e}")
            if conn is not None:
                conn[1].close()
            conn = None
            await asyncio.sleep(0.1)
            continue
        if 200 <= status < 300 or status == 304:
            tally.ok += 1
        elif status == 503 and "retry-after" in headers and headers.get("connection") == "close":
            tally.refused += 1
        else:
            tally.fail(f"status {status}")
        if headers.get("connection") == "close":
            conn[1].close()
            conn = None
            if status == 503:
                await asyncio.sleep(0.2)
        if shape.think:
            await asyncio.sleep(rng.uniform(0, shape.think))
    if conn is not None:
        conn[1].close()


async def _campaign(stack: Stack, n: int) -> int:
    assert stack.admin is not None
    service = stack.admin.service
    service.put_content(f"/burst/{n}.txt", f"campaign {n}".encode(), "text/plain")
    campaign = service.create_campaign(f"burst {n}")
    stack.admin.server.wake()
    return campaign.id


def _progress(stack: Stack, campaign: int) -> dict[str, int]:
    assert stack.admin is not None
    return dict(stack.admin.service.campaign_progress(campaign))


async def burst(stack: Stack, shape: Shape, seed: int, n: int = 0) -> Outcome:
    """One burst of `shape` against a running stack, with one campaign during it."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # the load, not the certificate, is tested here
    http, https = Tally(), Tally()
    start = loop.time()
    end = start + shape.seconds
    gw = stack.gateway
    tasks = [
        asyncio.create_task(
            _client(gw.local_port(3516), None, shape, end, random.Random(rng.random()), http)
        )
        for _ in range(shape.http)
    ] + [
        asyncio.create_task(
            _client(gw.local_port(4116), tls, shape, end, random.Random(rng.random()), https)
        )
        for _ in range(shape.https)
    ]
    await asyncio.sleep(shape.seconds * shape.campaign_at)
    campaign = await _campaign(stack, n)
    finished: float | None = None
    while True:
        progress = _progress(stack, campaign)
        if sum(progress.values()) and progress.get("done", 0) + progress.get("failed", 0) == sum(
            progress.values()
        ):
            finished = loop.time() - end
            break
        if loop.time() > end + 10:
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return Outcome(shape, http, https, _progress(stack, campaign), finished)


async def runs(
    count: int, seconds: float, http: int, https: int, seed: int, log: object = print
) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="openscws-burst-") as tmp:
        settings = settings_for(Path(tmp))
        stack = await start_stack(settings, demo=True, api=False)
        try:
            for i in range(count):
                shape = Shape.draw(rng, http, https, seconds)
                outcome = await burst(stack, shape, rng.randrange(1 << 30), i)
                outcomes.append(outcome)
                if callable(log):
                    log(_line(i, outcome))
        finally:
            await stack.stop()
    return outcomes


def _line(i: int, o: Outcome) -> str:
    done = "not finished" if o.finished_after_burst is None else f"{o.finished_after_burst:+.1f} s"
    return (
        f"run {i + 1}: {o.shape.http} HTTP + {o.shape.https} HTTPS clients, think "
        f"{o.shape.think} s: HTTP {o.http.ok} ok / {o.http.refused} 503 / {o.http.retried} "
        f"retried / {o.http.failed} failed; HTTPS {o.https.ok} ok / {o.https.refused} refused / "
        f"{o.https.retried} retried / {o.https.failed} failed; campaign {o.campaign} {done}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--http", type=int, default=200)
    p.add_argument("--https", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="3 runs of 5 s, 40 + 10 clients")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.seconds, args.http, args.https = 3, 5.0, 40, 10
    t0 = time.monotonic()
    outcomes = asyncio.run(runs(args.runs, args.seconds, args.http, args.https, args.seed))
    finished = [o for o in outcomes if o.finished_after_burst is not None]
    failed = sum(o.http.failed + o.https.failed for o in outcomes)
    print(
        f"{len(finished)}/{len(outcomes)} campaigns finished within 10 s of their burst's end; "
        f"{failed} client requests failed; {time.monotonic() - t0:.0f} s in all"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0 if len(finished) == len(outcomes) and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
