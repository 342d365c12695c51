"""Spec-digest vectors: decode, compare the typed object, re-encode, compare the bytes
(aioquic tests/test_tls.py; pysim tests/unittests/test_tlvs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from openscws.cat.commands import (
    COMMANDS,
    CloseChannel,
    Command,
    GetChannelStatus,
    MoreTime,
    OpenChannel,
    PollingOff,
    PollInterval,
    ReceiveData,
    SendData,
    SetUpEventList,
    decode_command,
)
from openscws.cat.envelopes import (
    EventDownload,
    SmsPpDownload,
    channel_status_event,
    data_available,
    decode_envelope,
)
from openscws.cat.objects import (
    DATA_OBJECTS,
    Address,
    AddressType,
    AlphaIdentifier,
    BearerDescription,
    BufferSize,
    ChannelData,
    ChannelDataLength,
    ChannelStatus,
    CommandDetails,
    DeviceIdentities,
    DnsServerAddress,
    Duration,
    Event,
    EventList,
    FrameIdentifier,
    FurtherInfo,
    IconIdentifier,
    NetworkAccessName,
    OtherAddress,
    Result,
    ServerState,
    SmsTpdu,
    TextAttribute,
    TextString,
    TransportLevel,
    TransportProtocol,
)
from openscws.cat.profile import GATEWAY_PROFILE, Feature, TerminalProfile
from openscws.cat.responses import TerminalResponse
from openscws.codec.tlv import ComprehensionTlv, pull_comprehension_tlvs
from openscws.errors import DecodeError

# -- TERMINAL PROFILE --------------------------------------------------------------------------

# cat-bip-apdu.md §1.6 (WS-SIM, PYCAT): the gateway profile, APDU header 80 10 00 00 11 stripped
PROFILE = bytes.fromhex("13016800010C00000000001FE200000005")


def test_gateway_profile_vector() -> None:
    assert GATEWAY_PROFILE.encode() == PROFILE
    decoded = TerminalProfile.decode(PROFILE)
    assert decoded.features == GATEWAY_PROFILE.features
    assert decoded.channels == 7
    assert decoded.bip_server
    assert decoded.has(Feature.TCP_SERVER)
    assert decoded.encode(len(PROFILE)) == PROFILE


# -- single data objects: (name, bytes as emitted, object) --------------------------------------

OBJECT_VECTORS: list[tuple[str, bytes, Any]] = [
    # cat-bip-apdu.md §2.3 (PYCAT): pySim vector, TCP client remote, port 8000
    (
        "transport",
        bytes.fromhex("BC03028000"),
        TransportLevel(TransportProtocol.TCP_CLIENT_REMOTE, 0x8000),
    ),
    # cat-bip-apdu.md §2.3 (PYCAT): pySim test vector, other address IPv4 1.2.3.4
    (
        "other_address",
        bytes.fromhex("BE052101020304"),
        OtherAddress(AddressType.IPV4, b"\x01\x02\x03\x04"),
    ),
    # cat-bip-apdu.md §2.3 (PYCAT): pySim test vector, network access name "naa"
    ("nan", bytes.fromhex("C704036E6161"), NetworkAccessName(b"\x03naa")),
    # cat-bip-apdu.md §2.3 (PYCAT): pySim test vector, text string DCS 04 "password"
    ("text_string", bytes.fromhex("8D0904") + b"password", TextString(0x04, b"password")),
    # cat-bip-apdu.md §2.3 (PYCAT): pySim test vector, bearer description default bearer
    ("bearer", bytes.fromhex("B50103"), BearerDescription(0x03)),
    # cat-bip-apdu.md §2.6 (WS-CAT, PYCAT): BIP error, channel identifier not valid
    ("result_bip", bytes.fromhex("83023A03"), Result(0x3A, b"\x03")),
    # cat-bip-apdu.md §2.6 (WS-CAT): success
    ("result_ok", bytes.fromhex("830100"), Result(0x00)),
    # cat-bip-apdu.md §3.1 (BLOG): command details of OPEN CHANNEL number 02
    ("command_details", bytes.fromhex("8103024000"), CommandDetails(2, 0x40, 0)),
    # cat-bip-apdu.md §2.5 (PYCAT, WS-CAT): UICC -> terminal
    ("device_identities", bytes.fromhex("82028182"), DeviceIdentities(0x81, 0x82)),
    # cat-bip-apdu.md §2.3 (WS-CAT): duration, 5 seconds
    ("duration", bytes.fromhex("84020105"), Duration(0x01, 0x05)),
    # cat-bip-apdu.md §2.3 (WS-CAT): alpha identifier, GSM default alphabet "SCWS"
    ("alpha", bytes.fromhex("850453435753"), AlphaIdentifier(b"SCWS")),
    # cat-bip-apdu.md §5.1 (PYCAT, SRL): address, TON international / ISDN, digits 3312345678
    (
        "address",
        bytes.fromhex("8606913312547698"),
        Address(0x91, bytes.fromhex("3312547698")),
    ),
    # cat-bip-apdu.md §5.1 (SRL): SMS TPDU, an opaque SMS-DELIVER start
    ("sms_tpdu", bytes.fromhex("8B03440B91"), SmsTpdu(bytes.fromhex("440B91"))),
    # cat-bip-apdu.md §3.7 (PYCAT): event list Data available + Channel status
    ("event_list", bytes.fromhex("9902090A"), EventList((0x09, 0x0A))),
    # cat-bip-apdu.md §2.3 (WS-CAT): icon identifier, not self-explanatory, record 1
    ("icon", bytes.fromhex("9E020101"), IconIdentifier(0x01, 0x01)),
    # cat-bip-apdu.md §3.4 (GD-BIP): channel data "OK"
    ("channel_data", bytes.fromhex("B6024F4B"), ChannelData(b"OK")),
    # cat-bip-apdu.md §3.8 (GD-BIP): channel data length 0x5A
    ("channel_data_length", bytes.fromhex("B7015A"), ChannelDataLength(0x5A)),
    # cat-bip-apdu.md §2.8 (GD-BIP, BLOG): channel 1 listening
    ("channel_status", bytes.fromhex("B8024100"), ChannelStatus.server(1, ServerState.LISTEN)),
    # cat-bip-apdu.md §3.1 (BLOG): buffer size 1400
    ("buffer_size", bytes.fromhex("B9020578"), BufferSize(1400)),
    # cat-bip-apdu.md §2.3 (WS-CAT): DNS server address, same coding as other address
    ("dns", bytes.fromhex("C005210A000001"), DnsServerAddress(0x21, bytes.fromhex("0A000001"))),
    # cat-bip-apdu.md §2.3 (WS-CAT): text attribute, opaque TS 23.040 formatting
    ("text_attribute", bytes.fromhex("D00400050000"), TextAttribute(bytes.fromhex("00050000"))),
    # cat-bip-apdu.md §2.3 (WS-CAT): frame identifier 1
    ("frame", bytes.fromhex("E80101"), FrameIdentifier(0x01)),
    # cat-bip-apdu.md §2.2 (GD-BIP, MTK-BIP): CR clear forms emitted in TRs
    (
        "channel_status_cr_clear",
        bytes.fromhex("38028100"),
        ChannelStatus.server(1, ServerState.ESTABLISHED),
    ),
    # cat-bip-apdu.md §2.2 (GD-BIP, MTK-BIP): bearer description with CR clear
    ("bearer_cr_clear", bytes.fromhex("350103"), BearerDescription(0x03)),
    # cat-bip-apdu.md §2.2 (GD-BIP, MTK-BIP): buffer size with CR clear
    ("buffer_size_cr_clear", bytes.fromhex("39020578"), BufferSize(1400)),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [v[1:] for v in OBJECT_VECTORS], ids=[v[0] for v in OBJECT_VECTORS]
)
def test_object_vector(raw: bytes, expected: Any) -> None:
    (tlv,) = pull_comprehension_tlvs(raw)
    assert tlv.tag == expected.TAG
    assert DATA_OBJECTS[tlv.tag] is type(expected)
    obj = type(expected).from_value(tlv.value)
    assert obj == expected
    assert ComprehensionTlv(obj.TAG, obj.value(), tlv.cr).encode() == raw


def test_every_data_object_has_a_vector() -> None:
    covered = {type(v[2]) for v in OBJECT_VECTORS}
    assert set(DATA_OBJECTS.values()) <= covered


def test_nan_labels() -> None:
    # cat-bip-apdu.md §2.3 (PYCAT): "naa"
    assert NetworkAccessName(bytes.fromhex("036E6161")).labels == ("naa",)


# -- proactive commands -------------------------------------------------------------------------

COMMAND_VECTORS: list[tuple[str, bytes, Command]] = [
    (
        # cat-bip-apdu.md §3.1 (BLOG): OPEN CHANNEL, UICC server mode, port 3516, buffer 1400
        "open_server_3516",
        bytes.fromhex("D012810302400082028182B9020578BC03030DBC"),
        OpenChannel.server(2, 3516, 1400),
    ),
    (
        # cat-bip-apdu.md §3.1 (BLOG): the same for 4116
        "open_server_4116",
        bytes.fromhex("D012810302400082028182B9020578BC03031014"),
        OpenChannel.server(2, 4116, 1400),
    ),
    (
        # cat-bip-apdu.md §3.2 (SWSIM, MTK-BIP, BLOG): OPEN CHANNEL client, 127.0.0.1:443
        "open_client",
        bytes.fromhex("D01C810308400182028182B50103B9020578BC030201BBBE05217F000001"),
        OpenChannel.client(
            8,
            address=OtherAddress(AddressType.IPV4, bytes((127, 0, 0, 1))),
            port=443,
            buffer_size=1400,
        ),
    ),
    (
        # cat-bip-apdu.md §3.3 (BLOG, SWSIM): CLOSE CHANNEL back to LISTEN, channel 1
        "close_to_listen",
        bytes.fromhex("D009810302410182028121"),
        CloseChannel.build(2, 1, to_listen=True),
    ),
    (
        # cat-bip-apdu.md §3.4 (GD-BIP, MTK-BIP): SEND DATA store, channel 1, "HTTP/1.1 200 OK\r\n"
        "send_data",
        bytes.fromhex("D01C810305430082028121B611") + b"HTTP/1.1 200 OK\r\n",
        SendData.build(5, 1, b"HTTP/1.1 200 OK\r\n", immediately=False),
    ),
    (
        # cat-bip-apdu.md §4.2 (GD-BIP, MTK-BIP): RECEIVE DATA 0xED bytes on channel 1
        "receive_data",
        bytes.fromhex("D00C810304420082028121B701ED"),
        ReceiveData.build(4, 1, 0xED),
    ),
    (
        # cat-bip-apdu.md §3.6 (GD-BIP): GET CHANNEL STATUS
        "get_channel_status",
        bytes.fromhex("D009810307440082028182"),
        GetChannelStatus.build(7),
    ),
    (
        # cat-bip-apdu.md §3.7 (PYCAT, MTK-BIP): SET UP EVENT LIST Data available, Channel status
        "set_up_event_list",
        bytes.fromhex("D00D8103010500820281829902090A"),
        SetUpEventList.build(1, (Event.DATA_AVAILABLE, Event.CHANNEL_STATUS)),
    ),
    (
        # cat-bip-apdu.md §2.4 (WS-CAT, PYCAT): POLL INTERVAL, 10 seconds (§2.3 duration coding)
        "poll_interval",
        bytes.fromhex("D00D8103030300820281828402010A"),
        PollInterval(
            details=CommandDetails(3, 0x03),
            devices=DeviceIdentities(0x81, 0x82),
            duration=Duration(1, 10),
        ),
    ),
    (
        # cat-bip-apdu.md §2.4 (WS-CAT, PYCAT): MORE TIME
        "more_time",
        bytes.fromhex("D009810304020082028182"),
        MoreTime(details=CommandDetails(4, 0x02), devices=DeviceIdentities(0x81, 0x82)),
    ),
    (
        # cat-bip-apdu.md §2.4 (WS-CAT, PYCAT): POLLING OFF
        "polling_off",
        bytes.fromhex("D009810305040082028182"),
        PollingOff(details=CommandDetails(5, 0x04), devices=DeviceIdentities(0x81, 0x82)),
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [v[1:] for v in COMMAND_VECTORS], ids=[v[0] for v in COMMAND_VECTORS]
)
def test_command_vector(raw: bytes, expected: Command) -> None:
    command = decode_command(raw)
    assert type(command) is type(expected)
    assert command == expected
    assert command.extra == ()
    assert command.encode() == raw
    assert expected.encode() == raw


def test_every_command_has_a_vector() -> None:
    covered = {type(v[2]) for v in COMMAND_VECTORS}
    assert set(COMMANDS.values()) <= covered


def test_command_properties() -> None:
    server = decode_command(COMMAND_VECTORS[0][1])
    assert isinstance(server, OpenChannel)
    assert server.server_mode
    client = decode_command(COMMAND_VECTORS[2][1])
    assert isinstance(client, OpenChannel)
    assert not client.server_mode
    close = decode_command(COMMAND_VECTORS[3][1])
    assert isinstance(close, CloseChannel)
    assert close.channel == 1
    assert close.details.qualifier == 0x01


def test_send_data_flush_and_long_forms() -> None:
    # cat-bip-apdu.md §3.9 (MTK-BIP): the largest SEND DATA, 240 bytes, is 255 bytes long,
    # both lengths in 81 form; qualifier 01 = send immediately (§2.4, SWSIM)
    payload = bytes(range(240))
    raw = bytes.fromhex("D081FC810309430182028121B681F0") + payload
    command = decode_command(raw)
    assert command == SendData.build(9, 1, payload, immediately=True)
    assert isinstance(command, SendData)
    assert command.immediately
    assert len(raw) == 255
    assert command.encode() == raw


def test_command_with_cr_clear_objects_keeps_its_bytes() -> None:
    # cat-bip-apdu.md §2.2 (BLOG): 81/82 with CR set, the rest (39, 3C) with CR clear
    raw = bytes.fromhex("D012810302400082028182390205783C03030DBC")
    command = decode_command(raw)
    assert command == OpenChannel.server(2, 3516, 1400)
    assert command.encode() == raw


def test_unexpected_cr_clear_object_survives_re_encoding() -> None:
    # cat-bip-apdu.md §3.3 (BLOG) CLOSE CHANNEL with an extra CR-clear Duration (§2.3 tag 04)
    raw = bytes.fromhex("D00D81030241018202812104020105")
    command = decode_command(raw)
    assert command == CloseChannel.build(2, 1, to_listen=True)
    assert command.extra == (ComprehensionTlv(0x04, b"\x01\x05"),)
    assert command.encode() == raw


# -- terminal responses -------------------------------------------------------------------------

RECEIVE_237 = bytes(range(237))
TR_VECTORS: list[tuple[str, bytes, TerminalResponse]] = [
    (
        # cat-bip-apdu.md §3.1 (BLOG, GD-BIP): OPEN CHANNEL server TR, channel 1 LISTEN, buffer 1400
        "open_server",
        bytes.fromhex("810302400082028281830100B8024100B9020578"),
        TerminalResponse(
            details=CommandDetails(2, 0x40),
            result=Result(0),
            channel_statuses=(ChannelStatus.server(1, ServerState.LISTEN),),
            buffer_size=BufferSize(1400),
        ),
    ),
    (
        # cat-bip-apdu.md §3.2 (GD-BIP, MTK-BIP): OPEN CHANNEL client TR, channel 3 up
        "open_client",
        bytes.fromhex("810308400182028281830100B8028300B50103B9020578"),
        TerminalResponse(
            details=CommandDetails(8, 0x40, 0x01),
            result=Result(0),
            channel_statuses=(ChannelStatus.link(3, up=True),),
            bearer=BearerDescription(0x03),
            buffer_size=BufferSize(1400),
        ),
    ),
    (
        # cat-bip-apdu.md §3.3 (BLOG, SWSIM): CLOSE CHANNEL TR
        "close",
        bytes.fromhex("810302410182028281830100"),
        TerminalResponse(details=CommandDetails(2, 0x41, 0x01), result=Result(0)),
    ),
    (
        # cat-bip-apdu.md §3.3 (GD-BIP): unknown channel
        "close_invalid_channel",
        bytes.fromhex("81030241018202828183023A03"),
        TerminalResponse(details=CommandDetails(2, 0x41, 0x01), result=Result(0x3A, b"\x03")),
    ),
    (
        # cat-bip-apdu.md §3.4 (GD-BIP, MTK-BIP): SEND DATA TR, FF bytes free
        "send_data",
        bytes.fromhex("810305430082028281830100B701FF"),
        TerminalResponse(
            details=CommandDetails(5, 0x43), result=Result(0), data_length=ChannelDataLength(0xFF)
        ),
    ),
    (
        # cat-bip-apdu.md §3.5, §4.2 (GD-BIP, MTK-BIP): RECEIVE DATA TR, 237 bytes, 3F left
        "receive_data_237",
        bytes.fromhex("810304420082028281830100B681ED") + RECEIVE_237 + bytes.fromhex("B7013F"),
        TerminalResponse(
            details=CommandDetails(4, 0x42),
            result=Result(0),
            data=ChannelData(RECEIVE_237),
            data_length=ChannelDataLength(0x3F),
        ),
    ),
    (
        # cat-bip-apdu.md §3.6 (GD-BIP): GET CHANNEL STATUS TR with two statuses
        "get_channel_status",
        bytes.fromhex("810307440082028281830100B8024100B8028200"),
        TerminalResponse(
            details=CommandDetails(7, 0x44),
            result=Result(0),
            channel_statuses=(
                ChannelStatus.server(1, ServerState.LISTEN),
                ChannelStatus.server(2, ServerState.ESTABLISHED),
            ),
        ),
    ),
    (
        # cat-bip-apdu.md §3.7 (PYCAT, MTK-BIP): SET UP EVENT LIST TR
        "set_up_event_list",
        bytes.fromhex("810301050082028281830100"),
        TerminalResponse(details=CommandDetails(1, 0x05), result=Result(0)),
    ),
    (
        # cat-bip-apdu.md §2.2 (GD-BIP, MTK-BIP): OPEN CHANNEL client TR as MTK emits it, 38/35/39
        "open_client_cr_clear",
        bytes.fromhex("81030840018202828183010038028300350103 39020578"),
        TerminalResponse(
            details=CommandDetails(8, 0x40, 0x01),
            result=Result(0),
            channel_statuses=(ChannelStatus.link(3, up=True),),
            bearer=BearerDescription(0x03),
            buffer_size=BufferSize(1400),
        ),
    ),
    (
        # cat-bip-apdu.md §4.4 (GD-BIP, MTK-BIP): buffer size modified (result 07)
        "open_server_modified",
        bytes.fromhex("810302400082028281830107B8024100B902FFFF"),
        TerminalResponse(
            details=CommandDetails(2, 0x40),
            result=Result(0x07),
            channel_statuses=(ChannelStatus.server(1, ServerState.LISTEN),),
            buffer_size=BufferSize(0xFFFF),
        ),
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [v[1:] for v in TR_VECTORS], ids=[v[0] for v in TR_VECTORS]
)
def test_terminal_response_vector(raw: bytes, expected: TerminalResponse) -> None:
    response = TerminalResponse.decode(raw)
    assert response == expected
    assert response.extra == ()
    assert response.encode() == raw


def test_terminal_response_encodes_with_cr_set_by_default() -> None:
    # cat-bip-apdu.md §3.2 (GD-BIP): the CR-set form of the MTK vector above
    expected = TR_VECTORS[1]
    assert expected[2].encode() == expected[1]
    assert TR_VECTORS[-2][2].encode() == expected[1]


def test_receive_data_tr_fits_an_apdu() -> None:
    # cat-bip-apdu.md §3.9: 237 bytes of channel data make a 255-byte TR
    assert len(TR_VECTORS[5][1]) == 255


def test_channel_status_accessor() -> None:
    assert TR_VECTORS[6][2].channel_status == ChannelStatus.server(1, ServerState.LISTEN)
    assert TR_VECTORS[2][2].channel_status is None


def test_result_vector_ok_flag() -> None:
    # cat-bip-apdu.md §2.6 (WS-CAT): 83 02 3A 03
    result = Result.from_value(bytes.fromhex("3A03"))
    assert not result.ok
    assert Result(0x07).ok


# -- envelopes ----------------------------------------------------------------------------------

ENVELOPE_VECTORS: list[tuple[str, bytes, EventDownload | SmsPpDownload]] = [
    (
        # cat-bip-apdu.md §3.8 (GD-BIP, BLOG): Channel status, ch 1 ESTABLISHED
        "established",
        bytes.fromhex("D60B99010A82028281B8028100"),
        channel_status_event(ChannelStatus.server(1, ServerState.ESTABLISHED)),
    ),
    (
        # cat-bip-apdu.md §3.8 (GD-BIP, BLOG): Channel status, ch 1 back to LISTEN
        "listen",
        bytes.fromhex("D60B99010A82028281B8024100"),
        channel_status_event(ChannelStatus.server(1, ServerState.LISTEN)),
    ),
    (
        # cat-bip-apdu.md §3.8 (GD-BIP, MTK-BIP): Channel status, ch 2 link dropped
        "link_dropped",
        bytes.fromhex("D60B99010A82028281B8020205"),
        channel_status_event(ChannelStatus.link(2, up=False, further=FurtherInfo.LINK_DROPPED)),
    ),
    (
        # cat-bip-apdu.md §3.8 (GD-BIP): Data available, ch 1, 0x5A bytes
        "data_available",
        bytes.fromhex("D60E99010982028281B8028100B7015A"),
        data_available(ChannelStatus.server(1, ServerState.ESTABLISHED), 0x5A),
    ),
    (
        # cat-bip-apdu.md §5.1 (PYCAT, SRL): SMS-PP download, network -> UICC, opaque TPDU
        "sms_pp",
        bytes.fromhex("D107 82028381 8B0144"),
        SmsPpDownload(tpdu=SmsTpdu(b"\x44")),
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [v[1:] for v in ENVELOPE_VECTORS], ids=[v[0] for v in ENVELOPE_VECTORS]
)
def test_envelope_vector(raw: bytes, expected: EventDownload | SmsPpDownload) -> None:
    envelope = decode_envelope(raw)
    assert envelope == expected
    assert not isinstance(envelope, str)
    assert envelope.encode() == raw  # type: ignore[union-attr]
    assert expected.encode() == raw


def test_envelope_with_cr_clear_objects_keeps_its_bytes() -> None:
    # cat-bip-apdu.md §2.2 (BLOG): the §3.8 Data available event with 19/02/38/37 CR clear
    raw = bytes.fromhex("D60E190109020282813802810037015A")
    envelope = decode_envelope(raw)
    assert envelope == ENVELOPE_VECTORS[3][2]
    assert isinstance(envelope, EventDownload)
    assert envelope.encode() == raw


@pytest.mark.parametrize(
    "status",
    [
        ChannelStatus.server(1, ServerState.ESTABLISHED),
        ChannelStatus.server(7, ServerState.LISTEN),
        ChannelStatus.link(2, up=False, further=FurtherInfo.LINK_DROPPED),
    ],
)
@pytest.mark.parametrize("length", [0, 0x5A, 255, 4000])
def test_event_fast_encoders_match_typed(status: ChannelStatus, length: int) -> None:
    from openscws.cat.envelopes import encode_channel_status_event, encode_data_available

    assert encode_data_available(status, length) == data_available(status, length).encode()
    assert encode_channel_status_event(status) == channel_status_event(status).encode()


# -- byte-level fast paths against the typed codec -------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 0x5A, 0x7F, 0x80, 237])
@pytest.mark.parametrize(("general", "left"), [(0x00, 0), (0x02, 0x3F), (0x07, 0xFF)])
@pytest.mark.parametrize(("number", "qualifier"), [(1, 0), (0xFE, 0x01)])
def test_receive_data_tr_fast_decode_matches_typed(
    size: int, general: int, left: int, number: int, qualifier: int
) -> None:
    data = bytes((i * 5) & 0xFF for i in range(size))
    expected = TerminalResponse(
        details=CommandDetails(number, 0x42, qualifier),
        result=Result(general),
        data=ChannelData(data),
        data_length=ChannelDataLength(left),
    )
    raw = expected.encode()
    fast = TerminalResponse._decode_receive_data(raw)
    assert fast is not None
    typed = TerminalResponse._decode(raw)
    assert fast == typed == expected
    assert (fast.extra, fast.cr_clear) == (typed.extra, typed.cr_clear) == ((), frozenset())
    assert TerminalResponse.decode(raw) == typed


@pytest.mark.parametrize(
    "raw",
    [
        # CR clear on channel data (36): typed, and the tag is remembered
        bytes.fromhex("810304420082028281830100360141B70100"),
        # 81 length form for 1 byte: malformed (TS 101 220 §7.1.2)
        bytes.fromhex("810304420082028281830100B6810141B70100"),
        # result with additional information
        bytes.fromhex("81030442008202828183023A03"),
        # no channel data length
        bytes.fromhex("810304420082028281830100B60141"),
        # a trailing object
        bytes.fromhex("810304420082028281830100B60141B70100B9020578"),
        # SEND DATA, not RECEIVE DATA
        bytes.fromhex("810305430082028281830100B701FF"),
    ],
)
def test_receive_data_tr_fast_decode_leaves_other_forms_to_typed(raw: bytes) -> None:
    assert TerminalResponse._decode_receive_data(raw) is None
    try:
        typed = TerminalResponse._decode(raw)
    except DecodeError:
        with pytest.raises(DecodeError):
            TerminalResponse.decode(raw)
        return
    decoded = TerminalResponse.decode(raw)
    assert decoded == typed
    assert decoded.cr_clear == typed.cr_clear
    assert decoded.extra == typed.extra


@pytest.mark.parametrize("length", [0, 1, 0x7F, 237, 255, 4000])
@pytest.mark.parametrize(("number", "channel"), [(1, 1), (0xFE, 7)])
def test_receive_data_fast_encode_matches_layout_engine(
    length: int, number: int, channel: int
) -> None:
    command = ReceiveData.build(number, channel, length)
    assert command.encode() == Command.encode(command)
    assert decode_command(command.encode()) == ReceiveData.build(number, channel, min(length, 255))
    alpha = ReceiveData(
        details=command.details,
        devices=command.devices,
        length=command.length,
        alpha=AlphaIdentifier(b"R"),
    )
    assert alpha.encode() == Command.encode(alpha)


@pytest.mark.parametrize("size", [0, 1, 116, 117, 0x7F, 0x80, 239, 240])
@pytest.mark.parametrize("immediately", [False, True])
def test_send_data_fast_encode_matches_layout_engine(size: int, immediately: bool) -> None:
    # 116 bytes is the largest body with a 1-byte template length, 0x80 the first 81 form
    command = SendData.build(0x42, 3, bytes(range(size)), immediately=immediately)
    assert command.encode() == Command.encode(command)
    assert decode_command(command.encode()) == command
