"""The bytes of the transfer commands in their plain form (no alpha identifier, icon, text
attribute or frame), declared once and used by both sides: the card builds RECEIVE DATA and
SEND DATA and reads their TERMINAL RESPONSEs with it (bip/card.py), the terminal reads the
commands and builds the responses and the Data available envelope with it
(terminal/engine.py). Every request starts with a Data available event and a RECEIVE DATA,
and every byte of a response goes out in SEND DATA: this is the hot path of the gateway, so
the layouts below are compiled into lookup tables at import. The typed codec (cat/commands.py,
cat/responses.py, cat/envelopes.py) gives the same bytes; the tests check both agree, and any
other form goes the typed way.

Each layout is a tuple of parts, a part being fixed bytes or a named one-byte field, with the
clause of ETSI TS 102 223 that defines it."""

from __future__ import annotations

from typing import Final

from openscws.cat.objects import ChannelStatus, Event, ServerState

Part = bytes | str
"""Fixed bytes, or the name of a one-byte field."""

RECEIVE_DATA_TYPE: Final = 0x42
"""Type of command RECEIVE DATA (§9.4)."""
SEND_DATA_TYPE: Final = 0x43
"""Type of command SEND DATA (§9.4)."""

RECEIVE_DATA: Final[tuple[tuple[Part, str], ...]] = (
    (b"\xd0\x0c", "proactive UICC command tag and length (§9.2, §6.6.29)"),
    (b"\x81\x03", "command details (§8.6)"),
    ("number", "command number, 01..FE"),
    (bytes((RECEIVE_DATA_TYPE, 0x00)), "type RECEIVE DATA, qualifier 00"),
    (b"\x82\x02\x81", "device identities (§8.7): from the UICC..."),
    ("device", "...to the channel: 21..27"),
    (b"\xb7\x01", "channel data length (§8.54)"),
    ("length", "bytes asked for"),
)
"""RECEIVE DATA, §6.6.29."""

RECEIVE_DATA_TR: Final[tuple[tuple[Part, str], ...]] = (
    (b"\x81\x03", "command details echoed (§6.8.1)"),
    ("number", "as in the command"),
    (bytes((RECEIVE_DATA_TYPE, 0x00)), "type and qualifier, as in the command"),
    (b"\x82\x02\x82\x81", "device identities: from the terminal to the UICC"),
    (b"\x83\x01", "result (§8.12)"),
    ("general", "00 performed, 02 fewer bytes than asked, 07 the ask cut to fit"),
    (b"\xb6", "channel data (§8.53)"),
    ("data", "length (one byte, or 81 and one), then the bytes"),
    (b"\xb7\x01", "channel data length (§8.54)"),
    ("left", "bytes left in the Rx buffer (FF: 255 or more)"),
)
"""The TERMINAL RESPONSE to RECEIVE DATA, §6.8 and §6.6.29."""

SEND_DATA: Final[tuple[tuple[Part, str], ...]] = (
    (b"\xd0", "proactive UICC command tag (§9.2, §6.6.30)"),
    ("size", "length of what follows (one byte, or 81 and one)"),
    (b"\x81\x03", "command details (§8.6)"),
    ("number", "command number, 01..FE"),
    (bytes((SEND_DATA_TYPE,)), "type SEND DATA"),
    ("qualifier", "b1: 0 store in the Tx buffer, 1 send immediately"),
    (b"\x82\x02\x81", "device identities (§8.7): from the UICC..."),
    ("device", "...to the channel: 21..27"),
    (b"\xb6", "channel data (§8.53)"),
    ("data", "length (one byte, or 81 and one), then the bytes"),
)
"""SEND DATA, §6.6.30."""

SEND_DATA_TR: Final[tuple[tuple[Part, str], ...]] = (
    (b"\x81\x03", "command details echoed (§6.8.1)"),
    ("number", "as in the command"),
    (bytes((SEND_DATA_TYPE,)), "type, as in the command"),
    ("qualifier", "as in the command"),
    (b"\x82\x02\x82\x81", "device identities: from the terminal to the UICC"),
    (b"\x83\x01\x00", "result (§8.12): performed"),
    (b"\xb7\x01", "channel data length (§8.54)"),
    ("free", "free space in the Tx buffer (FF: 255 or more)"),
)
"""The TERMINAL RESPONSE to SEND DATA, §6.8 and §6.6.30."""

DATA_AVAILABLE: Final[tuple[tuple[Part, str], ...]] = (
    (b"\xd6\x0e", "event download tag and length (§7.5.10)"),
    (b"\x99\x01", "event list (§8.25)"),
    (bytes((Event.DATA_AVAILABLE,)), "Data available"),
    (b"\x82\x02\x82\x81", "device identities: from the terminal to the UICC"),
    (b"\xb8\x02", "channel status (§8.56)"),
    ("status", "b8..b7 the TCP state (server mode), b3..b1 the channel"),
    (b"\x00", "further information: none"),
    (b"\xb7\x01", "channel data length (§8.54)"),
    ("left", "bytes in the Rx buffer (FF: 255 or more)"),
)
"""The Data available event from a server-mode channel, §7.5.10."""


