"""`genq doctor`'s checks against real databases: each reports what is wrong (and only
then), and none of them creates anything."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psycopg
from alembic.script import ScriptDirectory
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from genq import lifecycle
from genq.cli import app
from genq.doctor import Check, Report, Status, diagnose, masked
from genq.engines.registry import load_engines
from genq.ids import new_id, utcnow
from genq.migrate import alembic_config, upgrade
from genq.settings import Settings
from genq.store import Store
from genq.store.db import Cx
from tests.conftest import TEST_DB, job_record, make_settings, pg

T = TypeVar("T")
STORE_CHECKS = ["workers", "queue", "webhooks", "ledger", "upstreams"]


class Opaque:
    """A type pydantic cannot describe in JSON Schema."""


class _BadInput(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


class BadSchema:
    """An engine whose input schema cannot be built."""

    name: ClassVar[str] = "test/bad-schema"
    task: ClassVar[str] = "noop"
    input_model: ClassVar[type[BaseModel]] = _BadInput

    def run(self, ctx: Any) -> None:
        return None


def fresh(tmp_path: Path, **overrides: Any) -> Settings:
    settings = make_settings(tmp_path / "data", **overrides)
    upgrade(settings.db_url)
    return settings


def on_store(settings: Settings, fn: Callable[[Store, str], Awaitable[T]]) -> T:
    """Run `fn(store, account_id)` on a store of its own, with an account in funds."""

    async def main() -> T:
        store = Store(settings.db_url)
        try:
            acct = await store.accounts.create(new_id("acct"), new_id("a"), "free")
            await store.ledger.grant(acct.id, 10_000)
            return await fn(store, acct.id)
        finally:
            await store.close()

    return asyncio.run(main())


async def add_job(store: Store, account_id: str, **values: Any) -> str:
    job, _ = await store.jobs.create(
        job_record(account_id, credits_estimate=5, **values), lifecycle.created()
    )
    return job.id


def url_db(settings: Settings) -> str | None:
    return make_url(settings.db_url).database


def checks(report: Report, name: str) -> list[Check]:
    return [c for c in report.checks if c.name == name]


def only(report: Report, name: str) -> Check:
    [check] = checks(report, name)
    return check


def test_a_fresh_database_passes_every_check(tmp_path: Path) -> None:
    settings = fresh(tmp_path)
    report = diagnose(settings)
    expected = ["database", "schema", "engines", "storage", *STORE_CHECKS]
    if TEST_DB == "postgres":
        expected.append("transactions")
    assert [c.name for c in report.checks] == expected
    for c in report.checks:
        # other databases on a shared PostgreSQL server may hold transactions open too
        if c.name != "transactions" or f"database {url_db(settings)}," in c.detail:
            assert c.status is Status.OK, c
    assert report.database == masked(settings.db_url)
    assert "test/sleep" not in only(report, "engines").detail  # a count, not a list
    engines = len(load_engines(settings.engines))
    assert engines > 10  # the demo and scenario engines
    assert only(report, "engines").detail.startswith(f"{engines} load")


def test_a_missing_sqlite_database_is_reported_and_not_made(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nowhere", database_url="")
    report = diagnose(settings)
    assert [(c.name, c.status) for c in report.checks] == [("database", Status.FAIL)]
    assert report.checks[0].detail == f"no genq database at {tmp_path / 'nowhere' / 'genq.db'}"
    assert "--data-dir" in report.hint and "GENQ_DATABASE_URL" in report.hint
    assert not report.ok and not report.found
    assert list(tmp_path.iterdir()) == []


def test_a_missing_postgres_database_is_reported_and_not_made(tmp_path: Path) -> None:
    name = "genq_test_absent_" + new_id("x")[-8:].lower()
    settings = Settings(data_dir=tmp_path, database_url=pg().url(name))
    report = diagnose(settings)
    assert [(c.name, c.status) for c in report.checks] == [("database", Status.FAIL)]
    assert "cannot connect" in report.checks[0].detail and name in report.checks[0].detail
    assert "GENQ_DATABASE_URL" in report.hint
    with psycopg.connect(f"{pg().server}/postgres") as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None


def test_a_password_is_never_shown(tmp_path: Path) -> None:
    url = pg().url(pg().create()).replace("postgres@", "postgres:s3cret@")
    report = diagnose(Settings(data_dir=tmp_path, database_url=url))
    assert only(report, "database").status is Status.OK  # trust auth: the password is unused
    assert "s3cret" not in json.dumps(report.as_dict())
    assert "postgres:***@" in report.database


def test_a_schema_behind_or_missing_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", database_url="")
    settings.data_dir.mkdir()
    (settings.data_dir / "genq.db").touch()
    report = diagnose(settings)
    assert [(c.name, c.status) for c in report.checks] == [
        ("database", Status.OK),
        ("schema", Status.FAIL),
    ]
    assert "genq db upgrade" in only(report, "schema").detail
    upgrade(settings.db_url, "0003")
    behind = only(diagnose(settings), "schema")
    assert behind.status is Status.FAIL
    (head,) = ScriptDirectory.from_config(alembic_config(settings.db_url)).get_heads()
    assert head > "0003"
    assert behind.detail == f"at 0003, the latest is {head}: run genq db upgrade"


def test_engines_that_do_not_load_or_describe_fail(tmp_path: Path) -> None:
    settings = fresh(tmp_path)
    broken = settings.model_copy(update={"engines": ["no_such_module:ENGINES"]})
    failed = only(diagnose(broken), "engines")
    assert failed.status is Status.FAIL and "no_such_module" in failed.detail
    bad = settings.model_copy(update={"engines": [f"{__name__}:BadSchema"]})
    report = diagnose(bad)
    assert only(report, "engines").status is Status.FAIL
    assert only(report, "engines").detail.startswith("test/bad-schema: its input schema")
    assert not report.ok


def test_storage_that_cannot_take_files_fails(tmp_path: Path) -> None:
    settings = fresh(tmp_path)
    settings.data_dir.mkdir(exist_ok=True)  # PostgreSQL: nothing made it yet
    (settings.data_dir / "files").write_text("not a directory")
    check = only(diagnose(settings), "storage")
    assert check.status is Status.FAIL
    assert check.detail == f"{settings.data_dir.resolve() / 'files'} is not a directory"
    assert [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".genq")] == []


def test_leases_lapsed_long_ago_mean_no_worker(tmp_path: Path) -> None:
    settings = fresh(tmp_path)

    async def lapsed(store: Store, account: str) -> None:
        for _ in range(2):
            await add_job(store, account, engine="test/sleep")

        def step(now: datetime) -> lifecycle.Step:
            return lifecycle.claimed("gone", now - timedelta(minutes=10), now)

        await store.jobs.claim("gone", slots=1, limits={"test/sleep": 2}, step=step)

    on_store(settings, lapsed)
    report = diagnose(settings)
    workers = only(report, "workers")
    assert workers.status is Status.FAIL, workers
    assert workers.detail.startswith("the lease of 1 of 1 running job lapsed over 60s ago")
    assert "is a genq serve or genq worker running" in workers.detail
    assert not report.ok


def test_running_jobs_are_counted_against_their_engine(tmp_path: Path) -> None:
    settings = fresh(tmp_path)

    async def running(store: Store, account: str) -> None:
        await add_job(store, account, engine="test/sleep")

        def step(now: datetime) -> lifecycle.Step:
            return lifecycle.claimed("w1", now + timedelta(minutes=1), now)

        await store.jobs.claim("w1", slots=1, limits={"test/sleep": 2}, step=step)

    on_store(settings, running)
    report = diagnose(settings)
    assert only(report, "workers").status is Status.OK
    assert only(report, "workers").detail.startswith("1 job running under 1 worker")
    assert only(report, "queue") == Check("queue", Status.OK, "0 queued; test/sleep 1/2 running")


def test_a_queue_nobody_serves_warns(tmp_path: Path) -> None:
    settings = fresh(tmp_path)
    old = utcnow() - timedelta(minutes=30)
    on_store(settings, lambda store, acct: add_job(store, acct, engine="gone/x", created_at=old))
    report = diagnose(settings)
    queue = only(report, "queue")
    assert queue.status is Status.WARN
    assert queue.detail.startswith("1 queued, oldest 30m ago")
    assert "queued for engines this configuration does not load: gone/x" in queue.detail
    assert "nothing running" in queue.detail
    assert report.ok  # warnings do not fail


def _overdue_delivery(cx: Cx, job_id: str, account_id: str, at: datetime) -> None:
    cx.execute(
        "INSERT INTO webhook_deliveries (id, job_id, account_id, event, seq, url, status,"
        " attempts, next_attempt_at, created_at) VALUES (%(id)s, %(j)s, %(a)s, 'status', 1,"
        " 'https://example.com/hook', 'pending', 0, %(at)s, %(at)s)",
        {"id": new_id("whd"), "j": job_id, "a": account_id, "at": cx.ts(at)},
    )


def test_an_overdue_webhook_backlog_warns(tmp_path: Path) -> None:
    settings = fresh(tmp_path)

    async def backlog(store: Store, account: str) -> None:
        job_id = await add_job(store, account, engine="test/sleep")
        await store.db.write(_overdue_delivery, job_id, account, utcnow() - timedelta(hours=2))

    on_store(settings, backlog)
    hooks = only(diagnose(settings), "webhooks")
    assert hooks.status is Status.WARN
    assert hooks.detail.startswith("1 pending, oldest 2h ago")
    assert "1 overdue by over 60s" in hooks.detail


def _skew_balance(cx: Cx, account_id: str) -> None:
    cx.execute("UPDATE accounts SET balance = balance + 7 WHERE id = %(a)s", {"a": account_id})


def test_a_ledger_that_does_not_balance_fails(tmp_path: Path) -> None:
    settings = fresh(tmp_path)

    async def skew(store: Store, account: str) -> str:
        await store.db.write(_skew_balance, account)
        return account

    account = on_store(settings, skew)
    ledger = only(diagnose(settings), "ledger")
    assert ledger == Check("ledger", Status.FAIL, f"account {account}: balance 10007, ledger 10000")


def test_a_long_write_transaction_holding_the_event_watermark_fails(tmp_path: Path) -> None:
    url = pg().url(pg().create())
    settings = fresh(tmp_path, database_url=url)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, application_name="stuck-client") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        conn.execute("SELECT pg_current_xact_id()")  # an xid: this transaction has written
        report = diagnose(settings, long_txn_s=0)
        conn.rollback()
    assert pid is not None
    [held] = [c for c in checks(report, "transactions") if f"pid {pid[0]} " in c.detail]
    assert held.status is Status.FAIL and not report.ok
    assert f"database {url_db(settings)}," in held.detail and "stuck-client" in held.detail
    assert "job events after it wait" in held.detail
    after = diagnose(settings, long_txn_s=0)
    assert not [c for c in checks(after, "transactions") if f"pid {pid[0]} " in c.detail]


def test_db_upgrade_and_doctor_never_print_a_password(tmp_path: Path) -> None:
    url = pg().url(pg().create(migrated=False)).replace("postgres@", "postgres:s3cret@")
    env = {"GENQ_DATABASE_URL": url, "COLUMNS": "200"}
    upgraded = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)], env=env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "s3cret" not in upgraded.output and "postgres:***@" in upgraded.output
    doctor = CliRunner().invoke(app, ["doctor", "--data-dir", str(tmp_path)], env=env)
    assert doctor.exit_code == 0, doctor.output
    assert "s3cret" not in doctor.output and "postgres:***@" in doctor.output


def _parked_long_ago(cx: Cx, job_id: str, at: datetime) -> None:
    cx.execute(
        "INSERT INTO upstream_jobs (job_id, provider, state, upstream_id, token_hash,"
        " next_poll_at, created_at, updated_at) VALUES (%(j)s, 'vivix', 'tracking', 'g-1',"
        " 'h', %(at)s, %(at)s, %(at)s)",
        {"j": job_id, "at": cx.ts(at)},
    )


def test_upstream_jobs_nobody_tracks_warn(tmp_path: Path) -> None:
    settings = fresh(tmp_path)

    async def parked(store: Store, account: str) -> None:
        job_id = await add_job(store, account, engine="vivix/grok-imagine-image", status="running")
        await store.db.write(_parked_long_ago, job_id, utcnow() - timedelta(hours=1))

    on_store(settings, parked)
    check = only(diagnose(settings), "upstreams")
    assert check.status is Status.WARN
    assert check.detail.startswith("in flight: vivix 1")
    assert "1 upstream job not read for over 5m" in check.detail
    assert "jobs in flight at vivix, not in GENQ_UPSTREAMS" in check.detail
