"""Card RAM per HTTPS channel: what the card holds per connection while it serves a 64 KiB
download or takes a 32 KiB upload, with OpenSSL and with the card TLS engine.

    .venv/bin/python benchmarks/bench_tls_ram.py [--quick] [--json [FILE]] [--docs]

Everything runs in memory with no sockets: the card's real HTTPS handler (`TlsServerHandler`,
or the card TLS engine's `CardTlsServerHandler`, wrapping `HttpServerConnection` over a `Site`
on a `MemoryStore`, with the TLS context `openscws up` builds from a card image: RSA 2048
device certificate, PSK table) and a stdlib `SSLObject` client over memory BIOs. Bytes move
the way the card's BIP layer moves them (`openscws.bip.card`): the card is asked for
`data_to_send(buffer_size)` (the channel buffer, 8192 by default) only once what it gave
before has gone out, its output reaches the client in SEND DATA pieces (240 B) and the
client's bytes reach the card in RECEIVE DATA pieces (237 B).

For each configuration it reports what the card holds between two calls into its handler, in
the handshake and while answering (C heap counted with glibc's `mallinfo2` in a child process
run with PYTHONMALLOC=malloc, so Python's own objects count too; `heap_pass`), the TLS
layer's `peak_buffer`, the tracemalloc peak during a call, and the records each side sent.
`markdown` writes the part of docs/benchmarks.md that says exactly what is counted.

Configurations: a static resource, the same bytes streamed by a card application in 1 KiB
chunks, and an upload (POST to a static resource: 405, the body read and dropped); TLS 1.3
(certificate), TLS 1.2 PSK-AES128-CBC-SHA through OpenSSL and through the card TLS engine;
`record_limit` None (= 16384), 1024 (the default) and 512; channel buffer 8192 and 65535.
Plain-HTTP rows (the HTTP engine alone) give the reference for the TLS layer's share."""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _mallinfo
import h11

from openscws.bip.card import MAX_RECEIVE, MAX_SEND
from openscws.http import CardLimits, HttpServerConnection, RamBudget
from openscws.scws.apps import AppContext, Request, Response
from openscws.scws.card import build_site
from openscws.scws.model import MemoryStore, Resource
from openscws.store.cardimage import CardImage
from openscws.store.provision import ensure_card_tls
from openscws.tls._openssl import tune_connection
from openscws.tls.card_engine import CardTlsServerHandler
from openscws.tls.endpoint import TlsServerHandler
from openscws.tls.psk import PskKeys
from openscws.uicc.keystore import CardKeyStore

ICCID = "8988211000000000003"
BODY_SIZE = 64 * 1024
STREAM_CHUNK = 1024
UPLOAD_SIZE = 32 * 1024
PSK_IDENTITY = "card1"
PSK_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Config:
    body: str  # "static" | "streamed" | "upload"
    tls: str  # "tls13" | "psk" | "card" | "none"
    record_limit: int | None
    buffer_size: int


LIMITS = (None, 1024, 512)
CONFIGS = (
    *(Config("static", "tls13", limit, 8192) for limit in LIMITS),
    *(Config("static", "psk", limit, 8192) for limit in LIMITS),
    *(Config("static", "card", limit, 8192) for limit in LIMITS),
    *(Config("streamed", "tls13", limit, 8192) for limit in LIMITS),
    Config("streamed", "tls13", None, 65535),
    Config("streamed", "tls13", 1024, 65535),
    *(Config("streamed", "card", limit, 8192) for limit in LIMITS),
    *(Config("upload", "tls13", limit, 8192) for limit in LIMITS),
    *(Config("upload", "psk", limit, 8192) for limit in LIMITS),
    *(Config("upload", "card", limit, 8192) for limit in LIMITS),
    Config("static", "none", None, 8192),
    Config("streamed", "none", None, 8192),
    Config("upload", "none", None, 8192),
)
QUICK_CONFIGS = (
    Config("static", "tls13", None, 8192),
    Config("static", "tls13", 1024, 8192),
    Config("static", "card", None, 8192),
    Config("static", "card", 1024, 8192),
    Config("static", "none", None, 8192),
)
TARGET_RATIO = 0.25
"""Per channel, the card holds with record_limit 1024 at most this share of what it holds
with 16 KiB records (peak per channel; see `ratios` for the three readings)."""

