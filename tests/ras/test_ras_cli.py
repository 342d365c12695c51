"""`openscws admin ...`, run in-process through openscws.cli.main with a tmp data dir."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from openscws.cli import main
from openscws.ras.cli import DB_ENV
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.service import RasService
from openscws.ras.vault import Vault

Admin = Callable[..., tuple[int, str, str]]

ICCID = "8988211000000000003"
ICCID2 = "8988211000000000011"

COMMANDS = [
    ["admin"],
    ["admin", "init"],
    ["admin", "card"],
    ["admin", "card", "add"],
    ["admin", "card", "ls"],
    ["admin", "card", "show"],
    ["admin", "card", "rm"],
    ["admin", "content"],
    ["admin", "content", "put"],
    ["admin", "content", "ls"],
    ["admin", "content", "history"],
    ["admin", "content", "rm"],
    ["admin", "campaign"],
    ["admin", "campaign", "create"],
    ["admin", "campaign", "ls"],
    ["admin", "campaign", "show"],
    ["admin", "campaign", "cancel"],
    ["admin", "campaign", "rotate-keys"],
    ["admin", "logs"],
    ["admin", "vault"],
    ["admin", "vault", "rotate"],
    ["admin", "user"],
    ["admin", "user", "add"],
    ["admin", "user", "ls"],
    ["admin", "user", "rm"],
    ["admin", "user", "passwd"],
    ["admin", "token"],
    ["admin", "token", "create"],
    ["admin", "token", "ls"],
    ["admin", "token", "revoke"],
    ["admin", "audit"],
]


@pytest.fixture(autouse=True)
def _no_outside_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DB_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def admin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Admin:
    """Runs `openscws admin WORDS... --data-dir tmp`; returns (status, stdout, stderr)."""
    data = tmp_path / "ras"

    def run(*words: str) -> tuple[int, str, str]:
        code = main(["admin", *words, "--data-dir", str(data), "-q"])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("init")[0] == 0
    return run


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: openscws admin" in capsys.readouterr().out


def test_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ras"
    assert main(["admin", "init", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "schema: 0004" in out
    assert (data / "master.key").stat().st_mode & 0o777 == 0o600
    assert (data / "ras.db").exists()
    # The first admin's password, once.
    match = re.search(r"as user admin with the one-time password (\S+)", out)
    assert match is not None, out
    db = RasDatabase(default_url(data))
    try:
        assert RasService(db, Vault.open(data)).accounts.check_password("admin", match[1])
    finally:
        db.dispose()
    key = (data / "master.key").read_bytes()
    assert main(["admin", "init", "--data-dir", str(data)]) == 0  # again: keeps the key
    assert (data / "master.key").read_bytes() == key
    assert "one-time password" not in capsys.readouterr().out


def test_default_data_dir_follows_xdg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "init"]) == 0
    assert (tmp_path / "xdg" / "openscws" / "ras" / "master.key").exists()
    capsys.readouterr()
    assert main(["admin", "card", "ls"]) == 0
    assert capsys.readouterr().out == "none\n"  # an empty listing says so


def test_db_from_env_and_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "ras"
    env_db = tmp_path / "env.db"
    monkeypatch.setenv(DB_ENV, f"sqlite:///{env_db}")
    assert main(["admin", "init", "--data-dir", str(data)]) == 0
    assert env_db.exists()
    assert not (data / "ras.db").exists()
    opt_db = tmp_path / "opt.db"
    assert main(["admin", "init", "--data-dir", str(data), "--db", f"sqlite:///{opt_db}"]) == 0
    assert opt_db.exists()
    capsys.readouterr()


def test_commands_need_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "card", "ls", "--data-dir", str(tmp_path / "none")]) == 2
    assert "admin init" in capsys.readouterr().err


def test_unmigrated_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "ras"
    assert main(["admin", "init", "--data-dir", str(data)]) == 0
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["admin", "card", "ls", "--data-dir", str(data), "--db", empty]) == 2
    assert "schema none" in capsys.readouterr().err


def test_cards(admin: Admin) -> None:
    code, out, _ = admin("card", "add", ICCID, "--msisdn", "+15550100001", "--tar", "B20100")
    assert code == 0
    keys = dict(re.findall(r"^  (PSK key|KIc \(12\)|KID \(12\))\s+([0-9A-F]+)$", out, re.M))
    assert len(keys) == 3
    assert all(len(v) == 32 for v in keys.values())
    assert "shown only now" in out
    code, out, _ = admin(
        "card", "add", ICCID2, "--psk-identity", "two", "--psk-key", "00" * 16, "--kic-ref", "15"
    )
    assert code == 0
    assert "PSK key" not in out  # given, so not printed
    assert re.search(r"KIc \(15\)\s+[0-9A-F]{32}$", out, re.M)  # 3DES two-key: 16 bytes
    code, out, _ = admin("card", "ls")
    assert code == 0
    assert ICCID in out
    assert "two" in out
    assert "B20100" in out
    for key in keys.values():
        assert key not in out
    code, out, _ = admin("card", "show", ICCID)
    assert code == 0
    assert "+15550100001" in out
    assert "KIc / KID     12 / 12" in out
    assert all(key not in out for key in keys.values())
    code, _, err = admin("card", "add", ICCID)
    assert code == 2
    assert "exists" in err
    code, _, err = admin("card", "add", "123")
    assert code == 2
    assert "ICCID" in err
    assert admin("card", "rm", ICCID2)[0] == 0
    code, _, err = admin("card", "rm", ICCID2)
    assert code == 1
    assert "no card" in err
    assert admin("card", "show", ICCID2)[0] == 1


def test_content(admin: Admin, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_bytes(b"<p>one</p>")
    code, out, _ = admin("content", "put", str(page), "/index.html")
    assert (code, out.strip()) == (0, "put /index.html v1 (10 B, text/html)")
    code, out, err = admin("content", "put", "/index.html", str(page))  # the old order
    assert out.startswith("unchanged /index.html v1")
    assert "deprecated" in err
    page.write_bytes(b"<p>two</p>")
    code, out, _ = admin(
        "content", "put", str(page), "/index.html", "--language", "en", "--realm", "staff"
    )
    assert out.startswith("put /index.html v2")
    blob = tmp_path / "blob"
    blob.write_bytes(b"\0\1")
    admin("content", "put", str(blob), "/data/blob", "--type", "application/x-thing")
    code, out, _ = admin("content", "ls")
    assert code == 0
    assert "application/x-thing" in out
    assert "language=en realm=staff" in out
    assert admin("content", "rm", "/data/blob")[1].strip() == "deleted /data/blob (tombstone v2)"
    code, _, err = admin("content", "rm", "/data/blob")
    assert code == 1
    code, out, _ = admin("content", "history", "/data/blob")
    assert code == 0
    assert out.splitlines()[-1].endswith("deleted")
    assert admin("content", "history", "/nope")[0] == 1
    code, _, err = admin("content", "put", str(page), "no-slash")
    assert code == 2
    assert "path" in err
    code, _, err = admin("content", "put", str(tmp_path / "missing"), "/x")
    assert code == 2
    assert "cannot read" in err


def test_campaigns_and_logs(admin: Admin, tmp_path: Path) -> None:
    page = tmp_path / "a.html"
    page.write_bytes(b"a")
    admin("content", "put", str(page), "/a.html")
    code, _, err = admin("campaign", "create", "empty")
    assert code == 2
    assert "no cards" in err
    admin("card", "add", ICCID)
    admin("card", "add", ICCID2)
    code, out, _ = admin("campaign", "create", "first", "--max-attempts", "3")
    assert code == 0
    assert out.splitlines() == ["campaign 1 'first': 2 card(s)", "  put /a.html v1"]
    code, out, _ = admin("campaign", "create", "one", "--card", ICCID, "--path", "/a.html")
    assert code == 0
    assert "1 card(s)" in out
    code, out, _ = admin("campaign", "ls")
    assert re.search(r"^\s+1\s+active\s+2\s+2\s", out, re.M)
    code, out, _ = admin("campaign", "show", "1")
    assert code == 0
    assert "pending 2" in out
    assert f"{ICCID}" in out
    assert "0/3" in out
    code, out, _ = admin("campaign", "cancel", "1")
    assert code == 0
    assert "2 job(s) stopped" in out
    code, out, _ = admin("campaign", "show", "1")
    assert "cancelled" in out
    assert "failed 2" in out
    code, _, err = admin("campaign", "show", "99")
    assert code == 1  # not found
    assert "no campaign 99" in err
    code, _, err = admin("campaign", "create", "x", "--path", "/nope")
    assert code == 1  # not found
    assert "/nope" in err
    code, out, _ = admin("card", "show", ICCID)
    assert "cancelled" in out
    assert "pending" in out
    assert admin("logs", ICCID) == (0, "none\n", "")
    db = RasDatabase(default_url(tmp_path / "ras"))
    try:
        when = datetime(2025, 3, 1, 12, tzinfo=UTC)
        RasService(db, Vault.open(tmp_path / "ras")).log_session(
            ICCID,
            job_id=None,
            started_at=when,
            ended_at=when,
            outcome="done",
            detail=["PUT /a.html -> 201", "POST /.scws/commit -> 200"],
        )
    finally:
        db.dispose()
    code, out, _ = admin("logs", ICCID)
    assert out.splitlines() == [
        "2025-03-01 12:00:00Z .. 2025-03-01 12:00:00Z  done     job -",
        "    PUT /a.html -> 201",
        "    POST /.scws/commit -> 200",
    ]
    assert admin("logs", "8988211000000000099")[0] == 1


def test_admin_is_in_the_main_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "admin" in capsys.readouterr().out


def test_campaign_wait_follows_progress(admin: Admin, tmp_path: Path) -> None:
    """`--wait` prints the counts as they change while a server (here: a thread driving the
    service as RasServer would) works the jobs, then the failures; the exit status says how
    it ended. `--timeout` gives up waiting with 3, the campaign untouched."""
    page = tmp_path / "a.html"
    page.write_bytes(b"a")
    admin("content", "put", str(page), "/a.html")
    admin("card", "add", ICCID)
    admin("card", "add", ICCID2)
    code, out, err = admin("campaign", "create", "slow", "--wait", "--timeout", "0.3")
    assert code == 3
    assert "[" in out
    assert "pending 2" in out
    assert "2 job(s) still open after 0.3 s" in err

    db = RasDatabase(default_url(tmp_path / "ras"))
    ras = RasService(db, Vault.open(tmp_path / "ras"))

    def server() -> None:
        now = datetime.now(UTC)
        works = ras.claim_triggers("srv", 10, now)
        for n, work in enumerate(sorted(works, key=lambda w: w.iccid)):
            time.sleep(0.3)
            session = ras.open_session(work.psk_identity, "srv", datetime.now(UTC))
            assert session is not None
            time.sleep(0.3)
            outcome = "done" if n == 0 else "failed"
            reason = None if n == 0 else "the card answered 507 to PUT /a.html"
            assert ras.finish_job(session.job_id, "srv", outcome, reason, datetime.now(UTC))

    worker = threading.Thread(target=server)
    worker.start()
    try:
        code, out, _ = admin("campaign", "show", "1", "--wait")
    finally:
        worker.join()
        db.dispose()
    assert code == 1
    lines = out.splitlines()
    assert "in_session 1" in out
    assert lines[-2].split() == [
        ICCID2,
        "failed",
        "1/5",
        *"the card answered 507 to PUT /a.html".split(),
    ]
    assert lines[-1] == "campaign 1: 1 done, 1 failed"
    counts = [line.split("] ", 1)[1] for line in lines[:-2]]
    assert len(counts) == len(set(counts))  # a line per change, not per poll


def test_users_tokens_and_audit(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Accounts and tokens from the command line: it works on the database directly, so it
    needs no login; every change it makes is in the audit trail as local:<login>."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    code, out, _ = admin("user", "add", "ann", "--role", "operator", "--password-stdin")
    assert code == 0, out
    assert "user ann added (operator)" in out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: a password is made
    code, out, _ = admin("user", "add", "vic")
    assert code == 0
    made = re.search(r"password (\S+)  \(shown only now\)", out)
    assert made is not None, out
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    code, out, err = admin("user", "add", "ann", "--password-stdin")
    assert (code, err.strip()) == (2, "openscws: user ann exists")
    code, out, _ = admin("user", "ls")
    assert re.search(r"^ann\s+operator", out, re.M)
    assert re.search(r"^vic\s+viewer", out, re.M)

    code, out, err = admin("token", "create", "ann", "--name", "ci", "--days", "7")
    assert code == 0, err
    token = out.splitlines()[1]
    assert re.fullmatch(r"oscws_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    token_id = token.split("_")[1]
    assert "shown only now" in err
    code, out, err = admin("token", "create", "ann", "--role", "admin")
    assert code == 2
    assert "cannot have the admin role" in err
    code, out, _ = admin("token", "ls")
    assert re.search(rf"^{token_id}\s+ann\s+operator\s+active", out, re.M)
    assert token not in out
    assert admin("token", "revoke", token_id)[0] == 0
    assert re.search(rf"^{token_id}\s+ann\s+operator\s+revoked", admin("token", "ls")[1], re.M)
    assert admin("token", "revoke", "000000000000")[0] == 1

    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert admin("user", "passwd", "ann", "--password-stdin")[0] == 0
    assert admin("user", "rm", "vic")[0] == 0
    assert admin("user", "rm", "vic")[0] == 1
    code, _, err = admin("user", "rm", "admin")
    assert (code, "last admin" in err) == (2, True)

    code, out, _ = admin("card", "add", ICCID, "--psk-key", "00112233445566778899AABBCCDDEEFF")
    assert code == 0
    code, out, _ = admin("audit")
    lines = out.splitlines()
    actions = [line.split()[4] for line in lines]
    assert actions[-1] == "card.create"
    assert {"user.create", "token.create", "token.revoke", "user.password", "user.delete"} <= set(
        actions
    )
    assert all(" local:" in line for line in lines)
    assert any("last admin" in line and "user.delete" in line for line in lines)
    assert "00112233445566778899AABBCCDDEEFF" not in out
    assert "PSK check" in lines[-1]
    assert token not in out


def test_acp_campaign(admin: Admin, tmp_path: Path) -> None:
    admin("card", "add", ICCID)
    policy = tmp_path / "policy.json"
    policy.write_text('{"rules": [{"app": "any", "ports": [4116]}]}')
    code, out, _ = admin("campaign", "create", "lock-down", "--acp", str(policy))
    assert code == 0
    assert out.splitlines() == ["campaign 1 'lock-down': 1 card(s)", "  acp /.scws/acp"]
    policy.write_text('{"rules": [{"app": "nobody"}]}')
    code, _, err = admin("campaign", "create", "bad", "--acp", str(policy))
    assert code == 2
    assert "access rules" in err
    code, _, err = admin("campaign", "create", "bad", "--acp", str(tmp_path / "none.json"))
    assert code == 2
    assert "cannot read the policy" in err
