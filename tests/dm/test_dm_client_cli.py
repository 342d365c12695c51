"""`openscws dm client init | show | run | notify` in-process, against the small DM server
shell running on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openscws.cli import main
from openscws.dm import auth
from openscws.dm.client_push import package0_sms
from openscws.dm.scr_server import MiniDmServer, make_pki, server_context
from openscws.dm.session import DeviceAccount

PSK = "000102030405060708090a0b0c0d0e0f"


def account() -> DeviceAccount:
    return DeviceAccount(
        "dev",
        "pw",
        auth.AUTH_MD5,
        b"",
        server_id="srv",
        server_password="srvpw",
        server_auth_type=auth.AUTH_MD5,
    )


@pytest.fixture
def server() -> Iterator[MiniDmServer]:
    pki = make_pki()
    srv = MiniDmServer(
        account=account, context=server_context(pki, psk=("IMEI:7", bytes.fromhex(PSK)))
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield srv
    asyncio.run_coroutine_threadsafe(srv.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_init_show_run_notify(
    tmp_path: Path, server: MiniDmServer, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = str(tmp_path / "tree.json")
    init = ["dm", "client", "init", "--tree", tree, "--dev-id", "IMEI:7", "--server", server.url]
    init += ["--server-id", "srv", "--user", "dev", "--password", "pw"]
    init += ["--server-password", "srvpw", "--psk-identity", "IMEI:7", "--psk-key", PSK]
    assert main(init) == 0
    assert main(["dm", "client", "show", "--tree", tree]) == 0
    out = capsys.readouterr().out
    assert "PSK identity IMEI:7" in out
    assert PSK not in out  # secrets are never shown
    assert "srvpw" not in out
    assert main(["dm", "client", "run", "--tree", tree, "--account", "1"]) == 0
    out = capsys.readouterr().out
    assert "TLS: TLSv1.2 PSK-AES128-GCM-SHA256" in out
    assert "session ended" in out
    # The device rolled the server's nonce over in that session: the server's account has it.
    pkg0 = server.accounts["IMEI:7"].package0(0x77)
    assert main(["dm", "client", "notify", "--tree", tree, pkg0.hex()]) == 0
    assert "session 77" in capsys.readouterr().out
    sms = tmp_path / "push.sms"
    sms.write_bytes(package0_sms(server.accounts["IMEI:7"].package0(0x78)))
    assert main(["dm", "client", "notify", "--tree", tree, str(sms)]) == 0
    assert {"77", "78"} <= set(server.sessions)
    assert main(["dm", "client", "show", "--tree", tree]) == 0
    assert "TLS of the last session: TLSv1.2" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = str(tmp_path / "none.json")
    assert main(["dm", "client", "run", "--tree", tree]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no DM client tree" in err
    assert main(["dm", "client", "notify", "--tree", tree, "zz"]) == 2
    assert "neither hexadecimal nor a file" in capsys.readouterr().err
    init = ["dm", "client", "init", "--tree", tree, "--dev-id", "x", "--server", "https://h/dm"]
    init += ["--server-id", "s", "--user", "u", "--password", "p", "--tls-min", "3.0"]
    assert main(init) == 2
    assert "SSL 3.0: not supported by this TLS stack" in capsys.readouterr().err
