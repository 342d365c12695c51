"""The one engine that turns a declared layout of data objects into bytes and back.

A layout lists a message's data objects in the order TS 102 223 requires (§6.6 says the order is
significant: MTK's BIP parser tells a local address from a destination by it). Decoding walks
the TLVs and the layout together. An object the layout does not expect is an error if its CR
bit is set (the terminal answers 32 "command data not understood") and is kept in `extra`
otherwise, so that nothing is lost on re-encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openscws.cat.objects import DataObject
from openscws.codec.tlv import ComprehensionTlv, encode_length, encode_tag, pull_comprehension_tlvs
from openscws.errors import DecodeError


@dataclass(frozen=True, slots=True)
class Slot:
    """One place in a layout: the field name, the object class, and how often it may occur."""

    field: str
    kind: type[DataObject]
    required: bool = False
    repeated: bool = False


class MissingObject(DecodeError):
    """A mandatory data object is absent (CAT result 36, required values missing)."""


class UnexpectedObject(DecodeError):
    """A data object with the CR bit set that this message does not define (CAT result 32)."""


def decode_objects(
    slots: tuple[Slot, ...], data: bytes, offset: int = 0, *, strict: bool = True
) -> tuple[dict[str, Any], tuple[ComprehensionTlv, ...], frozenset[int]]:
    """Returns (field values, extra objects, tags that arrived with CR clear). With `strict`
    off, unexpected objects are kept in `extra` even when their CR bit is set."""
    tlvs = pull_comprehension_tlvs(data, offset)
    values: dict[str, Any] = {}
    extra: list[ComprehensionTlv] = []
    cr_clear: set[int] = set()
    pos = 0
    for tlv in tlvs:
        if not tlv.cr:
            cr_clear.add(tlv.tag)
        # Advance through the layout to the first slot that takes this tag.
        j = pos
        while j < len(slots) and slots[j].kind.TAG != tlv.tag:
            j += 1
        if j == len(slots):
            if tlv.cr and strict:
                raise UnexpectedObject(f"unexpected data object tag {tlv.tag:02X}", data, offset)
            extra.append(tlv)
            continue
        slot = slots[j]
        obj = slot.kind.from_value(tlv.value)
        if slot.repeated:
            values.setdefault(slot.field, []).append(obj)
            pos = j
        else:
            if slot.field in values:
                if tlv.cr and strict:
                    raise UnexpectedObject(f"data object {tlv.tag:02X} repeated", data, offset)
                extra.append(tlv)
                continue
            values[slot.field] = obj
            pos = j + 1
    for slot in slots:
        if slot.repeated:
            values[slot.field] = tuple(values.get(slot.field, ()))
        elif slot.field not in values:
            if slot.required:
                raise MissingObject(f"mandatory {slot.kind.__name__} missing", data, offset)
            values[slot.field] = None
    return values, tuple(extra), frozenset(cr_clear)


def encode_objects(
    slots: tuple[Slot, ...],
    message: object,
    extra: tuple[ComprehensionTlv, ...] = (),
    cr_clear: frozenset[int] = frozenset(),
) -> bytes:
    parts: list[bytes] = []
    for slot in slots:
        got = getattr(message, slot.field)
        if got is None:
            continue
        for obj in got if slot.repeated else (got,):
            value = obj.value()
            tag = obj.TAG
            parts.append(encode_tag(tag, tag not in cr_clear) + encode_length(len(value)) + value)
    parts.extend(tlv.encode() for tlv in extra)
    return b"".join(parts)
