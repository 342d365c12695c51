"""The LTKM of the BCAST smartcard profile as a TS 33.246 MSK message over MIKEY, sans-IO:
build (the BSM), open and verify (the terminal with GBA_ME, or the card with GBA_U), and the
verification message that acknowledges it.

    LTKM  = HDR(Pre-shared, V=ack wanted, CSB ID = SEK/PEK ID, #CS 0, empty map)
            EXT(Key ID: key id type, Key Domain ID || SEK/PEK ID)
            T(COUNTER)  IDi(BSM NAF FQDN)  IDr(B-TID or NAI)
            KEMAC(AES-CM-128 { Key data: TGK = SEK/PEK, KV SPI = SEK/PEK ID }, HMAC-SHA-1-160)
    ack   = HDR(PSK ver msg, same CSB ID)  T(the LTKM's)  IDi  IDr  V(HMAC-SHA-1-160)

The keys of the KEMAC come from the SMK (MUK for (U)SIM, TK for (R-)UIM) by the RFC 3830
§4.1.4 derivation. The MUK ID is IDi || IDr (EF_MUK of TS 31.102 §4.2.81 stores Idi and Idr);
the TS counter is checked per MUK ID. The choice of payload values above is the project's
reading of TS 33.246 §6.4 and OMA BCAST SvcCntProtection (see docs/bcast.md), all in this one
module."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from openscws.bcast.mikey import (
    CsIdMap,
    DataType,
    EncrAlg,
    Header,
    KeyData,
    KeyDataType,
    KeyValidity,
    MacAlg,
    Message,
    MikeyAuthError,
    MikeyDecodeError,
    Payload,
    PayloadType,
    ReplayGuard,
    TsType,
    aes_cm,
    decode,
    decode_key_data,
    derive_psk_keys,
    encode,
    encode_key_data,
    mac,
)

__all__ = [
    "EXT_KEY_ID",
    "KEY_ID_TYPE_MSK",
    "Ltkm",
    "build_ltkm",
    "build_verification",
    "check_verification",
    "open_ltkm",
    "peek",
]

EXT_KEY_ID: Final = 2
"""General Extension type "Key ID" (RFC 4563), which TS 33.246 uses for the MSK ID."""
KEY_ID_TYPE_MSK: Final = 1
"""Key ID type of an MSK (for BCAST: a SEK/PEK) — project's reading of RFC 4563."""
_MAC_LEN: Final = 20


@dataclass(frozen=True, slots=True)
class Ltkm:
    key_domain: bytes
    """3 bytes (MCC/MNC coded, EF_MSK of TS 31.102 §4.2.80)."""
    key_id: bytes
    """The SEK/PEK ID, 4 bytes: key group (2) || key number (2)."""
    key: bytes
    counter: int
    idi: bytes
    idr: bytes
    ack: bool = False

    def __post_init__(self) -> None:
        if len(self.key_domain) != 3 or len(self.key_id) != 4:
            raise ValueError("key domain is 3 bytes, SEK/PEK ID 4 bytes")
        if len(self.key) not in (16, 32) or not 0 <= self.counter <= 0xFFFFFFFF:
            raise ValueError("SEK/PEK is 16 or 32 bytes; the counter is 32 bits")

    @property
    def muk_id(self) -> bytes:
        return self.idi + b"\x00" + self.idr

    def __repr__(self) -> str:
        return (
            f"Ltkm(key_id={self.key_id.hex()}, key_domain={self.key_domain.hex()}, "
            f"counter={self.counter}, key=<secret>)"
        )


def _ext(key_domain: bytes, key_id: bytes) -> Payload:
    key = key_domain + key_id
    data = bytes([KEY_ID_TYPE_MSK]) + len(key).to_bytes(2) + key
    return Payload(PayloadType.GENERAL_EXT, {"ext_type": EXT_KEY_ID, "data": data})


def _ids(idi: bytes, idr: bytes) -> list[Payload]:
    return [
        Payload(PayloadType.ID, {"id_type": 1, "id_data": idi}),
        Payload(PayloadType.ID, {"id_type": 1, "id_data": idr}),
    ]


