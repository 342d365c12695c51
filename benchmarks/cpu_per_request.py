"""CPU time per 1 KB request: steadier than requests/s on a shared machine.

Two measures, both of the server side only:

  memory   the card and the terminal engine joined by a bare loop (no sockets, no event loop),
           `--conns` keep-alive connections served together, each sending its next request
           once its response is complete; process CPU time per request, minimum over batches.
           With --direct, the HTTP engine alone (HttpServerConnection, no BIP) the same way.
  server   the gateway built in this process as `openscws up` builds it (CardImage ->
           build_card -> InProcessLink -> Gateway), and the direct engine
           (benchmarks/direct_server.py's shell) in this process too, each driven by wrk
           (`wrk -t1 -cN`, another process) in turn; CPU time of this process per request
           (user + system, from getrusage, so the load generator is not counted).

    .venv/bin/python benchmarks/cpu_per_request.py memory [--conns 1] [--batches 15]
    .venv/bin/python benchmarks/cpu_per_request.py server [--conns 1 4] [--rounds 3]
        [--seconds 2]

The server ratio direct/gateway of CPU per request is what bounds the req/s ratio of
`benchmarks/run.py` when both servers are CPU-bound on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402

from openscws.aio.direct import StreamProtocol  # noqa: E402
from openscws.aio.gateway import Gateway, GatewayConfig  # noqa: E402
from openscws.aio.links import InProcessLink  # noqa: E402
from openscws.bip.card import BipServerApp  # noqa: E402
from openscws.bip.terminal import Listen, Write  # noqa: E402
from openscws.config import CardSettings  # noqa: E402
from openscws.http.connection import HttpServerConnection  # noqa: E402
from openscws.http.limits import RamBudget  # noqa: E402
from openscws.scws.card import build_card, build_site  # noqa: E402
from openscws.scws.model import MemoryStore, Resource  # noqa: E402
from openscws.store.cardimage import CardImage  # noqa: E402
from openscws.terminal.engine import TerminalEngine  # noqa: E402

PORT = 3516
REQUEST = bench.request_bytes(bench.PAGE_PATH)
CARD = CardSettings(ports=(PORT, 3517))
"""In memory: `openscws up` serves HTTPS on 4116 too; an idle second port stands in for it, so
the card schedules as many channels (7 with four clients)."""


def _page() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        page, _ = bench.make_files(Path(tmp) / "files")
    return page


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- in memory ------------------------------------------------------------------------------------


class _Client:
    __slots__ = ("buf", "need")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = -1

    def feed(self, data: bytes) -> bool:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.need = end + 4 + bench._content_length(bytes(self.buf[:end]))
        if len(self.buf) < self.need:
            return False
        self.buf.clear()
        self.need = -1
        return True


class _Canned:
    """A StreamHandler answering every request with the same bytes: the BIP cost alone."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.out = b""
        self.should_close = False
        self.idle = True

    def receive_data(self, data: bytes, now: float) -> None:
        if data.endswith(b"\r\n\r\n"):
            self.out = self.response

    def data_to_send(self, limit: int | None = None) -> bytes:
        out, self.out = self.out, b""
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    @property
    def wants_input(self) -> bool:
        return True

    def shutdown(self) -> None:
        self.should_close = True

    def close_after_response(self) -> None:
        # Answers go out whole at once, so the canned handler is always between requests.
        self.should_close = True

    def close(self) -> None:
        pass


def _canned_response() -> bytes:
    store = MemoryStore()
    store.put(Resource(bench.PAGE_PATH, _page(), "text/html", last_modified=1))
    settings = CardSettings(ports=(PORT,))
    site = build_site(store, bench.ICCID)
    handler = HttpServerConnection(site, settings.limits, RamBudget.for_limits(settings.limits))
    handler.receive_data(REQUEST, time.time())
    return handler.data_to_send()


def memory_bip(conns: int, requests: int, batches: int, *, canned: bool = False) -> list[float]:
    """CPU µs per request, one figure per batch, card + terminal engine in a bare loop.
    `canned`: the HTTP engine replaced by a handler that answers with the same bytes."""
    store = MemoryStore()
    store.put(Resource(bench.PAGE_PATH, _page(), "text/html", last_modified=1))
    card = build_card(store, CARD, bench.ICCID)
    if canned:
        response = _canned_response()
        app = card.toolkit.apps[0]
        assert isinstance(app, BipServerApp)
        app.factories[PORT] = lambda channel, now: _Canned(response)
    engine = TerminalEngine()
    card.power_on()
    actions = engine.channels.actions
    clients: dict[int, _Client] = {}

    def loop(limit: int) -> int:
        """Runs until `limit` responses are complete (limit 0: until the card is idle)."""
        done = 0
        now = time.time()
        while done < limit or not limit:
            apdu = engine.next_apdu(now)
            if apdu is None:
                if limit:
                    raise RuntimeError("the card went idle")
                return 0
            engine.receive_response(card.transmit(apdu, now), now)
            if actions:
                for action in engine.pop_actions():
                    if isinstance(action, Listen):
                        engine.listen_result(action.port, True)
                    elif isinstance(action, Write) and clients[action.channel].feed(action.data):
                        done += 1
                        engine.client_data(action.channel, REQUEST)
            now = time.time()
        return done

    loop(0)  # profile, event list, OPEN CHANNELs
    for _ in range(conns):
        channel = engine.client_connected(PORT)
        if channel is None:
            raise RuntimeError("no channel listening")
        clients[channel] = _Client()
        loop(0)  # the card opens more channels on demand
    for channel in clients:
        engine.client_data(channel, REQUEST)
    loop(requests)  # warm-up
    out = []
    for _ in range(batches):
        t0 = time.process_time()
        loop(requests)
        out.append((time.process_time() - t0) / requests * 1e6)
    return out


