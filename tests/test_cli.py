import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from openscws.cli import build_parser, main

COMMANDS = [
    ["up"],
    ["card"],
    ["gateway"],
    ["init"],
    ["content"],
    ["content", "put"],
    ["content", "get"],
    ["content", "ls"],
    ["content", "rm"],
    ["config"],
    ["card", "init"],
    ["card", "csr"],
    ["card", "install-cert"],
    ["card", "show"],
    ["card", "psk"],
    ["card", "psk", "add"],
    ["card", "policy"],
    ["card", "usim"],
    ["card", "usim", "set"],
    ["card", "usim", "show"],
    ["card", "csim"],
    ["card", "csim", "set"],
    ["ca"],
    ["ca", "init"],
    ["ca", "sign"],
    ["ca", "profile"],
    ["doctor"],
    ["bsf"],
    ["bsf", "init"],
    ["bsf", "subscriber", "add"],
    ["bsf", "naf", "add"],
    ["gba", "bootstrap"],
    ["card", "acp"],
    ["card", "acp", "add"],
    ["card", "acp", "ls"],
    ["card", "acp", "rm"],
    ["card", "acp", "set"],
    ["acp"],
    ["acp", "whoami"],
]


@pytest.mark.parametrize("words", COMMANDS)
def test_every_command_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: openscws" in out


def test_every_option_is_explained() -> None:
    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if action.choices and isinstance(action.choices, dict):
                stack.extend(action.choices.values())
            elif action.dest != "help":
                assert action.help, f"{p.prog}: {action.option_strings or action.dest} has no help"


def test_content_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "card"
    assert main(["init", "--data-dir", str(image), "--no-demo", "-q"]) == 0
    page = tmp_path / "hello.html"
    page.write_bytes(b"<p>hello</p>")
    assert main(["content", "put", str(page), "/hello.html", "--data-dir", str(image)]) == 0
    assert main(["content", "ls", "--data-dir", str(image)]) == 0
    listing = capsys.readouterr().out
    assert "/hello.html" in listing
    assert "text/html" in listing
    out = tmp_path / "out.html"
    assert main(["content", "get", "/hello.html", "-o", str(out), "--data-dir", str(image)]) == 0
    assert out.read_bytes() == b"<p>hello</p>"
    assert main(["content", "rm", "/hello.html", "--data-dir", str(image)]) == 0
    assert main(["content", "rm", "/hello.html", "--data-dir", str(image)]) == 1


def test_content_on_a_missing_image_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["content", "ls", "--data-dir", str(tmp_path / "none")]) == 2
    assert "openscws init" in capsys.readouterr().err


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[card]\nnope = 1\n")
    assert main(["config", "-c", str(bad)]) == 2
    assert "unknown setting card.nope" in capsys.readouterr().err


def test_config_prints_loadable_toml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    assert "[card.limits]" in capsys.readouterr().out


def test_every_section_of_the_file_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings the commands use keep every section of the file: [admin] was once
    dropped for the defaults when the command line's options were applied."""
    path = tmp_path / "mine.toml"
    path.write_text('[admin]\nport = 4543\nsms_sender = "smpp"\n[gateway]\nbusy_timeout = 7.5\n')
    assert main(["config", "-c", str(path)]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["admin"]["port"] == 4543
    assert shown["admin"]["sms_sender"] == "smpp"
    assert shown["gateway"]["busy_timeout"] == 7.5


def test_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "openscws", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("openscws ")


def test_one_shot_commands_log_only_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tool's result is its output; its INFO log lines would only repeat it (-v shows them)."""
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    data = str(tmp_path / "card")
    assert main(["init", "--data-dir", data]) == 0
    assert "installed the demo site" in capsys.readouterr().err  # init says what it made
    assert main(["content", "put", str(page), "/p.html", "--data-dir", data]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("put /p.html")
    assert err == ""
    assert main(["init", "--data-dir", str(tmp_path / "quiet"), "-q"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["admin", "init", "--data-dir", str(tmp_path / "ras"), "-v"]) == 0
    assert (
        main(
            [
                "admin",
                "card",
                "add",
                "8988211000000000003",
                "--data-dir",
                str(tmp_path / "ras"),
                "-v",
            ]
        )
        == 0
    )
    assert "INFO" in capsys.readouterr().err  # -v: "card ... added"


def test_card_usim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "card")]
    assert main(["card", "usim", "show", *data]) == 2  # no card image yet
    assert "openscws init" in capsys.readouterr().err
    assert main(["init", *data, "-q"]) == 0
    assert main(["card", "usim", "show", *data]) == 0
    assert "no subscription" in capsys.readouterr().out
    k, op = "465b5ce8b199b49faa5f0a2ee238a6bc", "cdc202d5123e20f62b6d676ac72cb318"
    args = ["card", "usim", "set", "--imsi", "001010123456789", "--k", k, "--op", op]
    assert main([*args, "--sqn", "1000", *data]) == 0
    out = capsys.readouterr().out
    assert "IMSI 001010123456789" in out
    assert k not in out
    assert main(["card", "usim", "show", *data]) == 0
    out = capsys.readouterr().out
    assert "highest SQN accepted: 1000" in out
    assert k not in out
    secret = (tmp_path / "card" / "secure" / "usim.json").read_text()
    assert "cd63cb71954a9f4e48a5994e37a02baf" in secret  # OPc derived from OP
    assert (tmp_path / "card" / "secure" / "usim.json").stat().st_mode & 0o777 == 0o600
    assert main(["card", "usim", "set", "--imsi", "1", "--k", k, "--opc", op, *data]) == 2
    assert "IMSI" in capsys.readouterr().err
    assert (
        main(["card", "usim", "set", "--imsi", "001010123456789", "--k", "zz", "--opc", op, *data])
        == 2
    )
    assert "--k must be hex" in capsys.readouterr().err
    assert main(["card", "usim", "rm", *data]) == 0
    assert main(["card", "usim", "rm", *data]) == 1
