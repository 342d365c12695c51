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
    P2 85 (MBMS context, BCAST smartcard profile with GBA_U): see openscws.uicc.mbms; the
                         LTKM is verified with Ks_int_NAF and its SEK/PEK kept in the card,
                         EF_MSK (6FD7) and EF_MUK (6FD8) list their identifiers
    P2 84 (GBA context, GBA_U, TS 31.102 §7.1.2.4 and TS 33.220 §5):
      bootstrapping      data: DD 10 RAND 10 AUTN  ->  DB 08 RES (or DC 0E AUTS, 98 62);
                         the USIM keeps Ks = CK || IK and puts RAND in EF_GBABP, where the
                         terminal then writes the B-TID and key lifetime (UPDATE BINARY)
      NAF derivation     data: DE L NAF_Id L IMPI  ->  DB 20 Ks_ext_NAF; Ks_int_NAF stays
                         in the USIM, its NAF_Id and B-TID listed in EF_GBANL
    any other P2         SW 98 64 (security context not supported)

EF_GBABP (6FD6): LV(RAND) LV(B-TID) LV(key lifetime). EF_GBANL (6FDA): a record per NAF key,
80 NAF_Id 81 B-TID.

The SQN state is saved (atomically, in the card's secure area) before the answer leaves the
card: a crash after an answer never lets the same AUTN be accepted twice. The keys and state
live in the secure area as `usim.json` {"imsi", "k", "opc", "ind_bits"}, `usim-sqn.json`
{"seqs": [...]} and `usim-gba.json` {"rand", "ks", "btid", "lifetime", "naf": [{"naf_id",
"btid", "ks_int"}]}; none of them is ever logged."""

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
    UsimAnswer,
    check_autn,
    kc_of,
    sres_of,
)
from openscws.apdu.status import SW
from openscws.errors import ApduError, ConfigError
from openscws.gba.kdf import ks_int_naf, ks_naf
from openscws.uicc.keystore import SecretStore
from openscws.uicc.mbms import EF_MSK, EF_MUK, MSK_RECORD, MUK_RECORD, MbmsState, msk_update

__all__ = [
    "EF_GBABP",
    "EF_GBANL",
    "EF_IMSI",
    "USIM_AID",
    "GbaState",
    "UsimApp",
    "UsimKeys",
    "UsimSecrets",
    "encode_imsi",
]

USIM_AID: Final = bytes.fromhex("A0000000871002FFFFFFFF8907090000")
"""The USIM's AID as EF_DIR lists it (RID A000000087, 3GPP; PIX 1002 = USIM, TS 101 220)."""
EF_IMSI: Final = 0x6F07
EF_GBABP: Final = 0x6FD6
EF_GBANL: Final = 0x6FDA
GBANL_RECORD: Final = 255
"""EF_GBANL's record size here (a NAF_Id TLV and a B-TID TLV, padded with FF)."""
GBABP_SIZE: Final = 1 + 16 + 1 + 255 + 1 + 64
"""EF_GBABP's size: LV(RAND), room for LV(B-TID) and LV(key lifetime)."""
P2_GSM: Final = 0x80
P2_3G: Final = 0x81
P2_GBA: Final = 0x84
P2_MBMS: Final = 0x85
TAG_SUCCESS: Final = 0xDB
TAG_SYNC_FAILURE: Final = 0xDC
TAG_GBA_BOOTSTRAP: Final = 0xDD
TAG_GBA_NAF: Final = 0xDE
KEYS_FILE: Final = "usim.json"
SQN_FILE: Final = "usim-sqn.json"
GBA_FILE: Final = "usim-gba.json"
MBMS_FILE: Final = "usim-mbms.json"


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


@dataclass
class GbaState:
    """GBA_U in the USIM: the bootstrapped Ks with its RAND, what the terminal wrote into
    EF_GBABP, and the Ks_int_NAF keys derived since (each with its NAF_Id and B-TID)."""

    rand: bytes = b""
    ks: bytes = field(default=b"", repr=False)
    btid: bytes = b""
    lifetime: bytes = b""
    naf: list[tuple[bytes, bytes, bytes]] = field(default_factory=list, repr=False)
    """(NAF_Id, B-TID, Ks_int_NAF)."""

    def ef_gbabp(self) -> bytes:
        if not self.rand:
            return b"\xff" * GBABP_SIZE
        lv = b"".join(bytes((len(v),)) + v for v in (self.rand, self.btid, self.lifetime))
        return lv.ljust(GBABP_SIZE, b"\xff")

    def ef_gbanl(self) -> bytes:
        records = [
            bytes((0x80, len(naf_id))) + naf_id + bytes((0x81, len(btid))) + btid
            for naf_id, btid, _ in self.naf
        ]
        empty = b"\xff" * GBANL_RECORD
        return b"".join(r.ljust(GBANL_RECORD, b"\xff") for r in records) or empty

    def to_json(self) -> bytes:
        naf = [{"naf_id": n.hex(), "btid": b.hex(), "ks_int": k.hex()} for n, b, k in self.naf]
        doc = {
            "rand": self.rand.hex(),
            "ks": self.ks.hex(),
            "btid": self.btid.hex(),
            "lifetime": self.lifetime.hex(),
            "naf": naf,
        }
        return json.dumps(doc).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> GbaState:
        doc = json.loads(raw)
        return cls(
            rand=bytes.fromhex(doc["rand"]),
            ks=bytes.fromhex(doc["ks"]),
            btid=bytes.fromhex(doc["btid"]),
            lifetime=bytes.fromhex(doc["lifetime"]),
            naf=[
                (bytes.fromhex(e["naf_id"]), bytes.fromhex(e["btid"]), bytes.fromhex(e["ks_int"]))
                for e in doc["naf"]
            ],
        )


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
        """Stores a subscription, with a fresh SQN state (or `sqn`) and no GBA keys."""
        self.store.delete_secret(GBA_FILE)
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
        self.store.delete_secret(GBA_FILE)
        return removed

    def gba(self) -> GbaState:
        raw = self.store.get_secret(GBA_FILE)
        if raw is None:
            return GbaState()
        try:
            return GbaState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{GBA_FILE} is damaged: {exc!r}") from None

    def save_gba(self, state: GbaState) -> None:
        self.store.set_secret(GBA_FILE, state.to_json())

    def mbms(self) -> MbmsState:
        raw = self.store.get_secret(MBMS_FILE)
        if raw is None:
            return MbmsState()
        try:
            return MbmsState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{MBMS_FILE} is damaged: {exc!r}") from None

    def save_mbms(self, state: MbmsState) -> None:
        self.store.set_secret(MBMS_FILE, state.to_json())

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

    def __init__(
        self,
        keys: UsimKeys,
        sqn: SqnState,
        persist: Callable[[SqnState], None],
        *,
        gba: GbaState | None = None,
        persist_gba: Callable[[GbaState], None] | None = None,
        mbms: MbmsState | None = None,
        persist_mbms: Callable[[MbmsState], None] | None = None,
    ) -> None:
        self.imsi = keys.imsi
        self._milenage = Milenage(keys.k, keys.opc)
        self._sqn = sqn
        self._persist = persist
        self.gba = gba or GbaState()
        self._persist_gba = persist_gba or _keep
        self.mbms = mbms or MbmsState()
        self._persist_mbms = persist_mbms or _keep_mbms

    @classmethod
    def from_secrets(cls, secrets: UsimSecrets) -> UsimApp | None:
        keys = secrets.keys()
        if keys is None:
            return None
        return cls(
            keys,
            secrets.sqn(keys.ind_bits),
            secrets.save_sqn,
            gba=secrets.gba(),
            persist_gba=secrets.save_gba,
            mbms=secrets.mbms(),
            persist_mbms=secrets.save_mbms,
        )

    def file(self, fid: int) -> tuple[bytes, int] | None:
        """(content, record length; 0 for transparent) of an EF of the ADF, or None."""
        if fid == EF_IMSI:
            return encode_imsi(self.imsi), 0
        if fid == EF_GBABP:
            return self.gba.ef_gbabp(), 0
        if fid == EF_GBANL:
            return self.gba.ef_gbanl(), GBANL_RECORD
        if fid == EF_MSK:
            return self.mbms.ef_msk(), MSK_RECORD
        if fid == EF_MUK:
            return self.mbms.ef_muk(), MUK_RECORD
        return None

    def update_binary(self, fid: int, offset: int, data: bytes) -> None:
        """UPDATE BINARY: only EF_GBABP is the terminal's to write (B-TID, key lifetime after
        a bootstrap); the RAND in it stays the USIM's."""
        if fid != EF_GBABP:
            raise ApduError(SW.SECURITY_STATUS_NOT_SATISFIED, f"EF {fid:04X} is read-only")
        current = self.gba.ef_gbabp()
        if not self.gba.rand or offset < 1 + len(self.gba.rand):
            raise ApduError(SW.SECURITY_STATUS_NOT_SATISFIED, "EF_GBABP's RAND is the USIM's")
        if offset + len(data) > len(current):
            raise ApduError(SW.WRONG_LENGTH, "beyond the end of EF_GBABP")
        content = current[:offset] + data + current[offset + len(data) :]
        try:
            _, rest = _lv(content)
            btid, rest = _lv(rest)
            lifetime, _ = _lv(rest)
        except ValueError:
            raise ApduError(
                SW.WRONG_DATA, "EF_GBABP must stay LV(RAND) LV(B-TID) LV(lifetime)"
            ) from None
        self.gba.btid, self.gba.lifetime = btid, lifetime
        self._persist_gba(self.gba)

    @property
    def sqn_ms(self) -> int:
        return self._sqn.sqn_ms

    def authenticate(self, p1: int, p2: int, data: bytes) -> bytes:
        """The response data of AUTHENTICATE; ApduError for a refusal (its status word)."""
        if p1 != 0:
            raise ApduError(SW.INCORRECT_P1P2, f"AUTHENTICATE P1 {p1:02X}")
        if p2 == P2_3G:
            rand, autn = _lv_pair(data)
            answer = self._aka(rand, autn)
            if isinstance(answer, bytes):
                return answer
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
        if p2 == P2_GBA and data[:1] == bytes((TAG_GBA_BOOTSTRAP,)):
            return self._gba_bootstrap(data[1:])
        if p2 == P2_GBA and data[:1] == bytes((TAG_GBA_NAF,)):
            return self._gba_naf(data[1:])
        if p2 == P2_GBA:
            raise ApduError(SW.WRONG_DATA, "GBA context: DD (bootstrapping) or DE (NAF)")
        if p2 == P2_MBMS:
            state = MbmsState.from_json(self.mbms.to_json())
            answer = msk_update(self.gba.naf, state, data)
            self._persist_mbms(state)
            self.mbms = state
            return answer
        raise ApduError(
            SW.SECURITY_CONTEXT_NOT_SUPPORTED, f"AUTHENTICATE P2 {p2:02X}: GSM, 3G, GBA, MBMS"
        )

    def _aka(self, rand: bytes, autn: bytes) -> UsimAnswer | bytes:
        """The AUTN check of the 3G and GBA contexts: the answer, or the DC AUTS response
        data of a sync failure; a MAC failure is SW 98 62."""
        answer = check_autn(self._milenage, self._sqn, rand, autn)
        if isinstance(answer, MacFailure):
            raise ApduError(SW.AUTHENTICATION_MAC_FAILURE, "AUTN: MAC-A does not check")
        if isinstance(answer, SyncFailure):
            return bytes((TAG_SYNC_FAILURE, len(answer.auts))) + answer.auts
        return answer

    def _gba_bootstrap(self, data: bytes) -> bytes:
        rand, autn = _lv_pair(data)
        answer = self._aka(rand, autn)
        if isinstance(answer, bytes):
            return answer
        # A new Ks: the old B-TID and NAF keys go with the old one (TS 33.220 §4.5.2).
        self.gba = GbaState(rand=rand, ks=answer.ck + answer.ik)
        self._persist(self._sqn)
        self._persist_gba(self.gba)
        return bytes((TAG_SUCCESS, len(answer.res))) + answer.res

    def _gba_naf(self, data: bytes) -> bytes:
        try:
            naf_id, rest = _lv(data)
            impi, rest = _lv(rest)
        except ValueError:
            raise ApduError(SW.WRONG_LENGTH, "NAF derivation: L NAF_Id L IMPI") from None
        if rest or len(naf_id) < 6 or not impi:
            raise ApduError(SW.WRONG_DATA, "NAF derivation: NAF FQDN || Ua id, and an IMPI")
        gba = self.gba
        if not gba.ks or not gba.btid:
            raise ApduError(
                SW.CONDITIONS_NOT_SATISFIED, "no bootstrapped Ks with a B-TID in EF_GBABP"
            )
        ext = ks_naf(gba.ks, gba.rand, impi, naf_id)
        internal = ks_int_naf(gba.ks, gba.rand, impi, naf_id)
        gba.naf = [e for e in gba.naf if e[0] != naf_id] + [(naf_id, gba.btid, internal)]
        self._persist_gba(gba)
        return bytes((TAG_SUCCESS, len(ext))) + ext

    def ks_int_naf(self, naf_id: bytes) -> bytes | None:
        """The Ks_int_NAF kept for `naf_id` (for the USIM's own MBMS use, never sent out)."""
        for n, _, key in self.gba.naf:
            if n == naf_id:
                return key
        return None


def _keep(state: GbaState) -> None:
    pass


def _keep_mbms(state: MbmsState) -> None:
    pass


def _lv(data: bytes) -> tuple[bytes, bytes]:
    """One length-value field and what follows it."""
    if not data or len(data) < 1 + data[0]:
        raise ValueError("truncated LV")
    return data[1 : 1 + data[0]], data[1 + data[0] :]


def _lv_pair(data: bytes) -> tuple[bytes, bytes]:
    """L RAND L AUTN, each 16 bytes (TS 31.102 §7.1.2.1)."""
    if len(data) != 34 or data[0] != 16 or data[17] != 16:
        raise ApduError(SW.WRONG_LENGTH, "3G context: 10 RAND 10 AUTN")
    return data[1:17], data[18:34]
