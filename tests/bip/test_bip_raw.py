"""The card's transfer commands built straight to bytes (`Transfer`, bip/card.py) against the
typed codec: the same bytes as the layout engine, and, for every form of TERMINAL RESPONSE,
the same effect whether the app's byte-level reader or the typed path takes it."""

from __future__ import annotations

import copy

import pytest
from catpair import CatPair, Client, EchoHandler

from openscws.bip.card import BipServerApp, Channel, ChannelState, ServerConfig
from openscws.bip.terminal import Disconnect
from openscws.cat.commands import Command, ReceiveData, SendData, decode_command
from openscws.uicc.toolkit import State, Transfer

TR_HEAD = bytes.fromhex("8014000000")


# -- encodings --------------------------------------------------------------------------------


def _app_with_channel(buffer_size: int, channel_id: int) -> tuple[BipServerApp, Channel]:
    handler = EchoHandler(channel_id)
    app = BipServerApp(ServerConfig(), {3516: lambda channel, now: handler})
    channel = Channel(channel_id, 3516, buffer_size, ChannelState.ESTABLISHED, handler)
    app.channels[channel_id] = channel
    return app, channel


@pytest.mark.parametrize("length", [1, 116, 117, 127, 128, 239, 240, 241, 1226, 8197])
@pytest.mark.parametrize("buffer_size", [8192, 1400, 300, 241])
@pytest.mark.parametrize(("number", "channel_id"), [(1, 1), (0xFE, 7)])
def test_send_data_bytes_match_the_layout_engine(
    length: int, buffer_size: int, number: int, channel_id: int
) -> None:
    app, channel = _app_with_channel(buffer_size, channel_id)
    assert isinstance(channel.handler, EchoHandler)
    payload = bytes((i * 7) & 0xFF for i in range(length))
    channel.handler.pending += payload
    sent = bytearray()
    stored = 0
    piece = 0  # what is left of the handler's last data_to_send(buffer_size)
    while len(sent) < length:
        if not piece:
            piece = min(buffer_size, length - len(sent))
        command = app._work(channel, number, 0.0)
        assert isinstance(command, Transfer)
        typed = decode_command(command.encoded)
        assert isinstance(typed, SendData)
        assert command.encoded == Command.encode(typed) == typed.encode()
        assert typed == SendData.build(
            number, channel_id, typed.data.data, immediately=typed.immediately
        )
        assert command.channel == typed.channel == channel_id
        size = len(typed.data.data)
        assert 0 < size <= 240
        stored += size
        assert stored <= buffer_size
        # flush at the end of the handler's output, or when another full chunk would not fit
        assert typed.immediately == (size == piece or stored + 240 > buffer_size)
        piece -= size
        if typed.immediately:
            stored = 0
        sent += typed.data.data
    assert sent == payload
    assert channel.out_pos == 0
    assert channel.out == b""


@pytest.mark.parametrize("pending", [1, 0x7F, 0x80, 237, 238, 255])
@pytest.mark.parametrize(("number", "channel_id"), [(1, 1), (0xFE, 7)])
def test_receive_data_bytes_match_the_layout_engine(
    pending: int, number: int, channel_id: int
) -> None:
    app, channel = _app_with_channel(8192, channel_id)
    channel.rx_pending = pending
    command = app._work(channel, number, 0.0)
    assert isinstance(command, Transfer)
    typed = ReceiveData.build(number, channel_id, min(pending, 237))
    assert command.encoded == Command.encode(typed) == typed.encode()
    assert decode_command(command.encoded) == typed
    assert command.channel == channel_id


# -- TERMINAL RESPONSE readers against the typed path --------------------------------------------


