"""wrk against the card through the gateway: 64 keep-alive connections on 3516 and 32 on
4116 (HTTPS), far more than the card has channels. Every request gets a 2xx answer and no
connection sees a socket error: the card says `Connection: close` on each response after which
it closes, and the clients waiting meanwhile are served in turn."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from e2e_wire import free_port

from openscws.aio.stack import start_stack, under
from openscws.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

SECONDS = 4


async def _wrk(exe: str, url: str, connections: int) -> str:
    proc = await asyncio.create_subprocess_exec(
        exe,
        "-t2",
        f"-c{connections}",
        f"-d{SECONDS}s",
        "--timeout",
        "10s",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), SECONDS + 30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def test_wrk_keep_alive_clients_beyond_the_channels(
    tmp_path: Path, need_tool: Callable[[str, str], str]
) -> None:
    exe = need_tool("wrk", "wrk")
    s = under(Settings(), tmp_path)
    settings = replace(
        s, gateway=replace(s.gateway, port_map={3516: free_port(), 4116: free_port()}, sms_port=0)
    )

    async def main() -> list[str]:
        stack = await start_stack(settings, demo=True, admin=False, api=False)
        try:
            gw = stack.gateway
            http = await _wrk(exe, f"http://127.0.0.1:{gw.local_port(3516)}/style.css", 64)
            https = await _wrk(exe, f"https://127.0.0.1:{gw.local_port(4116)}/style.css", 32)
            return [http, https]
        finally:
            await stack.stop()

    for out in asyncio.run(main()):
        assert "Socket errors" not in out, out
        assert "Non-2xx" not in out, out
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        assert requests > 0, out
