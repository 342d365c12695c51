"""RFC 3261 §17 non-INVITE transactions: timers E, F, K (client) and J (server), UDP and TCP."""

from __future__ import annotations

import pytest

from openscws.push.sip import SipRequest, parse_message, response_to
from openscws.push.transaction import (
    CLIENT_TRANSITIONS,
    SERVER_TRANSITIONS,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TimedOut,
    TransactionError,
)

REQ = parse_message(
    b"MESSAGE sip:d@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKt1\r\n"
    b"From: <sip:ppg@x>;tag=1\r\nTo: <sip:d@x>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\n"
    b"Content-Length: 1\r\n\r\nA"
)
assert isinstance(REQ, SipRequest)


def retransmit_times(tx: ClientTransaction, until: float) -> list[float]:
    times = []
    while (deadline := tx.next_deadline) is not None and deadline <= until:
        if any(isinstance(a, Send) for a in tx.expire(deadline)):
            times.append(deadline)
    return times


def test_udp_timer_e_doubles_to_t2_and_f_times_out() -> None:
    tx = ClientTransaction(REQ, reliable=False)
    assert tx.start(0.0) == [Send(REQ.encode())]
    assert tx.key == ("z9hG4bKt1", "MESSAGE")
    times = retransmit_times(tx, 31.9)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # 0.5, 1, 2, 4, 4, 4 apart
    assert tx.next_deadline == 32.0  # timer F = 64*T1 comes before the next E (35.5)
    assert tx.expire(32.0) == [TimedOut(), Terminated()]
    assert tx.state is State.TERMINATED
    assert tx.next_deadline is None


def test_udp_provisional_moves_e_to_t2_then_final_arms_k() -> None:
    tx = ClientTransaction(REQ, reliable=False)
    tx.start(0.0)
    trying = response_to(REQ, 100)
    assert tx.receive(trying, 0.1) == [Deliver(trying)]
    assert tx.state is State.PROCEEDING
    assert retransmit_times(tx, 0.6) == [0.5]
    assert tx.next_deadline == 4.5  # T2 in Proceeding
    ok = response_to(REQ, 200, to_tag="x")
    assert tx.receive(ok, 1.0) == [Deliver(ok)]
    assert tx.state is State.COMPLETED
    assert tx.receive(ok, 1.1) == []  # a retransmitted 200 is absorbed
    assert tx.next_deadline == 6.0  # timer K = T4
    assert tx.expire(6.0) == [Terminated()]


def test_tcp_has_no_retransmission_and_k_is_zero() -> None:
    tx = ClientTransaction(REQ, reliable=True)
    tx.start(0.0)
    assert tx.next_deadline == 32.0
    ok = response_to(REQ, 202)
    assert tx.receive(ok, 0.2) == [Deliver(ok), Terminated()]
    assert tx.state is State.TERMINATED


def test_tcp_timeout_and_transport_error() -> None:
    tx = ClientTransaction(REQ, reliable=True)
    tx.start(0.0)
    assert tx.expire(10.0) == []
    assert tx.expire(32.0) == [TimedOut(), Terminated()]
    tx = ClientTransaction(REQ, reliable=True)
    tx.start(0.0)
    assert tx.transport_error() == [TimedOut(), Terminated()]
    with pytest.raises(TransactionError):
        tx.receive(response_to(REQ, 200), 1.0)


def test_client_refuses_out_of_order() -> None:
    tx = ClientTransaction(REQ, reliable=False)
    with pytest.raises(TransactionError):
        tx.receive(response_to(REQ, 200), 0.0)
    tx.start(0.0)
    with pytest.raises(TransactionError):
        tx.start(0.0)


def test_server_udp_absorbs_retransmissions_and_timer_j() -> None:
    tx = ServerTransaction(REQ, reliable=False)
    assert tx.retransmission() == []  # nothing sent yet
    ok = response_to(REQ, 200, to_tag="t")
    assert tx.respond(ok, 1.0) == [Send(ok.encode())]
    assert tx.retransmission() == [Send(ok.encode())]
    assert tx.next_deadline == 33.0
    with pytest.raises(TransactionError):
        tx.respond(ok, 2.0)
    assert tx.expire(33.0) == [Terminated()]


def test_server_tcp_terminates_at_once() -> None:
    tx = ServerTransaction(REQ, reliable=True)
    tx.respond(response_to(REQ, 100), 0.0)
    assert tx.state is State.PROCEEDING
    ok = response_to(REQ, 488)
    assert tx.respond(ok, 0.0) == [Send(ok.encode()), Terminated()]


def test_tables_have_no_exit_from_terminated() -> None:
    for table in (CLIENT_TRANSITIONS, SERVER_TRANSITIONS):
        assert not [k for k in table if k[0] is State.TERMINATED]
