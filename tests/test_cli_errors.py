"""Every command through the real entry point (openscws.cli.main): its --help, and the usual
mistakes, each answered with one line on stderr and exit status 2 (1 for "not found"), never
a traceback. The command tree is discovered from the parser, so a new command is covered."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from openscws.cli import build_parser, main
from openscws.ids import DEFAULT_ICCID
from openscws.store.running import RunningLock

VALID = DEFAULT_ICCID
NOT_LUHN = "8988211000000000001"


def _tree(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _tree(sub, (*words, name))


TREE = list(_tree(build_parser()))


@pytest.fixture(autouse=True)
def _own_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every default data dir under tmp; no setting from the outside environment."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for name in list(os.environ):
        if name.startswith(("OPENSCWS_CARD_", "OPENSCWS_ADMIN_", "OPENSCWS_GATEWAY_")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("OPENSCWS_RAS_DB", raising=False)


def test_the_tree_is_all_there() -> None:
    names = {" ".join(words) for words, _ in TREE}
    assert {"up", "content put", "card policy deny", "admin content purge", "ca profile"} <= names
    assert len(TREE) > 50


@pytest.mark.parametrize("words", [w for w, _ in TREE], ids=lambda w: " ".join(w) or "openscws")
def test_every_command_has_help_and_a_description(
    words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('openscws', *words))}")
    parser = dict(TREE)[words]
    assert parser.description, f"`openscws {' '.join(words)}` has no description"


def test_the_main_help_gives_the_settings_order_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "then the environment (OPENSCWS_<SECTION>_<NAME>" in out
    assert "1 not found" in out
    assert "2 bad input or usage" in out


def test_an_unknown_option_shows_its_own_commands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["up", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: openscws up ")
    assert "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["bsf", "--port", "99999"],
        ["bsf", "--zn-port", "-1"],
        ["bsm", "serve", "--udp-port", "70000"],
        ["bsm", "serve", "--api-port", "x"],
        [
            "bcast",
            "service",
            "--bsm",
            "http://x",
            "--username",
            "u",
            "--rk-file",
            "k",
            "--listen",
            "65536",
        ],
        ["dm", "serve", "--port", "99999"],
        ["up", "--gba", "--bsf-port", "99999"],
        ["up", "--bcast", "--bsm-port", "65536"],
    ],
    ids=" ".join,
)
def test_a_port_out_of_range_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ports no setting checks: refused before anything starts (the socket layer would take
    99999 as 34463)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "not a port" in last, last


def test_config_before_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "compat.toml"
    path.write_text('[card]\ntls_profile = "compat"\n')
    assert main(["-c", str(path), "config"]) == 0
    assert 'tls_profile = "compat"' in capsys.readouterr().out
    assert main(["config", "-c", str(path)]) == 0
    assert 'tls_profile = "compat"' in capsys.readouterr().out


def test_every_command_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`up` and `admin` read OPENSCWS_RAS_DB alike: one database for both."""
    from openscws import cli

    monkeypatch.setenv("OPENSCWS_RAS_DB", "sqlite:////tmp/elsewhere.db")
    for argv in (["up"], ["admin", "card", "ls"], ["gateway"], ["config"]):
        assert cli._settings(cli._parse(argv)).admin.db == "sqlite:////tmp/elsewhere.db"
    # The option still wins over the environment.
    args = cli._parse(["admin", "card", "ls", "--db", "sqlite:////tmp/mine.db"])
    assert cli._settings(args).admin.db == "sqlite:////tmp/mine.db"


def test_port_map_for_a_port_the_card_never_opens_warns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "-c", "/dev/null"]) == 0
    capsys.readouterr()
    from openscws import cli

    args = cli._parse(["up", "--port-map", "9999=3516"])
    assert cli._settings(args).gateway.port_map[9999] == 3516


# -- bad inputs: one line on stderr, exit 2, no traceback --------------------------------------


