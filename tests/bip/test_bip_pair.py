"""Card (VirtualUicc + BipServerApp) and terminal (TerminalEngine) in memory, talking APDUs
(h11 ConnectionPair style; spec digest §3-4)."""

from __future__ import annotations

import pytest
from catpair import PORT, CatPair

from openscws.bip.card import MAX_RECEIVE, MAX_SEND, ServerConfig
from openscws.bip.card import ChannelState as CardState
from openscws.bip.terminal import ChannelFree, Disconnect, Listen, ResumeReading, Write
from openscws.bip.terminal import ChannelState as TerminalState
from openscws.cat.commands import (
    CloseChannel,
    Command,
    OpenChannel,
    ReceiveData,
    SendData,
    decode_command,
)
from openscws.cat.profile import GATEWAY_PROFILE, Feature, TerminalProfile
from openscws.cat.responses import TerminalResponse

# cat-bip-apdu.md §4.1, §1.6 (WS-SIM, PYCAT): TERMINAL PROFILE, card answers 91 0F
TP = bytes.fromhex("8010000011 13016800010C00000000001FE200000005")
# cat-bip-apdu.md §4.1, §3.7 (PYCAT): FETCH and SET UP EVENT LIST
FETCH_0F = bytes.fromhex("801200000F")
SUEL = bytes.fromhex("D00D8103010500820281829902090A 9000")
# cat-bip-apdu.md §3.7 (PYCAT, MTK-BIP): its TR; next command is 20 bytes (91 14)
SUEL_TR = bytes.fromhex("801400000C 810301050082028281830100")
# cat-bip-apdu.md §3.1 (BLOG): OPEN CHANNEL server 3516, buffer 1400, and its TR
FETCH_14 = bytes.fromhex("8012000014")
OPEN_2 = bytes.fromhex("D012810302400082028182B9020578BC03030DBC 9000")
OPEN_2_TR = bytes.fromhex("8014000014 810302400082028281830100B8024100B9020578")
OPEN_3 = bytes.fromhex("D012810303400082028182B9020578BC03030DBC 9000")
OPEN_3_TR = bytes.fromhex("8014000014 810303400082028281830100B8024200B9020578")
# cat-bip-apdu.md §3.8 (GD-BIP, BLOG): Channel status events, ch 1 ESTABLISHED / LISTEN
ESTABLISHED_1 = bytes.fromhex("80C200000D D60B99010A82028281B8028100")
LISTEN_1 = bytes.fromhex("80C200000D D60B99010A82028281B8024100")


def fetched(pair: CatPair, start: int = 0) -> list[Command]:
    """The proactive commands the card handed out since exchange `start`."""
    return [
        decode_command(rsp[:-2])
        for apdu, rsp in pair.exchanges[start:]
        if apdu[1] == 0x12 and rsp[-2:] == b"\x90\x00"
    ]


def responses(pair: CatPair, start: int = 0) -> list[TerminalResponse]:
    return [
        TerminalResponse.decode(apdu[5:]) for apdu, _ in pair.exchanges[start:] if apdu[1] == 0x14
    ]


def test_startup_sequence() -> None:
    pair = CatPair()
    pair.startup()
    assert pair.exchanges == [
        (TP, bytes.fromhex("910F")),
        (FETCH_0F, SUEL),
        (SUEL_TR, bytes.fromhex("9114")),
        (FETCH_14, OPEN_2),
        (OPEN_2_TR, bytes.fromhex("9114")),
        (FETCH_14, OPEN_3),
        (OPEN_3_TR, bytes.fromhex("9000")),
    ]
    assert pair.actions == [Listen(PORT), ChannelFree(PORT), ChannelFree(PORT)]
    assert {c.id: c.state for c in pair.app.channels.values()} == {
        1: CardState.LISTEN,
        2: CardState.LISTEN,
    }
    assert pair.engine.events_enabled == {0x09, 0x0A}


