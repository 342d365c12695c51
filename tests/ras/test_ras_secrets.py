"""Secrets at rest: the database files are private, and the master key rotates in one
transaction, crash-safe at every step, with running servers following along."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from ras_contract import POLICY, add_card, iccid, keys_of
from sqlalchemy import select

from openscws.cli import main
from openscws.ras.db import RasDatabase, default_url
from openscws.ras.models import Card
from openscws.ras.service import RasService
from openscws.ras.vault import MASTER_KEY_FILE, NEXT_KEY_FILE, Vault, VaultError

CARDS = 3


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_database_files_are_created_0600(tmp_path: Path) -> None:
    db = RasDatabase(default_url(tmp_path))
    try:
        db.upgrade()
        ras = RasService(db, Vault.create(tmp_path / "keys"), POLICY)
        add_card(ras, 1)
        files = {p.name: _mode(p) for p in tmp_path.glob("ras.db*")}
        assert {"ras.db", "ras.db-wal", "ras.db-shm"} <= set(files), files
        assert set(files.values()) == {0o600}, files
    finally:
        db.dispose()


@pytest.mark.usefixtures("umask_022")
def test_database_files_of_an_older_version_are_made_private(tmp_path: Path) -> None:
    for name in ("ras.db", "ras.db-wal"):
        (tmp_path / name).touch(mode=0o644)
        (tmp_path / name).chmod(0o644)
    RasDatabase(default_url(tmp_path)).dispose()
    assert _mode(tmp_path / "ras.db") == 0o600
    assert _mode(tmp_path / "ras.db-wal") == 0o600


def test_master_key_open_to_others_is_refused_at_start(tmp_path: Path) -> None:
    Vault.create(tmp_path)
    (tmp_path / MASTER_KEY_FILE).chmod(0o640)
    with pytest.raises(VaultError, match="open to group or others: chmod 600"):
        Vault.open(tmp_path)


# -- rotation ----------------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[RasDatabase, Path]]:
    directory = tmp_path / "ras"
    directory.mkdir()
    db = RasDatabase(default_url(directory))
    db.upgrade()
    ras = RasService(db, Vault.create(directory), POLICY)
    for n in range(CARDS):
        add_card(ras, n)
    yield db, directory
    db.dispose()


def _service(db: RasDatabase, directory: Path) -> RasService:
    return RasService(db, Vault.open(directory), POLICY)


def _all_keys_open(ras: RasService) -> None:
    """Every card's PSK (through the service) and OTA keys (through its vault) open."""
    for n in range(CARDS):
        assert ras.psk_lookup(f"id-{n}") == keys_of(n)[0]
    with ras._db.read() as s:
        rows = s.execute(select(Card.iccid, Card.ota_kic_key, Card.ota_kid_key)).all()
    for row in rows:
        n = int(row.iccid[-6:-1])  # iccid(n): n, then the Luhn digit
        assert ras._vault.unseal(row.ota_kic_key, f"card/{row.iccid}/ota_kic_key") == keys_of(n)[1]
        assert ras._vault.unseal(row.ota_kid_key, f"card/{row.iccid}/ota_kid_key") == keys_of(n)[2]


def test_rotate_reseals_everything_under_a_new_key(setup: tuple[RasDatabase, Path]) -> None:
    db, directory = setup
    before = (directory / MASTER_KEY_FILE).read_bytes()
    running = _service(db, directory)  # a server that started before the rotation
    rotating = _service(db, directory)
    rotating._vault.begin_rotation()
    assert rotating.reseal() == CARDS
    rotating._vault.finish_rotation()
    assert (directory / MASTER_KEY_FILE).read_bytes() != before
    assert not (directory / NEXT_KEY_FILE).exists()
    assert _mode(directory / MASTER_KEY_FILE) == 0o600
    fresh = _service(db, directory)
    assert fresh.unsealed_elsewhere() == 0
    _all_keys_open(fresh)
    # The running server notices the new key when a value does not open...
    _all_keys_open(running)
    # ...and seals what it writes under the new key.
    add_card(running, 7)
    assert fresh.psk_lookup("id-7") == keys_of(7)[0]
    assert fresh.unsealed_elsewhere() == 0
    # The old key opens nothing any more.
    old = Vault(bytes.fromhex(before.split(b"\n")[1].decode()))
    assert RasService(db, old, POLICY).unsealed_elsewhere() == 3 * (CARDS + 1)
    with pytest.raises(VaultError):
        RasService(db, old, POLICY).psk_lookup("id-0")


