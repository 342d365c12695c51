"""The ClientHello reader (openscws.tls.hello): real captures, a hand-built vector, splits over
records and chunks, SSLv2-format hellos and garbage."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tlspair import RawClient

from openscws.tls import psk_client_context
from openscws.tls.dispatch import openssl_suite_codes
from openscws.tls.hello import (
    MAX_HELLO_BYTES,
    ClientHello,
    ClientHelloReader,
    HelloError,
    NotParseable,
    parse_client_hello,
)

# A ClientHello captured from `gnutls-cli --priority
# 'NONE:+VERS-TLS1.0:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL'` (GnuTLS 3.7.9) on a local
# socket: one record, TLS 1.0, the single suite TLS_PSK_WITH_3DES_EDE_CBC_SHA.
GNUTLS_3DES_HELLO = bytes.fromhex(
    "160301004f"  # record: handshake, TLS 1.0, 79 bytes
    "0100004b"  # client_hello, 75 bytes
    "0301"  # client_version TLS 1.0
    "ce7f85e5d6303bbc9e29bae4c7352a9f4db1389132fb6f9c6d3afc0d0586bf02"  # random
    "00"  # session_id: empty
    "0002008b"  # cipher_suites: 0x008B
    "0100"  # compression_methods: null
    "0020"  # extensions, 32 bytes:
    "000500050100000000"  # status_request
    "00160000"  # encrypt_then_mac
    "00170000"  # extended_master_secret
    "00230000"  # session_ticket
    "ff01000100"  # renegotiation_info
    "001c00024000"  # record_size_limit 16384
)


def client_hello(
    suites: list[int],
    *,
    version: int = 0x0303,
    record_version: int = 0x0301,
    session_id: bytes = b"",
    compression: bytes = b"\x00",
    extensions: list[tuple[int, bytes]] | None = None,
    record_size: int = 1 << 14,
) -> bytes:
    """A ClientHello built field by field (RFC 5246 §7.4.1.2), in records of at most
    `record_size` bytes of fragment (§6.2.1)."""
    body = version.to_bytes(2) + bytes(range(32))
    body += len(session_id).to_bytes(1) + session_id
    body += (2 * len(suites)).to_bytes(2) + b"".join(s.to_bytes(2) for s in suites)
    body += len(compression).to_bytes(1) + compression
    if extensions is not None:
        ext = b"".join(t.to_bytes(2) + len(d).to_bytes(2) + d for t, d in extensions)
        body += len(ext).to_bytes(2) + ext
    message = b"\x01" + len(body).to_bytes(3) + body  # §7.4: msg_type, uint24 length
    out = b""
    for at in range(0, len(message), record_size):
        fragment = message[at : at + record_size]
        out += b"\x16" + record_version.to_bytes(2) + len(fragment).to_bytes(2) + fragment
    return out


# -- real captures ---------------------------------------------------------------------------


def test_gnutls_capture() -> None:
    hello = parse_client_hello(GNUTLS_3DES_HELLO)
    assert hello == ClientHello(
        record_version=0x0301,
        legacy_version=0x0301,
        cipher_suites=(0x008B,),
        compression_methods=b"\x00",
        extensions=(5, 22, 23, 35, 0xFF01, 28),
        supported_versions=(),
        length=len(GNUTLS_3DES_HELLO),
    )


def test_capture_fed_byte_by_byte() -> None:
    reader = ClientHelloReader()
    for i in range(len(GNUTLS_3DES_HELLO) - 1):
        assert reader.feed(GNUTLS_3DES_HELLO[i : i + 1]) is None
    hello = reader.feed(GNUTLS_3DES_HELLO[-1:])
    assert hello is not None
    assert hello.cipher_suites == (0x008B,)
    assert reader.buffered == GNUTLS_3DES_HELLO


@pytest.mark.parametrize("profile", ["modern", "compat"])
def test_openssl_capture(profile: str) -> None:
    """What Python's ssl (OpenSSL) sends, captured in memory: its enabled TLS <= 1.2 suites
    plus the renegotiation SCSV (RFC 5746 §3.3)."""
    ctx = psk_client_context("card1", bytes(16), profile=profile)  # type: ignore[arg-type]
    client = RawClient(ctx)
    client.handshake()
    wire = client.data_to_send()
    hello = parse_client_hello(wire)
    assert hello is not None
    assert hello.length == len(wire)
    assert hello.legacy_version == 0x0303
    tls12 = {c for c in openssl_suite_codes(ctx) if c >> 8 != 0x13}
    assert set(hello.cipher_suites) == tls12 | {0x00FF}
    assert (0x008C in hello.cipher_suites) == (profile == "compat")  # CBC: compat only
    assert 0x008B not in hello.cipher_suites  # this OpenSSL has no 3DES


def test_openssl_tls13_capture() -> None:
    client = RawClient(ssl.create_default_context(), server_hostname="localhost")
    client.handshake()
    hello = parse_client_hello(client.data_to_send())
    assert hello is not None
    assert {0x1301, 0x1302}.issubset(hello.cipher_suites)
    assert hello.supported_versions[0] == 0x0304  # TLS 1.3, RFC 8446 §4.2.1
    assert 43 in hello.extensions


def _capture_gnutls_cli(gnutls_cli: str, priority: str) -> bytes:
    """The first bytes gnutls-cli sends to a local socket."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [
                *(gnutls_cli, "-p", str(port), "127.0.0.1", "--pskusername", "card1"),
                *("--pskkey", "00112233445566778899aabbccddeeff", "--priority", priority),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            server.settimeout(10)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                reader = ClientHelloReader()
                while (hello := reader.feed(conn.recv(4096))) is None:
                    pass
                assert hello is not None
                return reader.buffered
        finally:
            proc.kill()
            proc.wait(10)
            assert proc.stdin is not None
            proc.stdin.close()


