"""The REST API (FastAPI's TestClient over a real SQLite-backed RasService): every endpoint,
the problem documents of its errors, keys kept out of every answer but one and out of the
logs, the OpenAPI document, the console's files, and `serve_api` in a running event loop."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import Response
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.10 prefers the httpx2 package and warns when it falls back to httpx (the
    # dev extra); the client works the same either way.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient
from ras_contract import FAST_HASHER, POLICY, T0, add_card, iccid, keys_of

import openscws
from openscws.errors import ListenError
from openscws.ras.accounts import key_checksum
from openscws.ras.api import MAX_CONTENT_BYTES, PROBLEM_JSON, create_app
from openscws.ras.api_server import serve_api, stop_api
from openscws.ras.db import RasDatabase
from openscws.ras.models import ContentVersion, Role
from openscws.ras.service import RasService, TooLarge
from openscws.ras.vault import Vault
from openscws.scws.paths import MAX_ADMIN_RESOURCE

V1 = "/api/v1"
OWNER = "api-test:1"


@pytest.fixture
def ras(sqlite_db: RasDatabase, vault: Vault) -> RasService:
    return RasService(sqlite_db, vault, POLICY, password_hasher=FAST_HASHER)


def admin_token(ras: RasService) -> str:
    """An admin's API token (the user is made on first use)."""
    if ras.accounts.user("root") is None:
        ras.accounts.add_user("root", "a long enough password", Role.ADMIN)
    return ras.accounts.create_token("root", "tests")[1]


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


def api_client(ras: RasService, app: Any, **kw: Any) -> TestClient:
    """A client of `app` as an admin with an API token, on http://localhost."""
    auth = {"Authorization": f"Bearer {admin_token(ras)}"}
    return TestClient(app, base_url="http://localhost", headers=auth, **kw)


@pytest.fixture
def client(ras: RasService, wakes: Wakes) -> Iterator[TestClient]:
    with api_client(ras, create_app(ras, on_change=wakes)) as c:
        yield c


