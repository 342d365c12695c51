"""`openscws up --pcap` records a live session that the real tshark dissects as SIM/CAT."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_wire import run

from openscws.demo import demo_files

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

FIELDS = (
    "frame.protocols",
    "gsm_sim.apdu.ins",
    "etsi_cat.comp_tlv.cmd_type",
    "etsi_cat.comp_tlv.transport.port",
    "_ws.malformed",
)


def test_live_pcap_dissects_as_bip_session(  # type: ignore[no-untyped-def]
    start_up, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    tshark = need_tool("tshark", "tshark")
    curl = need_tool("curl", "curl")
    pcap = tmp_path / "live.pcap"
    sp = start_up("--pcap", pcap)
    got = run([curl, "-sS", "--max-time", "15", sp.base_url + "/style.css"], timeout=20)
    assert got.returncode == 0, got.stderr
    assert got.stdout == demo_files()["/style.css"]
    assert sp.stop() == 0  # SIGTERM: a clean exit, the pcap flushed and closed

    args = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
    args += ["-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        args += ["-e", f]
    env_home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = _tshark(args, env_home)
    rows = [dict(zip(FIELDS, line.split("|"), strict=True)) for line in proc.splitlines()]
    assert len(rows) > 10

    for row in rows:
        assert row["frame.protocols"].startswith("raw:ip:udp:gsmtap:gsm_sim"), row
        assert row["_ws.malformed"] == "", row
    ins = {row["gsm_sim.apdu.ins"] for row in rows}
    # TERMINAL PROFILE, FETCH, TERMINAL RESPONSE, ENVELOPE
    assert {"0x10", "0x12", "0x14", "0xc2"} <= ins, ins
    cmd_types = {t for row in rows for t in row["etsi_cat.comp_tlv.cmd_type"].split(",") if t}
    # SET UP EVENT LIST, OPEN CHANNEL, RECEIVE DATA, SEND DATA
    assert {"0x05", "0x40", "0x42", "0x43"} <= cmd_types, cmd_types
    assert "3516" in {row["etsi_cat.comp_tlv.transport.port"] for row in rows}

    # And the whole file, verbose, has no malformed packet or dissector error.
    text = _tshark([tshark, "-n", "-r", str(pcap), "-V"], env_home)
    assert "Malformed" not in text
    assert "Command Type: SEND DATA (0x43)" in text
    assert "Dissector bug" not in text
    # The ATR is not in the pcap (tshark 4.0 would read it as an APDU: "Unknown status word").
    assert "Unknown status word" not in text
    # The gateway starts with the card's access rules (MANAGE CHANNEL, SELECT the ARA-M), or
    # with TERMINAL PROFILE, SELECT or STATUS.
    assert rows[0]["gsm_sim.apdu.ins"] in {"0x70", "0xa4", "0x10", "0xf2"}, rows[0]


def _tshark(args: list[str], env: dict[str, str]) -> str:
    # A private config dir keeps the user's Wireshark preferences out of the result.
    proc = subprocess.run(
        args, capture_output=True, text=True, env={**os.environ, **env}, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
