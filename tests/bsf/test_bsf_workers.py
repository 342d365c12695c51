"""Several BSF processes over one database, as `openscws bsf --workers N` runs them (and as
two BSF hosts behind one address would): SQN stays consistent (every challenge of one IMPI,
taken concurrently from both processes, has its own SQN, none skipped, the store's SEQ_HE is
their count), a challenge issued by one process is answered at the other, and answered once
only across both. SQLite here; PostgreSQL as a peer test. Then `--workers 2` itself: it serves,
and SIGTERM stops the worker with the parent."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bsf_fixtures import make_bsf
from test_bsf_service import IMPI, OPC, K

from openscws.aka.milenage import Milenage, xor
from openscws.aka.vector import SqnState, UsimAnswer, check_autn
from openscws.bsf.hss import IND_BITS, SubscriberKeys
from openscws.bsf.models import Subscriber
from openscws.gba.client import http_request
from openscws.gba.digest import Challenge, split_aka_nonce
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient

CHALLENGES = 24
"""Challenges taken concurrently, half from each process."""
START_SEQ = 7


def _sqn_of(challenge: Challenge) -> int:
    rand, autn, _ = split_aka_nonce(challenge.nonce)
    ak = Milenage(K, OPC).f2345(rand).ak
    return int.from_bytes(xor(autn[:6], ak))


async def _challenge(url: str) -> Challenge:
    request = UbClient(IMPI, "127.0.0.1").identity_request()
    answer = await http_request(url, request.method, request.headers)
    assert answer.status == 401, answer.status
    return Challenge.parse(answer.headers["www-authenticate"])


async def _take_challenges(urls: list[str]) -> list[Challenge]:
    return list(await asyncio.gather(*(_challenge(urls[n % len(urls)]) for n in range(CHALLENGES))))


async def _bootstrap_across(first: str, second: str) -> None:
    """The 401 from `first`, the answer with RES at `second` (200), the same answer again at
    `first` (a replay: a fresh 401, no second session)."""
    client = UbClient(IMPI, "127.0.0.1")
    request = client.identity_request()
    answer = await http_request(first, request.method, request.headers)
    got = client.receive(answer.status, answer.headers, answer.body)
    assert isinstance(got, NeedAka)
    usim = SqnState()
    aka = check_autn(Milenage(K, OPC), usim, got.rand, got.autn)
    assert isinstance(aka, UsimAnswer)
    request = client.answer(aka.res)
    answer = await http_request(second, request.method, request.headers)
    assert answer.status == 200, answer.status
    assert isinstance(client.receive(answer.status, answer.headers, answer.body), Bootstrapped)
    replay = await http_request(first, request.method, request.headers)
    assert replay.status == 401


def _two_bsfs(
    openscws_proc: Callable[..., Any], data_dir: Path, url: str, free_port: Callable[[], int]
) -> list[str]:
    urls = []
    for n in range(2):
        args = ("bsf", "--data-dir", data_dir, "--db", url, "--port", str(free_port()), "--no-zn")
        bsf = openscws_proc(*args, name=f"bsf{n}")
        urls.append(bsf.wait_for("BSF Ub ready:").split("ready:", 1)[1].strip())
    return urls


def _check_sqn(challenges: list[Challenge], data_dir: Path, url: str) -> None:
    sqns = sorted(_sqn_of(c) for c in challenges)
    first = START_SEQ + 1
    assert sqns == [seq << IND_BITS for seq in range(first, first + len(challenges))]
    b = make_bsf(data_dir, url=url)
    try:
        with b.db.read() as s:
            row = s.get(Subscriber, IMPI)
            assert row is not None
            assert row.seq == START_SEQ + len(challenges)
    finally:
        b.db.dispose()


def _run_two(
    openscws_proc: Callable[..., Any], data_dir: Path, url: str, free_port: Callable[[], int]
) -> None:
    b = make_bsf(data_dir, url=url)
    b.hss.add(SubscriberKeys(IMPI, K, OPC, sqn=START_SEQ << IND_BITS))
    b.db.dispose()
    urls = _two_bsfs(openscws_proc, data_dir, url, free_port)
    challenges = asyncio.run(_take_challenges(urls))
    _check_sqn(challenges, data_dir, url)
    asyncio.run(_bootstrap_across(urls[0], urls[1]))
    asyncio.run(_bootstrap_across(urls[1], urls[0]))


def test_two_bsf_processes_on_one_sqlite_database(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path
) -> None:
    data_dir = tmp_path / "bsf"
    _run_two(openscws_proc, data_dir, f"sqlite:///{data_dir / 'bsf.db'}", free_port)


@pytest.mark.peer
def test_two_bsf_processes_on_one_postgresql_database(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path, postgres: Any
) -> None:
    name = postgres.create_database()
    try:
        _run_two(openscws_proc, tmp_path / "bsf", postgres.url(name), free_port)
    finally:
        postgres.drop_database(name)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def test_workers_serve_and_stop_with_the_parent(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path
) -> None:
    data_dir = tmp_path / "bsf"
    url = f"sqlite:///{data_dir / 'bsf.db'}"
    b = make_bsf(data_dir, url=url)
    b.hss.add(SubscriberKeys(IMPI, K, OPC, sqn=START_SEQ << IND_BITS))
    b.db.dispose()
    args = ("bsf", "--data-dir", data_dir, "--port", str(free_port()), "--no-zn")
    bsf = openscws_proc(*args, "--workers", "2", name="bsf")
    ub = bsf.wait_for("BSF Ub ready:").split("ready:", 1)[1].strip()
    workers = _children(bsf.proc.pid)
    assert len(workers) == 1
    challenges = asyncio.run(_take_challenges([ub]))
    _check_sqn(challenges, data_dir, url)
    asyncio.run(_bootstrap_across(ub, ub))
    assert bsf.stop() == 0
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in workers):
        assert time.monotonic() < deadline, "a BSF worker outlived its parent"
        time.sleep(0.05)
    assert "Traceback" not in bsf.stderr


def test_workers_out_of_range(  # type: ignore[no-untyped-def]
    openscws_proc, tmp_path: Path
) -> None:
    bsf = openscws_proc("bsf", "--data-dir", tmp_path / "bsf", "--workers", "0", name="bsf")
    assert bsf.proc.wait(30) == 2
    assert bsf.stderr.strip() == "openscws: --workers is 1..64"
