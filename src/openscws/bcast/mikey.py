"""MIKEY (RFC 3830) as the LTKM carrier of the BCAST smartcard profile, sans-IO: the common
header and the payload chain declared once as data, the MIKEY PRF and the pre-shared-key
derivation of the encryption, salt and authentication keys, AES-CM-128 for the KEMAC, the
HMAC-SHA-1-160 MAC, and replay protection.

Every payload starts with its "next payload" octet (RFC 3830 §6); the common header's own
"next payload" names the first one. The fixed layouts below are the only place the field order
lives; `decode` and `encode` walk them. The Key data sub-payload (§6.13) is carried encrypted
inside the KEMAC and has conditional fields (salt, key validity), so it has its own codec,
declared beside the others.

The MBMS profile (TS 33.246 §6.4 MSK message): HDR (data type Pre-shared, V set when an
acknowledgement is wanted, #CS 0 with the empty CS ID map), EXT (the key ids), T (the
timestamp COUNTER for replay protection, per MUK: EF_MUK of TS 31.102 §4.2.81), IDi, IDr (the
MUK ID), optional RAND, KEMAC (the MSK, for BCAST the SEK/PEK, encrypted with the key derived
from the MUK, MACed with HMAC-SHA-1-160). The acknowledgement is a verification message
HDR, T, IDi, IDr, V. Details the public texts here could not confirm are marked
"project's reading" where they are used, and listed in docs/bcast.md.

Every malformed message raises a `MikeyError` with the RFC 3830 §6.12 error number to answer;
nothing else escapes `decode`."""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openscws.errors import OpenScwsError

__all__ = [
    "LTKM_UDP_PORT",
    "CsIdMap",
    "DataType",
    "EncrAlg",
    "ErrorNo",
    "Header",
    "KeyData",
    "KeyDataType",
    "KeyValidity",
    "MacAlg",
    "Message",
    "MikeyAuthError",
    "MikeyDecodeError",
    "MikeyError",
    "MikeyReplayError",
    "Payload",
    "PayloadType",
    "ReplayGuard",
    "TsType",
    "decode",
    "decode_key_data",
    "derive_psk_keys",
    "encode",
    "encode_key_data",
    "prf",
]

LTKM_UDP_PORT: Final = 4359
"""IANA service name "omabcastltkm" (the port the BSM pushes LTKMs to)."""
VERSION: Final = 1
"""RFC 3830 §6.1: version 0x01."""


class MikeyError(OpenScwsError):
    """A MIKEY message refused; `error_no` is the ERR payload value to answer (§6.12)."""

    def __init__(self, reason: str, error_no: ErrorNo) -> None:
        super().__init__(f"MIKEY: {reason}")
        self.reason = reason
        self.error_no = error_no


class MikeyDecodeError(MikeyError):
    def __init__(self, reason: str, error_no: ErrorNo | None = None) -> None:
        super().__init__(reason, ErrorNo.UNSPECIFIED if error_no is None else error_no)


class MikeyAuthError(MikeyError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, ErrorNo.AUTH_FAILURE)


class MikeyReplayError(MikeyError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, ErrorNo.INVALID_TS)


# -- code points (RFC 3830 §6, IANA "MIKEY Payload Name Spaces") ----------------------------


class DataType(IntEnum):
    """§6.1 table 6.1.a."""

    PSK_INIT = 0
    PSK_VERIFY = 1
    PK_INIT = 2
    PK_VERIFY = 3
    DH_INIT = 4
    DH_RESP = 5
    ERROR = 6


class PayloadType(IntEnum):
    """§6.1 table 6.1.b: the "next payload" values."""

    LAST = 0
    KEMAC = 1
    PKE = 2
    DH = 3
    SIGN = 4
    T = 5
    ID = 6
    CERT = 7
    CHASH = 8
    V = 9
    SP = 10
    RAND = 11
    ERR = 12
    KEY_DATA = 20
    GENERAL_EXT = 21


