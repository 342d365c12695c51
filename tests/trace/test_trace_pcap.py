"""pcap framing: raw IPv4 + UDP 4729 + GSMTAP, byte for byte, and the thin file shell."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from openscws.trace import (
    LINKTYPE_RAW,
    PcapWriter,
    gsmtap_sim_apdu,
    gsmtap_sim_atr,
    ipv4_udp_packet,
    pcap_global_header,
    pcap_record,
)
from openscws.trace.pcap import internet_checksum
from openscws.trace.tracer import ApduTracer

H = bytes.fromhex


def test_global_header() -> None:
    # libpcap file format: magic, v2.4, thiszone 0, sigfigs 0, snaplen 65535, LINKTYPE_RAW.
    assert pcap_global_header() == H("D4C3B2A1 0200 0400 00000000 00000000 FFFF0000 65000000")
    assert LINKTYPE_RAW == 101


def test_record_header_and_timestamp() -> None:
    assert pcap_record(b"abc", 1700000000.25) == (
        struct.pack("<IIII", 1700000000, 250000, 3, 3) + b"abc"
    )


def test_record_timestamp_rounds_up_into_next_second() -> None:
    assert pcap_record(b"", 9.9999999)[:8] == struct.pack("<II", 10, 0)


def test_record_negative_timestamp() -> None:
    with pytest.raises(ValueError, match="negative"):
        pcap_record(b"", -1.0)


def test_ipv4_udp_packet_exact() -> None:
    packet = ipv4_udp_packet(b"\x01\x02\x03", ident=7)
    assert packet == H(
        # IPv4: IHL 5, total 31, id 7, DF, TTL 64, UDP, checksum, 127.0.0.1 -> 127.0.0.1
        "45 00 001F 0007 4000 40 11 3CC5 7F000001 7F000001"
        # UDP: 4729 -> 4729, length 11, checksum 0
        "1279 1279 000B 0000"
        "010203"
    )
    assert internet_checksum(packet[:20]) == 0  # a valid header sums to 0


def test_ipv4_udp_packet_addresses_and_ports() -> None:
    packet = ipv4_udp_packet(b"", src="10.0.0.1", dst="10.0.0.2", src_port=1, dst_port=2)
    assert packet[12:20] == H("0A000001 0A000002")
    assert packet[20:24] == H("0001 0002")
    assert internet_checksum(packet[:20]) == 0


def test_ipv4_udp_packet_too_big() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        ipv4_udp_packet(bytes(65508))


def test_internet_checksum_odd_length() -> None:
    # RFC 1071 §3 example words 0001 f203 f4f5 f6f7 sum to ddf2 before complementing.
    assert internet_checksum(H("0001 F203 F4F5 F6F7")) == 0xFFFF - 0xDDF2
    assert internet_checksum(H("01")) == internet_checksum(H("0100"))


def _records(data: bytes) -> list[tuple[float, bytes]]:
    assert data[:24] == pcap_global_header()
    out: list[tuple[float, bytes]] = []
    offset = 24
    while offset < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, offset)
        assert incl == orig
        offset += 16
        out.append((sec + usec / 1e6, data[offset : offset + incl]))
        offset += incl
    assert offset == len(data)
    return out


def test_writer_path_flushes_each_packet(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    atr = H("3B 9F 96 80 1F 87 80 31 E0 73 FE 21 1B 67 4A 4C 75 30 34 05 4B A9")
    with PcapWriter(path) as writer:
        assert path.read_bytes() == pcap_global_header()
        writer.write_gsmtap(gsmtap_sim_atr(atr), 100.5)
        writer.write_apdu(H("80 F2 00 0C 00"), H("90 00"), 101.0)
        # Readable while still open: every packet is flushed.
        records = _records(path.read_bytes())
    assert writer.closed
    assert records == [
        (100.5, ipv4_udp_packet(gsmtap_sim_atr(atr), ident=0)),
        (101.0, ipv4_udp_packet(gsmtap_sim_apdu(H("80 F2 00 0C"), H("90 00")), ident=1)),
    ]
    assert _records(path.read_bytes()) == records


def test_writer_stream_not_closed_and_addresses() -> None:
    stream = io.BytesIO()
    writer = PcapWriter(stream, src="127.0.0.2", dst="127.0.0.3")
    writer.write_apdu(H("80 12 00 00 00"), H("D0 00 90 00"), 5.0)
    writer.close()
    writer.close()  # idempotent
    assert not stream.closed
    [(ts, packet)] = _records(stream.getvalue())
    assert ts == 5.0
    assert packet == ipv4_udp_packet(
        gsmtap_sim_apdu(H("80 12 00 00"), H("D0 00 90 00")), src="127.0.0.2", dst="127.0.0.3"
    )


def test_writer_rejects_write_after_close(tmp_path: Path) -> None:
    writer = PcapWriter(str(tmp_path / "t.pcap"))
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write_apdu(H("80 F2 00 0C 00"), H("90 00"), 0.0)


def test_writer_ip_ident_wraps() -> None:
    stream = io.BytesIO()
    with PcapWriter(stream) as writer:
        for _ in range(0x10001):
            writer.write_gsmtap(b"", 0.0)
    records = _records(stream.getvalue())
    assert [r[1][4:6] for r in records[-2:]] == [H("FFFF"), H("0000")]


def test_tracer_keeps_the_atr_out_of_the_pcap(tmp_path: Path) -> None:
    """tshark 4.0 ignores the GSMTAP SIM sub_type and would read an ATR frame as an APDU with
    a bogus status word: the ATR goes to the text trace, the pcap gets the exchanges."""
    atr = H("3B 9F 96 80 1F 87 80 31 E0 73 FE 21 1B 67 4A 4C 75 30 34 05 4B A9")
    text = io.StringIO()
    tracer = ApduTracer(text, tmp_path / "t.pcap")
    tracer(b"", atr, 10.0)
    tracer(H("80 F2 00 0C 00"), H("90 00"), 10.5)
    tracer.close()
    records = _records((tmp_path / "t.pcap").read_bytes())
    assert records == [
        (10.5, ipv4_udp_packet(gsmtap_sim_apdu(H("80 F2 00 0C"), H("90 00")), ident=0))
    ]
    first, *_ = text.getvalue().splitlines()
    assert first == "   0.0000 ATR " + atr.hex(" ").upper()
