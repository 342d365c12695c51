"""Headless Chromium browses the demo site through the BIP gateway.

The screenshot shows the stylesheet and the picture really arrived: the hero band has the
CSS gradient, the page background is the CSS paper colour, and the chip of the card picture
is gold. The `--trace` of the APDUs shows the requests inside RECEIVE DATA."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

WIDTH, HEIGHT = 1024, 768


def decode_png(data: bytes, max_rows: int | None = None) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of 8-bit samples, channels): a minimal decoder for
    non-interlaced 8-bit RGB/RGBA PNGs, enough for a browser screenshot."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8, depth
            assert colour in (2, 6), colour
            assert interlace == 0
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        elif kind == b"IEND":
            break
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(min(height, max_rows or height)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        else:
            assert kind == 0, f"bad filter {kind}"
        rows.append(bytes(line))
        prev = line
    return width, height, rows, channels


def pixel(rows: list[bytes], channels: int, x: int, y: int) -> tuple[int, int, int]:
    r, g, b = rows[y][x * channels : x * channels + 3]
    return r, g, b


@pytest.fixture
def chromium(need_tool: Callable[[str, str], str], tmp_path: Path) -> Callable[..., bytes]:
    exe = need_tool("chromium", "chromium")

    def browse(url: str, *mode: str) -> bytes:
        profile = tmp_path / "chromium-profile"
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            *mode,
            url,
        ]
        env = {**os.environ, "HOME": str(tmp_path)}
        proc = subprocess.run(args, capture_output=True, timeout=90, env=env, check=False)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        return proc.stdout

    return browse


def test_chromium_renders_demo_site(start_up, chromium, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sp = start_up("--trace")
    shot = tmp_path / "demo.png"
    chromium(sp.base_url + "/", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert len(data) > 20_000  # a rendered page, not a blank one

    width, height, rows, channels = decode_png(data, max_rows=420)
    assert (width, height) == (WIDTH, HEIGHT)
    # style.css: `body { background: var(--paper) }` = #f4f6fb, left of the main column.
    assert pixel(rows, channels, 40, 400) == (0xF4, 0xF6, 0xFB)
    # style.css: the hero is a gradient from #1e3a8a to #2563eb (unstyled, it would be white).
    for x in (5, 500, 990):
        r, g, b = pixel(rows, channels, x, 8)
        assert b > 120, (x, (r, g, b))
        assert r < 60, (x, (r, g, b))
        assert b > g + 40, (x, (r, g, b))
    # img/card.png: a gold chip (#c9a227-ish) in the hero band, where CSS alone has none.
    gold = sum(
        1
        for y in range(0, 184, 2)
        for x in range(0, 400, 2)
        if (p := pixel(rows, channels, x, y))[0] > 170 and 120 < p[1] < 200 and p[2] < 110
    )
    assert gold > 200, gold

    # The card itself received each request: RECEIVE DATA carried them (trace previews).
    sp.stop()
    received = re.findall(r"'(GET \S+) HTTP", sp.stdout)
    for request in ("GET /", "GET /style.css", "GET /img/card.png"):
        assert request in received, received


def test_chromium_dump_dom_of_card_app(start_up, chromium) -> None:  # type: ignore[no-untyped-def]
    sp = start_up()
    dom = chromium(sp.base_url + "/app/info", "--dump-dom").decode()
    assert "<h1>Card information</h1>" in dom
    assert "<td>8988211000000000003</td>" in dom  # the ICCID, from the card application
    match = re.search(r'<strong id="visits">(\d+)</strong>', dom)
    assert match is not None, dom
    assert match.group(1) == "1"  # a fresh card: Chromium's was the first visit
    with urllib.request.urlopen(sp.base_url + "/app/info/json", timeout=10) as r:
        assert json.load(r)["visits"] == 2
