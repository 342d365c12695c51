"""The access rules the card holds for the SCWS Gateway, and their encoding.

The rules are coded as GlobalPlatform Secure Element Access Control rules (GPD_SPE_013,
"SEAC"), the scheme handsets already enforce for the ARA-M: a rule is a REF-AR-DO pairing a
REF-DO (which application) with an AR-DO (what it may do), and GET DATA answers a
Response-ALL-REF-AR-DO holding all of them. Every data object is declared once in `DOS`, with
the SEAC table it comes from (SEAC v1.1 numbering).

**The SCWS part is the project's own reading.** The OMA SCWS specification's access control
policy format could not be read, so the SCWS terms live in one data object of our own inside
the AR-DO, the SCWS-AR-DO (tag FF53), which a SEAC enforcer that does not know it skips as an
unknown AR-DO member:

    FF53  SCWS-AR-DO                       (project extension, constructed)
      80  SCWS access: 00 never, 01 always (mirrors APDU-AR-DO's generic rule; mandatory)
      81  SCWS port, 2 bytes big-endian    (one per port; at least one)
      82  URL path prefix, UTF-8           (zero or more; none = the whole port)
      83  local user id, 4 bytes           (optional: the application must also run as it)

Identity: DeviceAppID-REF-DO (C1) carries the SHA-1 (20 bytes) or SHA-256 (32 bytes) of the
application, or nothing ("any application"); on a Linux terminal the hash is taken over the
client's executable file (`aio/peer.py`). The REF-DO written here names the implicitly selected
application (C0 00: the SCWS is reached over BIP, not by SELECT) and the AR-DO carries APDU-AR-DO
"never", so an SCWS rule never grants APDU access to a SEAC enforcer. Decoding accepts any AID
form and keeps the SEAC members it does not use (APDU, NFC, Android PERM and PKG DOs).

This module is sans-IO: bytes in, typed rules or `AcpDecodeError` out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from openscws.errors import DecodeError

__all__ = [
    "ANY_PORTS",
    "DOS",
    "MAX_RULES_BYTES",
    "SCWS_PORTS",
    "AccessRule",
    "AcpDecodeError",
    "DoSpec",
    "RuleSet",
    "decode_refresh_tag",
    "decode_rules",
    "encode_refresh_tag",
    "encode_rules",
]

SCWS_PORTS: Final = (3516, 4116)
"""The SCWS ports (IANA "smartcard-port" 3516, "smartcard-tls" 4116)."""
ANY_PORTS: Final = frozenset(SCWS_PORTS)
MAX_RULES_BYTES: Final = 0xFFFF
"""Largest Response-ALL-REF-AR-DO value accepted (a two-byte BER length)."""
MAX_PATH_BYTES: Final = 255


class AcpDecodeError(DecodeError):
    """Rules that do not parse: the data object and why, in SEAC terms."""


class Kind(enum.Enum):
    CONSTRUCTED = "constructed"
    PRIMITIVE = "primitive"


@dataclass(frozen=True, slots=True)
class DoSpec:
    """One data object: its tag, name, where it is defined, and the lengths it may have
    (primitive) or the children it may hold (constructed: tag -> (min, max) occurrences)."""

    tag: int
    name: str
    clause: str
    kind: Kind
    lengths: frozenset[int] | range = range(0, MAX_RULES_BYTES + 1)
    children: tuple[tuple[int, int, int], ...] = ()


_C = Kind.CONSTRUCTED
_P = Kind.PRIMITIVE
_MANY = 1 << 16

# Tags.
RESPONSE_ALL = 0xFF40
REFRESH_TAG = 0xDF20
REF_AR_DO = 0xE2
REF_DO = 0xE1
AID_REF_DO = 0x4F
IMPLICIT_AID_REF_DO = 0xC0
DEVICE_APP_ID_REF_DO = 0xC1
PKG_REF_DO = 0xCA
AR_DO = 0xE3
APDU_AR_DO = 0xD0
NFC_AR_DO = 0xD1
PERM_AR_DO = 0xDB
SCWS_AR_DO = 0xFF53
SCWS_ACCESS = 0x80
SCWS_PORT = 0x81
SCWS_PATH = 0x82
SCWS_UID = 0x83

DOS: Final[dict[int, DoSpec]] = {
    s.tag: s
    for s in (
        DoSpec(
            RESPONSE_ALL,
            "Response-ALL-REF-AR-DO",
            "GPD_SPE_013 §4.1.2, Table 4-2",
            _C,
            children=((REF_AR_DO, 0, _MANY),),
        ),
        DoSpec(REFRESH_TAG, "Response-Refresh-Tag-DO", "GPD_SPE_013 Table 4-4", _P, frozenset({8})),
        DoSpec(
            REF_AR_DO,
            "REF-AR-DO",
            "GPD_SPE_013 Table 6-6",
            _C,
            children=((REF_DO, 1, 1), (AR_DO, 1, 1)),
        ),
        DoSpec(
            REF_DO,
            "REF-DO",
            "GPD_SPE_013 Table 6-5",
            _C,
            # One AID form (4F or C0), the DeviceAppID, and Android's package name.
            children=(
                (AID_REF_DO, 0, 1),
                (IMPLICIT_AID_REF_DO, 0, 1),
                (DEVICE_APP_ID_REF_DO, 1, 1),
                (PKG_REF_DO, 0, 1),
            ),
        ),
        DoSpec(
            AID_REF_DO,
            "AID-REF-DO",
            "GPD_SPE_013 Table 6-3",
            _P,
            # Empty: every SE application; else an AID (ISO 7816-4: 5 to 16 bytes).
            frozenset({0, *range(5, 17)}),
        ),
        DoSpec(
            IMPLICIT_AID_REF_DO,
            "AID-REF-DO (implicitly selected application)",
            "GPD_SPE_013 Table 6-3",
            _P,
            frozenset({0}),
        ),
        DoSpec(
            DEVICE_APP_ID_REF_DO,
            "DeviceAppID-REF-DO",
            "GPD_SPE_013 Table 6-4 (20 bytes SHA-1; 32 bytes SHA-256 from v1.1)",
            _P,
            frozenset({0, 20, 32}),
        ),
        DoSpec(
            PKG_REF_DO,
            "PKG-REF-DO",
            "Android UICC carrier privileges extension",
            _P,
            range(1, 128),
        ),
        DoSpec(
            AR_DO,
            "AR-DO",
            "GPD_SPE_013 Table 6-7",
            _C,
            children=(
                (APDU_AR_DO, 0, 1),
                (NFC_AR_DO, 0, 1),
                (PERM_AR_DO, 0, 1),
                (SCWS_AR_DO, 0, 1),
            ),
        ),
        DoSpec(
            APDU_AR_DO,
            "APDU-AR-DO",
            "GPD_SPE_013 Table 6-8 (1 byte never/always, or 8-byte header/mask filters)",
            _P,
            frozenset({1, *range(8, 256, 8)}),
        ),
        DoSpec(NFC_AR_DO, "NFC-AR-DO", "GPD_SPE_013 Table 6-9", _P, frozenset({1})),
        DoSpec(
            PERM_AR_DO,
            "PERM-AR-DO",
            "Android UICC carrier privileges extension",
            _P,
            frozenset({8}),
        ),
        DoSpec(
            SCWS_AR_DO,
            "SCWS-AR-DO",
            "openscws extension (the project's reading of the SCWS access control policy)",
            _C,
            children=((SCWS_ACCESS, 1, 1), (SCWS_PORT, 1, 8), (SCWS_PATH, 0, 64), (SCWS_UID, 0, 1)),
        ),
    )
}
"""Every data object of the rules, declared once."""

SCWS_DOS: Final[dict[int, DoSpec]] = {
    s.tag: s
    for s in (
        DoSpec(SCWS_ACCESS, "SCWS access", "openscws extension", _P, frozenset({1})),
        DoSpec(SCWS_PORT, "SCWS port", "openscws extension", _P, frozenset({2})),
        DoSpec(SCWS_PATH, "SCWS path prefix", "openscws extension", _P, range(1, 256)),
        DoSpec(SCWS_UID, "SCWS user id", "openscws extension", _P, frozenset({4})),
    )
}
"""The SCWS-AR-DO's members (context-specific tags, meaningful inside it only)."""