def problem(r: Response, status: int, *fragments: str) -> dict[str, Any]:
    """Checks that `r` is a problem document with this status whose detail says each of
    `fragments`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    for fragment in fragments:
        assert fragment in body["detail"], body
    return body


def put(
    client: TestClient, path: str, body: bytes, ctype: str = "text/html", **kw: Any
) -> Response:
    headers = {"Content-Type": ctype, **kw.pop("headers", {})}
    return client.put(f"{V1}/content{path}", content=body, headers=headers, **kw)


def seed_content(client: TestClient) -> None:
    assert put(client, "/index.html", b"<p>v1</p>").status_code == 201
    assert put(client, "/app.js", b"let a = 1;", "text/javascript").status_code == 201


# -- service ---------------------------------------------------------------------------------


def test_health(client: TestClient) -> None:
    r = client.get(f"{V1}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": openscws.__version__}
    assert r.headers["cache-control"] == "no-store"


def test_health_reports_a_dead_database(ras: RasService, client: TestClient) -> None:
    def broken(_iccid: str) -> None:
        raise OSError("disk on fire")

    ras.card = broken  # type: ignore[method-assign]
    problem(client.get(f"{V1}/health"), 503, "database")


# -- cards -----------------------------------------------------------------------------------


def test_create_card_answers_check_values_never_keys(client: TestClient, ras: RasService) -> None:
    assert client.get(f"{V1}/cards").json() == []
    psk, kic, kid = keys_of(1)
    keys = {"psk_key": psk.hex(), "kic_key": kic.hex(), "kid_key": kid.hex()}
    r = client.post(f"{V1}/cards", json={"iccid": iccid(1), "msisdn": "+15550100001", **keys})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{V1}/cards/{iccid(1)}"
    assert r.headers["cache-control"] == "no-store"
    card = r.json()
    assert card["key_checks"] == {
        "psk_key": key_checksum(psk),
        "kic_key": key_checksum(kic),
        "kid_key": key_checksum(kid),
    }
    assert card["psk_identity"] == f"scws-{iccid(1)}"
    assert card["agent_id"] == f"//se-id/iccid/{iccid(1)}"
    assert (card["ota_tar"], card["ota_kic"], card["ota_kid"], card["ota_counter"]) == (
        "000000",
        0x12,
        0x12,
        0,
    )
    # The keys sent are the ones the server holds.
    assert ras.psk_lookup(f"scws-{iccid(1)}") == psk
    put(client, "/a.html", b"a")
    client.post(f"{V1}/campaigns", json={"name": "k"})
    (work,) = ras.claim_triggers(OWNER, 5, T0 + timedelta(days=3650))
    assert (work.keys.kic_key, work.keys.kid_key) == (kic, kid)

    # No answer shows a key, not even the first.
    for answer in (r, client.get(f"{V1}/cards"), client.get(f"{V1}/cards/{iccid(1)}")):
        assert answer.status_code in (200, 201)
        for key in keys.values():
            assert key not in answer.text.lower()


def test_create_card_needs_its_keys(client: TestClient) -> None:
    r = client.post(f"{V1}/cards", json={"iccid": iccid(3), "kic": 0x19, "kid": 0x15})
    body = problem(r, 422, "body.psk_key", "body.kic_key", "body.kid_key")
    assert "generated" not in json.dumps(body)


def test_create_card_with_given_keys(client: TestClient, ras: RasService) -> None:
    psk, kic, kid = keys_of(2)
    r = client.post(
        f"{V1}/cards",
        json={
            "iccid": iccid(2),
            "psk_identity": "id-2",
            "agent_id": "agent-2",
            "psk_key": psk.hex(),
            "kic_key": kic.hex().upper(),
            "kid_key": kid.hex(),
            "ota_tar": "b20100",
            "ota_counter": 41,
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body["key_checks"]) == {"psk_key", "kic_key", "kid_key"}
    for key in (psk, kic, kid):
        assert key.hex() not in r.text.lower()
    assert (body["msisdn"], body["ota_tar"], body["ota_counter"]) == (None, "B20100", 41)
    assert ras.psk_lookup("id-2") == psk


def test_card_errors(client: TestClient, ras: RasService) -> None:
    add_card(ras, 1)
    psk, kic, kid = keys_of(4)
    k = {"psk_key": psk.hex(), "kic_key": kic.hex(), "kid_key": kid.hex()}
    problem(client.post(f"{V1}/cards", json={"iccid": iccid(1), **k}), 409, "exists")
    r = client.post(f"{V1}/cards", json={"iccid": iccid(4), "psk_identity": "id-1", **k})
    problem(r, 409, "PSK identity")
    body = problem(client.post(f"{V1}/cards", json={"iccid": "123", **k}), 422, "body.iccid")
    assert body["errors"][0]["loc"] == "body.iccid"
    problem(
        client.post(f"{V1}/cards", json={"iccid": iccid(4), "colour": "red", **k}), 422, "colour"
    )
    problem(client.post(f"{V1}/cards", json={}), 422, "body.iccid")
    problem(
        client.post(
            f"{V1}/cards", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
    )
    problem(client.post(f"{V1}/cards", json={"iccid": iccid(4), "kic": 256, **k}), 422, "body.kic")
    # Rules of the service itself are 400s.
    r = client.post(f"{V1}/cards", json={"iccid": iccid(4), **k, "psk_key": "00" * 8})
    problem(r, 400, "16 to 64 bytes")
    r = client.post(f"{V1}/cards", json={"iccid": iccid(4), **k, "kic_key": "ab" * 5})
    problem(r, 400, "OTA keys", "5 bytes")
    assert "ab" * 5 not in r.text
    problem(client.post(f"{V1}/cards", json={"iccid": iccid(4), "kic": 0x10, **k}), 400, "OTA keys")
    assert [c.iccid for c in ras.list_cards()] == [iccid(1)]


def test_malformed_keys_are_not_echoed(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "c0ffee" * 5 + "zz"  # not hex, and a key-looking secret all the same
    r = client.post(f"{V1}/cards", json={"iccid": iccid(5), "psk_key": secret})
    body = problem(r, 422, "body.psk_key", "hex")
    assert secret not in r.text
    assert "input" not in json.dumps(body["errors"])
    r = client.post(f"{V1}/cards", json={"iccid": iccid(5), "kid_key": 12345})
    problem(r, 422, "body.kid_key")
    assert "12345" not in r.text
    assert secret not in caplog.text


def test_get_and_delete_card(client: TestClient, ras: RasService) -> None:
    add_card(ras, 1)
    seed_content(client)
    client.post(f"{V1}/campaigns", json={"name": "c1"})
    card = client.get(f"{V1}/cards/{iccid(1)}").json()
    assert card["iccid"] == iccid(1)
    assert card["msisdn"] == "+15550100001"
    (job,) = card["jobs"]
    assert (job["state"], job["attempts"], job["campaign_id"]) == ("pending", 0, 1)
    assert [op["path"] for op in job["operations"]] == ["/app.js", "/index.html"]
    assert client.get(f"{V1}/cards/{iccid(1)}", params={"jobs": 0}).json()["jobs"] == []
    problem(client.get(f"{V1}/cards/{iccid(1)}", params={"jobs": -1}), 422, "query.jobs")
    problem(client.get(f"{V1}/cards/{iccid(9)}"), 404, iccid(9))

    r = client.delete(f"{V1}/cards/{iccid(1)}")
    assert r.status_code == 204
    assert r.content == b""
    problem(client.delete(f"{V1}/cards/{iccid(1)}"), 404, iccid(1))
    assert client.get(f"{V1}/cards").json() == []


def test_session_logs(client: TestClient, ras: RasService) -> None:
    add_card(ras, 1)
    for minute, outcome in ((1, "retry"), (2, "done")):
        ras.log_session(
            iccid(1),
            job_id=None,
            started_at=T0 + timedelta(minutes=minute),
            ended_at=T0 + timedelta(minutes=minute, seconds=3),
            outcome=outcome,
            detail=["PSK-TLS ok", f"outcome {outcome}"],
        )
    logs = client.get(f"{V1}/cards/{iccid(1)}/sessions").json()
    assert [e["outcome"] for e in logs] == ["done", "retry"]  # newest first
    assert logs[0]["detail"] == ["PSK-TLS ok", "outcome done"]
    assert logs[0]["iccid"] == iccid(1)
    assert logs[0]["started_at"].startswith("2025-03-01T12:02:00")
    assert len(client.get(f"{V1}/cards/{iccid(1)}/sessions", params={"limit": 1}).json()) == 1
    problem(client.get(f"{V1}/cards/{iccid(1)}/sessions", params={"limit": 0}), 422, "limit")
    problem(client.get(f"{V1}/cards/{iccid(9)}/sessions"), 404, iccid(9))


# -- content ---------------------------------------------------------------------------------


def test_put_content_versions(client: TestClient) -> None:
    r = put(
        client,
        "/img/logo.svg",
        b"<svg/>",
        "image/svg+xml",
        headers={"Content-Encoding": "identity", "Content-Language": "en"},
        params={"realm": "members"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{V1}/content/img/logo.svg/versions/1"
    info = r.json()
    assert info["path"] == "/img/logo.svg"
    assert (info["version"], info["size"], info["deleted"]) == (1, 6, False)
    assert (info["content_type"], info["content_encoding"]) == ("image/svg+xml", "identity")
    assert (info["content_language"], info["realm"]) == ("en", "members")
    assert len(info["sha256"]) == 64

    # Same bytes and headers: no new version, 200. New bytes: version 2.
    again = put(
        client,
        "/img/logo.svg",
        b"<svg/>",
        "image/svg+xml",
        headers={"Content-Encoding": "identity", "Content-Language": "en"},
        params={"realm": "members"},
    )
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert put(client, "/img/logo.svg", b"<svg></svg>", "image/svg+xml").json()["version"] == 2

    # No Content-Type: octet-stream.
    r = client.put(f"{V1}/content/blob.bin", content=b"\x00\x01")
    assert r.status_code == 201
    assert r.json()["content_type"] == "application/octet-stream"

    current = client.get(f"{V1}/content").json()
    assert [(c["path"], c["version"]) for c in current] == [("/blob.bin", 1), ("/img/logo.svg", 2)]
    history = client.get(f"{V1}/content/img/logo.svg/history").json()
    assert [(h["version"], h["realm"]) for h in history] == [(1, "members"), (2, None)]


def test_get_version_body(client: TestClient) -> None:
    put(client, "/a.html", b"<p>one</p>", headers={"Content-Language": "fr"})
    put(client, "/a.html", b"<p>two</p>", "text/html; charset=utf-8")
    r = client.get(f"{V1}/content/a.html/versions/1")
    assert r.status_code == 200
    assert r.content == b"<p>one</p>"
    assert r.headers["content-type"] == "text/html"
    assert r.headers["content-language"] == "fr"
    assert r.headers["x-content-version"] == "1"
    first = client.get(f"{V1}/content/a.html/history").json()[0]
    assert r.headers["etag"] == f'"{first["sha256"]}"'
    r = client.get(f"{V1}/content/a.html/versions/2")
    assert r.content == b"<p>two</p>"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    problem(client.get(f"{V1}/content/a.html/versions/3"), 404, "no version 3 of /a.html")
    problem(client.get(f"{V1}/content/a.html/versions/x"), 422, "version")
    problem(client.get(f"{V1}/content/nothing.html/history"), 404, "/nothing.html")


def test_content_paths_that_look_like_routes(client: TestClient) -> None:
    # The route suffixes bind to the end, so a path ending in /history is still reachable.
    assert put(client, "/x/history", b"h").status_code == 201
    assert put(client, "/x", b"x").status_code == 201
    assert [v["path"] for v in client.get(f"{V1}/content/x/history/history").json()] == [
        "/x/history"
    ]
    assert [v["path"] for v in client.get(f"{V1}/content/x/history").json()] == ["/x"]
    assert client.get(f"{V1}/content/x/history/versions/1").content == b"h"
    # A trailing "/" names a directory, never a resource: one would hide its index.html.
    problem(put(client, "/", b"root"), 400, "directory")
    problem(put(client, "/dir/", b"dir"), 400, "directory")


def test_content_errors(client: TestClient) -> None:
    problem(put(client, "/.scws/transactions/x", b"no"), 400, "/.scws/")
    problem(put(client, "/a%20b.html", b"no"), 400, "printable ASCII")
    r = put(client, "/a.html", b"no", headers={"Content-Language": b"\xe9n"})
    problem(r, 400, "Content-Language", "printable ASCII")
    problem(put(client, "/a.html", b"x", headers={"Content-Language": "e" * 65}), 422)
    r = put(client, "/big.bin", b"\0" * (MAX_CONTENT_BYTES + 1), "application/octet-stream")
    problem(r, 413, str(MAX_CONTENT_BYTES))
    # What the card refuses, the repository refuses at once, with the card's reason.
    problem(put(client, "/a%5Cb.html", b"no"), 400, "forbidden characters")
    assert client.get(f"{V1}/content").json() == []


def test_the_repository_takes_what_one_admin_command_carries(ras: RasService) -> None:
    assert MAX_CONTENT_BYTES == MAX_ADMIN_RESOURCE
    assert ras.put_content("/max.bin", b"\0" * MAX_ADMIN_RESOURCE, "application/x").version == 1
    with pytest.raises(TooLarge, match=f"over the {MAX_ADMIN_RESOURCE} bytes"):
        ras.put_content("/big.bin", b"\0" * (MAX_ADMIN_RESOURCE + 1), "application/x")


def test_purge_erases_an_entry_the_cards_refuse(ras: RasService, client: TestClient) -> None:
    seed_content(client)
    with ras._db.write() as s:  # as an older server could store it
        s.add(
            ContentVersion(
                path="/a\\b.html",
                version=1,
                sha256="0" * 64,
                body=b"x",
                content_type="text/html",
                deleted=False,
                created_at=datetime.now(UTC),
            )
        )
    assert "/a\\b.html" in [c.path for c in ras.list_content()]
    assert ras.purge_content("/a\\b.html") == 1
    assert ras.content_history("/a\\b.html") == []
    assert ras.purge_content("/a\\b.html") == 0
    assert [c.path for c in ras.list_content()] == ["/app.js", "/index.html"]


def test_delete_content(client: TestClient) -> None:
    seed_content(client)
    r = client.delete(f"{V1}/content/app.js")
    assert r.status_code == 200
    tombstone = r.json()
    assert (tombstone["path"], tombstone["version"], tombstone["deleted"]) == ("/app.js", 2, True)
    assert [c["path"] for c in client.get(f"{V1}/content").json()] == ["/index.html"]
    assert [v["deleted"] for v in client.get(f"{V1}/content/app.js/history").json()] == [
        False,
        True,
    ]
    problem(client.get(f"{V1}/content/app.js/versions/2"), 404, "deletion")
    assert client.get(f"{V1}/content/app.js/versions/1").content == b"let a = 1;"
    problem(client.delete(f"{V1}/content/app.js"), 409, "already deleted")
    problem(client.delete(f"{V1}/content/never.html"), 404, "/never.html")
    assert put(client, "/app.js", b"back", "text/javascript").json()["version"] == 3


# -- campaigns -------------------------------------------------------------------------------


def test_campaign_life(client: TestClient, ras: RasService, wakes: Wakes) -> None:
    problem(client.post(f"{V1}/campaigns", json={"name": "early"}), 400, "nothing to send")
    seed_content(client)
    problem(client.post(f"{V1}/campaigns", json={"name": "early"}), 400, "no cards")
    assert wakes.count == 0
    cards = [add_card(ras, n) for n in range(4)]

    r = client.post(
        f"{V1}/campaigns", json={"name": "spring", "paths": ["/index.html"], "max_attempts": 2}
    )
    assert r.status_code == 201, r.text
    assert wakes.count == 1
    campaign = r.json()
    cid = campaign["id"]
    assert r.headers["location"] == f"{V1}/campaigns/{cid}"
    assert (campaign["name"], campaign["state"], campaign["jobs"], campaign["open_jobs"]) == (
        "spring",
        "active",
        4,
        4,
    )
    assert campaign["operations"] == [{"op": "put", "path": "/index.html", "version": 1}]
    assert campaign["progress"] == {
        "pending": 4,
        "triggered": 0,
        "in_session": 0,
        "done": 0,
        "failed": 0,
    }

    # Drive the jobs: one done, one failed, one in session, one triggered.
    now = T0 + timedelta(days=3650)
    work = ras.open_session("id-0", OWNER, now)
    assert work is not None
    assert ras.finish_job(work.job_id, OWNER, "done", None, now)
    work = ras.open_session("id-1", OWNER, now)
    assert work is not None
    assert ras.finish_job(work.job_id, OWNER, "failed", "507 on PUT /index.html", now)
    assert ras.open_session("id-2", OWNER, now) is not None
    (trigger,) = ras.claim_triggers(OWNER, 10, now)
    assert trigger.iccid == cards[3]
    ras.record_pap_codes({trigger.job_id: 1000})

    detail = client.get(f"{V1}/campaigns/{cid}").json()
    assert detail["trigger"] is None  # the server's configured default
    assert [c["pap_code"] for c in sorted(detail["cards"], key=lambda c: c["iccid"])] == [
        None,
        None,
        None,
        1000,
    ]
    assert detail["progress"] == {
        "pending": 0,
        "triggered": 1,
        "in_session": 1,
        "done": 1,
        "failed": 1,
    }
    rows = {c["iccid"]: c for c in detail["cards"]}
    assert [rows[i]["state"] for i in cards] == ["done", "failed", "in_session", "triggered"]
    assert rows[cards[1]]["last_error"] == "507 on PUT /index.html"
    assert (rows[cards[3]]["attempts"], rows[cards[3]]["max_attempts"]) == (1, 2)
    assert all(len(c["job_id"]) == 36 for c in detail["cards"])
    listed = client.get(f"{V1}/campaigns").json()
    assert [(c["id"], c["open_jobs"], c["progress"]["done"]) for c in listed] == [(cid, 2, 1)]
    assert listed[0]["trigger"] is None
    assert "cards" not in listed[0]

    # Cancel: the triggered job fails, the running session may finish.
    r = client.post(f"{V1}/campaigns/{cid}/cancel")
    assert r.status_code == 200
    assert r.json()["cancelled"] == 1
    assert r.json()["campaign"]["state"] == "cancelled"
    assert r.json()["campaign"]["progress"]["failed"] == 2
    assert client.post(f"{V1}/campaigns/{cid}/cancel").json()["cancelled"] == 0
    problem(client.post(f"{V1}/campaigns/99/cancel"), 404, "99")
    problem(client.get(f"{V1}/campaigns/99"), 404, "no campaign 99")
    problem(client.get(f"{V1}/campaigns/first"), 422, "campaign_id")


def test_campaign_errors_and_finished_campaigns(client: TestClient, ras: RasService) -> None:
    seed_content(client)
    add_card(ras, 1)
    r = client.post(f"{V1}/campaigns", json={"name": "x", "cards": [iccid(1), iccid(7)]})
    problem(r, 404, iccid(7))
    problem(client.post(f"{V1}/campaigns", json={"name": "x", "paths": ["/nope"]}), 404, "/nope")
    problem(client.post(f"{V1}/campaigns", json={"name": "x", "paths": ["rel"]}), 400, "path")
    problem(client.post(f"{V1}/campaigns", json={"name": "x", "max_attempts": 0}), 422)
    problem(client.post(f"{V1}/campaigns", json={"name": ""}), 422, "body.name")
    problem(client.post(f"{V1}/campaigns", json={"name": " padded "}), 400, "campaign name")
    assert client.get(f"{V1}/campaigns").json() == []

    cid = client.post(f"{V1}/campaigns", json={"name": "x", "cards": [iccid(1)]}).json()["id"]
    work = ras.open_session("id-1", OWNER, T0 + timedelta(days=3650))
    assert work is not None
    assert ras.finish_job(work.job_id, OWNER, "done", None, T0 + timedelta(days=3650))
    assert client.get(f"{V1}/campaigns/{cid}").json()["state"] == "finished"
    problem(client.post(f"{V1}/campaigns/{cid}/cancel"), 409, "finished")


def test_a_failing_wake_does_not_fail_the_campaign(
    ras: RasService, caplog: pytest.LogCaptureFixture
) -> None:
    def wake() -> None:
        raise RuntimeError("loop gone")

    add_card(ras, 1)
    ras.put_content("/a", b"a", "text/plain")
    with api_client(ras, create_app(ras, on_change=wake)) as client:
        assert client.post(f"{V1}/campaigns", json={"name": "x"}).status_code == 201
    assert "waking the trigger loop failed" in caplog.text


# -- errors, keys, logs ----------------------------------------------------------------------


def test_http_errors_are_problems(client: TestClient) -> None:
    problem(client.get(f"{V1}/nothing"), 404)
    r = client.put(f"{V1}/cards", json={})
    problem(r, 405)
    assert "GET" in r.headers["allow"]


def test_unexpected_errors_are_problems_without_traceback(
    ras: RasService, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("secret internals")

    ras.list_cards = broken  # type: ignore[method-assign,assignment]
    with api_client(ras, create_app(ras), raise_server_exceptions=False) as client:
        r = client.get(f"{V1}/cards")
    body = problem(r, 500, "server's log")
    assert "secret internals" not in r.text
    assert "Traceback" not in json.dumps(body)
    assert "RuntimeError" in caplog.text


def test_keys_stay_out_of_answers_and_logs(
    client: TestClient, ras: RasService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    psk, kic, kid = keys_of(3)
    given = {"psk_key": psk.hex(), "kic_key": kic.hex(), "kid_key": kid.hex()}
    assert client.post(f"{V1}/cards", json={"iccid": iccid(3), **given}).status_code == 201
    psk4, kic4, kid4 = keys_of(4)
    given4 = {"psk_key": psk4.hex(), "kic_key": kic4.hex(), "kid_key": kid4.hex()}
    created = client.post(
        f"{V1}/cards", json={"iccid": iccid(4), "msisdn": "+15550100004", **given4}
    )
    assert created.status_code == 201
    secrets = [*given.values(), *given4.values()]
    secrets += [s.upper() for s in secrets] + [s.lower() for s in secrets]

    seed_content(client)
    cid = client.post(f"{V1}/campaigns", json={"name": "all"}).json()["id"]
    ras.claim_triggers(OWNER, 10, T0 + timedelta(days=3650))
    ras.log_session(
        iccid(4), job_id=None, started_at=T0, ended_at=None, outcome="running", detail=["x"]
    )
    answers = [
        client.get(f"{V1}/cards"),
        client.get(f"{V1}/cards/{iccid(3)}"),
        client.get(f"{V1}/cards/{iccid(4)}"),
        client.get(f"{V1}/cards/{iccid(4)}/sessions"),
        client.get(f"{V1}/campaigns"),
        client.get(f"{V1}/campaigns/{cid}"),
        client.post(f"{V1}/campaigns/{cid}/cancel"),
        client.post(f"{V1}/cards", json={"iccid": iccid(3), **given}),  # 409
        client.get(f"{V1}/openapi.json"),
    ]
    for r in answers:
        assert r.status_code < 500
        for secret in secrets:
            assert secret not in r.text, r.request.url
    assert caplog.records  # the service did log (card added, campaign, ...)
    for secret in secrets:
        assert secret not in caplog.text


# -- the OpenAPI document and the console ----------------------------------------------------


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict)
        assert part in node, f"unresolved {ref}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                assert isinstance(value, str)
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_openapi_document(client: TestClient) -> None:
    r = client.get(f"{V1}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "openscws remote administration"
    assert doc["info"]["version"] == openscws.__version__

    paths = doc["paths"]
    expected = {
        f"{V1}/health": {"get"},
        f"{V1}/cards": {"get", "post"},
        f"{V1}/cards/{{iccid}}": {"get", "delete"},
        f"{V1}/cards/{{iccid}}/sessions": {"get"},
        f"{V1}/content": {"get"},
        f"{V1}/content/{{path}}": {"put", "delete"},
        f"{V1}/content/{{path}}/history": {"get"},
        f"{V1}/content/{{path}}/versions/{{version}}": {"get"},
        f"{V1}/campaigns": {"get", "post"},
        f"{V1}/campaigns/{{campaign_id}}": {"get"},
        f"{V1}/campaigns/{{campaign_id}}/cancel": {"post"},
        f"{V1}/auth/login": {"post"},
        f"{V1}/auth/logout": {"post"},
        f"{V1}/auth/me": {"get"},
        f"{V1}/tokens": {"get", "post"},
        f"{V1}/tokens/{{token_id}}": {"delete"},
        f"{V1}/audit": {"get"},
    }
    assert {p: set(ops) for p, ops in paths.items()} == expected
    operation_ids = set()
    for path, item in paths.items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op["responses"], where
            assert op.get("summary") or op.get("description"), where
            operation_ids.add(op["operationId"])
            for code, response in op["responses"].items():
                assert response.get("description"), (where, code)
                if code[0] in "45":
                    # Every error is documented as a problem document.
                    assert set(response["content"]) == {PROBLEM_JSON}, (where, code)
                    schema = response["content"][PROBLEM_JSON]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (where, code)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), where
    assert len(operation_ids) == sum(len(ops) for ops in expected.values())

    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for ref in refs(doc):
        resolve(doc, ref)
    for schema in schemas.values():
        assert schema.get("type") == "object" or "enum" in schema or "anyOf" in schema
    # Keys a client sends are write-only secrets; no response model has a key.
    create = schemas["CardCreate"]["properties"]
    for name in ("psk_key", "kic_key", "kid_key"):
        assert create[name]["writeOnly"] is True
    assert {"psk_key", "kic_key", "kid_key"} <= set(schemas["CardCreate"]["required"])
    for name, schema in schemas.items():
        if name not in ("CardCreate", "LoginIn"):  # what clients send
            for prop in schema.get("properties", {}).values():
                assert prop.get("writeOnly") is not True, name
    assert "generated_keys" not in json.dumps(doc)
    body = paths[f"{V1}/content/{{path}}"]["put"]["requestBody"]
    assert body["content"]["*/*"]["schema"]["format"] == "binary"
    headers = {p["name"].lower() for p in paths[f"{V1}/content/{{path}}"]["put"]["parameters"]}
    assert {"content-encoding", "content-language", "realm"} <= headers

    # The docs page is for a logged-in console (a token cannot be sent by a browser).
    assert client.get("/api/docs", follow_redirects=False).headers["location"] == "/login.html"


def test_api_docs_page_works_offline(client: TestClient, ras: RasService) -> None:
    """Every script, stylesheet and icon the docs page names is served by the server itself:
    no CDN, so the page is not blank on a machine without Internet access."""
    login(client, ras)
    page = client.get("/api/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assets = [u for u in urls if not u.endswith("openapi.json")]
    assert assets, page.text
    assert not [u for u in urls if "//" in u], urls  # nothing from another host
    kinds = {}
    for url in assets:
        r = client.get(url)
        assert r.status_code == 200, url
        assert len(r.content) > 100, url
        kinds[url.rsplit(".", 1)[-1]] = r.headers["content-type"]
    assert "javascript" in kinds["js"]
    assert kinds["css"].startswith("text/css")
    # The bundle is Swagger UI 5 or newer: FastAPI documents the API as OpenAPI 3.1.
    bundle = client.get("/api/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert client.get(f"{V1}/openapi.json").json()["openapi"].startswith("3.1")
    assert "/api/docs" not in client.get(f"{V1}/openapi.json").text


def login(client: TestClient, ras: RasService, role: Role = Role.ADMIN) -> str:
    """Logs `client` in to the console as a user of `role`; returns the CSRF token."""
    name = f"console-{role}"
    if ras.accounts.user(name) is None:
        ras.accounts.add_user(name, "a long enough password", role)
    r = client.post(f"{V1}/auth/login", json={"name": name, "password": "a long enough password"})
    assert r.status_code == 200, r.text
    csrf: str = r.json()["csrf_token"]
    return csrf


def test_console_is_served(ras: RasService) -> None:
    client = TestClient(create_app(ras), base_url="http://localhost")
    # Not logged in: the page is the login form; the scripts and style are no secret.
    r = client.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login.html")
    for hidden in ("/index.html", "/api/docs"):
        assert client.get(hidden, follow_redirects=False).status_code in (303, 404)
    page = client.get("/login.html")
    assert page.status_code == 200
    assert '<script type="module" src="login.js"></script>' in page.text
    login(client, ras)
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="console.js"></script>' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        asset = client.get(f"/{name}")
        assert asset.status_code == 200
        assert kind in asset.headers["content-type"]
    problem(client.get("/missing.png"), 404)
    # The docs UI has its own policy: scripts from this origin, its inline script by hash.
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert f"{V1}/openapi.json" in docs.text
    policy = docs.headers["content-security-policy"]
    assert "'sha256-" in policy
    assert "unsafe-inline" not in policy
    assert "script-src 'self'" in policy


# -- serve_api -------------------------------------------------------------------------------


def _get(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def _post(url: str, body: dict[str, Any], token: str) -> int:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    req = urllib.request.Request(url, data, headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def test_serve_api_in_a_running_loop(ras: RasService) -> None:
    add_card(ras, 1)
    ras.put_content("/a", b"a", "text/plain")
    woken: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []
    token = admin_token(ras)

    def wake() -> None:
        woken.append((asyncio.get_running_loop(), threading.current_thread()))

    async def main() -> None:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        server = await serve_api(create_app(ras, on_change=wake), "127.0.0.1", 0)
        try:
            assert server.started
            assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
            assert server.url == f"http://127.0.0.1:{server.port}/"
            status, body = await asyncio.to_thread(_get, f"{server.url}api/v1/health", token)
            assert status == 200
            assert json.loads(body)["status"] == "ok"
            status = await asyncio.to_thread(
                _post, f"{server.url}api/v1/campaigns", {"name": "x"}, token
            )
            assert status == 201
            # on_change ran on this loop's thread, where RasServer.wake must be called.
            assert woken == [(asyncio.get_running_loop(), threading.current_thread())]

            # The port is taken now: a clear ListenError, not uvicorn's sys.exit.
            with pytest.raises(
                ListenError, match=f"REST API: cannot listen on 127.0.0.1:{server.port}"
            ):
                await serve_api(create_app(ras), "127.0.0.1", server.port)
        finally:
            await stop_api(server)
        assert server.serve_task is not None
        assert server.serve_task.done()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), 1).close()
        await stop_api(server)  # twice is harmless

    asyncio.run(main())


def test_acp_campaign(client: TestClient, ras: RasService) -> None:
    """A campaign that sets the cards' SCWS access rules: the policy document checked on
    creation, the job a single acp operation."""
    add_card(ras, 0)
    policy = {"rules": [{"app": "uid:0", "ports": [3516], "paths": ["/app/"]}]}
    r = client.post(f"{V1}/campaigns", json={"name": "lock-down", "acp": policy})
    assert r.status_code == 201, r.text
    assert r.json()["operations"] == [{"op": "acp", "path": "/.scws/acp", "version": None}]
    bad = {"rules": [{"app": "md5:00"}]}
    problem(client.post(f"{V1}/campaigns", json={"name": "x", "acp": bad}), 400, "access rules")
