"""The SCWS admin-session push, sans-IO: application ids, the OMA push feature tag, the SIP
MESSAGE a PPG sends (RFC 3428) and the checks a push client makes on one.

The pushed content is the TS 102 225 secured command packet the SMS trigger carries
(`ras.trigger.build_trigger`: CPL to the end, GP Amendment B triggering parameters inside),
unchanged; the terminal hands it to the card in the same SMS-PP data download ENVELOPE as an
SMS, so the card's counter, checksum and TAR checks stay one code path.

The project's reading where the public texts we could read are silent:
- the application is named in the Contact and Accept-Contact feature tag
  `+g.oma.pusheventapp="push.scws"` (RFC 3840/3841; the value is the application id without its
  `x-oma-application:` prefix, as public SUPL and MMS usage of the tag has it), and the full id
  rides in an `X-Wap-Application-Id` header as well;
- the body's Content-Type is `application/octet-stream` (the command packet is opaque to SIP);
- the PPG's identity is the `P-Asserted-Identity` (RFC 3325) a trusted proxy asserts, or the
  From URI when the PPG reaches the client directly on loopback."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from openscws.errors import OpenScwsError
from openscws.push.sip import BRANCH_MAGIC, NameAddr, SipError, SipRequest, request

__all__ = [
    "FEATURE_TAG",
    "PUSH_CONTENT_TYPE",
    "SCWS_APP_ID",
    "SCWS_APP_NUMBER",
    "PushRefused",
    "ReceivedPush",
    "accept_contact",
    "app_id_of",
    "build_push",
    "check_push",
    "contact_apps",
    "feature_value",
]

SCWS_APP_ID: Final = "x-oma-application:push.scws"
"""OMNA Push Application ID registry: 0x9065, the SCWS Push Gateway."""
SCWS_APP_NUMBER: Final = 0x9065
PUSH_CONTENT_TYPE: Final = "application/octet-stream"
FEATURE_TAG: Final = "+g.oma.pusheventapp"
MAX_PUSH_BODY: Final = 1024
"""Bytes of pushed content accepted; a trigger packet fits one SMS (at most 137 bytes)."""

_KNOWN_NUMBERS: Final[dict[int, str]] = {SCWS_APP_NUMBER: SCWS_APP_ID}
_URN: Final = re.compile(r"x-(?:wap|oma)-application:([A-Za-z0-9.\-_*]+)\Z")


class PushRefused(OpenScwsError):
    """A MESSAGE the push client does not take; `status` is the SIP response to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"SIP {status}: {reason}")
        self.status = status
        self.reason = reason


def app_id_of(value: str) -> str:
    """The URN form of an application id given as a URN, a decimal or a 0x number."""
    value = value.strip()
    if _URN.match(value):
        return value
    try:
        number = int(value, 16) if value.lower().startswith("0x") else int(value)
    except ValueError:
        raise ValueError(f"application id {value[:40]!r}") from None
    if number not in _KNOWN_NUMBERS:
        raise ValueError(f"application id {value[:40]!r} is not one this project knows")
    return _KNOWN_NUMBERS[number]


def feature_value(app_id: str) -> str:
    """`push.scws` for `x-oma-application:push.scws`: a token list element of RFC 3840."""
    m = _URN.match(app_id_of(app_id))
    assert m is not None
    return m.group(1)


def accept_contact(app_id: str) -> str:
    return f'*;{FEATURE_TAG}="{feature_value(app_id)}";require;explicit'


def contact_apps(contact: str) -> frozenset[str]:
    """The application values a Contact (or Accept-Contact) advertises in the feature tag."""
    rest = contact.rsplit(">", 1)[1] if ">" in contact else contact.partition(";")[2]
    params = {
        k.strip().lower(): v.strip()
        for k, _, v in (p.partition("=") for p in rest.split(";"))
        if k.strip()
    }
    raw = params.get(FEATURE_TAG)
    if not raw or not (raw.startswith('"') and raw.endswith('"')):
        return frozenset()
    return frozenset(v.strip() for v in raw[1:-1].split(",") if v.strip())


def build_push(
    *,
    target: str,
    ppg: str,
    packet: bytes,
    via_host: str,
    via_port: int,
    transport: str,
    branch: str,
    from_tag: str,
    call_id: str,
    cseq: int = 1,
    request_uri: str | None = None,
    app_id: str = SCWS_APP_ID,
) -> SipRequest:
    """The SIP MESSAGE carrying one push: Request-URI the contact (direct) or the AOR (through
    a proxy), To the AOR `target`, From the PPG identity."""
    if not branch.startswith(BRANCH_MAGIC):
        raise ValueError("an RFC 3261 branch starts with z9hG4bK")
    if len(packet) > MAX_PUSH_BODY:
        raise ValueError(f"a push of {len(packet)} bytes exceeds {MAX_PUSH_BODY}")
    return request(
        "MESSAGE",
        request_uri or target,
        [
            ("Via", f"SIP/2.0/{transport.upper()} {via_host}:{via_port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{ppg}>;tag={from_tag}"),
            ("To", f"<{target}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} MESSAGE"),
            ("Accept-Contact", accept_contact(app_id)),
            ("X-Wap-Application-Id", app_id),
            ("Content-Type", PUSH_CONTENT_TYPE),
        ],
        packet,
    )


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    app_id: str
    sender: str
    content_type: str
    body: bytes


def check_push(req: SipRequest, *, trusted: frozenset[str], serves: frozenset[str]) -> ReceivedPush:
    """What a push client checks before dispatching a MESSAGE: a sender in `trusted` (403),
    an application it `serves` (488, as no contact of ours takes that feature), a body of a
    sane size and type (415/413)."""
    if req.method != "MESSAGE":
        raise PushRefused(405, f"{req.method} is not a push")
    try:
        asserted = req.header("P-Asserted-Identity")
        sender = NameAddr.parse(asserted or req.header("From") or "").uri
    except SipError:
        raise PushRefused(400, "no sender identity") from None
    if sender.lower() not in {t.lower() for t in trusted}:
        raise PushRefused(403, f"{sender[:60]} is not a trusted PPG")
    app = req.header("X-Wap-Application-Id")
    try:
        app_id = app_id_of(app) if app else None
    except ValueError:
        app_id = None
    if app_id is None:
        values = contact_apps(req.header("Accept-Contact") or "")
        found = [a for a in serves if feature_value(a) in values]
        app_id = found[0] if found else None
    if app_id is None or app_id not in serves:
        raise PushRefused(488, "no application here for this push")
    content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type not in (PUSH_CONTENT_TYPE, "application/vnd.oma.push"):
        raise PushRefused(415, f"content type {content_type[:40]!r}")
    if not req.body or len(req.body) > MAX_PUSH_BODY:
        raise PushRefused(400, f"a push body of {len(req.body)} bytes")
    return ReceivedPush(app_id, sender, content_type, req.body)
