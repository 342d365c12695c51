"""Property tests: path validation and the content-file codec never fail with anything but
StoreError, and what they accept round-trips."""

from __future__ import annotations

import posixpath
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openscws.errors import StoreError
from openscws.scws.model import Resource
from openscws.store import decode_resource, encode_resource, validate_path
from openscws.store.cardimage import CONTENT_MAGIC, MAX_PATH_BYTES


@given(st.text(max_size=1200))
def test_validate_path_total(path: str) -> None:
    try:
        assert validate_path(path) is path
    except StoreError:
        return
    # Whatever is accepted is absolute, normalised, bounded and free of separators' tricks.
    assert path.startswith("/")
    assert len(path.encode("utf-8")) <= MAX_PATH_BYTES
    assert "\\" not in path
    assert "\x00" not in path
    assert posixpath.normpath(path) == path.rstrip("/") or path == "/"
    assert ".." not in path.split("/")


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_validate_path_non_string(value: object) -> None:
    with pytest.raises(StoreError):
        validate_path(value)


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\?#"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=1, max_size=8), st.booleans())
def test_normalised_paths_accepted(segments: list[str], trailing: bool) -> None:
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    if len(path.encode()) <= MAX_PATH_BYTES:
        assert validate_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a",
        "//",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/..",
        "/a/..",
        "/a\\b",
        "/a\x00",
        "/a?b=1",
        "/a#f",
        "/\ud800",
        "/" + "x" * 1024,
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(StoreError):
        validate_path(path)


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/app/", "/a/b/c.css", "/.well-known/x", "/x" * 512]
)
def test_good_paths(path: str) -> None:
    assert validate_path(path) == path


header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
)
resources = st.builds(
    Resource,
    path=st.lists(segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
    body=st.binary(max_size=300),
    content_type=header_text,
    last_modified=st.integers(min_value=0, max_value=2**40),
    realm=st.none() | header_text,
    etag=st.just("") | header_text,
)


@given(resources)
def test_codec_round_trip(resource: Resource) -> None:
    data = encode_resource(resource) + resource.body
    assert decode_resource(data) == resource


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_decode_garbage(data: bytes) -> None:
    try:
        decode_resource(data)
    except StoreError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=50))
def test_decode_garbage_after_magic(head: bytes, body: bytes) -> None:
    try:
        decode_resource(CONTENT_MAGIC + struct.pack(">I", len(head)) + head + body)
    except StoreError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
header_keys = st.sampled_from(["path", "content_type", "last_modified", "realm", "etag", "length"])


@settings(max_examples=300)
@given(st.dictionaries(header_keys, json_values), st.binary(max_size=20))
def test_decode_wrong_header_fields(header: dict[str, object], body: bytes) -> None:
    import json

    head = json.dumps(header).encode()
    try:
        decode_resource(CONTENT_MAGIC + struct.pack(">I", len(head)) + head + body)
    except StoreError:
        pass


@given(resources, st.data())
def test_decode_corrupted_file(resource: Resource, data: st.DataObject) -> None:
    """Flip, cut or extend a valid file: StoreError or a decoded Resource, nothing else."""
    raw = bytearray(encode_resource(resource) + resource.body)
    action = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if action == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=10))
    try:
        decode_resource(bytes(raw))
    except StoreError:
        pass
