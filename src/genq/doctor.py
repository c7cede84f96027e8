"""`genq doctor`: read-only checks of an installation, each `ok`, `warn` or `fail`.

It never creates a database: with none at the configured place it says where it
looked. Then: the schema against the migrations, the engines, the storage dir, the
workers (as far as the database can tell), the webhook outbox, the credits ledger,
and on PostgreSQL long transactions. The few reads the store has no function for
are written here, read-only, on the store's connections.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from genq.engines.contract import Engine
from genq.engines.registry import describe, load_engines
from genq.errors import StorageUnavailable
from genq.ids import utcnow
from genq.migrate import alembic_config, sync_url
from genq.settings import Settings
from genq.storage import storage_for
from genq.store import Store
from genq.store.db import Cx, dt_of

LONG_TXN_S = 60.0  # PostgreSQL: a transaction open longer than this is reported
OVERDUE_S = 60.0  # a webhook delivery due longer ago than this is not being sent


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str


@dataclass(slots=True)
class Report:
    database: str  # the URL, password masked
    data_dir: str
    checks: list[Check] = field(default_factory=list)
    hint: str = ""  # with no database: how to point genq at one

    @property
    def ok(self) -> bool:
        """No check failed (warnings do not count)."""
        return all(c.status is not Status.FAIL for c in self.checks)

    @property
    def found(self) -> bool:
        """A database answered at the configured place."""
        return bool(self.checks) and self.checks[0].status is not Status.FAIL

    def add(self, name: str, status: Status, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "data_dir": self.data_dir,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
            **({"hint": self.hint} if self.hint else {}),
        }


def masked(url: str) -> str:
    """`url` with any password as `***`."""
    return make_url(url).render_as_string(hide_password=True)


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    return f"{duration((now - when).total_seconds())} ago"


def n_of(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def duration(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def diagnose(settings: Settings, *, long_txn_s: float = LONG_TXN_S) -> Report:
    """Run every check against the database and data dir `settings` name (blocking)."""
    url = settings.db_url
    report = Report(database=masked(url), data_dir=str(settings.data_dir.resolve()))
    if not _database(report, url):
        return report
    if _schema(report, url):
        engines = _engines(report, settings)
        _storage(report, settings)
        asyncio.run(_with_store(report, settings, engines, long_txn_s))
    return report


# -- the database and its schema ------------------------------------------------------


def _database(report: Report, url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            report.add("database", Status.FAIL, f"no genq database at {path}")
            report.hint = (
                "genq keeps its database in the data dir: .genq in the current directory"
                " unless --data-dir or GENQ_DATA_DIR names another; GENQ_DATABASE_URL"
                " points at PostgreSQL instead. To make one there: genq db upgrade"
                f" --data-dir {report.data_dir}"
            )
            return False
        report.add("database", Status.OK, f"SQLite file {path}")
        return True
    try:
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report.add("database", Status.FAIL, f"cannot connect to {report.database}: {reason}")
        report.hint = (
            "GENQ_DATABASE_URL names the database (unset, genq uses SQLite in the data dir);"
            " a new PostgreSQL database gets its schema from genq db upgrade"
        )
        return False
    report.add("database", Status.OK, f"PostgreSQL {version[0] if version else '?'}")
    return True


def _schema(report: Report, url: str) -> bool:
    """The schema against the migrations; False when it is not genq's at all."""
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = set(script.get_heads())
    engine = sa.create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    known = {rev.revision for rev in script.walk_revisions()}
    if not current:
        report.add("schema", Status.FAIL, "no genq schema here (genq db upgrade makes it)")
        return False
    if current == heads:
        report.add("schema", Status.OK, f"at the latest migration ({', '.join(sorted(heads))})")
    elif current <= known:
        report.add(
            "schema",
            Status.FAIL,
            f"at {', '.join(sorted(current))}, the latest is {', '.join(sorted(heads))}:"
            " run genq db upgrade",
        )
    else:
        report.add(
            "schema",
            Status.FAIL,
            f"at {', '.join(sorted(current))}, which this genq does not know"
            " (migrated by a newer release?)",
        )
    return True


