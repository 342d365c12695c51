"""Request paths no card resource can have, over HTTP (3516) and HTTPS (4116) through the whole
stack in one process (card image on disk, gateway, TLS): each is a 4xx from the card's HTTP
engine, and the process goes on serving."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import replace
from pathlib import Path

from e2e_wire import free_port

from openscws.aio.stack import start_stack, under
from openscws.config import Settings

BAD_TARGETS = [b"//", b"/%23", b"/a//b", b"/a\\b", b"/a%5Cb", b"/a%01b", b"/" + b"x" * 1500]


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the card's certificate is not what is tested here
    return context


def _status(port: int, target: bytes, *, tls: bool) -> int:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock: socket.socket = (
        _client_context().wrap_socket(raw, server_hostname="localhost") if tls else raw
    )
    with sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: card\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])


def test_invalid_paths_are_4xx_over_http_and_https(tmp_path: Path) -> None:
    s = under(Settings(), tmp_path)
    settings = replace(
        s, gateway=replace(s.gateway, port_map={3516: free_port(), 4116: free_port()}, sms_port=0)
    )

    async def main() -> None:
        stack = await start_stack(settings, demo=True, admin=False, api=False)
        try:
            for card_port, tls in ((3516, False), (4116, True)):
                port = stack.gateway.local_port(card_port)
                for target in BAD_TARGETS:
                    status = await asyncio.to_thread(_status, port, target, tls=tls)
                    assert 400 <= status < 500, (card_port, target[:20], status)
                assert await asyncio.to_thread(_status, port, b"/", tls=tls) == 200
            assert stack.gateway._task is not None
            assert not stack.gateway._task.done()
        finally:
            await stack.stop()

    asyncio.run(main())