@pytest.mark.parametrize(
    ("priority", "suites", "version"),
    [
        ("NONE:+VERS-TLS1.0:+PSK:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL", (0x008B,), 0x0301),
        (
            "NONE:+VERS-TLS1.2:+VERS-TLS1.0:+PSK:+AES-128-CBC:+3DES-CBC:+SHA1:+COMP-NULL:+SIGN-ALL",
            (0x008C, 0x008B),
            0x0303,
        ),
    ],
)
def test_live_gnutls_cli_capture(
    need_tool: Callable[[str, str], str], priority: str, suites: tuple[int, ...], version: int
) -> None:
    gnutls_cli = need_tool("gnutls-cli", "gnutls-bin")
    wire = _capture_gnutls_cli(gnutls_cli, priority)
    hello = parse_client_hello(wire)
    assert hello is not None
    assert hello.legacy_version == version
    assert [s for s in hello.cipher_suites if s != 0x00FF] == list(suites)


# -- hand-built vectors ----------------------------------------------------------------------


def test_hand_built_hello() -> None:
    wire = client_hello(
        [0x008C, 0x008B, 0x00FF],
        session_id=b"\x42" * 32,
        extensions=[(43, b"\x04\x03\x03\x03\x01"), (0xFF01, b"\x00")],
    )
    hello = parse_client_hello(wire)
    assert hello is not None
    assert hello.cipher_suites == (0x008C, 0x008B, 0x00FF)
    assert hello.supported_versions == (0x0303, 0x0301)
    assert hello.extensions == (43, 0xFF01)
    assert hello.length == len(wire)


def test_hello_without_extensions() -> None:
    """§7.4.1.2: a client may send no extensions block at all (an SSL 3.0-style hello)."""
    hello = parse_client_hello(client_hello([0x008B], version=0x0301, extensions=None))
    assert hello is not None
    assert hello.extensions == ()


@pytest.mark.parametrize("record_size", [1, 7, 40])
def test_hello_split_over_records(record_size: int) -> None:
    """§6.2.1: one handshake message may span several records."""
    wire = client_hello([0x0035, 0x008B], extensions=[(0, b"")], record_size=record_size)
    reader = ClientHelloReader()
    hello = None
    for at in range(0, len(wire), 13):  # and over chunks that cut records anywhere
        assert hello is None
        hello = reader.feed(wire[at : at + 13])
    assert hello is not None
    assert hello.cipher_suites == (0x0035, 0x008B)
    assert hello.length == len(wire)


