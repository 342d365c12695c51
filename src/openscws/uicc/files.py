"""The few elementary files the terminal reads (ETSI TS 102 221 §13)."""

from __future__ import annotations

from dataclasses import dataclass

MF = 0x3F00
EF_ICCID = 0x2FE2  # §13.2, transparent, 10 bytes
EF_DIR = 0x2F00  # §13.1, linear fixed


def encode_iccid(iccid: str) -> bytes:
    """ICCID digits as swapped-nibble BCD, padded with F to 10 bytes (TS 102 221 §13.2)."""
    if not iccid.isdigit() or not 18 <= len(iccid) <= 20:
        raise ValueError(f"ICCID must be 18 to 20 digits: {iccid!r}")
    digits = iccid.ljust(20, "F")
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, 20, 2))


def decode_iccid(raw: bytes) -> str:
    out: list[str] = []
    for b in raw:
        for nibble in (b & 0x0F, b >> 4):
            if nibble == 0xF:
                return "".join(out)
            out.append(str(nibble))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class ElementaryFile:
    fid: int
    data: bytes
    record_length: int = 0
    """Non-zero for a linear fixed file."""

    def fcp(self) -> bytes:
        """A minimal FCP template (TS 102 221 §11.1.1.3): descriptor, FID, size."""
        if self.record_length:
            descriptor = bytes(
                (
                    0x82,
                    0x05,
                    0x42,
                    0x21,
                    0x00,
                    self.record_length,
                    len(self.data) // self.record_length,
                )
            )
        else:
            descriptor = bytes((0x82, 0x02, 0x41, 0x21))
        body = descriptor + bytes((0x83, 0x02)) + self.fid.to_bytes(2, "big")
        body += bytes((0x80, 0x02)) + len(self.data).to_bytes(2, "big")
        return bytes((0x62, len(body))) + body
