"""PskIdentityPeek: the PSK identity out of a TLS 1.2 client's ClientKeyExchange, from a real
handshake (python's ssl on both sides, in memory) and from hand-built records cut anyhow."""

from __future__ import annotations

import ssl

import pytest

from openscws.tls.context import psk_client_context, psk_server_context
from openscws.tls.psk import PskKeys
from openscws.tls.psk_peek import PskIdentityPeek

KEY = bytes(range(16))


def record(kind: int, payload: bytes) -> bytes:
    return bytes((kind, 3, 3)) + len(payload).to_bytes(2, "big") + payload


def cke(identity: bytes) -> bytes:
    body = len(identity).to_bytes(2, "big") + identity
    return bytes((16,)) + len(body).to_bytes(3, "big") + body


def client_flights(identity: str) -> list[bytes]:
    """What a PSK-TLS 1.2 client sends, flight by flight, against a PSK server."""
    server_ctx = psk_server_context(PskKeys(lambda i: KEY), profile="compat")
    client_ctx = psk_client_context(identity, KEY, profile="compat")
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    flights = []
    for _ in range(4):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        sent = c_out.read()
        if sent:
            flights.append(sent)
        s_in.write(sent)
        c_in.write(s_out.read())
    return flights


def test_identity_of_a_real_handshake() -> None:
    flights = client_flights("card-0042")
    peek = PskIdentityPeek()
    assert peek.feed(flights[0]) is None  # the ClientHello
    assert not peek.done
    assert peek.feed(flights[1]) == "card-0042"  # ClientKeyExchange, CCS, Finished
    assert peek.done
    assert peek.feed(flights[1]) is None


def test_byte_by_byte_and_fragmented() -> None:
    message = cke("ident-\u00e9".encode())
    data = record(22, message[:3]) + record(22, message[3:]) + record(20, b"\x01")
    peek = PskIdentityPeek()
    found = [peek.feed(data[i : i + 1]) for i in range(len(data))]
    assert [f for f in found if f is not None] == ["ident-\u00e9"]


@pytest.mark.parametrize(
    "data",
    [
        record(20, b"\x01") + record(22, cke(b"late")),  # after CCS: no longer plaintext
        record(22, cke(b"\xff\xfe")),  # not UTF-8
        record(22, cke(b"a\x00b")),  # NUL: not what OpenSSL hands the callback
        record(22, bytes((16, 0, 0, 1, 0))),  # truncated identity length
    ],
)
def test_nothing_found(data: bytes) -> None:
    peek = PskIdentityPeek()
    assert peek.feed(data) is None


def test_gives_up_after_a_bound() -> None:
    peek = PskIdentityPeek()
    for _ in range(5):
        peek.feed(record(22, bytes(16000)))
    assert peek.done
    assert peek.feed(record(22, cke(b"x"))) is None