# -- what needs no database: engines and storage ---------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _engines(report: Report, settings: Settings) -> dict[str, Engine]:
    """Every configured engine loads and its input schema builds."""
    registry_log = logging.getLogger("genq.engines.registry")
    collect = _Collect()
    registry_log.addHandler(collect)  # a broken entry point is logged, not raised
    try:
        engines = load_engines(settings.engines)
    except Exception as exc:
        report.add("engines", Status.FAIL, str(exc))
        return {}
    finally:
        registry_log.removeHandler(collect)
    problems = list(collect.messages)
    for name, engine in engines.items():
        try:
            describe(engine)
        except Exception as exc:
            problems.append(f"{name}: its input schema does not build: {exc}")
    for problem in problems:
        report.add("engines", Status.FAIL, problem)
    if not problems:
        report.add("engines", Status.OK, f"{len(engines)} load and build their input schemas")
    return engines


def _writable(directory: Path) -> str | None:
    """Why a file cannot be made (and removed) in `directory`, or None."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".genq-doctor-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _storage(report: Report, settings: Settings) -> None:
    """Outputs and uploads can be written under the data dir (with an object store: the
    scratch copies there, and the store answers)."""
    try:
        storage = storage_for(settings.storage_url, settings.data_dir, settings.s3_endpoint_url)
    except ValueError as exc:
        report.add("storage", Status.FAIL, str(exc))
        return
    if not storage.local:
        try:
            asyncio.run(storage.backend.ping())
        except StorageUnavailable as exc:
            report.add("object store", Status.FAIL, f"{settings.storage_url}: {exc}")
            return
        report.add("object store", Status.OK, f"{settings.storage_url} answers")
    root = storage.root
    for sub in ("files", "uploads"):
        target = root / sub
        if target.exists() and not target.is_dir():
            report.add("storage", Status.FAIL, f"{target} is not a directory")
            return
        existing = target
        while not existing.is_dir() and existing != existing.parent:
            existing = existing.parent
        problem = _writable(existing)
        if problem:
            report.add("storage", Status.FAIL, f"cannot write in {existing}: {problem}")
            return
    later = [f"{s}/" for s in ("files", "uploads") if not (root / s).is_dir()]
    note = f" ({' and '.join(later)} made on first use)" if later else ""
    report.add("storage", Status.OK, f"{root} is writable{note}")


# -- what the database tells ------------------------------------------------------------


async def _with_store(
    report: Report, settings: Settings, engines: Mapping[str, Engine], long_txn_s: float
) -> None:
    store = Store(settings.db_url, pool_size=2, readers=1)
    now = utcnow()
    checks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("workers", lambda: _workers(report, store, settings, now)),
        ("queue", lambda: _queue(report, store, engines, now)),
        ("webhooks", lambda: _webhooks(report, store, now)),
        ("ledger", lambda: _ledger(report, store)),
        ("upstreams", lambda: _upstreams(report, store, settings, now)),
    ]
    if store.db.is_postgres:
        checks.append(("transactions", lambda: _transactions(report, store, long_txn_s)))
    try:
        for name, check in checks:
            try:
                await check()
            except Exception as exc:  # a check that cannot run is a failed check
                report.add(name, Status.FAIL, f"could not check: {exc}")
    finally:
        await store.close()


def _lease_state(cx: Cx, stale_before: datetime) -> tuple[int, int, int, Any]:
    row = cx.one(
        "SELECT count(*), count(DISTINCT lease_owner),"
        " coalesce(sum(CASE WHEN lease_expires_at < %(stale)s THEN 1 ELSE 0 END), 0),"
        " min(lease_expires_at) FROM jobs WHERE status IN ('starting', 'running')",
        {"stale": cx.ts(stale_before)},
    )
    return int(row[0]), int(row[1]), int(row[2]), row[3]


def _last_event_at(cx: Cx) -> Any:
    return cx.scalar("SELECT created_at FROM job_events ORDER BY id DESC LIMIT 1")


def _genq_sessions(cx: Cx, own: str) -> list[str]:
    rows = cx.all(
        "SELECT DISTINCT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'genq/%%'"
        " AND application_name <> %(own)s",
        {"own": own},
    )
    return sorted(r[0] for r in rows)


async def _workers(report: Report, store: Store, settings: Settings, now: datetime) -> None:
    """Running jobs whose lease lapsed long ago mean nobody reaps (reapers run in every
    worker); an idle worker leaves no trace, so its absence cannot be seen here."""
    stale_s = max(60.0, settings.lease_s + 3 * settings.reaper_interval_s)
    running, owners, lapsed, oldest = await store.db.read(
        _lease_state, now - timedelta(seconds=stale_s)
    )
    last = dt_of(await store.db.read(_last_event_at))
    seen = f"last job change {ago(last, now)}" if last else "no job yet"
    if store.db.is_postgres:
        sessions = await store.db.read(_genq_sessions, store.db.origin)
        seen += f"; {n_of(len(sessions), 'other genq process')} connected"
    if lapsed:
        report.add(
            "workers",
            Status.FAIL,
            f"the lease of {lapsed} of {n_of(running, 'running job')} lapsed over"
            f" {duration(stale_s)} ago (the oldest {ago(dt_of(oldest), now)}): no worker is"
            f" reaping; is a genq serve or genq worker running on this database? {seen}",
        )
    elif running:
        report.add(
            "workers",
            Status.OK,
            f"{n_of(running, 'job')} running under {n_of(owners, 'worker')}, leases current;"
            f" {seen}",
        )
    else:
        report.add(
            "workers",
            Status.OK,
            f"no job running (an idle worker leaves no trace, so whether one is up cannot"
            f" be told from the database); {seen}",
        )


def _upstream_state(cx: Cx, overdue_before: datetime) -> tuple[dict[str, int], int]:
    parked = (
        "FROM upstream_jobs u JOIN jobs j ON j.id = u.job_id WHERE u.state IN"
        " ('intent', 'tracking') AND j.status IN ('starting', 'running')"
    )
    rows = cx.all(f"SELECT u.provider, count(*) {parked} GROUP BY u.provider")
    overdue = cx.scalar(
        f"SELECT count(*) {parked} AND u.next_poll_at < %(t)s"
        " AND (u.leased_until IS NULL OR u.leased_until < %(t)s)",
        {"t": cx.ts(overdue_before)},
    )
    return {p: int(n) for p, n in rows}, int(overdue)


async def _upstreams(report: Report, store: Store, settings: Settings, now: datetime) -> None:
    """Jobs parked at upstream services, and whether a tracker follows them (a read due
    long ago means no process with GENQ_UPSTREAMS runs on this database)."""
    late_s = max(300.0, 3 * settings.upstream_lease_s)
    in_flight, overdue = await store.db.read(_upstream_state, now - timedelta(seconds=late_s))
    configured = sorted(settings.upstreams)
    unconfigured = sorted(set(in_flight) - set(configured))
    shown = ", ".join(f"{p} {n}" for p, n in sorted(in_flight.items())) or "none"
    if overdue or unconfigured:
        why = []
        if overdue:
            why.append(
                f"{n_of(overdue, 'upstream job')} not read for over {duration(late_s)}: is a"
                " genq serve or genq worker with GENQ_UPSTREAMS running on this database?"
            )
        if unconfigured:
            why.append(f"jobs in flight at {', '.join(unconfigured)}, not in GENQ_UPSTREAMS")
        report.add("upstreams", Status.WARN, f"in flight: {shown}; " + "; ".join(why))
        return
    where = ", ".join(configured) if configured else "no providers configured"
    report.add("upstreams", Status.OK, f"{where}; in flight: {shown}")


def _queued(cx: Cx) -> tuple[int, Any]:
    row = cx.one("SELECT count(*), min(created_at) FROM jobs WHERE status = 'queued'")
    return int(row[0]), row[1]


async def _queue(
    report: Report, store: Store, engines: Mapping[str, Engine], now: datetime
) -> None:
    """Queued jobs and their age; running jobs per engine against its concurrency."""
    queued, oldest = await store.db.read(_queued)
    counts = await store.jobs.status_counts()
    active: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for (status, engine), n in counts.items():
        bucket = waiting if status == "queued" else active
        bucket[engine] = bucket.get(engine, 0) + n
    parts = [f"{queued} queued" + (f", oldest {ago(dt_of(oldest), now)}" if queued else "")]
    parts += [
        f"{name} {n}/{engines[name].concurrency if name in engines else '?'} running"
        for name, n in sorted(active.items())
    ]
    status = Status.OK
    over = [n for n, k in active.items() if n in engines and k > engines[n].concurrency]
    unserved = sorted(n for n in waiting if n not in engines)
    if over:
        status = Status.WARN
        parts.append(f"over their concurrency: {', '.join(sorted(over))}")
    if unserved:
        status = Status.WARN
        parts.append(f"queued for engines this configuration does not load: {', '.join(unserved)}")
    if queued and not active and oldest is not None:
        age = (now - (dt_of(oldest) or now)).total_seconds()
        if age > OVERDUE_S:
            status = Status.WARN
            parts.append("nothing running: are workers up for these engines?")
    report.add("queue", status, "; ".join(parts))


def _outbox(cx: Cx, late: datetime) -> tuple[int, Any, int, int]:
    row = cx.one(
        "SELECT count(*), min(created_at),"
        " coalesce(sum(CASE WHEN next_attempt_at < %(late)s THEN 1 ELSE 0 END), 0)"
        " FROM webhook_deliveries WHERE status = 'pending'",
        {"late": cx.ts(late)},
    )
    failed = cx.scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
    return int(row[0]), row[1], int(row[2]), int(failed)


async def _webhooks(report: Report, store: Store, now: datetime) -> None:
    """The outbox's backlog. Retries wait hours by design; a delivery long overdue
    means no sender (one runs in every genq serve) is draining it."""
    pending, oldest, overdue, failed = await store.db.read(
        _outbox, now - timedelta(seconds=OVERDUE_S)
    )
    detail = f"{pending} pending" + (f", oldest {ago(dt_of(oldest), now)}" if pending else "")
    detail += f"; {failed} given up after every retry"
    if overdue:
        report.add(
            "webhooks",
            Status.WARN,
            f"{detail}; {overdue} overdue by over {duration(OVERDUE_S)}: is a genq serve running?",
        )
    else:
        report.add("webhooks", Status.OK, detail)


async def _ledger(report: Report, store: Store) -> None:
    """Every finished job's hold equals its capture plus release, and every balance
    equals its ledger."""
    problems = await store.ledger.audit()
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        report.add("ledger", Status.FAIL, shown)
    else:
        report.add("ledger", Status.OK, "every hold is settled and every balance matches")


def _long_transactions(cx: Cx, older_s: float) -> list[tuple[Any, ...]]:
    # A transaction with an xid, in any database of the server, holds back the event
    # watermark (the oldest running xid, see genq.store.jobs); others only vacuum.
    return cx.all(
        "SELECT pid, datname, application_name, state, backend_xid IS NOT NULL,"
        " extract(epoch FROM now() - xact_start)::float, left(query, 60)"
        " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        " AND xact_start < now() - make_interval(secs => %(s)s)"
        " AND (datname = current_database() OR backend_xid IS NOT NULL)"
        " ORDER BY xact_start",
        {"s": older_s},
    )


async def _transactions(report: Report, store: Store, older_s: float) -> None:
    """Transactions open longer than `older_s`: one that wrote holds back the event
    watermark, so no process sees job events after it until it ends."""
    rows = await store.db.read(_long_transactions, older_s)
    if not rows:
        report.add("transactions", Status.OK, f"none open longer than {duration(older_s)}")
        return
    for pid, db, app, state, writes, age_s, query in rows:
        who = f"pid {pid} ({app or 'no application name'}, database {db}, {state})"
        if writes:
            report.add(
                "transactions",
                Status.FAIL,
                f"{who} has written in a transaction open {duration(age_s)}: job events"
                f" after it wait (streams, webhooks, other processes' caches): {query}",
            )
        else:
            report.add(
                "transactions",
                Status.WARN,
                f"{who} has a transaction open {duration(age_s)} (holds back vacuum): {query}",
            )
