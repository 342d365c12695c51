"""`openscws dev`'s mirror: a folder's adds, changes and deletions applied to a card image,
each sync in one transaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openscws.errors import StoreError
from openscws.store.cardimage import CardImage
from openscws.store.devsite import DevChange, DevMirror, scan


@pytest.fixture
def image(tmp_path: Path) -> CardImage:
    return CardImage.create(tmp_path / "card", iccid="8988211000000000003", now=0)


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_first_sync_stores_every_visible_file(tmp_path: Path, image: CardImage) -> None:
    site = tmp_path / "site"
    write(site / "index.html", "<h1>hi</h1>")
    write(site / "img" / "logo.svg", "<svg/>")
    write(site / ".hidden", "no")
    write(site / ".git" / "HEAD", "no")
    write(site / "notes.txt~", "editor backup")
    os.utime(site / "index.html", (1_700_000_000, 1_700_000_000))
    changes = DevMirror(image, site).sync()
    assert changes == [
        DevChange("added", "/img/logo.svg", 6),
        DevChange("added", "/index.html", 11),
    ]
    assert image.paths() == ["/img/logo.svg", "/index.html"]
    index = image.get("/index.html")
    assert index is not None
    assert index.content_type.startswith("text/html")
    assert index.last_modified == 1_700_000_000
    svg = image.get("/img/logo.svg")
    assert svg is not None
    assert svg.content_type.startswith("image/svg+xml")


def test_changes_and_deletions_are_mirrored(tmp_path: Path, image: CardImage) -> None:
    site = tmp_path / "site"
    write(site / "a.html", "one")
    write(site / "dir" / "b.css", "b")
    write(site / "dir" / "c.js", "c")
    mirror = DevMirror(image, site)
    mirror.sync()
    write(site / "a.html", "two!")
    (site / "dir" / "b.css").unlink()
    (site / "dir" / "c.js").unlink()
    (site / "dir").rmdir()
    write(site / "new.txt", "n")
    assert mirror.sync() == [
        DevChange("changed", "/a.html", 4),
        DevChange("deleted", "/dir/b.css"),
        DevChange("deleted", "/dir/c.js"),
        DevChange("added", "/new.txt", 1),
    ]
    a = image.get("/a.html")
    assert a is not None
    assert a.body == b"two!"
    assert image.paths() == ["/a.html", "/new.txt"]
    assert str(DevChange("changed", "/a.html", 4)) == "changed /a.html (4 bytes)"
    assert str(DevChange("deleted", "/x")) == "deleted /x"


def test_an_unchanged_folder_changes_nothing(tmp_path: Path, image: CardImage) -> None:
    site = tmp_path / "site"
    write(site / "a.html", "same")
    mirror = DevMirror(image, site)
    mirror.sync()
    before = image.get("/a.html")
    write(site / "a.html", "same")  # saved again, same bytes
    assert mirror.sync() == []
    assert image.get("/a.html") is before
    assert list((image.root / "journal").iterdir()) == []


def test_resources_the_folder_does_not_have_are_removed(tmp_path: Path, image: CardImage) -> None:
    from openscws.scws.model import Resource

    image.put(Resource("/old.html", b"from before"))
    site = tmp_path / "site"
    site.mkdir()
    assert DevMirror(image, site).sync() == [DevChange("deleted", "/old.html")]
    assert image.paths() == []


def test_a_path_the_card_refuses_is_skipped_not_fatal(tmp_path: Path, image: CardImage) -> None:
    site = tmp_path / "site"
    write(site / "what?.html", "q")
    write(site / "ok.html", "ok")
    mirror = DevMirror(image, site)
    assert [c.path for c in mirror.sync()] == ["/ok.html"]
    assert [f.path for f in mirror.files] == ["/ok.html", "/what?.html"]


def test_each_sync_is_one_transaction(tmp_path: Path, image: CardImage) -> None:
    site = tmp_path / "site"
    for i in range(5):
        write(site / f"p{i}.html", str(i))
    DevMirror(image, site).sync()
    # Committed transactions are recorded by id: one per sync.
    committed = (image.root / "committed.json").read_text()
    assert committed.count("dev-") == 1


def test_scan_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a directory"):
        scan(tmp_path / "nope")
