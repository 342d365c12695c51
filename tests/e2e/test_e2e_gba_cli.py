"""The BSF and the GBA client as programs: `openscws bsf` (subscriber add|ls|rm, keys never
printed; serve), `openscws gba bootstrap` against it with a card image, bad input answered
with its HTTP status and a log line, and the SQN state surviving kill -9 of the BSF."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from openscws.aka.milenage import Milenage, xor
from openscws.gba.digest import Challenge, Credentials, split_aka_nonce

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OP = "cdc202d5123e20f62b6d676ac72cb318"
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010123456789"
IMPI = f"{IMSI}@ims.mnc001.mcc001.3gppnetwork.org"


XDG: dict[str, str] = {}
"""XDG_DATA_HOME of the commands a test runs (set per test): the card's CA goes there."""


@pytest.fixture(autouse=True)
def _own_data_home(tmp_path: Path) -> None:
    XDG["XDG_DATA_HOME"] = str(tmp_path / "xdg-data")


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openscws", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **XDG},
    )


def _challenge_sqn(url: str) -> int:
    """Asks the BSF for a challenge and reads its SQN out of AUTN (we know K)."""
    ask = Credentials(IMPI, "bsf.openscws.test", "", "/", "").format()
    request = urllib.request.Request(url, headers={"Authorization": ask})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 401
    challenge = Challenge.parse(raised.value.headers["WWW-Authenticate"])
    raised.value.close()
    rand, autn, _ = split_aka_nonce(challenge.nonce)
    ak = Milenage(bytes.fromhex(K), OPC).f2345(rand).ak
    return int.from_bytes(xor(autn[:6], ak), "big")


def _status(url: str, authorization: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)


def test_bsf_and_gba_bootstrap_programs(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path
) -> None:
    bsf_dir, card_dir = tmp_path / "bsf", tmp_path / "card"
    where = ("--data-dir", bsf_dir)
    added = _cli("bsf", "subscriber", "add", IMPI, "--k", K, "--op", OP, "--sqn", "3200", *where)
    assert added.returncode == 0, added.stderr
    assert f"subscriber {IMPI} (GBA_U, SQN 3200) stored" in added.stdout
    again = _cli("bsf", "subscriber", "add", IMPI, "--k", K, "--op", OP, *where)
    assert again.returncode == 2
    assert again.stderr.strip() == f"openscws: subscriber {IMPI} exists (use --replace)"
    listed = _cli("bsf", "subscriber", "ls", *where)
    assert listed.stdout.split("\t")[:3] == [IMPI, "GBA_U", "SQN 3200"]
    for out in (added, listed):
        assert K not in out.stdout + out.stderr
        assert OPC.hex() not in out.stdout + out.stderr
    gone = _cli("bsf", "subscriber", "rm", "nobody@x", *where)
    assert gone.returncode == 1  # "not found", as every openscws command
    assert gone.stderr.strip() == "openscws: no subscriber nobody@x"
    empty = _cli("bsf", "subscriber", "ls", "--data-dir", tmp_path / "none")
    assert empty.returncode == 2
    assert "run `openscws bsf init` first" in empty.stderr

    for args in (
        ("init", "--data-dir", card_dir),
        ("card", "usim", "set", "--data-dir", card_dir, "--imsi", IMSI, "--k", K, "--op", OP),
    ):
        done = _cli(*args)
        assert done.returncode == 0, done.stderr

    port, zn_port = free_port(), free_port()
    serve = ("bsf", "--port", str(port), "--zn-port", str(zn_port), *where)
    bsf = openscws_proc(*serve, name="bsf")
    url = bsf.wait_for("BSF Ub ready:").split("ready:", 1)[1].strip()
    assert url == f"http://127.0.0.1:{port}/"
    boot = _cli("gba", "bootstrap", "--bsf", url, "--data-dir", card_dir)
    assert boot.returncode == 0, boot.stderr
    lines = dict(line.split(": ", 1) for line in boot.stdout.splitlines())
    assert lines["GBA"] == "GBA_U"
    assert lines["B-TID"].endswith("@bsf.openscws.test")
    assert lines["IMPI"] == IMPI
    assert lines["lifetime"].endswith("Z")

    # Bad input: its status, and one clear log line.
    assert _status(url, "Digest garbage") == 400
    assert _status(url, Credentials("nobody@x", "r", "", "/", "").format()) == 403

    # SQN state is committed before a challenge leaves: kill -9 right after one, and the
    # next BSF process continues above it.
    before = _challenge_sqn(url)
    bsf.proc.kill()
    bsf.proc.wait(10)
    assert "malformed Authorization" in bsf.stderr
    assert "nobody@x: unknown IMPI" in bsf.stderr
    assert K not in bsf.stderr
    bsf2 = openscws_proc(*serve, name="bsf")
    bsf2.wait_for("BSF Ub ready:")
    after = _challenge_sqn(url)
    assert after == before + 32
    assert before > 3200
    # And the card still bootstraps (its SQN state is its own).
    boot2 = _cli("gba", "bootstrap", "--bsf", url, "--data-dir", card_dir, "--gba", "me")
    assert boot2.returncode == 0, boot2.stderr
    assert "GBA: GBA_ME" in boot2.stdout
    no_bsf = _cli("gba", "bootstrap", "--bsf", f"http://127.0.0.1:{free_port()}/",
                  "--data-dir", card_dir)  # fmt: skip
    assert no_bsf.returncode == 2
    assert no_bsf.stderr.startswith("openscws: GET http://127.0.0.1:")


def test_up_with_gba(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path
) -> None:
    """`openscws up --gba`: the BSF runs beside the card and gateway, with the card's USIM as
    its GBA_U subscriber, so the terminal bootstraps at once."""
    card_dir = tmp_path / "card"
    for args in (
        ("init", "--data-dir", card_dir),
        ("card", "usim", "set", "--data-dir", card_dir, "--imsi", IMSI, "--k", K, "--op", OP),
    ):
        assert _cli(*args).returncode == 0
    ports = [free_port() for _ in range(4)]
    up = openscws_proc(
        "up", "--data-dir", card_dir, "--no-admin", "--port-map", f"3516={ports[0]}",
        "--port-map", f"4116={ports[1]}", "--gba", "--bsf-port", str(ports[2]),
        "--zn-port", str(ports[3]), name="up",
    )  # fmt: skip
    url = up.wait_for("BSF Ub ready:").split("ready:", 1)[1].strip()
    assert url == f"http://127.0.0.1:{ports[2]}/"
    up.wait_for("SCWS ready")
    boot = _cli("gba", "bootstrap", "--bsf", url, "--data-dir", card_dir)
    assert boot.returncode == 0, boot.stderr
    assert "GBA: GBA_U" in boot.stdout
    assert "is BSF subscriber" in up.stderr