def _fixed(layout: tuple[tuple[Part, str], ...], until: str) -> bytes:
    """The fixed bytes of `layout` before field `until` (no earlier field allowed)."""
    out = b""
    for part, _ in layout:
        if part == until:
            return out
        assert isinstance(part, bytes), f"field {part!r} before {until!r}"
        out += part
    raise KeyError(until)


def _between(layout: tuple[tuple[Part, str], ...], start: str, stop: str | None) -> bytes:
    """The fixed bytes of `layout` between field `start` and field `stop` (or the end)."""
    names = [part for part, _ in layout]
    i = names.index(start) + 1
    out = b""
    for part in names[i:]:
        if part == stop:
            return out
        assert isinstance(part, bytes), f"field {part!r} between {start!r} and {stop!r}"
        out += part
    assert stop is None, stop
    return out


# -- compiled: RECEIVE DATA ----------------------------------------------------------------------

_RD_HEAD = _fixed(RECEIVE_DATA, "number")  # D0 0C 81 03
_RD_TYPE = _between(RECEIVE_DATA, "number", "device")  # 42 00 82 02 81
_RD_LENGTH = _between(RECEIVE_DATA, "device", "length")  # B7 01
RECEIVE_DATA_SIZE: Final = len(_RD_HEAD) + 1 + len(_RD_TYPE) + 1 + len(_RD_LENGTH) + 1

RECEIVE_DATA_HEADS: Final = [_RD_HEAD + bytes((n,)) + _RD_TYPE for n in range(256)]
"""RECEIVE DATA up to its device byte, by command number."""

_RD_TR_HEAD = _fixed(RECEIVE_DATA_TR, "number")
_RD_TR_TYPE = _between(RECEIVE_DATA_TR, "number", "general")
RECEIVE_DATA_TR_EXPECT: Final = [_RD_TR_HEAD + bytes((n,)) + _RD_TR_TYPE for n in range(256)]
"""The plain TR of a RECEIVE DATA up to its general result, by command number."""
RECEIVE_DATA_RESULT: Final = [
    _between(RECEIVE_DATA_TR, "number", "general")[2:] + bytes((g,)) + b"\xb6" for g in range(256)
]
"""What follows the echoed details in the TR, up to the data length, by general result."""
_RD_TR_LEFT = _between(RECEIVE_DATA_TR, "data", "left")  # B7 01
LENGTHS: Final = [bytes((n,)) if n < 0x80 else bytes((0x81, n)) for n in range(256)]
"""A BER-TLV length (§9.3) for 0..255, by value."""
LEFT: Final = [_RD_TR_LEFT + bytes((n,)) for n in range(256)]
"""The channel data length object, by count (the caller caps it at FF)."""


def receive_data(number: int, channel: int, length: int) -> bytes:
    """RECEIVE DATA `number` for `channel`, asking for `length` bytes (at most 255)."""
    return RECEIVE_DATA_HEADS[number] + bytes((0x20 + channel, *_RD_LENGTH, length))


def read_receive_data(raw: bytes) -> tuple[bytes, int, int] | None:
    """(echoed details `81 03 nn 42 qq`, channel, length asked) of a plain RECEIVE DATA in
    exactly `raw` (14 bytes, a FETCH response without its status word), or None."""
    if len(raw) < RECEIVE_DATA_SIZE or not raw.startswith(_RD_HEAD):
        return None
    if raw[5] != RECEIVE_DATA_TYPE or not raw.startswith(b"\x82\x02\x81", 7):
        return None
    device = raw[10]
    if not 0x21 <= device <= 0x27 or not raw.startswith(_RD_LENGTH, 11):
        return None
    return raw[2:7], device - 0x20, raw[13]


def receive_data_tr(details: bytes, general: int, data: bytes, left: int) -> bytes:
    """The TR of a RECEIVE DATA whose details were `details`: `data` and `left` bytes left."""
    return b"".join(
        (
            details,
            RECEIVE_DATA_RESULT[general],
            LENGTHS[len(data)],
            data,
            LEFT[left if left < 0xFF else 0xFF],
        )
    )


def read_receive_data_tr(data: bytes, expect: bytes) -> tuple[int, int, int] | None:
    """(start, end, left) of the channel data in the plain TR `data` of the RECEIVE DATA
    whose TR starts with `expect`, performed (general result below 10); None for any other
    form, to be decoded the typed way."""
    n = len(data)
    if n < 17 or not data.startswith(expect) or data[11] >= 0x10 or data[12] != 0xB6:
        return None
    length = data[13]
    start = 14
    if length == 0x81:
        length = data[14]
        start = 15
        if length < 0x80:
            return None  # malformed: the typed decoder says so
    elif length > 0x7F:
        return None
    end = start + length
    if n != end + 3 or not data.startswith(_RD_TR_LEFT, end):
        return None
    return start, end, data[end + 2]


