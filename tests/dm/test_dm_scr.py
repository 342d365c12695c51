"""`openscws dm scr`: every item runs live, nothing the stack lacks passes, the table in
docs/dm.md is what the command reports here, and --server judges another server's handshakes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from openscws.cli import main
from openscws.dm.scr import FAILED, ITEMS, NO_STACK, NOT_SUPPORTED, SUPPORTED, run_scr
from openscws.dm.scr_cli import BEGIN, END, splice
from openscws.dm.scr_server import MiniDmServer, make_pki, server_context
from openscws.dm.session import DeviceAccount
from openscws.errors import OpenScwsError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dm.md"
ROW = re.compile(r"^\| (DM-SEC-[CS]-\d{3}) \| ([A-Z ]+) \| [^|]+ \| \*\*([a-z ]+)\*\* \|", re.M)


def results(page: str) -> dict[str, str]:
    return {m.group(1): m.group(3) for m in ROW.finditer(page)}


def test_scr_run_and_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# t\n\n{BEGIN}\n{END}\n\nafter\n")
    assert main(["dm", "scr", "--markdown", "--write", str(page)]) == 0
    out = capsys.readouterr().out
    got = results(out)
    assert list(got) == list(ITEMS)  # every item, in order
    assert FAILED not in got.values()
    for item in ("DM-SEC-C-004", "DM-SEC-S-004", "DM-SEC-S-007"):  # SSL 3.0, RC4, 3DES
        assert got[item] == NOT_SUPPORTED
        row = next(line for line in out.splitlines() if line.startswith(f"| {item}"))
        assert NO_STACK in row
    assert got["DM-SEC-C-001"] == got["DM-SEC-S-001"] == SUPPORTED  # TLS 1.1, mandatory
    rows = {line.split(" | ")[0][2:]: line for line in out.splitlines() if line.startswith("| DM")}
    for n in ("001", "002", "003", "006", "008", "009", "010"):  # against the real DM server
        assert "dm serve" in rows[f"DM-SEC-S-{n}"], rows[f"DM-SEC-S-{n}"]
    for n in ("001", "002", "003", "010"):
        assert "server saw TLSv1" in rows[f"DM-SEC-S-{n}"]
    assert "without a certificate: failed" in rows["DM-SEC-S-010"]
    assert "after" in page.read_text()
    assert results(page.read_text()) == got
    # The page shows what this machine reports.
    assert results(DOCS.read_text()) == got


def test_splice_needs_markers() -> None:
    with pytest.raises(OpenScwsError, match="markers"):
        splice("no markers here", "| t |\n")


def test_external_server_items_are_handshakes(tmp_path: Path) -> None:
    pki = make_pki()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    server = MiniDmServer(
        account=lambda: DeviceAccount("d", "p"),
        context=server_context(pki, versions=("1.2", "1.2")),
    )

    async def go() -> dict[str, str]:
        await server.start()
        try:
            return {o.item: o.result for o in await run_scr(server.url, ca=ca)}
        finally:
            await server.close()

    got = asyncio.run(go())
    assert got["DM-SEC-S-001"] == NOT_SUPPORTED  # that server has no TLS 1.1
    assert got["DM-SEC-S-003"] == SUPPORTED
    assert got["DM-SEC-S-005"] == SUPPORTED  # SSL 2.0 hello refused
    assert got["DM-SEC-S-006"] == NOT_SUPPORTED  # no PSK there
    assert got["DM-SEC-S-008"] == NOT_SUPPORTED
    assert got["DM-SEC-C-001"] == SUPPORTED  # the client items still ran against our own
