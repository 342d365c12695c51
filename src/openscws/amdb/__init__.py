"""GlobalPlatform Amendment B "RAM over HTTP" as the SCWS remote administration protocol, both
sides, sans-IO: the card agent's session (`client`), the server's helpers (`server`), the
HTTP messages they carry (`embedded`) and the names on the wire (`wire`)."""

from openscws.amdb.client import AdminSession, CommandExecutor, Outcome, SessionParams
from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse, Headers
from openscws.amdb.server import (
    CardPost,
    Closed,
    ServerExchange,
    command_response,
    end_response,
    parse_card_post,
)
from openscws.amdb.wire import PROTOCOL, AdminHeader, Payload, ScriptStatus, classify

__all__ = [
    "PROTOCOL",
    "AdminHeader",
    "AdminSession",
    "CardPost",
    "Closed",
    "CommandExecutor",
    "EmbeddedRequest",
    "EmbeddedResponse",
    "Headers",
    "Outcome",
    "Payload",
    "ScriptStatus",
    "ServerExchange",
    "SessionParams",
    "classify",
    "command_response",
    "end_response",
    "parse_card_post",
]
