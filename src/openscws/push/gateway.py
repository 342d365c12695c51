"""The SCWS-6 hand-off, sans-IO: what the SCWS Push Gateway POSTs to the terminal's SCWS
Gateway, the checks the SCWS Gateway makes on it, and the SMS-DELIVER it then hands the card in
the SMS-PP data download ENVELOPE, exactly as the SMS path does.

The project's reading of the SCWS-6 interface (the public texts we could read do not give it
byte by byte):

    POST /scws-push HTTP/1.1
    Content-Type: application/octet-stream
    X-Wap-Application-Id: x-oma-application:push.scws
    <the TS 102 225 command packet, CPL to the end>

answered `200` with the card's answer as the local SMS entry point gives it (`X-SMS-Status`,
`X-SMS-SW`, the PoR user data as body), `503` when the card's toolkit stayed busy or there is
no card, `400` for a body that is not one command packet, `403` for a caller that is not on
loopback, `415` for another media type. The card's own checks (counter, checksum, TAR) answer
in its PoR, as for an SMS."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from openscws.errors import DecodeError, HttpError
from openscws.ota.packet import CommandPacket
from openscws.ota.sms import (
    COMMAND_HEADER,
    DCS_DATA_CLASS2,
    MAX_USER_DATA,
    PID_SIM_DATA_DOWNLOAD,
    ServiceCentreTimeStamp,
    SmsAddress,
    SmsDeliver,
)
from openscws.push.content import PUSH_CONTENT_TYPE, SCWS_APP_ID, app_id_of

__all__ = ["SCWS6_PATH", "check_scws6", "push_tpdu"]

SCWS6_PATH: Final = "/scws-push"
MAX_SCWS6_BODY: Final = MAX_USER_DATA - len(COMMAND_HEADER.encode())
"""A trigger fits one SMS: 137 bytes after the `02 70 00` header."""


def check_scws6(
    *, loopback: bool, content_type: str | None, app_id: str | None, body: bytes
) -> bytes:
    """The command packet of a well-formed SCWS-6 request; HttpError otherwise."""
    if not loopback:
        raise HttpError(403, "SCWS-6 takes local callers only")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind != PUSH_CONTENT_TYPE:
        raise HttpError(415, f"SCWS-6 takes {PUSH_CONTENT_TYPE}")
    try:
        if app_id is not None and app_id_of(app_id) != SCWS_APP_ID:
            raise HttpError(400, "not an SCWS push")
    except ValueError:
        raise HttpError(400, "unknown application id") from None
    if not 0 < len(body) <= MAX_SCWS6_BODY:
        raise HttpError(400, f"a push of {len(body)} bytes is not one command packet")
    try:
        CommandPacket.decode(body)
    except (DecodeError, ValueError) as e:
        raise HttpError(400, f"not a TS 102 225 command packet: {e}") from None
    return body


def push_tpdu(packet: bytes, originating: SmsAddress, now: datetime) -> bytes:
    """The SMS-DELIVER the terminal gives the card for a pushed packet: the same TP-PID 7F,
    class-2 8-bit DCS and `02 70 00` header as the SMS trigger (3GPP TS 31.115)."""
    return SmsDeliver(
        originating=originating,
        scts=ServiceCentreTimeStamp.from_datetime(now.replace(microsecond=0)),
        header=COMMAND_HEADER,
        user_data=packet,
        pid=PID_SIM_DATA_DOWNLOAD,
        dcs=DCS_DATA_CLASS2,
    ).encode()
