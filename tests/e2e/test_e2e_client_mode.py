"""A client-mode channel against a real third-party server: the card opens "TCP, UICC in client
mode" to 192.0.2.1:443, the gateway (`connect_map`) connects to `openssl s_server` on
127.0.0.1, and the card's PSK-TLS client (`tls.endpoint.TlsClientHandler`, the admin agent's
link) handshakes and fetches s_server's `-www` status page: every TLS record crosses the BIP
channel as SEND DATA / RECEIVE DATA between the gateway and the in-process card."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openscws.aio.gateway import Gateway, GatewayConfig
from openscws.aio.links import InProcessLink
from openscws.cat.commands import (
    CloseChannel,
    Command,
    OpenChannel,
    ReceiveData,
    SendData,
    SetUpEventList,
)
from openscws.cat.envelopes import Envelope, EventDownload
from openscws.cat.objects import AddressType, Event, OtherAddress
from openscws.cat.profile import TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.terminal.engine import TerminalEngine
from openscws.tls import TlsClientHandler, psk_client_context
from openscws.uicc.card import CardIdentity, VirtualUicc

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

IDENTITY = "scws01"
KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")
REQUEST = b"GET / HTTP/1.0\r\n\r\n"


class HttpGet:
    """The inner (plaintext) handler: one request, the whole response until EOF."""

    def __init__(self) -> None:
        self.out = REQUEST
        self.response = bytearray()
        self.eof = False
        self.closed = False

    def receive_data(self, data: bytes, now: float) -> None:
        if data:
            self.response += data
        else:
            self.eof = True

    def data_to_send(self, limit: int | None = None) -> bytes:
        out, self.out = self.out, b""
        return out

    @property
    def should_close(self) -> bool:
        return self.eof

    @property
    def idle(self) -> bool:
        return not self.out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def shutdown(self) -> None:
        self.eof = True

    wants_input = True

    def close_after_response(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class TlsClientApp:
    """Opens the client channel and moves the TLS client's bytes over it."""

    def __init__(self) -> None:
        self.inner = HttpGet()
        self.tls: TlsClientHandler | None = None
        self.steps = ["events", "open"]
        self.channel: int | None = None
        self.buffer_size = 1400
        self.rx_pending = 0
        self.out = bytearray()
        self.dropped = False
        self.closed = False

    def on_terminal_profile(self, profile: TerminalProfile, now: float) -> None:
        pass

    def on_envelope(self, envelope: Envelope, now: float) -> bytes | None:
        if not isinstance(envelope, EventDownload) or envelope.channel_status is None:
            return None
        if envelope.channel_status.channel != self.channel:
            return None
        if Event.DATA_AVAILABLE in envelope.event.events and envelope.data_length is not None:
            self.rx_pending = envelope.data_length.length
        elif envelope.channel_status.bits == 0 and self.tls is not None:
            self.dropped = True
            self.tls.receive_data(b"", now)
        return b""

    def next_command(self, number: int, now: float) -> Command | None:
        if self.steps:
            match self.steps.pop(0):
                case "events":
                    events = (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS)
                    return SetUpEventList.build(number, events)
                case _:
                    address = OtherAddress(AddressType.IPV4, bytes((192, 0, 2, 1)))
                    return OpenChannel.client(
                        number, address=address, port=443, buffer_size=self.buffer_size
                    )
        if self.channel is None or self.tls is None or self.closed:
            return None
        if self.rx_pending:
            return ReceiveData.build(number, self.channel, min(self.rx_pending, 237))
        if not self.dropped:
            self.out += self.tls.data_to_send()
        if self.out:
            chunk = bytes(self.out[:240])
            del self.out[:240]
            return SendData.build(number, self.channel, chunk, immediately=not self.out)
        if self.dropped or self.tls.should_close:
            self.closed = True
            return CloseChannel.build(number, self.channel, to_listen=False)
        return None

    def on_terminal_response(
        self, command: Command, response: TerminalResponse, now: float
    ) -> None:
        match command:
            case OpenChannel():
                status = response.channel_status
                assert response.result.ok, response.result
                assert status is not None
                self.channel = status.channel
                ctx = psk_client_context(IDENTITY, KEY)
                self.tls = TlsClientHandler(ctx, self.inner, now=now)
                self.out += self.tls.start(now)
            case ReceiveData():
                self.rx_pending = response.data_length.length if response.data_length else 0
                if response.data is not None and self.tls is not None:
                    self.tls.receive_data(response.data.data, now)
            case _:
                pass

    def next_timer(self) -> float | None:
        return None

    def on_timer(self, now: float) -> None:
        pass


@pytest.fixture
def s_server(
    need_tool: Callable[[str, str], str], free_port: Callable[[], int], tmp_path: Path
) -> Iterator[int]:
    openssl = need_tool("openssl", "openssl")
    port = free_port()
    log = tmp_path / "s_server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                openssl,
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-nocert",
                "-psk_identity",
                IDENTITY,
                "-psk",
                KEY.hex(),
                "-tls1_2",
                "-cipher",
                "PSK",
                "-www",
                "-naccept",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while b"ACCEPT" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_psk_tls_through_a_client_channel_to_openssl(s_server: int) -> None:
    async def main() -> TlsClientApp:
        app = TlsClientApp()
        card = VirtualUicc(CardIdentity("89882390000012345678"))
        card.toolkit.register(app)
        config = GatewayConfig(connect_map={("192.0.2.1", 443): ("127.0.0.1", s_server)})
        gw = Gateway(InProcessLink(card), TerminalEngine(poll_interval=0.05), config)
        await gw.start()
        try:
            deadline = time.monotonic() + 15
            while not (app.closed and app.channel is not None):
                assert time.monotonic() < deadline, bytes(app.inner.response)[:200]
                await asyncio.sleep(0.02)
        finally:
            await gw.stop()
        return app

    app = asyncio.run(main())
    response = bytes(app.inner.response)
    assert response.startswith(b"HTTP/1.0 200 ok"), response[:200]
    # s_server -www reports the session it negotiated: TLS 1.2 with the card's first PSK suite
    assert b"New, TLSv1.2, Cipher is PSK-AES128-GCM-SHA256" in response
    assert response.endswith(b"</HTML>\r\n\r\n")
