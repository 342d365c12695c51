"""Draws site/img/card.png, the demo site's picture of a SIM card, with a tiny PNG writer.

Run once by hand (``python -m openscws.demo.make_card_png``); the PNG is committed, so
nothing runs this at install or serve time. Pure Python: zlib + struct, 3x3 supersampling."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

WIDTH, HEIGHT = 200, 120
SAMPLES = 3

_Rgba = tuple[float, float, float, float]


def png_bytes(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    """A truecolour-with-alpha, 8-bit PNG (ISO/IEC 15948) from rows of RGBA bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rgba_rows)  # filter type 0 on every row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _in_rounded_rect(
    x: float, y: float, x0: float, y0: float, x1: float, y1: float, r: float
) -> bool:
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[float, float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _card(x: float, y: float) -> _Rgba | None:
    """Colour of the drawing at (x, y), or None for transparent background."""
    notch = 26.0  # the cut corner of a SIM card, top right
    if not _in_rounded_rect(x, y, 4, 4, 196, 116, 10) or (x - (196 - notch)) > (y - 4):
        return None
    edge = not _in_rounded_rect(x, y, 6, 6, 194, 114, 8) or (x - (196 - notch)) > (y - 4) - 2.8
    if edge:
        return (*_mix((15, 40, 95), (10, 28, 70), y / HEIGHT), 1.0)
    # Chip: gold, with the eight ISO 7816-2 contact areas separated by darker lines.
    if _in_rounded_rect(x, y, 26, 34, 84, 86, 7):
        gold = _mix((246, 218, 120), (196, 152, 40), (y - 34) / 52)
        line = abs(y - 60) < 1.1 or (abs(x - 55) < 1.1 and 44 <= y <= 76)
        line = line or (abs(y - 47) < 0.9 and not 48 <= x <= 62)
        line = line or (abs(y - 73) < 0.9 and not 48 <= x <= 62)
        line = (
            line or (abs(x - 48) < 0.9 and 42 <= y <= 78) or (abs(x - 62) < 0.9 and 42 <= y <= 78)
        )
        if line:
            return (160, 118, 28, 1.0)
        return (*gold, 1.0)
    # Radio waves: the Bearer Independent Protocol link, as three arcs.
    dx, dy = x - 118, y - 86
    dist = math.hypot(dx, dy)
    angle = math.degrees(math.atan2(-dy, dx))
    if 25 <= angle <= 90 + 65:
        for radius in (14.0, 26.0, 38.0):
            if abs(dist - radius) < 2.6:
                return (255, 255, 255, 0.92)
    if dist < 4.5:
        return (255, 255, 255, 0.95)
    # Two lines of "text" at the bottom right.
    for row, length in ((100, 60), (107, 40)):
        if abs(y - row) < 1.6 and 110 <= x <= 110 + length:
            return (200, 215, 255, 0.75)
    body = _mix((37, 99, 235), (30, 58, 138), (x / WIDTH + y / HEIGHT) / 2)
    return (*body, 1.0)


def draw() -> bytes:
    rows = []
    step = 1 / SAMPLES
    for py in range(HEIGHT):
        row = bytearray()
        for px in range(WIDTH):
            r = g = b = a = 0.0
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    colour = _card(px + (sx + 0.5) * step, py + (sy + 0.5) * step)
                    if colour is not None:
                        alpha = colour[3]
                        r += colour[0] * alpha
                        g += colour[1] * alpha
                        b += colour[2] * alpha
                        a += alpha
            n = SAMPLES * SAMPLES
            if a == 0:
                row += b"\x00\x00\x00\x00"
            else:
                row += bytes((round(r / a), round(g / a), round(b / a), round(255 * a / n)))
        rows.append(bytes(row))
    return png_bytes(WIDTH, HEIGHT, rows)


if __name__ == "__main__":
    target = Path(__file__).with_name("site") / "img" / "card.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(draw())
    print(f"wrote {target}")
