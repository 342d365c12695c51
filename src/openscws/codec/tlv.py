"""BER-TLV and COMPREHENSION-TLV framing (ETSI TS 101 220 §7.1, TS 102 223 §6.5 and annex C).

Lengths: 00..7F in one byte, 80..FF as 81 xx (TS 101 220 §7.1.2). APDUs cap CAT data at 255
bytes, so longer forms are refused as malformed."""

from __future__ import annotations

from dataclasses import dataclass

from openscws.errors import DecodeError

CR_BIT = 0x80
"""COMPREHENSION-TLV tag b8: comprehension required (TS 102 223 §7.1.1.1)."""


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    raise ValueError(f"TLV length {n} does not fit in 255 bytes")


def pull_length(data: bytes, offset: int) -> tuple[int, int]:
    """Returns (length, offset of the value)."""
    if offset >= len(data):
        raise DecodeError("length missing", data, offset)
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if first == 0x81:
        if offset + 1 >= len(data):
            raise DecodeError("length truncated", data, offset)
        n = data[offset + 1]
        if n < 0x80:
            raise DecodeError("81 length form used for a length below 128", data, offset)
        return n, offset + 2
    raise DecodeError(f"length form {first:02X} not allowed", data, offset)


@dataclass(frozen=True, slots=True)
class ComprehensionTlv:
    """One COMPREHENSION-TLV: `tag` without the CR bit, `cr` the comprehension-required flag."""

    tag: int
    value: bytes
    cr: bool = False

    def encode(self) -> bytes:
        return encode_tag(self.tag, self.cr) + encode_length(len(self.value)) + self.value


def encode_tag(tag: int, cr: bool) -> bytes:
    if tag < 0x7F:
        return bytes((tag | (CR_BIT if cr else 0),))
    # Three-byte format: 7F, then CR in b8 of the next byte and a 15-bit tag value.
    return bytes((0x7F, ((tag >> 8) & 0x7F) | (CR_BIT if cr else 0), tag & 0xFF))


def pull_comprehension_tlvs(
    data: bytes, offset: int = 0, end: int | None = None
) -> list[ComprehensionTlv]:
    """Splits `data[offset:end]` into COMPREHENSION-TLVs; trailing bytes that do not form a
    whole object raise DecodeError."""
    stop = len(data) if end is None else end
    out: list[ComprehensionTlv] = []
    i = offset
    while i < stop:
        first = data[i]
        if first in (0x00, 0xFF, 0x80):
            raise DecodeError(f"tag {first:02X} is not a valid COMPREHENSION-TLV tag", data, i)
        if first == 0x7F:
            if i + 2 >= stop:
                raise DecodeError("three-byte tag truncated", data, i)
            cr = bool(data[i + 1] & CR_BIT)
            tag = ((data[i + 1] & 0x7F) << 8) | data[i + 2]
            i += 3
        else:
            cr = bool(first & CR_BIT)
            tag = first & 0x7F
            i += 1
        length, i = pull_length(data, i)
        if i + length > stop:
            raise DecodeError(f"value of tag {tag:02X} runs past the end", data, i)
        out.append(ComprehensionTlv(tag, data[i : i + length], cr))
        i += length
    return out


def pull_ber_tlv(data: bytes) -> tuple[int, bytes]:
    """Parses exactly one single-byte-tag BER-TLV filling `data` (a CAT template such as D0)."""
    if len(data) < 2:
        raise DecodeError("BER-TLV too short", data, 0)
    tag = data[0]
    if tag in (0x00, 0xFF):
        raise DecodeError(f"BER-TLV tag {tag:02X} is padding, not a template", data, 0)
    length, start = pull_length(data, 1)
    if start + length != len(data):
        raise DecodeError(
            f"BER-TLV length {length} does not match {len(data) - start} bytes of value",
            data,
            start,
        )
    return tag, data[start:]


def encode_ber_tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(value)) + value