def _fetched(kind: type[Command], payload: bytes) -> CatPair:
    """A pair whose card has just had its first `kind` command fetched: the TR is due."""
    pair = CatPair()
    pair.startup()
    client = pair.connect()
    pair.pump()
    pair.send(client, payload)
    for _ in range(1000):
        step = pair.step()
        assert step is not None, f"no {kind.__name__} fetched"
        apdu, _ = step
        pending = pair.toolkit.pending
        if apdu[1] == 0x12 and pending is not None:
            assert pair.toolkit.state is State.FETCHED
            if isinstance(decode_command(pending.encoded), kind):
                assert isinstance(pending.command, Transfer)
                return pair
    raise AssertionError(f"no {kind.__name__} fetched in 1000 APDUs")


def _snapshot(pair: CatPair) -> object:
    toolkit = pair.toolkit
    channels = {
        cid: (
            c.state,
            c.out[c.out_pos :],
            c.rx_pending,
            c.tx_stored,
            c.closing,
            c.yielding,
            c.since,
            c.ready,
            None
            if c.handler is None
            else (bytes(c.handler.received), bytes(c.handler.pending), c.handler.closed),  # type: ignore[attr-defined]
        )
        for cid, c in pair.app.channels.items()
    }
    pending = toolkit.pending
    return (
        toolkit.state,
        None if pending is None else pending.encoded,
        channels,
        pair.app._check_ports,
        [h.closed for h in pair.handlers],
    )


def _both_ways(pair: CatPair, tr: bytes, before: object = None, *, read: bool = False) -> None:
    """The TR through the raw reader and through the typed path: same SW, same state. `read`:
    the reader takes this form (else it leaves it to the typed path)."""
    probe = copy.deepcopy(pair)
    if before is not None:
        before(probe)  # type: ignore[operator]
    assert probe.toolkit.terminal_response_raw(tr, 1.0) is read
    raw, typed = copy.deepcopy(pair), copy.deepcopy(pair)
    if before is not None:
        for p in (raw, typed):
            before(p)  # type: ignore[operator]
    assert typed.toolkit.pending is not None
    typed.toolkit.pending.typed()  # the command as an object: the reader is not asked
    assert not isinstance(typed.toolkit.pending.command, Transfer)
    apdu = TR_HEAD[:4] + bytes((len(tr),)) + tr
    sw_raw = raw.card.transmit(apdu, 1.0)
    sw_typed = typed.card.transmit(apdu, 1.0)
    assert sw_raw == sw_typed
    assert _snapshot(raw) == _snapshot(typed)


def _receive_data_tr(number: int, body: str) -> bytes:
    return bytes((0x81, 3, number, 0x42, 0)) + bytes.fromhex(body)


RECEIVE_DATA_FORMS = [
    # plain, performed (the reader takes these): result 00 / 02 (fewer than asked) / 07
    # (cut), short and 81 lengths
    "82028281 830100 B605474554202F B70100",
    "82028281 830102 B60447455420 B70105",
    "82028281 830107 B6054745542020 B701FF",
    "82028281 830100 B600 B70100",  # no data: the engine takes it as the client's EOF
    "82028281 830100 B67F" + "41" * 0x7F + "B70100",
    "82028281 830100 B68180" + "41" * 0x80 + "B70100",
    "82028281 830100 B681ED" + "41" * 237 + "B70112",
    # not performed
    "82028281 83023A03",
    "82028281 830121 B600 B70100",
    # other forms, all typed
    "02028281 830100 B60447455420 B70100",  # device identities with CR clear
    "82028182 830100 B60447455420 B70100",  # device identities the other way round
    "82028281 830100 360447455420 B70100",  # channel data with CR clear
    "82028281 830100 B6810447455420 B70100",  # 81 form below 128: malformed
    "82028281 830100 B60447455420",  # no channel data length
    "82028281 830100 B60447455420 B70100 B9020578",  # a trailing object
    "82028281 830100 B60447455420 B7020000",  # channel data length of two bytes
    "82028281 830100 B6064745542020",  # truncated
    "82028281 830100 B605474554",  # truncated data
    "82028281",  # no result
]


