"""The keys of the BCAST smartcard profile, sans-IO.

(U)SIM (3GPP TS 33.246 §6.1, TS 33.220 Annex G and H):

    NAF_Id      = BSM FQDN || 01 00 00 00 01      (Ua id of TS 33.246 MBMS, used by OMA BCAST 1.0)
    GBA_U:      MUK = Ks_int_NAF                  (stays in the UICC, TS 33.220 Annex G.2)
                MRK = mrk_from_naf_key(Ks_ext_NAF) (computed in the terminal)
    GBA_ME:     MUK = Ks_NAF                       (TS 33.501 Annex W.4.1.3 by analogy: "the MUK is
                                                    set to K_AF" where GBA_ME uses Ks_NAF)
                MRK = mrk_from_naf_key(Ks_NAF)     (TS 33.246 Annex F)

The exact Annex F formula could not be read in a public copy here, so it sits in one function,
`mrk_from_naf_key`; docs/bcast.md records it as the project's reading. The BCAST roles: the SMK
(subscriber management key, protecting LTKMs) is the MUK; the SRK (subscriber request key,
the HTTP Digest password) is the MRK.

(R-)UIM / CSIM (3GPP2 S.S0083, not public): a pre-provisioned registration key RK; the
temporary key TK (the SMK) and the Auth-Key (the SRK) are derived from RK and a network random.
The derivation is one named function in `RK_DERIVATIONS`; a deployment selects another by name
(`rk_keys(..., derivation=...)`) or registers its own with `register_rk_derivation`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from openscws.errors import OpenScwsError
from openscws.gba.kdf import UA_MBMS, kdf, ks_int_naf, ks_naf, naf_id

__all__ = [
    "DEFAULT_RK_DERIVATION",
    "FC_MRK",
    "RK_DERIVATIONS",
    "BcastKeyError",
    "GbaMode",
    "MbmsKeys",
    "RkKeys",
    "bsm_naf_id",
    "mbms_keys_from_ks",
    "mbms_keys_gba_me",
    "mbms_keys_gba_u",
    "mrk_from_naf_key",
    "register_rk_derivation",
    "rk_keys",
    "srk_password",
]


class BcastKeyError(OpenScwsError):
    """A key input of the wrong size or an unknown derivation."""


class GbaMode(Enum):
    GBA_ME = "gba_me"
    GBA_U = "gba_u"


FC_MRK: Final = 0x01
"""The FC the project's reading of TS 33.246 Annex F uses (the NAF key FC of TS 33.220 B.3)."""
_MRK_LABEL: Final = b"mbms-mrk"


def bsm_naf_id(fqdn: str) -> bytes:
    """NAF_Id of a BSM: its FQDN with the MBMS Ua security protocol id (TS 33.220 Annex H.3)."""
    return naf_id(fqdn, UA_MBMS)


def mrk_from_naf_key(naf_key: bytes) -> bytes:
    """MRK from Ks_NAF (GBA_ME) or Ks_ext_NAF (GBA_U): TS 33.246 Annex F.

    Project's reading (the public Annex F text was not reachable): the TS 33.220 Annex B KDF keyed
    with the NAF key, FC 0x01, one parameter "mbms-mrk", all 256 bits kept. Every MRK in the
    project comes from this one function."""
    if len(naf_key) != 32:
        raise BcastKeyError("a NAF key is 32 bytes")
    return kdf(naf_key, FC_MRK, (_MRK_LABEL,))


@dataclass(frozen=True, slots=True)
class MbmsKeys:
    """The keys one terminal holds towards one BSM. `muk` is None with GBA_U: the MUK
    (Ks_int_NAF) never leaves the card."""

    mode: GbaMode
    mrk: bytes
    muk: bytes | None

    def __repr__(self) -> str:
        where = "card" if self.muk is None else "secret"
        return f"MbmsKeys(mode={self.mode.value}, mrk=<secret>, muk=<{where}>)"


