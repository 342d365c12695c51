"""The BSF on PostgreSQL (a throwaway cluster of Debian's postgresql): its migrations, a GBA_U
bootstrap with the Zn keys, and one answer of a nonce winning among concurrent copies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bsf_fixtures import Bsf, make_bsf
from test_bsf_service import IMPI, OPC, K, _bootstrap, _challenge, _headers

from openscws.aka.milenage import Milenage
from openscws.aka.vector import SqnState, UsimAnswer, check_autn
from openscws.bsf.hss import SubscriberKeys

pytestmark = pytest.mark.peer


@pytest.fixture
def pg_bsf(postgres: Any, tmp_path: Path) -> Iterator[Bsf]:
    name = postgres.create_database()
    b = make_bsf(tmp_path / "bsf", url=postgres.url(name))
    yield b
    b.db.dispose()
    postgres.drop_database(name)


def test_bsf_on_postgresql(pg_bsf: Bsf) -> None:
    assert pg_bsf.db.is_postgresql
    assert pg_bsf.db.current_revision() == "bsf0001"
    pg_bsf.hss.add(SubscriberKeys(IMPI, K, OPC))
    boot, aka = _bootstrap(pg_bsf, SqnState())
    token = pg_bsf.service.add_naf("naf.example.net")
    body = {"btid": boot.btid, "naf_fqdn": "naf.example.net", "ua_protocol": "0100000002"}
    got = pg_bsf.service.zn(f"Bearer {token}", json.dumps(body).encode())
    assert got.status == 200
    assert json.loads(got.body)["impi"] == IMPI
    # Concurrent copies of one right answer: one 200.
    client, need = _challenge(pg_bsf)
    answer = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
    assert isinstance(answer, UsimAnswer)
    auth = _headers(client.answer(answer.res).headers)["authorization"]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def send() -> None:
        barrier.wait()
        statuses.append(pg_bsf.service.ub("GET", auth).status)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200, 401, 401, 401]
    assert aka.res
