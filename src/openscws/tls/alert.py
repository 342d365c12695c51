"""Why a TLS connection failed, in TLS's own terms (RFC 5246 §7.2, RFC 8446 §6)."""

from __future__ import annotations

import ssl
from typing import Final

from openscws.errors import OpenScwsError

__all__ = ["TlsAlert", "alert_name"]

_ALERT_RECORD: Final = 21  # ContentType.alert, RFC 5246 §6.2.1


def alert_name(description: int) -> str:
    """The RFC name of alert `description` ("bad_record_mac"), or its number."""
    try:
        return ssl.AlertDescription(description).name.removeprefix("ALERT_DESCRIPTION_").lower()
    except ValueError:
        return str(description)


class TlsAlert(OpenScwsError):
    """A TLS connection failed. `description` is the alert code sent (`received` False) or
    received (`received` True), when known; `reason` is OpenSSL's reason ("WRONG_VERSION_NUMBER",
    "TLSV1_ALERT_UNKNOWN_PSK_IDENTITY") or a short text of ours ("handshake timed out")."""

    def __init__(self, reason: str, description: int | None = None, *, received: bool = False):
        what = "" if description is None else f"{alert_name(description)} ({description}) "
        way = "received" if received else "sent"
        super().__init__(f"TLS alert {what}{way}: {reason}" if what else f"TLS failure: {reason}")
        self.reason = reason
        self.description = description
        self.received = received

    @classmethod
    def from_ssl_error(cls, exc: ssl.SSLError, flight: bytes) -> TlsAlert:
        """From what OpenSSL raised and the bytes it wrote in the same step: a plaintext alert
        record there is the one we sent; a reason like "TLSV1_ALERT_X" is one we received."""
        reason = str(getattr(exc, "reason", None) or exc)
        for prefix in ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_"):
            if reason.startswith(prefix):
                name = "ALERT_DESCRIPTION_" + reason.removeprefix(prefix)
                try:
                    return cls(reason, ssl.AlertDescription[name].value, received=True)
                except KeyError:
                    return cls(reason, None, received=True)
        return cls(reason, _sent_alert(flight))


def _sent_alert(flight: bytes) -> int | None:
    """The description of the last plaintext alert record in `flight`, if any."""
    found = None
    at = 0
    while at + 5 <= len(flight):
        length = int.from_bytes(flight[at + 3 : at + 5])
        if flight[at] == _ALERT_RECORD and length == 2 and at + 7 <= len(flight):
            found = flight[at + 6]
        at += 5 + length
    return found