def test_request_and_echo_exchange() -> None:
    pair = CatPair()
    pair.startup()
    start = len(pair.exchanges)
    client = pair.connect()
    assert client.channel == 1
    assert pair.step() == (ESTABLISHED_1, bytes.fromhex("9000"))
    assert pair.handler(1).received == b""
    # cat-bip-apdu.md §4.2 (GD-BIP, MTK-BIP): 300 request bytes -> Data available FF
    request = bytes(i % 251 for i in range(300))
    assert pair.send(client, request) == 300
    apdu, rsp = pair.step()  # type: ignore[misc]
    assert apdu == bytes.fromhex("80C2000010 D60E99010982028281B8028100B701FF")
    # cat-bip-apdu.md §4.2: the card wants RECEIVE DATA of 0xED bytes, 14 bytes long
    assert rsp == bytes.fromhex("910E")
    pair.pump()
    assert pair.handler(1).received == request
    assert bytes(client.received) == request
    commands = fetched(pair, start)
    receives = [c for c in commands if isinstance(c, ReceiveData)]
    sends = [c for c in commands if isinstance(c, SendData)]
    assert [c.length.length for c in receives] == [0xED, 300 - 0xED]
    assert receives[0].encode().hex().upper().endswith("82028121B701ED")
    assert all(len(c.data.data) <= MAX_SEND for c in sends)
    assert sum(len(c.data.data) for c in sends) == 300
    assert sends[-1].immediately
    trs = responses(pair, start)
    assert all(tr.result.general in (0x00, 0x02) for tr in trs)
    # cat-bip-apdu.md §4.2 step 3: TR with B6 81 ED <237 bytes> B7 01 3F
    rd = next(tr for tr in trs if tr.data is not None)
    assert rd.data is not None
    assert rd.data.data == request[:237]
    assert rd.data_length is not None
    assert rd.data_length.length == 300 - 237
    assert all(len(apdu) <= 5 + 255 for apdu, _ in pair.exchanges)


