"""A CSIM-like application for the (R-)UIM path of the BCAST smartcard profile, sans-IO: the card
holds a pre-provisioned registration key RK with the subscriber's NAI, derives the temporary
key TK and the Auth-Key from it, gives the terminal the Auth-Key (its HTTP Digest password
towards the BSM, username the NAI) and keeps TK: LTKMs protected with TK are verified in the
card and their SEK/PEKs stay in it, as the USIM's MBMS context does with the MUK.

3GPP2 S.S0083 and the CSIM specification's BCAST commands are not public here, so everything
below is the project's reading, declared once in this module:

    AID              A0000003431002 FFFF FFFF 89 07090000  (RID A000000343, 3GPP2; PIX 1002)
    EF_NAI (6FB0)    transparent: the NAI, UTF-8
    EF_MSK (6FD7)    as the USIM's (TS 31.102 §4.2.80 layout): Key Domain ID, SEK/PEK IDs and
                     their counters
    AUTHENTICATE     CLA 00, INS 88, P1 00:
      P2 90 (RK context)    data: empty        ->  DB 20 Auth-Key (TK stays in the card)
      P2 91 (BCAST keys)    data: 01 || LTKM   ->  DB L <verification message> (L = 0: none
                            asked); IDr must be the NAI, else 6A 88; MAC wrong 98 62;
                            counter not fresh 98 65; malformed 6A 80

TK and the Auth-Key come from `openscws.bcast.keys.rk_keys` (one function; the derivation is
chosen by name, `RK_DERIVATIONS`, and stored with the RK, so a deployment selects the real
S.S0083 derivation by configuration). The random it takes is provisioned with the RK (the BSM
keeps the same one with its RK subscriber). The secure area holds `csim.json` {"nai", "rk",
"rand", "derivation"} and `csim-bcast.json` (the SEK/PEKs and counters, as usim-mbms.json);
none is ever logged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from openscws.apdu.status import SW
from openscws.bcast.keys import DEFAULT_RK_DERIVATION, BcastKeyError, RkKeys, rk_keys
from openscws.bcast.mikey import MikeyError, decode
from openscws.bcast.mikey import PayloadType as _PT
from openscws.errors import ApduError, ConfigError
from openscws.gba.kdf import UA_MBMS
from openscws.uicc.keystore import SecretStore
from openscws.uicc.mbms import EF_MSK, MSK_RECORD, MbmsState, msk_update

__all__ = [
    "CSIM_AID",
    "EF_NAI",
    "P2_BCAST_KEYS",
    "P2_RK",
    "CsimApp",
    "CsimKeys",
    "CsimSecrets",
]

CSIM_AID: Final = bytes.fromhex("A0000003431002FFFFFFFF8907090000")
"""The CSIM-like application's AID (RID A000000343 of 3GPP2, PIX 1002; the tail mirrors the
USIM's: the project's choice)."""
EF_NAI: Final = 0x6FB0
"""The NAI, transparent, UTF-8 (the project's file id)."""
P2_RK: Final = 0x90
P2_BCAST_KEYS: Final = 0x91
TAG_SUCCESS: Final = 0xDB
KEYS_FILE: Final = "csim.json"
BCAST_FILE: Final = "csim-bcast.json"


@dataclass(frozen=True, slots=True)
class CsimKeys:
    """The pre-provisioned subscription: NAI, RK, the TK/Auth-Key random, the derivation."""

    nai: str
    rk: bytes = field(repr=False)
    rand: bytes = field(repr=False)
    derivation: str = DEFAULT_RK_DERIVATION

    def __post_init__(self) -> None:
        if not self.nai or len(self.nai.encode()) > 255 or not self.nai.isprintable():
            raise ConfigError("a NAI is 1 to 255 bytes of printable UTF-8")
        try:
            self.derive()
        except BcastKeyError as exc:
            raise ConfigError(str(exc)) from None

    def derive(self) -> RkKeys:
        return rk_keys(self.rk, self.rand, self.nai, derivation=self.derivation)


class CsimSecrets:
    """The CSIM's keys and BCAST key store in the card's secure area."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store

    def keys(self) -> CsimKeys | None:
        raw = self.store.get_secret(KEYS_FILE)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return CsimKeys(
                nai=str(doc["nai"]),
                rk=bytes.fromhex(doc["rk"]),
                rand=bytes.fromhex(doc["rand"]),
                derivation=str(doc.get("derivation", DEFAULT_RK_DERIVATION)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{KEYS_FILE} is damaged: {exc!r}") from None

    def set_keys(self, keys: CsimKeys) -> None:
        """Stores a subscription; SEK/PEKs of an earlier one go."""
        self.store.delete_secret(BCAST_FILE)
        doc = {
            "nai": keys.nai,
            "rk": keys.rk.hex(),
            "rand": keys.rand.hex(),
            "derivation": keys.derivation,
        }
        self.store.set_secret(KEYS_FILE, json.dumps(doc).encode())

    def remove(self) -> bool:
        removed = self.store.delete_secret(KEYS_FILE)
        self.store.delete_secret(BCAST_FILE)
        return removed

    def bcast(self) -> MbmsState:
        raw = self.store.get_secret(BCAST_FILE)
        if raw is None:
            return MbmsState()
        try:
            return MbmsState.from_json(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"secure/{BCAST_FILE} is damaged: {exc!r}") from None

    def save_bcast(self, state: MbmsState) -> None:
        self.store.set_secret(BCAST_FILE, state.to_json())


class CsimApp:
    """AUTHENTICATE in the RK and BCAST key contexts, EF_NAI and EF_MSK. `persist(state)`
    stores the key store before the answer leaves the card."""

    def __init__(
        self,
        keys: CsimKeys,
        *,
        state: MbmsState | None = None,
        persist: Callable[[MbmsState], None] | None = None,
    ) -> None:
        self.nai = keys.nai
        self._keys = keys
        self.state = state or MbmsState()
        self._persist = persist or _keep

    @classmethod
    def from_secrets(cls, secrets: CsimSecrets) -> CsimApp | None:
        keys = secrets.keys()
        if keys is None:
            return None
        return cls(keys, state=secrets.bcast(), persist=secrets.save_bcast)

    def file(self, fid: int) -> tuple[bytes, int] | None:
        """(content, record length; 0 for transparent) of an EF of the ADF, or None."""
        if fid == EF_NAI:
            return self.nai.encode(), 0
        if fid == EF_MSK:
            return self.state.ef_msk(), MSK_RECORD
        return None

    def authenticate(self, p1: int, p2: int, data: bytes) -> bytes:
        """The response data of AUTHENTICATE; ApduError for a refusal (its status word)."""
        if p1 != 0:
            raise ApduError(SW.INCORRECT_P1P2, f"AUTHENTICATE P1 {p1:02X}")
        if p2 == P2_RK:
            if data:
                raise ApduError(SW.WRONG_LENGTH, "RK context: no data")
            auth_key = self._keys.derive().auth_key
            return bytes((TAG_SUCCESS, len(auth_key))) + auth_key
        if p2 == P2_BCAST_KEYS:
            tk = self._keys.derive().tk
            try:
                ids = decode(data[1:]).all(_PT.ID) if len(data) > 1 else []
            except MikeyError:
                ids = []
            # The TK is this NAI's whatever the BSM (IDi): msk_update matches it by IDr.
            idi = ids[0].bytes("id_data") if len(ids) == 2 else b""
            state = MbmsState.from_json(self.state.to_json())
            answer = msk_update([(idi + UA_MBMS, self.nai.encode(), tk)], state, data)
            self._persist(state)
            self.state = state
            return answer
        raise ApduError(
            SW.SECURITY_CONTEXT_NOT_SUPPORTED, f"AUTHENTICATE P2 {p2:02X}: RK (90), BCAST (91)"
        )


def _keep(state: MbmsState) -> None:
    pass