class CsIdMap(IntEnum):
    """§6.1 table 6.1.d; EMPTY is the "empty map" MBMS uses (RFC 4563 §3)."""

    SRTP_ID = 0
    EMPTY = 1


class TsType(IntEnum):
    """§6.6 table 6.6: NTP-UTC and NTP are 64 bits, COUNTER 32."""

    NTP_UTC = 0
    NTP = 1
    COUNTER = 2


class IdType(IntEnum):
    """§6.7 table 6.7.a."""

    NAI = 0
    URI = 1


class EncrAlg(IntEnum):
    """§6.2 table 6.2.a."""

    NULL = 0
    AES_CM_128 = 1
    AES_KW_128 = 2


class MacAlg(IntEnum):
    """§6.2 table 6.2.b (also the V payload's auth alg, §6.9)."""

    NULL = 0
    HMAC_SHA1_160 = 1


class KeyDataType(IntEnum):
    """§6.13 table 6.13.a."""

    TGK = 0
    TGK_SALT = 1
    TEK = 2
    TEK_SALT = 3


class KeyValidity(IntEnum):
    """§6.13 table 6.13.b."""

    NULL = 0
    SPI = 1
    INTERVAL = 2


class ErrorNo(IntEnum):
    """§6.12 table 6.12.a."""

    AUTH_FAILURE = 0
    INVALID_TS = 1
    INVALID_PRF = 2
    INVALID_MAC = 3
    INVALID_EA = 4
    INVALID_HA = 5
    INVALID_DH = 6
    INVALID_ID = 7
    INVALID_CERT = 8
    INVALID_SP = 9
    INVALID_SPPAR = 10
    INVALID_DT = 11
    UNSPECIFIED = 12


_TS_LEN: Final = {TsType.NTP_UTC: 8, TsType.NTP: 8, TsType.COUNTER: 4}
_MAC_LEN: Final = {MacAlg.NULL: 0, MacAlg.HMAC_SHA1_160: 20}

# -- layouts: each field is (name, kind); kinds: "u8", "u16", "u32", "var8" (u8 length then
# bytes), "var16" (u16 length then bytes), "ts" (length by ts_type), "mac" (length by the
# preceding algorithm). The next-payload octet precedes each of these. ------------------------

Layout = tuple[tuple[str, str], ...]

LAYOUTS: Final[Mapping[PayloadType, tuple[Layout, str]]] = {
    PayloadType.KEMAC: (
        (("encr_alg", "u8"), ("encr_data", "var16"), ("mac_alg", "u8"), ("mac", "mac")),
        "RFC 3830 §6.2",
    ),
    PayloadType.T: ((("ts_type", "u8"), ("ts_value", "ts")), "RFC 3830 §6.6"),
    PayloadType.ID: ((("id_type", "u8"), ("id_data", "var16")), "RFC 3830 §6.7"),
    PayloadType.V: ((("auth_alg", "u8"), ("mac", "mac")), "RFC 3830 §6.9"),
    PayloadType.RAND: ((("rand", "var8"),), "RFC 3830 §6.11"),
    PayloadType.ERR: ((("error_no", "u8"), ("reserved", "u16")), "RFC 3830 §6.12"),
    PayloadType.GENERAL_EXT: ((("ext_type", "u8"), ("data", "var16")), "RFC 3830 §6.15"),
}
"""Payloads this codec reads and writes; any other next-payload value is refused."""

HEADER_LAYOUT: Final = struct.Struct(">BBBBIBB")
"""RFC 3830 §6.1: version, data type, next payload, V(1)|PRF func(7), CSB ID, #CS,
CS ID map type; then the CS ID map info (SRTP-ID: #CS x (policy 8, SSRC 32, ROC 32))."""
_SRTP_ID_ENTRY: Final = 9