# -- typed rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One REF-AR-DO. `app_hash` empty = any application; `uid` None = any user. `ports`
    empty means the rule has no SCWS-AR-DO (a SEAC rule for something else: ignored by the
    SCWS Gateway). `paths` empty = the whole port."""

    app_hash: bytes = b""
    uid: int | None = None
    ports: frozenset[int] = ANY_PORTS
    paths: tuple[str, ...] = ()
    allow: bool = True
    aid: bytes | None = None
    """The AID-REF-DO's AID; None = implicitly selected application (C0)."""
    other: tuple[tuple[int, bytes], ...] = field(default=(), compare=True)
    """SEAC members of REF-DO and AR-DO kept as they came (tag, value): PKG, APDU, NFC, PERM."""

    def __post_init__(self) -> None:
        if len(self.app_hash) not in (0, 20, 32):
            raise ValueError("an application hash is SHA-1 (20 bytes) or SHA-256 (32 bytes)")
        if self.uid is not None and not 0 <= self.uid < 1 << 32:
            raise ValueError("a user id is 0 to 4294967295")
        if not all(0 < p < 1 << 16 for p in self.ports) or len(self.ports) > 8:
            raise ValueError("ports are 1 to 65535, at most 8")
        for path in self.paths:
            if not path.startswith("/") or not 0 < len(path.encode()) <= MAX_PATH_BYTES:
                raise ValueError(f"a path prefix is absolute and at most 255 bytes: {path!r}")

    @property
    def scws(self) -> bool:
        """The rule speaks of the SCWS (it has an SCWS-AR-DO)."""
        return bool(self.ports)

    @property
    def identity(self) -> str:
        """The identity in the tools' notation: sha256:<hex>, sha1:<hex>, uid:<n>, any, or a
        hash and a user id joined by '+'."""
        parts = []
        if self.app_hash:
            kind = "sha256" if len(self.app_hash) == 32 else "sha1"
            parts.append(f"{kind}:{self.app_hash.hex()}")
        if self.uid is not None:
            parts.append(f"uid:{self.uid}")
        return "+".join(parts) or "any"

    def describe(self) -> str:
        ports = ",".join(str(p) for p in sorted(self.ports))
        paths = " paths " + ",".join(self.paths) if self.paths else ""
        verb = "allow" if self.allow else "deny"
        return f"{verb} {self.identity} ports {ports}{paths}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[AccessRule, ...] = ()

    @property
    def scws_rules(self) -> tuple[AccessRule, ...]:
        return tuple(r for r in self.rules if r.scws)