TLS_LABELS = {
    "tls13": "TLS 1.3, RSA 2048 certificate",
    "psk": "TLS 1.2 PSK-AES128-CBC-SHA",
    "card": "TLS 1.2 PSK-AES128-CBC-SHA, card TLS engine",
    "none": "none (plain HTTP)",
}


class StreamApp:
    """GET streams `body` in `STREAM_CHUNK` pieces (a card application's chunked answer)."""

    methods = frozenset({"GET"})

    def __init__(self, body: bytes) -> None:
        self.body = body

    def handle(self, request: Request, ctx: AppContext) -> Response:
        return Response(200, (("Content-Type", "application/octet-stream"),), self._chunks())

    def _chunks(self) -> Iterator[bytes]:
        view = memoryview(self.body)
        for at in range(0, len(view), STREAM_CHUNK):
            yield bytes(view[at : at + STREAM_CHUNK])


class RecordCounter:
    """Follows TLS record headers in a byte stream (nothing is kept but counts)."""

    def __init__(self) -> None:
        self.header = bytearray()
        self.due = 0
        self.lengths: list[int] = []

    def feed(self, data: bytes) -> None:
        at = 0
        while at < len(data):
            if self.due:
                take = min(self.due, len(data) - at)
                self.due -= take
                at += take
                continue
            take = min(5 - len(self.header), len(data) - at)
            self.header += data[at : at + take]
            at += take
            if len(self.header) == 5:
                self.due = int.from_bytes(self.header[3:5])
                self.lengths.append(self.due)
                self.header.clear()