def memory_direct(conns: int, requests: int, batches: int) -> list[float]:
    """CPU µs per request of the HTTP engine alone (no BIP), same clients."""
    store = MemoryStore()
    store.put(Resource(bench.PAGE_PATH, _page(), "text/html", last_modified=1))
    settings = CardSettings(ports=(PORT,))
    site = build_site(store, bench.ICCID)
    budget = RamBudget.for_limits(settings.limits)
    now = time.time()
    handlers = [HttpServerConnection(site, settings.limits, budget, now=now) for _ in range(conns)]
    clients = [_Client() for _ in range(conns)]

    def loop(limit: int) -> None:
        done = 0
        while done < limit:
            for handler, client in zip(handlers, clients, strict=True):
                handler.receive_data(REQUEST, time.time())
                if not client.feed(handler.data_to_send()):
                    raise RuntimeError("incomplete response")
                done += 1

    loop(100)
    out = []
    for _ in range(batches):
        t0 = time.process_time()
        loop(requests)
        out.append((time.process_time() - t0) / requests * 1e6)
    return out


# -- the gateway's shell, without sockets ---------------------------------------------------------


class _Transport(asyncio.Transport):
    """Stands in for a TCP transport: keeps what the gateway writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0  # everything written is taken at once: never a reason to pause

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def _shell(conns: int, requests: int, batches: int) -> list[float]:
    from openscws.aio.gateway import ClientConnection

    store = MemoryStore()
    store.put(Resource(bench.PAGE_PATH, _page(), "text/html", last_modified=1))
    card = build_card(store, CARD, bench.ICCID)
    gw = Gateway(InProcessLink(card), TerminalEngine(), GatewayConfig(port_map={PORT: 0, 3517: 0}))
    await gw.start()
    await gw.wait_listening()
    clients = []
    for _ in range(conns):
        conn = ClientConnection(gw, PORT)
        transport = _Transport()
        conn.connection_made(transport)
        await asyncio.sleep(0.01)  # the card opens more channels on demand
        clients.append((conn, transport, _Client()))

    async def loop(limit: int) -> None:
        # The gateway binds a client once its request has arrived and pumps APDUs on the
        # event loop: yield to it whenever no client has bytes to take.
        done = idle = 0
        while done < limit:
            moved = False
            for conn, transport, client in clients:
                if not transport.written:
                    continue
                moved = True
                if client.feed(transport.written.pop(0)):
                    done += 1
                    conn.data_received(REQUEST)
            if moved:
                idle = 0
                continue
            idle += 1
            if idle > 100_000:
                raise RuntimeError("no response")
            await asyncio.sleep(0)

    await asyncio.sleep(0.01)
    for conn, _, _ in clients:
        conn.data_received(REQUEST)
    await loop(100)
    out = []
    for _ in range(batches):
        t0 = time.process_time()
        await loop(requests)
        out.append((time.process_time() - t0) / requests * 1e6)
    await gw.stop()
    return out


def memory_shell(conns: int, requests: int, batches: int) -> list[float]:
    """CPU µs per request through the gateway's shell (socket callbacks, the pump's APDU
    loop, the actions), with transports that keep what is written: no sockets, no epoll."""
    return asyncio.run(_shell(conns, requests, batches))


# -- through sockets ------------------------------------------------------------------------------


async def _wrk(port: int, conns: int, seconds: float) -> tuple[int, float]:
    """Runs wrk against `port`; returns (requests, CPU seconds this process spent)."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    argv.append(f"http://127.0.0.1:{port}{bench.PAGE_PATH}")
    cpu0 = _cpu()
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    cpu = _cpu() - cpu0
    text = out.decode()
    n = re.search(r"(\d+) requests in", text)
    if n is None or "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk failed:\n{text}")
    return int(n.group(1)), cpu


