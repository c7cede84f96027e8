"""Procrastinate's side of the job transactions (PostgreSQL): tokens, aborts, schema.

With Procrastinate dispatch every change that makes a genq job `queued` (create,
re-queue by the reaper, release at shutdown) also defers one Procrastinate job, a
*token* meaning "one more job of engine E is queued", into the queue named after the
engine, in the same transaction. A worker that fetches a token runs genq's own
counted claim for that engine (`JobStore.claim`), so the order (oldest first), the
per-engine limit across all workers and the per-account limit are the same as with
the built-in claim loop. There are never fewer tokens than queued jobs: each queued
transition adds one and each token takes at most one job; a token that finds no
queued job of its engine ends, one that finds the engine or the account full is
retried later by Procrastinate.

The running attempt remembers its token (`jobs.dispatch_id`), so cancelling a
running job also asks Procrastinate to abort that token: Procrastinate tells the
worker over NOTIFY and genq's task stops the engine.

Only SQL lives here; the worker side is `genq.dispatch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

TASK = "genq.take"  # Procrastinate task name of a token
PREFIX = "procrastinate_"  # Procrastinate's tables, types, functions, triggers

_DEFER = sa.text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY("
    "  SELECT ROW(q, :task, 0, NULL, NULL, jsonb_build_object('engine', q), NULL)"
    "    ::procrastinate_job_to_defer_v1"
    "  FROM unnest(CAST(:queues AS text[])) AS q))"
)
_ABORT = sa.text("SELECT procrastinate_cancel_job_v1(id, true, false) FROM unnest(:ids) AS id")
# a queued job was canceled: one spare token of its engine can go (if one is still
# waiting; a token already fetched will find nothing and end)
_DROP = sa.text(
    "DELETE FROM procrastinate_jobs WHERE id = ("
    "  SELECT id FROM procrastinate_jobs"
    "  WHERE queue_name = :queue AND task_name = :task AND status = 'todo'"
    "  ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED)"
)

# Tokens that are missing (fewer waiting or running tokens than queued jobs, e.g. after
# a token failed for good): one statement, so both counts come from one snapshot.
_TOP_UP = sa.text(
    "WITH queued AS (SELECT engine, count(*) AS n FROM jobs WHERE status = 'queued'"
    "    GROUP BY engine),"
    "  tokens AS (SELECT queue_name, count(*) AS n FROM procrastinate_jobs"
    "    WHERE task_name = :task AND status IN ('todo', 'doing') GROUP BY queue_name),"
    "  missing AS (SELECT q.engine, q.n - coalesce(t.n, 0) AS n"
    "    FROM queued q LEFT JOIN tokens t ON t.queue_name = q.engine)"
    " SELECT coalesce(cardinality(procrastinate_defer_jobs_v1(ARRAY("
    "  SELECT ROW(m.engine, :task, 0, NULL, NULL, jsonb_build_object('engine', m.engine),"
    "    NULL)::procrastinate_job_to_defer_v1"
    "  FROM missing m CROSS JOIN generate_series(1, m.n) WHERE m.n > 0))), 0)"
)


class Tokens:
    """Procrastinate tokens written inside genq's own transactions."""

    async def defer(self, conn: AsyncConnection, engines: Sequence[str]) -> None:
        """One token per queued job, `engines` holding each job's engine."""
        if engines:
            await conn.execute(_DEFER, {"task": TASK, "queues": list(engines)})

    async def abort(self, conn: AsyncConnection, dispatch_ids: Sequence[int]) -> None:
        if dispatch_ids:
            await conn.execute(_ABORT, {"ids": list(dispatch_ids)})

    async def drop(self, conn: AsyncConnection, engines: Sequence[str]) -> None:
        for engine in engines:
            await conn.execute(_DROP, {"task": TASK, "queue": engine})

    async def top_up(self, conn: AsyncConnection) -> int:
        """Defer the tokens queued jobs lack; how many."""
        return int((await conn.execute(_TOP_UP, {"task": TASK})).scalar_one())

    async def waiting(self, conn: AsyncConnection) -> dict[str, int]:
        """Tokens not yet taken, by engine (for tests and `genq doctor`)."""
        rows = await conn.execute(
            sa.text(
                "SELECT queue_name, count(*) FROM procrastinate_jobs"
                " WHERE task_name = :task AND status = 'todo' GROUP BY queue_name"
            ),
            {"task": TASK},
        )
        return {q: int(n) for q, n in rows.all()}


def is_ours(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic `include_name`: Procrastinate's objects are not genq's to compare."""
    return not (name or "").startswith(PREFIX)


def install_schema(conn: Connection) -> None:
    """Create Procrastinate's schema (the pinned version's `schema.sql`)."""
    from procrastinate.schema import SchemaManager

    # through the DB-API cursor without parameters: the script is several statements
    # and holds '%' signs that are not placeholders
    cursor = conn.connection.cursor()
    try:
        cursor.execute(SchemaManager.get_schema())
    finally:
        cursor.close()


def drop_schema(conn: Connection) -> None:
    """Remove every Procrastinate object (triggers and indexes go with their tables)."""
    for kind, catalog, column, extra in (
        ("TABLE", "pg_tables", "tablename", "schemaname = current_schema()"),
        ("TYPE", "pg_type", "typname", "typnamespace = current_schema()::regnamespace"),
    ):
        names = conn.execute(
            sa.text(f"SELECT {column} FROM {catalog} WHERE {column} LIKE :p AND {extra}"),
            {"p": PREFIX + "%"},
        ).scalars()
        for name in list(names):
            conn.exec_driver_sql(f'DROP {kind} IF EXISTS "{name}" CASCADE')
    functions = conn.execute(
        sa.text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.proname LIKE :p AND p.pronamespace = current_schema()::regnamespace"
        ),
        {"p": PREFIX + "%"},
    ).scalars()
    for signature in list(functions):
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
