"""`ras.senders.SmppSender` against a real SMSC-side peer: Kannel's `drive_smpp` (Debian package
kannel-extras), the fake SMSC Kannel's own test suite drives its SMPP client with.

drive_smpp accepts one ESME session on its port, answers bind_transmitter and each submit_sm
with ESME_ROK, and logs each PDU's type and the short_message as a C string (so only up to its
first NUL: `02 70 ...` shows as "\\x02p"). For the exact bytes, a relay in the test sits between
the sender and drive_smpp and records both directions; the recorded submit_sm PDUs are then
decoded by tshark's SMPP and GSM SMS dissectors (through text2pcap) and by a small parser here.
drive_smpp listens on all interfaces (its -p option takes no address); everything else binds
127.0.0.1. After the session it tries to reach a Kannel bearerbox on 13001 and gives up with a
PANIC two seconds later, which is how it ends.

SMPP error statuses are checked against a tiny acceptor in the test: drive_smpp never refuses."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openscws.ras.senders import (
    DeliveryStatus,
    SendError,
    SendResult,
    SmppError,
    SmppSender,
    command_parts,
    smpp_status_name,
)

DRIVE_SMPP = "/usr/lib/kannel/test/drive_smpp"
MSISDN = "+447700900123"
# A real command packet: the secured data of a captured card session (asterix SecurePacket.py
# test_SPI1531, also in tests/ota/test_ota_sms.py), CPL to the end.
PACKET = bytes.fromhex("0000201115351515C000004D5C2C7F43D3E774316C66CE8E1D5045755BACEF5DC83203")

BIND_TRANSMITTER, SUBMIT_SM, UNBIND = 0x00000002, 0x00000004, 0x00000006
RESP = 0x80000000


# -- the wire ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pdu:
    command_id: int
    status: int
    sequence: int
    body: bytes

    def encode(self) -> bytes:
        head = struct.pack(
            ">IIII", 16 + len(self.body), self.command_id, self.status, self.sequence
        )
        return head + self.body


def split_pdus(stream: bytes) -> list[Pdu]:
    """SMPP 3.4 §3.2: command_length, command_id, command_status, sequence_number, body."""
    out: list[Pdu] = []
    i = 0
    while i < len(stream):
        length, command_id, status, sequence = struct.unpack_from(">IIII", stream, i)
        out.append(Pdu(command_id, status, sequence, stream[i + 16 : i + length]))
        i += length
    assert i == len(stream), "a PDU is cut short"
    return out


@dataclass(frozen=True)
class SubmitSm:
    source_addr: str
    destination_addr: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    protocol_id: int
    registered_delivery: int
    data_coding: int
    short_message: bytes


def parse_submit_sm(body: bytes) -> SubmitSm:
    """SMPP 3.4 §4.4.1, mandatory parameters in order."""
    i = 0

    def cstr() -> str:
        nonlocal i
        end = body.index(b"\0", i)
        value = body[i:end].decode()
        i = end + 1
        return value

    def byte() -> int:
        nonlocal i
        i += 1
        return body[i - 1]

    cstr()  # service_type
    byte(), byte()  # source TON, NPI
    source = cstr()
    dest_ton, dest_npi = byte(), byte()
    destination = cstr()
    esm_class, protocol_id = byte(), byte()
    byte()  # priority_flag
    cstr(), cstr()  # schedule_delivery_time, validity_period
    registered = byte()
    byte()  # replace_if_present_flag
    data_coding = byte()
    byte()  # sm_default_msg_id
    length = byte()
    return SubmitSm(
        source,
        destination,
        dest_ton,
        dest_npi,
        esm_class,
        protocol_id,
        registered,
        data_coding,
        body[i : i + length],
    )


@dataclass
class Relay:
    """A recording TCP relay on 127.0.0.1 in front of `upstream`."""

    upstream: int
    port: int = 0
    up: bytearray = field(default_factory=bytearray)
    down: bytearray = field(default_factory=bytearray)

    async def _copy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
    ) -> None:
        while data := await reader.read(65536):
            record += data
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(
            self._copy(reader, up_writer, self.up),
            self._copy(up_reader, writer, self.down),
            return_exceptions=True,
        )


@contextlib.asynccontextmanager
async def relay(upstream: int) -> AsyncIterator[Relay]:
    r = Relay(upstream)
    server = await asyncio.start_server(r._handle, "127.0.0.1", 0)
    r.port = int(server.sockets[0].getsockname()[1])
    try:
        yield r
    finally:
        server.close()


def tshark_fields(tshark: str, tmp_path: Path, pdus: list[Pdu], *fields: str) -> list[list[str]]:
    """Each PDU as one TCP segment to port 2775 (text2pcap), decoded by tshark's dissectors."""
    dump = tmp_path / "smpp.txt"
    with dump.open("w") as f:
        for pdu in pdus:
            raw = pdu.encode()
            for i in range(0, len(raw), 16):
                f.write(f"{i:06x} {raw[i : i + 16].hex(' ')}\n")
            f.write("\n")
    pcap = tmp_path / "smpp.pcap"
    subprocess.run(["text2pcap", "-q", "-T", "40000,2775", str(dump), str(pcap)], check=True)
    args = [tshark, "-r", str(pcap), "-d", "tcp.port==2775,smpp", "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    done = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60)
    return [line.split("\t") for line in done.stdout.splitlines()]


# -- drive_smpp ---------------------------------------------------------------------------------


@dataclass
class DriveSmpp:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_bytes().decode("latin-1")


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


@pytest.fixture
def drive_smpp(
    need_file: Callable[[str, str], Path], free_port: Callable[[], int], tmp_path: Path
) -> Iterator[DriveSmpp]:
    binary = need_file(DRIVE_SMPP, "kannel-extras")
    port = free_port()
    log = tmp_path / "drive_smpp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-v", "0", "-p", str(port), "-m", "0"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    peer = DriveSmpp(proc, port, log)
    try:
        # Probing with connect() would use up its one session: watch the socket table.
        deadline = time.monotonic() + 10
        while not _listening(port):
            assert proc.poll() is None, f"drive_smpp exited:\n{peer.text()}"
            assert time.monotonic() < deadline, f"drive_smpp not listening:\n{peer.text()}"
            time.sleep(0.05)
        yield peer
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _sender(port: int, **kwargs: int) -> SmppSender:
    return SmppSender("127.0.0.1", port, "foo", "bar", "12345", **kwargs)


async def _wait_session(r: Relay, submits: int) -> None:
    deadline = time.monotonic() + 5
    while sum(p.command_id == UNBIND | RESP for p in split_pdus(bytes(r.down))) < 1:
        assert time.monotonic() < deadline, "no unbind_resp from the peer"
        await asyncio.sleep(0.01)
    assert sum(p.command_id == SUBMIT_SM for p in split_pdus(bytes(r.up))) == submits


@pytest.mark.e2e
@pytest.mark.peer
def test_trigger_through_drive_smpp(
    drive_smpp: DriveSmpp, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    tshark = need_tool("tshark", "tshark")
    need_tool("text2pcap", "wireshark-common")

    async def main() -> tuple[SendResult, Relay]:
        async with relay(drive_smpp.port) as r:
            result = await _sender(r.port, registered_delivery=1).send(MSISDN, PACKET)
            await _wait_session(r, 1)
            return result, r

    result, r = asyncio.run(main())
    assert result == SendResult(DeliveryStatus.SUBMITTED, 1, message_ids=("",))

    up, down = split_pdus(bytes(r.up)), split_pdus(bytes(r.down))
    assert [p.command_id for p in up] == [BIND_TRANSMITTER, SUBMIT_SM, UNBIND]
    assert [(p.command_id, p.status) for p in down] == [
        (BIND_TRANSMITTER | RESP, 0),
        (SUBMIT_SM | RESP, 0),
        (UNBIND | RESP, 0),
    ]
    submit = parse_submit_sm(up[1].body)
    assert submit == SubmitSm(
        source_addr="12345",
        destination_addr="447700900123",
        dest_ton=1,
        dest_npi=1,
        esm_class=0x40,
        protocol_id=0x7F,
        registered_delivery=1,
        data_coding=0xF6,
        short_message=b"\x02\x70\x00" + PACKET,
    )

    # The peer's own account: it parsed each PDU, and the message up to its first NUL.
    text = drive_smpp.text()
    assert "Handling SMPP PDU of type bind_transmitter" in text
    assert "Handling SMPP PDU of type submit_sm" in text
    assert "submit_sm: short_message = <\x02p>" in text

    # tshark's reading of the same bytes
    (row,) = tshark_fields(
        tshark,
        tmp_path,
        [up[1]],
        "smpp.command_id",
        "smpp.esm.submit.features",
        "smpp.protocol_id",
        "smpp.data_coding",
        "smpp.destination_addr",
        "smpp.message",
    )
    assert row == [
        "0x00000004",
        "0x01",
        "0x7f",
        "0xf6",
        "447700900123",
        (b"\x02\x70\x00" + PACKET).hex(),
    ]


@pytest.mark.e2e
@pytest.mark.peer
def test_long_packet_is_concatenated_through_drive_smpp(
    drive_smpp: DriveSmpp, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    tshark = need_tool("tshark", "tshark")
    need_tool("text2pcap", "wireshark-common")
    packet = PACKET * 9  # 315 bytes: three SMS

    async def main() -> Relay:
        async with relay(drive_smpp.port) as r:
            result = await _sender(r.port).send(MSISDN, packet)
            assert (result.status, result.parts) == (DeliveryStatus.SUBMITTED, 3)
            await _wait_session(r, 3)
            return r

    r = asyncio.run(main())
    submits = [p for p in split_pdus(bytes(r.up)) if p.command_id == SUBMIT_SM]
    messages = [parse_submit_sm(p.body).short_message for p in submits]
    assert all(len(m) <= 140 for m in messages)
    ref = messages[0][3]
    # TS 23.040 §9.2.3.24.1 concatenation (00 03 ref total seq); IE 70 in the first only
    assert messages[0][:8] == bytes((7, 0x00, 3, ref, 3, 1, 0x70, 0x00))
    assert messages[1][:6] == bytes((5, 0x00, 3, ref, 3, 2))
    assert messages[2][:6] == bytes((5, 0x00, 3, ref, 3, 3))
    assert messages[0][8:] + messages[1][6:] + messages[2][6:] == packet
    assert drive_smpp.text().count("Handling SMPP PDU of type submit_sm") == 3
    assert [p.status for p in split_pdus(bytes(r.down)) if p.command_id == SUBMIT_SM | RESP] == [
        0,
        0,
        0,
    ]

    rows = tshark_fields(
        tshark,
        tmp_path,
        submits,
        "smpp.esm.submit.features",
        "gsm_sms.udh.mm.msg_id",
        "gsm_sms.udh.mm.msg_parts",
        "gsm_sms.udh.mm.msg_part",
    )
    assert rows == [["0x01", str(ref), "3", str(n)] for n in (1, 2, 3)]


# -- SMPP errors, against a small acceptor ------------------------------------------------------


@contextlib.asynccontextmanager
async def acceptor(bind_status: int = 0, submit_status: int = 0) -> AsyncIterator[int]:
    """Answers bind_transmitter and submit_sm with the given statuses, and unbind."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(16)
                length, command_id, _, sequence = struct.unpack(">IIII", head)
                await reader.readexactly(length - 16)
                if command_id == BIND_TRANSMITTER:
                    reply = Pdu(command_id | RESP, bind_status, sequence, b"acceptor\0")
                elif command_id == SUBMIT_SM:
                    body = b"msg-%d\0" % sequence if not submit_status else b""
                    reply = Pdu(command_id | RESP, submit_status, sequence, body)
                else:
                    reply = Pdu(command_id | RESP, 0, sequence, b"")
                writer.write(reply.encode())
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def test_message_ids_are_returned() -> None:
    async def main() -> None:
        async with acceptor() as port:
            result = await _sender(port).send(MSISDN, PACKET * 9)
        assert result.message_ids == ("msg-3", "msg-4", "msg-5")  # bind was 2

    asyncio.run(main())


@pytest.mark.parametrize(
    ("bind", "submit", "command", "name"),
    [
        (0x0E, 0, "bind_transmitter_resp", "ESME_RINVPASWD"),
        (0, 0x0B, "submit_sm_resp", "ESME_RINVDSTADR"),
        (0, 0x14, "submit_sm_resp", "ESME_RMSGQFUL"),
        (0, 0x58, "submit_sm_resp", "ESME_RTHROTTLED"),
    ],
)
def test_smpp_errors_carry_their_names(bind: int, submit: int, command: str, name: str) -> None:
    async def main() -> None:
        async with acceptor(bind, submit) as port:
            with pytest.raises(SmppError) as caught:
                await _sender(port).send(MSISDN, PACKET)
        assert (caught.value.command, caught.value.name) == (command, name)
        assert caught.value.command_status == (bind or submit)

    asyncio.run(main())


def test_unknown_status_is_named_by_its_number() -> None:
    assert smpp_status_name(0x400) == "ESME_0x00000400"


def test_refused_connection_is_a_send_error(free_port: Callable[[], int]) -> None:
    async def main() -> None:
        with pytest.raises(SendError) as caught:
            await _sender(free_port(), timeout=2).send(MSISDN, PACKET)
        assert not isinstance(caught.value, SmppError)

    asyncio.run(main())


def test_single_and_split_user_data() -> None:
    (single,) = command_parts(b"x" * 137, 9)
    assert single[0].encode() + single[1] == b"\x02\x70\x00" + b"x" * 137
    parts = command_parts(b"y" * 138, 9)
    assert [len(h.encode()) + len(p) for h, p in parts] == [140, 12]
    with pytest.raises(ValueError, match="255 SMS"):
        command_parts(b"z" * (132 + 134 * 254 + 1), 0)
