"""APDU traces: GSMTAP SIM messages (sans-IO) and a pcap writer readable by Wireshark/tshark."""

from openscws.trace.gsmtap import (
    GSMTAP_UDP_PORT,
    GsmtapSimSubType,
    GsmtapType,
    gsmtap_header,
    gsmtap_sim_apdu,
    gsmtap_sim_atr,
    sim_apdu_payload,
)
from openscws.trace.pcap import (
    LINKTYPE_RAW,
    PcapWriter,
    ipv4_udp_packet,
    pcap_global_header,
    pcap_record,
)

__all__ = [
    "GSMTAP_UDP_PORT",
    "LINKTYPE_RAW",
    "GsmtapSimSubType",
    "GsmtapType",
    "PcapWriter",
    "gsmtap_header",
    "gsmtap_sim_apdu",
    "gsmtap_sim_atr",
    "ipv4_udp_packet",
    "pcap_global_header",
    "pcap_record",
    "sim_apdu_payload",
]