@pytest.mark.parametrize("buffer_size", [1400, 255, 1000])
def test_10k_echo_is_byte_exact(buffer_size: int) -> None:
    pair = CatPair(config=ServerConfig(buffer_size=buffer_size))
    pair.startup()
    client = pair.connect()
    pair.pump()
    payload = bytes((i * 7 + i // 256) % 256 for i in range(10_240))
    for i in range(0, len(payload), 1000):  # TCP delivers in pieces
        pair.send(client, payload[i : i + 1000])
        pair.pump()
    assert bytes(client.received) == payload
    assert not client.unsent
    commands = fetched(pair)
    for c in commands:
        if isinstance(c, ReceiveData):
            assert c.length.length <= MAX_RECEIVE
        if isinstance(c, SendData):
            assert len(c.data.data) <= MAX_SEND
    # The card never overflows the Tx buffer: every SEND DATA succeeded, and the stored
    # bytes between two flushes stay within the buffer.
    stored = 0
    for c, tr in zip(commands, responses(pair), strict=True):
        assert tr.details == c.details
        assert tr.result.ok, (c, tr)
        if isinstance(c, SendData):
            stored += len(c.data.data)
            assert stored <= buffer_size
            if c.immediately:
                stored = 0
    assert stored == 0
    writes = [a for a in pair.actions if isinstance(a, Write)]
    assert b"".join(w.data for w in writes) == payload


def test_client_close_sends_listen_event() -> None:
    pair = CatPair()
    pair.startup()
    client = pair.connect()
    pair.pump()
    pair.close(client)
    assert pair.step() == (LISTEN_1, bytes.fromhex("9000"))
    assert pair.app.channels[1].state is CardState.LISTEN
    assert pair.handlers[0].closed
    assert ChannelFree(PORT) in pair.actions[-1:]
    again = pair.connect()
    assert again.channel == 1


def test_card_close_goes_back_to_listen() -> None:
    pair = CatPair(close_on=b"\n")
    pair.startup()
    client = pair.connect()
    pair.pump()
    start = len(pair.exchanges)
    pair.send(client, b"bye\n")
    pair.pump()
    assert bytes(client.received) == b"bye\n"
    assert client.disconnected
    close = fetched(pair, start)[-1]
    assert isinstance(close, CloseChannel)
    # cat-bip-apdu.md §4.2 step 7 (BLOG): CLOSE CHANNEL qq = 01 to channel 1
    assert close.encode()[2:] == bytes.fromhex("8103") + bytes(
        (close.details.number,)
    ) + bytes.fromhex("410182028121")
    assert pair.actions[-2:] == [Disconnect(1), ChannelFree(PORT)]
    assert pair.app.channels[1].state is CardState.LISTEN
    assert pair.engine.channels.channels[1].state is TerminalState.LISTEN
    assert pair.handlers[0].closed
    # and the channel serves the next client
    second = pair.connect()
    assert second.channel == 1
    pair.pump()
    pair.send(second, b"hi\n")
    pair.pump()
    assert bytes(second.received) == b"hi\n"


def test_three_concurrent_clients() -> None:
    pair = CatPair()
    pair.startup()
    a = pair.connect()
    pair.pump()
    b = pair.connect()
    pair.pump()
    # No channel listens any more: the card opens a third one on demand.
    assert {c.id: c.state for c in pair.app.channels.values()} == {
        1: CardState.ESTABLISHED,
        2: CardState.ESTABLISHED,
        3: CardState.LISTEN,
    }
    opens = [c for c in fetched(pair) if isinstance(c, OpenChannel)]
    assert len(opens) == 3
    c = pair.connect()
    assert (a.channel, b.channel, c.channel) == (1, 2, 3)
    pair.pump()
    messages = [(a, b"A" * 700), (b, b"B" * 500), (c, b"C" * 900)]
    for client, data in messages:
        pair.send(client, data)
    pair.pump()
    for client, data in messages:
        assert bytes(client.received) == data
    assert len(pair.app.channels) == 4  # a fourth listens for the next client


def test_profile_without_bip_server_opens_nothing() -> None:
    features = GATEWAY_PROFILE.features - {Feature.TCP_SERVER}
    pair = CatPair(profile=TerminalProfile(features, channels=7))
    pair.startup()
    assert pair.exchanges == [
        (bytes.fromhex("8010000011") + pair.engine.profile.encode(), bytes.fromhex("9000"))
    ]
    assert pair.app.channels == {}
    assert pair.actions == []
    assert pair.connect().channel is None


def test_profile_with_no_channels_opens_nothing() -> None:
    pair = CatPair(profile=TerminalProfile(GATEWAY_PROFILE.features, channels=0))
    pair.startup()
    assert len(pair.exchanges) == 1
    assert pair.app.channels == {}


def test_buffer_size_reduced_by_terminal() -> None:
    pair = CatPair(max_buffer_size=1000)
    pair.startup()
    # cat-bip-apdu.md §4.4 (GD-BIP, MTK-BIP): result 07 and the size offered
    assert pair.exchanges[4] == (
        bytes.fromhex("8014000014 810302400082028281830107B8024100B90203E8"),
        bytes.fromhex("9114"),
    )
    assert pair.app.channels[1].buffer_size == 1000
    client = pair.connect()
    pair.pump()
    pair.send(client, b"x" * 900)
    pair.pump()
    pair.send(client, b"y" * 900)
    pair.pump()
    assert bytes(client.received) == b"x" * 900 + b"y" * 900
    assert all(tr.result.ok for tr in responses(pair))


def test_buffer_size_beyond_two_bytes() -> None:
    """A card asking 70000 bytes asks the most B9 can say, 65535; the terminal grants it."""
    pair = CatPair(config=ServerConfig(buffer_size=70_000))
    pair.startup()
    assert pair.exchanges[3][1][:-2].endswith(bytes.fromhex("B902FFFFBC03030DBC"))
    tr = TerminalResponse.decode(pair.exchanges[4][0][5:])
    assert tr.buffer_size is not None
    assert tr.buffer_size.size == 0xFFFF
    assert pair.app.channels[1].buffer_size == 0xFFFF


def test_buffer_size_negotiated_down_with_result_07() -> None:
    pair = CatPair(config=ServerConfig(buffer_size=65535), max_buffer_size=16384)
    pair.startup()
    tr = TerminalResponse.decode(pair.exchanges[4][0][5:])
    assert tr.result.general == 0x07
    assert tr.buffer_size is not None
    assert tr.buffer_size.size == 16384
    assert pair.app.channels[1].buffer_size == 16384


def test_all_channels_busy() -> None:
    pair = CatPair()
    pair.startup()
    clients = []
    for _ in range(6):
        clients.append(pair.connect())
        pair.pump()
    assert [c.channel for c in clients] == list(range(1, 7))
    # the seventh channel is left for a client-mode channel (the admin agent's)
    assert len(pair.engine.channels.channels) == 6
    # a seventh client finds no channel: engine says None, the shell queues it
    assert pair.engine.client_connected(PORT) is None
    late = pair.connect()
    assert late.channel is None
    # once a client leaves, the waiting one gets its channel
    pair.close(clients[3])
    pair.pump()
    assert late.channel == 4
    pair.send(late, b"late")
    pair.pump()
    assert bytes(late.received) == b"late"


def test_flow_control_rx_buffer() -> None:
    pair = CatPair(config=ServerConfig(buffer_size=300))
    pair.startup()
    client = pair.connect()
    pair.pump()
    data = bytes(range(256)) * 4  # 1024 bytes into a 300-byte Rx buffer
    assert pair.engine.client_data(1, data) == 300
    client.unsent += data[300:]
    assert pair.engine.channels.channels[1].reading_paused
    pair.pump()
    resumes = [a for a in pair.actions if isinstance(a, ResumeReading)]
    assert resumes
    assert bytes(client.received) == data
    assert not client.unsent


def test_resume_reading_comes_after_receive_data() -> None:
    pair = CatPair(config=ServerConfig(buffer_size=300))
    pair.startup()
    pair.connect()
    pair.pump()
    assert pair.engine.client_data(1, bytes(400)) == 300
    # nothing resumes until a RECEIVE DATA drains the buffer
    assert not [a for a in pair.engine.pop_actions() if isinstance(a, ResumeReading)]
    pair.step()  # the Data available envelope
    pair.step()  # FETCH RECEIVE DATA
    assert pair.engine.pop_actions() == []
    pair.step()  # its TR; the terminal had drained 237 bytes when it built it
    assert ResumeReading(1) in pair.actions
