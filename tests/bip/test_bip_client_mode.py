"""The terminal's client-mode channels ("TCP, UICC in client mode, remote connection", TS 102
223 §6.4.27.2) against hand-written card commands: OPEN CHANNEL and its TR once the shell has
connected, Data available and Channel status events, RECEIVE / SEND DATA, flow control, the
link dropping and CLOSE CHANNEL. Vectors from the spec digest (cat-bip-apdu.md §2.8, §3.2,
§3.3, §3.8)."""

from __future__ import annotations

from openscws.bip.terminal import Connect, Disconnect, ResumeReading, Write
from openscws.cat.objects import AddressType, OtherAddress
from openscws.terminal.engine import Phase, TerminalEngine

# §3.7: SET UP EVENT LIST (Data available, Channel status)
SUEL = bytes.fromhex("D00D8103010500820281829902090A")
# §3.2: OPEN CHANNEL client mode, immediate, default bearer, buffer 1400, TCP to 127.0.0.1:443
OPEN = bytes.fromhex("D01C810308400182028182B50103B9020578BC030201BBBE05217F000001")
# §3.2: its TR for channel 1: Channel status link up (81 00), bearer 03, buffer 1400
OPEN_TR = bytes.fromhex("810308400182028281830100B8028100B50103B9020578")


def run(engine: TerminalEngine, command: bytes) -> bytes | None:
    """Announces and fetches `command`; returns the TR data, or None when the engine waits
    for the shell (a connect)."""
    if engine.phase is not Phase.WAITING:
        engine.polling = True
        assert engine.next_apdu(engine.next_poll() or 0.0) == bytes.fromhex("80F2000C00")
        engine.polling = False
    engine.receive_response(bytes((0x91, len(command))), 0.0)
    assert engine.next_apdu(0.0) == bytes((0x80, 0x12, 0, 0, len(command)))
    engine.receive_response(command + b"\x90\x00", 0.0)
    return tr(engine)


def tr(engine: TerminalEngine) -> bytes | None:
    apdu = engine.next_apdu(0.0)
    if apdu is None:
        return None
    assert apdu[:4] == bytes.fromhex("80140000")
    assert apdu[4] == len(apdu) - 5
    return apdu[5:]


def envelope(engine: TerminalEngine) -> bytes | None:
    apdu = engine.next_apdu(0.0)
    if apdu is None:
        return None
    assert apdu[:4] == bytes.fromhex("80C20000")
    return apdu[5:]


def opened(buffer: bytes = b"\x05\x78") -> TerminalEngine:
    """An engine whose card opened client channel 1 and got it connected."""
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)  # TERMINAL PROFILE
    engine.receive_response(b"\x90\x00", 0.0)
    assert run(engine, SUEL) == bytes.fromhex("810301050082028281830100")
    command = OPEN.replace(b"\xb9\x02\x05\x78", b"\xb9\x02" + buffer)
    assert run(engine, command) is None  # the TR waits for the connection
    assert engine.phase is Phase.BLOCKED
    assert engine.pop_actions() == [
        Connect(1, OtherAddress(AddressType.IPV4, bytes((127, 0, 0, 1))), 443)
    ]
    engine.remote_connected(1, True)
    return engine


def test_open_channel_waits_for_the_connection_then_reports_the_link_up() -> None:
    engine = opened()
    assert tr(engine) == OPEN_TR
    engine.receive_response(b"\x90\x00", 0.0)
    # §3.6: GET CHANNEL STATUS shows the link up
    assert run(engine, bytes.fromhex("D009810307440082028182")) == bytes.fromhex(
        "810307440082028281830100B8028100"
    )


def test_failed_connection_is_remote_not_reachable_with_bearer_and_buffer() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    assert run(engine, OPEN) is None
    engine.pop_actions()
    engine.remote_connected(1, False)
    # §2.6: 3A 07 "remote device not reachable"; §6.8 wants bearer and buffer size
    assert tr(engine) == bytes.fromhex("81030840018202828183023A07B50103B9020578")
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.channels.channels == {}


