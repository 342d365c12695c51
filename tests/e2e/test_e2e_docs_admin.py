"""docs/admin.md "Try it" shows what `openscws up` prints: the same lines, in the same order,
up to the host's own ports and paths."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _shape(line: str) -> str:
    """A printed line with its ports, paths and ICCID taken out."""
    line = re.sub(r"(127\.0\.0\.1):\d+", r"\1:PORT", line)
    line = re.sub(r"(one-time password) \S+$", r"\1 ...", line)
    line = re.sub(r"(~|/)[^\s)]*/ca\.pem", "CA.pem", line)
    return re.sub(r"\b\d{19,20}\b", "ICCID", line)


def _documented() -> list[str]:
    text = (ROOT / "docs" / "admin.md").read_text()
    block = text.split("It prints:\n\n```\n", 1)[1].split("```", 1)[0]
    return [_shape(line) for line in block.splitlines()]


def test_up_prints_what_the_admin_guide_shows(
    openscws_proc: Callable[..., Any], free_port: Callable[[], int], tmp_path: Path
) -> None:
    sms = free_port()
    config = tmp_path / "openscws.toml"
    config.write_text(
        f'[gateway]\nsms_port = {sms}\n[ca]\ndir = "{tmp_path / "ca"}"\n'
        f'[admin]\ndata_dir = "{tmp_path / "ras"}"\ndb = ""\nport = {free_port()}\n'
        f'api_port = {free_port()}\nsms_url = "http://127.0.0.1:{sms}/sms"\n'
    )
    maps = ("--port-map", f"3516={free_port()}", "--port-map", f"4116={free_port()}")
    sp = openscws_proc("up", "-c", config, "--data-dir", tmp_path / "card", *maps, name="up")
    sp.wait_for("REST API:")
    sp.wait_for("shown only now")  # the first run's admin password comes last
    printed = [_shape(line) for line in sp.stdout.splitlines() if line.strip()]
    assert printed == _documented()
