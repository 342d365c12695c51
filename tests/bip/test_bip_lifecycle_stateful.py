"""The channel life cycle under random load, card and terminal in memory (`CatPair`): clients
connect to 3516 and 4116, send requests, close or reset, time passes, and the admin agent's
client channel opens and closes, in any order (hypothesis `RuleBasedStateMachine`).

Invariants: the card never holds more server channels than the terminal's less one, and each
port keeps its guaranteed channels; a client channel can always be opened; card and terminal
agree on every channel once the APDUs settle; every byte a client gets back is the echo of
what it sent, in order (answered, or the connection closed cleanly after an answer); and once
time passes, no channel is stuck: every waiting client gets a channel and every request sent
on an open connection is answered."""

from __future__ import annotations

from catpair import CatPair, Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from openscws.bip.card import ServerConfig
from openscws.bip.terminal import ChannelState, Mode
from openscws.cat.commands import CloseChannel, OpenChannel
from openscws.cat.objects import AddressType, OtherAddress

PORTS = (3516, 4116)
TERMINAL_CHANNELS = 7
BUDGET = TERMINAL_CHANNELS - 1
ADMIN_OPEN = OpenChannel.client(
    1, address=OtherAddress(AddressType.IPV4, bytes((127, 0, 0, 1))), port=4443, buffer_size=1400
)


class ChannelLifeCycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = CatPair(config=ServerConfig(ports=PORTS, buffer_size=600))
        self.pair.startup()
        self.clients: list[Client] = []
        self.sent: dict[int, bytearray] = {}
        self.admin: int | None = None
        self.counter = 0

    def _live(self) -> list[Client]:
        return [c for c in self.clients if not c.disconnected]

    # -- rules ------------------------------------------------------------------------------

    @rule(port=st.sampled_from(PORTS))
    def connect(self, port: int) -> None:
        client = self.pair.connect(port)
        self.clients.append(client)
        self.sent[id(client)] = bytearray()

    @precondition(lambda self: any(c.channel is not None for c in self._live()))
    @rule(pick=st.integers(0, 50), size=st.sampled_from([1, 20, 300, 1500]))
    def request(self, pick: int, size: int) -> None:
        bound = [c for c in self._live() if c.channel is not None]
        client = bound[pick % len(bound)]
        self.counter += 1
        data = bytes((0x41 + (self.counter + i) % 26) for i in range(size))
        self.sent[id(client)] += data
        self.pair.send(client, data)

    @precondition(lambda self: any(c.channel is not None for c in self._live()))
    @rule(pick=st.integers(0, 50))
    def client_closes(self, pick: int) -> None:
        """A half-close or a reset: to the terminal, the connection is gone."""
        bound = [c for c in self._live() if c.channel is not None]
        self.pair.close(bound[pick % len(bound)])

    @precondition(lambda self: any(c.channel is None for c in self._live()))
    @rule(pick=st.integers(0, 50))
    def waiting_client_gives_up(self, pick: int) -> None:
        waiting = [c for c in self._live() if c.channel is None]
        client = waiting[pick % len(waiting)]
        queue = self.pair.waiting[client.port]
        queue.remove(client)
        self.pair.engine.clients_waiting(client.port, bool(queue))
        client.disconnected = True

    @rule(steps=st.integers(0, 30))
    def run_some(self, steps: int) -> None:
        for _ in range(steps):
            if self.pair.step() is None:
                break

    @rule(seconds=st.sampled_from([0.1, 0.6, 1.5]))
    def time_passes(self, seconds: float) -> None:
        self.pair.now += seconds
        self.pair.pump()

    @precondition(lambda self: self.admin is None)
    @rule()
    def admin_opens(self) -> None:
        channels = self.pair.engine.channels
        channel, refused = channels.open_client(ADMIN_OPEN)
        assert refused is None, "the admin agent's client channel was refused"
        channels.client_connect_result(ADMIN_OPEN, channel, True)
        self.admin = channel

    @precondition(lambda self: self.admin is not None)
    @rule()
    def admin_closes(self) -> None:
        assert self.admin is not None
        self.pair.engine.channels.close(CloseChannel.build(2, self.admin, to_listen=False))
        self.pair.engine.pop_actions()
        self.admin = None

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def channels_within_bounds(self) -> None:
        table = self.pair.engine.channels.channels
        servers = [c for c in table.values() if c.mode is Mode.SERVER]
        assert len(servers) <= BUDGET
        assert len(self.pair.app.channels) <= BUDGET
        if self.admin is None:
            assert len(table) < TERMINAL_CHANNELS, "no channel left for the admin agent"

    @invariant()
    def echoes_are_answers(self) -> None:
        for client in self.clients:
            sent = self.sent[id(client)]
            assert sent.startswith(client.received), "bytes back that were not an answer"

    @invariant()
    def nothing_stuck_once_time_passes(self) -> None:
        pair = self.pair
        # Settle: run the APDUs, let time pass for the card's timers and polls.
        for _ in range(40):
            pair.pump()
            if not any(pair.waiting.values()) and all(
                c.received == self.sent[id(c)] for c in self._live() if c.channel is not None
            ):
                break
            pair.now += 0.6
        assert not any(pair.waiting.values()), "a client waits for good"
        for client in self._live():
            assert client.channel is not None
            assert client.received == self.sent[id(client)], "a request never answered"
        # Card and terminal agree on every channel.
        card = {c.id: (c.port, c.state.name) for c in pair.app.channels.values()}
        terminal = {
            c.id: (c.port, "LISTEN" if c.state is ChannelState.HELD else c.state.name)
            for c in pair.engine.channels.channels.values()
            if c.mode is Mode.SERVER
        }
        assert card == terminal
        # Each port keeps its guaranteed channels.
        for port in PORTS:
            assert sum(1 for c in pair.app.channels.values() if c.port == port) >= 2


ChannelLifeCycle.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_channel_life_cycle = ChannelLifeCycle.TestCase
