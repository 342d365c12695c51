"""The APDU tracer behind `--trace`: a decoded line per exchange, and a GSMTAP pcap.

The ATR goes to the text trace only: Wireshark up to 4.0 ignores the GSMTAP SIM sub_type and
would show an ATR frame (sub_type ``GSMTAP_SIM_ATR``) as a bogus APDU, so the pcap holds the
command/response exchanges alone, each one a frame tshark decodes as what it is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

from openscws.trace.decode import describe_exchange
from openscws.trace.pcap import PcapWriter

log = logging.getLogger(__name__)


class ApduTracer:
    """An `ApduObserver`: called with (command, response, time) for each exchange; an empty
    command means `response` is the ATR (written to the text trace, not to the pcap)."""

    def __init__(self, out: TextIO | None = None, pcap: Path | None = None) -> None:
        self.out = out
        self.pcap = PcapWriter(pcap) if pcap is not None else None
        self._t0: float | None = None
        self.count = 0

    def __call__(self, command: bytes, response: bytes, now: float) -> None:
        self.count += 1
        if self._t0 is None:
            self._t0 = now
        if self.pcap is not None and command:
            try:
                self.pcap.write_apdu(command, response, now)
            except Exception:
                log.exception("cannot write the pcap trace")
        if self.out is not None:
            if command:
                line = describe_exchange(command, response)
                raw = f"  > {command.hex()}  < {response.hex()}"
            else:
                line = f"ATR {response.hex(' ').upper()}"
                raw = ""
            self.out.write(f"{now - self._t0:9.4f} {line}\n")
            if raw:
                self.out.write(raw + "\n")

    def close(self) -> None:
        if self.pcap is not None:
            self.pcap.close()
