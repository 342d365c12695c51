"""The gateway's access decision (sans-IO) and the per-request gate on plain HTTP."""

from __future__ import annotations

import hashlib

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.acp.heads import HeadGate
from openscws.acp.policy import Decision, Mode, Policy, Subject, request_path
from openscws.acp.rules import AccessRule, RuleSet

CURL = hashlib.sha256(b"curl").digest()
CURL1 = hashlib.sha1(b"curl").digest()
curl = Subject(uid=0, sha256=CURL, sha1=CURL1)
python = Subject(uid=0, sha256=hashlib.sha256(b"python").digest())
other_user = Subject(uid=1000)


def policy(*rules: AccessRule) -> Policy:
    return Policy(Mode.RULES, RuleSet(rules))


def test_unrestricted_and_deny_all() -> None:
    assert Policy.unrestricted("no rules").admit(python, 3516).allow
    denied = Policy.deny_all("REF-DO broken").admit(curl, 3516)
    assert not denied.allow
    assert "cannot be read" in denied.reason


def test_hash_rules_deny_by_default() -> None:
    p = policy(AccessRule(app_hash=CURL))
    assert p.needs_exe
    allowed = p.admit(curl, 3516)
    assert allowed.allow
    assert not allowed.check_requests
    assert allowed.rule is not None
    assert "allowed by rule: allow sha256:" in allowed.reason
    assert not p.admit(python, 3516).allow
    assert not p.admit(Subject(uid=0), 4116).allow  # process not visible: no hash, no match
    assert policy(AccessRule(app_hash=CURL1)).admit(curl, 4116).allow  # SHA-1 ids


def test_uid_any_ports_and_deny_wins() -> None:
    p = policy(
        AccessRule(uid=0, ports=frozenset({3516})),
        AccessRule(ports=frozenset({4116})),
        AccessRule(app_hash=CURL, allow=False),
    )
    assert not p.needs_exe or p.needs_exe
    assert p.admit(python, 3516).allow
    assert not p.admit(other_user, 3516).allow
    assert p.admit(other_user, 4116).allow  # "any" on 4116
    assert not p.admit(curl, 3516).allow  # deny wins
    assert not p.admit(curl, 4116).allow


def test_path_rules_on_http_and_tls_ports() -> None:
    p = policy(AccessRule(app_hash=CURL, paths=("/app/",)), AccessRule(uid=0, paths=("/pub/",)))
    admitted = p.admit(curl, 3516)
    assert admitted.allow
    assert admitted.check_requests
    assert p.request(curl, 3516, "/app/info/json").allow
    assert p.request(curl, 3516, "/app").allow
    assert p.request(curl, 3516, "/pub/x").allow
    assert not p.request(curl, 3516, "/private/").allow
    assert not p.request(curl, 3516, "/app/../private/").allow
    assert not p.request(curl, 3516, "/%61pp/../private/x").allow
    assert p.request(curl, 3516, "http://127.0.0.1:3516/app/x?q=1").allow
    assert not p.request(curl, 3516, "*").allow
    # 4116: paths cannot be seen, so a path rule grants nothing there.
    assert not p.admit(curl, 4116).allow
    q = policy(
        AccessRule(app_hash=CURL), AccessRule(app_hash=CURL, paths=("/admin/",), allow=False)
    )
    assert q.admit(curl, 3516).check_requests
    assert not q.request(curl, 3516, "/admin/x").allow
    assert q.request(curl, 3516, "/index.html").allow
    assert q.admit(curl, 4116).allow
    assert not q.admit(curl, 4116).check_requests


def test_request_path() -> None:
    assert request_path("/a/./b/../c/") == "/a/c/"
    assert request_path("//x") == "/x"
    assert request_path("/%ff") is None
    assert request_path("/a%5Cb") is None
    assert request_path("/a%00") is None


# -- the gate -----------------------------------------------------------------------------------


def deny_private(method: str, target: str) -> Decision:
    if target.startswith("/private"):
        return Decision(False, f"no rule allows {target}")
    return Decision(True, "ok")


def response(body: bytes, *, chunked: bool = False) -> bytes:
    if chunked:
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body),
            body,
        )
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_denied_request_never_reaches_the_card_and_the_connection_goes_on() -> None:
    gate = HeadGate(deny_private)
    to_card, now = gate.from_client(b"GET /private/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert to_card == b""
    assert now.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"no rule allows /private/" in now
    assert b"Connection: keep-alive" in now
    assert not gate.closing
    req = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    assert gate.from_client(req) == (req, b"")


def test_pipelined_denied_request_waits_for_earlier_responses() -> None:
    gate = HeadGate(deny_private)
    stream = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /private/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    to_card = b""
    now = b""
    for i in range(len(stream)):  # byte by byte
        c, n = gate.from_client(stream[i : i + 1])
        to_card += c
        now += n
    assert to_card == b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    assert now == b""
    assert gate.owed == 1
    card = response(b"first", chunked=True) + response(b"second")
    out = b"".join(gate.from_card(card[i : i + 7]) for i in range(0, len(card), 7))
    # The client reads three responses in order: first, the 403, second.
    client = h11.Connection(h11.CLIENT)
    client.receive_data(out)
    seen = []
    bodies = []
    for method, target in (("GET", "/a"), ("POST", "/private/x"), ("GET", "/b")):
        headers = [("Host", "x")] + ([("Content-Length", "3")] if method == "POST" else [])
        client.send(h11.Request(method=method, target=target, headers=headers))
        if method == "POST":
            client.send(h11.Data(data=b"abc"))
        client.send(h11.EndOfMessage())
        body = b""
        while not isinstance(event := client.next_event(), h11.EndOfMessage):
            assert event is not h11.NEED_DATA
            if isinstance(event, h11.Response):
                seen.append(event.status_code)
            if isinstance(event, h11.Data):
                body += event.data
        bodies.append(body)
        client.start_next_cycle()
    assert bodies[0] == b"first"
    assert bodies[2] == b"second"
    assert seen == [200, 403, 200]


def test_unframeable_requests_close() -> None:
    gate = HeadGate(deny_private)
    _, now = gate.from_client(
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc"
    )
    assert now.startswith(b"HTTP/1.1 400")
    assert gate.closing
    big = HeadGate(deny_private)
    _, now = big.from_client(b"GET /a HTTP/1.1\r\nX: " + b"y" * 20000)
    assert now.startswith(b"HTTP/1.1 431")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=10), st.lists(st.binary(max_size=64), max_size=10))
def test_fuzz_gate_never_raises(client: list[bytes], card: list[bytes]) -> None:
    gate = HeadGate(deny_private)
    for a, b in zip(client, card, strict=False):
        gate.from_client(a)
        gate.from_card(b)


@pytest.mark.parametrize("split", [1, 3, 50])
def test_head_request_and_304_have_no_body(split: int) -> None:
    gate = HeadGate(deny_private)
    stream = b"HEAD /a HTTP/1.1\r\n\r\nGET /private/ HTTP/1.1\r\n\r\n"
    to_card, n = gate.from_client(stream)
    assert to_card == b"HEAD /a HTTP/1.1\r\n\r\n"
    assert n == b""
    card = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    out = b"".join(gate.from_card(card[i : i + split]) for i in range(0, len(card), split))
    assert out.endswith(b"no rule allows /private/\r\n")
