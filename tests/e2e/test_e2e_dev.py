"""`openscws dev DIR` as a web developer runs it: a real subprocess on free ports, a folder
edited, added to and deleted from while a client polls over HTTP; a SIGKILL in the middle of a
burst of edits; `--check`; and headless Chromium reloading itself with `--reload`."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openscws.store.cardimage import CardImage

pytestmark = pytest.mark.e2e

WITHIN = 1.0
"""Seconds a saved change may take to show over HTTP (the issue's bound)."""

ScwsProcess = Any
"""conftest.ScwsProcess (conftest modules are not importable)."""
StartDev = Callable[..., tuple[ScwsProcess, str]]


def cli(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "openscws", *map(str, args)]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def shows(url: str, want: bytes | None, within: float = WITHIN) -> bool:
    """Whether `url` answers `want` (None: 404) at some poll within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        status, body = get(url)
        if (want is None and status == 404) or (status == 200 and body == want):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.fixture
def start_dev(
    openscws_proc: Callable[..., ScwsProcess], free_port: Callable[[], int], tmp_path: Path
) -> StartDev:
    def start(site: Path, *extra: str, data: Path | None = None) -> tuple[ScwsProcess, str]:
        data = data or tmp_path / "dev-card"
        http, https = free_port(), free_port()
        sp = openscws_proc(
            "dev",
            site,
            "--data-dir",
            data,
            "--port-map",
            f"3516={http}",
            "--port-map",
            f"4116={https}",
            *extra,
            name="dev",
        )
        sp.data_dir = data
        base = sp.wait_ready()
        sp.wait_for("mirroring ")
        return sp, base

    return start


def test_edits_adds_and_deletes_show_within_a_second(tmp_path: Path, start_dev: StartDev) -> None:
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>one</h1>")
    (site / "css" / "site.css").write_text("h1 { color: red }")
    sp, base = start_dev(site)
    assert get(f"{base}/index.html") == (200, b"<h1>one</h1>")
    assert "added /index.html (12 bytes)" in sp.stdout
    assert "2 files, 29 bytes of the card's 1.0 MiB (card.capacity)" in sp.stdout

    for i in range(3):  # edits, each checked on its own
        page = f"<h1>edit {i}</h1>".encode()
        (site / "index.html").write_bytes(page)
        assert shows(f"{base}/index.html", page), f"edit {i} not served within {WITHIN} s"
    (site / "about.html").write_text("<p>about</p>")
    assert shows(f"{base}/about.html", b"<p>about</p>")
    (site / "img").mkdir()
    (site / "img" / "dot.svg").write_text("<svg/>")
    assert shows(f"{base}/img/dot.svg", b"<svg/>")
    (site / "about.html").unlink()
    assert shows(f"{base}/about.html", None)
    (site / "css" / "site.css").unlink()
    (site / "css").rmdir()
    assert shows(f"{base}/css/site.css", None)
    (site / "img").rename(site / "pictures")  # a folder renamed: deleted and added
    assert shows(f"{base}/pictures/dot.svg", b"<svg/>")
    assert shows(f"{base}/img/dot.svg", None)

    sp.wait_for("deleted /img/dot.svg")
    out = sp.stdout
    for line in (
        "changed /index.html (15 bytes)",
        "added /about.html (12 bytes)",
        "deleted /about.html",
        "deleted /css/site.css",
        "added /pictures/dot.svg (6 bytes)",
    ):
        assert line in out, out
    # A warning shows once, when the change that causes it is made.
    (site / "big.bin").write_bytes(b"x" * (60 * 1024))
    line = sp.wait_for("over card.admin_max_resource")
    assert line == (
        "warning: /big.bin is 60.0 KiB, over card.admin_max_resource (56.0 KiB): remote "
        "administration cannot deliver it"
    )
    assert sp.stop() == 0


def test_kill_9_during_a_burst_leaves_a_consistent_image(
    tmp_path: Path, start_dev: StartDev
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    names = [f"page{n}.html" for n in range(4)]
    for name in names:
        (site / name).write_bytes(version(name, 0))
    sp, _ = start_dev(site)
    rng = random.Random(20261207)
    stop = threading.Event()

    def burst() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            name = rng.choice(names)
            extra = site / f"extra{i % 5}.txt"
            if rng.random() < 0.5:
                extra.write_bytes(version(extra.name, i))
            else:
                extra.unlink(missing_ok=True)
            (site / name).write_bytes(version(name, i))
            time.sleep(0.002)

    writer = threading.Thread(target=burst)
    writer.start()
    try:
        time.sleep(rng.uniform(0.6, 1.2))
        sp.wait_for("changed /page")  # the burst is being mirrored
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(10)
    finally:
        stop.set()
        writer.join()
    assert sp.proc.returncode == -signal.SIGKILL
    assert sp.data_dir is not None
    # Every resource of the image is one whole version of its file.
    image = CardImage.open(sp.data_dir)
    resources = image.resources()
    assert {f"/{n}" for n in names} <= {r.path for r in resources}
    for r in resources:
        assert re.fullmatch(rb"(\S+) (\d+) (x+)\n", r.body), r.path
        name, _, pad = r.body.split(b" ")
        assert name.decode() == r.path[1:]
        assert len(pad) == 3000
    image.close()
    # A new start on the same image converges to the folder as it is now.
    sp2, base2 = start_dev(site, data=sp.data_dir)
    for path in sorted(site.iterdir()):
        assert get(f"{base2}/{path.name}") == (200, path.read_bytes())
    assert sp2.stop() == 0


def version(name: str, i: int) -> bytes:
    return f"{name} {i} {'x' * 2999}\n".encode()


def test_check_reports_without_serving(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>small</p>")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli("dev", site, "--check", *extra),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )

    fits = check()
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.splitlines() == [
        "1 files, 12 bytes of the card's 1.0 MiB (card.capacity)",
        "the site fits the card",
    ]
    (site / "café menu.html").write_text("<p>menu</p>")
    config = tmp_path / "small.toml"
    config.write_text("[card]\ncapacity = 16\n")
    bad = check("-c", str(config))
    assert bad.returncode == 1, bad.stderr
    assert bad.stdout.splitlines()[-1] == "2 problem(s)"
    assert "'/café menu.html' cannot be delivered by remote administration" in bad.stdout
    assert "over the card's capacity for content (card.capacity = 16 bytes)" in bad.stdout
    assert not (tmp_path / "xdg" / "openscws" / "dev").exists()  # nothing was made
    missing = subprocess.run(
        cli("dev", tmp_path / "nope", "--check"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"openscws: not a directory: {tmp_path / 'nope'}"


@pytest.mark.peer
def test_chromium_reloads_after_an_edit(
    tmp_path: Path, start_dev: StartDev, need_tool: Callable[[str, str], str]
) -> None:
    from cdp import Chromium

    site = tmp_path / "site"
    site.mkdir()
    page_html = "<!DOCTYPE html><html><body><h1 id=t>{}</h1></body></html>"
    (site / "index.html").write_text(page_html.format("first"))
    sp, base = start_dev(site, "--reload")
    assert f"live reload: pages from {base}/ reload after each change" in sp.stdout
    browser = Chromium(need_tool("chromium", "chromium"), tmp_path / "profile")
    try:
        page = browser.page()
        page.goto(f"{base}/")
        page.wait("document.getElementById('t').textContent === 'first'")
        page.wait("typeof window.openscwsDevVersion === 'string'")  # listening to the events
        (site / "index.html").write_text(page_html.format("second"))
        page.wait("document.getElementById('t').textContent === 'second'")
        # A change elsewhere reloads the page too (its stylesheet might be the one edited).
        page.eval("window.beforeReload = 1")
        (site / "style.css").write_text("h1 { color: red }")
        page.wait("window.beforeReload === undefined && !!document.getElementById('t')")
    finally:
        browser.close()
    assert sp.stop() == 0
    assert sp.data_dir is not None
    image = CardImage.open(sp.data_dir)
    stored = image.get("/index.html")
    assert stored is not None
    assert stored.body == page_html.format("second").encode()  # no snippet in the card
