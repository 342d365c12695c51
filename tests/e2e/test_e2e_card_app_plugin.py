"""The example card application, installed with pip into a venv of its own as a user would
install a plug-in: `openscws doctor` lists it, and the card serves its form through the BIP
gateway, keeping the entries across a restart."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

READY = "SCWS ready: "


@dataclass
class Served:
    """An `openscws dev` of the plug-in's venv; stdout and stderr in files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.out.read_text(errors="replace").splitlines():
                if line.startswith(READY):
                    return line.removeprefix(READY).rstrip("/")
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"not ready:\n{self.out.read_text()}\n{self.stderr}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card-app-guestbook"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv that sees openscws (this checkout's environment) and has the example
    installed by pip, offline (no index, the setuptools of the dev environment)."""
    root = tmp_path_factory.mktemp("plugin")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", env_dir], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "openscws-checkout.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n"
    )
    source = root / "card-app-guestbook"
    shutil.copytree(EXAMPLE, source)  # pip builds in the tree: not in the checkout's
    done = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            source,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return env_dir


def fetch(url: str, data: bytes | None = None) -> str:
    with urllib.request.urlopen(url, data, timeout=10) as answer:
        return str(answer.read().decode())


def run(venv: Path, *args: str | Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_DATA_HOME": str(data)}
    return subprocess.run(
        [venv / "bin" / "python", "-m", "openscws", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_doctor_lists_the_installed_app(venv: Path, tmp_path: Path) -> None:
    done = run(venv, "doctor", data=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("card applications (1):")
    assert lines[at + 1].split() == [
        "guestbook",
        "on",
        "/guestbook",
        "(openscws_guestbook:Guestbook,",
        "entry",
        "point",
        "of",
        "openscws-guestbook",
        "0.1.0)",
    ]


def test_the_card_serves_the_form_and_keeps_the_entries(
    venv: Path, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text('<a href="/guestbook">sign</a>')

    def start(name: str) -> tuple[Served, str]:
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        args = [
            "dev",
            site,
            "--data-dir",
            tmp_path / "card",
            "--port-map",
            f"3516={free_port()}",
            "--port-map",
            f"4116={free_port()}",
        ]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [venv / "bin" / "python", "-m", "openscws", *map(str, args)],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(tmp_path)},
            )
        sp = Served(proc, out, err)
        return sp, sp.wait_ready()

    sp, base = start("first")
    try:
        form = fetch(f"{base}/guestbook")
        assert '<form method="post" action="/guestbook">' in form
        assert "0 entries" in form
        body = urllib.parse.urlencode({"name": "Ann", "message": "Hello from a SIM <3"})
        with urllib.request.urlopen(f"{base}/guestbook", body.encode(), timeout=10) as answer:
            page = answer.read().decode()  # the 303 followed: the page again
            assert answer.url == f"{base}/guestbook"
        assert "<li><b>Ann</b>: Hello from a SIM &lt;3</li>" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(f"{base}/guestbook", b"name=&message=")
        assert refused.value.code == 400
        refused.value.close()
        assert fetch(f"{base}/index.html") == '<a href="/guestbook">sign</a>'
        assert "card application guestbook on /guestbook" in sp.stderr
    finally:
        assert sp.stop() == 0
    sp, base = start("second")  # the entries are in the card image
    try:
        page = fetch(f"{base}/guestbook")
        assert "1 entries" in page
        assert "Ann" in page
    finally:
        assert sp.stop() == 0
