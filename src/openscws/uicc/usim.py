"""The USIM application (3GPP TS 31.102), as far as authentication goes: its ADF (selected by
the AID that EF_DIR lists), EF_IMSI, and AUTHENTICATE (§7.1.2) with MILENAGE
(`openscws.aka`), in the 3G and GSM security contexts. It is the card's end of UMTS AKA, and
so of GBA bootstrapping (TS 33.220), which the BCAST smartcard profile keys its requests with.

AUTHENTICATE (CLA 00, INS 88, P1 00):

    P2 81 (3G context)   data: 10 RAND 10 AUTN
      success            DB 08 RES 10 CK 10 IK 08 Kc      (Kc: c3, the GSM access service)
      SQN not fresh      DC 0E AUTS
      MAC-A wrong        SW 98 62, no data
    P2 80 (GSM context)  data: 10 RAND  ->  04 SRES 08 Kc  (MILENAGE through c2 and c3)

The SQN state is saved (atomically, in the card's secure area) before the answer leaves the
card: a crash after an answer never lets the same AUTN be accepted twice. The keys and state
live in the secure area as `usim.json` {"imsi", "k", "opc", "ind_bits"} and `usim-sqn.json`
{"seqs": [...]}; none of them is ever logged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from openscws.aka.milenage import Milenage
from openscws.aka.vector import (
    MacFailure,
    SqnState,
    SyncFailure,
    check_autn,
    kc_of,
    sres_of,
)
from openscws.apdu.status import SW
from openscws.errors import ApduError, ConfigError
from openscws.uicc.keystore import SecretStore

__all__ = [
    "EF_IMSI",
    "USIM_AID",
    "UsimApp",
    "UsimKeys",
    "UsimSecrets",
    "encode_imsi",
]

USIM_AID: Final = bytes.fromhex("A0000000871002FFFFFFFF8907090000")
"""The USIM's AID as EF_DIR lists it (RID A000000087, 3GPP; PIX 1002 = USIM, TS 101 220)."""
EF_IMSI: Final = 0x6F07
INS_AUTHENTICATE: Final = 0x88
P2_GSM: Final = 0x80
P2_3G: Final = 0x81
TAG_SUCCESS: Final = 0xDB
TAG_SYNC_FAILURE: Final = 0xDC
KEYS_FILE: Final = "usim.json"
SQN_FILE: Final = "usim-sqn.json"


def encode_imsi(imsi: str) -> bytes:
    """EF_IMSI (TS 31.102 §4.2.2): length, then "001" + parity and the digits as BCD."""
    if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
        raise ConfigError(f"an IMSI is 6 to 15 digits, not {imsi!r}")
    parity = 0x9 if len(imsi) % 2 else 0x1  # identity type 001, bit 4: odd number of digits
    nibbles = [parity, *(int(d) for d in imsi)]
    if len(nibbles) % 2:
        nibbles.append(0xF)
    body = bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))
    return bytes((len(body),)) + body.ljust(8, b"\xff")


@dataclass(frozen=True, slots=True)
class UsimKeys:
    """The subscription: IMSI, MILENAGE K and OPc, and the SQN's IND length."""

    imsi: str
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    ind_bits: int = 5

    def __post_init__(self) -> None:
        encode_imsi(self.imsi)
        if len(self.k) != 16 or len(self.opc) != 16:
            raise ConfigError("K and OPc are 16 bytes each")
        if not 0 <= self.ind_bits <= 10:
            raise ConfigError("IND is 0 to 10 bits")


