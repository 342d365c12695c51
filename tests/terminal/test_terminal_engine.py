"""The terminal's CAT engine against hand-written card answers (spec digest §1.3, §3, §4):
malformed proactive commands, BIP errors, and garbage from the card."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.bip.terminal import ChannelState, ChannelStateError, Listen
from openscws.cat.commands import ReceiveData
from openscws.cat.envelopes import data_available
from openscws.cat.profile import GATEWAY_PROFILE
from openscws.cat.responses import TerminalResponse
from openscws.terminal.engine import Phase, TerminalEngine

# cat-bip-apdu.md §1.6: TERMINAL PROFILE APDU of the gateway
TP = bytes.fromhex("8010000011 13016800010C00000000001FE200000005")
# cat-bip-apdu.md §3.7 (PYCAT): SET UP EVENT LIST
SUEL = bytes.fromhex("D00D8103010500820281829902090A")
# cat-bip-apdu.md §3.1 (BLOG): OPEN CHANNEL server 3516
OPEN = bytes.fromhex("D012810302400082028182B9020578BC03030DBC")


def run(engine: TerminalEngine, command: bytes) -> bytes:
    """Announces `command` with 91 XX (in the answer to the APDU in flight, or to a STATUS
    poll), answers the FETCH with it, returns the TR data. The TR stays in flight."""
    announce = bytes((0x91, len(command)))
    if engine.phase is Phase.WAITING:
        engine.receive_response(announce, 0.0)
    else:
        now = engine.next_poll() or 0.0
        assert engine.next_apdu(now) == bytes.fromhex("80F2000C00")
        engine.receive_response(announce, now)
    fetch = engine.next_apdu(0.0)
    assert fetch == bytes((0x80, 0x12, 0, 0, len(command)))
    engine.receive_response(command + b"\x90\x00", 0.0)
    if engine.phase is Phase.BLOCKED:
        # A server-mode OPEN CHANNEL: the shell listens, then the TR goes.
        (port,) = [a.port for a in engine.channels.actions if isinstance(a, Listen)]
        engine.listen_result(port, True)
    tr = engine.next_apdu(0.0)
    assert tr is not None
    assert tr[:4] == bytes.fromhex("80140000")
    assert tr[4] == len(tr) - 5
    return tr[5:]


def started() -> TerminalEngine:
    engine = TerminalEngine()
    assert engine.next_apdu(0.0) == TP
    return engine


def with_channel() -> TerminalEngine:
    engine = started()
    assert run(engine, SUEL) == bytes.fromhex("810301050082028281830100")
    # cat-bip-apdu.md §3.1 (BLOG): its TR
    assert run(engine, OPEN) == bytes.fromhex("810302400082028281830100B8024100B9020578")
    return engine


def test_profile_first() -> None:
    engine = TerminalEngine()
    assert engine.next_apdu(0.0) == bytes.fromhex("8010000011") + GATEWAY_PROFILE.encode()
    assert engine.next_apdu(0.0) is None  # waiting for the answer


def test_malformed_command_gets_result_32_with_details_echoed() -> None:
    engine = started()
    # cat-bip-apdu.md §3.3 CLOSE CHANNEL with an unknown CR-set object (tag 7E) appended
    tr = run(engine, bytes.fromhex("D00C810309410182028121FE0100"))
    assert tr == bytes.fromhex("810309410182028281830132")


def test_bad_value_gets_result_32() -> None:
    engine = started()
    # OPEN CHANNEL whose Other address claims IPv4 with 2 bytes (§2.3: 21 + 4 bytes)
    raw = bytes.fromhex("D017810304400182028182B9020578BC030201BBBE03217F00")
    assert run(engine, raw) == bytes.fromhex("810304400182028281830132")


def test_missing_mandatory_object_gets_result_36() -> None:
    engine = started()
    # RECEIVE DATA without its Channel data length (§3.5)
    tr = run(engine, bytes.fromhex("D009810306420082028121"))
    assert tr == bytes.fromhex("810306420082028281830136")


def test_unparseable_template_gets_result_32() -> None:
    engine = started()
    tr = run(engine, bytes.fromhex("D00581030742"))
    decoded = TerminalResponse.decode(tr)
    assert decoded.result.general == 0x32


def test_unknown_command_type_is_beyond_capabilities() -> None:
    engine = started()
    # cat-bip-apdu.md §2.4: 21 DISPLAY TEXT, not implemented here
    tr = run(engine, bytes.fromhex("D00E8103082180820281028D03046869"))
    assert tr == bytes.fromhex("810308218082028281830130")


def test_send_data_without_client_is_channel_closed() -> None:
    engine = with_channel()
    # cat-bip-apdu.md §3.4 (GD-BIP): SEND DATA to channel 1 while it listens -> 3A 02
    tr = run(engine, bytes.fromhex("D00C810305430182028121B6014F"))
    assert tr == bytes.fromhex("81030543018202828183023A02")


def test_send_data_with_alpha_without_client_is_channel_closed() -> None:
    engine = with_channel()
    # the same with an alpha identifier, which takes the typed decoder
    tr = run(engine, bytes.fromhex("D00F810305430182028121850141B6014F"))
    assert tr == bytes.fromhex("81030543018202828183023A02")


def test_unknown_channel_is_invalid_channel() -> None:
    engine = with_channel()
    # cat-bip-apdu.md §3.3 (GD-BIP): CLOSE CHANNEL to channel 5 -> 83 02 3A 03
    assert run(engine, bytes.fromhex("D009810309410182028125")) == bytes.fromhex(
        "81030941018202828183023A03"
    )
    assert run(engine, bytes.fromhex("D00C81030A430182028126B6014F")) == bytes.fromhex(
        "81030A43018202828183023A03"
    )
    assert run(engine, bytes.fromhex("D00C81030B420082028127B70110")) == bytes.fromhex(
        "81030B42008202828183023A03"
    )


def test_get_channel_status() -> None:
    engine = with_channel()
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.client_connected(3516) == 1
    assert engine.next_apdu(0.0) == bytes.fromhex("80C200000D D60B99010A82028281B8028100")
    # cat-bip-apdu.md §3.6 (GD-BIP)
    tr = run(engine, bytes.fromhex("D009810307440082028182"))
    assert tr == bytes.fromhex("810307440082028281830100B8028100")


def test_poll_interval_and_polling_off() -> None:
    engine = started()
    # cat-bip-apdu.md §2.4: POLL INTERVAL 5 s (§2.3 duration 01 05)
    assert run(engine, bytes.fromhex("D00D81030303008202818284020105")) == bytes.fromhex(
        "810303030082028281830100"
    )
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.poll_interval == 5.0
    assert engine.next_apdu(4.0) is None
    assert engine.next_apdu(5.0) == bytes.fromhex("80F2000C00")
    engine.receive_response(b"\x91\x0b", 5.0)
    assert engine.next_apdu(5.0) == bytes.fromhex("801200000B")
    engine.receive_response(bytes.fromhex("D009810304040082028182 9000"), 5.0)
    engine.next_apdu(5.0)
    engine.receive_response(b"\x90\x00", 5.0)
    assert not engine.polling
    assert engine.next_apdu(100.0) is None


def test_busy_envelope_is_sent_again() -> None:
    engine = with_channel()
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.client_connected(3516) == 1
    envelope = engine.next_apdu(0.0)
    assert envelope == bytes.fromhex("80C200000D D60B99010A82028281B8028100")
    engine.receive_response(bytes.fromhex("9300"), 0.0)
    assert engine.next_apdu(0.0) == envelope


# -- fuzz: garbage from the card never raises ---------------------------------------------------

CARD_ANSWERS = [
    "9000",
    "9114",
    "910F",
    "9300",
    "6985",
    "6A80",
    "6C14",
    "D00D8103010500820281829902090A9000",
    "D012810302400082028182B9020578BC03030DBC9000",
    "D009810309410182028121" + "9000",
    "D00C810305430182028121B6014F9000",
    "D00C810304420082028121B701ED9000",
    "D009810307440082028182" + "9000",
    "D01C810308400182028182B50103B9020578BC030201BBBE05217F000001" + "9000",
    "D00D810303030082028182840201059000",
]
answers = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(CARD_ANSWERS).map(bytes.fromhex),
    st.tuples(
        st.sampled_from(CARD_ANSWERS).map(bytes.fromhex), st.binary(max_size=3), st.integers(0, 30)
    ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] + len(t[1]) :]),
)
shell = st.sampled_from(["none", "connect", "data", "close", "remote_ok", "remote_fail"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(answers, shell), max_size=25))
def test_fuzz_engine(script: list[tuple[bytes, str]]) -> None:
    engine = TerminalEngine()
    now = 0.0
    for answer, news in script:
        now += 0.5
        match news:
            case "connect":
                engine.client_connected(3516)
            case "data":
                for ch in list(engine.channels.channels):
                    engine.client_data(ch, b"x" * 300)
            case "close":
                # The shell reports the end of connections it has: of any other channel,
                # the news is a typed protocol error.
                for ch, channel in list(engine.channels.channels.items()):
                    if channel.state is ChannelState.ESTABLISHED:
                        engine.client_closed(ch)
                    else:
                        with pytest.raises(ChannelStateError):
                            engine.client_closed(ch)
            case "remote_ok" | "remote_fail":
                for ch in list(engine.channels.channels):
                    engine.remote_connected(ch, news == "remote_ok")
            case _:
                pass
        apdu = engine.next_apdu(now)
        engine.pop_actions()
        if apdu is None:
            continue
        assert 4 <= len(apdu) <= 5 + 255
        engine.receive_response(answer, now)


# -- byte-level paths against the typed codec ----------------------------------------------------


def _connected(rx: int) -> TerminalEngine:
    """A client on channel 1, its Channel status event delivered, `rx` bytes in the Rx
    buffer and their Data available event queued."""
    engine = with_channel()
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.client_connected(3516) == 1
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    channel = engine.channels.channels[1]
    channel.buffer_size = 1400
    assert engine.client_data(1, bytes(i & 0xFF for i in range(rx))) == rx
    return engine


@pytest.mark.parametrize("rx", [1, 0x7F, 0xFE, 0xFF, 0x100, 1400])
def test_data_available_envelope_matches_typed(rx: int) -> None:
    engine = _connected(rx)
    status = engine.channels.channels[1].status()
    typed = data_available(status, rx).encode()
    assert engine.next_apdu(0.0) == bytes((0x80, 0xC2, 0, 0, len(typed))) + typed


@pytest.mark.parametrize("rx", [1, 0x7F, 0x80, 237, 238, 300, 1400])
@pytest.mark.parametrize("asked", [1, 0x7F, 0x80, 237, 0xFF])
def test_receive_data_tr_matches_typed(rx: int, asked: int) -> None:
    engine = _connected(rx)
    assert engine.next_apdu(0.0) is not None  # the Data available event, delivered
    engine.receive_response(b"\x90\x00", 0.0)
    command = ReceiveData.build(0x21, 1, asked)
    typed_engine = copy.deepcopy(engine)
    tr = run(engine, command.encode())
    expected = typed_engine.channels.receive(command).encode()
    assert tr == expected
    assert engine.channels.channels[1].rx == typed_engine.channels.channels[1].rx


def test_listening_is_the_shells_action() -> None:
    """A server-mode OPEN CHANNEL on a new port: the core asks the shell to listen and
    answers once it says how that went; a second channel on the port is answered at once."""
    engine = started()
    run(engine, SUEL)
    engine.receive_response(b"\x90\x00", 0.0)
    now = engine.next_poll() or 0.0
    assert engine.next_apdu(now) == bytes.fromhex("80F2000C00")
    engine.receive_response(bytes((0x91, len(OPEN))), now)
    assert engine.next_apdu(now) == bytes((0x80, 0x12, 0, 0, len(OPEN)))
    engine.receive_response(OPEN + b"\x90\x00", now)
    assert engine.phase is Phase.BLOCKED
    assert engine.pop_actions() == [Listen(3516)]
    assert engine.next_apdu(now) is None  # no TR before the shell answers
    engine.listen_result(3516, False)
    tr = engine.next_apdu(now)
    assert tr is not None
    assert tr[5:] == bytes.fromhex("8103024000 82028281 83023A10")
    assert engine.channels.channels == {}
    # The same command again, and the port binds this time.
    engine.receive_response(bytes((0x91, len(OPEN))), now)
    engine.next_apdu(now)
    engine.receive_response(OPEN + b"\x90\x00", now)
    engine.listen_result(3516, True)
    tr = engine.next_apdu(now)
    assert tr is not None
    assert tr[5:] == bytes.fromhex("810302400082028281830100B8024100B9020578")
    engine.pop_actions()
    engine.receive_response(bytes((0x91, len(OPEN))), now)
    engine.next_apdu(now)
    engine.receive_response(OPEN + b"\x90\x00", now)
    assert engine.phase is not Phase.BLOCKED  # listening already: answered at once
    assert Listen(3516) not in engine.pop_actions()
