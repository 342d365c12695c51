"""Raw-socket HTTP/1.1 for the end-to-end tests: exact bytes out, strict parsing in.

Deliberately independent of openscws (and of h11) so it checks the wire, not our parser.
Also the launcher of one `openscws up` with HTTPS that the module-scoped fixtures share, and
the wait for an in-process stack's campaign to end."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from openscws.aio.freeport import free_port

if TYPE_CHECKING:
    from openscws.aio.stack import Stack

TIMEOUT = 10.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


def host_port(base_url: str) -> tuple[str, int]:
    u = urlsplit(base_url)
    assert u.hostname is not None
    assert u.port is not None
    return u.hostname, u.port


def connect(base_url: str, timeout: float = TIMEOUT) -> socket.socket:
    return socket.create_connection(host_port(base_url), timeout=timeout)


class Reader:
    """Reads responses off one socket, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            if not self._fill():
                raise ConnectionError(f"closed mid-line: {bytes(self.buf)[:200]!r}")
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} body bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def response(self, *, head: bool = False) -> RawResponse:
        version, status, reason = self._line().decode("latin-1").split(" ", 2)
        assert version == "HTTP/1.1", version
        headers: list[tuple[str, str]] = []
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        resp = RawResponse(int(status), reason, headers, b"")
        code = int(status)
        if head or code in (204, 304) or 100 <= code < 200:
            return resp
        te = resp.header("transfer-encoding")
        if te is not None:
            assert te.lower() == "chunked", te
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exactly(size)
                assert self._line() == b""
            return RawResponse(code, reason, headers, bytes(body))
        length = resp.header("content-length")
        if length is not None:
            return RawResponse(code, reason, headers, self._exactly(int(length)))
        while self._fill():
            pass
        body = bytes(self.buf)
        self.buf.clear()
        return RawResponse(code, reason, headers, body)

    def at_eof(self) -> bool:
        """True if the peer has closed (nothing more arrives)."""
        return not self.buf and not self._fill()


def exchange(base_url: str, request: bytes, *, timeout: float = TIMEOUT) -> RawResponse:
    """Sends `request` on a new connection and reads one response."""
    with connect(base_url, timeout) as s:
        s.sendall(request)
        return Reader(s).response(head=request.startswith(b"HEAD "))


def read_all(base_url: str, request: bytes, *, timeout: float = TIMEOUT) -> bytes:
    """Sends `request`, half-closes nothing, and reads until the server closes."""
    with connect(base_url, timeout) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def run(
    args: list[str], timeout: float = 30.0, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Runs a peer program with a hard timeout, capturing its output."""
    return subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, check=False)


# -- one `openscws up` with HTTPS, for module-scoped fixtures ----------------------------------

READY_TIMEOUT = 20.0
PSK_IDENTITY = "card1"
PSK_KEY = "00112233445566778899aabbccddeeff"


@dataclass
class Card:
    """A running `openscws up`: HTTP on `port`, HTTPS on `tls_port`, issuer CA `ca`."""

    proc: subprocess.Popen[bytes]
    port: int
    tls_port: int
    ca: Path
    stdout: Path
    stderr: Path
    admin_port: int | None = None
    """The admin server's PSK-TLS port (`start_card(admin_profile=...)`), else None."""

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


async def wait_campaign(stack: Stack, campaign: int, timeout: float = 30.0) -> dict[str, int]:
    """The progress of `campaign` (state -> jobs) once every job is done or failed; fails the
    test when that takes over `timeout` seconds."""
    assert stack.admin is not None
    service = stack.admin.service
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        progress = await asyncio.to_thread(service.campaign_progress, campaign)
        if progress.get("done", 0) + progress.get("failed", 0) == sum(progress.values()):
            return progress
        assert loop.time() < deadline, f"campaign stuck: {progress}"
        await asyncio.sleep(0.05)


def start_card(
    root: Path,
    ca_dir: Path,
    extra_config: str = "",
    *,
    psk: bool,
    admin_profile: str | None = None,
) -> Iterator[Card]:
    """Provisions a card image in `root` (with PSK identity `card1` enabled when `psk`),
    starts `up` on free ports with its CA in `ca_dir`, yields it once it printed the CA line,
    and stops it. (The conftest fixtures are function-scoped; this serves module scope.)
    With `admin_profile`, the admin server runs too, on free ports, with that
    `admin.tls_profile` (`extra_config` must then have no [admin] or [gateway] table)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(root / "xdg-data")}
    config = root / "openscws.toml"
    admin_port = None
    if admin_profile is not None:
        admin_port, sms = free_port(), free_port()
        extra_config += (
            f"\n[gateway]\nsms_port = {sms}\n[admin]\nport = {admin_port}\n"
            f"api_port = {free_port()}\ntls_profile = {json.dumps(admin_profile)}\n"
            f"data_dir = {json.dumps(str(root / 'ras'))}\n"
            f"sms_url = {json.dumps(f'http://127.0.0.1:{sms}/sms')}\n"
        )
    config.write_text(f"[ca]\ndir = {json.dumps(str(ca_dir))}\n{extra_config}")
    common = ["--data-dir", str(root / "card"), "--config", str(config)]

    def cli(*args: str) -> None:
        cmd = [sys.executable, "-m", "openscws", *args, *common]
        done = subprocess.run(cmd, capture_output=True, timeout=30, env=env, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    if psk:
        cli("init")
        cli("card", "psk", "add", PSK_IDENTITY, "--key", PSK_KEY)
        cli("card", "psk", "enable")
    port, tls_port = free_port(), free_port()
    out_path, err_path = root / "up.out", root / "up.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        cmd = [sys.executable, "-m", "openscws", "up", *common]
        if admin_port is None:
            cmd.append("--no-admin")
        cmd += ["--port-map", f"3516={port}", "--port-map", f"4116={tls_port}"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
    card = Card(proc, port, tls_port, ca_dir / "ca.pem", out_path, err_path, admin_port)
    ready = "admin server: PSK-TLS https://" if admin_port is not None else "HTTPS issuer CA: "
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while ready not in (text := out_path.read_text(errors="replace")):
            assert proc.poll() is None, f"up exited: {text}\n{card.log()}"
            assert time.monotonic() < deadline, f"up not ready: {text}\n{card.log()}"
            time.sleep(0.05)
        yield card
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
