"""The DM server's Alembic migrations: a fresh database upgrades to head and matches
db_models.py exactly; a database at the previous schema gains the table of used Digest
nonces and keeps its devices and jobs; and the newest step goes down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from openscws.dm.db import VERSION_TABLE, DmDatabase, default_url
from openscws.dm.db_models import Base

TABLES = {VERSION_TABLE, "dm_devices", "dm_jobs", "dm_digest_nonces"}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[DmDatabase]:
    db = DmDatabase(default_url(tmp_path))
    yield db
    db.dispose()


def schema_diff(db: DmDatabase) -> list[object]:
    """What autogenerate would change to make the database match db_models.py."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        return list(compare_metadata(context, Base.metadata))


def test_fresh_database_upgrades_to_the_models(fresh: DmDatabase) -> None:
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision() == "dm0003"
    assert set(inspect(fresh.engine).get_table_names()) == TABLES
    assert schema_diff(fresh) == []
    indexes = inspect(fresh.engine).get_indexes("dm_digest_nonces")
    assert [(i["name"], i["column_names"]) for i in indexes] == [
        ("ix_dm_digest_nonces_issued_ms", ["issued_ms"])
    ]


def test_upgrade_from_the_msisdn_schema_keeps_the_data(fresh: DmDatabase) -> None:
    fresh.upgrade("dm0002")
    assert "dm_digest_nonces" not in inspect(fresh.engine).get_table_names()
    with fresh.engine.begin() as c:
        c.exec_driver_sql(
            "INSERT INTO dm_devices (dev_id, app_auth, app_username, app_secret, app_nonce, "
            "server_id, server_secret, server_nonce, http_auth, msisdn, created_ms) VALUES "
            "('IMEI:1', 'syncml:auth-md5', 'dev', x'01', x'02', 'srv', x'03', x'04', "
            "'digest', '+15550100001', 1)"
        )
        c.exec_driver_sql(
            "INSERT INTO dm_jobs (dev_id, state, commands, results, created_ms) "
            "VALUES ('IMEI:1', 'pending', '[]', '[]', 2)"
        )
    fresh.upgrade()
    assert fresh.current_revision() == "dm0003"
    assert schema_diff(fresh) == []
    with fresh.engine.connect() as c:
        assert c.exec_driver_sql("SELECT dev_id, msisdn FROM dm_devices").all() == [
            ("IMEI:1", "+15550100001")
        ]
        assert c.exec_driver_sql("SELECT dev_id, state FROM dm_jobs").all() == [
            ("IMEI:1", "pending")
        ]
        assert c.exec_driver_sql("SELECT count(*) FROM dm_digest_nonces").scalar() == 0


def test_downgrade_and_up_again(fresh: DmDatabase) -> None:
    fresh.upgrade()
    with fresh.engine.begin() as c:
        c.exec_driver_sql("INSERT INTO dm_digest_nonces VALUES ('bm9uY2U=', '00000001', 5)")
        command.downgrade(fresh._alembic_config(c), "dm0002")
    assert fresh.current_revision() == "dm0002"
    assert set(inspect(fresh.engine).get_table_names()) == TABLES - {"dm_digest_nonces"}
    fresh.upgrade()
    assert schema_diff(fresh) == []


def test_migrations_ship_as_package_data() -> None:
    versions = Path(__file__).parents[2] / "src" / "openscws" / "dm" / "migrations" / "versions"
    assert sorted(p.name for p in versions.glob("*.py")) == [
        "0001_initial.py",
        "0002_msisdn.py",
        "0003_digest_nonces.py",
    ]
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    assert '"dm/migrations/**/*.py"' in pyproject.read_text()