class Client:
    """A stdlib `SSLObject` (or nothing, for plain HTTP) plus an h11 client that hashes the
    body as it arrives, so the client itself keeps almost nothing on the Python heap."""

    def __init__(
        self,
        context: ssl.SSLContext | None,
        path: str,
        upload: bytes = b"",
        max_fragment: int | None = None,
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = None if context is None else context.wrap_bio(self.incoming, self.outgoing)
        if self.obj is not None and max_fragment is not None:
            # records of at most `max_fragment` both ways, asked for with RFC 6066
            tune_connection(self.obj, max_fragment)
        self.ready = context is None
        self.http = h11.Connection(h11.CLIENT)
        if upload:
            head = h11.Request(
                method="POST",
                target=path,
                headers=[("Host", "localhost"), ("Content-Length", str(len(upload)))],
            )
            self.request = (
                self.http.send(head)
                + self.http.send(h11.Data(data=upload))
                + self.http.send(h11.EndOfMessage())
            )
        else:
            self.request = self.http.send(
                h11.Request(method="GET", target=path, headers=[("Host", "localhost")])
            ) + self.http.send(h11.EndOfMessage())
        self.sent = False
        self.plain_out = bytearray()
        self.readbuf = bytearray(16384)
        self.digest = hashlib.sha256()
        self.body_len = 0
        self.status = 0
        self.done = False

    def step(self) -> None:
        if self.obj is not None and not self.ready:
            try:
                self.obj.do_handshake()
                self.ready = True
            except ssl.SSLWantReadError:
                return
        if not self.sent:
            self.sent = True
            if self.obj is None:
                self.plain_out += self.request
            else:
                self.obj.write(self.request)
        self._read()

    def to_card(self) -> bytes:
        if self.obj is None:
            data = bytes(self.plain_out)
            self.plain_out.clear()
            return data
        return self.outgoing.read()

    def from_card(self, data: bytes) -> None:
        if self.obj is None:
            self._http(data)
        else:
            self.incoming.write(data)

    def _read(self) -> None:
        if self.obj is None:
            return
        while True:
            try:
                n = self.obj.read(len(self.readbuf), self.readbuf)
            except ssl.SSLWantReadError:
                return
            if not n:
                return
            self._http(bytes(memoryview(self.readbuf)[:n]))

    def _http(self, data: bytes) -> None:
        self.http.receive_data(data)
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.digest.update(event.data)
                self.body_len += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
                return


@dataclass
class Row:
    body: str
    tls: str
    record_limit: int | None
    buffer_size: int
    malloc_held_peak: int | None
    """Most bytes the card held for the channel between two calls while it sent the
    response (C heap, with Python's own objects on it too: PYTHONMALLOC=malloc): the TLS
    stack's connection state and buffers (OpenSSL's SSL object, record buffers and memory
    BIOs; the card engine's keys, queue and partial record), every Python object of the
    TLS layer and what the HTTP engine allocated for the response."""
    malloc_held_handshake: int | None
    """The same, during the handshake (before the client's request)."""
    held_now: int | None
    """`TlsRecordStream.held` at the end (what the TLS layer itself still queues)."""
    client_largest_record: int
    peak_buffer: int | None
    tracemalloc_peak: int
    records: int
    largest_handshake_record: int
    response_records: int
    largest_response_record: int
    version: str | None
    cipher: str | None


def card_contexts(tmp: Path) -> dict[str, ssl.SSLContext]:
    """The TLS contexts `openscws up` builds from a card image: its RSA 2048 key and a device
    certificate from a fresh issuer CA, once without and once with PSK-TLS enabled."""
    image = CardImage.create(tmp / "card", iccid=ICCID, now=int(time.time()))
    keys = CardKeyStore(image)
    ensure_card_tls(
        keys, tmp / "ca", iccid=ICCID, now=datetime.datetime.now(datetime.UTC), key_type="rsa"
    )
    cert = keys.server_context("modern")
    keys.add_psk(PSK_IDENTITY, PSK_KEY)
    keys.set_psk_enabled(True)
    psk = keys.server_context("compat")  # the SCWS CBC suite: compat only
    image.close()
    return {"tls13": cert, "psk": psk}


def client_context(tls: str) -> ssl.SSLContext | None:
    if tls == "none":
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls == "tls13":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("PSK-AES128-CBC-SHA")
        ctx.set_psk_client_callback(lambda hint: (PSK_IDENTITY, PSK_KEY))
    return ctx


def card_keys() -> PskKeys:
    """The card TLS engine's PSK table: the same identity and key as the OpenSSL PSK rows."""
    return PskKeys(lambda identity: PSK_KEY if identity == PSK_IDENTITY else None)


def measure(config: Config, contexts: dict[str, ssl.SSLContext], body: bytes, *, heap: bool) -> Row:
    """One transfer. `heap` False: tracemalloc measures the Python heap. `heap` True: no
    tracemalloc (its own tables are malloc'd); the C heap is counted instead (`_mallinfo`):
    what malloc'd memory each call into the card's handler adds or frees, summed, is what
    the card holds (OpenSSL's connection state and record buffers; with PYTHONMALLOC=malloc,
    as `heap_pass` runs it, every Python object too), less the bytes each call returns,
    which go to the transport."""
    everything = _mallinfo.all_python_objects()
    store = MemoryStore()
    store.put(Resource("/big.bin", body, "application/octet-stream", 1_600_000_000))
    site = build_site(store, ICCID)
    site.register_app("/stream", StreamApp(body))
    limits = CardLimits()
    budget = RamBudget.for_limits(limits)
    path = "/stream" if config.body == "streamed" else "/big.bin"
    upload = body[:UPLOAD_SIZE] if config.body == "upload" else b""
    client = Client(
        client_context(config.tls),
        path,
        upload,
        config.record_limit if upload and config.tls != "none" else None,
    )

    gc.collect()
    if heap:
        gc.freeze()  # what exists now is never collected again: the collections below are quick
    else:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0] if not heap else 0
        worst = 0
        c_held = 0  # malloc'd bytes the card holds now
        c_held_peak = 0
        c_held_handshake = 0
        card: Any = None
        cost = _mallinfo.call_cost() if heap else 0  # the measurement's own, per call

        def card_call(fn: Callable[..., Any], *args: Any) -> Any:
            nonlocal worst, c_held, c_held_peak, c_held_handshake
            if heap:
                # A full collection before each reading also empties Python's free lists
                # (tuples, dicts, floats kept for reuse): they are the process's.
                result, delta = _mallinfo.measured_call(fn, *args, cost=cost)
                c_held += delta
                if isinstance(result, bytes) and len(result) > (
                    1 if everything else _mallinfo.SMALL
                ):
                    c_held -= sys.getsizeof(result)  # handed to the transport
                if client.sent:  # the response: the handshake's transient state is gone
                    c_held_peak = max(c_held_peak, c_held)
                else:
                    c_held_handshake = max(c_held_handshake, c_held)
                return result
            tracemalloc.reset_peak()
            result = fn(*args)
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
            return result

        inner = HttpServerConnection(site, limits, budget, now=NOW)
        if config.tls == "none":
            card = inner
        elif config.tls == "card":
            keys = card_keys()  # the card's PSK table: one per card, like the SSL_CTX
            card = card_call(
                lambda: CardTlsServerHandler(keys, inner, record_limit=config.record_limit, now=NOW)
            )
        else:
            card = card_call(
                lambda: TlsServerHandler(
                    contexts[config.tls], inner, record_limit=config.record_limit, now=NOW
                )
            )
        counter = RecordCounter()
        client_records = RecordCounter()
        handshake_records = 0
        for _ in range(100_000):
            client.step()
            if client.sent and not handshake_records:
                handshake_records = len(counter.lengths) or -1
            up = client.to_card()
            if config.tls != "none":
                client_records.feed(up)
            for at in range(0, len(up), MAX_RECEIVE):
                card_call(card.receive_data, up[at : at + MAX_RECEIVE], NOW)
            del up
            down = card_call(card.data_to_send, config.buffer_size)
            if config.tls != "none":
                counter.feed(down)
            for at in range(0, len(down), MAX_SEND):
                client.from_card(down[at : at + MAX_SEND])
            moved = bool(down)
            del down
            client.step()
            if client.done:
                break
            if not moved and not client.to_card() and card.should_close:
                break
        else:
            raise RuntimeError("the transfer did not finish")
    finally:
        if heap:
            gc.unfreeze()
        else:
            tracemalloc.stop()
    if upload:  # a static resource takes no POST: 405, the body read and dropped
        if not client.done or client.status != 405:
            raise RuntimeError(f"upload failed: status {client.status}, done {client.done}")
    elif not client.done or client.status != 200:
        raise RuntimeError(f"transfer failed: status {client.status}, done {client.done}")
    if not upload and (
        client.body_len != len(body) or client.digest.digest() != hashlib.sha256(body).digest()
    ):
        raise RuntimeError("the body received differs from the resource")
    hs = max(handshake_records, 0)
    lengths = counter.lengths
    tls = card if isinstance(card, TlsServerHandler | CardTlsServerHandler) else None
    measured = heap
    return Row(
        body=config.body,
        tls=config.tls,
        record_limit=config.record_limit,
        buffer_size=config.buffer_size,
        malloc_held_peak=c_held_peak if measured else None,
        malloc_held_handshake=c_held_handshake if measured else None,
        held_now=tls.held if measured and tls is not None else None,
        client_largest_record=max(client_records.lengths, default=0),
        peak_buffer=None if tls is None else tls.peak_buffer,
        tracemalloc_peak=worst,
        records=len(lengths),
        largest_handshake_record=max(lengths[:hs], default=0),
        response_records=len(lengths) - hs,
        largest_response_record=max(lengths[hs:], default=0),
        version=None if tls is None else tls.version,
        cipher=None if tls is None or tls.cipher is None else tls.cipher[0],
    )


