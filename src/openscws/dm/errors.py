"""Errors of the OMA DM layer, each carrying the SyncML status code (OMA-TS-SyncML_RepPro
§10, OMA-TS-DM_RepPro §4.2) a peer answers with, so a shell never has to guess."""

from __future__ import annotations

from openscws.errors import DecodeError, OpenScwsError

__all__ = ["MessageError", "ProtocolError"]


class MessageError(DecodeError):
    """A DM message that does not parse or does not follow the SyncML DM 1.2 DTD: malformed
    XML or WBXML, a DTD with an internal subset, an entity, an unknown token or element.
    Answered with status 400 (Bad request) for the whole message."""

    status = 400


class ProtocolError(OpenScwsError):
    """A message that parses but that the session cannot accept here: a wrong MsgRef, a
    command the session state does not allow, a missing credential. `status` is the SyncML
    status code to answer with (400, 401, 407, 403, ...)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"SyncML status {status}: {reason}")
        self.status = status
        self.reason = reason
