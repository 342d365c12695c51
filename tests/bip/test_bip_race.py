"""The channel free race (terminal/engine.py `_deferred_free`, bip/terminal.py
`client_connected`): client 1 closes while the card already has a CLOSE CHANNEL pending for
its channel. The card's CLOSE was built before it heard of the close, so it is stale; the next
client bound to that channel must not be disconnected by it."""

from __future__ import annotations

import pytest
from catpair import CatPair, Client

from openscws.bip.card import ChannelState as CardState
from openscws.bip.card import ServerConfig
from openscws.bip.terminal import ChannelState as TerminalState
from openscws.bip.terminal import Disconnect
from openscws.cat.commands import CloseChannel, decode_command


def _close_pending_then_client_leaves(*, waiting: bool) -> tuple[CatPair, Client | None]:
    # Two server channels at most (the third is left for a client channel): both busy, so
    # the card closes a connection after its response.
    pair = CatPair(config=ServerConfig(max_channels=3, keep_alive_slice=0.0))
    pair.startup()
    first = pair.connect()
    pair.pump()
    second = pair.connect()
    pair.pump()
    assert (first.channel, second.channel) == (1, 2)
    third = pair.connect() if waiting else None
    if third is not None:
        assert third.channel is None  # queued by the shell
    else:
        # The card takes channels back only while clients wait: one waits in the shell
        # (and gives up before it is bound, see below).
        pair.engine.clients_waiting(first.port, True)
    pair.send(first, b"GET / HTTP/1.1\r\n\r\n")
    # Run until the card announces its CLOSE CHANNEL for channel 1 (not fetched yet).
    while True:
        step = pair.step()
        assert step is not None, "the card never closed channel 1"
        pending = pair.toolkit.pending
        if pending is not None and pending.encoded[5] == 0x41:
            break
    close = decode_command(pending.encoded)
    assert close == CloseChannel.build(close.details.number, 1, to_listen=True)
    # Client 1 closes now: the LISTEN event goes before the FETCH of the stale CLOSE.
    pair.close(first)
    apdu, rsp = pair.step()  # type: ignore[misc]
    assert apdu == bytes.fromhex("80C200000D D60B99010A82028281B8024100")
    assert rsp == bytes((0x91, len(pending.encoded)))
    assert pair.app.channels[1].state is CardState.CLOSING
    return pair, third


def test_waiting_client_not_disconnected_by_stale_close() -> None:
    pair, waiting = _close_pending_then_client_leaves(waiting=True)
    assert waiting is not None
    assert waiting.channel is None  # not freed yet: the stale CLOSE is still owed
    mark = len(pair.actions)
    pair.pump()
    assert waiting.channel == 1
    assert not waiting.disconnected
    assert Disconnect(1) not in pair.actions[mark:]
    assert pair.engine.channels.channels[1].state is TerminalState.ESTABLISHED
    assert pair.app.channels[1].state is CardState.ESTABLISHED
    pair.send(waiting, b"ping")
    pair.pump()
    assert bytes(waiting.received) == b"ping"


def test_arriving_client_not_disconnected_by_stale_close() -> None:
    pair, _ = _close_pending_then_client_leaves(waiting=False)
    mark = len(pair.actions)
    # A new client arrives between the LISTEN event and the FETCH of the stale CLOSE.
    late = pair.connect()
    pair.pump()
    assert late.channel == 1
    assert not late.disconnected
    assert Disconnect(1) not in pair.actions[mark:]
    assert pair.app.channels[1].state is CardState.ESTABLISHED
    pair.send(late, b"pong")
    pair.pump()
    assert bytes(late.received) == b"pong"


@pytest.mark.parametrize("waiting", [True, False])
def test_both_sides_agree_after_the_race(waiting: bool) -> None:
    pair, _ = _close_pending_then_client_leaves(waiting=waiting)
    if not waiting:
        pair.connect()
    pair.pump()
    card = {c.id: c.state.name for c in pair.app.channels.values()}
    terminal = {c.id: c.state.name for c in pair.engine.channels.channels.values()}
    assert card == terminal
