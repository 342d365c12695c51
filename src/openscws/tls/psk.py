"""What every PSK-TLS server endpoint of openscws answers (RFC 4279), defined once: the card's
HTTPS port (OpenSSL and GnuTLS), and the admin server's endpoint for the cards' admin agents.

**No identity oracle.** RFC 4279 §2 lets a server that does not know a client's PSK identity
answer with `unknown_psk_identity`, or, "if the server wishes to hide the fact that the PSK
identity was not known", go on "as if the PSK identity existed but the key was incorrect".
openscws's identities name cards (the admin server's are ``scws-<ICCID>``), so an answer that
tells them apart would let anyone enumerate ICCIDs. Every endpoint therefore takes the key of an
unknown identity from `server_key`: a decoy, HMAC-SHA-256 of the identity under a secret drawn
once per process, so the handshake fails exactly as with a wrong key (the server cannot
decrypt the client's Finished: `bad_record_mac`), and the same unknown identity gets the same
decoy each time (nothing changes between two tries either).

**One definition.** `PskKeys` (a key table and the identity hint) is what every PSK-TLS server
endpoint takes, whichever stack serves it: OpenSSL's contexts (`psk_server_context`,
`server_context(psk=...)`), GnuTLS's `GnutlsPskServerHandler`, and `TlsDispatcher` that picks
between them. The card builds its `PskKeys` from its PSK table (`PskTable.psk_keys`), the admin
server from its card database (`RasServer.psk`); both go through `PskKeys.key`, so the decoy
rule and the hint are the same everywhere. `PskLookup` is the one shape of a key table:
identity in, key or None out, never raising, never logging the key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["DECOY_BYTES", "PskKeys", "PskLookup", "decoy_key", "server_key"]

log = logging.getLogger(__name__)

PskLookup = Callable[[str | None], bytes | None]
"""A PSK key table: the key of a client's identity, or None for one it does not know."""

DECOY_BYTES: Final = 16
"""Length of a decoy key: that of the cards' own keys (128 bits, the shortest allowed)."""

_DECOY_SECRET: Final = secrets.token_bytes(32)


def decoy_key(identity: str | None) -> bytes:
    """The key an unknown `identity` gets: fixed for this process, unguessable, never a real
    card's (it is never stored)."""
    raw = b"\x00" if identity is None else b"\x01" + identity.encode("utf-8", "surrogatepass")
    return hmac.new(_DECOY_SECRET, raw, hashlib.sha256).digest()[:DECOY_BYTES]


def server_key(lookup: PskLookup, identity: str | None) -> bytes:
    """The key a server endpoint uses for `identity`: the table's, else a decoy (the handshake
    then fails as with a wrong key). A lookup that raises is an unknown identity."""
    try:
        key = lookup(identity)
    except Exception:  # the contract says it does not raise
        log.exception("PSK lookup failed")
        key = None
    return key if key else decoy_key(identity)


@dataclass(frozen=True, slots=True)
class PskKeys:
    """A PSK-TLS server's keys: `lookup` (the key table) and `hint`, the PSK identity hint
    sent in the ServerKeyExchange (RFC 4279 §2; None: none sent)."""

    lookup: PskLookup
    hint: str | None = None

    def key(self, identity: str | None) -> bytes:
        """The key to run the handshake with: the table's, or `identity`'s decoy."""
        return server_key(self.lookup, identity)
