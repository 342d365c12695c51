"""Sans-IO GSMTAP v2 encoder for SIM APDU and ATR traces.

One exchange (command APDU + response APDU) becomes one GSMTAP message: the 16-byte header
(``struct gsmtap_hdr``, osmocom libosmocore ``include/osmocom/core/gsmtap.h``) with type 04
(``GSMTAP_TYPE_SIM``) and sub_type 00 (``GSMTAP_SIM_APDU``), followed by
``CLA INS P1 P2 P3 [body] SW1 SW2``, the layout SIMtrace2 and pySim-trace use.

Payload rules (osmocom gsmtap.h and Wireshark's gsmtap and gsm_sim dissectors, checked against the
real tshark 4.0.17 of Debian bookworm):

- No command data (case 1 and case 2: FETCH, STATUS, GET RESPONSE, READ BINARY/RECORD...):
  ``hdr P3 <response data> SW`` where **P3 is rewritten to the length of the response data
  actually returned** (00 when there is none, 00 also for exactly 256 bytes). Wireshark's
  gsm_sim takes P3 as the length of the data that follows: with the command's original Le
  (or P3 = 00, read as 256) a FETCH is flagged "Malformed Packet" and a READ BINARY shows
  "APDU Payload: <MISSING>". A 4-byte command (no P3 at all) gets one.
- Command data (case 3: TERMINAL PROFILE, TERMINAL RESPONSE; case 4: ENVELOPE, SELECT...):
  ``hdr Lc <command data> <response data> SW``. A trailing Le byte on the command (a case-4
  APDU as sent by pcscd with T=1, or by vpcd untouched) is dropped, as T=0 would: tshark 4.0
  happens to tolerate it, but pySim-trace reads everything after Lc bytes as response data.
  Response data is **kept** after the command data (pySim splits at Lc). tshark 4.0 takes
  the SW from the last two bytes and ignores the response data of ENVELOPE and SELECT, so
  keeping it costs nothing there and loses nothing for pySim.

What tshark 4.0.17 does with these messages (found by running it, see
tests/trace/test_trace_tshark.py):

- UDP port 4729 goes to GSMTAP with no ``-d udp.port==4729,gsmtap``; GSMTAP type 04 goes to
  gsm_sim, and gsm_sim hands CAT data to etsi_cat: ``frame.protocols`` reads
  ``raw:ip:udp:gsmtap:gsm_sim:etsi_cat``. FETCH response data and ENVELOPE data are parsed as
  BER-TLV (D0, D6), TERMINAL RESPONSE data as bare COMPREHENSION-TLVs, TERMINAL PROFILE bit by
  bit.
- For type SIM, GSMTAP adds no tree of its own: ``gsmtap.version`` / ``gsmtap.type`` come out
  empty, and ``gsmtap.sub_type`` is not even a field in 4.0.
- sub_type is ignored: sub_type 01 (ATR) or 07 is decoded as an APDU all the same.
- Usable fields: ``gsm_sim.apdu.ins`` (``0x12``), ``gsm_sim.apdu.sw`` (``0x9000``),
  ``etsi_cat.comp_tlv.cmd_type`` (``0x40``), ``.event`` (``0x0a``), ``.transport.ptype``,
  ``.transport.port`` (``3516``), ``.buffer_size`` (``1400``), ``.result`` (``0x00``),
  ``.result.bip``. Channel status, Channel data and Channel data length have no field of their
  own in 4.0 (shown as text only).

ATR messages use sub_type 01 (``GSMTAP_SIM_ATR``) with the raw ATR as payload, for live
GSMTAP consumers that read sub_type (pySim-trace). As tshark 4.0 ignores sub_type it would show
an ATR as a meaningless APDU (the sysmocom ATR reads as INS 9F, "Unknown status word: 4ba9"),
so the pcap the tracer writes leaves the ATR out and the text trace keeps it.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from openscws.errors import DecodeError

__all__ = [
    "GSMTAP_HEADER_LEN",
    "GSMTAP_UDP_PORT",
    "GsmtapSimSubType",
    "GsmtapType",
    "gsmtap_header",
    "gsmtap_sim_apdu",
    "gsmtap_sim_atr",
    "sim_apdu_payload",
]

# IANA "gsmtap" UDP port; Wireshark registers its GSMTAP dissector on it.
GSMTAP_UDP_PORT: Final = 4729
GSMTAP_VERSION: Final = 0x02
# struct gsmtap_hdr is 16 bytes; hdr_len counts 32-bit words.
GSMTAP_HEADER_LEN: Final = 16

# version, hdr_len, type, timeslot, arfcn, signal_dbm, snr_db, frame_number,
# sub_type, antenna_nr, sub_slot, res
_HEADER: Final = struct.Struct("!BBBBHbbIBBBB")


class GsmtapType(enum.IntEnum):
    """GSMTAP ``type`` byte (libosmocore gsmtap.h ``GSMTAP_TYPE_*``); only what we emit."""

    SIM = 0x04


class GsmtapSimSubType(enum.IntEnum):
    """GSMTAP ``sub_type`` for ``GSMTAP_TYPE_SIM`` (libosmocore gsmtap.h ``GSMTAP_SIM_*``)."""

    APDU = 0x00
    ATR = 0x01
    PPS_REQ = 0x02
    PPS_RSP = 0x03
    TPDU_HDR = 0x04
    TPDU_CMD = 0x05
    TPDU_RSP = 0x06
    TPDU_SW = 0x07


def gsmtap_header(gsmtap_type: int, sub_type: int) -> bytes:
    """The 16-byte GSMTAP v2 header, zero except version, hdr_len, type and sub_type
    (as SIMtrace2's ``osmo_st2_gsmtap_send_apdu`` writes it)."""
    return _HEADER.pack(
        GSMTAP_VERSION, GSMTAP_HEADER_LEN // 4, gsmtap_type, 0, 0, 0, 0, 0, sub_type, 0, 0, 0
    )


def _length_byte(n: int, what: str, data: bytes) -> int:
    """A short-APDU length byte: 1..255 as is, 256 as 00 (ISO 7816-3 Le coding)."""
    if n > 256:
        raise DecodeError(f"{what} of {n} bytes does not fit a short APDU", data, 0)
    return n & 0xFF


def sim_apdu_payload(command: bytes, response: bytes) -> bytes:
    """``CLA INS P1 P2 P3 [body] SW1 SW2`` for one exchange, normalised as the module
    docstring describes. `command` is a short C-APDU with or without a trailing Le (4 bytes
    for a bare case 1); `response` is the R-APDU, data then SW1 SW2.

    Raises DecodeError for a command shorter than 4 bytes, a response shorter than 2 bytes,
    or a command whose length does not match its Lc (extended length is not supported)."""
    if len(command) < 4:
        raise DecodeError("command APDU shorter than its 4-byte header", command, len(command))
    if len(response) < 2:
        raise DecodeError("response APDU without SW1 SW2", response, len(response))
    header = command[:4]
    rdata, sw = response[:-2], response[-2:]
    if len(command) <= 5:
        # Case 1 or 2: no command data. P3 becomes the length of what the card returned.
        p3 = _length_byte(len(rdata), "response data", response)
        return header + bytes([p3]) + rdata + sw
    lc = command[4]
    body_end = 5 + lc
    if lc == 0 or len(command) not in (body_end, body_end + 1):
        # Lc 00 followed by more bytes is the extended-length form, not used on TS 102 221.
        raise DecodeError(
            f"command length {len(command)} does not match Lc {lc}", command, min(len(command), 4)
        )
    # Case 3 or 4: keep Lc and the data, drop a trailing Le, append what the card returned.
    return command[:body_end] + rdata + sw


def gsmtap_sim_apdu(command: bytes, response: bytes) -> bytes:
    """One GSMTAP message (header + payload) for a command/response exchange."""
    return gsmtap_header(GsmtapType.SIM, GsmtapSimSubType.APDU) + sim_apdu_payload(
        command, response
    )


def gsmtap_sim_atr(atr: bytes) -> bytes:
    """One GSMTAP message carrying a card's ATR (sub_type 01)."""
    if not atr:
        raise DecodeError("empty ATR", atr, 0)
    return gsmtap_header(GsmtapType.SIM, GsmtapSimSubType.ATR) + atr