def mbms_keys_gba_me(ks_naf_key: bytes) -> MbmsKeys:
    """GBA_ME: MUK = Ks_NAF, MRK = Annex F of Ks_NAF."""
    if len(ks_naf_key) != 32:
        raise BcastKeyError("Ks_NAF is 32 bytes")
    return MbmsKeys(GbaMode.GBA_ME, mrk_from_naf_key(ks_naf_key), bytes(ks_naf_key))


def mbms_keys_gba_u(ks_ext_naf: bytes) -> MbmsKeys:
    """GBA_U, terminal side: MRK from Ks_ext_NAF; the MUK (Ks_int_NAF) stays in the card."""
    return MbmsKeys(GbaMode.GBA_U, mrk_from_naf_key(ks_ext_naf), None)


def mbms_keys_from_ks(
    ks: bytes, rand: bytes, impi: str, bsm_fqdn: str, mode: GbaMode
) -> tuple[bytes, bytes]:
    """Network side (the BSM gets these from the BSF over Zn): (MRK, MUK) for one subscriber.
    GBA_U: MUK = Ks_int_NAF; GBA_ME: MUK = Ks_NAF; MRK per `mrk_from_naf_key` in both."""
    naf = bsm_naf_id(bsm_fqdn)
    ext = ks_naf(ks, rand, impi, naf)
    muk = ks_int_naf(ks, rand, impi, naf) if mode is GbaMode.GBA_U else ext
    return mrk_from_naf_key(ext), muk


def srk_password(srk: bytes) -> bytes:
    """The HTTP Digest password made of the SRK (MRK or Auth-Key).

    Project's reading, as for the Ua password of TS 24.109 in widespread practice: the base64
    encoding of the key. One function, so the other reading (the raw key) is one change."""
    return base64.b64encode(srk)


# -- (R-)UIM / CSIM: RK -> TK, Auth-Key (3GPP2 S.S0083, not public) ------------------------


@dataclass(frozen=True, slots=True)
class RkKeys:
    """TK plays the SMK (protects the LTKMs), the Auth-Key the SRK (the digest password)."""

    tk: bytes
    auth_key: bytes

    def __repr__(self) -> str:
        return "RkKeys(tk=<secret>, auth_key=<secret>)"


RkDerivation = Callable[[bytes, bytes, str], RkKeys]


def _rk_hmac_sha256(rk: bytes, rand: bytes, nai: str) -> RkKeys:
    """The project's reading (unconfirmed): HMAC-SHA-256 of RK over a label, the network random
    and the NAI, 32 bytes each: TK with label "TK", Auth-Key with "Auth-Key"."""

    def one(label: bytes) -> bytes:
        message = label + b"\x00" + rand + nai.encode("utf-8")
        return hmac.new(rk, message, hashlib.sha256).digest()

    return RkKeys(tk=one(b"TK"), auth_key=one(b"Auth-Key"))


DEFAULT_RK_DERIVATION: Final = "project-hmac-sha256"
RK_DERIVATIONS: dict[str, RkDerivation] = {DEFAULT_RK_DERIVATION: _rk_hmac_sha256}
"""Named RK derivations; configuration selects one by name."""


def register_rk_derivation(name: str, derivation: RkDerivation) -> None:
    """Add a derivation (e.g. the real S.S0083 one) under a name configuration can select."""
    if not name or name in RK_DERIVATIONS:
        raise BcastKeyError(f"RK derivation name {name!r} is empty or taken")
    RK_DERIVATIONS[name] = derivation


def rk_keys(rk: bytes, rand: bytes, nai: str, *, derivation: str = DEFAULT_RK_DERIVATION) -> RkKeys:
    """TK and Auth-Key from the pre-provisioned RK, the network random and the NAI."""
    if len(rk) not in (16, 32):
        raise BcastKeyError("RK is 16 or 32 bytes")
    if not 1 <= len(rand) <= 64:
        raise BcastKeyError("the random is 1 to 64 bytes")
    if not nai:
        raise BcastKeyError("the NAI is empty")
    try:
        chosen = RK_DERIVATIONS[derivation]
    except KeyError:
        raise BcastKeyError(f"unknown RK derivation {derivation!r}") from None
    return chosen(rk, rand, nai)