def test_bytes_after_the_hello_are_ignored() -> None:
    hello = parse_client_hello(GNUTLS_3DES_HELLO + b"\x15\x03\x01\x00\x02\x02\x28")
    assert hello is not None
    assert hello.length == len(GNUTLS_3DES_HELLO)


# -- not a ClientHello -----------------------------------------------------------------------


def test_sslv2_compatible_hello_is_not_parseable() -> None:
    # RFC 5246 Appendix E.2: msg_length (high bit set), msg_type 1, version, lengths...
    v2 = bytes.fromhex("802e0103010015000000100700c0030080010080060040040080020080") + bytes(16)
    with pytest.raises(NotParseable):
        parse_client_hello(v2)
    assert parse_client_hello(v2[:2]) is None  # not yet known


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: card\r\n\r\n",
        bytes(20),
        b"\x17\x03\x03\x00\x02ab",  # application data first
        b"\x15\x03\x01\x00\x02\x02\x28",  # an alert
        b"\x16\x02\x00\x00\x04\x01\x00\x00\x00",  # record version 2.0
        b"\x16\x03\x01\x00\x00",  # zero-length handshake record
        b"\x16\x03\x01\x40\x01" + bytes(0x4001),  # record longer than 2^14
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # server_hello, not client_hello
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03",  # body too short for client_version
        b"\x80\x05\x02abc",  # SSLv2 header, not a hello
    ],
)
def test_garbage_is_an_error(garbage: bytes) -> None:
    with pytest.raises(HelloError):
        parse_client_hello(garbage)


# Offsets in `client_hello([0x008B], extensions=[(0xFF01, b"\x00")])`: 5 record header +
# 4 handshake header; 9-10 client_version; 11-42 random; 43 session_id length; 44-45
# cipher_suites length; 46-47 the suite; 48 compression_methods length; 49 null; 50-51
# extensions length.
MALFORMED = {
    "client_version 0x0203": (9, b"\x02\x03"),
    "session_id of 33 bytes": (43, b"\x21"),
    "odd cipher_suites length": (44, b"\x00\x03"),
    "no cipher suites": (44, b"\x00\x00"),
    "no compression method": (48, b"\x00"),
    "extensions length past the end": (50, b"\x00\x09"),
}


@pytest.mark.parametrize("field", MALFORMED)
def test_malformed_fields(field: str) -> None:
    wire = bytearray(client_hello([0x008B], extensions=[(0xFF01, b"\x00")]))
    assert (wire[43], wire[44:46], wire[48], wire[50:52]) == (0, b"\x00\x02", 1, b"\x00\x05")
    at, value = MALFORMED[field]
    wire[at : at + len(value)] = value
    with pytest.raises(HelloError):
        parse_client_hello(bytes(wire))


def test_extension_overrun_and_bad_supported_versions() -> None:
    with pytest.raises(HelloError):
        parse_client_hello(client_hello([0x008B], extensions=[(43, b"\x03\x03\x03")]))
    wire = bytearray(client_hello([0x008B], extensions=[(0, b"ab")]))
    wire[-4:-2] = b"\x00\x09"  # extension length past the end
    with pytest.raises(HelloError):
        parse_client_hello(bytes(wire))


def test_reader_is_bounded() -> None:
    reader = ClientHelloReader()
    # a hello that announces 2^14 + 100 bytes, sent in full records
    head = b"\x01" + (MAX_HELLO_BYTES + 100).to_bytes(3)
    with pytest.raises(HelloError, match="too long"):
        reader.feed(b"\x16\x03\x01\x00\x04" + head)
    reader = ClientHelloReader(limit=100)
    wire = client_hello([0x008B] * 100, record_size=30)
    for at in range(0, 100, 20):
        assert reader.feed(wire[at : at + 20]) is None
    with pytest.raises(HelloError, match="no complete ClientHello"):
        reader.feed(wire[100:120])


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        parse_client_hello(data)
    except HelloError:
        pass


@given(st.integers(min_value=0, max_value=len(GNUTLS_3DES_HELLO) - 1), st.integers(0, 255))
def test_corrupted_capture_parses_or_errors(offset: int, value: int) -> None:
    wire = bytearray(GNUTLS_3DES_HELLO)
    wire[offset] = value
    try:
        parse_client_hello(bytes(wire))
    except HelloError:
        pass
