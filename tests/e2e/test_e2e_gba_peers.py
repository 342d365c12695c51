"""GBA with peer programs: the virtual card behind the real pcscd (vsmartcard's vpcd driver)
bootstraps through PC/SC and gives the terminal the keys the BSF gives the NAF; and tshark,
capturing a Ub exchange on loopback, decodes it as HTTP with the Digest AKA parameters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_wire import run
from test_e2e_gba import IMPI, IMSI, NAF_FQDN, make_card, world
from test_e2e_vpcd import VPCD_PORT, _spawn, pcscd

from openscws.aio.links import InProcessLink
from openscws.bsf.models import GbaType
from openscws.gba.client import CardAka, GbaClient, fetch_naf_keys

pytestmark = [pytest.mark.e2e, pytest.mark.peer]
__all__ = ["pcscd"]  # the fixture, shared with test_e2e_vpcd

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"


def test_gba_u_through_pcscd(pcscd: subprocess.Popen[bytes], tmp_path: Path) -> None:
    from openscws.aio.pcsc import open_pcsc_link

    data = ["--data-dir", str(tmp_path / "card")]
    cli = [sys.executable, "-m", "openscws"]
    assert run([*cli, "init", *data, "-q"]).returncode == 0
    usim = ["card", "usim", "set", "--imsi", IMSI, "--k", K, "--opc", OPC]
    assert run([*cli, *usim, *data]).returncode == 0
    card = _spawn([*cli, "card", *data, "--vpcd", f"127.0.0.1:{VPCD_PORT}"], tmp_path / "card.log")

    async def main() -> None:
        async with world(tmp_path, GbaType.GBA_U) as w:
            link = await open_pcsc_link("", timeout=20)
            try:
                client = GbaClient(CardAka(link), w.ub_url)
                boot = await client.bootstrap()
                assert boot.gba == "GBA_U"
                assert client.impi == IMPI
                key = await client.naf_key(NAF_FQDN)
                got = await fetch_naf_keys(w.naf.zn_url, w.naf.token, boot.btid, NAF_FQDN)
                assert got is not None
                assert bytes.fromhex(got["ks_ext_naf"]) == key
                assert (await client.ua_request(w.naf_url)).status == 200
            finally:
                await link.close()

    try:
        asyncio.run(asyncio.wait_for(main(), 90))
    finally:
        card.terminate()
        card.wait(10)


def test_tshark_decodes_ub(
    need_tool: Callable[[str, str], str], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    tshark = need_tool("tshark", "tshark")
    pcap = tmp_path / "ub.pcapng"
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    port = free_port()

    async def main() -> None:
        async with world(tmp_path, GbaType.GBA_U, ub_port=port) as w:
            log = tmp_path / "tshark.log"
            with log.open("wb") as err:
                capture = subprocess.Popen(
                    [tshark, "-n", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                )
            try:
                deadline = time.monotonic() + 20
                while not (pcap.exists() and pcap.stat().st_size > 0):
                    assert capture.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "tshark did not start capturing"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
                client = GbaClient(CardAka(InProcessLink(make_card())), w.ub_url)
                await client.bootstrap()
                await asyncio.sleep(1.0)
            finally:
                capture.terminate()
                capture.wait(10)

    asyncio.run(asyncio.wait_for(main(), 90))
    fields = ("http.www_authenticate", "http.authorization", "http.response.code",
              "http.content_type")  # fmt: skip
    args = [tshark, "-n", "-r", str(pcap), "-d", f"tcp.port=={port},http", "-Y", "http"]
    args += ["-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    rows = [dict(zip(fields, line.split("|"), strict=True)) for line in out.stdout.splitlines()]
    assert len(rows) == 4, out.stdout  # two requests, 401 and 200
    challenge = next(r for r in rows if r["http.response.code"] == "401")
    assert "algorithm=AKAv1-MD5" in challenge["http.www_authenticate"]
    assert 'qop="auth-int"' in challenge["http.www_authenticate"]
    answers = [r["http.authorization"] for r in rows if r["http.authorization"]]
    assert f'username="{IMPI}"' in answers[0]
    assert 'nonce=""' in answers[0]
    assert "qop=auth-int" in answers[1]
    assert "response=" in answers[1]
    done = next(r for r in rows if r["http.response.code"] == "200")
    assert done["http.content_type"] == "application/vnd.3gpp.bsf+xml"
