from __future__ import annotations

import struct
import zlib
from pathlib import Path

from openscws.demo import DEMO_PASSWORD, DEMO_REALM, DEMO_USER, demo_files, install_demo
from openscws.demo.make_card_png import draw
from openscws.scws.model import MemoryStore, Resource
from openscws.store import CardImage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED = ["/img/card.png", "/index.html", "/private/index.html", "/style.css"]


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png.startswith(PNG_SIGNATURE)
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        kind = png[offset + 4 : offset + 8]
        data = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", png, offset + 8 + length)
        assert crc == zlib.crc32(kind + data), kind
        chunks.append((kind, data))
        offset += 12 + length
    return chunks


def test_install_into_card_image(tmp_path: Path) -> None:
    image = CardImage.create(tmp_path / "card", iccid="8949440000001234567")
    assert install_demo(image, now=1_700_000_000) == 4
    reopened = CardImage.open(tmp_path / "card")
    assert reopened.paths() == EXPECTED
    index = reopened.get("/index.html")
    assert index is not None
    assert index.content_type == "text/html; charset=utf-8"
    assert index.last_modified == 1_700_000_000
    assert index.realm is None
    for link in (b"/style.css", b"/img/card.png", b"/app/info", b"/private/index.html"):
        assert link in index.body
    assert b"Smart Card Web Server" in index.body
    private = reopened.get("/private/index.html")
    assert private is not None
    assert private.realm == DEMO_REALM == "operator"
    assert reopened.realm("operator") is not None
    assert reopened.realm("operator").users == {DEMO_USER: DEMO_PASSWORD}  # type: ignore[union-attr]
    assert (DEMO_USER, DEMO_PASSWORD) == ("admin", "scws")
    css = reopened.get("/style.css")
    assert css is not None
    assert css.content_type == "text/css; charset=utf-8"


def test_png_is_valid() -> None:
    store = MemoryStore()
    install_demo(store, now=0)
    png = store.get("/img/card.png")
    assert png is not None
    assert png.content_type == "image/png"
    chunks = _chunks(png.body)
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height, depth, colour) == (200, 120, 8, 6)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == height * (1 + 4 * width)


def test_committed_png_matches_generator() -> None:
    assert demo_files()["/img/card.png"] == draw()


def test_idempotent(tmp_path: Path) -> None:
    image = CardImage.create(tmp_path / "card", iccid="8949440000001234567")
    assert install_demo(image, now=1) == 4
    assert install_demo(image, now=2) == 0
    assert image.get("/index.html").last_modified == 1  # type: ignore[union-attr]


def test_existing_index_is_kept() -> None:
    store = MemoryStore()
    mine = Resource("/index.html", b"mine", "text/html")
    store.put(mine)
    assert install_demo(store, now=0) == 0
    assert store.paths() == ["/index.html"]
    assert store.get("/index.html") == mine
    assert store.realm("operator") is None
