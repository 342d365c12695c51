"""Local application identity: loopback TCP through /proc/net/tcp{,6}, Unix sockets through
SO_PEERCRED, the executable's hashes through /proc/<pid>/exe."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openscws.aio.peer import identity_of_pid, tcp_peer, unix_peer

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux /proc needed")


def _digest(path: str) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_loopback_tcp_peer_in_another_process(family: socket.AddressFamily) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        server = socket.socket(family, socket.SOCK_STREAM)
        server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    server.listen(1)
    port = server.getsockname()[1]
    code = textwrap.dedent(f"""
        import socket, sys
        s = socket.create_connection(({host!r}, {port}))
        sys.stdin.read()
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    try:
        conn, remote = server.accept()
        with conn:
            local = conn.getsockname()
            who = tcp_peer(local[:2], remote[:2])
            assert who.pid == child.pid
            assert who.uid == os.getuid()
            assert who.exe == os.path.realpath(sys.executable)
            assert who.sha256 == _digest(sys.executable)
            assert who.sha1 == hashlib.sha1(Path(sys.executable).read_bytes()).digest()
            assert who.how == "/proc/net/tcp"
            assert tcp_peer(local[:2], remote[:2], need_exe=False).pid is None
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        server.close()


def test_peer_in_this_process_and_gone() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, remote = server.accept()
    try:
        assert tcp_peer(conn.getsockname(), remote).pid == os.getpid()
        client.close()
        conn.close()
        gone = tcp_peer(("127.0.0.1", 1), remote)
        assert gone.uid is None
        assert gone.pid is None
    finally:
        server.close()


def test_not_loopback_has_no_identity() -> None:
    assert tcp_peer(("127.0.0.1", 3516), ("192.0.2.1", 40000)).uid is None


def test_unix_socket_peer_credentials() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        who = unix_peer(a)
        assert (who.pid, who.uid, who.how) == (os.getpid(), os.getuid(), "SO_PEERCRED")
        assert who.sha256 == _digest(sys.executable)


def test_identity_of_missing_pid() -> None:
    assert identity_of_pid(2**22 + 12345).exe is None
