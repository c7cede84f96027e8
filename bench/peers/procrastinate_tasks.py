"""The Procrastinate app and its no-op task for procrastinate_noop.py (a module of its
own, so the worker subprocess and the client import the same app)."""

from __future__ import annotations

import os
import time

import procrastinate

DSN_ENV = "PEER_PG_DSN"
POOL_ENV = "PEER_PG_POOL"
START_TABLE = "peer_starts"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get(DSN_ENV, ""),
        min_size=2,
        max_size=int(os.environ.get(POOL_ENV, "4")),
    )
)


@app.task(name="noop", pass_context=True)
async def noop(context: procrastinate.JobContext, record: bool = False) -> None:
    """The no-op job. `record`: write time.time() at start into peer_starts (only in
    the idle phase, so the throughput phase runs a true no-op)."""
    if record:
        started = time.time()
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.execute(
                f"INSERT INTO {START_TABLE} (job_id, started) VALUES (%s, %s)",
                (context.job.id, started),
            )
