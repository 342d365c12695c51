"""The admin server's PSK-TLS HTTPS endpoint against third-party TLS clients: openssl s_client
-psk and gnutls-cli speak the card's side of an Amd B session by hand (the first POST) and get
the job's first SCWS admin command; a wrong key, an unknown identity, a POST that is too big
are refused in TLS or HTTP terms. The server runs in a thread of the test, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from openscws.aio.stack import AdminStack, start_admin, under
from openscws.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

ICCID = "8988211000000000045"
IDENTITY = "scws-psk-test"
KEY = bytes(range(16))
FIRST_POST = (
    b"POST /scws/admin HTTP/1.1\r\nHost: localhost\r\n"
    b"X-Admin-Protocol: globalplatform-remote-admin/1.0\r\nX-Admin-From: //peer\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Running:
    def __init__(self, stack: AdminStack, loop: asyncio.AbstractEventLoop) -> None:
        self.stack = stack
        self.loop = loop

    @property
    def port(self) -> int:
        return self.stack.server.port

    def new_job(self) -> str:
        """A job in state triggered for the card, as if its SMS had gone out."""
        service = self.stack.service
        service.put_content("/peer.html", b"<p>peer</p>", "text/html")
        service.create_campaign("peer", cards=[ICCID])
        works = service.claim_triggers(self.stack.server.owner, 10, _now())
        assert len(works) == 1
        return works[0].job_id


def _now():  # type: ignore[no-untyped-def]
    from openscws.ras.service import utc_now

    return utc_now()


@pytest.fixture(scope="module")
def ras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The default admin profile ("modern")."""
    yield from _serve(tmp_path_factory, "modern")


@pytest.fixture(scope="module")
def ras_compat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """admin.tls_profile = "compat": TLS 1.0/1.1 and TLS_PSK_WITH_3DES_EDE_CBC_SHA too."""
    yield from _serve(tmp_path_factory, "compat")


