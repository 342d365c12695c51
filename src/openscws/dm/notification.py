"""The OMA DM 1.2 General Notification Initiated Session Alert, "Package #0" (OMA-TS-DM_
Notification §6): what a DM server pushes (WAP Push, content type 0x44, application id 0x07)
to make the client open a session. Big-endian, declared once:

    digest            128 bits  H(B64(H(server-id ":" password)) ":" nonce ":" B64(H(trigger)))
    trigger:
      version          10       DEC/10: 11 for DM 1.2 (1.1 for the notification format)
      ui-mode           2       00 not specified, 01 background, 10 informative, 11 user
      initiator         1       0 user (client), 1 server
      future-use       27       zero
      session-id       16       the DM session to open (its SyncHdr SessionID)
      length-id         8       length of server-id
      server-id        n*8      the DMAcc ServerID
      trigger-body     rest     vendor specific

password and nonce are the server credentials (SRVCRED) of the DM account. When the digest does
not check with the stored nonce, the client tries the resynchronisation nonce (§6.2); its form
differs between implementations (the ASCII text "0x00000000", or four zero bytes), so both
are tried. Sans-IO."""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from openscws.dm.auth import keyed_digest
from openscws.errors import DecodeError

__all__ = ["RESYNC_NONCES", "SessionAlert", "UiMode", "digest"]

VERSION: Final = 11
ACCEPTED_VERSIONS: Final = frozenset({11, 12})
RESYNC_NONCES: Final = (b"0x00000000", bytes(4))
_HEADER: Final = 8  # 40 bits of version .. future-use, 16 of session id, 8 of length


class UiMode(enum.IntEnum):
    NOT_SPECIFIED = 0
    BACKGROUND = 1
    INFORMATIVE = 2
    USER_INTERACTION = 3


def digest(server_id: str, password: str, nonce: bytes, trigger: bytes) -> bytes:
    return keyed_digest(server_id, password, nonce, trigger)


@dataclass(frozen=True, slots=True)
class SessionAlert:
    """The trigger part of Package #0."""

    server_id: str
    session_id: int
    ui_mode: UiMode = UiMode.NOT_SPECIFIED
    server_initiated: bool = True
    body: bytes = b""
    version: int = VERSION

    def trigger(self) -> bytes:
        sid = self.server_id.encode()
        if not 0 < len(sid) <= 255:
            raise ValueError("a server identifier is 1 to 255 bytes")
        if not 0 <= self.session_id <= 0xFFFF:
            raise ValueError("the session id is 16 bits")
        if not 0 <= self.version < 1 << 10:
            raise ValueError("the version is 10 bits")
        head = (self.version << 30) | (int(self.ui_mode) << 28) | (int(self.server_initiated) << 27)
        return (
            head.to_bytes(5, "big")
            + self.session_id.to_bytes(2, "big")
            + bytes((len(sid),))
            + sid
            + self.body
        )

    def encode(self, password: str, nonce: bytes) -> bytes:
        """The whole message: digest || trigger."""
        trigger = self.trigger()
        return digest(self.server_id, password, nonce, trigger) + trigger

    @classmethod
    def decode(cls, message: bytes) -> tuple[bytes, SessionAlert]:
        """(the digest, the alert); DecodeError for anything malformed."""
        if len(message) < 16 + _HEADER + 1:
            raise DecodeError("Package #0 is shorter than its digest and header")
        trigger = message[16:]
        head = int.from_bytes(trigger[:5], "big")
        version = head >> 30
        if version not in ACCEPTED_VERSIONS:
            raise DecodeError(f"Package #0 version {version / 10:.1f} (1.1 expected)")
        if head & ((1 << 27) - 1):
            raise DecodeError("Package #0: future-use bits are not zero")
        length = trigger[7]
        sid = trigger[8 : 8 + length]
        if length == 0 or len(sid) != length:
            raise DecodeError("Package #0: server identifier length out of the message")
        try:
            server_id = sid.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("Package #0: server identifier is not UTF-8") from None
        alert = cls(
            server_id=server_id,
            session_id=int.from_bytes(trigger[5:7], "big"),
            ui_mode=UiMode((head >> 28) & 0b11),
            server_initiated=bool((head >> 27) & 1),
            body=trigger[8 + length :],
            version=version,
        )
        return message[:16], alert

    @staticmethod
    def check(message: bytes, password: str, nonces: Iterable[bytes]) -> bytes | None:
        """The nonce (of `nonces`, then the resynchronisation ones) whose digest matches the
        message's, or None: a client acts on Package #0 only when one does."""
        got, alert = SessionAlert.decode(message)
        trigger = message[16:]
        for nonce in (*nonces, *RESYNC_NONCES):
            if hmac.compare_digest(digest(alert.server_id, password, nonce, trigger), got):
                return nonce
        return None