# -- compiled: SEND DATA -------------------------------------------------------------------------

_SD_DETAILS = _between(SEND_DATA, "size", "number")  # 81 03
_SD_TYPE = _between(SEND_DATA, "number", "qualifier")  # 43
_SD_DEVICES = _between(SEND_DATA, "qualifier", "device")  # 82 02 81
_SD_DATA = _between(SEND_DATA, "device", "data")  # B6
_SD_FIXED = len(_SD_DETAILS) + 1 + len(_SD_TYPE) + 1 + len(_SD_DEVICES) + 1 + len(_SD_DATA)
SEND_DATA_HEADS: dict[int, bytes] = {}
"""`send_data_head`'s results by `size << 24 | channel << 16 | qualifier << 8 | number`: the
full chunks of a transfer differ only in number and qualifier."""


def send_data_head(number: int, qualifier: int, channel: int, size: int) -> bytes:
    """SEND DATA up to its `size` data bytes, in the short or 81 length forms (§9.3)."""
    key = size << 24 | channel << 16 | qualifier << 8 | number
    head = SEND_DATA_HEADS.get(key)
    if head is None:
        body = (
            _SD_DETAILS
            + bytes((number,))
            + _SD_TYPE
            + bytes((qualifier,))
            + _SD_DEVICES
            + bytes((0x20 + channel,))
            + _SD_DATA
            + LENGTHS[size]
        )
        total = len(body) + size
        head = b"\xd0" + LENGTHS[total] + body
        if len(SEND_DATA_HEADS) >= 8192:
            SEND_DATA_HEADS.clear()
        SEND_DATA_HEADS[key] = head
    return head


_SD_TR_HEAD = _fixed(SEND_DATA_TR, "number")
_SD_TR_TYPE = _between(SEND_DATA_TR, "number", "qualifier")
_SD_TR_REST = _between(SEND_DATA_TR, "qualifier", "free")
SEND_DATA_TR_EXPECT: Final = [
    _SD_TR_HEAD + bytes((n & 0xFF,)) + _SD_TR_TYPE + bytes((n >> 8,)) + _SD_TR_REST
    for n in range(512)
]
"""The plain TR of a SEND DATA up to the free-space byte, by `qualifier << 8 | number`."""
SEND_DATA_OK: Final = [_SD_TR_REST + bytes((n,)) for n in range(256)]
"""What follows the echoed details in a performed SEND DATA's TR, by free space byte."""


def read_send_data(raw: bytes, n: int) -> tuple[bytes, int, int, bool] | None:
    """(echoed details `81 03 nn 43 qq`, channel, start of the data, send immediately) of a
    plain SEND DATA in `raw[:n]` (a FETCH response, before its status word), or None. The
    data runs from start to n."""
    if raw[1] == 0x81:
        o = 3
        if raw[2] + 3 != n:
            return None
    elif raw[1] < 0x80 and raw[1] + 2 == n:
        o = 2
    else:
        return None
    # o -> 81 03 nn 43 qq 82 02 81 2c B6 LL
    if (
        raw[o + 3] != SEND_DATA_TYPE
        or not raw.startswith(_SD_DETAILS, o)
        or not raw.startswith(_SD_DEVICES, o + 5)
    ):
        return None
    device = raw[o + 8]
    if not 0x21 <= device <= 0x27 or raw[o + 9] != 0xB6:
        return None
    length = raw[o + 10]
    start = o + 11
    if length == 0x81:
        length = raw[start]
        start += 1
    elif length > 0x7F:
        return None
    if start + length != n:
        return None
    return raw[o : o + 5], device - 0x20, start, bool(raw[o + 4] & 1)


def send_data_tr(details: bytes, free: int) -> bytes:
    """The TR of a performed SEND DATA whose details were `details`."""
    return details + SEND_DATA_OK[free if free < 0xFF else 0xFF]


def error_tr(details: bytes, result: int, additional: bytes) -> bytes:
    """The TR of a transfer command that failed: `result` (§8.12) and its additional
    information."""
    return details + _SD_TR_REST[:4] + bytes((0x83, 1 + len(additional), result)) + additional


# -- compiled: Data available --------------------------------------------------------------------

_DA_HEAD = _fixed(DATA_AVAILABLE, "status")
_DA_FURTHER = _between(DATA_AVAILABLE, "status", "left")
DATA_AVAILABLE_SERVER: Final = [
    _DA_HEAD + ChannelStatus.server(k & 7, ServerState(k >> 3)).value()[:1] + _DA_FURTHER
    for k in range(24)
]
"""A server channel's Data available event up to its byte count, by `state << 3 | channel`."""


def data_available(state: int, channel: int, left: int) -> bytes:
    """The Data available event of a server-mode channel with `left` bytes in its Rx
    buffer (capped at FF)."""
    return DATA_AVAILABLE_SERVER[state << 3 | channel] + bytes((left if left < 0xFF else 0xFF,))