def _serve(tmp_path_factory: pytest.TempPathFactory, profile: str) -> Iterator[Running]:
    settings = under(Settings(), tmp_path_factory.mktemp("ras-" + profile))
    settings = replace(settings, admin=replace(settings.admin, port=0, tls_profile=profile))
    ready = threading.Event()
    box: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        # No trigger loop: the tests claim jobs themselves, as if the SMS had gone out.
        stack = await start_admin(
            settings, sms_url="http://127.0.0.1:9/sms", api=False, triggers=False
        )
        stack.service.add_card(
            ICCID,
            "+15550100042",
            psk_identity=IDENTITY,
            psk_key=KEY,
            agent_id="//peer",
            ota_tar=bytes(3),
            kic_key=bytes(16),
            kid_key=bytes(16),
        )
        box["stack"] = stack
        box["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        await stack.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    stack = box["stack"]
    assert isinstance(stack, AdminStack)
    yield Running(stack, loop)
    stop = box["stop"]
    assert isinstance(stop, asyncio.Event)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def _talk(cmd: list[str], data: bytes, *, wait: float = 3.0) -> tuple[int, str]:
    """Runs a TLS client tool with `data` on its stdin, kept open until the peer has had
    `wait` seconds to answer (both tools quit at stdin EOF, before the answer); returns the
    exit code (-15 when still connected and stopped here) and the output."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdin is not None
    proc.stdin.write(data)
    proc.stdin.flush()
    try:
        out, _ = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    return proc.returncode, out.decode("latin-1")


def _s_client(tool: str, port: int, identity: str, key: bytes, data: bytes) -> tuple[int, str]:
    cmd = [
        tool, "s_client", "-connect", f"127.0.0.1:{port}", "-psk_identity", identity,
        "-psk", key.hex(), "-cipher", "PSK-AES128-GCM-SHA256", "-tls1_2", "-quiet",
    ]  # fmt: skip
    return _talk(cmd, data)


def test_s_client_psk_gets_the_first_command(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    job = ras.new_job()
    _code, out = _s_client(openssl, ras.port, IDENTITY, KEY, FIRST_POST)
    assert "HTTP/1.1 200" in out, out
    assert "application/vnd.oma-scws-http-request" in out
    assert f"X-Admin-Next-URI: /scws/admin/{job}" in out
    assert "PUT /peer.html HTTP/1.1" in out
    assert f"X-SCWS-Transaction: {job}" in out


def test_gnutls_cli_psk_with_nothing_to_do_gets_204(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    # The job left in session by the previous test is not offered twice on a new connection
    # while its lease runs; an open session for this card ends with 204 or a command.
    cmd = [
        gnutls, "--port", str(ras.port), "--pskusername", IDENTITY, "--pskkey", KEY.hex(),
        "--priority", "NORMAL:-VERS-TLS1.3:+PSK:-KX-ALL:+PSK", "--insecure", "127.0.0.1",
    ]  # fmt: skip
    _, out = _talk(cmd, FIRST_POST)
    assert "PSK" in out
    assert "HTTP/1.1 204" in out or "HTTP/1.1 200" in out, out


def test_wrong_key_is_refused_in_the_handshake(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    code, out = _s_client(openssl, ras.port, IDENTITY, bytes(16), FIRST_POST)
    assert code != 0
    assert "HTTP/1.1" not in out
    assert "alert" in out.lower(), out


def _alert_lines(out: str) -> list[str]:
    return [line.split(":", 5)[-1] for line in out.splitlines() if "alert" in line.lower()]


def test_unknown_identity_is_refused_as_a_wrong_key(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    """RFC 4279 §2: an unknown identity (scws-<ICCID> names a card) gets the very alert a
    wrong key gets, so identities cannot be enumerated; s_client and gnutls-cli both."""
    openssl = need_tool("openssl", "openssl")
    code, out = _s_client(openssl, ras.port, "scws-8988211000000000999", KEY, FIRST_POST)
    assert code != 0
    assert "HTTP/1.1" not in out
    _, wrong = _s_client(openssl, ras.port, IDENTITY, bytes(16), FIRST_POST)
    assert "SSL alert number 20" in out, out
    assert _alert_lines(out) == _alert_lines(wrong), (out, wrong)
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    seen = []
    for identity, key in (("scws-8988211000000000999", KEY), (IDENTITY, bytes(16))):
        cmd = [
            gnutls, "--port", str(ras.port), "--pskusername", identity, "--pskkey", key.hex(),
            "--priority", "NORMAL:-VERS-TLS1.3:-KX-ALL:+PSK", "127.0.0.1",
        ]  # fmt: skip
        _, said = _talk(cmd, FIRST_POST)
        seen.append([line for line in said.splitlines() if "Received alert" in line])
    assert seen[0] == seen[1] == ["*** Received alert [20]: Bad record MAC"], seen


def test_oversized_post_is_refused_with_413(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    openssl = need_tool("openssl", "openssl")
    big = FIRST_POST.replace(b"Content-Length: 0", b"Content-Length: 100000000")
    _code, out = _s_client(openssl, ras.port, IDENTITY, KEY, big)
    assert "HTTP/1.1 413" in out, out


GNUTLS_3DES_ONLY = (
    "NONE:+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"
)
"""A client that allows only TLS_PSK_WITH_3DES_EDE_CBC_SHA (PSK-3DES-EDE-CBC-SHA1)."""


def _gnutls_3des(tool: str, port: int, version: str = "") -> tuple[int, str]:
    priority = GNUTLS_3DES_ONLY
    if version:
        priority = priority.replace("+VERS-TLS1.2:+VERS-TLS1.1:+VERS-TLS1.0", "+" + version)
    cmd = [
        tool, "--port", str(port), "--pskusername", IDENTITY, "--pskkey", KEY.hex(),
        "--priority", priority, "127.0.0.1",
    ]  # fmt: skip
    return _talk(cmd, FIRST_POST)


def test_gnutls_cli_3des_only_reaches_the_first_command_in_compat(
    ras_compat: Running, need_tool: Callable[[str, str], str]
) -> None:
    """SCWS §11.1.1.1: the admin server offers TLS_PSK_WITH_3DES_EDE_CBC_SHA (through GnuTLS,
    OpenSSL here has no 3DES) in the compat admin profile; the Amd B exchange reaches the
    job's first embedded request."""
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    job = ras_compat.new_job()
    _, out = _gnutls_3des(gnutls, ras_compat.port)
    assert "- Description: (TLS1.2-X.509)-(PSK)-(3DES-CBC)-(SHA1)" in out, out
    assert "HTTP/1.1 200" in out, out
    assert "application/vnd.oma-scws-http-request" in out
    assert "PUT /peer.html HTTP/1.1" in out
    assert f"X-SCWS-Transaction: {job}" in out


def test_gnutls_cli_3des_tls1_0_in_compat(
    ras_compat: Running, need_tool: Callable[[str, str], str]
) -> None:
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    _, out = _gnutls_3des(gnutls, ras_compat.port, "VERS-TLS1.0")
    assert "- Description: (TLS1.0-X.509)-(PSK)-(3DES-CBC)-(SHA1)" in out, out
    assert "HTTP/1.1 204" in out or "HTTP/1.1 200" in out, out


def test_gnutls_cli_3des_only_is_refused_in_modern(
    ras: Running, need_tool: Callable[[str, str], str]
) -> None:
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    _, out = _gnutls_3des(gnutls, ras.port)
    assert "Received alert [40]" in out, out
    assert "HTTP/1.1" not in out


def test_compat_wrong_key_and_unknown_identity_alike_over_3des(
    ras_compat: Running, need_tool: Callable[[str, str], str]
) -> None:
    """No identity oracle on the GnuTLS path either."""
    gnutls = need_tool("gnutls-cli", "gnutls-bin")
    seen = []
    for identity, key in (("scws-8988211000000000999", KEY), (IDENTITY, bytes(16))):
        cmd = [
            gnutls, "--port", str(ras_compat.port), "--pskusername", identity,
            "--pskkey", key.hex(), "--priority", GNUTLS_3DES_ONLY, "127.0.0.1",
        ]  # fmt: skip
        _, out = _talk(cmd, FIRST_POST)
        seen.append([line for line in out.splitlines() if "Received alert" in line])
    assert seen[0] == seen[1] == ["*** Received alert [20]: Bad record MAC"], seen