class UsimSecrets:
    """The USIM's keys and SQN state in the card's secure area."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store

    def keys(self) -> UsimKeys | None:
        raw = self.store.get_secret(KEYS_FILE)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return UsimKeys(
                imsi=str(doc["imsi"]),
                k=bytes.fromhex(doc["k"]),
                opc=bytes.fromhex(doc["opc"]),
                ind_bits=int(doc.get("ind_bits", 5)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{KEYS_FILE} is damaged: {exc!r}") from None

    def set_keys(self, keys: UsimKeys, *, sqn: SqnState | None = None) -> None:
        """Stores a subscription, with a fresh SQN state (or `sqn`)."""
        doc: dict[str, object] = {
            "imsi": keys.imsi,
            "k": keys.k.hex(),
            "opc": keys.opc.hex(),
            "ind_bits": keys.ind_bits,
        }
        self.save_sqn(sqn or SqnState(keys.ind_bits))
        self.store.set_secret(KEYS_FILE, json.dumps(doc).encode())

    def remove(self) -> bool:
        removed = self.store.delete_secret(KEYS_FILE)
        self.store.delete_secret(SQN_FILE)
        return removed

    def sqn(self, ind_bits: int) -> SqnState:
        raw = self.store.get_secret(SQN_FILE)
        if raw is None:
            return SqnState(ind_bits)
        try:
            seqs = [int(s) for s in json.loads(raw)["seqs"]]
            return SqnState(ind_bits, seqs)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{SQN_FILE} is damaged: {exc!r}") from None

    def save_sqn(self, state: SqnState) -> None:
        self.store.set_secret(SQN_FILE, json.dumps({"seqs": state.seqs}).encode())


class UsimApp:
    """AUTHENTICATE for one subscription. `persist(state)` stores the SQN state; it runs
    before the answer is returned."""

    def __init__(self, keys: UsimKeys, sqn: SqnState, persist: Callable[[SqnState], None]) -> None:
        self.imsi = keys.imsi
        self._milenage = Milenage(keys.k, keys.opc)
        self._sqn = sqn
        self._persist = persist

    @classmethod
    def from_secrets(cls, secrets: UsimSecrets) -> UsimApp | None:
        keys = secrets.keys()
        if keys is None:
            return None
        return cls(keys, secrets.sqn(keys.ind_bits), secrets.save_sqn)

    @property
    def sqn_ms(self) -> int:
        return self._sqn.sqn_ms

    def ef_imsi(self) -> bytes:
        return encode_imsi(self.imsi)

    def authenticate(self, p1: int, p2: int, data: bytes) -> bytes:
        """The response data of AUTHENTICATE; ApduError for a refusal (its status word)."""
        if p1 != 0:
            raise ApduError(SW.INCORRECT_P1P2, f"AUTHENTICATE P1 {p1:02X}")
        if p2 == P2_3G:
            rand, autn = _lv_pair(data)
            answer = check_autn(self._milenage, self._sqn, rand, autn)
            if isinstance(answer, MacFailure):
                raise ApduError(SW.AUTHENTICATION_MAC_FAILURE, "AUTN: MAC-A does not check")
            if isinstance(answer, SyncFailure):
                return bytes((TAG_SYNC_FAILURE, len(answer.auts))) + answer.auts
            self._persist(self._sqn)
            kc = kc_of(answer.ck, answer.ik)
            return bytes((TAG_SUCCESS,)) + b"".join(
                bytes((len(v),)) + v for v in (answer.res, answer.ck, answer.ik, kc)
            )
        if p2 == P2_GSM:
            if len(data) != 17 or data[0] != 16:
                raise ApduError(SW.WRONG_LENGTH, "GSM context: 10 RAND")
            out = self._milenage.f2345(data[1:])
            sres, kc = sres_of(out.res), kc_of(out.ck, out.ik)
            return bytes((len(sres),)) + sres + bytes((len(kc),)) + kc
        raise ApduError(SW.INCORRECT_P1P2, f"AUTHENTICATE P2 {p2:02X} (3G 81 and GSM 80 only)")


def _lv_pair(data: bytes) -> tuple[bytes, bytes]:
    """L RAND L AUTN, each 16 bytes (TS 31.102 §7.1.2.1)."""
    if len(data) != 34 or data[0] != 16 or data[17] != 16:
        raise ApduError(SW.WRONG_LENGTH, "3G context: 10 RAND 10 AUTN")
    return data[1:17], data[18:34]
