"""Classic libpcap files of GSMTAP SIM traces, readable by Wireshark/tshark.

Frames are raw IPv4 (LINKTYPE_RAW = 101, no link-layer header) carrying UDP to port 4729.
tshark 4.0.17 (Debian bookworm) decodes them with no ``-d`` option: the protocol stack is
``raw:ip:udp:gsmtap:gsm_sim:etsi_cat``. The IPv4 header checksum is computed; the UDP checksum
is 0 ("none", shown by Wireshark as "zero-value ignored").

Everything that builds bytes is a pure function (`pcap_global_header`, `pcap_record`,
`ipv4_udp_packet`); `PcapWriter` only appends those bytes to a file and flushes after each
packet, so a trace stays readable if the process dies.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from types import TracebackType
from typing import BinaryIO, Final, Self

from openscws.trace.gsmtap import GSMTAP_UDP_PORT, gsmtap_sim_apdu

__all__ = [
    "LINKTYPE_RAW",
    "PcapWriter",
    "internet_checksum",
    "ipv4_udp_packet",
    "pcap_global_header",
    "pcap_record",
]

# https://www.tcpdump.org/linktypes.html: raw IPv4/IPv6, no link-layer header.
LINKTYPE_RAW: Final = 101
PCAP_MAGIC: Final = 0xA1B2C3D4  # microsecond timestamps
PCAP_VERSION: Final = (2, 4)
PCAP_SNAPLEN: Final = 65535

_GLOBAL: Final = struct.Struct("<IHHiIII")
_RECORD: Final = struct.Struct("<IIII")
# version/IHL, DSCP/ECN, total length, identification, flags/fragment offset, TTL, protocol,
# header checksum, source, destination (RFC 791 §3.1)
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_UDP: Final = struct.Struct("!HHHH")  # RFC 768
_IPPROTO_UDP: Final = 17
_IPV4_DONT_FRAGMENT: Final = 0x4000
_IPV4_TTL: Final = 64
_MAX_IPV4_PAYLOAD: Final = 0xFFFF - _IPV4.size - _UDP.size
LOOPBACK: Final = "127.0.0.1"


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum of 16-bit words, complemented."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp_packet(
    payload: bytes,
    *,
    src: str = LOOPBACK,
    dst: str = LOOPBACK,
    src_port: int = GSMTAP_UDP_PORT,
    dst_port: int = GSMTAP_UDP_PORT,
    ident: int = 0,
) -> bytes:
    """An IPv4 datagram (DF set, TTL 64, checksum computed) holding one UDP datagram
    (checksum 0) with `payload`."""
    if len(payload) > _MAX_IPV4_PAYLOAD:
        raise ValueError(f"UDP payload of {len(payload)} bytes does not fit one IPv4 packet")
    udp_len = _UDP.size + len(payload)
    header = _IPV4.pack(
        0x45,
        0,
        _IPV4.size + udp_len,
        ident & 0xFFFF,
        _IPV4_DONT_FRAGMENT,
        _IPV4_TTL,
        _IPPROTO_UDP,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    checksum = internet_checksum(header)
    header = header[:10] + checksum.to_bytes(2, "big") + header[12:]
    return header + _UDP.pack(src_port, dst_port, udp_len, 0) + payload


def pcap_global_header(linktype: int = LINKTYPE_RAW, snaplen: int = PCAP_SNAPLEN) -> bytes:
    """The 24-byte libpcap file header (little-endian, microsecond resolution, GMT)."""
    return _GLOBAL.pack(PCAP_MAGIC, *PCAP_VERSION, 0, 0, snaplen, linktype)


def pcap_record(frame: bytes, ts: float) -> bytes:
    """One packet record: 16-byte record header (`ts` as seconds since the Unix epoch, kept to
    the microsecond) followed by the whole frame."""
    if ts < 0:
        raise ValueError(f"negative pcap timestamp {ts!r}")
    micros = round(ts * 1_000_000)
    seconds, usec = divmod(micros, 1_000_000)
    return _RECORD.pack(seconds, usec, len(frame), len(frame)) + frame


class PcapWriter:
    """Appends GSMTAP SIM messages to a pcap file, one raw-IPv4/UDP packet each.

    `target` is a path (opened here, truncated, closed by `close`) or a binary stream the
    caller owns (written and flushed, never closed here). The file header is written at once.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        src: str = LOOPBACK,
        dst: str = LOOPBACK,
    ) -> None:
        if isinstance(target, str | os.PathLike):
            self._stream: BinaryIO = open(target, "wb")  # closed by close()
            self._owns_stream = True
        else:
            self._stream = target
            self._owns_stream = False
        self._src = src
        self._dst = dst
        self._ident = 0
        self._closed = False
        self._emit(pcap_global_header())

    @property
    def closed(self) -> bool:
        return self._closed

    def write_apdu(self, command: bytes, response: bytes, ts: float) -> None:
        """Record one command/response exchange seen at `ts` (Unix time, seconds)."""
        self.write_gsmtap(gsmtap_sim_apdu(command, response), ts)

    def write_gsmtap(self, message: bytes, ts: float) -> None:
        """Record one ready-made GSMTAP message (header included)."""
        if self._closed:
            raise ValueError("write to a closed PcapWriter")
        packet = ipv4_udp_packet(message, src=self._src, dst=self._dst, ident=self._ident)
        self._ident = (self._ident + 1) & 0xFFFF
        self._emit(pcap_record(packet, ts))

    def close(self) -> None:
        """Flush, and close the file if this writer opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_stream:
            self._stream.close()
        else:
            self._stream.flush()

    def _emit(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
