"""`openscws card acp add|ls|rm|set` (offline, on the card image) and `openscws acp whoami`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

from openscws.acp.rules import decode_rules
from openscws.cli import main
from openscws.store.cardimage import CardImage
from openscws.uicc.aram import RULES_KEY


def test_card_acp_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card"
    d = ["--data-dir", str(image)]
    assert main(["init", *d, "--no-demo", "-q"]) == 0
    assert main(["card", "acp", "ls", *d]) == 0
    assert "unrestricted" in capsys.readouterr().out
    python = os.path.realpath(sys.executable)
    digest = hashlib.sha256(Path(python).read_bytes()).hexdigest()
    assert main(["card", "acp", "add", python, "--port", "3516", *d]) == 0
    assert main(["card", "acp", "add", "uid:1000", "--deny", "--path", "/private/", *d]) == 0
    capsys.readouterr()
    assert main(["card", "acp", "ls", "--json", *d]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "rules": [
            {"app": f"sha256:{digest}", "ports": [3516], "access": "allow"},
            {"app": "uid:1000", "ports": [3516, 4116], "access": "deny", "paths": ["/private/"]},
        ]
    }
    # The card image holds them in the ARA-M's coding.
    stored = CardImage.open(image).get_value(RULES_KEY)
    assert stored is not None
    assert len(decode_rules(stored).rules) == 2
    assert main(["card", "acp", "rm", "1", *d]) == 0
    assert main(["card", "acp", "rm", "5", *d]) == 2
    assert "no rule 5" in capsys.readouterr().err
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"rules": [{"app": "any", "ports": [4116]}]}))
    assert main(["card", "acp", "set", str(policy), *d]) == 0
    capsys.readouterr()
    assert main(["card", "acp", "ls", *d]) == 0
    assert "allow any ports 4116" in capsys.readouterr().out
    assert main(["card", "acp", "rm", "--all", *d]) == 0
    assert main(["card", "acp", "add", "md5:00", *d]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openscws: unknown identity")
    assert "Traceback" not in err


def test_unparsable_rules_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card"
    assert main(["init", "--data-dir", str(image), "--no-demo", "-q"]) == 0
    CardImage.open(image).set_value(RULES_KEY, b"\xff\x40\x01\x00")
    assert main(["card", "acp", "ls", "--data-dir", str(image)]) == 2
    assert "refuses every connection" in capsys.readouterr().err


def test_whoami(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acp", "whoami", "--pid", str(os.getpid())]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(Path(os.path.realpath(sys.executable)).read_bytes()).hexdigest()
    assert f"sha256:  {digest}" in out
    assert f"uid:     {os.getuid()}" in out
    assert main(["acp", "whoami", sys.executable]) == 0
    assert f"openscws card acp add sha256:{digest}" in capsys.readouterr().out
    assert main(["acp", "whoami", "--pid", "999999999"]) == 2
