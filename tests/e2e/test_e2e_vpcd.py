"""The card as its own process, over vsmartcard's vpcd protocol: first to `openscws gateway`,
then to the real pcscd with the vpcd driver, driven by pcsc-tools (pcsc_scan, scriptor), and
at last by `openscws gateway --pcsc`: the terminal reaching its card through PC/SC, as it
would a real UICC in a USB reader."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_wire import run

from openscws.demo import demo_files

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

ATR = "3B 9F 96 80 1F 87 80 31 E0 73 FE 21 1B 67 4A 4C 75 30 34 05 4B A9"
VPCD_PORT = 35963  # fixed by /etc/reader.conf.d/vpcd (CHANNELID 0x8C7B)
TERMINAL_PROFILE = "80 10 00 00 11 13 01 68 00 01 0C 00 00 00 00 00 1F E2 00 00 00 05"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    try:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    finally:
        out.close()  # the child has its own descriptor


def _listening(port: int) -> bool:
    """Whether a socket listens on `port`, read from /proc: a test connection would be taken
    by vpcd for a card inserted and pulled at once."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _wait_reader(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until vpcd listens on its port and pcscd lists its reader."""
    from openscws.aio.pcsc import PcscError, list_readers

    deadline = time.monotonic() + timeout
    names: list[str] = []
    while True:
        assert proc.poll() is None, "pcscd exited:\n" + log.read_text(errors="replace")
        if _listening(VPCD_PORT):
            try:
                names = list_readers()
            except PcscError:
                names = []
            if any("vpcd" in n.lower() or "virtual" in n.lower() for n in names):
                return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no vpcd reader in pcscd after {timeout} s (readers: {names}):\n"
                + log.read_text(errors="replace")[-4000:]
            )
        time.sleep(0.1)


def test_gateway_and_card_processes(  # type: ignore[no-untyped-def]
    need_tool: Callable[[str, str], str], openscws_proc, free_port, tmp_path: Path
) -> None:
    curl = need_tool("curl", "curl")
    vpcd, http, https = free_port(), free_port(), free_port()
    maps = ["--port-map", f"3516={http}", "--port-map", f"4116={https}"]
    gateway = openscws_proc("gateway", "--vpcd", f"127.0.0.1:{vpcd}", *maps, name="gateway")
    gateway.wait_for("waiting for a card")
    card = openscws_proc(
        "card", "--data-dir", tmp_path / "card", "--vpcd", f"127.0.0.1:{vpcd}", name="card"
    )
    base = gateway.wait_ready()
    assert base == f"http://127.0.0.1:{http}"
    for path in ("/", "/img/card.png"):
        got = run([curl, "-sS", "--max-time", "15", "-w", "%{http_code}", base + path])
        want = demo_files()["/index.html" if path == "/" else path]
        assert got.returncode == 0, got.stderr
        assert got.stdout == want + b"200"

    # Pull the card: the gateway notices the link is gone and shuts down, no hang.
    card.proc.kill()
    card.proc.wait(10)
    assert gateway.proc.wait(15) != 0
    assert "card link lost" in gateway.stderr
    refused = run([curl, "-sS", "--max-time", "5", base + "/"], timeout=10)
    assert refused.returncode != 0  # nothing listens any more


