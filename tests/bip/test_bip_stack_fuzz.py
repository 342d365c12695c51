"""The whole card stack, fuzzed: random request targets, header fields and raw bytes from TCP
clients go through the terminal engine, the APDUs, the card's BIP server and HTTP engine and
the site over a card image on disk. Every client gets HTTP responses or a close; the card
never answers 6F 00 (nothing failed inside it) and the pump never stops."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from catpair import CatPair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.bip.card import ServerConfig
from openscws.config import CardSettings
from openscws.demo import install_demo
from openscws.scws.card import build_site, handler_factories
from openscws.store.cardimage import CardImage

ICCID = "89882390000012345678"


@pytest.fixture(scope="module")
def image() -> Iterator[CardImage]:
    with tempfile.TemporaryDirectory() as root:
        image = CardImage.create(Path(root) / "card", iccid=ICCID, now=1_700_000_000)
        install_demo(image, 1_700_000_000)
        yield image


_TARGET_CHARS = st.sampled_from([*"/ab.%2F3c5CZ0x\\?#;=&~-_", "%00", "%2e", "//", "%E2%82"])
_TARGETS = st.one_of(
    st.lists(_TARGET_CHARS, max_size=40).map("".join),
    st.sampled_from(["/", "//", "/%23", "/a//b", "*", "http://h//x", "/" + "y" * 1500]),
)
_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
_VALUE = st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)
_HEADERS = st.lists(
    st.one_of(
        st.tuples(_TOKEN.map(str.encode), _VALUE),
        st.sampled_from(
            [
                (b"connection", b"close"),
                (b"connection", b"keep-alive"),
                (b"content-length", b"3"),
                (b"transfer-encoding", b"chunked"),
                (b"expect", b"100-continue"),
                (b"if-none-match", b"*"),
                (b"authorization", b"Basic !!"),
            ]
        ),
    ),
    max_size=6,
)
_REQUESTS = st.tuples(
    st.sampled_from([b"GET", b"HEAD", b"POST", b"OPTIONS", b"PUT", b"BREW"]),
    _TARGETS,
    _HEADERS,
    st.binary(max_size=20),
)


def _request(method: bytes, target: str, headers: list[tuple[bytes, bytes]], tail: bytes) -> bytes:
    head = method + b" " + target.encode() + b" HTTP/1.1\r\nHost: card\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + tail


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(clients=st.lists(st.lists(_REQUESTS, min_size=1, max_size=3), min_size=1, max_size=4))
def test_random_requests_through_the_whole_stack(
    image: CardImage, clients: list[list[tuple[bytes, str, list[tuple[bytes, bytes]], bytes]]]
) -> None:
    site = build_site(image, ICCID, secret=b"k" * 32)
    card_settings = CardSettings(ports=(3516,))
    pair = CatPair(
        config=ServerConfig(ports=(3516,)),
        factories=handler_factories(site, card_settings, None),
    )
    pair.startup()
    connected = []
    for requests in clients:
        client = pair.connect(3516)
        pair.pump()
        for request in requests:
            pair.send(client, _request(*request))
            pair.pump()
        connected.append(client)
    for client in connected:
        if not client.disconnected and client.channel is not None:
            pair.close(client)
        pair.pump()
    assert all(response[-2:] != b"\x6f\x00" for _, response in pair.exchanges)
    for client in connected:
        assert client.received.startswith(b"HTTP/1.1 ") or not client.received
