"""The issue's end-to-end check, all as programs: a DM job created over the REST API of
`openscws dm serve` reaches the terminal's DM client (`openscws up --dm`) as a Package #0 in a
WAP push SMS on the gateway's local SMS entry point; the client opens the session over TLS 1.2
PSK-TLS with HTTP Digest at the transport, and the job shows its results over REST."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openscws.ras.accounts import Accounts
from openscws.ras.db import RasDatabase
from openscws.ras.models import Role

KEY = "00112233445566778899aabbccddeeff"
DEV = "IMEI:490154203237518"


def openscws(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openscws", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def rest(port: int, method: str, path: str, token: str, doc: object = None) -> tuple[int, Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's own CA: this test checks the DM path
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, "/api/v1/dm" + path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        conn.close()


def test_rest_job_reaches_client_by_package0_over_sms(  # type: ignore[no-untyped-def]
    tmp_path: Path, free_port: Callable[[], int], openscws_proc, start_up
) -> None:
    sms_port, dm_port = free_port(), free_port()
    tree = tmp_path / "tree.json"
    cfg = tmp_path / "dm.toml"
    cfg.write_text(
        f'[admin]\ndata_dir = "{tmp_path / "ras"}"\n\n'
        f'[dm]\ndata_dir = "{tmp_path / "dm"}"\nclient_tree = "{tree}"\n'
    )
    conf = ("--config", cfg)
    assert openscws("admin", "init", *conf).returncode == 0
    ras = RasDatabase(f"sqlite:///{tmp_path / 'ras' / 'ras.db'}")
    try:
        accounts = Accounts(ras)
        accounts.add_user("ops", "a long password 1", Role.ADMIN)
        token = accounts.create_token("ops", "dm e2e")[1]
    finally:
        ras.dispose()
    for step in (
        ("dm", "init", *conf),
        ("dm", "device", "add", DEV, "--app-user", "dev", "--app-password", "s3cret",
         "--server-password", "srv-secret", "--server-auth", "md5", "--http-auth", "digest",
         "--http-user", "hu",
         "--http-password", "hp", "--psk-identity", "dev-psk", "--psk-key", KEY,
         "--msisdn", "+15550100001", *conf),
        ("dm", "client", "init", "--tree", tree, "--dev-id", DEV,
         "--server", f"https://127.0.0.1:{dm_port}/dm", "--server-id", "openscws-dm",
         "--server-password", "srv-secret", "--server-auth", "DIGEST",
         "--user", "dev", "--password", "s3cret", "--auth", "DIGEST", "--http", "digest",
         "--http-user", "hu", "--http-password", "hp", "--psk-identity", "dev-psk",
         "--psk-key", KEY),
    ):  # fmt: skip
        done = openscws(*step)
        assert done.returncode == 0, (step, done.stdout, done.stderr)

    up_cfg = f'[gateway]\nsms_port = {sms_port}\n[dm]\nclient_tree = "{tree}"\n'
    up = start_up("--dm", config=up_cfg)
    announced = up.wait_for("DM client: tree")
    sms_url = announced.rsplit("SMS entry point ", 1)[1].strip()
    assert sms_url.startswith("http://127.0.0.1:")
    dm = openscws_proc("dm", "serve", "--port", str(dm_port), "--sms-url", sms_url, *conf)
    dm.wait_for("DM server ready:")
    assert dm.wait_for("Package #0 by SMS:").split(": ", 1)[1].strip() == sms_url

    status, job = rest(dm_port, "POST", "/jobs", token, {
        "dev_id": DEV,
        "commands": [{"op": "Get", "uri": "./DevInfo/Mod"},
                     {"op": "Replace", "uri": "./DMAcc/1/Name", "data": "Operator"}],
    })  # fmt: skip
    assert status == 201, job
    assert job["notification"] == {"status": "delivered", "detail": ""}
    deadline = time.monotonic() + 60
    while True:
        status, shown = rest(dm_port, "GET", f"/jobs/{job['id']}", token)
        assert status == 200
        if shown["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shown["state"] == "done", (shown, up.stdout, up.stderr)
    assert [r["status"] for r in shown["results"]] == [200, 200]
    assert shown["results"][0]["data"]
    assert "TLS TLSv1.2, suite PSK-" in up.stderr  # the client's session: PSK-TLS, TLS 1.2

    # A device without an MSISDN gets its job, but no Package #0: the job says so.
    status, devices = rest(dm_port, "GET", "/devices", token)
    assert [d["msisdn"] for d in devices] == ["+15550100001"]
    status, _ = rest(dm_port, "POST", "/devices", token, {
        "dev_id": "IMEI:NOSMS", "app_username": "d2", "app_password": "p2",
        "server_id": "openscws-dm", "server_password": "s2",
    })  # fmt: skip
    assert status == 201
    status, quiet = rest(dm_port, "POST", "/jobs", token, {
        "dev_id": "IMEI:NOSMS", "commands": [{"op": "Get", "uri": "./DevInfo/Mod"}],
    })  # fmt: skip
    assert (status, quiet["notification"]) == (201, {"status": "none", "detail": "no MSISDN"})
    status, bad = rest(dm_port, "POST", "/devices", token, {
        "dev_id": "IMEI:BAD", "app_username": "d3", "app_password": "p3",
        "server_id": "openscws-dm", "server_password": "s3", "msisdn": "call me",
    })  # fmt: skip
    assert status == 422
    assert "MSISDN" in bad["title"]
