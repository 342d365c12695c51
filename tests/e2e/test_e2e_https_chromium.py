"""Headless Chromium loads the demo site over the card's HTTPS (port 4116), trusting the issuer
CA the way a user would: in the NSS database of a (throwaway) home directory, added with
certutil. No --ignore-certificate-errors: without the CA, Chromium refuses the page.

The screenshot is kept in docs/img/demo-chromium-https.png once it passes the same pixel
checks as the HTTP one (test_e2e_chromium.py): stylesheet and picture arrived over TLS."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_wire import Card, start_card
from test_e2e_chromium import decode_png, pixel

pytestmark = [pytest.mark.e2e, pytest.mark.peer]

WIDTH, HEIGHT = 1024, 768
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "demo-chromium-https.png"

Tool = Callable[[str, str], str]


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Card]:
    """One `openscws up` for the module, its issuer CA in an explicit [ca] dir."""
    root = tmp_path_factory.mktemp("https-chromium")
    yield from start_card(root, root / "ca", psk=False)


def nss_home(need_tool: Tool, home: Path, ca: Path | None) -> Path:
    """A home directory whose NSS database (~/.pki/nssdb, where Chromium on Linux looks)
    trusts `ca` to identify web sites ("C,,"); with `ca` None, an empty database."""
    certutil = need_tool("certutil", "libnss3-tools")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    steps = [["-N", "--empty-password"]]
    if ca is not None:
        steps.append(["-A", "-t", "C,,", "-n", "openscws-ca", "-i", str(ca)])
    steps.append(["-L"])
    for step in steps:
        p = subprocess.run(
            [certutil, "-d", f"sql:{db}", *step], capture_output=True, timeout=30, check=False
        )
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    listing = p.stdout.decode()
    assert ("openscws-ca" in listing) == (ca is not None), listing
    return home


@dataclass(frozen=True)
class Browsed:
    stdout: bytes
    stderr: str


@pytest.fixture
def chromium(need_tool: Tool) -> Callable[..., Browsed]:
    exe = need_tool("chromium", "chromium")

    def browse(home: Path, url: str, *mode: str) -> Browsed:
        args = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={home / 'chromium-profile'}",
            f"--window-size={WIDTH},{HEIGHT}",
            *mode,
            url,
        ]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["HOME"] = str(home)
        proc = subprocess.run(args, capture_output=True, timeout=90, env=env, check=False)
        # Chromium exits 0 even when the page failed: the callers look at what it shows.
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
        return Browsed(proc.stdout, proc.stderr.decode(errors="replace"))

    return browse


def test_chromium_refuses_without_the_issuer_ca(
    need_tool: Tool, chromium: Callable[..., Browsed], card: Card, tmp_path: Path
) -> None:
    """Control: an empty NSS database, and the card's certificate is not trusted."""
    home = nss_home(need_tool, tmp_path / "home", None)
    got = chromium(home, f"https://127.0.0.1:{card.tls_port}/", "--dump-dom")
    assert "net::ERR_CERT_AUTHORITY_INVALID" in got.stderr, got.stderr[-2000:]
    assert b"Smart Card Web Server" not in got.stdout


def test_chromium_trusts_the_issuer_ca_in_nss(
    need_tool: Tool, chromium: Callable[..., Browsed], card: Card, tmp_path: Path
) -> None:
    home = nss_home(need_tool, tmp_path / "home", card.ca)
    url = f"https://127.0.0.1:{card.tls_port}/"

    dom = chromium(home, url, "--dump-dom")
    assert "ERR_CERT" not in dom.stderr, dom.stderr[-2000:]
    page = dom.stdout.decode()
    assert "<title>Smart Card Web Server</title>" in page, page[:2000]
    assert "<h1>Smart Card Web Server</h1>" in page
    assert "This page was served by the SIM card in your device." in page

    shot = tmp_path / "demo-https.png"
    got = chromium(home, url, f"--screenshot={shot}")
    assert "ERR_CERT" not in got.stderr, got.stderr[-2000:]
    data = shot.read_bytes()
    assert len(data) > 20_000  # a rendered page, not a blank one
    width, height, rows, channels = decode_png(data, max_rows=420)
    assert (width, height) == (WIDTH, HEIGHT)
    # style.css: the page background is the paper colour #f4f6fb...
    assert pixel(rows, channels, 40, 400) == (0xF4, 0xF6, 0xFB)
    # ...the hero band a blue gradient (an interstitial page has neither)...
    for x in (5, 500, 990):
        r, g, b = pixel(rows, channels, x, 8)
        assert b > 120, (x, (r, g, b))
        assert r < 60, (x, (r, g, b))
        assert b > g + 40, (x, (r, g, b))
    # ...and img/card.png's gold chip is in it.
    gold = sum(
        1
        for y in range(0, 184, 2)
        for x in range(0, 400, 2)
        if (p := pixel(rows, channels, x, y))[0] > 170 and 120 < p[1] < 200 and p[2] < 110
    )
    assert gold > 200, gold
    shutil.copyfile(shot, SCREENSHOT)

    # Every resource crossed the card's TLS: its HTTP engine logged them as https.
    log = card.log()
    for request in ("https GET / 200", "https GET /style.css 200", "https GET /img/card.png 200"):
        assert f"openscws.access: {request}" in log, log[-3000:]