def build_ltkm(ltkm: Ltkm, smk: bytes) -> bytes:
    """The BSM side: one LTKM datagram for `ltkm`, protected with the SMK (MUK or TK)."""
    csb_id = int.from_bytes(ltkm.key_id)
    ts = ltkm.counter.to_bytes(4)
    keys = derive_psk_keys(smk, csb_id, b"")
    plain = encode_key_data(
        [KeyData(KeyDataType.TGK, ltkm.key, kv=KeyValidity.SPI, kv_data=(ltkm.key_id,))]
    )
    kemac = Payload(
        PayloadType.KEMAC,
        {
            "encr_alg": EncrAlg.AES_CM_128,
            "encr_data": aes_cm(keys.encr_key, keys.salt_key, csb_id, ts, plain),
            "mac_alg": MacAlg.HMAC_SHA1_160,
            "mac": bytes(_MAC_LEN),
        },
    )
    header = Header(DataType.PSK_INIT, csb_id, v=ltkm.ack, cs_map_type=CsIdMap.EMPTY)
    payloads = [
        _ext(ltkm.key_domain, ltkm.key_id),
        Payload(PayloadType.T, {"ts_type": TsType.COUNTER, "ts_value": ts}),
        *_ids(ltkm.idi, ltkm.idr),
        kemac,
    ]
    unsigned = encode(header, payloads)
    return unsigned[:-_MAC_LEN] + mac(keys.auth_key, unsigned[:-_MAC_LEN])


def _parts(message: Message) -> tuple[bytes, bytes, bytes, bytes, Payload]:
    """(key domain, key id, ts value, IDi, IDr, KEMAC) of an LTKM, or MikeyDecodeError."""
    ext, ts, kemac = (
        message.find(k) for k in (PayloadType.GENERAL_EXT, PayloadType.T, PayloadType.KEMAC)
    )
    ids = message.all(PayloadType.ID)
    if ext is None or ts is None or kemac is None or len(ids) != 2:
        raise MikeyDecodeError("an LTKM needs EXT, T, IDi, IDr and KEMAC")
    if message.payloads[-1] is not kemac:
        raise MikeyDecodeError("the KEMAC is not the last payload")
    data = ext.bytes("data")
    if ext.int("ext_type") != EXT_KEY_ID or len(data) != 10 or data[0] != KEY_ID_TYPE_MSK:
        raise MikeyDecodeError("EXT is not a Key ID of an MSK")
    if int.from_bytes(data[1:3]) != 7:
        raise MikeyDecodeError("Key ID length is not 7")
    if ts.int("ts_type") != TsType.COUNTER:
        raise MikeyDecodeError("the LTKM timestamp is not a COUNTER")
    return data[3:], ts.bytes("ts_value"), ids[0].bytes("id_data"), ids[1].bytes("id_data"), kemac


def peek(datagram: bytes) -> tuple[bytes, bytes, int]:
    """(Key Domain ID, SEK/PEK ID, counter) an LTKM names, unverified: what a terminal that
    hands the LTKM to the card (GBA_U) can tell of it. Raises a `MikeyError`."""
    domain_and_id, ts, _idi, _idr, _kemac = _parts(decode(datagram))
    return domain_and_id[:3], domain_and_id[3:], int.from_bytes(ts)


