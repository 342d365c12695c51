"""The SIP push path against real peers: Kamailio (Debian `kamailio`) with the shipped
deploy/kamailio/kamailio.cfg as registrar and proxy between the PPG and the push client; SIPp
(Debian `sip-tester`) as a foreign UAS receiving the PPG's MESSAGE (checking its headers) and as
a foreign UAC sending valid and spoofed MESSAGEs to the push client; Kannel's PPG (Debian
`kannel`) accepting the admin server's PAP submission."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from openscws.aio.http_small import HttpReply, HttpRequest, SmallHttpServer
from openscws.aio.pap_client import PapClient
from openscws.aio.ppg import Ppg, PpgConfig
from openscws.aio.push_client import PushClient, PushClientConfig, register_app
from openscws.aio.sip_endpoint import SipEndpoint, new_branch
from openscws.push.content import SCWS_APP_ID
from openscws.push.pap import Address, AddressType, MessageState, PushResponse, StatusQueryResponse
from openscws.push.ppg import DeliveryPolicy, Initiator
from openscws.push.sip import request

pytestmark = [pytest.mark.peer, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
PPG_ID = "sip:ppg@scws.test"
BODY = b"\x00\x10\x15\x16\x0a\x12\x12\xb2\x01\x00" + bytes(8)


def wait_port(port: int, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@contextlib.contextmanager
def kamailio(tmp_path: Path, port: int, need_tool: Callable[[str, str], str]) -> Iterator[None]:
    binary = need_tool("kamailio", "kamailio")
    run = tmp_path / "kam"
    run.mkdir()
    log = (tmp_path / "kamailio.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "-f",
            str(KAMAILIO_CFG),
            "-DD",
            "-E",
            "-Y",
            str(run),
            "-P",
            str(run / "pid"),
            "-l",
            f"udp:127.0.0.1:{port}",
            "-l",
            f"tcp:127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class App:
    """An application registered on the push client's PUSH-CAI API."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.http = SmallHttpServer(self._on)

    async def _on(self, req: HttpRequest) -> HttpReply:
        self.got.append(req.body)
        return HttpReply(204)


@contextlib.asynccontextmanager
async def ppg_of(tmp_path: Path, **config: object) -> AsyncIterator[Ppg]:
    settings: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'ppg.db'}",
        "initiators": (Initiator("ras", "pw"),),
        "policy": DeliveryPolicy(max_attempts=3, backoff=0.2, backoff_cap=0.5),
        "poll": 0.05,
        **config,
    }
    ppg = Ppg(PpgConfig(**settings))  # type: ignore[arg-type]
    await ppg.start()
    try:
        yield ppg
    finally:
        await ppg.close()


async def delivered(client: PapClient, push_id: str) -> StatusQueryResponse:
    async with asyncio.timeout(20):
        while True:
            status = await asyncio.to_thread(client.status, push_id)
            assert isinstance(status, StatusQueryResponse)
            if status.results[0].state is not MessageState.PENDING:
                return status
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_kamailio_registrar_and_proxy(
    tmp_path: Path,
    transport: str,
    free_port: Callable[[], int],
    need_tool: Callable[[str, str], str],
) -> None:
    port = free_port()
    with kamailio(tmp_path, port, need_tool):
        asyncio.run(kamailio_flow(tmp_path, port, transport))