@pytest.mark.parametrize(("k", "body"), list(enumerate(RECEIVE_DATA_FORMS)))
def test_receive_data_tr_read_as_typed(k: int, body: str) -> None:
    pair = _fetched(ReceiveData, b"GET / HTTP/1.1\r\n\r\n")
    pending = pair.toolkit.pending
    assert pending is not None
    number = pending.encoded[4]
    body = body.replace(" ", "")
    _both_ways(pair, _receive_data_tr(number, body), read=k < 7)


@pytest.mark.parametrize(
    "tr",
    [
        "010300420082028281830100B60447455420B70100",  # command details with CR clear
        "810300420182028281830100B60447455420B70100",  # another qualifier
        "810300430082028281830100B60447455420B70100",  # another command type
    ],
)
def test_receive_data_tr_details_must_echo(tr: str) -> None:
    pair = _fetched(ReceiveData, b"GET / HTTP/1.1\r\n\r\n")
    pending = pair.toolkit.pending
    assert pending is not None
    raw = bytearray(bytes.fromhex(tr))
    raw[2] = pending.encoded[4]
    _both_ways(pair, bytes(raw))
    raw[2] = (raw[2] % 0xFE) + 1  # another number: never the command's
    _both_ways(pair, bytes(raw))


def _drop_handler(pair: CatPair) -> None:
    pair.app._gone(pair.app.channels[1])


def _drop_channel(pair: CatPair) -> None:
    del pair.app.channels[1]


@pytest.mark.parametrize("change", [_drop_handler, _drop_channel])
def test_receive_data_tr_for_a_channel_gone(change: object) -> None:
    pair = _fetched(ReceiveData, b"GET / HTTP/1.1\r\n\r\n")
    pending = pair.toolkit.pending
    assert pending is not None
    tr = _receive_data_tr(pending.encoded[4], "82028281830100B60447455420B70100")
    _both_ways(pair, tr, change, read=True)


SEND_DATA_FORMS = [
    # plain, performed (the toolkit takes these: nothing to do)
    "82028281 830100 B701FF",
    "82028281 830100 B70100",
    # typed
    "82028281 830103 B70110",  # performed, with a result other than 00
    "82028281 83023A03",  # the client is gone
    "82028281 830130 B701FF",  # not performed
    "82028281 830100",  # no free space
    "02028281 830100 B701FF",  # device identities with CR clear
    "82028281 030100 B701FF",  # result with CR clear
    "82028281 830100 B701FF B9020578",  # a trailing object
    "82028281 830100 B702FFFF",  # free space of two bytes
    "82028281 830100 B701",  # truncated
    "8202",  # truncated device identities
]


@pytest.mark.parametrize(("k", "body"), list(enumerate(SEND_DATA_FORMS)))
@pytest.mark.parametrize("size", [5, 700])
def test_send_data_tr_read_as_typed(k: int, body: str, size: int) -> None:
    pair = _fetched(SendData, b"x" * size)
    pending = pair.toolkit.pending
    assert pending is not None
    typed = decode_command(pending.encoded)
    d = typed.details
    tr = bytes((0x81, 3, d.number, d.type, d.qualifier)) + bytes.fromhex(body.replace(" ", ""))
    _both_ways(pair, tr, read=k < 2)
    wrong = bytes((0x81, 3, d.number, d.type, d.qualifier ^ 1)) + tr[5:]
    _both_ways(pair, wrong)
    cr_clear = bytes((0x01, 3, d.number, d.type, d.qualifier)) + tr[5:]
    _both_ways(pair, cr_clear)


def test_echo_through_raw_commands_is_byte_exact() -> None:
    pair = CatPair()
    pair.startup()
    client = pair.connect()
    pair.pump()
    payload = bytes(range(256)) * 40
    pair.send(client, payload)
    pair.pump()
    assert bytes(client.received) == payload
    # every RECEIVE DATA and SEND DATA went out as a `Transfer`, in the typed bytes
    kinds = set()
    for apdu, response in pair.exchanges:
        if apdu[1] == 0x12 and len(response) > 2:
            command = decode_command(response[:-2])
            kinds.add(type(command))
            assert Command.encode(command) == response[:-2]
    assert {ReceiveData, SendData} <= kinds


