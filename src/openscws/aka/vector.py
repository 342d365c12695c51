"""UMTS authentication and key agreement (3GPP TS 33.102 §6.3), both ends, over `Milenage`:

* the network (HSS/AuC, or a BSF standing in for one) makes an authentication vector
  (RAND, XRES, CK, IK, AUTN) from the subscriber's next SQN;
* the USIM checks AUTN: MAC-A must match (else "MAC failure"), and SQN must be fresh (else a
  resynchronisation token AUTS = (SQN_MS xor AK*) || MAC-S); then it answers RES, CK, IK;
* on AUTS the network recovers SQN_MS (checking MAC-S, computed with AMF 0000) and starts over
  above it.

SQN freshness follows TS 33.102 Annex C.2/C.3: SQN = SEQ || IND (IND the low `ind_bits`, 5 by
default), one SEQ kept per IND value; a SQN is fresh when its SEQ is above the one stored for
its IND and not more than DELTA (2^28) above the highest SEQ accepted so far.

The GSM conversion functions (TS 33.102 §6.8.1.2) give SRES and Kc for a 2G context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from openscws.aka.milenage import Milenage, xor

__all__ = [
    "AMF_RESYNC",
    "AuthVector",
    "MacFailure",
    "SqnState",
    "SyncFailure",
    "UsimAnswer",
    "check_autn",
    "kc_of",
    "make_vector",
    "resync_sqn",
    "sres_of",
]

AMF_RESYNC: Final = bytes(2)
"""The AMF f1* takes in a resynchronisation (TS 33.102 §6.3.5: "dummy value of all zeros")."""
DELTA: Final = 1 << 28
"""Annex C.2.2: how far above the highest accepted SEQ a new one may be."""


@dataclass(frozen=True, slots=True)
class AuthVector:
    """A quintet (TS 33.102 §6.3.2)."""

    rand: bytes
    xres: bytes
    ck: bytes = field(repr=False)
    ik: bytes = field(repr=False)
    autn: bytes


def make_vector(milenage: Milenage, rand: bytes, sqn: int, amf: bytes) -> AuthVector:
    """The vector for challenge `rand` at sequence number `sqn` (48 bits)."""
    if not 0 <= sqn < 1 << 48:
        raise ValueError("SQN is 48 bits")
    sqn_bytes = sqn.to_bytes(6, "big")
    mac_a, _ = milenage.f1(rand, sqn_bytes, amf)
    out = milenage.f2345(rand)
    autn = xor(sqn_bytes, out.ak) + amf + mac_a
    return AuthVector(rand=rand, xres=out.res, ck=out.ck, ik=out.ik, autn=autn)


@dataclass
class SqnState:
    """The USIM's SQN bookkeeping (Annex C.2): SEQ per IND value, and the highest SEQ."""

    ind_bits: int = 5
    seqs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.ind_bits <= 10:
            raise ValueError("IND is 0..10 bits")
        size = 1 << self.ind_bits
        if not self.seqs:
            self.seqs = [0] * size
        elif len(self.seqs) != size:
            raise ValueError(f"{size} SEQ values for {self.ind_bits} IND bits")

    @property
    def sqn_ms(self) -> int:
        """The highest SQN accepted so far (SEQ_MS || its IND), as AUTS reports it."""
        highest = max(self.seqs)
        ind = self.seqs.index(highest)
        return (highest << self.ind_bits) | ind

    def fresh(self, sqn: int) -> bool:
        seq, ind = sqn >> self.ind_bits, sqn & ((1 << self.ind_bits) - 1)
        return seq > self.seqs[ind] and seq - max(self.seqs) <= DELTA

    def accept(self, sqn: int) -> None:
        self.seqs[sqn & ((1 << self.ind_bits) - 1)] = sqn >> self.ind_bits


@dataclass(frozen=True, slots=True)
class UsimAnswer:
    """A successful AUTHENTICATE: what the USIM returns in a 3G context."""

    res: bytes
    ck: bytes = field(repr=False)
    ik: bytes = field(repr=False)
    sqn: int
    """The SQN taken from AUTN (stored as accepted)."""


@dataclass(frozen=True, slots=True)
class SyncFailure:
    """SQN not fresh: AUTS for the network to resynchronise with."""

    auts: bytes


@dataclass(frozen=True, slots=True)
class MacFailure:
    """AUTN was not made with this subscriber's key: the network is not authenticated."""


def check_autn(
    milenage: Milenage, state: SqnState, rand: bytes, autn: bytes
) -> UsimAnswer | SyncFailure | MacFailure:
    """The USIM's side of one AKA run (TS 33.102 §6.3.3). Updates `state` only on success."""
    if len(autn) != 16:
        raise ValueError("AUTN is 16 bytes")
    out = milenage.f2345(rand)
    sqn_bytes = xor(autn[:6], out.ak)
    amf, mac = autn[6:8], autn[8:]
    xmac, _ = milenage.f1(rand, sqn_bytes, amf)
    if xmac != mac:
        return MacFailure()
    sqn = int.from_bytes(sqn_bytes, "big")
    if not state.fresh(sqn):
        sqn_ms = state.sqn_ms.to_bytes(6, "big")
        _, mac_s = milenage.f1(rand, sqn_ms, AMF_RESYNC)
        return SyncFailure(xor(sqn_ms, out.ak_star) + mac_s)
    state.accept(sqn)
    return UsimAnswer(res=out.res, ck=out.ck, ik=out.ik, sqn=sqn)


def resync_sqn(milenage: Milenage, rand: bytes, auts: bytes) -> int | None:
    """The network's side of a resynchronisation: SQN_MS from AUTS, or None when MAC-S does
    not check (the AUTS was not made by this subscriber's USIM for this RAND)."""
    if len(auts) != 14:
        raise ValueError("AUTS is 14 bytes")
    ak_star = milenage.f2345(rand).ak_star
    sqn_ms = xor(auts[:6], ak_star)
    _, mac_s = milenage.f1(rand, sqn_ms, AMF_RESYNC)
    return int.from_bytes(sqn_ms, "big") if mac_s == auts[6:] else None


def sres_of(res: bytes) -> bytes:
    """c2: SRES = XRES1 xor XRES2 xor XRES3 xor XRES4 (32-bit parts, XRES zero-padded)."""
    padded = res.ljust(16, b"\0")
    out = bytes(4)
    for i in range(0, 16, 4):
        out = xor(out, padded[i : i + 4])
    return out


def kc_of(ck: bytes, ik: bytes) -> bytes:
    """c3: Kc = CK1 xor CK2 xor IK1 xor IK2 (64-bit halves)."""
    return xor(xor(ck[:8], ck[8:]), xor(ik[:8], ik[8:]))
