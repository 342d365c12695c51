"""The DM server's REST API (admin server API tokens, roles) and `openscws dm device|job`:
a job created over REST runs in the device's next session and its results show."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dm_server_env import Env, cert_context, client, post, run_env, run_session

from openscws.cli import main
from openscws.dm import message as m
from openscws.dm.api import DmApi
from openscws.dm.session import Outgoing
from openscws.ras.accounts import Accounts
from openscws.ras.db import RasDatabase
from openscws.ras.models import Role

API = "/api/v1/dm"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Env, dict[Role, str]]]:
    root = tmp_path_factory.mktemp("dms-api")
    ras = RasDatabase(f"sqlite:///{root / 'ras.db'}")
    ras.upgrade()
    accounts = Accounts(ras)
    tokens = {}
    for role in Role:
        accounts.add_user(f"u-{role}", "a long password 1", role)
        tokens[role] = accounts.create_token(f"u-{role}", "t")[1]
    for e in run_env(root):
        e.service.api = DmApi(e.store, accounts)
        yield e, tokens
    ras.dispose()


def call(
    e: Env, method: str, path: str, token: str | None, doc: object = None
) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = b"" if doc is None else json.dumps(doc).encode()
    r = post(e, cert_context(e), body, "application/json", headers, path=API + path, method=method)
    return r.status, json.loads(r.body) if r.body else None


def test_roles_and_problems(env: tuple[Env, dict[Role, str]]) -> None:
    e, t = env
    assert call(e, "GET", "/devices", None)[0] == 401
    assert call(e, "GET", "/devices", "oscws_forged")[0] == 401
    device = {
        "dev_id": "IMEI:API-1", "app_username": "dev", "app_password": "s3cret",
        "server_id": "openscws-dm", "server_password": "srv", "http_auth": "basic",
        "http_username": "api1", "http_password": "pw",
    }  # fmt: skip
    assert call(e, "POST", "/devices", t[Role.OPERATOR], device)[0] == 403
    status, shown = call(e, "POST", "/devices", t[Role.ADMIN], device)
    assert status == 201
    assert "pw" not in json.dumps(shown)
    assert "s3cret" not in json.dumps(shown)
    assert call(e, "POST", "/devices", t[Role.ADMIN], device)[0] == 409
    status, listed = call(e, "GET", "/devices", t[Role.VIEWER])
    assert status == 200
    assert "s3cret" not in json.dumps(listed)
    bad = {**device, "dev_id": "IMEI:API-2", "http_auth": "kerberos"}
    assert call(e, "POST", "/devices", t[Role.ADMIN], bad)[0] == 422
    assert call(e, "POST", "/devices", t[Role.ADMIN], {**bad, "extra": 1})[0] == 422
    job = {"dev_id": "IMEI:API-1", "commands": [{"op": "Format", "uri": "./"}]}
    assert call(e, "POST", "/jobs", t[Role.OPERATOR], job)[0] == 422
    assert call(e, "POST", "/jobs", t[Role.VIEWER], job)[0] == 403
    assert call(e, "GET", "/jobs/999", t[Role.VIEWER])[0] == 404
    assert call(e, "GET", "/nothing", t[Role.VIEWER])[0] == 404
    assert call(e, "PUT", "/jobs", t[Role.ADMIN], {})[0] == 405
    r = post(e, cert_context(e), b"{", "application/json",
             {"Authorization": f"Bearer {t[Role.ADMIN]}"}, path=API + "/jobs")  # fmt: skip
    assert r.status == 400
    assert call(e, "DELETE", "/devices/IMEI:API-1", t[Role.ADMIN])[0] == 204
    assert call(e, "DELETE", "/devices/IMEI:API-1", t[Role.ADMIN])[0] == 404
    assert e.service.api is not None
    trail = [(a.actor.split("/")[0], a.action, a.target, a.result)
             for a in e.service.api.accounts.audit_log(50)]  # fmt: skip
    assert ("u-admin", "dm DELETE", "/api/v1/dm/devices/IMEI:API-1", "204") in trail
    assert ("u-operator", "dm POST", "/api/v1/dm/devices", "403") in trail
    assert not any(a[1] == "dm GET" for a in trail)


def test_job_over_rest_reaches_the_device(env: tuple[Env, dict[Role, str]]) -> None:
    e, t = env
    device = {
        "dev_id": "IMEI:API-3", "app_username": "dev", "app_password": "s3cret",
        "server_id": "openscws-dm", "server_password": "srv", "http_auth": "psk",
        "psk_identity": "api-3", "psk_key": base64.b64encode(b"p" * 16).decode(),
    }  # fmt: skip
    assert call(e, "POST", "/devices", t[Role.ADMIN], device)[0] == 201
    commands = [
        {"op": "Get", "uri": "./DevInfo/Man"},
        {"op": "Add", "uri": "./DMAcc/1/Ext", "data": "v"},
        {"op": "Delete", "uri": "./DMAcc/1/Ext"},
        {"op": "Exec", "uri": "./DevDetail/SwV", "data": "go"},
    ]
    status, job = call(e, "POST", "/jobs", t[Role.OPERATOR], {"dev_id": "IMEI:API-3",
                                                              "commands": commands})  # fmt: skip
    assert status == 201
    assert isinstance(job, dict)
    from openscws.tls.context import psk_client_context

    ctx = psk_client_context("api-3", b"p" * 16, ciphers="DHE-PSK-AES128-GCM-SHA256")

    def send(out: Outgoing) -> object:
        return post(e, ctx, out.body, out.content_type, dict(out.headers))

    run_session(client("IMEI:API-3"), send)  # type: ignore[arg-type]
    status, shown = call(e, "GET", f"/jobs/{job['id']}", t[Role.VIEWER])
    assert status == 200
    assert isinstance(shown, dict)
    assert shown["state"] == "done"
    assert [r["status"] for r in shown["results"]] == [200, 200, 200, 406]
    assert shown["results"][0]["data"] == "openscws"
    status, listed = call(e, "GET", "/jobs?dev_id=IMEI:API-3", t[Role.VIEWER])
    assert [j["id"] for j in listed] == [job["id"]]  # type: ignore[union-attr, index]


def test_cli_device_and_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--data-dir", str(tmp_path / "dm")]

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["dm", *args, *where])
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("device", "ls")[0] == 2  # no state yet
    assert run("init")[0] == 0
    code, out, _ = run(
        "device", "add", "IMEI:CLI", "--app-user", "dev", "--app-password", "secret-1",
        "--server-password", "secret-2", "--http-auth", "digest", "--http-user", "cli",
        "--http-password", "secret-3",
    )  # fmt: skip
    assert code == 0
    code, out, _ = run("device", "ls")
    assert "IMEI:CLI" in out
    assert "secret" not in out
    code, _, err = run("device", "add", "IMEI:X", "--app-user", "d", "--app-password", "p",
                       "--server-password", "s", "--http-auth", "basic")  # fmt: skip
    assert code == 2
    assert "user name and a password" in err
    code, out, _ = run("job", "create", "IMEI:CLI", '[{"op": "Get", "uri": "./DevInfo/Mod"}]')
    assert code == 0
    assert "job 1 queued" in out
    code, _, err = run("job", "create", "IMEI:CLI", "[{")
    assert code == 2
    assert "not JSON" in err
    code, _, err = run("job", "create", "IMEI:NONE", '[{"op": "Get", "uri": "./DevInfo/Mod"}]')
    assert code == 1
    code, out, _ = run("job", "show", "1")
    assert json.loads(out)["state"] == "pending"
    assert run("job", "show", "7")[0] == 1
    code, out, _ = run("job", "ls")
    assert "IMEI:CLI\tpending" in out
    assert run("device", "rm", "IMEI:CLI")[0] == 0
    assert run("device", "rm", "IMEI:CLI")[0] == 1


def test_xml_reply_for_an_xml_message(env: tuple[Env, dict[Role, str]]) -> None:
    e, _ = env
    from dm_server_env import add_device

    add_device(e, "IMEI:API-4")
    r = post(e, cert_context(e), client("IMEI:API-4").start().body, m.CONTENT_TYPE_XML)
    assert r.status == 200
    assert r.headers["Content-Type"] == m.CONTENT_TYPE_XML


def test_dm_serve_process(
    tmp_path: Path, openscws_proc: Callable[..., Any], free_port: Callable[[], int]
) -> None:
    """`openscws dm serve` as a process: its own certificate, a device added by the CLI,
    a session over PSK-TLS, and a clean stop."""
    data = tmp_path / "dm"
    where = ["--data-dir", str(data)]
    assert main(["dm", "init", *where]) == 0
    assert main(["dm", "device", "add", "IMEI:PROC", "--app-user", "dev", "--app-password",
                 "s3cret", "--server-password", "srv", "--http-auth", "psk",
                 "--psk-identity", "proc", "--psk-key", "11" * 16, *where]) == 0  # fmt: skip
    port = free_port()
    proc = openscws_proc("dm", "serve", "--port", str(port), "--no-api", *where)
    line = proc.wait_for("DM server ready")
    assert f":{port}/dm" in line
    proc.wait_for("PSK-TLS suites: TLS_PSK_WITH_AES_128_GCM_SHA256")
    from openscws.tls.context import psk_client_context

    ctx = psk_client_context("proc", bytes.fromhex("11" * 16), ciphers="PSK-AES128-CBC-SHA256")
    reply = post(port, ctx, client("IMEI:PROC").start().body, m.CONTENT_TYPE_XML)
    assert reply.status == 200
    assert proc.stop() == 0
    assert "Traceback" not in proc.stderr
    assert (data / "tls" / "ca.pem").exists()
    assert oct((data / "digest.key").stat().st_mode & 0o777) == "0o600"


def test_cli_secrets_off_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from openscws.dm.db import DmDatabase, DmStore, default_url
    from openscws.ras.vault import Vault

    data = tmp_path / "dm"
    where = ["--data-dir", str(data)]
    assert main(["dm", "init", *where]) == 0
    (tmp_path / "srv").write_text("from-a-file\nignored\n")
    monkeypatch.setenv("DM_APP_SECRET", "from-the-environment")
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert main(["dm", "device", "add", "IMEI:SEC", "--app-user", "dev",
                 "--app-password", "env:DM_APP_SECRET", "--server-password", f"@{tmp_path / 'srv'}",
                 "--http-auth", "basic", "--http-user", "u", "--http-password", "-",
                 *where]) == 0  # fmt: skip
    db = DmDatabase(default_url(data))
    try:
        got = DmStore(db, Vault.open(data)).secrets("IMEI:SEC")
    finally:
        db.dispose()
    assert got is not None
    assert got.account.password == "from-the-environment"
    assert got.account.server_password == "from-a-file"
    assert got.http_password == "from-stdin"
    capsys.readouterr()
    assert main(["dm", "device", "add", "IMEI:SEC2", "--app-user", "d", "--app-password", "-",
                 "--server-password", "-", *where]) == 2  # fmt: skip
    assert "only one secret" in capsys.readouterr().err
    assert main(["dm", "device", "add", "IMEI:SEC3", "--app-user", "d", "--app-password",
                 "env:DM_NOT_SET", "--server-password", "x", *where]) == 2  # fmt: skip
    assert "DM_NOT_SET is not set" in capsys.readouterr().err