# -- BER-TLV (ISO/IEC 7816-4 §5.2; SEAC uses one- and two-byte tags) ----------------------------


def _pull_tag(data: bytes, i: int, end: int) -> tuple[int, int]:
    first = data[i]
    if first & 0x1F != 0x1F:
        return first, i + 1
    if i + 1 >= end:
        raise AcpDecodeError("two-byte tag truncated", data, i)
    second = data[i + 1]
    if second & 0x80:
        raise AcpDecodeError("tags longer than two bytes are not used by SEAC", data, i)
    return (first << 8) | second, i + 2


def _pull_length(data: bytes, i: int, end: int) -> tuple[int, int]:
    if i >= end:
        raise AcpDecodeError("length missing", data, i)
    first = data[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    if n == 0 or n > 2:
        raise AcpDecodeError(f"length form {first:02X} not allowed", data, i)
    if i + 1 + n > end:
        raise AcpDecodeError("length truncated", data, i)
    value = int.from_bytes(data[i + 1 : i + 1 + n], "big")
    return value, i + 1 + n


def _split(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The TLVs in data[start:end] as (tag, value start, value end)."""
    out = []
    i = start
    while i < end:
        tag, i = _pull_tag(data, i, end)
        length, i = _pull_length(data, i, end)
        if i + length > end:
            raise AcpDecodeError(f"value of tag {tag:X} runs past its container", data, i)
        out.append((tag, i, i + length))
        i += length
    return out


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    raise ValueError(f"rules of {n} bytes are too large")


def _tlv(tag: int, value: bytes) -> bytes:
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    return head + _encode_length(len(value)) + value


def _children(
    data: bytes, start: int, end: int, spec: DoSpec, table: dict[int, DoSpec]
) -> dict[int, list[bytes]]:
    """The members of a constructed DO, each checked against its DoSpec and counted against
    `spec.children`; AcpDecodeError names the DO at fault."""
    allowed = {tag: (lo, hi) for tag, lo, hi in spec.children}
    found: dict[int, list[bytes]] = {}
    try:
        items = _split(data, start, end)
    except AcpDecodeError as e:
        raise AcpDecodeError(f"in {spec.name}: {e.reason}", data, e.offset) from None
    for tag, a, b in items:
        child = table.get(tag)
        if child is None or tag not in allowed:
            raise AcpDecodeError(f"{spec.name} may not hold tag {tag:X}", data, a)
        if b - a not in child.lengths:
            raise AcpDecodeError(f"{child.name} ({child.clause}) of {b - a} bytes", data, a)
        found.setdefault(tag, []).append(data[a:b])
    for tag, (lo, hi) in allowed.items():
        n = len(found.get(tag, ()))
        if not lo <= n <= hi:
            name = table[tag].name
            raise AcpDecodeError(f"{spec.name} holds {n} {name} (allowed {lo} to {hi})", data, 0)
    return found


def _whole(data: bytes, tag: int) -> bytes:
    """The value of the single DO `tag` that must fill `data`."""
    if not data:
        raise AcpDecodeError(f"no {DOS[tag].name}", data, 0)
    items = _split(data, 0, len(data))
    if len(items) != 1 or items[0][0] != tag:
        raise AcpDecodeError(f"expected one {DOS[tag].name}", data, 0)
    _, a, b = items[0]
    if b - a not in DOS[tag].lengths:
        raise AcpDecodeError(f"{DOS[tag].name} of {b - a} bytes", data, a)
    return data[a:b]


def _decode_scws(value: bytes) -> tuple[bool, frozenset[int], tuple[str, ...], int | None]:
    found = _children(value, 0, len(value), DOS[SCWS_AR_DO], SCWS_DOS)
    access = found[SCWS_ACCESS][0][0]
    if access not in (0, 1):
        raise AcpDecodeError(f"SCWS access {access:02X} is neither 00 never nor 01 always", value)
    ports = [int.from_bytes(p, "big") for p in found[SCWS_PORT]]
    if 0 in ports or len(set(ports)) != len(ports):
        raise AcpDecodeError("SCWS port 0 or repeated", value)
    paths = []
    for raw in found.get(SCWS_PATH, []):
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AcpDecodeError("SCWS path prefix is not UTF-8", value) from None
        if not path.startswith("/") or not path.isprintable():
            raise AcpDecodeError(f"SCWS path prefix {path[:40]!r} is not an absolute path", value)
        paths.append(path)
    uid = int.from_bytes(found[SCWS_UID][0], "big") if SCWS_UID in found else None
    return access == 1, frozenset(ports), tuple(paths), uid


def _decode_rule(value: bytes) -> AccessRule:
    parts = _children(value, 0, len(value), DOS[REF_AR_DO], DOS)
    ref = _children(parts[REF_DO][0], 0, len(parts[REF_DO][0]), DOS[REF_DO], DOS)
    if (AID_REF_DO in ref) == (IMPLICIT_AID_REF_DO in ref):
        raise AcpDecodeError("REF-DO needs exactly one AID-REF-DO (4F or C0)", value)
    ar = _children(parts[AR_DO][0], 0, len(parts[AR_DO][0]), DOS[AR_DO], DOS)
    other = [(PKG_REF_DO, v) for v in ref.get(PKG_REF_DO, [])]
    other += [(t, v) for t in (APDU_AR_DO, NFC_AR_DO, PERM_AR_DO) for v in ar.get(t, [])]
    if SCWS_AR_DO in ar:
        allow, ports, paths, uid = _decode_scws(ar[SCWS_AR_DO][0])
    else:
        allow, ports, paths, uid = False, frozenset(), (), None
    return AccessRule(
        app_hash=ref[DEVICE_APP_ID_REF_DO][0],
        uid=uid,
        ports=ports,
        paths=paths,
        allow=allow,
        aid=ref[AID_REF_DO][0] if AID_REF_DO in ref else None,
        other=tuple(other),
    )


def decode_rules(data: bytes) -> RuleSet:
    """A Response-ALL-REF-AR-DO (FF40, the whole GET DATA answer) -> RuleSet. Anything else
    raises AcpDecodeError; nothing else is raised."""
    value = _whole(data, RESPONSE_ALL)
    found = _children(value, 0, len(value), DOS[RESPONSE_ALL], DOS)
    try:
        return RuleSet(tuple(_decode_rule(v) for v in found.get(REF_AR_DO, [])))
    except ValueError as e:  # AccessRule's own checks (e.g. more than 8 ports)
        raise AcpDecodeError(str(e), data) from None


def decode_refresh_tag(data: bytes) -> bytes:
    """A Response-Refresh-Tag-DO (DF20, 8 bytes) -> the tag."""
    return _whole(data, REFRESH_TAG)


def encode_refresh_tag(tag: bytes) -> bytes:
    if len(tag) != 8:
        raise ValueError("a refresh tag is 8 bytes")
    return _tlv(REFRESH_TAG, tag)


def _encode_rule(rule: AccessRule) -> bytes:
    aid = _tlv(IMPLICIT_AID_REF_DO, b"") if rule.aid is None else _tlv(AID_REF_DO, rule.aid)
    ref = aid + _tlv(DEVICE_APP_ID_REF_DO, rule.app_hash)
    ref += b"".join(_tlv(t, v) for t, v in rule.other if t == PKG_REF_DO)
    kept = {t: v for t, v in rule.other if t != PKG_REF_DO}
    kept.setdefault(APDU_AR_DO, b"\x00")  # never: an SCWS rule grants no APDU access
    ar = b"".join(_tlv(t, kept[t]) for t in (APDU_AR_DO, NFC_AR_DO, PERM_AR_DO) if t in kept)
    if rule.scws:
        scws = _tlv(SCWS_ACCESS, b"\x01" if rule.allow else b"\x00")
        scws += b"".join(_tlv(SCWS_PORT, p.to_bytes(2, "big")) for p in sorted(rule.ports))
        scws += b"".join(_tlv(SCWS_PATH, p.encode()) for p in rule.paths)
        if rule.uid is not None:
            scws += _tlv(SCWS_UID, rule.uid.to_bytes(4, "big"))
        ar += _tlv(SCWS_AR_DO, scws)
    return _tlv(REF_AR_DO, _tlv(REF_DO, ref) + _tlv(AR_DO, ar))


def encode_rules(rules: RuleSet) -> bytes:
    """The Response-ALL-REF-AR-DO holding `rules` (what GET DATA FF40 answers, whole)."""
    return _tlv(RESPONSE_ALL, b"".join(_encode_rule(r) for r in rules.rules))
