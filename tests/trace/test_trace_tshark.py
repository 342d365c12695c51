"""A pcap of a whole SCWS BIP session as `--pcap` writes it (the tracer, ATR first), decoded by
the real tshark (Debian bookworm: 4.0.17).

Checks that tshark dissects each packet as raw IP / UDP 4729 / GSMTAP / gsm_sim / etsi_cat
without any ``-d`` decode-as option, that no packet is malformed, and that the CAT fields
(command type, event, port, buffer size, result) come out right.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from openscws.trace import sim_apdu_payload
from openscws.trace.tracer import ApduTracer

H = bytes.fromhex

pytestmark = pytest.mark.peer

# Channel data, one request and one status line.
REQUEST = b"GET / HTTP/1.1\r\n\r\n"  # 18 = 0x12 bytes
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"  # 17 = 0x11 bytes


@dataclass(frozen=True, slots=True)
class Exchange:
    command: bytes
    response: bytes
    ins: str
    sw: str
    cmd_types: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    port: str = ""
    buffer_size: str = ""
    result: str = ""


def ber(tag: int, value: bytes) -> bytes:
    """Self-check for the hand-written vectors below (lengths < 0x80 only)."""
    assert len(value) < 0x80
    return bytes([tag, len(value)]) + value


# Vectors from the spec digest (§1.6, §3.1, §3.3-3.5, §3.8); lengths checked in
# test_vectors_are_consistent.
SESSION = (
    Exchange(  # §1.6: TERMINAL PROFILE with BIP, TCP server mode; card has OPEN CHANNEL pending
        H("80 10 00 00 11 13 01 68 00 01 0C 00 00 00 00 00 1F E2 00 00 00 05"),
        H("91 14"),
        "0x10",
        "0x9114",
    ),
    Exchange(  # §3.1: OPEN CHANNEL, UICC server mode, port 3516, buffer 1400
        H("80 12 00 00 14"),
        H("D0 12 81 03 02 40 00 82 02 81 82 B9 02 05 78 BC 03 03 0D BC 90 00"),
        "0x12",
        "0x9000",
        cmd_types=("0x40",),
        port="3516",
        buffer_size="1400",
    ),
    Exchange(  # §3.1: its TERMINAL RESPONSE, channel 1 LISTEN
        H("80 14 00 00 14 81 03 02 40 00 82 02 82 81 83 01 00 B8 02 41 00 B9 02 05 78"),
        H("90 00"),
        "0x14",
        "0x9000",
        cmd_types=("0x40",),
        buffer_size="1400",
        result="0x00",
    ),
    Exchange(  # §3.8: Channel status event, channel 1 ESTABLISHED; trailing Le as from pcscd
        H("80 C2 00 00 0D D6 0B 99 01 0A 82 02 82 81 B8 02 81 00 00"),
        H("90 00"),
        "0xc2",
        "0x9000",
        events=("0x0a",),
    ),
    Exchange(  # §3.8: Data available event, 0x12 bytes in the Rx buffer
        H("80 C2 00 00 10 D6 0E 99 01 09 82 02 82 81 B8 02 81 00 B7 01 12"),
        H("91 0E"),
        "0xc2",
        "0x910e",
        events=("0x09",),
    ),
    Exchange(  # §3.5: RECEIVE DATA of 0x12 bytes; FETCH with Le 00 (rewritten to 0E)
        H("80 12 00 00 00"),
        H("D0 0C 81 03 03 42 00 82 02 81 21 B7 01 12 90 00"),
        "0x12",
        "0x9000",
        cmd_types=("0x42",),
    ),
    Exchange(  # §3.5: its TERMINAL RESPONSE with the channel data, nothing left
        H("80 14 00 00 23 81 03 03 42 00 82 02 82 81 83 01 00 B6 12") + REQUEST + H("B7 01 00"),
        H("91 1E"),
        "0x14",
        "0x911e",
        cmd_types=("0x42",),
        result="0x00",
    ),
    Exchange(  # §3.4: SEND DATA, send immediately
        H("80 12 00 00 1E"),
        H("D0 1C 81 03 05 43 01 82 02 81 21 B6 11") + STATUS_LINE + H("90 00"),
        "0x12",
        "0x9000",
        cmd_types=("0x43",),
    ),
    Exchange(  # §3.4: its TERMINAL RESPONSE, 255+ bytes free
        H("80 14 00 00 0F 81 03 05 43 01 82 02 82 81 83 01 00 B7 01 FF"),
        H("91 0B"),
        "0x14",
        "0x910b",
        cmd_types=("0x43",),
        result="0x00",
    ),
    Exchange(  # §3.3: CLOSE CHANNEL back to LISTEN; FETCH without Le
        H("80 12 00 00"),
        H("D0 09 81 03 06 41 01 82 02 81 21 90 00"),
        "0x12",
        "0x9000",
        cmd_types=("0x41",),
    ),
    Exchange(  # §3.3: its TERMINAL RESPONSE
        H("80 14 00 00 0C 81 03 06 41 01 82 02 82 81 83 01 00"),
        H("90 00"),
        "0x14",
        "0x9000",
        cmd_types=("0x41",),
        result="0x00",
    ),
    Exchange(  # §3.8: Channel status event, channel 1 LISTEN again
        H("80 C2 00 00 0D D6 0B 99 01 0A 82 02 82 81 B8 02 41 00"),
        H("90 00"),
        "0xc2",
        "0x9000",
        events=("0x0a",),
    ),
    Exchange(  # §1.1: idle STATUS poll, no data
        H("80 F2 00 0C 00"),
        H("90 00"),
        "0xf2",
        "0x9000",
    ),
    Exchange(  # §1.5: SELECT by path with an FCP in the response (case 4, Le present)
        H("00 A4 08 04 04 7F FF 6F 07 00"),
        H("62 03 82 01 21 90 00"),
        "0xa4",
        "0x9000",
    ),
)
ATR = H("3B 9F 96 80 1F 87 80 31 E0 73 FE 21 1B 67 4A 4C 75 30 34 05 4B A9")

FIELDS = (
    "frame.protocols",
    "ip.checksum.status",
    "udp.length",
    "gsm_sim.apdu.ins",
    "gsm_sim.apdu.sw",
    "etsi_cat.comp_tlv.cmd_type",
    "etsi_cat.comp_tlv.event",
    "etsi_cat.comp_tlv.transport.port",
    "etsi_cat.comp_tlv.buffer_size",
    "etsi_cat.comp_tlv.result",
    "_ws.malformed",
    "_ws.expert",
)


def test_vectors_are_consistent() -> None:
    for ex in SESSION:
        cmd, rsp = ex.command, ex.response
        if len(cmd) > 5:
            body = cmd[5 : 5 + cmd[4]]
            assert len(cmd) - 5 - len(body) in (0, 1), ex
            if body[0] in (0xD0, 0xD6):
                assert ber(body[0], body[2:]) == body, ex
        if rsp[:1] == b"\xd0":
            assert ber(0xD0, rsp[2:-2]) == rsp[:-2], ex
    # Each 91 XX announces exactly the next proactive command.
    for ex, nxt in itertools.pairwise(SESSION):
        if ex.response[-2] == 0x91:
            assert nxt.command[1] == 0x12
            assert ex.response[-1] == len(nxt.response) - 2


def _tshark() -> str:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed: apt-get install tshark")
    return tshark


def _run_tshark(tshark: str, pcap: Path, tmp_path: Path, *args: str) -> str:
    # A private config dir keeps the user's Wireshark preferences out of the result.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    proc = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-o", "ip.check_checksum:TRUE", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def session_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "session.pcap"
    text = io.StringIO()
    tracer = ApduTracer(text, path)
    tracer(b"", ATR, 1700000000.0)  # the card's ATR, as the card link reports it
    for i, ex in enumerate(SESSION, start=1):
        tracer(ex.command, ex.response, 1700000000.0 + i / 10)
    tracer.close()
    # The text trace keeps the ATR; the pcap has the exchanges only (see the next tests).
    assert text.getvalue().splitlines()[0].endswith("ATR " + ATR.hex(" ").upper())
    return path


def test_tshark_decodes_bip_session_as_cat(session_pcap: Path, tmp_path: Path) -> None:
    tshark = _tshark()
    args = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"]
    for field in FIELDS:
        args += ["-e", field]
    lines = _run_tshark(tshark, session_pcap, tmp_path, *args).splitlines()
    # No ATR frame: tshark 4.0 would decode it as an APDU with a bogus status word.
    assert len(lines) == len(SESSION)
    rows = [dict(zip(FIELDS, line.split("|"), strict=True)) for line in lines]

    for row in rows:
        assert row["frame.protocols"].startswith("raw:ip:udp:gsmtap:gsm_sim"), row
        assert row["ip.checksum.status"] == "1", row  # 1 = good
        assert row["_ws.malformed"] == "", row
        assert row["_ws.expert"] == "", row

    for ex, row in zip(SESSION, rows, strict=True):
        assert row["udp.length"] == str(8 + 16 + len(sim_apdu_payload(ex.command, ex.response)))
        got = (
            row["gsm_sim.apdu.ins"],
            row["gsm_sim.apdu.sw"],
            tuple(filter(None, row["etsi_cat.comp_tlv.cmd_type"].split(","))),
            tuple(filter(None, row["etsi_cat.comp_tlv.event"].split(","))),
            row["etsi_cat.comp_tlv.transport.port"],
            row["etsi_cat.comp_tlv.buffer_size"],
            row["etsi_cat.comp_tlv.result"],
        )
        want = (ex.ins, ex.sw, ex.cmd_types, ex.events, ex.port, ex.buffer_size, ex.result)
        assert got == want, ex
        if ex.cmd_types or ex.events:
            assert row["frame.protocols"].endswith(":etsi_cat"), row

    # All four BIP data-path commands are recognised, and port 3516 decodes.
    seen = {t for row in rows for t in row["etsi_cat.comp_tlv.cmd_type"].split(",") if t}
    assert {"0x40", "0x41", "0x42", "0x43"} <= seen


def test_tshark_verbose_names(session_pcap: Path, tmp_path: Path) -> None:
    tshark = _tshark()
    text = _run_tshark(tshark, session_pcap, tmp_path, "-V", "-O", "gsm_sim,etsi_cat")
    for expected in (
        "Instruction: TERMINAL PROFILE (0x10)",
        "Proactive SIM: OPEN CHANNEL: Supported",
        "Command Type: OPEN CHANNEL (0x40)",
        "Command Type: CLOSE CHANNEL (0x41)",
        "Command Type: RECEIVE DATA (0x42)",
        "Command Type: SEND DATA (0x43)",
        "Transport protocol type: TCP, UICC in server mode (0x03)",
        "Transport port: 3516",
        "Buffer Size: 1400",
        "Event: Channel status (0x0a)",
        "Event: Data available (0x09)",
        "BER-TLV Tag: Event Download (0xd6)",
        "BER-TLV Tag: Proactive Command (0xd0)",
    ):
        assert expected in text, expected
    assert "Malformed" not in text
    assert "Unknown status word" not in text
    # The first frame is the first exchange, TERMINAL PROFILE, not the ATR read as an APDU.
    first = text.split("\nFrame 2:")[0]
    assert "Instruction: TERMINAL PROFILE (0x10)" in first