async def _serve_gateway(image: CardImage, tmp: Path) -> tuple[Gateway, int]:
    """The gateway as `openscws up` builds it: HTTP on 3516 and HTTPS on 4116 (idle here,
    but its listening channels are among those the card schedules), default settings."""
    from openscws.aio.stack import card_tls, gateway_for
    from openscws.config import load

    settings = load(bench.up_config(tmp / "gateway.toml", tmp))
    port = bench.free_port()
    settings.gateway.port_map.update({PORT: port, 4116: bench.free_port()})
    tls, psk = card_tls(settings, image)
    card = build_card(image, settings.card, image.meta.iccid, tls=tls, psk=psk)
    gw = gateway_for(settings, InProcessLink(card), None)
    await gw.start()
    await gw.wait_listening()
    return gw, port


async def _serve_direct(image: CardImage) -> tuple[asyncio.Server, int]:
    settings = CardSettings()
    site = build_site(image, image.meta.iccid)
    budget = RamBudget.for_limits(settings.limits)

    def connection() -> StreamProtocol:
        return StreamProtocol(HttpServerConnection(site, settings.limits, budget, now=time.time()))

    server = await asyncio.get_running_loop().create_server(connection, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def server_rounds(
    image: CardImage,
    tmp: Path,
    conns: list[int],
    rounds: int,
    seconds: float,
    only: str | None = None,
) -> dict[str, list[tuple[float, float]]]:
    """{"gateway N" / "direct N": [(µs CPU per request, req/s), ...]}, interleaved."""
    gw, gw_port = await _serve_gateway(image, tmp)
    direct, direct_port = await _serve_direct(image)
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        for c in conns:  # warm-up
            await _wrk(gw_port, c, 1)
            await _wrk(direct_port, c, 1)
        if only is not None:
            print(f"PID {os.getpid()}", flush=True)
            await asyncio.sleep(2)  # time to attach a tracer
        for r in range(rounds):
            for c in conns:
                for name, port in (("gateway", gw_port), ("direct", direct_port)):
                    if only is not None and name != only:
                        continue
                    n, cpu = await _wrk(port, c, seconds)
                    rate = n / max(1, round(seconds))
                    results.setdefault(f"{name} {c}", []).append((cpu / n * 1e6, rate))
                    print(
                        f"  round {r + 1} {name:<7} {c} conn: {cpu / n * 1e6:6.1f} us CPU/request,"
                        f" {rate:8,.0f} req/s",
                        flush=True,
                    )
    finally:
        direct.close()
        await gw.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", nargs="?", choices=("memory", "server"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run: both modes, 1 connection, a few batches and one 1 s round",
    )
    p.add_argument("--conns", type=int, nargs="+", default=None)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--requests", type=int, default=400, help="requests per batch (memory)")
    p.add_argument("--direct", action="store_true", help="memory: the HTTP engine alone too")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--only", choices=("gateway", "direct"), help="server: measure one only")
    args = p.parse_args(argv)
    if args.quick:
        if args.mode is not None:
            p.error("--quick runs both modes: give no mode")
        args.conns, args.batches, args.requests, args.rounds, args.seconds = [1], 2, 40, 1, 1.0
        args.mode = "memory"
        main_mode(args)
        args.mode = "server"
    elif args.mode is None:
        p.error("give a mode: memory or server (or --quick)")
    return main_mode(args)


def main_mode(args: argparse.Namespace) -> int:
    if args.mode == "memory":
        for c in args.conns or [1, 4]:
            xs = memory_bip(c, args.requests, args.batches)
            line = f"memory, {c} conn: card+terminal {min(xs):6.1f} us/request (min)"
            line += f", median {statistics.median(xs):6.1f}"
            zs = memory_shell(c, args.requests, args.batches)
            line += f"; with the gateway's shell {min(zs):6.1f} (min)"
            ws = memory_bip(c, args.requests, args.batches, canned=True)
            line += f"; BIP alone (canned response) {min(ws):6.1f} (min)"
            if args.direct:
                ys = memory_direct(c, args.requests, args.batches)
                line += f"; HTTP engine alone {min(ys):6.1f} (min)"
            print(line, flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="openscws-cpu-") as tmpdir:
        tmp = Path(tmpdir)
        bench.make_files(tmp / "files")
        bench.make_image(tmp / "image", tmp / "files")
        image = CardImage.open(tmp / "image")
        try:
            results = asyncio.run(
                server_rounds(
                    image, tmp, args.conns or [1, 4], args.rounds, args.seconds, args.only
                )
            )
        finally:
            image.close()
    print("median over rounds (us CPU per request; req/s):")
    for c in args.conns or [1, 4]:
        if args.only is not None:
            xs = results[f"{args.only} {c}"]
            print(f"  {c} conn: {args.only} {statistics.median(x for x, _ in xs):6.1f} us")
            continue
        g = results[f"gateway {c}"]
        d = results[f"direct {c}"]
        gc = statistics.median(x for x, _ in g)
        dc = statistics.median(x for x, _ in d)
        gr = statistics.median(y for _, y in g)
        dr = statistics.median(y for _, y in d)
        print(
            f"  {c} conn: gateway {gc:6.1f} us, direct {dc:6.1f} us, CPU ratio direct/gateway "
            f"{dc / gc:.2f}; req/s {gr:,.0f} / {dr:,.0f} = {gr / dr:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