@dataclass(frozen=True, slots=True)
class Header:
    data_type: DataType
    csb_id: int
    v: bool = False
    prf_func: int = 0
    cs_map_type: CsIdMap = CsIdMap.EMPTY
    cs_map: bytes = b""
    """The raw CS ID map info (SRTP-ID: 9 bytes per crypto session)."""
    n_cs: int = 0


@dataclass(frozen=True, slots=True)
class Payload:
    """One payload: its type and its fields by the names of `LAYOUTS`."""

    type: PayloadType
    fields: Mapping[str, int | bytes]

    def int(self, name: str) -> int:
        value = self.fields[name]
        if not isinstance(value, int):
            raise TypeError(name)
        return value

    def bytes(self, name: str) -> bytes:
        value = self.fields[name]
        if not isinstance(value, bytes):
            raise TypeError(name)
        return value


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    payloads: tuple[Payload, ...]
    raw: bytes = field(default=b"", compare=False)
    """The wire bytes `decode` read (empty for a built message)."""

    def find(self, kind: PayloadType) -> Payload | None:
        return next((p for p in self.payloads if p.type is kind), None)

    def all(self, kind: PayloadType) -> list[Payload]:
        return [p for p in self.payloads if p.type is kind]


MAX_MESSAGE: Final = 65507
"""One UDP datagram at most."""


def decode(data: bytes) -> Message:
    """Parse one MIKEY message. Raises `MikeyDecodeError` for anything malformed."""
    if len(data) > MAX_MESSAGE:
        raise MikeyDecodeError("message larger than a UDP datagram")
    if len(data) < HEADER_LAYOUT.size:
        raise MikeyDecodeError("shorter than the common header")
    version, dtype, nxt, v_prf, csb_id, n_cs, map_type = HEADER_LAYOUT.unpack_from(data)
    if version != VERSION:
        raise MikeyDecodeError(f"version {version}, not 1")
    try:
        data_type = DataType(dtype)
    except ValueError:
        raise MikeyDecodeError(f"data type {dtype}", ErrorNo.INVALID_DT) from None
    if v_prf & 0x7F != 0:
        raise MikeyDecodeError(f"PRF func {v_prf & 0x7F}", ErrorNo.INVALID_PRF)
    try:
        cs_map_type = CsIdMap(map_type)
    except ValueError:
        raise MikeyDecodeError(f"CS ID map type {map_type}") from None
    pos = HEADER_LAYOUT.size
    map_len = n_cs * _SRTP_ID_ENTRY if cs_map_type is CsIdMap.SRTP_ID else 0
    if cs_map_type is CsIdMap.EMPTY and n_cs:
        raise MikeyDecodeError("the empty CS ID map with #CS other than 0")
    cs_map = _take(data, pos, map_len)
    pos += map_len
    header = Header(
        data_type=data_type,
        csb_id=csb_id,
        v=bool(v_prf & 0x80),
        prf_func=v_prf & 0x7F,
        cs_map_type=cs_map_type,
        cs_map=cs_map,
        n_cs=n_cs,
    )
    payloads: list[Payload] = []
    while nxt != PayloadType.LAST:
        try:
            kind = PayloadType(nxt)
            layout, _clause = LAYOUTS[kind]
        except (ValueError, KeyError):
            raise MikeyDecodeError(f"payload type {nxt} not supported") from None
        if pos >= len(data):
            raise MikeyDecodeError("payload chain runs past the end")
        nxt = data[pos]
        pos += 1
        values: dict[str, int | bytes] = {}
        for name, kind_name in layout:
            value, pos = _read(data, pos, kind_name, values)
            values[name] = value
        payloads.append(Payload(kind, values))
    if pos != len(data):
        raise MikeyDecodeError(f"{len(data) - pos} bytes after the last payload")
    return Message(header, tuple(payloads), raw=bytes(data))


