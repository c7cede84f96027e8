"""The PgQueuer worker factory and its no-op entrypoint for pgqueuer_noop.py (a module
of its own, which the worker subprocess `pgq run pgqueuer_tasks:create_worker` imports,
and whose open_queries() the client uses too).

The factory opens one database connection (asyncpg, or psycopg in autocommit as
PgQueuer requires it; PEER_PGQ_DRIVER) and yields a QueueManager on it. The no-op job
only appends "<job id> <time.time()>" to the file named by PEER_STARTS_FILE
(line-buffered: one write() per job, no database work), so that the client can measure
submit-to-start on the task's own clock in both phases."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pgqueuer import Job, Queries, QueueManager

DSN_ENV = "PEER_PG_DSN"
DRIVER_ENV = "PEER_PGQ_DRIVER"
STARTS_ENV = "PEER_STARTS_FILE"
DRIVERS = ("asyncpg", "psycopg")
ENTRYPOINT = "noop"


@asynccontextmanager
async def open_queries(driver: str, dsn: str) -> AsyncIterator[Queries]:
    """PgQueuer's Queries on one new connection of the given driver, closed at exit."""
    if driver == "asyncpg":
        import asyncpg

        aconn = await asyncpg.connect(dsn)
        try:
            yield Queries.from_asyncpg_connection(aconn)
        finally:
            await aconn.close()
    elif driver == "psycopg":
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as pconn:
            yield Queries.from_psycopg_connection(pconn)
    else:
        raise ValueError(f"driver must be one of {DRIVERS}, not {driver!r}")


@asynccontextmanager
async def create_worker() -> AsyncIterator[QueueManager]:
    async with open_queries(os.environ.get(DRIVER_ENV, "asyncpg"),
                            os.environ[DSN_ENV]) as queries:
        qm = QueueManager(queries)
        # opened once, at start-up, before any job
        with open(os.environ[STARTS_ENV], "a", buffering=1) as starts:  # noqa: ASYNC230

            @qm.entrypoint(ENTRYPOINT)
            async def noop(job: Job) -> None:
                """The no-op job: its start time, and nothing else."""
                starts.write(f"{job.id} {time.time()!r}\n")

            yield qm