def open_ltkm(datagram: bytes, smk: bytes, guard: ReplayGuard, now: float) -> Ltkm:
    """The receiving side (terminal with GBA_ME, card with GBA_U): decode, verify the MAC with
    the SMK, check the counter against `guard` (per MUK ID), decrypt the SEK/PEK. The guard is
    updated only for a message that passes everything. Raises a `MikeyError`."""
    message = decode(datagram)
    if message.header.data_type is not DataType.PSK_INIT:
        raise MikeyDecodeError("not a pre-shared key message")
    domain_and_id, ts, idi, idr, kemac = _parts(message)
    if kemac.int("encr_alg") != EncrAlg.AES_CM_128 or kemac.int("mac_alg") != MacAlg.HMAC_SHA1_160:
        raise MikeyDecodeError("KEMAC algorithms other than AES-CM-128 / HMAC-SHA-1-160")
    csb_id = message.header.csb_id
    keys = derive_psk_keys(smk, csb_id, b"")
    expected = mac(keys.auth_key, datagram[:-_MAC_LEN])
    if not hmac.compare_digest(expected, kemac.bytes("mac")):
        raise MikeyAuthError("KEMAC MAC does not verify")
    muk_id = idi + b"\x00" + idr
    guard.check(muk_id, TsType.COUNTER, ts, now)
    plain = aes_cm(keys.encr_key, keys.salt_key, csb_id, ts, kemac.bytes("encr_data"))
    items = decode_key_data(plain)
    if len(items) != 1 or items[0].type is not KeyDataType.TGK:
        raise MikeyDecodeError("the KEMAC does not hold exactly one key")
    item = items[0]
    key_id = domain_and_id[3:]
    if item.kv is not KeyValidity.SPI or item.kv_data != (key_id,):
        raise MikeyDecodeError("the key's SPI is not the SEK/PEK ID")
    if csb_id != int.from_bytes(key_id):
        raise MikeyDecodeError("CSB ID is not the SEK/PEK ID")
    try:
        ltkm = Ltkm(
            domain_and_id[:3], key_id, item.key, int.from_bytes(ts), idi, idr, message.header.v
        )
    except ValueError as exc:
        raise MikeyDecodeError(str(exc)) from None
    guard.accept(muk_id, TsType.COUNTER, ts, now)
    return ltkm


def _verification_input(unsigned: bytes, ltkm: Ltkm) -> bytes:
    # RFC 3830 §5.2: the verification MAC covers the message and the initiator's IDi, IDr and
    # timestamp (project's reading of the exact concatenation).
    return unsigned + ltkm.idi + ltkm.idr + ltkm.counter.to_bytes(4)


def build_verification(ltkm: Ltkm, smk: bytes) -> bytes:
    """The acknowledgement of an LTKM that asked for one (V bit)."""
    csb_id = int.from_bytes(ltkm.key_id)
    keys = derive_psk_keys(smk, csb_id, b"")
    header = Header(DataType.PSK_VERIFY, csb_id, cs_map_type=CsIdMap.EMPTY)
    payloads = [
        Payload(PayloadType.T, {"ts_type": TsType.COUNTER, "ts_value": ltkm.counter.to_bytes(4)}),
        *_ids(ltkm.idi, ltkm.idr),
        Payload(PayloadType.V, {"auth_alg": MacAlg.HMAC_SHA1_160, "mac": bytes(_MAC_LEN)}),
    ]
    unsigned = encode(header, payloads)[:-_MAC_LEN]
    return unsigned + mac(keys.auth_key, _verification_input(unsigned, ltkm))


def check_verification(datagram: bytes, ltkm: Ltkm, smk: bytes) -> None:
    """The BSM side: the acknowledgement matches the LTKM it sent and its MAC verifies."""
    message = decode(datagram)
    v = message.find(PayloadType.V)
    ts = message.find(PayloadType.T)
    if message.header.data_type is not DataType.PSK_VERIFY or v is None or ts is None:
        raise MikeyDecodeError("not a verification message")
    if message.payloads[-1] is not v or v.int("auth_alg") != MacAlg.HMAC_SHA1_160:
        raise MikeyDecodeError("V is not last or not HMAC-SHA-1-160")
    if message.header.csb_id != int.from_bytes(ltkm.key_id) or ts.bytes(
        "ts_value"
    ) != ltkm.counter.to_bytes(4):
        raise MikeyAuthError("verification for another LTKM")
    keys = derive_psk_keys(smk, message.header.csb_id, b"")
    unsigned = datagram[:-_MAC_LEN]
    if not hmac.compare_digest(
        mac(keys.auth_key, _verification_input(unsigned, ltkm)), v.bytes("mac")
    ):
        raise MikeyAuthError("V payload MAC does not verify")
