"""Third-party TLS peers for the DM client's interop checks and `openscws dm scr`: OpenSSL's
`openssl s_server` and GnuTLS's `gnutls-serv`, run as subprocesses on a free loopback port,
with what each says about the handshake (the suite OpenSSL's server chose, the version, key
exchange, cipher and MAC GnuTLS's server reports). Both come from Debian's `openssl` and
`gnutls-bin` packages (`scripts/install-peers`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from openscws.aio.freeport import free_port

__all__ = ["PeerServer", "PeerUnavailable", "free_port", "gnutls_server", "openssl_server"]

READY_S: Final = 10.0
GNUTLS_VERSIONS: Final = {"1.0": "VERS-TLS1.0", "1.1": "VERS-TLS1.1", "1.2": "VERS-TLS1.2"}
OPENSSL_VERSIONS: Final = {"1.0": "-tls1", "1.1": "-tls1_1", "1.2": "-tls1_2"}
# GnuTLS priority pieces for the DM PSK suites (OpenSSL name -> key exchange, cipher, MAC).
GNUTLS_SUITES: Final = {
    "PSK-AES128-GCM-SHA256": ("PSK", "AES-128-GCM", "AEAD"),
    "PSK-AES128-CBC-SHA256": ("PSK", "AES-128-CBC", "SHA256"),
    "DHE-PSK-AES128-GCM-SHA256": ("DHE-PSK", "AES-128-GCM", "AEAD"),
    "DHE-PSK-AES128-CBC-SHA256": ("DHE-PSK", "AES-128-CBC", "SHA256"),
    "RSA-PSK-AES128-GCM-SHA256": ("RSA-PSK", "AES-128-GCM", "AEAD"),
    "RSA-PSK-AES128-CBC-SHA256": ("RSA-PSK", "AES-128-CBC", "SHA256"),
    # Not a DM suite: GnuTLS has the SHA-256 CBC PSK suites at TLS 1.2 only, so its TLS 1.0
    # and 1.1 are checked with TLS_PSK_WITH_AES_128_CBC_SHA.
    "PSK-AES128-CBC-SHA": ("PSK", "AES-128-CBC", "SHA1"),
}
GNUTLS_MIN_TLS12: Final = frozenset(n for n in GNUTLS_SUITES if n.endswith("SHA256"))


class PeerUnavailable(Exception):
    """The peer program is not installed here (its Debian package named) or did not start."""


@dataclass
class PeerServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.05)
        return False


def _program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PeerUnavailable(f"{name} not installed: apt-get install {package}")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdin is not None:
        proc.stdin.close()


@contextlib.contextmanager
def _run(
    argv: Callable[[int], list[str]], ready: Callable[[int], str], tmp: Path
) -> Iterator[PeerServer]:
    """Starts the peer on a free port; another port, up to three times, when the one picked
    was taken in the meantime (the peer then exits before it is ready)."""
    why = ""
    for attempt in range(3):
        port = free_port()
        log = tmp / f"peer-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(  # stdin stays open: s_server ends at its EOF
                argv(port), stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, cwd=tmp
            )
        peer = PeerServer(proc, port, log)
        if peer.wait_for(ready(port), READY_S):
            try:
                yield peer
            finally:
                _stop(proc)
            return
        _stop(proc)
        why = peer.output()[-300:]
    raise PeerUnavailable(f"{Path(argv(0)[0]).name} did not start: {why}")


def _private(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@contextlib.contextmanager
def openssl_server(
    *,
    version: str,
    suite: str,
    psk: bytes | None = None,
    cert_pem: bytes = b"",
    key_pem: bytes = b"",
    dh_pem: bytes = b"",
) -> Iterator[PeerServer]:
    """`openssl s_server` pinned to one TLS version and one suite (at security level 0, so
    that TLS 1.0/1.1 and their signatures are allowed), PSK key and/or certificate."""
    prog = _program("openssl", "openssl")
    with tempfile.TemporaryDirectory(prefix="openscws-peer-") as t:
        tmp = Path(t)
        argv = [prog, "s_server", OPENSSL_VERSIONS[version]]
        argv += ["-cipher", f"{suite}:@SECLEVEL=0", "-no_ticket"]
        if psk is not None:
            argv += ["-psk", psk.hex()]
        if cert_pem:
            argv += ["-cert", str(_private(tmp, "cert.pem", cert_pem))]
            argv += ["-key", str(_private(tmp, "key.pem", key_pem))]
        else:
            argv += ["-nocert"]
        if dh_pem:
            argv += ["-dhparam", str(_private(tmp, "dh.pem", dh_pem))]
        with _run(lambda p: [*argv, "-accept", f"127.0.0.1:{p}"], lambda p: "ACCEPT", tmp) as peer:
            yield peer


@contextlib.contextmanager
def gnutls_server(
    *,
    version: str,
    suite: str,
    psk_identity: str,
    psk: bytes,
    cert_pem: bytes = b"",
    key_pem: bytes = b"",
) -> Iterator[PeerServer]:
    """`gnutls-serv` offering only `suite` (an OpenSSL name of `GNUTLS_SUITES`) at
    `version`, with the PSK identity and key (and certificate, for RSA-PSK)."""
    prog = _program("gnutls-serv", "gnutls-bin")
    kx, cipher, mac = GNUTLS_SUITES[suite]
    priority = (
        f"NONE:+{GNUTLS_VERSIONS[version]}:+{kx}:+{cipher}:+{mac}:+COMP-NULL:+SIGN-ALL:+GROUP-ALL"
    )
    with tempfile.TemporaryDirectory(prefix="openscws-peer-") as t:
        tmp = Path(t)
        keys = _private(tmp, "psk.txt", f"{psk_identity}:{psk.hex()}\n".encode())
        argv = [prog, "--pskpasswd", str(keys), "--priority", priority]
        if cert_pem:
            argv += ["--x509certfile", str(_private(tmp, "cert.pem", cert_pem))]
            argv += ["--x509keyfile", str(_private(tmp, "key.pem", key_pem))]
        with _run(
            lambda p: [*argv, "--port", str(p)], lambda p: f"IPv4 0.0.0.0 port {p}...done", tmp
        ) as peer:
            yield peer
