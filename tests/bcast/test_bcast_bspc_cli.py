"""`openscws bcast`: the terminal's BSP-C against a BSM over real sockets, for a GBA_ME
subscriber (Ks_NAF from a file) and an (R-)UIM subscriber (RK from a file): the request with
the Digest retry, the statuses printed, the LTKM received, opened and acknowledged (its key id
printed, never the key); a wrong key file gives a 401 failure as one line and exit 2."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openscws.aio.freeport import free_port
from openscws.bcast.bsm import BsmCore, MemoryStore, UserKeys
from openscws.bcast.keys import mbms_keys_gba_me, rk_keys
from openscws.bcast.server import start_bsm
from openscws.bcast.sprov import KeyId
from openscws.cli import main

KS_NAF = bytes(range(32))
GBA = mbms_keys_gba_me(KS_NAF)
BTID = "I1U8vpY3qJ0hiuZNrke/NQ==@bsf.example.org"
NAI = "user@ruim.example.org"
RK, RAND = bytes(range(16)), bytes.fromhex("0102")
RUIM = rk_keys(RK, RAND, NAI)
KEY = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010002"))
SEK = b"\x5a" * 16


@pytest.fixture
def bsm() -> Iterator[tuple[str, int]]:
    """A BSM in a thread of its own, pushing LTKMs to the port the test listens on."""
    assert GBA.muk is not None
    users = {BTID: UserKeys(GBA.mrk, GBA.muk), NAI: UserKeys(RUIM.auth_key, RUIM.tk)}
    core = BsmCore(
        "bsm.example.org", MemoryStore(items={"urn:pi:1": (KEY,)}, keys={KEY: SEK}), users.get
    )
    ltkm_port = free_port()
    ready = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        server = await start_bsm(core, ltkm_port=ltkm_port, resend_s=0.2, tries=2)
        url.append(server.url.rstrip("/"))
        stop.append(asyncio.Event())
        loop_box.append(asyncio.get_running_loop())
        ready.set()
        await stop[0].wait()
        await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    yield url[0], ltkm_port
    loop_box[0].call_soon_threadsafe(stop[0].set)
    thread.join(20)


def test_gba_me_and_ruim_requests(
    bsm: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, port = bsm
    ks_file, rk_file = tmp_path / "ks_naf", tmp_path / "rk"
    ks_file.write_text(KS_NAF.hex())
    rk_file.write_text(RK.hex())
    common = ["--bsm", url, "--item", "urn:pi:1", "--listen", str(port), "--host", "127.0.0.1"]
    assert main(["bcast", "service", "--username", BTID, "--ks-naf-file", str(ks_file),
                 *common, "--wait", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "service 1: SUCCESS" in out
    assert "urn:pi:1: SUCCESS" in out
    assert "LTKM 00f110/00010002 counter 1" in out
    assert SEK.hex() not in out
    assert main(["bcast", "service", "--username", NAI, "--rk-file", str(rk_file),
                 "--rand", RAND.hex(), *common, "--wait", "3"]) == 0  # fmt: skip
    assert "LTKM 00f110/00010002 counter 1" in capsys.readouterr().out
    # Unsubscribe of an item never subscribed: status printed, exit 1.
    other = ["--bsm", url, "--item", "urn:pi:none", "--listen", str(port), "--wait", "0"]
    assert main(["bcast", "unsubscribe", "--username", NAI, "--rk-file", str(rk_file),
                 "--rand", RAND.hex(), *other]) == 1  # fmt: skip
    assert "PURCHASE_ITEM_UNKNOWN" in capsys.readouterr().out


def test_wrong_key_is_one_line_and_exit_2(
    bsm: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, port = bsm
    bad = tmp_path / "ks_naf"
    bad.write_text("00" * 32)
    argv = ["bcast", "service", "--bsm", url, "--username", BTID, "--ks-naf-file", str(bad),
            "--item", "urn:pi:1", "--listen", str(port), "--wait", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("openscws: ")
    assert err.count("\n") == 1
    bad.write_text("not hex")
    assert main(argv) == 2


KEY2 = KeyId(bytes.fromhex("00f110"), bytes.fromhex("00010003"))


def test_a_missing_ltkm_is_asked_for_with_an_ltkm_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The item names two keys, but the BSM has only one when the Service Request comes, so
    only that LTKM is pushed. The second key arrives later: after --retry-after the BSP-C
    asks for it with an LTKM Request and gets it; a key that never exists ends in exit 1."""
    assert GBA.muk is not None
    store = MemoryStore(items={"urn:pi:2": (KEY, KEY2)}, keys={KEY: SEK})
    users = {BTID: UserKeys(GBA.mrk, GBA.muk)}
    core = BsmCore("bsm.example.org", store, users.get)
    ltkm_port = free_port()
    box: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = []
    ready = threading.Event()

    async def serve() -> None:
        server = await start_bsm(core, ltkm_port=ltkm_port, resend_s=0.2, tries=2)
        stop = asyncio.Event()
        box.append((server.url.rstrip("/"), asyncio.get_running_loop(), stop))
        ready.set()
        await stop.wait()
        await server.stop()

    def key2_later() -> None:
        # After the Service Request has subscribed the user, before the BSP-C asks again.
        for _ in range(500):
            if store.subs.get(BTID):
                store.keys[KEY2] = b"\x6b" * 16
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(20)
    url, loop, stop = box[0]
    ks_file = tmp_path / "ks_naf"
    ks_file.write_text(KS_NAF.hex())
    argv = ["bcast", "service", "--bsm", url, "--username", BTID, "--ks-naf-file", str(ks_file),
            "--item", "urn:pi:2", "--listen", str(ltkm_port), "--host", "127.0.0.1",
            "--expect", "00f110/00010002", "--expect", "00f110/00010003",
            "--retry-after", "0.5", "--wait", "5"]  # fmt: skip
    try:
        later = threading.Thread(target=key2_later)
        later.start()
        assert main(argv) == 0
        later.join()
        out = capsys.readouterr().out
        assert "LTKM 00f110/00010002 counter 1" in out
        assert "missing LTKMs, asking: 00f110/00010003" in out
        assert "ltkm 1-ltkm: SUCCESS" in out
        assert "LTKM 00f110/00010003" in out
        # A key the BSM never has: asked for once, refused, exit 1 with one line.
        never = [*argv[:-6], "--expect", "00f110/00010009", "--retry-after", "0.2", "--wait", "2"]
        assert main(never) == 1
        captured = capsys.readouterr()
        assert "missing LTKMs, asking: 00f110/00010009" in captured.out
        assert "00f110/00010009: INVALID_REQUEST" in captured.out
        assert captured.err == "openscws: no LTKM came for 00f110/00010009\n"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
