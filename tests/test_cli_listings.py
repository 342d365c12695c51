"""Every listing says "none" when there is nothing to list: an empty answer is never mistaken
for a command that did not run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from openscws.cli import main
from openscws.listing import print_listing

ICCID = "8988211000000000003"  # E.118 Luhn check digit valid


@pytest.fixture(autouse=True)
def _own_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENSCWS_RAS_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_card_listings_say_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = ["--data-dir", str(tmp_path / "card")]
    assert main(["init", *card, "--no-demo", "-q"]) == 0
    capsys.readouterr()
    assert _out(capsys, "content", "ls", *card) == "none\n"
    assert _out(capsys, "card", "policy", "ls", *card) == "none\n"
    assert _out(capsys, "card", "psk", "ls", *card) == "PSK-TLS disabled\n  none\n"


def test_admin_listings_say_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ras = ["--data-dir", str(tmp_path / "ras"), "-q"]
    assert main(["admin", "init", *ras]) == 0
    capsys.readouterr()
    assert _out(capsys, "admin", "card", "ls", *ras) == "none\n"
    assert _out(capsys, "admin", "content", "ls", *ras) == "none\n"
    assert _out(capsys, "admin", "campaign", "ls", *ras) == "none\n"
    assert main(["admin", "card", "add", ICCID, *ras]) == 0
    capsys.readouterr()
    assert _out(capsys, "admin", "logs", ICCID, *ras) == "none\n"
    shown = _out(capsys, "admin", "card", "show", ICCID, *ras)
    assert shown.endswith("jobs (newest first):\n  none\n")


def test_print_listing() -> None:
    out = io.StringIO()
    assert print_listing(iter(()), header="H", indent="  ", out=out) == 0
    assert out.getvalue() == "  none\n"
    out = io.StringIO()
    assert print_listing(["a", "b"], header="H", out=out) == 2
    assert out.getvalue() == "H\na\nb\n"
