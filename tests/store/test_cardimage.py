from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openscws.errors import StoreError
from openscws.scws.model import Realm, Resource, ResourceStore
from openscws.store import FORMAT_VERSION, CardImage, CardMeta
from openscws.store.cardimage import TMP_PREFIX

ICCID = "8949440000001234567"


def test_implements_resource_store(image: CardImage) -> None:
    store: ResourceStore = image
    assert store.paths() == []


def test_create_and_meta(tmp_path: Path) -> None:
    image = CardImage.create(tmp_path / "c", iccid=ICCID, now=42)
    assert image.meta == CardMeta(iccid=ICCID, imsi=None, created=42, format_version=FORMAT_VERSION)
    for name in ("card.json", "realms.json", "lock", "content", "values"):
        assert (tmp_path / "c" / name).exists()
    reopened = CardImage.open(tmp_path / "c")
    assert reopened.meta == image.meta


def test_create_twice_fails(image: CardImage) -> None:
    with pytest.raises(StoreError, match="already exists"):
        CardImage.create(image.root, iccid=ICCID)


def test_create_default_now(tmp_path: Path) -> None:
    image = CardImage.create(tmp_path / "c", iccid=ICCID + "0")
    assert image.meta.created > 1_600_000_000


@pytest.mark.parametrize(
    ("iccid", "imsi"),
    [
        ("123", None),
        ("89494400000012345678901", None),
        ("894944000000123456x", None),
        (ICCID, "12ab"),
    ],
)
def test_bad_meta(tmp_path: Path, iccid: str, imsi: str | None) -> None:
    with pytest.raises(StoreError):
        CardImage.create(tmp_path / "c", iccid=iccid, imsi=imsi)
    assert not (tmp_path / "c" / "card.json").exists()


def test_set_meta_seen_by_other_instance(image: CardImage) -> None:
    other = CardImage.open(image.root)
    new = CardMeta(iccid="89000000000000000001", imsi="20801123456789", created=7)
    image.set_meta(new)
    assert image.meta == new
    assert other.meta == new
    assert not [p for p in image.root.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a directory"):
        CardImage.open(tmp_path / "nope")
    with pytest.raises(StoreError, match=r"card\.json is missing"):
        CardImage.open(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b'{"iccid": "1"}',
        b"\xff\xfe",
        json.dumps({"iccid": ICCID, "format_version": 99}).encode(),
    ],
)
def test_open_corrupt_meta(image: CardImage, content: bytes) -> None:
    (image.root / "card.json").write_bytes(content)
    with pytest.raises(StoreError):
        CardImage.open(image.root)


def test_open_missing_content_dir(image: CardImage) -> None:
    (image.root / "content").rmdir()
    with pytest.raises(StoreError, match="content/ is missing"):
        CardImage.open(image.root)


def test_open_corrupt_realms(image: CardImage) -> None:
    (image.root / "realms.json").write_text('{"r": {"users": [1]}}')
    with pytest.raises(StoreError, match="realm 'r'"):
        CardImage.open(image.root)


def test_resource_round_trip(image: CardImage) -> None:
    res = Resource("/a/b.html", b"<p>hi</p>", "text/html; charset=utf-8", 1234, "operator")
    image.put(res)
    assert image.get("/a/b.html") == res
    fresh = CardImage.open(image.root)
    assert fresh.get("/a/b.html") == res
    assert fresh.paths() == ["/a/b.html"]
    assert image.get("/a/c.html") is None


def test_resource_unicode_and_custom_etag(image: CardImage) -> None:
    res = Resource("/ünïcode/文件.txt", bytes(range(256)), "text/plain", 0, None, '"mine"')
    image.put(res)
    assert CardImage.open(image.root).get(res.path) == res


def test_empty_body(image: CardImage) -> None:
    image.put(Resource("/empty", b""))
    assert CardImage.open(image.root).get("/empty") == Resource("/empty", b"")


def test_replace_and_delete(image: CardImage) -> None:
    image.put(Resource("/x", b"one"))
    image.put(Resource("/x", b"two", "text/plain"))
    assert image.get("/x") == Resource("/x", b"two", "text/plain")
    assert image.delete("/x") is True
    assert image.get("/x") is None
    assert image.delete("/x") is False
    assert image.paths() == []


def test_paths_sorted(image: CardImage) -> None:
    for p in ("/z", "/a/b", "/a", "/m/"):
        image.put(Resource(p, p.encode()))
    assert image.paths() == ["/a", "/a/b", "/m/", "/z"]
    assert [r.body for r in image.resources()] == [b"/a", b"/a/b", b"/m/", b"/z"]


def test_cross_process_visibility(image: CardImage) -> None:
    reader = CardImage.open(image.root)
    assert reader.get("/p") is None
    image.put(Resource("/p", b"v1", last_modified=1))
    assert reader.get("/p") == Resource("/p", b"v1", last_modified=1)
    # Same size, same second: a new inode still shows the change.
    image.put(Resource("/p", b"v2", last_modified=1))
    assert reader.get("/p") == Resource("/p", b"v2", last_modified=1)
    assert reader.paths() == ["/p"]
    image.delete("/p")
    assert reader.get("/p") is None
    assert reader.paths() == []


def test_cache_hit_returns_same_object(image: CardImage) -> None:
    image.put(Resource("/big", b"x" * 1_000_000))
    reader = CardImage.open(image.root)
    first = reader.get("/big")
    assert first is not None
    assert reader.get("/big") is first


