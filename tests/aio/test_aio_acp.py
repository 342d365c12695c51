"""The SCWS Gateway enforces the card's access rules, read through the same APDU link: a
gateway and a card in this process, clients from this process and from real programs."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from openscws.acp.rules import AccessRule, RuleSet, encode_rules
from openscws.aio.acp import AccessControl
from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.config import CardSettings
from openscws.scws.card import build_card
from openscws.scws.model import MemoryStore, Resource
from openscws.terminal.engine import TerminalEngine
from openscws.uicc.aram import RULES_KEY

SELF = hashlib.sha256(Path(os.path.realpath(sys.executable)).read_bytes()).digest()
"""This test process's executable: the identity of its own clients."""


class Apdus:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def __call__(self, command: bytes, response: bytes, now: float) -> None:
        self.seen.append(command)


class AwaitingLink(InProcessLink):
    """The in-process card behind a link that must be awaited, as vpcd and PC/SC are."""

    immediate = False

    async def transmit(self, apdu: bytes) -> bytes:
        await asyncio.sleep(0)
        return self.card.transmit(apdu, self.clock())

    def transmit_now(self, apdu: bytes) -> bytes | None:
        return None


@asynccontextmanager
async def gateway(
    store: MemoryStore, refresh: float = 60.0, unix: Path | None = None, awaiting: bool = False
) -> AsyncIterator[tuple[Gateway, AccessControl, int, Apdus]]:
    for path in ("/index.html", "/app/page", "/private/x"):
        store.put(Resource(path, b"page " + path.encode(), "text/plain", last_modified=1))
    card = build_card(store, CardSettings(ports=(3516,)), "8988211000000000001")
    apdus = Apdus()
    gw: Gateway | None = None

    def target() -> tuple[str, int]:
        assert gw is not None
        return "127.0.0.1", gw.local_port(3516)

    control = AccessControl(
        AwaitingLink(card) if awaiting else InProcessLink(card),
        refresh_interval=refresh,
        observer=apdus,
        unix_socket=unix,
        unix_target=target,
    )
    gw = Gateway(control.link, TerminalEngine(), GatewayConfig(port_map={3516: 0}), observer=apdus)
    gw.wrap_client = control.wrap_client
    await gw.start()
    await gw.wait_listening()
    try:
        yield gw, control, gw.local_port(3516), apdus
    finally:
        await gw.stop()


async def request(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str
) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    return int(head.split(b" ")[1]), body


async def get(port: int, path: str = "/index.html") -> tuple[int, bytes]:
    conn = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await request(conn, path)
    finally:
        conn[1].close()


def rules(*items: AccessRule) -> bytes:
    return encode_rules(RuleSet(items))


def run(main: Callable[[], object]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def test_no_rules_is_unrestricted_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, "openscws.acp")
        async with gateway(MemoryStore()) as (_, control, port, apdus):
            assert await get(port) == (200, b"page /index.html")
            assert control.policy.describe().startswith("access unrestricted")
            # The rules were read with the ARA-M's APDUs, on the gateway's own link.
            assert bytes.fromhex("01A4040009A00000015141434C00") in [a[:14] for a in apdus.seen]
            assert any(a[1:4] == bytes.fromhex("CAFF40") for a in apdus.seen)
        lines = [r.getMessage() for r in caplog.records if r.name == "openscws.acp"]
        assert lines == [
            "SCWS access control: access unrestricted (the card holds no SCWS access rules)"
        ]

    run(main)


def test_hash_rule_admits_its_program_only(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        caplog.set_level(logging.INFO, "openscws.acp")
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(app_hash=hashlib.sha256(b"x").digest())))
        async with gateway(store) as (_, control, port, _apdus):
            status, body = await get(port)
            assert status == 403
            assert b"no rule allows this application on port 3516" in body
            store.set_value(RULES_KEY, rules(AccessRule(app_hash=SELF)))
            control.read_now()
            assert await get(port) == (200, b"page /index.html")
        text = caplog.text
        assert "DENY port 3516 from uid" in text
        assert f"ALLOW port 3516 from uid {os.getuid()} pid {os.getpid()}" in text
        assert "allowed by rule: allow sha256:" in text

    run(main)