def _cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    missing = str(tmp / "missing" / "x")
    a_dir = str(tmp / "adir")
    nowhere = str(tmp / "no" / "such" / "dir" / "x")
    bad_toml = str(tmp / "bad.toml")
    card = ["--data-dir", str(tmp / "card")]
    ras = ["--data-dir", str(tmp / "ras")]
    return [
        # missing file
        ("missing config", ["config", "-c", missing], "not found"),
        ("missing config, up", ["up", "-c", missing], "not found"),
        ("missing source", ["content", "put", missing, "/x", *card], "cannot read"),
        ("missing csr", ["ca", "sign", missing], "cannot read"),
        ("missing chain", ["card", "install-cert", missing, *card], "cannot read"),
        ("missing admin file", ["admin", "content", "put", missing, "/x", *ras], "cannot read"),
        ("missing image", ["admin", "enrol", missing, *ras], "no card image"),
        ("missing image, content", ["content", "ls", "--data-dir", missing], "openscws init"),
        # a directory instead of a file
        ("dir as config", ["config", "-c", a_dir], "is a directory"),
        ("dir as -o", ["content", "get", "/index.html", "-o", a_dir, *card], "is a directory"),
        ("dir as pcap", ["up", "--pcap", a_dir, *card], "Is a directory"),
        ("dir as csr", ["ca", "sign", a_dir], "cannot read"),
        ("dir as admin file", ["admin", "content", "put", a_dir, "/x", *ras], "is a directory"),
        ("dir as -o csr", ["card", "csr", "-o", a_dir, *card], "is a directory"),
        # an unwritable path
        ("nowhere -o", ["content", "get", "/index.html", "-o", nowhere, *card], "no directory"),
        ("nowhere pcap", ["up", "--pcap", nowhere + ".pcap", *card], "No such file"),
        ("nowhere csr", ["card", "csr", "-o", nowhere, *card], "no directory"),
        # an out-of-range port
        ("port-map local", ["up", "--port-map", "3516=70000", *card], "must be 0..65535"),
        ("port-map card", ["gateway", "--port-map", "70000=8080"], "must be 1..65535"),
        ("no cards", ["up", "--cards", "0", *card], "--cards must be 1..1000"),
        ("fleet ports", ["up", "--cards", "3", "--fleet-port", "65534", *card], "--fleet-port"),
        ("vpcd port", ["card", "--vpcd", "127.0.0.1:70000", *card], "gateway.vpcd_port"),
        ("tcpip port", ["card", "--tcpip", "--http-port", "0", *card], "card.tcpip_http_port"),
        ("admin port", ["admin", "serve", "--port", "99999", *ras], "admin.port = 99999"),
        ("api port", ["admin", "serve", "--api-port", "-1", *ras], "admin.api_port = -1"),
        (
            "enrol port",
            ["admin", "enrol", str(tmp / "card"), "--port", "99999", *ras],
            "admin.port",
        ),
        # malformed TOML, for every command that reads settings
        *[
            (f"bad toml, {' '.join(w)}", [*w, "-c", bad_toml], "not valid TOML")
            for w in (
                ["up"],
                ["card"],
                ["gateway"],
                ["init"],
                ["doctor"],
                ["config"],
                ["content", "ls"],
                ["card", "show"],
                ["ca", "show"],
                ["admin", "card", "ls"],
                ["admin", "serve"],
            )
        ],
        # a wrong ICCID
        ("short iccid", ["init", "--iccid", "123", *card], "19 or 20 digits"),
        ("luhn iccid", ["init", "--iccid", NOT_LUHN, *card], "Luhn"),
        ("luhn iccid, up", ["up", "--iccid", NOT_LUHN, *card], "Luhn"),
        ("luhn iccid, card", ["card", "--iccid", NOT_LUHN, *card], "Luhn"),
        ("luhn iccid, card init", ["card", "init", "--iccid", NOT_LUHN, *card], "Luhn"),
        ("luhn iccid, admin", ["admin", "card", "add", NOT_LUHN, *ras], "Luhn"),
        ("other iccid", ["init", "--iccid", "8988211000000000011", *card], "has ICCID"),
        # a database URL that names no database
        ("bad db url", ["admin", "card", "ls", "--db", "nonsense://x", *ras], "unsupported"),
        ("bad db url 2", ["admin", "card", "ls", "--db", "sqlite:///x//:bad@", *ras], "database"),
        ("no db", ["admin", "card", "ls", "--db", "sqlite:////no/such/dir/x.db", *ras], "database"),
        # content paths
        ("folder to a file path", ["content", "put", a_dir, "/x.html", *card], "end with '/'"),
        ("delete for a file", ["content", "put", bad_toml, "/", "--delete", *card], "folder"),
        ("backslash", ["content", "get", "/a\\b", *card], "forbidden"),
        ("admin backslash", ["admin", "content", "put", bad_toml, "/a\\b", *ras], "forbidden"),
    ]


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "page.html").write_text("<p>x</p>")
    (tmp_path / "bad.toml").write_text("[card\nports = \n")
    assert main(["init", "--data-dir", str(tmp_path / "card"), "-q"]) == 0
    assert main(["admin", "init", "--data-dir", str(tmp_path / "ras"), "-q"]) == 0
    return tmp_path


