"""The SCWS Gateway's access control, end to end with real programs: rules added offline to the
card image, read by the gateway through the card link (in-process, over vpcd, through pcscd),
changed by an admin campaign, and enforced on curl, Python's urllib and headless Chromium as
different executables, and on another user's process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from e2e_wire import free_port, run
from test_e2e_vpcd import VPCD_PORT, pcscd  # noqa: F401 - the fixture

from openscws.aio.stack import start_stack, under
from openscws.cli import main
from openscws.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

URLLIB = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
    "    print(r.status)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code, e.read().decode().strip())\n"
)


def sha256_of(program: str) -> str:
    return hashlib.sha256(Path(os.path.realpath(program)).read_bytes()).hexdigest()


def chromium_binary(wrapper: str) -> str:
    """The executable Chromium's processes run: Debian's /usr/bin/chromium is a shell script
    that execs /usr/lib/chromium/chromium."""
    real = Path("/usr/lib/chromium/chromium")
    return str(real) if real.exists() else os.path.realpath(wrapper)


def curl_status(curl: str, url: str, *extra: str) -> str:
    args = ["-s", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_code}", *extra, url]
    got = run([curl, *args])
    return got.stdout.decode()


def urllib_status(url: str) -> str:
    got = run([sys.executable, "-c", URLLIB, url], timeout=30)
    return got.stdout.decode().strip()


def chromium_dom(exe: str, url: str, tmp_path: Path) -> str:
    args = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", url,
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(args, capture_output=True, timeout=90, env=env, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout.decode()


def card_acp(data: Path, *args: str) -> None:
    assert main(["card", "acp", *args, "--data-dir", str(data), "-q"]) == 0


def test_curl_by_hash_then_chromium(  # type: ignore[no-untyped-def]
    start_up, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    curl = need_tool("curl", "curl")
    chromium = need_tool("chromium", "chromium")
    data = tmp_path / "card"
    assert main(["init", "--data-dir", str(data), "-q"]) == 0
    card_acp(data, "add", curl)
    sp = start_up(data_dir=data, config="[gateway]\nacp_refresh = 0.2\n")
    url = sp.base_url + "/index.html"
    assert curl_status(curl, url) == "200"
    refused = "403 SCWS access control: no rule allows this application on port 3516"
    assert urllib_status(url) == refused
    dom = chromium_dom(chromium, url, tmp_path)
    assert "SCWS access control: no rule allows this application" in dom
    # HTTPS: the same rule set (curl allowed on both ports by default)
    ca = tmp_path / "logs" / "xdg-data" / "openscws" / "ca" / "ca.pem"
    tls = f"https://127.0.0.1:{sp.tls_port}/index.html"
    assert curl_status(curl, tls, "--cacert", str(ca)) == "200"

    # The operator swaps the rule for Chromium's: no restart, the next connection sees it.
    policy = tmp_path / "policy.json"
    chromium_id = f"sha256:{sha256_of(chromium_binary(chromium))}"
    policy.write_text(json.dumps({"rules": [{"app": chromium_id}]}))
    card_acp(data, "set", str(policy))
    time.sleep(0.3)
    assert curl_status(curl, url) == "403"
    dom = chromium_dom(chromium, sp.base_url + "/app/info", tmp_path)
    assert "<h1>Card information</h1>" in dom
    sp.stop()
    assert "ALLOW port 3516 from uid" in sp.stderr
    assert "/usr/bin/curl" in sp.stderr or os.path.realpath(curl) in sp.stderr
    assert "DENY port 3516" in sp.stderr


def test_uid_rule_refuses_another_user(  # type: ignore[no-untyped-def]
    start_up, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    curl = need_tool("curl", "curl")
    setpriv = need_tool("setpriv", "util-linux")
    if os.getuid() != 0:
        pytest.skip("running a client as another user needs root (setpriv)")
    data = tmp_path / "card"
    assert main(["init", "--data-dir", str(data), "-q"]) == 0
    card_acp(data, "add", "uid:0")
    sp = start_up(data_dir=data)
    url = sp.base_url + "/index.html"
    assert curl_status(curl, url) == "200"
    # nobody (65534) exists on every Debian system: no test user is created.
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", curl]
    got = run([*as_nobody, "-s", "--max-time", "15", "-w", " %{http_code}", url])
    assert got.stdout.decode().endswith(" 403"), got
    assert b"no rule allows this application on port 3516" in got.stdout
    sp.stop()
    assert "DENY port 3516 from uid 65534" in sp.stderr


def test_campaign_changes_the_rules_on_the_next_connection(tmp_path: Path) -> None:
    s = under(Settings(), tmp_path)
    settings = replace(
        s,
        gateway=replace(
            s.gateway,
            port_map={3516: free_port(), 4116: free_port()},
            sms_port=free_port(),
            poll_interval=0.2,
            acp_refresh=600.0,  # only the end of the admin session makes the gateway look
        ),
        admin=replace(s.admin, port=0, trigger_interval=0.1, retry_base=0.2, retry_max=1.0),
    )
    url = f"http://127.0.0.1:{settings.gateway.port_map[3516]}/index.html"

    def status() -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code

    async def campaign(stack, doc: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
        service = stack.admin.service
        info = service.create_campaign(f"acp-{time.monotonic()}", acp=doc)
        stack.admin.server.wake()
        for _ in range(600):
            progress = service.campaign_progress(info.id)
            if progress.get("done", 0) + progress.get("failed", 0) == sum(progress.values()):
                assert progress.get("done") == 1, progress
                return
            await asyncio.sleep(0.05)
        raise AssertionError("campaign stuck")

    async def main_() -> None:
        stack = await start_stack(settings, demo=True, api=False)
        try:
            assert await asyncio.to_thread(status) == 200  # no rules: unrestricted
            await campaign(stack, {"rules": [{"app": f"uid:{os.getuid() + 1}"}]})
            assert await asyncio.to_thread(status) == 403
            me = f"sha256:{sha256_of(sys.executable)}"
            await campaign(stack, {"rules": [{"app": me, "ports": [3516]}]})
            assert await asyncio.to_thread(status) == 200
        finally:
            await stack.stop()

    asyncio.run(main_())


def _card_with_rules(tmp_path: Path, curl: str) -> tuple[Path, list[str]]:
    """A card image allowing curl on 3516, and anyone under /img/; the port mapping."""
    data = tmp_path / "card"
    assert main(["init", "--data-dir", str(data), "-q"]) == 0
    card_acp(data, "add", curl, "--port", "3516")
    card_acp(data, "add", "any", "--path", "/img/", "--port", "3516")
    http, https = free_port(), free_port()
    return data, ["--port-map", f"3516={http}", "--port-map", f"4116={https}"]


def _decisions(curl: str, base: str) -> list[str]:
    return [
        curl_status(curl, base + "/index.html"),
        urllib_status(base + "/index.html").split(" ")[0],
        urllib_status(base + "/img/card.png").split(" ")[0],
        urllib_status(base + "/private/").split(" ")[0],
    ]


EXPECTED = ["200", "403", "200", "403"]


def test_rules_read_over_vpcd(  # type: ignore[no-untyped-def]
    need_tool: Callable[[str, str], str], openscws_proc, tmp_path: Path
) -> None:
    curl = need_tool("curl", "curl")
    vpcd = free_port()
    data, maps = _card_with_rules(tmp_path, curl)
    link = ["--vpcd", f"127.0.0.1:{vpcd}"]
    gateway = openscws_proc("gateway", *link, "--trace", *maps, name="gw")
    gateway.wait_for("waiting for a card")
    openscws_proc("card", "--data-dir", data, "--vpcd", f"127.0.0.1:{vpcd}", name="card")
    base = gateway.wait_ready()
    assert _decisions(curl, base) == EXPECTED
    assert "SELECT a00000015141434c00" in gateway.stdout  # --trace shows the rules' APDUs


def test_rules_read_through_pcscd(  # type: ignore[no-untyped-def]
    pcscd,  # noqa: F811 - the fixture imported above
    need_tool: Callable[[str, str], str],
    openscws_proc,
    tmp_path: Path,
) -> None:
    curl = need_tool("curl", "curl")
    data, maps = _card_with_rules(tmp_path, curl)
    openscws_proc("card", "--data-dir", data, "--vpcd", f"127.0.0.1:{VPCD_PORT}", name="card")
    gateway = openscws_proc("gateway", "--pcsc", "Virtual PCD", *maps, name="gateway")
    base = gateway.wait_ready()
    assert _decisions(curl, base) == EXPECTED
    assert "SCWS access control: 2 access rules, deny by default" in gateway.stderr


def test_same_decisions_in_process(  # type: ignore[no-untyped-def]
    start_up, need_tool: Callable[[str, str], str], tmp_path: Path
) -> None:
    """The card of the vpcd and pcscd runs, in the gateway's process: the same decisions."""
    curl = need_tool("curl", "curl")
    data, _ = _card_with_rules(tmp_path, curl)
    sp = start_up(data_dir=data)
    assert _decisions(curl, sp.base_url) == EXPECTED