def run(quick: bool = False) -> dict[str, Any]:
    return measure_all(QUICK_CONFIGS if quick else CONFIGS)


def measure_all(configs: tuple[Config, ...]) -> dict[str, Any]:
    body = _body()
    with tempfile.TemporaryDirectory(prefix="openscws-tlsram-") as tmp:
        contexts = card_contexts(Path(tmp))
    counted = heap_pass(configs)
    rows = []
    for c, held in zip(configs, counted, strict=True):
        traced = measure(c, contexts, body, heap=False)
        traced.malloc_held_peak = held["malloc_held_peak"]
        traced.malloc_held_handshake = held["malloc_held_handshake"]
        traced.held_now = held["held_now"]
        rows.append(traced)
    return {
        "body_size": BODY_SIZE,
        "stream_chunk": STREAM_CHUNK,
        "max_send": MAX_SEND,
        "max_receive": MAX_RECEIVE,
        "openssl": ssl.OPENSSL_VERSION,
        "rows": [asdict(r) for r in rows],
    }


def _body() -> bytes:
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(BODY_SIZE))


HELD_FIELDS = ("malloc_held_peak", "malloc_held_handshake", "held_now")


def heap_pass(configs: tuple[Config, ...]) -> list[dict[str, int | None]]:
    """The C-heap counts, measured in a child process run with PYTHONMALLOC=malloc, so that
    Python's small objects (below 512 bytes, normally in its own arenas that malloc does not
    see) are counted too: a TLS engine written in Python keeps its state in such objects."""
    spec = json.dumps([asdict(c) for c in configs])
    # glibc's per-thread cache keeps freed blocks that mallinfo2 counts as in use: off.
    env = {**os.environ, "PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--heap-pass", spec],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    counted: list[dict[str, int | None]] = json.loads(out)
    return counted


