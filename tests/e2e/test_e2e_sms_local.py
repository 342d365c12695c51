"""The real curl posts an SMS-DELIVER TPDU to the gateway's local SMS entry point
(`aio/smsc_local.py`, `GatewayConfig.sms_port`); the gateway hands it to the in-process card as
an SMS-PP download ENVELOPE and answers with the card's PoR. Also the remote administration
server's `LocalTerminalSender` and curl against the same running gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.cat.commands import Command
from openscws.cat.envelopes import Envelope, SmsPpDownload
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.ras.senders import DeliveryStatus, LocalTerminalSender
from openscws.terminal.engine import TerminalEngine
from openscws.uicc.card import CardIdentity, VirtualUicc

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

# SMS-DELIVER: UDHI, TP-OA "12345", TP-PID 7F, TP-DCS F6, TP-SCTS, UD = 02 70 00 + 4 bytes
TPDU = bytes.fromhex("44 05 81 2143F5 7F F6 52112201000000 07 027000 DEADBEEF")
POR = bytes.fromhex("027100 000B 0A B00010 0000000001 00 00")


class PorApp:
    """Answers every SMS-PP download with the same PoR user data."""

    def __init__(self) -> None:
        self.tpdus: list[bytes] = []

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        pass

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if not isinstance(envelope, SmsPpDownload):
            return None
        self.tpdus.append(envelope.tpdu.tpdu)
        return POR

    def next_command(self, number: int, now: float) -> Command | None:
        return None

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        pass

    def next_timer(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        pass


async def curl(
    curl_bin: str, url: str, body: Path, tmp_path: Path, *extra: str
) -> tuple[int, str, bytes]:
    headers, out = tmp_path / "headers", tmp_path / "out"
    proc = await asyncio.create_subprocess_exec(
        curl_bin,
        "-sS",
        "--max-time",
        "10",
        "-H",
        "Content-Type: application/vnd.3gpp.sms",
        "--data-binary",
        f"@{body}",
        "-D",
        str(headers),
        "-o",
        str(out),
        "-w",
        "%{http_code}",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    return int(stdout), headers.read_text("latin-1"), out.read_bytes()


def test_curl_posts_an_sms_and_gets_the_por(
    need_tool: Callable[[str, str], str], free_port: Callable[[], int], tmp_path: Path
) -> None:
    curl_bin = need_tool("curl", "curl")
    good, bad = tmp_path / "sms.bin", tmp_path / "bad.bin"
    good.write_bytes(TPDU)
    bad.write_bytes(b"\x44\x05\x81")

    async def main() -> None:
        app = PorApp()
        card = VirtualUicc(CardIdentity("89882390000012345678"))
        card.toolkit.register(app)
        config = GatewayConfig(sms_port=free_port())
        gw = Gateway(InProcessLink(card), TerminalEngine(), config)
        await gw.start()
        try:
            assert gw.sms_endpoint is not None
            url = gw.sms_endpoint.url
            status, headers, body = await curl(curl_bin, url, good, tmp_path)
            assert status == 200
            assert "x-sms-status: por" in headers.lower()
            assert body == POR
            assert app.tpdus == [TPDU]

            status, headers, body = await curl(curl_bin, url, bad, tmp_path)
            assert status == 400
            assert b"not an SMS-DELIVER TPDU" in body

            result = await LocalTerminalSender(url).send("+447700900123", b"\x00\x0d" + bytes(13))
            assert (result.status, result.por) == (DeliveryStatus.POR, POR)
            assert len(app.tpdus) == 2
        finally:
            await gw.stop()

    asyncio.run(main())
