"""Raw-socket HTTP/1.1 for the end-to-end tests: exact bytes out, strict parsing in.

Deliberately independent of openscws (and of h11) so it checks the wire, not our parser."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

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
