"""The Alembic migrations produce exactly the schema the code declares, on SQLite and
on PostgreSQL (always both, whatever GENQ_TEST_DB says), and run down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from genq.migrate import alembic_config, upgrade
from genq.store.tables import metadata
from tests.conftest import pg

TABLES = {
    "jobs",
    "job_events",
    "job_outputs",
    "accounts",
    "api_keys",
    "files",
    "models",
    "webhook_deliveries",
    "webhook_attempts",
    "credit_ledger",
    "idempotency_keys",
    "credit_unfolded",
}


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no migration applied)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
    else:
        yield pg().url(pg().create(migrated=False))


def schema_diff(url: str) -> tuple[list[object], set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, metadata), set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_migrations_match_models(empty_db: str) -> None:
    upgrade(empty_db)
    diff, tables = schema_diff(empty_db)
    assert diff == []
    assert tables >= TABLES
    assert not {t for t in tables if t.startswith("procrastinate")}


def test_upgrade_is_idempotent(empty_db: str) -> None:
    upgrade(empty_db)
    upgrade(empty_db)


def test_downgrade_to_base_and_up_again(empty_db: str) -> None:
    upgrade(empty_db)
    command.downgrade(alembic_config(empty_db), "base")
    assert schema_diff(empty_db)[1] <= {"alembic_version"}
    upgrade(empty_db)
    assert schema_diff(empty_db)[0] == []
