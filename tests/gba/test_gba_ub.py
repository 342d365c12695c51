"""The Ub exchange, sans-IO: the UE machine against the BSF's pure functions and a USIM's AKA,
through the state tables, including AUTS, MAC failure, a forged rspauth and table refusals."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from openscws.aka.milenage import Milenage
from openscws.aka.vector import (
    MacFailure,
    SqnState,
    SyncFailure,
    check_autn,
    make_vector,
    resync_sqn,
)
from openscws.gba.bootstrap_xml import BootstrappingInfo
from openscws.gba.digest import Challenge, Credentials
from openscws.gba.kdf import b_tid
from openscws.gba.ub import (
    BSF_TABLE,
    CLIENT_TABLE,
    Bootstrapped,
    BsfEvent,
    BsfState,
    ClientEvent,
    ClientState,
    NeedAka,
    UbClient,
    UbFailure,
    UbStateError,
    bsf_bootstrapped,
    bsf_challenge,
    bsf_judge,
    step,
)

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
AMF = bytes.fromhex("8000")
WHEN = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _headers(fields: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {k.lower(): v for k, v in fields}


class MiniBsf:
    """Just enough BSF over the pure functions to drive the client."""

    def __init__(self, sqn: int) -> None:
        self.m = Milenage(K, OPC)
        self.sqn = sqn
        self.rng = random.Random(1)
        self.pending: dict[str, tuple[bytes, bytes, BsfState]] = {}

    def handle(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        c = Credentials.parse(headers["authorization"])
        if c.nonce in self.pending:
            rand, xres, state = self.pending[c.nonce]
            if c.auts is not None:
                sqn_ms = resync_sqn(self.m, rand, c.auts_bytes or b"")
                event = BsfEvent.AUTS_BAD if sqn_ms is None else BsfEvent.AUTS_OK
                self.pending[c.nonce] = (rand, xres, step(BSF_TABLE, state, event))
                assert sqn_ms is not None
                self.sqn = sqn_ms
                return self._challenge()
            event = bsf_judge(c, xres, "GET")
            self.pending[c.nonce] = (rand, xres, step(BSF_TABLE, state, event))
            if event is BsfEvent.RES_WRONG:
                return 403, {}, b""
            fields, body = bsf_bootstrapped(c, xres, BootstrappingInfo(b_tid(rand, "bsf"), WHEN))
            return 200, _headers(fields), body
        return self._challenge()

    def _challenge(self) -> tuple[int, dict[str, str], bytes]:
        self.sqn += 32
        rand = self.rng.randbytes(16)
        v = make_vector(self.m, rand, self.sqn, AMF)
        ch = bsf_challenge("bsf.example.net", v.rand, v.autn, "o")
        self.pending[ch.nonce] = (rand, v.xres, BsfState.CHALLENGED)
        return 401, {"www-authenticate": ch.format()}, b""


def _run(bsf: MiniBsf, usim: SqnState) -> Bootstrapped:
    client = UbClient("001010123456789@ims.example.net", "bsf.example.net")
    request = client.identity_request()
    for _ in range(5):
        status, headers, body = bsf.handle(_headers(request.headers))
        got = client.receive(status, headers, body)
        if isinstance(got, Bootstrapped):
            assert client.state is ClientState.BOOTSTRAPPED
            return got
        assert isinstance(got, NeedAka)
        answer = check_autn(bsf.m, usim, got.rand, got.autn)
        if isinstance(answer, SyncFailure):
            request = client.answer_auts(answer.auts)
        elif isinstance(answer, MacFailure):
            client.mac_failure()
            raise UbFailure("MAC")
        else:
            request = client.answer(answer.res)
    raise AssertionError("no end")


def test_bootstrap() -> None:
    got = _run(MiniBsf(sqn=1000 << 5), SqnState())
    assert got.btid == b_tid(got.rand, "bsf")
    assert got.lifetime == WHEN


def test_bootstrap_after_resync() -> None:
    usim = SqnState()
    usim.accept(5000 << 5)  # the card is ahead of the network
    bsf = MiniBsf(sqn=10 << 5)
    got = _run(bsf, usim)
    assert bsf.sqn >> 5 == 5001
    assert got.btid


def test_forged_rspauth_is_refused() -> None:
    bsf = MiniBsf(sqn=1 << 5)
    client = UbClient("u@x", "bsf.example.net")
    status, headers, body = bsf.handle(_headers(client.identity_request().headers))
    need = client.receive(status, headers, body)
    assert isinstance(need, NeedAka)
    answer = check_autn(bsf.m, SqnState(), need.rand, need.autn)
    assert not isinstance(answer, SyncFailure | MacFailure)
    request = client.answer(answer.res)
    status, headers, body = bsf.handle(_headers(request.headers))
    headers["authentication-info"] = headers["authentication-info"].replace(
        'rspauth="', 'rspauth="0'
    )
    with pytest.raises(UbFailure, match="rspauth"):
        client.receive(status, headers, body)
    assert client.state is ClientState.FAILED


def test_wrong_res_and_replay() -> None:
    bsf = MiniBsf(sqn=1 << 5)
    client = UbClient("u@x", "bsf.example.net")
    status, headers, body = bsf.handle(_headers(client.identity_request().headers))
    client.receive(status, headers, body)
    request = client.answer(bytes(8))
    status, _, _ = bsf.handle(_headers(request.headers))
    assert status == 403
    with pytest.raises(UbStateError, match="not allowed in state failed"):
        bsf.handle(_headers(request.headers))  # the same nonce again: a replay
    with pytest.raises(UbFailure, match="403"):
        client.receive(403, {}, b"")


def test_client_table_refuses_out_of_order() -> None:
    client = UbClient("u@x", "r")
    with pytest.raises(UbStateError):
        client.answer(b"x" * 8)
    with pytest.raises(UbStateError, match="GOT_REFUSAL is not allowed"):
        client.receive(200, {}, b"")
    assert (
        step(CLIENT_TABLE, ClientState.IDLE, ClientEvent.SEND_IDENTITY) is ClientState.IDENTITY_SENT
    )


def test_bad_challenge_and_algorithm() -> None:
    client = UbClient("u@x", "r")
    client.identity_request()
    with pytest.raises(UbFailure, match="does not parse"):
        client.receive(401, {"www-authenticate": "Digest nonce=1"}, b"")
    client = UbClient("u@x", "r")
    client.identity_request()
    ch = Challenge("r", bsf_challenge("r", bytes(16), bytes(16), "o").nonce, algorithm="MD5")
    with pytest.raises(UbFailure, match="AKAv1-MD5"):
        client.receive(401, {"www-authenticate": ch.format()}, b"")