def _heap_pass_child(spec: str) -> int:
    if not _mallinfo.all_python_objects():
        raise SystemExit("--heap-pass needs PYTHONMALLOC=malloc")
    configs = [Config(**c) for c in json.loads(spec)]
    body = _body()
    with tempfile.TemporaryDirectory(prefix="openscws-tlsram-") as tmp:
        contexts = card_contexts(Path(tmp))
    result = []
    for c in configs:
        # A first transfer fills the process's lazy caches (ABC subclass checks, logging,
        # typing): they are made once per process, not per channel, so the second counts.
        measure(c, contexts, body, heap=True)
        row = measure(c, contexts, body, heap=True)
        result.append({name: getattr(row, name) for name in HELD_FIELDS})
    print(json.dumps(result))
    return 0


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n:,} ({n / 1024:.1f} KiB)"


BODY_LABELS = {
    "static": "static",
    "streamed": f"streamed ({STREAM_CHUNK} B chunks)",
    "upload": f"upload ({UPLOAD_SIZE // 1024} KiB POST)",
}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| transfer | TLS | record_limit | channel buffer | held in the handshake, B "
        "| held while answering, B | TLS layer peak_buffer, B | tracemalloc peak, B "
        "| records sent (handshake + response) | largest record sent, B "
        "| largest record from the client, B |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        plain = r["tls"] == "none"
        rl = "-" if plain else str(r["record_limit"] or "None (16384)")
        recs = (
            "-"
            if plain
            else f"{r['records']} ({r['records'] - r['response_records']} + "
            f"{r['response_records']})"
        )
        resp = "-" if plain else f"{r['largest_response_record']:,}"
        client = "-" if plain else f"{r['client_largest_record']:,}"
        hs = "-" if plain else _kib(r["malloc_held_handshake"])
        lines.append(
            f"| {BODY_LABELS[r['body']]} | {TLS_LABELS[r['tls']]} | {rl} | {r['buffer_size']:,} "
            f"| {hs} | {_kib(r['malloc_held_peak'])} | {_kib(r['peak_buffer'])} "
            f"| {_kib(r['tracemalloc_peak'])} | {recs} | {resp} | {client} |"
        )
    return "\n".join(lines)


