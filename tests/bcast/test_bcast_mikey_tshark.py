"""The LTKM and its verification message, written to a pcap on UDP 4359 (IANA omabcastltkm),
decoded by the real tshark (Debian bookworm: 4.0.17) as MIKEY: the common header and the
payload chain, with no malformed packet."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from openscws.bcast.ltkm import Ltkm, build_ltkm, build_verification
from openscws.bcast.mikey import LTKM_UDP_PORT
from openscws.trace.pcap import ipv4_udp_packet, pcap_global_header, pcap_record

pytestmark = pytest.mark.peer

H = bytes.fromhex
MUK = bytes(range(32))
LTKM = Ltkm(
    H("00f110"), H("00010002"), bytes(16), 7, b"bsm.example.org", b"btid@bsf.example.org", True
)


def test_tshark_decodes_ltkm_and_ack(tmp_path: Path, need_tool: Callable[[str, str], str]) -> None:
    tshark = need_tool("tshark", "tshark")
    pcap = tmp_path / "ltkm.pcap"
    frames = (build_ltkm(LTKM, MUK), build_verification(LTKM, MUK))
    with pcap.open("wb") as out:
        out.write(pcap_global_header())
        for i, datagram in enumerate(frames):
            packet = ipv4_udp_packet(datagram, src_port=LTKM_UDP_PORT, dst_port=LTKM_UDP_PORT)
            out.write(pcap_record(packet, 1.0 + i))
    fields: tuple[str, ...] = (
        "mikey.type",
        "mikey.v.set",
        "mikey.csb_id",
        "mikey.next_payload",
        "mikey.t.ts_type",
    )
    fields += ("mikey.id.data", "mikey.kemac.encr_alg", "mikey.kemac.mac", "mikey.v.auth_alg")
    fields += ("_ws.malformed", "_ws.expert")
    cmd = [tshark, "-r", str(pcap), "-d", f"udp.port=={LTKM_UDP_PORT},mikey", "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in run.stdout.splitlines()]
    assert len(rows) == 2
    ltkm, ack = rows
    assert ltkm["mikey.type"] == "0"
    assert ack["mikey.type"] == "1"
    assert ltkm["mikey.v.set"] == "1"
    assert ltkm["mikey.csb_id"] == ack["mikey.csb_id"] == "0x00010002"
    # next payloads: HDR->EXT(21), EXT->T(5), T->ID(6), ID->ID(6), ID->KEMAC(1), KEMAC->last(0)
    assert ltkm["mikey.next_payload"] == "21,5,6,6,1,0"
    assert ack["mikey.next_payload"] == "5,6,6,9,0"
    assert ltkm["mikey.t.ts_type"] == "2"  # COUNTER
    assert ltkm["mikey.id.data"].split(",") == ["bsm.example.org", "btid@bsf.example.org"]
    assert ltkm["mikey.kemac.encr_alg"] == "1"  # AES-CM-128
    assert ltkm["mikey.kemac.mac"] == frames[0][-20:].hex()
    assert ack["mikey.v.auth_alg"] == "1"
    for row in rows:
        assert row["_ws.malformed"] == ""
        assert row["_ws.expert"] == ""
