from __future__ import annotations

from pathlib import Path

import pytest

from openscws.errors import StoreError
from openscws.scws.model import MemoryStore, Resource
from openscws.store import (
    CardImage,
    ResourceRow,
    get_resource,
    guess_content_type,
    install_tree,
    list_resources,
    put_file,
    remove,
)
from openscws.store.content import put


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("INDEX.HTM", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("data.json", "application/json; charset=utf-8"),
        ("card.png", "image/png"),
        ("photo.jpg", "image/jpeg"),
        ("logo.svg", "image/svg+xml; charset=utf-8"),
        ("favicon.ico", "image/vnd.microsoft.icon"),
        ("README", "application/octet-stream"),
        ("archive.unknownext", "application/octet-stream"),
    ],
)
def test_guess_content_type(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


def test_put_get_ls_rm(image: CardImage, tmp_path: Path) -> None:
    local = tmp_path / "page.html"
    local.write_bytes(b"<h1>hi</h1>")
    stored = put_file(image, local, "/page.html", now=100)
    assert stored == Resource("/page.html", b"<h1>hi</h1>", "text/html; charset=utf-8", 100)
    put_file(image, local, "/raw", content_type="text/plain", realm="operator", now=5)
    assert get_resource(CardImage.open(image.root), "/page.html") == stored
    rows = list_resources(image)
    assert rows == [
        ResourceRow("/page.html", 11, "text/html; charset=utf-8", 100, None, stored.etag),
        ResourceRow("/raw", 11, "text/plain", 5, "operator", stored.etag),
    ]
    assert [r.path for r in list_resources(image, "/r")] == ["/raw"]
    assert remove(image, "/raw") == ["/raw"]
    assert remove(image, "/raw") == []
    with pytest.raises(StoreError, match="no resource at /raw"):
        get_resource(image, "/raw")


def test_put_file_errors(image: CardImage, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot read"):
        put_file(image, tmp_path / "missing", "/x", now=0)
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StoreError):
        put_file(image, tmp_path / "f", "relative", now=0)
    with pytest.raises(StoreError):
        get_resource(image, "/a/../b")


def test_install_tree_and_recursive_remove(image: CardImage, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / ".git").mkdir()
    (site / "index.html").write_text("<p>home</p>")
    (site / "img" / "a.png").write_bytes(b"\x89PNG")
    (site / ".hidden").write_text("x")
    (site / ".git" / "config").write_text("x")
    installed = install_tree(image, site, "/shop", now=9)
    assert [r.path for r in installed] == ["/shop/index.html", "/shop/img/a.png"]
    assert image.paths() == ["/shop/img/a.png", "/shop/index.html"]
    assert image.get("/shop/img/a.png") == Resource("/shop/img/a.png", b"\x89PNG", "image/png", 9)
    install_tree(image, site, realm="r", now=10)
    assert image.paths() == ["/img/a.png", "/index.html", "/shop/img/a.png", "/shop/index.html"]
    assert image.get("/index.html").realm == "r"  # type: ignore[union-attr]
    assert remove(image, "/shop", recursive=True) == ["/shop/img/a.png", "/shop/index.html"]
    assert image.paths() == ["/img/a.png", "/index.html"]


def test_install_tree_not_a_directory(image: CardImage, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a directory"):
        install_tree(image, tmp_path / "nope", now=0)


def test_install_tree_bad_name_stores_nothing(image: CardImage, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ok")
    (tmp_path / "bad?name").write_text("bad")
    with pytest.raises(StoreError):
        install_tree(image, tmp_path, now=0)
    assert image.paths() == []


def test_functions_work_on_memory_store(tmp_path: Path) -> None:
    store = MemoryStore()
    (tmp_path / "a.css").write_text("p{}")
    put_file(store, tmp_path / "a.css", "/a.css", now=1)
    assert [r.content_type for r in list_resources(store)] == ["text/css; charset=utf-8"]


# -- put: where a SOURCE goes (a trailing "/" names a directory) ------------------------------


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "index.html").write_text("<p>home</p>")
    (site / "img" / "a.png").write_bytes(b"\x89PNG")
    return site


@pytest.mark.parametrize(
    ("path", "stored"),
    [
        (None, "/page.html"),
        ("/", "/page.html"),  # a directory: the file keeps its name (never a resource "/")
        ("/dir/", "/dir/page.html"),
        ("/other.html", "/other.html"),
    ],
)
def test_put_a_file(image: CardImage, tmp_path: Path, path: str | None, stored: str) -> None:
    page = tmp_path / "page.html"
    page.write_text("<p>x</p>")
    done = put(image, page, path, now=1)
    assert [r.path for r in done.stored] == [stored]
    assert image.paths() == [stored]


def test_put_a_folder_needs_a_directory_path(image: CardImage, tmp_path: Path) -> None:
    site = _site(tmp_path)
    with pytest.raises(StoreError, match=r"must end with '/'.*/x.html/"):
        put(image, site, "/x.html", now=1)
    assert image.paths() == []
    done = put(image, site, "/x.html/", now=1)
    assert [r.path for r in done.stored] == ["/x.html/index.html", "/x.html/img/a.png"]
    assert [r.path for r in put(image, site, now=1).stored] == ["/index.html", "/img/a.png"]


def test_put_a_folder_with_delete_mirrors_it(image: CardImage, tmp_path: Path) -> None:
    site = _site(tmp_path)
    put(image, site, "/app/", now=1)
    put(image, site, "/", now=1)
    (site / "img" / "a.png").unlink()
    kept = put(image, site, "/app/", now=2)
    assert kept.removed == []
    assert "/app/img/a.png" in image.paths()  # without --delete: kept
    done = put(image, site, "/app/", delete=True, now=3)
    assert done.removed == ["/app/img/a.png"]
    # Only under the folder's PATH: /img/a.png (from the put at /) stays.
    assert image.paths() == ["/app/index.html", "/img/a.png", "/index.html"]


def test_delete_is_for_folders(image: CardImage, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("x")
    with pytest.raises(StoreError, match="folder"):
        put(image, page, "/", delete=True, now=1)


def test_a_put_that_a_directory_resource_hides_is_warned_about(
    image: CardImage, tmp_path: Path
) -> None:
    image.put(Resource("/", b"old", "text/plain", 1))  # as older versions could store
    index = tmp_path / "index.html"
    index.write_text("<p>home</p>")
    done = put(image, index, "/", now=2)
    assert [r.path for r in done.stored] == ["/index.html"]
    assert len(done.warnings) == 1
    assert "the resource named / hides /index.html" in done.warnings[0]


def test_get_of_a_missing_resource_is_not_found(image: CardImage) -> None:
    from openscws.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no resource at /none"):
        get_resource(image, "/none")