def test_news_for_another_channel_does_not_unblock() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    run(engine, OPEN)
    engine.remote_connected(2, True)
    assert engine.phase is Phase.BLOCKED
    assert engine.next_apdu(0.0) is None


def test_missing_bearer_is_reported_as_the_default_bearer() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    # OPEN CHANNEL without the bearer description (B5 01 03 removed)
    command = bytes.fromhex("D019810308400182028182B9020578BC030201BBBE05217F000001")
    assert run(engine, command) is None
    engine.remote_connected(1, True)
    assert tr(engine) == OPEN_TR


def test_unsupported_transport_is_refused_at_once() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    # UDP, UICC in client mode (§2.10 type 01): not in the gateway's profile -> 3A 06
    udp = OPEN.replace(b"\xbc\x03\x02", b"\xbc\x03\x01")
    assert run(engine, udp) == bytes.fromhex("81030840018202828183023A06B50103B9020578")
    assert engine.pop_actions() == []
    assert engine.channels.channels == {}


def test_unknown_address_type_is_not_reachable() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    # §8.58 knows IPv4 (21) and IPv6 (57) only
    command = bytes.fromhex("D01C810308400182028182B50103B9020578BC030201BBBE05227F000001")
    assert run(engine, command) == bytes.fromhex("81030840018202828183023A07B50103B9020578")


def test_no_channel_free_is_3a_01() -> None:
    engine = TerminalEngine(max_buffer_size=65535)
    engine.channels.max_channels = 1
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    run(engine, OPEN)
    engine.remote_connected(1, True)
    assert tr(engine) == OPEN_TR
    engine.receive_response(b"\x91\x1e", 0.0)
    engine.next_apdu(0.0)
    engine.receive_response(OPEN + b"\x90\x00", 0.0)
    assert tr(engine) == bytes.fromhex("81030840018202828183023A01B50103B9020578")


def test_buffer_beyond_the_terminal_is_cut_with_result_07() -> None:
    engine = TerminalEngine(max_buffer_size=1024)
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    run(engine, OPEN)
    engine.remote_connected(1, True)
    assert tr(engine) == bytes.fromhex("810308400182028281830107B8028100B50103B9020400")


def test_ipv6_destination() -> None:
    engine = TerminalEngine()
    engine.polling = False
    engine.next_apdu(0.0)
    engine.receive_response(b"\x90\x00", 0.0)
    v6 = bytes(15) + b"\x01"  # ::1
    command = bytes.fromhex("D028810308400182028182B50103B9020578BC030201BBBE1157")
    assert run(engine, command + v6) is None
    assert engine.pop_actions() == [Connect(1, OtherAddress(AddressType.IPV6, v6), 443)]


def test_data_from_the_server_raises_data_available_and_is_read() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.client_data(1, b"x" * 300) == 300
    # §3.8: Data available, channel 1 link up, FF = 255 or more
    assert envelope(engine) == bytes.fromhex("D60E99010982028281B8028100B701FF")
    engine.receive_response(b"\x91\x0e", 0.0)
    engine.next_apdu(0.0)
    engine.receive_response(bytes.fromhex("D00C810304420082028121B701ED9000"), 0.0)
    data = tr(engine)
    assert data is not None
    assert data[:12] == bytes.fromhex("810304420082028281830100")
    assert data[12:15] == bytes.fromhex("B681ED")
    assert data[-3:] == bytes.fromhex("B7013F")


def test_send_data_goes_out_on_the_connection() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x91\x1c", 0.0)
    engine.next_apdu(0.0)
    # §3.4: SEND DATA, send immediately, channel 1
    engine.receive_response(
        bytes.fromhex("D01C810305430182028121B611") + b"GET / HTTP/1.1\r\n\r\n"[:17] + b"\x90\x00",
        0.0,
    )
    assert tr(engine) == bytes.fromhex("810305430182028281830100B701FF")
    assert engine.pop_actions() == [Write(1, b"GET / HTTP/1.1\r\n\r\n"[:17])]


