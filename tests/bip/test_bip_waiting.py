"""The card takes channels back only for clients that wait: the terminal's news of waiting
clients (`clients_waiting_event`) against keep-alive clients that fill every channel."""

from __future__ import annotations

from catpair import CatPair

from openscws.bip.card import ServerConfig
from openscws.bip.terminal import Disconnect
from openscws.cat.envelopes import EventDownload, clients_waiting_event, decode_envelope
from openscws.cat.objects import ServerState


def _full_pair() -> tuple[CatPair, list[object]]:
    # Two server channels (the third is left for a client channel), no slice: every
    # response would close its connection if the port counted as pressed.
    pair = CatPair(config=ServerConfig(max_channels=3, keep_alive_slice=0.0))
    pair.startup()
    clients = []
    for _ in range(2):
        clients.append(pair.connect())
        pair.pump()
    assert [c.channel for c in clients] == [1, 2]
    return pair, clients


def test_as_many_clients_as_channels_keep_them() -> None:
    pair, clients = _full_pair()
    for _ in range(30):
        pair.now += 0.7  # past the slice, the gap and the grace time
        for client in clients:
            pair.send(client, b"ping")  # type: ignore[arg-type]
            pair.pump()
    assert not any(isinstance(a, Disconnect) for a in pair.actions)
    assert [c.channel for c in clients] == [1, 2]  # type: ignore[attr-defined]
    assert all(bytes(c.received) == b"ping" * 30 for c in clients)  # type: ignore[attr-defined]
    assert pair.app._pressed == frozenset()


def test_a_waiting_client_gets_a_channel_and_the_news_ends() -> None:
    pair, _clients = _full_pair()
    pair.now += 1.0
    late = pair.connect()
    assert late.channel is None
    assert pair.engine.channels.waiting_ports == {late.port}
    pair.pump()
    pair.now += 1.0  # the idle connections are past the grace time
    pair.pump()
    assert late.channel is not None
    assert sum(isinstance(a, Disconnect) for a in pair.actions) == 1
    assert pair.engine.channels.waiting_ports == set()
    assert pair.app._waiting == set()
    pair.send(late, b"pong")
    pair.pump()
    assert bytes(late.received) == b"pong"


def test_the_news_is_a_channel_status_event_naming_no_channel() -> None:
    for waiting, state in ((True, ServerState.LISTEN), (False, ServerState.CLOSED)):
        raw = clients_waiting_event(3516, waiting).encode()
        # D6: event list (channel status), device identities, channel status (channel 0),
        # transport level (TCP, UICC in server mode, port 3516)
        assert raw == bytes.fromhex(f"D61099010A82028281B802{state << 6:02X}00BC03030DBC")
        decoded = decode_envelope(raw)
        assert isinstance(decoded, EventDownload)
        assert decoded.transport is not None
        assert decoded.transport.port == 3516
        assert decoded.channel_status is not None
        assert decoded.channel_status.channel == 0


def test_a_restarted_card_hears_who_waits_now() -> None:
    """The news goes again when the card sets up its event list (after a reset, say): with a
    client waiting all along, a restarted card still takes a channel back for it."""
    pair = CatPair(config=ServerConfig(max_channels=3))
    pair.startup()
    clients = [pair.connect() for _ in range(2)]
    pair.pump()
    late = pair.connect()
    pair.pump()  # no time passes: no connection is past its slice or the grace time
    assert late.channel is None
    assert pair.app._waiting == {late.port}
    pair.app._waiting.clear()  # as a card that started afresh
    pair.app._events_set = False
    pair.app._check_ports = True
    pair.send(clients[0], b"ping")
    pair.pump()
    assert pair.app._events_set
    assert pair.app._waiting == {late.port}
    pair.now += 1.0
    pair.pump()
    assert late.channel is not None
