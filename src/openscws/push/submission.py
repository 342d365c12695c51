"""A PAP push submission: the `multipart/related` HTTP body (RFC 2387 over RFC 2046 §5.1) whose
first entity is the PAP control entity (`application/xml`, a `push-message`) and whose second is
the content to push, with its own MIME headers (`Content-Type`, `X-Wap-Application-Id`). A third
(capabilities) entity is accepted and ignored. Sans-IO; every refusal is a `PapError` 2000."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from openscws.push.pap import MAX_DOCUMENT, PapCode, PapError, PushMessage, encode, parse

__all__ = [
    "MAX_SUBMISSION",
    "ContentEntity",
    "Submission",
    "build_submission",
    "parse_submission",
]

MAX_SUBMISSION: Final = MAX_DOCUMENT + 16 * 1024
"""Bytes of HTTP body accepted: the control entity plus a push content of a few hundred bytes."""
_BOUNDARY_CHARS: Final = re.compile(r"[0-9A-Za-z'()+_,\-./:=?]{1,70}\Z")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


@dataclass(frozen=True, slots=True)
class ContentEntity:
    """The pushed content: its media type, its other MIME headers and its bytes."""

    content_type: str
    body: bytes
    app_id: str | None = None
    """`X-Wap-Application-Id`: a URN (`x-oma-application:push.scws`) or an OMNA number."""


@dataclass(frozen=True, slots=True)
class Submission:
    message: PushMessage
    content: ContentEntity


_PARAM: Final = re.compile(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)')
"""One `name=value` parameter of a MIME header (RFC 2045 §5.1), a quoted-string value too."""


def _params(header: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = header.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        name, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        params[name] = value
    return kind.strip().lower(), params


def build_submission(
    message: PushMessage, content: ContentEntity, boundary: str
) -> tuple[str, bytes]:
    """(`Content-Type` header value, body) for the HTTP POST to the PPG."""
    if not _BOUNDARY_CHARS.match(boundary):
        raise ValueError(f"boundary {boundary!r} is not an RFC 2046 boundary")
    if not _TOKEN.match(content.content_type.split(";")[0].replace("/", "")):
        raise ValueError(f"content type {content.content_type!r}")
    control = encode(message)
    headers = f"Content-Type: {content.content_type}\r\n"
    if content.app_id is not None:
        headers += f"X-Wap-Application-Id: {content.app_id}\r\n"
    body = b"".join(
        (
            f"--{boundary}\r\nContent-Type: application/xml; charset=UTF-8\r\n\r\n".encode(),
            control,
            f"\r\n--{boundary}\r\n{headers}\r\n".encode(),
            content.body,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    header = f'multipart/related; boundary="{boundary}"; type="application/xml"'
    return header, body


def _part(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        if raw.startswith(b"\r\n"):
            return {}, raw[2:]
        raise PapError(PapCode.BAD_REQUEST, "an entity has no header/body separator")
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip() or not name.isascii() or not value.isascii():
            raise PapError(PapCode.BAD_REQUEST, "an entity header is malformed")
        headers[name.strip().decode().lower()] = value.strip().decode()
    return headers, body


def parse_submission(content_type: str, body: bytes) -> Submission:
    """The push-message and the content of a `multipart/related` submission."""
    if len(body) > MAX_SUBMISSION:
        raise PapError(PapCode.BAD_REQUEST, f"submission of {len(body)} bytes is too large")
    kind, params = _params(content_type)
    if kind != "multipart/related":
        raise PapError(PapCode.BAD_REQUEST, f"{kind[:40]!r} is not multipart/related")
    boundary = params.get("boundary", "")
    if not _BOUNDARY_CHARS.match(boundary):
        raise PapError(PapCode.BAD_REQUEST, "multipart/related without a valid boundary")
    delimiter = b"--" + boundary.encode()
    if body.startswith(delimiter):
        body = b"\r\n" + body
    chunks = body.split(b"\r\n" + delimiter)
    if len(chunks) < 3:
        raise PapError(PapCode.BAD_REQUEST, "a submission has a control and a content entity")
    parts: list[tuple[dict[str, str], bytes]] = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        line_end = chunk.find(b"\r\n")
        if line_end < 0 or chunk[:line_end].strip(b" \t"):
            raise PapError(PapCode.BAD_REQUEST, "text after a boundary")
        parts.append(_part(chunk[line_end + 2 :]))
    if not closed:
        raise PapError(PapCode.BAD_REQUEST, "the multipart has no close delimiter")
    if len(parts) not in (2, 3):
        raise PapError(PapCode.BAD_REQUEST, f"{len(parts)} entities; expected 2 or 3")
    (control_headers, control), (content_headers, content) = parts[0], parts[1]
    control_kind, _ = _params(control_headers.get("content-type", ""))
    if control_kind != "application/xml":
        raise PapError(PapCode.BAD_REQUEST, "the first entity is not application/xml")
    message = parse(control)
    if not isinstance(message, PushMessage):
        raise PapError(PapCode.BAD_REQUEST, "the control entity is not a push-message")
    content_kind = content_headers.get("content-type")
    if not content_kind:
        raise PapError(PapCode.BAD_REQUEST, "the content entity has no Content-Type")
    return Submission(
        message, ContentEntity(content_kind, content, content_headers.get("x-wap-application-id"))
    )