def test_rx_buffer_full_pauses_and_resumes() -> None:
    engine = opened(buffer=b"\x01\x00")  # 256 bytes
    tr(engine)
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.client_data(1, b"y" * 300) == 256
    assert engine.channels.channels[1].reading_paused
    envelope(engine)
    engine.receive_response(b"\x91\x0e", 0.0)
    engine.next_apdu(0.0)
    engine.receive_response(bytes.fromhex("D00C810304420082028121B701ED9000"), 0.0)
    tr(engine)
    assert engine.pop_actions() == [ResumeReading(1)]


def test_remote_close_with_nothing_unread_is_link_dropped() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x90\x00", 0.0)
    engine.client_closed(1)
    # §3.8: Channel status, channel 1 link down, 05 link dropped
    assert envelope(engine) == bytes.fromhex("D60B99010A82028281B8020105")
    engine.receive_response(b"\x90\x00", 0.0)
    # §3.4: SEND DATA now finds the channel closed
    engine.polling = True
    engine.next_apdu(10.0)
    engine.receive_response(b"\x91\x0f", 10.0)
    engine.next_apdu(10.0)
    engine.receive_response(bytes.fromhex("D00D810305430182028121B6024F4B9000"), 10.0)
    assert tr(engine) == bytes.fromhex("81030543018202828183023A02")


def test_bytes_sent_before_the_close_stay_readable_and_the_drop_follows_them() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x90\x00", 0.0)
    engine.client_data(1, b"HTTP/1.1 204 No Content\r\n\r\n")
    engine.client_closed(1)
    # The event tells the status as it is when sent: link down, its cause comes later
    assert envelope(engine) == bytes.fromhex("D60E99010982028281B8020100B7011B")
    engine.receive_response(b"\x91\x0e", 0.0)
    assert engine.next_apdu(0.0) == bytes.fromhex("801200000E")  # no drop event yet
    engine.receive_response(bytes.fromhex("D00C810304420082028121B7011B9000"), 0.0)
    data = tr(engine)
    assert data is not None
    assert b"204 No Content" in data
    engine.receive_response(b"\x90\x00", 0.0)
    assert envelope(engine) == bytes.fromhex("D60B99010A82028281B8020105")
    engine.receive_response(b"\x90\x00", 0.0)
    # Nothing left: RECEIVE DATA on the dropped link is "channel closed"
    engine.polling = True
    engine.next_apdu(10.0)
    engine.receive_response(b"\x91\x0e", 10.0)
    engine.next_apdu(10.0)
    engine.receive_response(bytes.fromhex("D00C810304420082028121B701109000"), 10.0)
    assert tr(engine) == bytes.fromhex("81030442008202828183023A02")


def test_close_channel_disconnects_and_frees_the_channel() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x91\x0b", 0.0)
    engine.next_apdu(0.0)
    # §3.3: CLOSE CHANNEL qualifier 00, channel 1
    engine.receive_response(bytes.fromhex("D009810309410082028121") + b"\x90\x00", 0.0)
    assert tr(engine) == bytes.fromhex("810309410082028281830100")
    assert engine.pop_actions() == [Disconnect(1)]
    assert engine.channels.channels == {}
    engine.client_closed(1)  # the socket's own news comes after: ignored
    engine.receive_response(b"\x90\x00", 0.0)
    assert engine.next_apdu(0.0) is None


def test_close_channel_after_the_drop_needs_no_disconnect() -> None:
    engine = opened()
    tr(engine)
    engine.receive_response(b"\x90\x00", 0.0)
    engine.client_data(1, b"unread")
    engine.client_closed(1)
    engine.pop_actions()
    engine.polling = True
    engine.next_apdu(10.0)  # the Data available event
    engine.receive_response(b"\x91\x0b", 10.0)
    engine.next_apdu(10.0)
    engine.receive_response(bytes.fromhex("D009810309410082028121") + b"\x90\x00", 10.0)
    assert tr(engine) == bytes.fromhex("810309410082028281830100")
    assert engine.pop_actions() == []
    assert engine.channels.channels == {}
    engine.receive_response(b"\x90\x00", 10.0)
    assert engine.channels.events == type(engine.channels.events)()