@pytest.fixture
def pcscd(
    need_tool: Callable[[str, str], str],
    need_file: Callable[[str, str], Path],
    peer_unavailable: Callable[[str], None],
    tmp_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """pcscd in the foreground, with vsmartcard's vpcd reader waiting on port 35963."""
    exe = need_tool("pcscd", "pcscd")
    need_file("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "vsmartcard-vpcd")
    need_file("/etc/reader.conf.d/vpcd", "vsmartcard-vpcd")
    busy = None
    if Path("/run/pcscd/pcscd.comm").exists():
        busy = "a pcscd is already running (/run/pcscd/pcscd.comm)"
    else:
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", VPCD_PORT))  # probing the address vpcd binds
            except OSError:
                busy = f"port {VPCD_PORT} is in use"
    if busy is not None:
        peer_unavailable(busy)
    proc = _spawn([exe, "--foreground", "--debug"], tmp_path / "pcscd.log")
    try:
        _wait_reader(proc, tmp_path / "pcscd.log", 15)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_card_in_pcscd(
    pcscd: subprocess.Popen[bytes], need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    pcsc_scan = need_tool("pcsc_scan", "pcsc-tools")
    scriptor = need_tool("scriptor", "pcsc-tools")
    card = _spawn(
        [
            sys.executable,
            *("-m", "openscws", "card", "--data-dir", str(tmp_path / "card")),
            *("--vpcd", f"127.0.0.1:{VPCD_PORT}"),
        ],
        tmp_path / "card.log",
    )
    try:
        # pcscd sees the card and reads its ATR.
        deadline = time.monotonic() + 20
        while True:
            scan = run([pcsc_scan, "-c", "-n", "-t", "1"], timeout=15)
            text = scan.stdout.decode(errors="replace")
            if "Card inserted" in text and f"ATR: {ATR}" in text:
                break
            assert time.monotonic() < deadline, text + (tmp_path / "card.log").read_text()
            time.sleep(0.3)

        # APDUs through PC/SC: TERMINAL PROFILE, then FETCH of the proactive command.
        first = run([scriptor], stdin=f"{TERMINAL_PROFILE}\n".encode(), timeout=20)
        replies = _replies(first.stdout.decode(errors="replace"))
        assert len(replies) == 1, first.stdout
        sw = replies[0].split()
        assert sw[0] == "91", replies  # a proactive command is pending
        fetch = f"80 12 00 00 {sw[1]}"
        second = run([scriptor], stdin=f"{fetch}\n".encode(), timeout=20)
        replies = _replies(second.stdout.decode(errors="replace"))
        assert len(replies) == 1, second.stdout
        reply = replies[0]
        assert reply.startswith("D0 "), reply
        assert "81 03 01 05 00" in reply  # command details: SET UP EVENT LIST
        assert reply.endswith("90 00"), reply
        assert card.poll() is None
    finally:
        if card.poll() is None:
            card.terminate()
            try:
                card.wait(10)
            except subprocess.TimeoutExpired:
                card.kill()
                card.wait(5)


def _replies(output: str) -> list[str]:
    """scriptor's "< ..." answers, with its line wrapping and SW comments removed."""
    answers: list[str] = []
    for line in output.splitlines():
        if line.startswith("> "):
            answers.append("")
        elif line.startswith("< "):
            answers.append(line[2:])
        elif answers and answers[-1]:
            answers[-1] += " " + line
    return [" ".join(a.split(":", 1)[0].split()) for a in answers if a]


def test_gateway_drives_the_card_through_pcscd(
    pcscd: subprocess.Popen[bytes],
    need_tool: Callable[[str, str], str],
    openscws_proc,  # type: ignore[no-untyped-def]
    free_port,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """card -> vpcd -> pcscd -> libpcsclite -> `openscws gateway --pcsc` -> curl: every APDU
    crosses pcscd. HTTP and HTTPS pages come out whole; a second program cannot take the
    card meanwhile (the terminal holds it exclusively); pulling the card ends the gateway."""
    curl = need_tool("curl", "curl")
    http, https = free_port(), free_port()
    card = openscws_proc(
        "card", "--data-dir", tmp_path / "card", "--vpcd", f"127.0.0.1:{VPCD_PORT}", name="card"
    )
    doctor = run([sys.executable, "-m", "openscws", "doctor"], timeout=60)
    assert b"  Virtual PCD 00 00\n" in doctor.stdout, doctor.stdout
    # The gateway waits for the card to show up in pcscd's reader.
    maps = ["--port-map", f"3516={http}", "--port-map", f"4116={https}"]
    gateway = openscws_proc("gateway", "--pcsc", "Virtual PCD", *maps, name="gateway")
    base = gateway.wait_ready()
    assert "card in PC/SC reader 'Virtual PCD 00 00'" in gateway.stdout
    for path in ("/", "/img/card.png"):
        got = run([curl, "-sS", "--max-time", "15", "-w", "%{http_code}", base + path])
        want = demo_files()["/index.html" if path == "/" else path]
        assert got.returncode == 0, got.stderr
        assert got.stdout == want + b"200"
    ca = next((tmp_path / "logs").glob("xdg-data*/openscws/ca/ca.pem"))
    got = run([curl, "-sS", "--max-time", "15", "--cacert", str(ca), f"https://127.0.0.1:{https}/"])
    assert got.returncode == 0, got.stderr
    assert got.stdout == demo_files()["/index.html"]

    scriptor = need_tool("scriptor", "pcsc-tools")
    other = run([scriptor, "-r", "Virtual PCD 00 00"], stdin=b"80 F2 00 0C 00\n", timeout=20)
    assert b"< " not in other.stdout  # no APDU of another program got through
    assert b"Sharing violation" in other.stdout + other.stderr

    card.proc.kill()
    card.proc.wait(10)
    assert gateway.proc.wait(20) != 0
    assert "card link lost" in gateway.stderr


def test_gateway_without_pcscd_says_so(openscws_proc, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No pcscd to talk to (here: pcsc-lite pointed at a socket nobody serves): a clear error
    naming the package, exit 2, no traceback."""
    need = Path("/usr/lib/x86_64-linux-gnu/libpcsclite.so.1")
    if not need.exists() and not list(Path("/usr/lib").glob("*/libpcsclite.so.1")):
        pytest.skip("needs Debian package libpcsclite1")
    done = subprocess.run(
        [sys.executable, "-m", "openscws", "gateway", "--pcsc"],
        env={
            **__import__("os").environ,
            "PCSCLITE_CSOCK_NAME": str(tmp_path / "nobody.comm"),
            "XDG_DATA_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "is pcscd running? (Debian package pcscd)" in done.stderr
    assert "Traceback" not in done.stderr


def test_usim_authenticate_through_pcscd(
    pcscd: subprocess.Popen[bytes], need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    """The card's USIM behind pcscd answers AUTHENTICATE as osmo-auc-gen (an independent
    MILENAGE) computes it: scriptor sends SELECT and AUTHENTICATE through PC/SC."""
    scriptor = need_tool("scriptor", "pcsc-tools")
    osmo = need_tool("osmo-auc-gen", "libosmocore-utils")
    k, opc = "000102030405060708090a0b0c0d0e0f", "f0e0d0c0b0a090807060504030201000"
    rand, sqn = "00112233445566778899aabbccddeeff", 4660
    data = ["--data-dir", str(tmp_path / "card")]
    cli = [sys.executable, "-m", "openscws"]
    assert run([*cli, "init", *data, "-q"]).returncode == 0
    usim = ["card", "usim", "set", "--imsi", "001010000000001", "--k", k, "--opc", opc]
    assert run([*cli, *usim, "--sqn", str(sqn - 32), *data]).returncode == 0
    vector = run([osmo, "-3", "-a", "milenage", "-k", k, "-o", opc, "-r", rand, "-s", str(sqn)])
    fields = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in vector.stdout.decode().splitlines())
    )
    card = _spawn([*cli, "card", *data, "--vpcd", f"127.0.0.1:{VPCD_PORT}"], tmp_path / "card.log")
    try:
        # scriptor wants the bytes of an APDU apart.
        body = bytes.fromhex(f"10{rand}10{fields['AUTN']}")
        spaced = " ".join(f"{b:02X}" for b in body)
        script = f"00 A4 04 04 07 A0 00 00 00 87 10 02\n00 88 00 81 22 {spaced} 00\n"
        deadline = time.monotonic() + 20
        while True:
            got = run([scriptor], stdin=script.encode(), timeout=20)
            replies = _replies(got.stdout.decode(errors="replace"))
            if len(replies) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)  # the card is still on its way into pcscd's reader
        assert len(replies) == 2, (script, got.stdout, got.stderr)
        assert replies[0].endswith("90 00")
        answer = replies[1].replace(" ", "").lower()
        want = "".join(
            f"{len(v) // 2:02x}{v}"
            for v in (fields["RES"], fields["CK"], fields["IK"], fields["Kc"])
        )
        assert answer == "db" + want + "9000"
    finally:
        card.terminate()
        card.wait(10)
