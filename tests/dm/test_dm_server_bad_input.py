"""Bad input at the DM server's entry (`DmService.handle`, no network): malformed XML and
WBXML, an external entity, a billion-laughs body, a wrong MsgRef, a replayed nonce, missing
credentials, wrong requests; each gets an HTTP status or a SyncML status, never an exception,
and the session goes on. Fuzzed with hypothesis."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dm_server_env import SERVER_URI, basic, client, device_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.dm import message as m
from openscws.dm.db import DmDatabase, DmStore, default_url
from openscws.dm.db_models import HttpAuth
from openscws.dm.server import DmAnswer, DmRequest, DmService
from openscws.dm.session import ClientSession, Outgoing
from openscws.ras.vault import Vault

XML, WBXML = m.CONTENT_TYPE_XML, m.CONTENT_TYPE_WBXML


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DmService]:
    root: Path = tmp_path_factory.mktemp("dms-bad")
    db = DmDatabase(default_url(root))
    db.upgrade()
    store = DmStore(db, Vault.create(root))
    for dev, http in (("IMEI:OPEN", HttpAuth.NONE), ("IMEI:BASIC", HttpAuth.BASIC)):
        store.add_device(
            dev, app_auth="syncml:auth-md5", app_username="dev", app_password="s3cret",
            server_id="openscws-dm", server_password="srv", http_auth=http,
            http_username="u" if http is HttpAuth.BASIC else None,
            http_password="p" if http is HttpAuth.BASIC else None,
        )  # fmt: skip
    counter = itertools.count()
    yield DmService(store, server_uri=SERVER_URI, new_nonce=lambda: f"n{next(counter)}".encode())
    db.dispose()


def req(body: bytes, ctype: str = XML, **headers: str) -> DmRequest:
    return DmRequest("POST", "/dm", {"content-type": ctype, **headers}, body)


def reply(service: DmService, out: Outgoing, **headers: str) -> DmAnswer:
    return service.handle(req(out.body, out.content_type, **dict(out.headers), **headers))


def ctype_of(answer: DmAnswer) -> str:
    assert answer.status == 200, answer.body
    return dict(answer.headers)["Content-Type"]


def test_wrong_requests(service: DmService) -> None:
    body = client("IMEI:OPEN").start().body
    assert service.handle(DmRequest("GET", "/dm", {}, b"")).status == 405
    assert service.handle(DmRequest("POST", "/other", {}, body)).status == 404
    assert service.handle(req(body, "text/xml")).status == 415
    assert service.handle(req(b"x" * (1 << 20 + 1))).status == 413


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"<SyncML><SyncHdr>", XML),
        (b"not xml at all", XML),
        (b'<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         b"<SyncML>&x;</SyncML>", XML),
        (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
         + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 9))
         + b"]><SyncML>&lol8;</SyncML>", XML),
        (b"\x03\x01\x6a\x00\xff\xff\xff", WBXML),
        (b"\x03", WBXML),
        (b"", WBXML),
    ],
    ids=["truncated", "garbage", "external-entity", "billion-laughs", "bad-wbxml",
         "short-wbxml", "empty"],
)  # fmt: skip
def test_malformed_messages_get_400(service: DmService, body: bytes, ctype: str) -> None:
    answer = service.handle(req(body, ctype, authorization="Basic eDp5"))
    assert answer.status == 400
    assert answer.body.startswith(b"SyncML status 400")
    assert b"passwd" not in answer.body or b"root:" not in answer.body


def test_missing_transport_credentials(service: DmService) -> None:
    body = client("IMEI:BASIC").start().body
    answer = service.handle(req(body))
    assert answer.status == 401
    assert any(k == "WWW-Authenticate" for k, _ in answer.headers)
    unknown = service.handle(req(client("IMEI:WHO").start().body))
    assert unknown.status == 401  # the same answer for an unknown device
    ok = service.handle(req(body, **{k.lower(): v for k, v in basic("u", "p").items()}))
    assert ok.status == 200


def test_missing_and_replayed_syncml_credentials(service: DmService) -> None:
    # No credential at all: SyncML 407 in the header status.
    tree = device_tree("IMEI:OPEN")
    tree.find("./DMAcc/1/AppAuth/1/AAuthType").value = "NONE"  # type: ignore[union-attr]
    bare = ClientSession(tree, "1", session_id="A1")
    answer = reply(service, bare.start())
    assert answer.status == 200
    assert m.decode(answer.body).body.commands[0].data == 407  # type: ignore[union-attr]
    # A Package #1 whose digest was accepted, sent again: the nonce rolled over, so 401.
    first = client("IMEI:OPEN")
    out = first.start()
    challenged = reply(service, out)
    out = first.receive(challenged.body, ctype_of(challenged))
    assert out is not None
    accepted = reply(service, out)
    assert m.decode(accepted.body).body.commands[0].data == 212  # type: ignore[union-attr]
    # The same credential in a new session (its own SessionID, MsgID 1): an attacker's replay.
    replayed = out.body.replace(b"<SessionID>", b"<SessionID>9", 1)
    replayed = replayed.replace(b"<MsgID>2</MsgID>", b"<MsgID>1</MsgID>", 1)
    again = service.handle(req(replayed, XML))
    assert again.status == 200, again.body
    status = m.decode(again.body).body.commands[0]
    assert isinstance(status, m.Status)
    assert status.data == 401


def test_wrong_msgref_leaves_the_session_intact(service: DmService) -> None:
    job = service.store.create_job("IMEI:OPEN", [{"op": "Get", "uri": "./DevInfo/Mod"}])
    session = client("IMEI:OPEN")
    out: Outgoing | None = session.start()
    while out is not None and b"<Cmd>Get</Cmd>" not in out.body:  # up to Package #3
        answer = reply(service, out)
        out = session.receive(answer.body, ctype_of(answer))
    assert out is not None
    ref = re.search(rb"<Status><CmdID>\d+</CmdID><MsgRef>(\d+)</MsgRef>", out.body)
    assert ref is not None
    wrong = out.body.replace(b"<MsgRef>%s</MsgRef>" % ref.group(1), b"<MsgRef>77</MsgRef>")
    refused = service.handle(req(wrong))
    assert refused.status == 400
    assert b"MsgRef" in refused.body
    good = reply(service, out)  # the session goes on as if nothing happened
    out = session.receive(good.body, ctype_of(good))
    while out is not None:
        answer = reply(service, out)
        out = session.receive(answer.body, ctype_of(answer))
    done = service.store.job(job.id)
    assert done is not None
    assert done.state == "done"
    assert done.results[0]["data"] == "virtual"


def test_reply_for_an_unknown_status_is_refused(service: DmService) -> None:
    session = client("IMEI:OPEN")
    out = session.start()
    status = (
        b"<Status><CmdID>9</CmdID><MsgRef>3</MsgRef><CmdRef>1</CmdRef><Cmd>Get</Cmd>"
        b"<Data>200</Data></Status><Final/>"
    )
    bad = out.body.replace(b"<Final/>", status)
    assert service.handle(req(bad)).status == 400
    assert reply(service, out).status == 200


_VALID = client("IMEI:OPEN").start()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pos=st.integers(min_value=0, max_value=len(_VALID.body)),
    junk=st.binary(max_size=12),
    cut=st.booleans(),
    wbxml=st.booleans(),
)
def test_fuzz_the_server_entry(
    service: DmService, pos: int, junk: bytes, cut: bool, wbxml: bool
) -> None:
    base = m.encode(_VALID.message, wbxml_form=True) if wbxml and _VALID.message else _VALID.body
    body = base[:pos] + junk + (b"" if cut else base[pos + len(junk) :])
    answer = service.handle(req(body, WBXML if wbxml else XML))
    assert answer.status in (200, 400, 401, 403, 407, 413)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200), ctype=st.sampled_from([XML, WBXML]))
def test_fuzz_random_bodies(service: DmService, body: bytes, ctype: str) -> None:
    assert service.handle(req(body, ctype)).status in (400, 401)


def test_open_sessions_are_capped_and_idle_ones_dropped(service: DmService) -> None:
    from openscws.dm import server

    clock = [1000.0]
    capped = DmService(service.store, server_uri=SERVER_URI, clock=lambda: clock[0])
    job = service.store.create_job("IMEI:OPEN", [{"op": "Get", "uri": "./DevInfo/Mod"}])
    opened = [client("IMEI:OPEN") for _ in range(server.MAX_SESSIONS_PER_DEVICE + 1)]
    answers = [capped.handle(req(c.start().body)) for c in opened]
    assert [a.status for a in answers[:-1]] == [200] * server.MAX_SESSIONS_PER_DEVICE
    assert answers[-1].status == 503
    assert capped.session_count == server.MAX_SESSIONS_PER_DEVICE
    claimed = service.store.job(job.id)
    assert claimed is not None
    # The stalled sessions never authenticated (each got a challenge): none holds the job.
    assert claimed.state == "pending"
    clock[0] += server.SESSION_IDLE_S + 1
    assert capped.handle(req(client("IMEI:OPEN").start().body)).status == 200
    assert capped.session_count == 1  # the idle ones are gone
    waiting = service.store.job(job.id)
    assert waiting is not None
    assert waiting.state == "pending"  # for the first session that authenticates


@pytest.mark.parametrize("encoding", ["ATF-8", "big5", "utf-32", "rot13", "idna"])
def test_odd_xml_encodings_get_400(service: DmService, encoding: str) -> None:
    body = b'<?xml version="1.0" encoding="%s"?><SyncML/>' % encoding.encode()
    answer = service.handle(req(body, authorization="Basic eDp5"))
    assert answer.status == 400
    assert answer.body.startswith(b"SyncML status 400")