def _take(data: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(data):
        raise MikeyDecodeError("field runs past the end")
    return bytes(data[pos : pos + n])


def _read(
    data: bytes, pos: int, kind: str, seen: Mapping[str, int | bytes]
) -> tuple[int | bytes, int]:
    if kind == "u8":
        return _take(data, pos, 1)[0], pos + 1
    if kind == "u16":
        return int.from_bytes(_take(data, pos, 2)), pos + 2
    if kind == "u32":
        return int.from_bytes(_take(data, pos, 4)), pos + 4
    if kind == "var8":
        n = _take(data, pos, 1)[0]
        return _take(data, pos + 1, n), pos + 1 + n
    if kind == "var16":
        n = int.from_bytes(_take(data, pos, 2))
        return _take(data, pos + 2, n), pos + 2 + n
    if kind == "ts":
        ts_type = seen["ts_type"]
        try:
            n = _TS_LEN[TsType(ts_type)]  # type: ignore[arg-type]
        except ValueError:
            raise MikeyDecodeError(f"TS type {ts_type!r}", ErrorNo.INVALID_TS) from None
        return _take(data, pos, n), pos + n
    if kind == "mac":
        alg = seen.get("mac_alg", seen.get("auth_alg"))
        try:
            n = _MAC_LEN[MacAlg(alg)]  # type: ignore[arg-type]
        except ValueError:
            raise MikeyDecodeError(f"MAC algorithm {alg!r}", ErrorNo.INVALID_MAC) from None
        return _take(data, pos, n), pos + n
    raise AssertionError(kind)  # pragma: no cover - the layouts use only the kinds above


def encode(header: Header, payloads: Sequence[Payload]) -> bytes:
    """The wire form of a message; the MAC fields are written as given (see `seal`)."""
    first = payloads[0].type if payloads else PayloadType.LAST
    out = bytearray(
        HEADER_LAYOUT.pack(
            VERSION,
            header.data_type,
            first,
            (0x80 if header.v else 0) | header.prf_func,
            header.csb_id,
            header.n_cs,
            header.cs_map_type,
        )
    )
    out += header.cs_map
    for i, payload in enumerate(payloads):
        nxt = payloads[i + 1].type if i + 1 < len(payloads) else PayloadType.LAST
        out.append(nxt)
        layout, _clause = LAYOUTS[payload.type]
        for name, kind in layout:
            out += _write(kind, payload.fields[name], payload.fields)
    if len(out) > MAX_MESSAGE:
        raise MikeyDecodeError("message larger than a UDP datagram")
    return bytes(out)


def _write(kind: str, value: int | bytes, fields: Mapping[str, int | bytes]) -> bytes:
    if kind in ("u8", "u16", "u32"):
        assert isinstance(value, int)
        return value.to_bytes({"u8": 1, "u16": 2, "u32": 4}[kind])
    assert isinstance(value, bytes)
    if kind == "var8":
        return len(value).to_bytes(1) + value
    if kind == "var16":
        return len(value).to_bytes(2) + value
    if kind == "ts":
        expected = _TS_LEN[TsType(fields["ts_type"])]  # type: ignore[arg-type]
    else:
        alg = fields.get("mac_alg", fields.get("auth_alg"))
        expected = _MAC_LEN[MacAlg(alg)]  # type: ignore[arg-type]
    if len(value) != expected:
        raise ValueError(f"{kind} field of {len(value)} bytes, {expected} expected")
    return value


# -- Key data sub-payload (§6.13), inside the KEMAC's encrypted data ------------------------


@dataclass(frozen=True, slots=True)
class KeyData:
    type: KeyDataType
    key: bytes
    salt: bytes | None = None
    kv: KeyValidity = KeyValidity.NULL
    kv_data: tuple[bytes, ...] = ()
    """SPI: (spi,); INTERVAL: (valid_from, valid_to)."""

    def __repr__(self) -> str:
        kv = f"kv={self.kv.name}, kv_data={self.kv_data!r}"
        return f"KeyData(type={self.type.name}, key=<secret>, {kv})"


def encode_key_data(items: Sequence[KeyData]) -> bytes:
    """RFC 3830 §6.13: next payload 8, type 4 | KV 4, key data len 16, key data,
    [salt len 16, salt], KV data (SPI: len 8, SPI; interval: len 8, VF, len 8, VT)."""
    out = bytearray()
    for i, item in enumerate(items):
        out.append(PayloadType.KEY_DATA if i + 1 < len(items) else PayloadType.LAST)
        out.append((item.type << 4) | item.kv)
        out += len(item.key).to_bytes(2) + item.key
        if item.type in (KeyDataType.TGK_SALT, KeyDataType.TEK_SALT):
            salt = item.salt or b""
            out += len(salt).to_bytes(2) + salt
        expected = {KeyValidity.NULL: 0, KeyValidity.SPI: 1, KeyValidity.INTERVAL: 2}[item.kv]
        if len(item.kv_data) != expected:
            raise ValueError(f"key validity {item.kv.name} takes {expected} values")
        for part in item.kv_data:
            out += len(part).to_bytes(1) + part
    return bytes(out)


def decode_key_data(data: bytes) -> list[KeyData]:
    items: list[KeyData] = []
    pos, nxt = 0, int(PayloadType.KEY_DATA)
    while nxt == PayloadType.KEY_DATA:
        nxt = _take(data, pos, 1)[0]
        if nxt not in (PayloadType.KEY_DATA, PayloadType.LAST):
            raise MikeyDecodeError(f"key data followed by payload {nxt}")
        type_kv = _take(data, pos + 1, 1)[0]
        pos += 2
        try:
            kind, kv = KeyDataType(type_kv >> 4), KeyValidity(type_kv & 0x0F)
        except ValueError:
            raise MikeyDecodeError(f"key data type/KV {type_kv:#04x}") from None
        n = int.from_bytes(_take(data, pos, 2))
        key = _take(data, pos + 2, n)
        pos += 2 + n
        salt = None
        if kind in (KeyDataType.TGK_SALT, KeyDataType.TEK_SALT):
            n = int.from_bytes(_take(data, pos, 2))
            salt = _take(data, pos + 2, n)
            pos += 2 + n
        parts: list[bytes] = []
        for _ in range({KeyValidity.NULL: 0, KeyValidity.SPI: 1, KeyValidity.INTERVAL: 2}[kv]):
            n = _take(data, pos, 1)[0]
            parts.append(_take(data, pos + 1, n))
            pos += 1 + n
        items.append(KeyData(kind, key, salt, kv, tuple(parts)))
    if pos != len(data):
        raise MikeyDecodeError("bytes after the last key data sub-payload")
    return items


# -- PRF and key derivation (§4.1.2, §4.1.4) ------------------------------------------------


def _p_sha1(s: bytes, label: bytes, m: int) -> bytes:
    """§4.1.2: P(s, label, m) = HMAC(s, A_1 || label) || ... || HMAC(s, A_m || label),
    A_0 = label, A_i = HMAC(s, A_(i-1)); HMAC is HMAC-SHA-1."""
    out, a = bytearray(), label
    for _ in range(m):
        a = hmac.new(s, a, hashlib.sha1).digest()
        out += hmac.new(s, a + label, hashlib.sha1).digest()
    return bytes(out)


def prf(inkey: bytes, label: bytes, out_bits: int) -> bytes:
    """MIKEY-1 PRF (§4.1.2): inkey split into 256-bit pieces s_1..s_n (the last may be shorter),
    outkey = P(s_1, label, m) XOR ... XOR P(s_n, label, m), m = ceil(out_bits/160), truncated."""
    if not inkey or out_bits <= 0 or out_bits % 8:
        raise ValueError("inkey is not empty; out_bits is a positive multiple of 8")
    m = math.ceil(out_bits / 160)
    out = bytes(20 * m)
    for i in range(0, len(inkey), 32):
        piece = _p_sha1(inkey[i : i + 32], label, m)
        out = bytes(x ^ y for x, y in zip(out, piece, strict=True))
    return out[: out_bits // 8]


_CONST_ENCR: Final = 0x150533E1
_CONST_AUTH: Final = 0x2D22AC75
_CONST_SALT: Final = 0x29B88916
"""§4.1.4: the constants for the encryption, authentication and salting keys."""


@dataclass(frozen=True, slots=True)
class PskKeys:
    encr_key: bytes
    salt_key: bytes
    auth_key: bytes

    def __repr__(self) -> str:
        return "PskKeys(<secret>)"


def derive_psk_keys(env_key: bytes, csb_id: int, rand: bytes) -> PskKeys:
    """§4.1.4: encr_key, salt_key and auth_key from the pre-shared key (here the SMK: MUK or
    TK) with label = constant || 0xFF || CSB ID || RAND. AES-CM-128 takes a 128-bit key and a
    112-bit salt; HMAC-SHA-1-160 a 160-bit key. An MBMS message without a RAND payload uses
    an empty RAND (project's reading)."""

    def label(constant: int) -> bytes:
        return constant.to_bytes(4) + b"\xff" + csb_id.to_bytes(4) + rand

    return PskKeys(
        encr_key=prf(env_key, label(_CONST_ENCR), 128),
        salt_key=prf(env_key, label(_CONST_SALT), 112),
        auth_key=prf(env_key, label(_CONST_AUTH), 160),
    )


def aes_cm(key: bytes, salt: bytes, csb_id: int, ts_value: bytes, data: bytes) -> bytes:
    """§4.2.3: AES in counter mode with IV = (S XOR (0x0000 || CSB ID || T)) || 0x0000, T the
    64-bit timestamp; a 32-bit COUNTER is widened to 64 bits with leading zeros (project's
    reading). Its own inverse."""
    t = ts_value.rjust(8, b"\x00")
    mask = b"\x00\x00" + csb_id.to_bytes(4) + t
    iv = bytes(a ^ b for a, b in zip(salt.ljust(14, b"\x00"), mask, strict=True)) + b"\x00\x00"
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def mac(auth_key: bytes, data: bytes) -> bytes:
    """§6.2: HMAC-SHA-1-160."""
    return hmac.new(auth_key, data, hashlib.sha1).digest()


# -- replay protection (§5.4; TS 33.246 TS counter per MUK, EF_MUK) -------------------------


@dataclass(slots=True)
class ReplayGuard:
    """The highest accepted COUNTER per key (the MUK ID, and per SEK/PEK id): a message is
    accepted only with a larger counter, and `accept` records it. NTP timestamps are accepted
    within `skew` seconds of `now` and not twice (§5.4's replay cache)."""

    skew: float = 300.0
    counters: dict[bytes, int] = field(default_factory=dict)
    seen_ntp: dict[bytes, set[int]] = field(default_factory=dict)

    def check(self, key_id: bytes, ts_type: TsType, ts_value: bytes, now: float) -> None:
        value = int.from_bytes(ts_value)
        if ts_type is TsType.COUNTER:
            last = self.counters.get(key_id)
            if last is not None and value <= last:
                raise MikeyReplayError(f"counter {value} not above {last}")
            return
        seconds = (value >> 32) - 2208988800  # NTP era 0 to Unix time
        if abs(seconds - now) > self.skew:
            raise MikeyReplayError("timestamp outside the allowed clock skew")
        if value in self.seen_ntp.get(key_id, set()):
            raise MikeyReplayError("timestamp already seen")

    def accept(self, key_id: bytes, ts_type: TsType, ts_value: bytes, now: float) -> None:
        self.check(key_id, ts_type, ts_value, now)
        value = int.from_bytes(ts_value)
        if ts_type is TsType.COUNTER:
            self.counters[key_id] = value
        else:
            cache = self.seen_ntp.setdefault(key_id, set())
            cache.add(value)
            limit = (int(now) + 2208988800 - int(self.skew)) << 32
            for old in [v for v in cache if v < limit]:
                cache.discard(old)
