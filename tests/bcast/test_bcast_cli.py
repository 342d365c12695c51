"""`openscws bsm`: init, the catalogue commands (key values never printed), bad input as one
line on stderr and exit 2, and `bsm serve` as a real process answering a request without
credentials with 401 and a Digest challenge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from bcast_fixtures import make_store

from openscws.bcast.sprov import MEDIA_TYPE, MessageKind, Request
from openscws.cli import main
from openscws.gba.client import http_request
from openscws.gba.digest import Challenge


def test_catalogue_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bsm"
    assert main(["bsm", "init", "--data-dir", str(data)]) == 0
    assert "schema: bsm0003" in capsys.readouterr().out
    assert main(["bsm", "key", "add", "00f110/00010002", "--data-dir", str(data)]) == 0
    assert (
        main(["bsm", "key", "add", "00f110/00010003", "--size", "32", "--data-dir", str(data)]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("added") == 2
    args = ["bsm", "item", "add", "urn:pi:news", "--key", "00f110/00010002"]
    assert main([*args, "--key", "00f110/00010003", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["bsm", "--data-dir", str(data), "item", "ls"]) == 0
    shown = "urn:pi:news\t00f110/00010002 00f110/00010003\t-\t0 subscribed\n"
    assert capsys.readouterr().out == shown
    assert main(["bsm", "item", "rm", "urn:pi:news", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["bsm", "item", "ls", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out == ""
    rk = "00112233445566778899aabbccddeeff"
    add = ["bsm", "ruim", "add", "u@ruim.example.org", "--rk", rk, "--rand", "0102"]
    assert main([*add, "--data-dir", str(data)]) == 0
    assert main(["bsm", "ruim", "ls", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("u@ruim.example.org\n")
    assert rk not in out


def test_service_and_subscription_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bsm"
    d = ["--data-dir", str(data)]
    assert main(["bsm", "init", *d]) == 0
    assert main(["bsm", "key", "add", "00f110/00010002", *d]) == 0
    assert main(["bsm", "service", "add", "urn:svc:news", "--name", "News", *d]) == 0
    add = ["bsm", "item", "add", "urn:pi:news", "--key", "00f110/00010002"]
    assert main([*add, "--service", "urn:svc:news", *d]) == 0
    capsys.readouterr()
    assert main(["bsm", "service", "ls", *d]) == 0
    assert main(["bsm", "key", "ls", *d]) == 0
    assert main(["bsm", "item", "ls", *d]) == 0
    assert capsys.readouterr().out == (
        "urn:svc:news\tNews\n00f110/00010002\n"
        "urn:pi:news\t00f110/00010002\turn:svc:news\t0 subscribed\n"
    )
    store = make_store(data)
    try:
        store.commit("btid@bsf", add=["urn:pi:news"], remove=[], tokens=2, ltkms=1)
    finally:
        store.db.dispose()
    assert main(["bsm", "sub", "ls", *d]) == 0
    out = capsys.readouterr().out
    assert out.startswith("btid@bsf\turn:pi:news\t20")
    assert main(["bsm", "sub", "show", "btid@bsf", *d]) == 0
    out = capsys.readouterr().out
    assert "tokens: 2\n" in out
    assert "LTKMs issued: 1\n" in out
    assert "subscriptions: urn:pi:news\n" in out
    assert main(["bsm", "sub", "rm", "btid@bsf", "urn:pi:news", *d]) == 0
    assert main(["bsm", "sub", "ls", "--user", "btid@bsf", *d]) == 0
    assert capsys.readouterr().out.endswith("ended\n")
    assert main(["bsm", "service", "rm", "urn:svc:news", *d]) == 0
    assert main(["bsm", "sub", "rm", "btid@bsf", "urn:pi:news", *d]) == 1  # not found
    assert main(["bsm", "sub", "show", "nobody", *d]) == 1
    assert main(["bsm", "service", "add", "urn:svc:x", "--name", "", *d]) == 0
    assert main(["bsm", "service", "add", "urn:svc:x", *d]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3
    assert all(x.startswith("openscws: ") for x in err.splitlines())


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["bsm", "item", "ls", "--data-dir", "{none}"], 2),
        (["bsm", "key", "add", "00f110/00010002", "--data-dir", "{data}"], 2),
        (["bsm", "item", "add", "urn:x", "--key", "00f110/99999999", "--data-dir", "{data}"], 1),
        (["bsm", "item", "rm", "urn:none", "--data-dir", "{data}"], 1),
        (["bsm", "ruim", "add", "n@x", "--rk", "0011", "--rand", "01", "--data-dir", "{data}"], 2),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input exits 2, something named that does not exist 1 (the CLI's convention)."""
    data = tmp_path / "bsm"
    assert main(["bsm", "init", "--data-dir", str(data)]) == 0
    assert main(["bsm", "key", "add", "00f110/00010002", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    filled = [a.format(data=data, none=tmp_path / "none") for a in argv]
    assert main(filled) == status
    err = capsys.readouterr().err
    assert err.startswith("openscws: ")
    assert err.count("\n") == 1


def test_malformed_key_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bsm", "key", "add", "zz"])
    assert exc.value.code == 2
    assert "DOMAIN/ID" in capsys.readouterr().err


def test_serve_process(
    tmp_path: Path, free_port: Callable[[], int], openscws_proc: Callable[..., object]
) -> None:
    data = tmp_path / "bsm"
    port = free_port()
    proc = openscws_proc("bsm", "serve", "--data-dir", str(data), "--port", str(port), name="bsm")
    line = proc.wait_for("BSM ready:")  # type: ignore[attr-defined]
    url = line.split("BSM ready:", 1)[1].split()[0].rstrip("/")
    assert url == f"http://127.0.0.1:{port}"
    body = Request(MessageKind.SERVICE, "r", ("urn:pi:news",)).to_xml()
    answer = asyncio.run(
        http_request(url + "/bcast/service", "POST", (("Content-Type", MEDIA_TYPE),), body)
    )
    assert answer.status == 401
    challenge = Challenge.parse(answer.headers["www-authenticate"])
    assert challenge.realm == "3GPP-bootstrapping@bsm.openscws.test"
    assert proc.stop() == 0  # type: ignore[attr-defined]


def test_serve_with_the_management_api(
    tmp_path: Path, free_port: Callable[[], int], openscws_proc: Callable[..., object]
) -> None:
    from argon2 import PasswordHasher

    from openscws.ras.accounts import Accounts
    from openscws.ras.db import RasDatabase, default_url
    from openscws.ras.models import Role

    admin = tmp_path / "ras"
    admin.mkdir()
    url = default_url(admin)
    db = RasDatabase(url)
    db.upgrade()
    accounts = Accounts(db, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    accounts.add_user("op", "a long enough password", Role.OPERATOR)
    token = accounts.create_token("op", "bsm", Role.OPERATOR)[1]
    db.dispose()
    api_port = free_port()
    proc = openscws_proc(
        "bsm", "serve", "--data-dir", tmp_path / "bsm", "--port", str(free_port()),
        "--api-port", str(api_port), "--accounts-db", url, name="bsm",
    )  # fmt: skip
    proc.wait_for("BSM ready:")  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{api_port}/api/v1/bsm"
    auth = (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"))
    body = b'{"service_id": "urn:svc:news"}'
    refused = asyncio.run(http_request(base + "/services", "POST", auth[1:], body))
    assert refused.status == 401
    added = asyncio.run(http_request(base + "/services", "POST", auth, body))
    assert added.status == 201
    listed = asyncio.run(http_request(base + "/services", "GET", auth[:1], b""))
    assert b"urn:svc:news" in listed.body
    assert proc.stop() == 0  # type: ignore[attr-defined]


def test_serve_api_needs_the_admin_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = f"sqlite:///{tmp_path / 'none.db'}"
    argv = ["bsm", "serve", "--data-dir", str(tmp_path / "bsm"), "--port", "0"]
    assert main([*argv, "--api-port", "0", "--accounts-db", empty]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openscws: ")
    assert err.count("\n") == 1