# -- the scheduler's cached state against recomputing it each time -------------------------------


class _Recompute(BipServerApp):
    """The card's app recomputing the channel order and the saturated ports for every
    command, as it did before they were kept between changes."""

    def next_step(self, number: int, now: float) -> Command | Transfer | None:
        self._order = None
        self._saturation = None
        return super().next_step(number, now)


def _script_run(seed: int, *, cached: bool, max_channels: int) -> CatPair:
    import random

    rng = random.Random(seed)
    pair = CatPair(config=ServerConfig(max_channels=max_channels), close_on=b"!")
    if not cached:
        pair.app.__class__ = _Recompute
    pair.startup()
    clients: list[Client] = []
    for _ in range(300):
        action = rng.random()
        clients = [c for c in clients if not c.disconnected]
        live = [c for c in clients if c.channel is not None]
        if action < 0.15 and len(clients) < 6:
            clients.append(pair.connect())
        elif action < 0.65 and live:
            size = rng.choice([1, 5, 70, 240, 241, 700, 3000])
            payload = bytes(rng.randrange(33, 126) for _ in range(size))
            if rng.random() < 0.05:
                payload += b"!"  # the echo handler asks to close after this
            pair.send(rng.choice(live), payload)
        elif action < 0.7 and live:
            pair.close(rng.choice(live))
        for _ in range(rng.randrange(0, 40)):
            if pair.step() is None:
                break
    pair.pump()
    return pair


@pytest.mark.parametrize("max_channels", [2, 3, 7])
@pytest.mark.parametrize("seed", range(6))
def test_cached_scheduler_state_changes_nothing(seed: int, max_channels: int) -> None:
    cached = _script_run(seed, cached=True, max_channels=max_channels)
    recomputed = _script_run(seed, cached=False, max_channels=max_channels)
    assert cached.exchanges == recomputed.exchanges
    assert cached.actions == recomputed.actions
    assert len(cached.exchanges) > 200
    if max_channels < 7:
        # finished keep-alive connections were closed for waiting clients
        assert any(isinstance(a, Disconnect) for a in cached.actions)


# -- the toolkit application's contract ---------------------------------------------------------


def test_the_servers_next_command_is_typed() -> None:
    """`next_command` (the `ToolkitApp` contract) gives the transfer commands typed, in the
    bytes `next_step` gives the toolkit."""
    for pending, kind in ((0, SendData), (9, ReceiveData)):
        fast, _ = _app_with_channel(1400, 3)
        typed_app, _ = _app_with_channel(1400, 3)
        for app in (fast, typed_app):
            app.enabled = app._events_set = True
            app._check_ports = False
            channel = app.channels[3]
            channel.ready = True
            channel.rx_pending = pending
            assert isinstance(channel.handler, EchoHandler)
            channel.handler.pending += b"x" * 300
        step = fast.next_step(5, 0.0)
        command = typed_app.next_command(5, 0.0)
        assert isinstance(step, Transfer)
        assert isinstance(command, kind)
        assert command.encode() == step.encoded


def test_a_typed_server_echoes_like_the_pump() -> None:
    """A toolkit that asks the server only its `next_command` (typed commands, typed TRs)
    sees the same APDUs as one that takes its `Transfer`s."""
    runs = []
    for typed in (False, True):
        pair = CatPair()
        if typed:
            pair.toolkit._ask = [pair.app.next_command]
        pair.startup()
        client = pair.connect()
        pair.pump()
        payload = bytes(range(256)) * 12
        pair.send(client, payload)
        pair.pump()
        assert bytes(client.received) == payload
        runs.append(pair.exchanges)
    assert runs[0] == runs[1]