CASE_NAMES = [name for name, _, _ in _cases(Path("/t"))]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input(name: str, prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    _, argv, says = next(c for c in _cases(prepared) if c[0] == name)
    assert main([*argv, "-q"]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("openscws: ")
    assert says in lines[0]
    assert "Traceback" not in err + out


def test_the_traceback_comes_with_v(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["config", "-c", str(prepared / "adir"), "-v"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openscws: ")
    assert "Traceback" in err


# -- not found: exit 1, everywhere -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["content", "get", "/none.html", "CARD"],
        ["content", "rm", "/none.html", "CARD"],
        ["card", "policy", "deny", "nosuchapp", "CARD"],
        ["card", "psk", "rm", "nobody", "CARD"],
        ["card", "usim", "rm", "CARD"],
        ["admin", "card", "show", VALID, "RAS"],
        ["admin", "card", "rm", VALID, "RAS"],
        ["admin", "logs", VALID, "RAS"],
        ["admin", "content", "history", "/none", "RAS"],
        ["admin", "content", "rm", "/none", "RAS"],
        ["admin", "content", "purge", "/none", "RAS"],
        ["admin", "campaign", "show", "99", "RAS"],
    ],
    ids=" ".join,
)
def test_not_found_is_1(
    argv: list[str], prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = {"CARD": ["--data-dir", str(prepared / "card")]}
    where["RAS"] = ["--data-dir", str(prepared / "ras")]
    capsys.readouterr()
    assert main([*argv[:-1], *where[argv[-1]], "-q"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("openscws: ")


# -- settings that were silently ignored ---------------------------------------------------------


def test_iccid_only_where_it_means_something(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["content", "ls"], ["doctor"], ["card", "show"], ["content", "put", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--iccid", VALID])
        assert exit_info.value.code == 2
        assert "unrecognized arguments: --iccid" in capsys.readouterr().err


def test_init_keeps_an_image_with_the_same_iccid(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ["--data-dir", str(prepared / "card")]
    assert main(["init", "--iccid", VALID, *card]) == 0
    assert f"ICCID {VALID}" in capsys.readouterr().out


def test_a_running_image_is_refused_with_the_holders_pid(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = ["--data-dir", str(prepared / "card")]
    with RunningLock.take(prepared / "card"):
        for argv in (["up", "--no-admin"], ["card"], ["card", "--tcpip"]):
            capsys.readouterr()
            assert main([*argv, *card, "-q"]) == 2
            err = capsys.readouterr().err
            assert f"already running in process {os.getpid()}" in err
            assert len(err.splitlines()) == 1


def test_admin_enrol_gives_each_card_its_own_msisdn(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ras = ["--data-dir", str(prepared / "ras")]
    second = prepared / "card2"
    assert main(["init", "--data-dir", str(second), "--iccid", "8988211000000000011", "-q"]) == 0
    assert main(["admin", "enrol", str(prepared / "card"), *ras, "-q"]) == 0
    assert main(["admin", "enrol", str(second), *ras, "-q"]) == 0
    capsys.readouterr()
    assert main(["admin", "card", "ls", *ras]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    msisdns = [row[1] for row in rows]
    assert len(msisdns) == 2
    assert len(set(msisdns)) == 2, msisdns
    # A number another card has is refused, not shared.
    capsys.readouterr()
    assert main(["admin", "enrol", str(second), "--msisdn", msisdns[0], *ras, "-q"]) == 2
    assert "already belongs to card" in capsys.readouterr().err


def test_identities_are_the_same_from_every_door(
    prepared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`admin card add`, enrolment (as `up` does it) and REST POST /cards agree."""
    ras = ["--data-dir", str(prepared / "ras")]
    assert main(["admin", "card", "add", "8988211000000000011", *ras, "-q"]) == 0
    assert main(["admin", "enrol", str(prepared / "card"), *ras, "-q"]) == 0
    capsys.readouterr()
    for iccid in ("8988211000000000011", VALID):
        assert main(["admin", "card", "show", iccid, *ras]) == 0
        out = capsys.readouterr().out
        assert f"agent id      //se-id/iccid/{iccid}" in out
        assert f"PSK identity  scws-{iccid}" in out


def test_content_put_paths(prepared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = ["--data-dir", str(prepared / "card")]
    page = prepared / "adir" / "page.html"
    assert main(["content", "put", str(page), "/", *card]) == 0
    assert capsys.readouterr().out.startswith("put /page.html ")
    assert main(["content", "put", str(page), "/dir/", *card]) == 0
    assert capsys.readouterr().out.startswith("put /dir/page.html ")
    assert main(["content", "put", str(prepared / "adir"), "/site/", *card]) == 0
    page.unlink()
    (prepared / "adir" / "other.html").write_text("o")
    assert main(["content", "put", str(prepared / "adir"), "/site/", "--delete", *card]) == 0
    out = capsys.readouterr().out
    assert "put /site/other.html" in out
    assert "removed /site/page.html" in out


@pytest.mark.parametrize("server", ["notaurl", "http://127.0.0.1:1", "https://x:99999"])
def test_dm_scr_wants_an_https_server(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dm", "scr", "--server", server]) == 2
    err = capsys.readouterr().err
    assert err == f"openscws: --server {server!r}: not an https:// URL\n"