def _rows(result: dict[str, Any], tls: str, limit: int | None) -> list[dict[str, Any]]:
    return [
        r
        for r in result["rows"]
        if r["tls"] == tls and r["record_limit"] == limit and r["buffer_size"] == 8192
    ]


def _plain(result: dict[str, Any], body: str) -> int:
    for r in result["rows"]:
        if r["tls"] == "none" and r["body"] == body:
            value: int = r["malloc_held_peak"] or 0
            return value
    return 0


def peak(result: dict[str, Any], tls: str, limit: int | None) -> tuple[int, int] | None:
    """(peak per channel, the TLS layer's share of it) for one engine and record_limit, over
    every transfer measured with an 8192-byte channel buffer: the most held in the handshake
    or while answering; the share is that less what plain HTTP holds for the same transfer
    (in the handshake the HTTP engine holds nothing yet)."""
    rows = _rows(result, tls, limit)
    if not rows or any(r["malloc_held_peak"] is None for r in rows):
        return None
    total = max(max(r["malloc_held_peak"], r["malloc_held_handshake"]) for r in rows)
    share = max(
        max(r["malloc_held_peak"] - _plain(result, r["body"]), r["malloc_held_handshake"])
        for r in rows
    )
    return total, share


ENGINES = (
    ("tls13", "OpenSSL, TLS 1.3 (RSA 2048 certificate)"),
    ("psk", "OpenSSL, TLS 1.2 PSK-AES128-CBC-SHA"),
    ("card", "card TLS engine, TLS 1.2 PSK-AES128-CBC-SHA"),
)


def summary(result: dict[str, Any]) -> str:
    lines = [
        "| TLS stack | record_limit None (16384) | 1024 | 512 | 1024 / None |",
        "|---|---:|---:|---:|---:|",
    ]
    for tls, label in ENGINES:
        cells = [peak(result, tls, limit) for limit in LIMITS]
        if all(c is None for c in cells):
            continue
        text = ["-" if c is None else f"{c[0]:,} (TLS {c[1]:,})" for c in cells]
        big, small = cells[0], cells[1]
        share = (
            "-"
            if big is None or small is None
            else f"{small[0] / big[0]:.2f} (TLS {small[1] / big[1]:.2f})"
        )
        lines.append(f"| {label} | {' | '.join(text)} | {share} |")
    return "\n".join(lines)


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """The target's ratios (peak per channel with 1024 over the peak with 16 KiB records)."""
    out: dict[str, float | None] = {}
    before = peak(result, "psk", None)
    for tls, _ in ENGINES:
        big, small = peak(result, tls, None), peak(result, tls, 1024)
        out[tls] = None if big is None or small is None else small[0] / big[0]
        out[tls + "_tls_share"] = None if big is None or small is None else small[1] / big[1]
    card = peak(result, "card", 1024)
    out["card_vs_openssl"] = None if card is None or before is None else card[0] / before[0]
    return out


def ratio(result: dict[str, Any]) -> float | None:
    """The card with record_limit 1024 and the card TLS engine, over the card with 16 KiB
    records as it was (OpenSSL, the same PSK suite): peak per channel."""
    return ratios(result)["card_vs_openssl"]