def test_rotation_cut_short_before_the_commit(
    setup: tuple[RasDatabase, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, directory = setup
    ras = _service(db, directory)
    ras._vault.begin_rotation()
    # The re-seal transaction dies half way (after sealing some values): nothing commits.
    calls = 0
    real_seal = Vault.seal

    def dying(self: Vault, plaintext: bytes, where: str) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt  # the process is killed mid-transaction
        return real_seal(self, plaintext, where)

    monkeypatch.setattr(Vault, "seal", dying)
    with pytest.raises(KeyboardInterrupt):
        ras.reseal()
    monkeypatch.setattr(Vault, "seal", real_seal)
    # After the "crash": the next key file is there, the rows are under the old key.
    assert (directory / NEXT_KEY_FILE).exists()
    restarted = _service(db, directory)
    assert restarted._vault.rotating
    assert restarted.unsealed_elsewhere() == 3 * CARDS
    _all_keys_open(restarted)
    add_card(restarted, 8)  # written meanwhile: sealed under the next key
    assert restarted.unsealed_elsewhere() == 3 * CARDS
    _all_keys_open(restarted)
    # Running the rotation again finishes it, with the same next key.
    next_key = (directory / NEXT_KEY_FILE).read_bytes()
    assert _rotate_cli(directory) == 0
    assert (directory / MASTER_KEY_FILE).read_bytes() == next_key
    done = _service(db, directory)
    assert done.unsealed_elsewhere() == 0
    _all_keys_open(done)
    assert done.psk_lookup("id-8") == keys_of(8)[0]


def test_rotation_cut_short_after_the_commit(setup: tuple[RasDatabase, Path]) -> None:
    db, directory = setup
    ras = _service(db, directory)
    ras._vault.begin_rotation()
    ras.reseal()
    # Killed before the rename: master.key is the old key, the rows are under the next one.
    restarted = _service(db, directory)
    assert restarted._vault.rotating
    assert restarted.unsealed_elsewhere() == 0
    _all_keys_open(restarted)
    assert _rotate_cli(directory) == 0
    assert not (directory / NEXT_KEY_FILE).exists()
    _all_keys_open(_service(db, directory))


def test_next_key_open_to_others_is_refused(setup: tuple[RasDatabase, Path]) -> None:
    _, directory = setup
    Vault.open(directory).begin_rotation()
    (directory / NEXT_KEY_FILE).chmod(0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        Vault.open(directory)


def test_vault_in_memory_cannot_rotate() -> None:
    with pytest.raises(VaultError, match="in memory"):
        Vault(bytes(32)).begin_rotation()


def _rotate_cli(directory: Path) -> int:
    return main(["admin", "vault", "rotate", "--data-dir", str(directory), "-q"])


def test_cli_rotate(setup: tuple[RasDatabase, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db, directory = setup
    assert _rotate_cli(directory) == 0
    out = capsys.readouterr().out
    assert f"{CARDS} card(s) re-sealed" in out
    for n in range(CARDS):
        for key in keys_of(n):
            assert key.hex() not in out.lower()
    _all_keys_open(_service(db, directory))
    assert iccid(0) not in out


@pytest.mark.parametrize("command", [["up", "--no-demo"], ["admin", "card", "ls"]])
def test_a_readable_master_key_stops_the_cli_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("OPENSCWS_RAS_DB", raising=False)
    ras_dir = tmp_path / "openscws" / "ras"
    Vault.create(ras_dir)
    (ras_dir / MASTER_KEY_FILE).chmod(0o644)
    assert main([*command, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("openscws: ")
    assert "chmod 600" in err
