"""The USIM's MBMS security context for the BCAST smartcard profile with GBA_U, sans-IO: the
card verifies an LTKM (a TS 33.246 MSK message over MIKEY, `openscws.bcast.ltkm`) with its
Ks_int_NAF, the MUK, which never leaves it, and keeps the SEK/PEK; the terminal only sees the
identifiers in EF_MSK and EF_MUK (TS 31.102 §4.2.80, §4.2.81).

AUTHENTICATE P2 85 (MBMS security context, TS 31.102 §7.1.2.5). The data coding below is the
project's reading (the clause's tables were not read in a public copy here):

    MSK update    data: 01 || LTKM      ->  DB L <verification message>  (L = 0: none asked)
    unknown MUK   (no Ks_int_NAF for NAF_Id = IDi || 01 00 00 00 01 with B-TID = IDr): 6A 88
    MAC wrong     98 62          counter not above the MUK's last one: 98 65
    malformed     6A 80

The MUK is found by the LTKM's IDi (the BSM's FQDN, so NAF_Id = IDi || the MBMS Ua id) and
IDr (the B-TID under which the card derived that Ks_int_NAF: EF_GBANL). The time stamp
counter is kept per MUK (EF_MUK) and per SEK/PEK (EF_MSK).

EF_MUK (6FD8), one record per MUK: A0 L {80 L Idr, 82 L Idi} 81 04 counter, padded with FF.
EF_MSK (6FD7), one record per Key Domain ID and Key Group: Key Domain ID (3), number of
entries (1), then per entry MSK ID (4) and its counter (4); two entries, padded with FF."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from openscws.apdu.status import SW
from openscws.bcast.ltkm import build_verification, open_ltkm
from openscws.bcast.mikey import MikeyAuthError, MikeyError, MikeyReplayError, ReplayGuard, decode
from openscws.bcast.mikey import PayloadType as _PT
from openscws.errors import ApduError
from openscws.gba.kdf import UA_MBMS

__all__ = [
    "EF_MSK",
    "EF_MUK",
    "MODE_MSK_UPDATE",
    "MSK_RECORD",
    "MUK_RECORD",
    "MbmsState",
    "msk_update",
]

EF_MSK: Final = 0x6FD7
EF_MUK: Final = 0x6FD8
MSK_RECORD: Final = 8 * 2 + 4
MUK_RECORD: Final = 255
MODE_MSK_UPDATE: Final = 0x01
SW_KEY_FRESHNESS: Final = 0x9865
"""Key freshness failure (project's reading of TS 31.102 §7.3 for the MBMS context)."""


@dataclass
class MbmsState:
    """MUK counters by (Idi, Idr); SEK/PEKs by (Key Domain ID, SEK/PEK ID) with their counter."""

    muks: dict[tuple[bytes, bytes], int] = field(default_factory=dict)
    msks: dict[tuple[bytes, bytes], tuple[int, bytes]] = field(default_factory=dict, repr=False)

    def ef_muk(self) -> bytes:
        records = []
        for (idi, idr), counter in self.muks.items():
            ids = bytes((0x80, len(idr))) + idr + bytes((0x82, len(idi))) + idi
            records.append(
                (bytes((0xA0, len(ids))) + ids + b"\x81\x04" + counter.to_bytes(4)).ljust(
                    MUK_RECORD, b"\xff"
                )
            )
        return b"".join(records) or b"\xff" * MUK_RECORD

    def ef_msk(self) -> bytes:
        groups: dict[tuple[bytes, bytes], list[tuple[bytes, int]]] = {}
        for (domain, key_id), (counter, _key) in sorted(self.msks.items()):
            groups.setdefault((domain, key_id[:2]), []).append((key_id, counter))
        records = []
        for (domain, _group), entries in groups.items():
            body = b"".join(k + c.to_bytes(4) for k, c in entries[-2:])
            records.append((domain + bytes((len(entries[-2:]),)) + body).ljust(MSK_RECORD, b"\xff"))
        return b"".join(records) or b"\xff" * MSK_RECORD

    def msk(self, key_domain: bytes, key_id: bytes) -> bytes | None:
        """The SEK/PEK itself: for the card's own use, never sent to the terminal."""
        entry = self.msks.get((key_domain, key_id))
        return None if entry is None else entry[1]

    def to_json(self) -> bytes:
        return json.dumps({
            "muks": [[i.hex(), r.hex(), c] for (i, r), c in self.muks.items()],
            "msks": [[d.hex(), k.hex(), c, v.hex()] for (d, k), (c, v) in self.msks.items()],
        }).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> MbmsState:
        doc = json.loads(raw)
        return cls(
            muks={(bytes.fromhex(i), bytes.fromhex(r)): int(c) for i, r, c in doc["muks"]},
            msks={
                (bytes.fromhex(d), bytes.fromhex(k)): (int(c), bytes.fromhex(v))
                for d, k, c, v in doc["msks"]
            },
        )


def msk_update(naf_keys: list[tuple[bytes, bytes, bytes]], state: MbmsState, data: bytes) -> bytes:
    """AUTHENTICATE data in the MBMS context; `naf_keys` are the card's (NAF_Id, B-TID,
    Ks_int_NAF). Updates `state` only when everything checks; returns the response data."""
    if len(data) < 2 or data[0] != MODE_MSK_UPDATE:
        raise ApduError(SW.WRONG_DATA, "MBMS context: 01 (MSK update) and a MIKEY message")
    ltkm_bytes = data[1:]
    try:
        ids = decode(ltkm_bytes).all(_PT.ID)
    except MikeyError:
        raise ApduError(SW.WRONG_DATA, "not a MIKEY message") from None
    if len(ids) != 2:
        raise ApduError(SW.WRONG_DATA, "the LTKM has no IDi and IDr")
    idi, idr = ids[0].bytes("id_data"), ids[1].bytes("id_data")
    muk = next(
        (key for naf_id, btid, key in naf_keys if naf_id == idi + UA_MBMS and btid == idr), None
    )
    if muk is None:
        raise ApduError(SW.REFERENCED_DATA_NOT_FOUND, "no MUK for this BSM and B-TID")
    guard = ReplayGuard()
    last = state.muks.get((idi, idr))
    if last is not None:
        guard.counters[idi + b"\x00" + idr] = last
    try:
        ltkm = open_ltkm(ltkm_bytes, muk, guard, 0.0)
    except MikeyAuthError:
        raise ApduError(SW.AUTHENTICATION_MAC_FAILURE, "LTKM MAC does not check") from None
    except MikeyReplayError:
        raise ApduError(SW_KEY_FRESHNESS, "LTKM counter is not fresh") from None
    except MikeyError as exc:
        raise ApduError(SW.WRONG_DATA, exc.reason) from None
    state.muks[(idi, idr)] = ltkm.counter
    state.msks[(ltkm.key_domain, ltkm.key_id)] = (ltkm.counter, ltkm.key)
    ack = build_verification(ltkm, muk) if ltkm.ack else b""
    return b"\xdb" + _ber_length(len(ack)) + ack


def _ber_length(n: int) -> bytes:
    """ISO/IEC 8825-1 definite length: one byte below 128, else 81 L or 82 LL."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    return b"\x82" + n.to_bytes(2)
