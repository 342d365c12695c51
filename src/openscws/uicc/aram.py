"""The card's access-rule application: a GlobalPlatform SEAC ARA-M (GPD_SPE_013 §4) that hands
the terminal the access rules for the SCWS (`openscws.acp.rules`).

Selected by AID A00000015141434C00 (on the basic channel or a logical channel opened with
MANAGE CHANNEL), it answers:

    GET DATA 80 CA FF 40 Le   all rules: the Response-ALL-REF-AR-DO (FF40), its first Le bytes
                              (256 when Le is 00); 6A88 when the card holds no rules
    GET DATA 80 CA FF 60 Le   GET DATA Next: the following bytes of that answer; 6985 when no
                              answer is being read, 6A84 when the rules changed meanwhile
                              (SEAC: read them again from the start)
    GET DATA 80 CA DF 20 Le   the Response-Refresh-Tag-DO (DF20, 8 bytes)
    other P1 P2               6A88 (referenced data not found, ISO/IEC 7816-4 §5.6)

The rules are the card image's value `scws.acp` (`RULES_KEY`), written by the admin agent's
`PUT /.scws/acp` and by `openscws card acp`: the encoded Response-ALL-REF-AR-DO. A value in the
earlier JSON form of that command is served converted. The refresh tag is the first 8 bytes of
the SHA-256 of the stored rules, so it changes whenever the rules do, whoever wrote them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from openscws.acp.document import DocumentError, from_document
from openscws.acp.rules import encode_refresh_tag, encode_rules
from openscws.apdu.status import SW
from openscws.errors import ApduError

__all__ = ["ARAM_AID", "RULES_KEY", "AraM", "AraSession", "refresh_tag_of", "served_rules"]

ARAM_AID: Final = bytes.fromhex("A00000015141434C00")
"""The ARA-M's AID (GPD_SPE_013 §3.1)."""
RULES_KEY: Final = "scws.acp"
"""The card image value holding the encoded rules."""
P1P2_ALL: Final = 0xFF40
P1P2_NEXT: Final = 0xFF60
P1P2_REFRESH: Final = 0xDF20


def served_rules(stored: bytes | None) -> bytes | None:
    """What GET DATA All answers for the stored value: the value itself, or the earlier JSON
    form converted. Bytes that do not parse are served as they are (the terminal then refuses
    everyone, never everyone allowed)."""
    if stored is None:
        return None
    if stored[:1] in (b"[", b"{"):
        try:
            return encode_rules(from_document(json.loads(stored.decode("utf-8"))))
        except (UnicodeDecodeError, ValueError, DocumentError):
            return stored
    return stored


def refresh_tag_of(rules: bytes | None) -> bytes:
    return hashlib.sha256(rules or b"").digest()[:8]


@dataclass(slots=True)
class AraSession:
    """A channel on which the ARA-M is selected: the rest of a GET DATA All being read."""

    remaining: bytes = b""
    tag: bytes = b""


class AraM:
    """The ARA-M; `load` reads the stored rules value (None: none)."""

    def __init__(self, load: Callable[[], bytes | None]) -> None:
        self._load = load

    def get_data(self, session: AraSession, p1p2: int, le: int | None) -> bytes:
        """The response data of GET DATA (without the status word); ApduError otherwise."""
        size = le or 256
        if p1p2 == P1P2_REFRESH:
            return encode_refresh_tag(refresh_tag_of(served_rules(self._load())))
        if p1p2 == P1P2_ALL:
            rules = served_rules(self._load())
            session.remaining = b""
            if rules is None:
                raise ApduError(SW.REFERENCED_DATA_NOT_FOUND, "the card holds no access rules")
            session.remaining = rules[size:]
            session.tag = refresh_tag_of(rules)
            return rules[:size]
        if p1p2 == P1P2_NEXT:
            if not session.remaining:
                raise ApduError(SW.CONDITIONS_NOT_SATISFIED, "no GET DATA All being read")
            if refresh_tag_of(served_rules(self._load())) != session.tag:
                session.remaining = b""
                raise ApduError(SW.RULES_CHANGED, "the rules changed; read them again")
            out, session.remaining = session.remaining[:size], session.remaining[size:]
            return out
        raise ApduError(SW.REFERENCED_DATA_NOT_FOUND, f"no data object {p1p2:04X}")