def test_tshark_decodes_the_sip_traffic(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    tshark = need_tool("tshark", "tshark")
    port = free_port()
    pcap = tmp_path / "sip.pcap"
    capture = subprocess.Popen(
        [tshark, "-i", "lo", "-f", f"port {port}", "-w", str(pcap)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert capture.stderr is not None
        started = b""
        while b"Capturing on" not in started:
            line = capture.stderr.readline()
            if not line:
                pytest.fail(f"tshark did not start: {started.decode(errors='replace')}")
            started += line
        with kamailio(tmp_path, port, need_tool):
            asyncio.run(kamailio_flow(tmp_path, port, "UDP"))
        time.sleep(0.5)
    finally:
        capture.terminate()
        capture.wait(10)
        if capture.stderr is not None:
            capture.stderr.close()
    decode = [tshark, "-r", str(pcap), "-d", f"udp.port=={port},sip", "-d", f"tcp.port=={port},sip"]
    methods = (
        subprocess.run(
            [*decode, "-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .split()
    )
    assert {"REGISTER", "MESSAGE", "200", "404"} <= set(methods)
    bad = (
        subprocess.run(
            [
                *decode,
                "-Y",
                "_ws.malformed || _ws.expert.severity == error",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .split()
    )
    assert bad == []


async def kamailio_flow(tmp_path: Path, port: int, transport: str) -> None:
    proxy = f"sip:127.0.0.1:{port};transport={transport.lower()}"
    async with ppg_of(tmp_path, proxy=proxy) as ppg:
        app = App()
        await app.http.start()
        client = PushClient(
            PushClientConfig(
                aor="sip:device1@scws.test",
                registrar=proxy,
                trusted_ppg=frozenset({PPG_ID}),
                transport=transport,
            )
        )
        await client.start()
        try:
            await asyncio.to_thread(register_app, client.cai_url, SCWS_APP_ID, app.http.url("/p"))
            async with asyncio.timeout(15):
                while not client.registered.is_set():
                    await asyncio.sleep(0.05)
            pi = PapClient(ppg.pap_url, username="ras", password="pw")
            answer = await asyncio.to_thread(
                pi.push, "k1", Address.sip("sip:device1@scws.test"), BODY
            )
            assert isinstance(answer, PushResponse)
            assert answer.code == 1001
            status = await delivered(pi, "k1")
            assert (status.results[0].state, status.results[0].code) == (
                MessageState.DELIVERED,
                1000,
            )
            assert app.got == [BODY]
            # an AOR nobody registered: Kamailio answers 404, the push fails with 2003
            await asyncio.to_thread(pi.push, "k2", Address.sip("sip:nobody@scws.test"), BODY)
            status = await delivered(pi, "k2")
            assert (status.results[0].state, status.results[0].code) == (
                MessageState.UNDELIVERABLE,
                2003,
            )
        finally:
            await client.close()
            await app.http.close()


UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="foreign UAS taking the PPG's MESSAGE">
  <recv request="MESSAGE">
    <action>
      <ereg regexp="pusheventapp=.push.scws.;require;explicit"
            search_in="hdr" header="Accept-Contact:" check_it="true" assign_to="ac"/>
      <ereg regexp="x-oma-application:push.scws"
            search_in="hdr" header="X-Wap-Application-Id:" check_it="true" assign_to="app"/>
      <ereg regexp="application/octet-stream"
            search_in="hdr" header="Content-Type:" check_it="true" assign_to="ct"/>
      <ereg regexp="sip:ppg@scws.test"
            search_in="hdr" header="From:" check_it="true" assign_to="from"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <Reference variables="ac,app,ct,from"/>
</scenario>
"""


def uac(sender: str, expect: int) -> str:
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="foreign UAC sending a push">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:device1@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <{sender}>;tag=[pid]SIPpTag00[call_number]
      To: <sip:device1@scws.test>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      X-Wap-Application-Id: x-oma-application:push.scws
      Content-Type: application/octet-stream
      Content-Length: [len]

      trigger
    ]]>
  </send>
  <recv response="{expect}"/>
</scenario>
"""


def test_sipp_uas_receives_the_ppgs_message(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    sipp = need_tool("sipp", "sip-tester")
    port = free_port()
    (tmp_path / "uas.xml").write_text(UAS)
    proc = subprocess.Popen(
        [
            sipp,
            "-sf",
            str(tmp_path / "uas.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "1",
            "-timeout",
            "30",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def main() -> None:
        async with ppg_of(tmp_path) as ppg:
            me = SipEndpoint(None)
            await me.start()
            try:
                aor = "sip:device1@scws.test"
                register = request(
                    "REGISTER",
                    "sip:scws.test",
                    [
                        ("Via", me.via("UDP", new_branch())),
                        ("From", f"<{aor}>;tag=1"),
                        ("To", f"<{aor}>"),
                        ("Call-ID", "r1"),
                        ("CSeq", "1 REGISTER"),
                        ("Contact", f"<sip:device1@127.0.0.1:{port}>"),
                    ],
                )
                assert (await me.request(register, "127.0.0.1", ppg.sip.port, "UDP")).status == 200
            finally:
                await me.close()
            pi = PapClient(ppg.pap_url, username="ras", password="pw")
            await asyncio.to_thread(pi.push, "s1", Address.sip(aor), BODY)
            status = await delivered(pi, "s1")
            assert status.results[0].state is MessageState.DELIVERED

    try:
        asyncio.run(main())
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sipp_uac_valid_and_spoofed(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    sipp = need_tool("sipp", "sip-tester")
    registrar_port = free_port()

    async def main() -> None:
        # the push client registers with the embedded registrar of a PPG
        async with ppg_of(tmp_path) as ppg:
            app = App()
            await app.http.start()
            client = PushClient(
                PushClientConfig(
                    aor="sip:device1@scws.test",
                    registrar=f"sip:127.0.0.1:{ppg.sip.port}",
                    trusted_ppg=frozenset({PPG_ID}),
                )
            )
            await client.start()
            try:
                await asyncio.to_thread(
                    register_app, client.cai_url, SCWS_APP_ID, app.http.url("/p")
                )
                for name, sender, expect in (
                    ("valid", PPG_ID, 200),
                    ("spoofed", "sip:mallory@evil.test", 403),
                ):
                    scenario = tmp_path / f"{name}.xml"
                    scenario.write_text(uac(sender, expect))
                    run = await asyncio.to_thread(
                        subprocess.run,
                        [
                            sipp,
                            f"127.0.0.1:{client.sip.port}",
                            "-sf",
                            str(scenario),
                            "-i",
                            "127.0.0.1",
                            "-p",
                            str(free_port()),
                            "-m",
                            "1",
                            "-timeout",
                            "20",
                            "-timeout_error",
                            "-nostdin",
                        ],
                        cwd=tmp_path,
                        capture_output=True,
                        timeout=60,
                    )
                    assert run.returncode == 0, (name, run.stderr.decode(errors="replace"))
                assert app.got == [b"trigger\r\n"]
            finally:
                await client.close()
                await app.http.close()

    del registrar_port
    asyncio.run(main())


KANNEL_CONF = """group = core
admin-port = {admin}
admin-password = adminpw
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox}
smsbox-interface = "127.0.0.1"
wapbox-port = {wapbox}
box-allow-ip = "127.0.0.1"

group = wapbox
bearerbox-host = 127.0.0.1

group = ppg
ppg-url = /wappush
ppg-port = {ppg}
trusted-pi = false
ppg-allow-ip = "127.0.0.1"
global-sender = 12345
concurrent-pushes = 10
users = 8

group = wap-push-user
wap-push-user = scwsras
ppg-username = ras
ppg-password = secret
allow-ip = "127.0.0.1"

group = smsc
smsc = fake
smsc-id = FAKE
port = {fake}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
"""


def test_kannel_ppg_accepts_our_pap(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    bearerbox = need_tool("bearerbox", "kannel")
    wapbox = need_tool("wapbox", "kannel")
    ports = {k: free_port() for k in ("admin", "smsbox", "wapbox", "ppg", "fake")}
    conf = tmp_path / "kannel.conf"
    conf.write_text(KANNEL_CONF.format(**ports))
    logs = (tmp_path / "kannel.log").open("wb")
    boxes = [
        subprocess.Popen([bearerbox, "-v", "1", str(conf)], stdout=logs, stderr=subprocess.STDOUT)
    ]
    try:
        wait_port(ports["wapbox"])
        boxes.append(
            subprocess.Popen([wapbox, "-v", "1", str(conf)], stdout=logs, stderr=subprocess.STDOUT)
        )
        wait_port(ports["ppg"])
        # Kannel encodes decimal application ids, not URNs it does not know: send 36965 (0x9065).
        client = PapClient(
            f"http://127.0.0.1:{ports['ppg']}/wappush",
            username="ras",
            password="secret",
            app_id="36965",
        )
        answer = client.push("kannel-1", Address("+15550100001", AddressType.PLMN), BODY)
        assert isinstance(answer, PushResponse), answer
        assert (answer.push_id, answer.code) == ("kannel-1", 1001)
        again = client.push("kannel-1", Address("+15550100001", AddressType.PLMN), BODY)
        assert isinstance(again, PushResponse)
        assert again.code in (1001, 2007)
    finally:
        for box in reversed(boxes):
            box.terminate()
            try:
                box.wait(10)
            except subprocess.TimeoutExpired:
                box.kill()
                box.wait()
        logs.close()


def uac_via_proxy(sender: str, asserted: str | None, expect: int) -> str:
    """A foreign UA's MESSAGE to the device's AOR, sent to the proxy, optionally with its own
    P-Asserted-Identity."""
    pai = f"P-Asserted-Identity: <{asserted}>\n      " if asserted else ""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="foreign UAC through the proxy">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:device1@scws.test SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <{sender}>;tag=[pid]SIPpTag00[call_number]
      To: <sip:device1@scws.test>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      {pai}X-Wap-Application-Id: x-oma-application:push.scws
      Content-Type: application/octet-stream
      Content-Length: [len]

      spoofed
    ]]>
  </send>
  <recv response="{expect}"/>
</scenario>
"""


def test_kamailio_refuses_a_spoofed_ppg_identity(
    tmp_path: Path, free_port: Callable[[], int], need_tool: Callable[[str, str], str]
) -> None:
    """Through the shipped Kamailio, a foreign UA (SIPp, from 127.0.0.2: not the PPG's address)
    cannot pass as the PPG: its own P-Asserted-Identity naming the PPG is stripped (the push
    client then sees the foreign From and answers 403), and a From naming the PPG is refused by
    Kamailio (403). The PPG's own push, from its address, is still delivered."""
    sipp = need_tool("sipp", "sip-tester")
    port = free_port()

    async def main() -> None:
        proxy = f"sip:127.0.0.1:{port}"
        async with ppg_of(tmp_path, proxy=proxy) as ppg:
            app = App()
            await app.http.start()
            client = PushClient(
                PushClientConfig(
                    aor="sip:device1@scws.test", registrar=proxy, trusted_ppg=frozenset({PPG_ID})
                )
            )
            await client.start()
            try:
                await asyncio.to_thread(
                    register_app, client.cai_url, SCWS_APP_ID, app.http.url("/p")
                )
                async with asyncio.timeout(15):
                    while not client.registered.is_set():
                        await asyncio.sleep(0.05)
                for name, sender, asserted in (
                    ("asserted", "sip:mallory@evil.test", PPG_ID),
                    ("from", PPG_ID, None),
                    ("both", PPG_ID, PPG_ID),
                ):
                    scenario = tmp_path / f"{name}.xml"
                    scenario.write_text(uac_via_proxy(sender, asserted, 403))
                    run = await asyncio.to_thread(
                        subprocess.run,
                        [
                            sipp,
                            f"127.0.0.1:{port}",
                            "-sf",
                            str(scenario),
                            "-i",
                            "127.0.0.2",
                            "-p",
                            str(free_port()),
                            "-m",
                            "1",
                            "-timeout",
                            "20",
                            "-timeout_error",
                            "-nostdin",
                        ],
                        cwd=tmp_path,
                        capture_output=True,
                        timeout=60,
                    )
                    assert run.returncode == 0, (name, run.stderr.decode(errors="replace"))
                assert app.got == []
                pi = PapClient(ppg.pap_url, username="ras", password="pw")
                await asyncio.to_thread(pi.push, "real", Address.sip("sip:device1@scws.test"), BODY)
                status = await delivered(pi, "real")
                assert status.results[0].state is MessageState.DELIVERED
                assert app.got == [BODY]
            finally:
                await client.close()
                await app.http.close()

    with kamailio(tmp_path, port, need_tool):
        asyncio.run(main())
    log = (tmp_path / "kamailio.log").read_text(errors="replace")
    assert log.count("claiming sip:ppg@scws.test") == 2