def test_uid_rule_and_refresh_on_next_connection() -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(uid=os.getuid() + 1)))
        async with gateway(store, refresh=0.0) as (_, control, port, _apdus):
            assert (await get(port))[0] == 403
            store.set_value(RULES_KEY, rules(AccessRule(uid=os.getuid())))
            assert (await get(port))[0] == 200  # no restart: the refresh tag changed
            reads = control.reads
            assert (await get(port))[0] == 200
            assert control.reads == reads  # same tag: not read again

    run(main)


def test_path_rules_deny_a_request_and_the_connection_goes_on() -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(app_hash=SELF, paths=("/app/", "/index.html"))))
        async with gateway(store) as (_, _control, port, _apdus):
            conn = await asyncio.open_connection("127.0.0.1", port)
            assert await request(conn, "/app/page") == (200, b"page /app/page")
            status, body = await request(conn, "/private/x")
            assert status == 403
            assert b"no rule allows /private/x" in body
            assert await request(conn, "/app/../index.html") == (200, b"page /index.html")
            assert (await request(conn, "/app/../private/x"))[0] == 403
            assert await request(conn, "/app/page") == (200, b"page /app/page")
            conn[1].close()

    run(main)


def test_unparsable_rules_deny_everyone(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, b"\xff\x40\x03\xe2\x01\x00")
        async with gateway(store) as (_, control, port, _apdus):
            status, body = await get(port)
            assert status == 403
            assert b"cannot be read" in body
            assert "REF-AR-DO" in control.policy.error
        assert any(
            r.levelno == logging.ERROR and "unusable" in r.getMessage() for r in caplog.records
        )

    run(main)


def test_admin_session_end_forces_a_refresh() -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(uid=os.getuid() + 1)))
        async with gateway(store) as (_, control, port, _apdus):
            assert (await get(port))[0] == 403
            store.set_value(RULES_KEY, rules(AccessRule()))
            assert (await get(port))[0] == 403  # refresh interval not reached
            control.admin_session_ended()
            assert (await get(port))[0] == 200

    run(main)


def test_real_programs_curl_allowed_by_hash_python_refused(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed: apt-get install curl")
    curl_hash = hashlib.sha256(Path(os.path.realpath(curl)).read_bytes()).digest()

    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(app_hash=curl_hash)))
        async with gateway(store) as (_, _control, port, _apdus):
            proc = await asyncio.create_subprocess_exec(
                curl, "-s", "-o", "-", "-w", "%{http_code}", f"http://127.0.0.1:{port}/index.html",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            assert out == b"page /index.html200"
            code = (
                "import urllib.request, urllib.error, sys\n"
                "try:\n"
                f"    urllib.request.urlopen('http://127.0.0.1:{port}/index.html')\n"
                "except urllib.error.HTTPError as e:\n"
                "    print(e.code, e.read().decode().strip())\n"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert out.startswith(b"403 SCWS access control: no rule allows this application")

    run(main)


def test_unix_socket_entry_point_uses_peer_credentials(tmp_path: Path) -> None:
    sock = tmp_path / "scws.sock"

    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(app_hash=SELF, uid=os.getuid())))
        async with gateway(store, unix=sock) as (_, control, _port, _apdus):
            for _ in range(50):
                if sock.exists():
                    break
                await asyncio.sleep(0.02)
            conn = await asyncio.open_unix_connection(str(sock))
            assert await request(conn, "/index.html") == (200, b"page /index.html")
            conn[1].close()
            assert control.decisions == 1
        assert not sock.exists()

    run(main)


def test_a_link_that_must_be_awaited_reads_between_the_gateways_apdus() -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(uid=os.getuid() + 1)))
        async with gateway(store, refresh=0.0, awaiting=True) as (_, control, port, _apdus):
            assert (await get(port))[0] == 403
            store.set_value(RULES_KEY, rules(AccessRule(app_hash=SELF)))
            # Several clients at once, their requests sent before the decision is taken.
            results = await asyncio.gather(*(get(port) for _ in range(5)))
            assert results == [(200, b"page /index.html")] * 5
            assert control.policy.describe() == "1 access rule, deny by default"

    run(main)


def test_a_refused_client_reads_its_403_even_while_sending() -> None:
    async def main() -> None:
        store = MemoryStore()
        store.set_value(RULES_KEY, rules(AccessRule(uid=os.getuid() + 1)))
        async with gateway(store) as (_, _control, port, _apdus):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = b"x" * 200_000
            writer.write(b"POST /app HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the FIN came
            assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
            assert answer.endswith(b"no rule allows this application on port 3516\r\n")
            writer.close()

    run(main)