BEGIN = "<!-- bench_tls_ram: begin (generated by benchmarks/bench_tls_ram.py) -->"
END = "<!-- bench_tls_ram: end -->"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The "Card RAM per HTTPS channel" part of docs/benchmarks.md's TLS section."""
    r = ratios(result)
    t = TARGET_RATIO

    def verdict(x: float | None) -> str:
        return "-" if x is None else ("**met**" if x <= t else "**not met**")

    lines = [
        "### Card RAM per HTTPS channel",
        "",
        "```sh",
        ".venv/bin/python benchmarks/bench_tls_ram.py --docs   # rewrites this part",
        "```",
        "",
        "`benchmarks/bench_tls_ram.py` (`--quick`: five rows), in memory: the card's HTTPS",
        "handler (`TlsServerHandler` or the card TLS engine's `CardTlsServerHandler` around",
        "`HttpServerConnection`, a `Site` over a `MemoryStore`, the TLS contexts `openscws up`",
        f"builds from a card image) serving a {result['body_size'] // 1024} KiB download, and",
        f"taking a {UPLOAD_SIZE // 1024} KiB POST (to a static resource: answered 405, the body",
        "read and dropped as it arrives, so the HTTP engine keeps none of it), from a stdlib",
        "`SSLObject` client. Bytes move as the card's BIP layer moves them: the card is asked",
        "for `data_to_send(channel buffer)` only when what it gave before has gone out, its",
        f"output reaches the client in {result['max_send']}-byte SEND DATA pieces and the "
        f"client's bytes reach it in {result['max_receive']}-byte RECEIVE DATA pieces.",
        "",
        "What is counted, **held**: the most memory the card holds for the connection between",
        "two calls into its handler (a card serves its channels one APDU at a time, so this is",
        "what grows with the number of channels; memory used only inside one call is working",
        "memory the channels share). It is glibc's `mallinfo2` in-use count summed over the",
        "calls into the card's handler (`benchmarks/_mallinfo.py`), less the bytes each call",
        "hands to the transport and less the measurement's own cost per call (the first",
        "reading's int object, alive at the second: 48 bytes, which over the 139 pieces of",
        "an upload would read as 6.5 KiB held; `_mallinfo.measured_call`), measured in a child",
        "process run with `PYTHONMALLOC=malloc`",
        "(so Python's small objects are counted too, not only OpenSSL's allocations and",
        "Python's blocks above 512 bytes) and glibc's per-thread cache off; a full garbage",
        "collection before and after each call empties Python's free lists, and each transfer",
        "runs once before it is measured so the process's lazy caches exist already. So it",
        "is: the TLS stack's state and buffers for the connection (OpenSSL's SSL object,",
        "session, cipher contexts, record buffers and memory BIOs; the card engine's keys,",
        "queue and partial record), every Python object of the TLS layer, and what the HTTP",
        "engine holds for the request and response. The SSL_CTX (and the card's key and",
        "certificate in it) is shared by all channels and made before the count starts.",
        "",
        "- held in the handshake: between two calls before the client's request; held while",
        "  answering: from the request on.",
        "- `peak_buffer`: `TlsServerHandler.peak_buffer` (the TLS layer's own buffers, inside",
        "  calls too); tracemalloc peak: the Python heap in use during any call into the card",
        "  (same process as the client, so not per channel).",
        "- record sizes are the ciphertext length field. In the upload rows with a limit the",
        "  client asks for RFC 6066 max_fragment_length = record_limit (as a client that",
        "  honours the card's RFC 8449 record_size_limit would send records that small;",
        "  Python's `ssl` client cannot take record_size_limit); without a limit it sends",
        "  16 KiB records.",
        "",
        table(result),
        "",
        "**Peak per channel**, bytes: the most held in the handshake or while answering, over",
        "the transfers measured with the 8192-byte channel buffer (static, streamed, upload);",
        "in brackets the TLS layer's share, that is less what plain HTTP holds for the same",
        "transfer (the last three rows of the table above).",
        "",
        summary(result),
        "",
        f"The target (with `record_limit` 1024 the card holds at most {t} of what it holds",
        "with 16 KiB records), read three ways:",
        "",
        "- the card with the limit and the card TLS engine against the card with 16 KiB",
        "  records as it was (OpenSSL, the same PSK suite): "
        f"**{_fmt(r['card_vs_openssl'])}**, {verdict(r['card_vs_openssl'])};",
        "- within the card TLS engine, whole channel: "
        f"**{_fmt(r['card'])}**, {verdict(r['card'])}; its TLS layer alone: "
        f"**{_fmt(r['card_tls_share'])}**, {verdict(r['card_tls_share'])};",
        "- within OpenSSL: "
        f"TLS 1.3 **{_fmt(r['tls13'])}**, PSK **{_fmt(r['psk'])}**, "
        f"{verdict(max(r['tls13'] or 1, r['psk'] or 1))}.",
        "",
        "Reading the numbers:",
        "",
        "- OpenSSL cannot get there: its SSL object is about 8 KiB before the first byte and",
        "  about 13-14 KiB after the handshake whatever the record size, and between the",
        "  flights of a handshake it holds 40-50 KiB (handshake buffers, transcript, the",
        "  certificate flight for TLS 1.3), so the handshake sets its peak with any",
        "  `record_limit`. Its record buffers are released when empty",
        "  (`SSL_MODE_RELEASE_BUFFERS`, read-ahead off) and `max_send_fragment` bounds what",
        "  it writes; with 16 KiB records a client's upload costs a whole record on top.",
        "- The card TLS engine (opt-in, PSK-TLS 1.2 with TLS_PSK_WITH_AES_128_CBC_SHA and",
        "  _SHA256 only; `openscws.tls.card_engine`) keeps between calls only the record keys,",
        "  sequence numbers, a partial record from the client and what the channel has not",
        "  taken yet; handshake state lives only for the handshake. So for a download the",
        "  record size hardly matters to it (a record goes to the channel as it is made);",
        "  what 16 KiB records cost is the client's: a record has to be held whole until its",
        "  MAC is checked. With a limit the engine tells the client (RFC 8449",
        "  record_size_limit, RFC 6066 max_fragment_length) and refuses bigger records",
        "  (record_overflow).",
        "- The rest of a channel is the HTTP engine's (plain HTTP rows), whatever the TLS",
        "  stack: it keeps the whole-channel ratio of the card engine above the TLS layer's",
        "  own. The plain rows feed the HTTP engine 237-byte pieces; behind TLS it gets up",
        "  to a record's plaintext at once, which can make it hold a little more, and that",
        "  is counted in the TLS share here (so the share is not flattered). The HTTP",
        "  engine keeps none of an upload's body between calls (under 1 KiB held for a 32",
        "  KiB POST: the queued answer and the parser's state); a streamed answer keeps the",
        "  application's generator and what the channel has not taken yet. The card",
        "  engine's own state is about 1.3 KiB in the handshake and under 1 KiB after it;",
        "  with 16 KiB records a partial client record of up to 16 KiB comes on top.",
        "- Records the client sends, on the OpenSSL path: OpenSSL 3.0 implements neither RFC",
        "  8449 record_size_limit nor a server-side request of RFC 6066 max_fragment_length",
        "  (only a client can ask for it), so there the card cannot ask a client for small",
        "  records; it honours a client that asks (`openssl s_client -maxfraglen 512`).",
        "- Handshake flights are bounded too (both stacks cut every record they write at",
        "  the limit), so the certificate flight takes more records with a limit; OpenSSL",
        "  takes no limit below 512 for handshake records.",
        "- Repeated runs on this machine agreed to within about 0.5 KiB per figure.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Card RAM per HTTPS channel (see the docstring)")
    p.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="write the numbers (- for stdout)"
    )
    p.add_argument("--quick", action="store_true", help="five rows only (the smoke test)")
    p.add_argument("--docs", action="store_true", help="rewrite this part of docs/benchmarks.md")
    p.add_argument("--heap-pass", metavar="CONFIGS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.heap_pass:
        return _heap_pass_child(args.heap_pass)
    result = run(quick=args.quick)
    if args.docs:
        import _docs

        page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        _docs.splice(page, BEGIN, END, markdown(result))
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(f"{BODY_SIZE // 1024} KiB download, {ssl.OPENSSL_VERSION}\n")
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
