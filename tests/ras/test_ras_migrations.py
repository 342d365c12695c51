"""The Alembic migrations: a fresh database upgrades to head, and the migrated schema is
exactly what models.py declares (autogenerate finds nothing to do)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ras_contract import schema_diff
from sqlalchemy import inspect

from openscws.ras.db import MIGRATIONS, RasDatabase, RasError, default_url

TABLES = {
    "alembic_version",
    "cards",
    "content_versions",
    "campaigns",
    "jobs",
    "session_logs",
    "users",
    "api_tokens",
    "console_sessions",
    "audit_log",
}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[RasDatabase]:
    db = RasDatabase(default_url(tmp_path))
    yield db
    db.dispose()


def test_fresh_database_upgrades(fresh: RasDatabase) -> None:
    assert fresh.current_revision() is None
    with pytest.raises(RasError, match="admin init"):
        fresh.check_current()
    fresh.upgrade()
    assert fresh.current_revision() == fresh.head_revision() == "0004"
    fresh.check_current()
    assert set(inspect(fresh.engine).get_table_names()) == TABLES
    fresh.upgrade()  # at head already: nothing happens
    assert fresh.current_revision() == "0004"


def test_operator_tables_come_on_top_of_an_existing_database(fresh: RasDatabase) -> None:
    """A database made by the first schema gains the operator tables and keeps its rows."""
    fresh.upgrade("0001")
    with fresh.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO campaigns (name, operations, created_at, state) "
            "VALUES ('old', '[]', '2025-01-01 00:00:00', 'active')"
        )
    fresh.upgrade()
    assert fresh.current_revision() == "0004"
    assert schema_diff(fresh) == []
    assert {"users", "api_tokens", "console_sessions", "audit_log"} <= set(
        inspect(fresh.engine).get_table_names()
    )
    with fresh.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM campaigns").scalar() == "old"


def test_models_match_migrations(fresh: RasDatabase) -> None:
    fresh.upgrade()
    assert schema_diff(fresh) == []


def test_drift_is_noticed(fresh: RasDatabase) -> None:
    fresh.upgrade()
    with fresh.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_jobs_state_next_attempt_at")
    assert schema_diff(fresh) != []


def test_downgrade_and_up_again(fresh: RasDatabase) -> None:
    fresh.upgrade()
    from alembic import command

    with fresh.engine.begin() as connection:
        command.downgrade(fresh._alembic_config(connection), "base")
    assert set(inspect(fresh.engine).get_table_names()) == {"alembic_version"}
    fresh.upgrade()
    assert schema_diff(fresh) == []


def test_partial_unique_index_is_migrated(fresh: RasDatabase) -> None:
    fresh.upgrade()
    with fresh.engine.connect() as connection:
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'uq_jobs_one_active_per_card'"
        ).scalar()
    assert sql is not None
    assert "WHERE state IN ('triggered', 'in_session')" in sql


def test_migrations_ship_as_package_data() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS / "versions").glob("*.py")) == [
        "0001_initial.py",
        "0002_operators.py",
        "0003_push_trigger.py",
        "0004_pap_code.py",
    ]
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    assert '"ras/migrations/**/*.py"' in pyproject.read_text()
