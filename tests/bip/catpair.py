"""Card and terminal stacks talking APDUs in memory, no sockets (h11 `ConnectionPair`).

`CatPair` owns a VirtualUicc (Toolkit + BipServerApp with `EchoHandler`s) and a TerminalEngine,
pumps `next_apdu` -> `transmit` -> `receive_response`, and plays the gateway shell: it carries
out the engine's actions (writes, disconnects, resumed reading) and queues clients that find no
channel free until a `ChannelFree` comes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from openscws.bip.card import BipServerApp, HandlerFactory, ServerConfig
from openscws.bip.terminal import (
    ChannelFree,
    Disconnect,
    GatewayAction,
    Listen,
    Requeue,
    ResumeReading,
    Write,
)
from openscws.cat.profile import GATEWAY_PROFILE, TerminalProfile
from openscws.terminal.engine import TerminalEngine
from openscws.uicc.card import CardIdentity, VirtualUicc
from openscws.uicc.toolkit import Toolkit

ICCID = "89882390000012345678"
PORT = 3516


class EchoHandler:
    """A StreamHandler (bip/card.py) that sends back what it receives. Receiving `close_on`
    anywhere in the stream makes it ask for the connection to be closed once all is sent;
    so does `close_after_response` once something was echoed."""

    def __init__(self, channel: int, close_on: bytes | None = None) -> None:
        self.channel = channel
        self.close_on = close_on
        self.received = bytearray()
        self.pending = bytearray()
        self.closed = False
        self.want_close = False
        self.close_after = False

    def receive_data(self, data: bytes, now: float) -> None:
        assert not self.closed, "data for a closed handler"
        self.received += data
        self.pending += data
        if self.close_on is not None and self.close_on in self.received:
            self.want_close = True

    def data_to_send(self, limit: int | None = None) -> bytes:
        n = len(self.pending) if limit is None else min(limit, len(self.pending))
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    @property
    def should_close(self) -> bool:
        done = self.want_close or (self.close_after and bool(self.received))
        return done and not self.pending

    @property
    def idle(self) -> bool:
        return not self.pending

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def shutdown(self) -> None:
        self.want_close = True

    wants_input = True

    def close_after_response(self) -> None:
        self.close_after = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Client:
    """A TCP client of the gateway, as the shell sees it."""

    port: int
    channel: int | None = None
    unsent: bytearray = field(default_factory=bytearray)
    """Bytes the Rx buffer refused; fed again on ResumeReading."""
    received: bytearray = field(default_factory=bytearray)
    disconnected: bool = False


class CatPair:
    def __init__(
        self,
        *,
        config: ServerConfig | None = None,
        profile: TerminalProfile = GATEWAY_PROFILE,
        max_buffer_size: int = 65535,
        close_on: bytes | None = None,
        factories: dict[int, HandlerFactory] | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.close_on = close_on
        self.handlers: list[EchoHandler] = []
        if factories is None:
            factories = dict.fromkeys(self.config.ports, self._make)
        self.app = BipServerApp(self.config, factories)
        self.toolkit = Toolkit()
        self.toolkit.register(self.app)
        self.card = VirtualUicc(CardIdentity(ICCID), self.toolkit)
        self.card.power_on()
        self.engine = TerminalEngine(profile, max_buffer_size=max_buffer_size)
        self.now = 0.0
        self.exchanges: list[tuple[bytes, bytes]] = []
        self.actions: list[GatewayAction] = []
        self.clients: dict[int, Client] = {}
        """Clients bound to a channel, by channel id."""
        self.waiting: dict[int, deque[Client]] = {}

    def _make(self, channel: int, now: float) -> EchoHandler:
        handler = EchoHandler(channel, self.close_on)
        self.handlers.append(handler)
        return handler

    def handler(self, channel: int) -> EchoHandler:
        """The live handler of `channel` on the card."""
        h = self.app.channels[channel].handler
        assert isinstance(h, EchoHandler)
        return h

    # -- the APDU pipe --------------------------------------------------------------------------

    def step(self) -> tuple[bytes, bytes] | None:
        apdu = self.engine.next_apdu(self.now)
        if apdu is None:
            return None
        response = self.card.transmit(apdu, self.now)
        self.exchanges.append((apdu, response))
        self.engine.receive_response(response, self.now)
        self._run_actions()
        return apdu, response

    def pump(self, limit: int = 100_000) -> int:
        """Exchanges APDUs until the engine has nothing to send; returns how many."""
        for n in range(limit):
            if self.step() is None:
                return n
        raise AssertionError(f"no quiescence after {limit} APDUs")

    # -- the shell ------------------------------------------------------------------------------

    def _run_actions(self) -> None:
        for action in self.engine.pop_actions():
            self.actions.append(action)
            match action:
                case Write(channel, data):
                    client = self.clients.get(channel)
                    assert client is not None, f"write to channel {channel} without a client"
                    client.received += data
                case Disconnect(channel):
                    client = self.clients.pop(channel, None)
                    if client is not None:
                        client.disconnected = True
                case ResumeReading(channel):
                    client = self.clients.get(channel)
                    if client is not None and client.unsent:
                        data = bytes(client.unsent)
                        client.unsent.clear()
                        self.send(client, data)
                case Listen(port):
                    self.engine.listen_result(port, True)
                case ChannelFree(port):
                    self._bind_waiting(port)
                case Requeue(channel, port, data):
                    client = self.clients.pop(channel)
                    client.channel = None
                    client.unsent[:0] = data
                    self.waiting.setdefault(port, deque()).appendleft(client)
                    self._bind_waiting(port)
                case _:
                    pass

    def connect(self, port: int = PORT) -> Client:
        """A client arrives: bound at once if a channel listens, else queued."""
        client = Client(port)
        channel = self.engine.client_connected(port)
        if channel is None:
            self.waiting.setdefault(port, deque()).append(client)
            self.engine.clients_waiting(port, True)
        else:
            self._bind(client, channel)
        return client

    def _bind(self, client: Client, channel: int) -> None:
        assert channel not in self.clients, f"channel {channel} bound twice"
        client.channel = channel
        self.clients[channel] = client
        if client.unsent:
            data = bytes(client.unsent)
            client.unsent.clear()
            self.send(client, data)

    def _bind_waiting(self, port: int) -> None:
        queue = self.waiting.get(port)
        while queue:
            channel = self.engine.client_connected(port)
            if channel is None:
                break
            self._bind(queue.popleft(), channel)
        self.engine.clients_waiting(port, bool(queue))

    def send(self, client: Client, data: bytes) -> int:
        """The client writes `data`; what the Rx buffer refuses waits for ResumeReading."""
        if client.channel is None or client.unsent:
            client.unsent += data
            return 0
        taken = self.engine.client_data(client.channel, data)
        client.unsent += data[taken:]
        return taken

    def close(self, client: Client) -> None:
        """The client closes its side."""
        assert client.channel is not None
        del self.clients[client.channel]
        client.disconnected = True
        self.engine.client_closed(client.channel)

    def startup(self) -> None:
        self.pump()
