"""GlobalPlatform Card Spec v2.2 Amendment B "Remote Application Management over HTTP", as the
SCWS remote administration protocol: every name and value it puts on the wire, declared once
with its source: GP Amendment B v1.1 (GPC_SPE_011), the IANA media-type registry, and GSMA
SGP.02 §2.4 (the same machinery on an eUICC); values checked against pySim."""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = [
    "ETSI_COMMAND",
    "ETSI_RESPONSE",
    "GP_COMMAND",
    "GP_RESPONSE",
    "PROTOCOL",
    "SCWS_CONFIG",
    "SCWS_HTTP_REQUEST",
    "SCWS_HTTP_RESPONSE",
    "AdminHeader",
    "Payload",
    "ScriptStatus",
    "classify",
    "is_request_target",
]

PROTOCOL: Final = "globalplatform-remote-admin/1.0"
"""X-Admin-Protocol value, on every POST and echoed by the server (Amd B §3.4)."""


class AdminHeader(enum.StrEnum):
    """Amd B §3.4 header fields."""

    PROTOCOL = "X-Admin-Protocol"
    """Both directions: `PROTOCOL`."""
    FROM = "X-Admin-From"
    """Card → server: the agent id (trigger tag 8B, or the security domain's default)."""
    NEXT_URI = "X-Admin-Next-URI"
    """Server → card: where to POST next; absent means the same URI again."""
    SCRIPT_STATUS = "X-Admin-Script-Status"
    """Card → server, on each POST after the first: a `ScriptStatus`."""
    RESUME = "X-Admin-Resume"
    """Card → server: "true" on the first POST of a session resumed after a broken link."""
    TARGETED_APPLICATION = "X-Admin-Targeted-Application"
    """Server → card: "//aid/<RID>/<PIX>", the on-card target of a GP/ETSI script."""


class ScriptStatus(enum.StrEnum):
    """X-Admin-Script-Status values (Amd B §3.4, as pySim also uses them)."""

    OK = "ok"
    """The body carries the result of the previous command."""
    UNKNOWN_APPLICATION = "unknown-application"
    """No application takes that command (no body)."""
    NOT_A_SECURITY_DOMAIN = "not-a-security-domain"
    """The targeted application is not a security domain (no body)."""
    SECURITY_ERROR = "security-error"
    """The command failed a security check (no body)."""


# Media types, exact IANA spelling (the IANA media-type registry). The GP and ETSI types require the
# version parameter, so it is part of what we send.
SCWS_HTTP_REQUEST: Final = "application/vnd.oma-scws-http-request"
"""Server → card: one complete HTTP/1.1 request for the SCWS."""
SCWS_HTTP_RESPONSE: Final = "application/vnd.oma-scws-http-response"
"""Card → server: the SCWS's complete HTTP/1.1 response to it."""
SCWS_CONFIG: Final = "application/vnd.oma-scws-config"
"""SCWS configuration data (name registered; format unknown, not used)."""
GP_COMMAND: Final = "application/vnd.globalplatform.card-content-mgt;version=1.0"
"""Server → card: a TS 102 226 expanded-format command script (Amd B)."""
GP_RESPONSE: Final = "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
"""Card → server: the response script (Amd B)."""
ETSI_COMMAND: Final = "application/vnd.etsi.scp.command-data;version=1.0"
"""Server → card: RFM/RAM script for a TS 102 226 application (TS 102 226 Annex B)."""
ETSI_RESPONSE: Final = "application/vnd.etsi.scp.response-data;version=1.0"
"""Card → server: its response script."""


class Payload(enum.Enum):
    """What a body is, by its media type."""

    SCWS_REQUEST = enum.auto()
    SCWS_RESPONSE = enum.auto()
    SCWS_CONFIG = enum.auto()
    GP_COMMAND = enum.auto()
    GP_RESPONSE = enum.auto()
    ETSI_COMMAND = enum.auto()
    ETSI_RESPONSE = enum.auto()


_PAYLOADS: Final[dict[str, Payload]] = {
    "application/vnd.oma-scws-http-request": Payload.SCWS_REQUEST,
    "application/vnd.oma-scws-http-response": Payload.SCWS_RESPONSE,
    "application/vnd.oma-scws-config": Payload.SCWS_CONFIG,
    # IANA registers `vnd.oma-scws-...`; which spelling the OMA TS uses is unverified, so the
    # dotted one is accepted too (never sent).
    "application/vnd.oma.scws-http-request": Payload.SCWS_REQUEST,
    "application/vnd.oma.scws-http-response": Payload.SCWS_RESPONSE,
    "application/vnd.oma.scws-config": Payload.SCWS_CONFIG,
    "application/vnd.globalplatform.card-content-mgt": Payload.GP_COMMAND,
    "application/vnd.globalplatform.card-content-mgt-response": Payload.GP_RESPONSE,
    "application/vnd.etsi.scp.command-data": Payload.ETSI_COMMAND,
    "application/vnd.etsi.scp.response-data": Payload.ETSI_RESPONSE,
}


def classify(content_type: str | bytes | None) -> Payload | None:
    """The `Payload` a Content-Type value names (parameters and case ignored), else None."""
    if content_type is None:
        return None
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    essence = content_type.partition(";")[0].strip().lower()
    return _PAYLOADS.get(essence)


_TARGET: Final = re.compile(r"[\x21-\x7e]{1,2048}")


def is_request_target(value: str) -> bool:
    """Whether `value` can go on a request line as is (visible ASCII, at most 2048 bytes):
    the check for an admin URI or an X-Admin-Next-URI before it is used."""
    return _TARGET.fullmatch(value) is not None
