"""`openscws up --bcast`: the BSF, the BSM and the terminal's BSP-C run beside the card and its
gateway. With a catalogue made by `openscws bsm`, `--bcast-item` sends the Service Request at
start: the card bootstraps (GBA_U), the request gets 401 then 200, the LTKM arrives over UDP
and the USIM takes it (its MBMS state, EF_MSK's source, holds the key afterwards), and the BSM
lists the subscription. The same with the card's CSIM-like application ((R-)UIM): the NAI is
the username, the Auth-Key from the card's RK the password, and the LTKM goes into that
application."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openscws.store.cardimage import CardImage
from openscws.uicc.csim import CsimSecrets
from openscws.uicc.usim import UsimSecrets

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OP = "cdc202d5123e20f62b6d676ac72cb318"
IMSI = "001010123456789"
KEY = "00f110/00010002"
NAI = "subscriber@ruim.openscws.test"
RK = "00112233445566778899aabbccddeeff"


def _cli(xdg: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openscws", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "XDG_DATA_HOME": str(xdg)},
    )


@pytest.mark.parametrize("via", ["usim", "csim"])
def test_up_bcast_subscribes_the_card(  # type: ignore[no-untyped-def]
    openscws_proc, free_port: Callable[[], int], tmp_path: Path, via: str
) -> None:
    card_dir = tmp_path / "card"
    xdg = tmp_path / "logs" / "xdg-data"  # the one openscws_proc gives `up`
    bsm = ("--data-dir", xdg / "openscws" / "bsm")
    for args in (
        ("init", "--data-dir", card_dir),
        ("card", "usim", "set", "--data-dir", card_dir, "--imsi", IMSI, "--k", K, "--op", OP),
        ("bsm", "init", *bsm),
        ("bsm", "key", "add", KEY, *bsm),
        ("bsm", "service", "add", "urn:svc:news", *bsm),
        ("bsm", "item", "add", "urn:pi:news", "--key", KEY, "--service", "urn:svc:news", *bsm),
        ("card", "csim", "set", "--data-dir", card_dir, "--nai", NAI, "--rk", RK, "--rand", "0a0b"),
        ("bsm", "ruim", "add", NAI, "--rk", RK, "--rand", "0a0b", *bsm),
    ):
        done = _cli(xdg, *args)
        assert done.returncode == 0, done.stderr
    ports = [free_port() for _ in range(5)]
    up = openscws_proc(
        "up", "--data-dir", card_dir, "--no-admin", "--port-map", f"3516={ports[0]}",
        "--port-map", f"4116={ports[1]}", "--bcast", "--bsf-port", str(ports[2]),
        "--zn-port", str(ports[3]), "--bsm-port", str(ports[4]), "--ltkm-port", "0",
        "--bcast-item", "urn:pi:news", "--bcast-item", "urn:pi:none", "--bcast-card", via,
        name="up",
    )  # fmt: skip
    assert up.wait_for("BSM ready:").split()[2] == f"http://127.0.0.1:{ports[4]}/"
    up.wait_for("BSP-C: LTKMs on UDP 127.0.0.1:")
    up.wait_for("BCAST: Service Request for urn:pi:news: SUCCESS")
    up.wait_for("BCAST: Service Request for urn:pi:none: PURCHASE_ITEM_UNKNOWN")
    deadline = time.monotonic() + 30
    accepted = f"LTKM for {KEY} (counter 1) accepted"
    while accepted not in up.stderr:
        assert time.monotonic() < deadline, up.stderr
        time.sleep(0.05)
    up.wait_for("SCWS ready")
    statuses = [
        line.rsplit(": ", 1)[1] for line in up.stderr.splitlines() if "/bcast/service: " in line
    ]
    assert statuses == ["401", "200", "401", "200"]
    assert up.stop() == 0
    listed = _cli(xdg, "bsm", "sub", "ls", *bsm)
    assert listed.returncode == 0, listed.stderr
    user, ref, _since = listed.stdout.splitlines()[0].split("\t")
    assert ref == "urn:pi:news"
    image = CardImage.open(card_dir)
    try:
        if via == "usim":
            assert user.endswith("@bsf.openscws.test")
            mbms = UsimSecrets(image).mbms()
        else:
            assert user == NAI
            mbms = CsimSecrets(image).bcast()
    finally:
        image.close()
    domain, key_id = (bytes.fromhex(x) for x in KEY.split("/"))
    assert mbms.msk(domain, key_id) is not None
    assert mbms.ef_msk().startswith(domain + b"\x01" + key_id + (1).to_bytes(4))
