"""The body of the BSF's 200 on Ub: `application/vnd.3gpp.bsf+xml` (3GPP TS 24.109 Annex C).

    <?xml version="1.0" encoding="UTF-8"?>
    <BootstrappingInfo xmlns="uri:3gpp-gba">
      <btid>B-TID</btid>                      xs:string (TS 33.220 §4.5.2)
      <lifetime>2026-12-07T12:00:00Z</lifetime>  xs:dateTime, UTC with "Z"
      <Extension>...</Extension>              optional, anything (ignored here)
    </BootstrappingInfo>

Unknown elements and attributes are ignored, as Annex C asks. Parsing is by expat with no
DTD at all: a DOCTYPE, an entity declaration or a processing instruction is refused, so no
entity expansion can happen; the body size is bounded. Every problem is `BootstrapXmlError`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from xml.parsers import expat
from xml.sax.saxutils import escape

from openscws.errors import OpenScwsError

__all__ = ["MEDIA_TYPE", "NAMESPACE", "BootstrapXmlError", "BootstrappingInfo"]

MEDIA_TYPE: Final = "application/vnd.3gpp.bsf+xml"
NAMESPACE: Final = "uri:3gpp-gba"
MAX_BODY: Final = 16384
_SEP: Final = "\x01"
_DATETIME: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z")


class BootstrapXmlError(OpenScwsError):
    """A bootstrapping body that is not a BootstrappingInfo document."""


@dataclass(frozen=True, slots=True)
class BootstrappingInfo:
    btid: str
    lifetime: datetime
    """The key's expiry, timezone-aware (UTC)."""

    def to_xml(self) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<BootstrappingInfo xmlns="{NAMESPACE}">'
            f"<btid>{escape(self.btid)}</btid>"
            f"<lifetime>{format_lifetime(self.lifetime)}</lifetime>"
            "</BootstrappingInfo>\n"
        ).encode()

    @classmethod
    def parse(cls, body: bytes) -> BootstrappingInfo:
        if len(body) > MAX_BODY:
            raise BootstrapXmlError(f"body over {MAX_BODY} bytes")
        fields = _Collector().run(body)
        btid, lifetime = fields.get("btid"), fields.get("lifetime")
        if not btid:
            raise BootstrapXmlError("no btid in BootstrappingInfo")
        if lifetime is None:
            raise BootstrapXmlError("no lifetime in BootstrappingInfo")
        return cls(btid=btid, lifetime=parse_lifetime(lifetime))


def format_lifetime(when: datetime) -> str:
    if when.tzinfo is None:
        raise BootstrapXmlError("a lifetime must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_lifetime(text: str) -> datetime:
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        raise BootstrapXmlError(f"lifetime {text[:40]!r} is not a UTC xs:dateTime ending in Z")
    try:
        y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
        return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
    except ValueError:
        raise BootstrapXmlError(f"lifetime {text[:40]!r} is not a valid date") from None


class _Collector:
    """The text of btid and lifetime directly under the BootstrappingInfo root."""

    def __init__(self) -> None:
        self.depth = 0
        self.root_ok = False
        self.current: str | None = None
        self.text: list[str] = []
        self.fields: dict[str, str] = {}

    def run(self, body: bytes) -> dict[str, str]:
        parser = expat.ParserCreate(namespace_separator=_SEP)
        parser.StartDoctypeDeclHandler = self._refuse
        parser.EntityDeclHandler = self._refuse
        parser.ProcessingInstructionHandler = self._refuse
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        try:
            parser.Parse(body, True)
        except expat.ExpatError as exc:
            raise BootstrapXmlError(f"not well-formed XML: {expat.ErrorString(exc.code)}") from None
        if not self.root_ok:
            raise BootstrapXmlError(f"the root is not {{{NAMESPACE}}}BootstrappingInfo")
        return self.fields

    def _refuse(self, *_args: object) -> None:
        raise BootstrapXmlError("DTDs, entities and processing instructions are refused")

    def _start(self, name: str, _attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if name != f"{NAMESPACE}{_SEP}BootstrappingInfo":
                raise BootstrapXmlError(
                    f"the root is {name.replace(_SEP, ' ')!r}, not BootstrappingInfo"
                )
            self.root_ok = True
        elif self.depth == 2 and name in (f"{NAMESPACE}{_SEP}btid", f"{NAMESPACE}{_SEP}lifetime"):
            local = name.split(_SEP)[1]
            if local in self.fields:
                raise BootstrapXmlError(f"{local} given twice")
            self.current, self.text = local, []

    def _end(self, _name: str) -> None:
        if self.depth == 2 and self.current is not None:
            self.fields[self.current] = "".join(self.text).strip()
            self.current = None
        self.depth -= 1

    def _data(self, data: str) -> None:
        if self.current is not None and self.depth == 2:
            self.text.append(data)