def test_cached_file_not_reread(image: CardImage, monkeypatch: pytest.MonkeyPatch) -> None:
    image.put(Resource("/page", b"x" * 1024))
    reader = CardImage.open(image.root)
    assert reader.get("/page") is not None
    import openscws.store.cardimage as mod

    def fail(path: Path) -> None:
        raise AssertionError(f"re-read {path}")

    monkeypatch.setattr(mod, "_read_file", fail)
    for _ in range(100):
        assert reader.get("/page") is not None


def test_realms(image: CardImage) -> None:
    assert image.realm("operator") is None
    realm = Realm("operator", {"admin": "scws", "bob": "pässword"}, ("Basic",))
    image.put_realm(realm)
    image.put_realm(Realm("other"))
    assert image.realm("operator") == realm
    other = CardImage.open(image.root)
    assert other.realm("operator") == realm
    assert other.realm_names() == ["operator", "other"]
    assert image.delete_realm("other") is True
    assert image.delete_realm("other") is False
    assert other.realm_names() == ["operator"]
    assert (image.root / "realms.json").stat().st_mode & 0o077 == 0


def test_bad_realm_name(image: CardImage) -> None:
    with pytest.raises(StoreError):
        image.put_realm(Realm("bad\r\nname"))


def test_values(image: CardImage) -> None:
    assert image.get_value("counter") is None
    image.set_value("counter", b"\x00\x01")
    image.set_value("app/ключ", b"")
    other = CardImage.open(image.root)
    assert other.get_value("counter") == b"\x00\x01"
    assert other.get_value("app/ключ") == b""
    image.set_value("counter", b"\x00\x02")
    assert other.get_value("counter") == b"\x00\x02"
    assert image.delete_value("counter") is True
    assert other.get_value("counter") is None
    assert image.delete_value("counter") is False


@pytest.mark.parametrize("key", ["", "a\x00b", "k" * 300])
def test_bad_value_key(image: CardImage, key: str) -> None:
    with pytest.raises(StoreError):
        image.set_value(key, b"")
    with pytest.raises(StoreError):
        image.get_value(key)


def test_corrupt_value_file(image: CardImage) -> None:
    image.set_value("k", b"v")
    (file,) = (image.root / "values").iterdir()
    file.write_bytes(b"garbage")
    with pytest.raises(StoreError):
        CardImage.open(image.root).get_value("k")


@pytest.mark.parametrize(
    "resource",
    [
        Resource("/ok", b"", content_type="text/html\r\nX-Evil: 1"),
        Resource("/ok", b"", content_type=""),
        Resource("/ok", b"", realm="a\nb"),
        Resource("/ok", b"", last_modified=-1),
        Resource("/../etc/passwd", b""),
    ],
)
def test_put_rejects_bad_resource(image: CardImage, resource: Resource) -> None:
    with pytest.raises(StoreError):
        image.put(resource)
    assert image.paths() == []


def test_corrupt_content_file(image: CardImage) -> None:
    image.put(Resource("/x", b"hello"))
    (file,) = (image.root / "content").iterdir()
    file.write_bytes(file.read_bytes()[:-1])  # truncated body
    with pytest.raises(StoreError, match="does not match body"):
        CardImage.open(image.root).get("/x")


def test_content_file_for_wrong_path(image: CardImage) -> None:
    image.put(Resource("/x", b"x"))
    image.put(Resource("/y", b"y"))
    files = {p.read_bytes(): p for p in (image.root / "content").iterdir()}
    x_file = next(p for d, p in files.items() if d.endswith(b"x"))
    y_file = next(p for d, p in files.items() if d.endswith(b"y"))
    os.replace(y_file, x_file)
    with pytest.raises(StoreError, match="not its own path"):
        CardImage.open(image.root).get("/x")


def test_temp_files_ignored_and_cleaned(image: CardImage) -> None:
    image.put(Resource("/x", b"x"))
    stray = [
        image.root / "content" / f"{TMP_PREFIX}junk",
        image.root / "values" / f"{TMP_PREFIX}junk",
        image.root / f"{TMP_PREFIX}card.json-1-2",
    ]
    for p in stray:
        p.write_bytes(b"half-written")
    reader = CardImage(image.root, image.meta, (0, 0, 0))  # no cleaning on construction
    assert reader.paths() == ["/x"]
    CardImage.open(image.root)
    assert not any(p.exists() for p in stray)


def test_temp_files_cleaned_on_write(image: CardImage) -> None:
    stray = image.root / "content" / f"{TMP_PREFIX}junk"
    stray.write_bytes(b"")
    image.put(Resource("/x", b"x"))
    assert not stray.exists()


def test_open_leaves_temps_while_another_writer_holds_lock(image: CardImage) -> None:
    import fcntl

    stray = image.root / "content" / f"{TMP_PREFIX}live"
    stray.write_bytes(b"")
    fd = os.open(image.root / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        CardImage.open(image.root)
        assert stray.exists()
    finally:
        os.close(fd)


def test_context_manager_closes_lock(tmp_path: Path) -> None:
    with CardImage.create(tmp_path / "c", iccid=ICCID) as image:
        image.put(Resource("/a", b"a"))
        assert image._lock_fd is not None
    assert image._lock_fd is None
    assert image.get("/a") == Resource("/a", b"a")
    image.put(Resource("/b", b"b"))  # the lock reopens on demand
    image.close()


def test_layout_is_one_file_per_resource(image: CardImage) -> None:
    image.put(Resource("/a", b"body-a"))
    (file,) = (image.root / "content").iterdir()
    import hashlib

    assert file.name == hashlib.sha256(b"/a").hexdigest()
    assert file.read_bytes().endswith(b"body-a")
