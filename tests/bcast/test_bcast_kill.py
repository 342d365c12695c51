"""kill -9 of `openscws bsm` while terminals are being served: the database afterwards passes
SQLite's integrity and foreign-key checks, and every request that got its 200 is there with
its subscription and its reserved LTKM counter (the commit comes before the answer)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from bcast_fixtures import make_store

from openscws.bcast.bspc import BspcError, BspcExchange, HttpRequest
from openscws.bcast.db import BsmDatabase, default_url
from openscws.bcast.keys import rk_keys
from openscws.bcast.models import Subscriber
from openscws.bcast.sprov import KeyId, MessageKind, Request, Response, StatusCode
from openscws.bcast.store import SqlStore
from openscws.gba.client import GbaError, http_request
from openscws.ras.vault import Vault

KEY = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010001"))
RAND = bytes(8)
CLIENTS = 4


def nai(n: int) -> str:
    return f"k{n}@ruim.example.org"


async def one(url: str, n: int) -> bool:
    keys = rk_keys(n.to_bytes(16), RAND, nai(n))
    exchange = BspcExchange(Request(MessageKind.SERVICE, "k", ("urn:pi:1",)), nai(n), keys.auth_key)
    http: HttpRequest | Response = exchange.start()
    try:
        while isinstance(http, HttpRequest):
            answer = await http_request(
                url + http.path, http.method, http.headers, http.body, timeout=5
            )
            http = exchange.receive(answer.status, tuple(answer.headers.items()), answer.body)
    except (GbaError, BspcError):
        return False
    return http.status is StatusCode.SUCCESS


def test_kill_9_leaves_a_consistent_database(
    tmp_path: Path, free_port: Callable[[], int], openscws_proc: Callable[..., object]
) -> None:
    data = tmp_path / "bsm"
    store = make_store(data)
    store.add_key(KEY, bytes(16))
    store.add_item("urn:pi:1", [KEY])
    for n in range(CLIENTS):
        store.add_rk_subscriber(nai(n), n.to_bytes(16), RAND)
    store.db.dispose()
    port = free_port()
    proc = openscws_proc("bsm", "serve", "--data-dir", str(data), "--port", str(port),
                         "--ltkm-port", "9", name="bsm")  # fmt: skip
    proc.wait_for("BSM ready:")  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    ok = [0] * CLIENTS

    async def main() -> None:
        async def worker(n: int) -> None:
            while True:
                if not await one(url, n):
                    return
                ok[n] += 1

        tasks = [asyncio.create_task(worker(n)) for n in range(CLIENTS)]
        while sum(ok) < 20:
            await asyncio.sleep(0.01)
        proc.proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    asyncio.run(main())
    proc.stop()  # type: ignore[attr-defined]
    with closing(sqlite3.connect(data / "bsm.db")) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    after = SqlStore(BsmDatabase(default_url(data)), Vault.open(data))
    try:
        after.db.check_current()
        for n in range(CLIENTS):
            if ok[n]:
                assert after.subscriptions(nai(n)) == {"urn:pi:1"}
            with after.db.read() as s:
                row = s.get(Subscriber, nai(n))
                counter = 0 if row is None else row.counter
            assert counter >= ok[n]  # each 200 had its counter committed first
    finally:
        after.db.dispose()
