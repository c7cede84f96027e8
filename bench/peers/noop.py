"""Peers for bench/scale_out.py: the same no-op job on Procrastinate alone (PostgreSQL)
and on Celery with Redis, each in its own virtual environment (`make -C bench peers`).

    peers/.venv-procrastinate/bin/python peers/noop.py procrastinate [--jobs 1000]
    peers/.venv-celery/bin/python peers/noop.py celery [--jobs 1000]

Like scale_out.py: 32 clients, each submitting a job and waiting for its end, N jobs
in all (jobs/s = N / wall time), then 50 jobs one at a time on the idle system for
submit-to-start. One worker process with concurrency 16. Waiting for the end:
Procrastinate has no result channel, so a client polls the job's status every 20 ms
(a fair stand-in for genq's long-poll on one machine); Celery's client waits on its
Redis result backend (`AsyncResult.get`, pub/sub). Start time: written by the task
itself (time.time() when it runs). Procrastinate uses a fresh database
bench_peer_<pid> (dropped at the end); Celery uses Redis db 5 (flushed before and
after). Results: out/peer_<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/5")
DB = f"bench_peer_{os.getpid()}"


def stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    v = sorted(values)
    return {
        "n": len(v),
        "p50_ms": round(statistics.median(v) * 1000, 1),
        "p99_ms": round(v[min(len(v) - 1, int(len(v) * 0.99))] * 1000, 1),
    }


# -- Procrastinate --------------------------------------------------------------------


def procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", pass_context=True)
    async def noop(context: Any) -> None:
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.execute(
                "INSERT INTO peer_starts (job_id, started) VALUES (%s, %s)",
                (context.job.id, time.time()),
            )

    return app


async def procrastinate_run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    dsn = f"{PG}/{DB}"
    app = procrastinate_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute("CREATE TABLE peer_starts (job_id bigint, started float8)")
        worker = subprocess.Popen(
            [sys.executable, __file__, "procrastinate-worker", "--dsn", dsn,
             "--concurrency", str(args.concurrency)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(2)
            submitted: dict[int, float] = {}
            noop = app.tasks["noop"]

            async def one(conn: Any) -> None:
                t0 = time.time()
                job_id = await noop.defer_async()
                submitted[job_id] = t0
                while True:
                    cur = await conn.execute(
                        "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
                    )
                    row = await cur.fetchone()
                    if row and row[0] in ("succeeded", "failed"):
                        return
                    await asyncio.sleep(0.02)

            async def client(n: int, deadline: float) -> None:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
                    for _ in range(n):
                        if time.monotonic() > deadline:
                            return
                        await one(c)

            async def phase(clients: int, per: int, gap: float = 0) -> tuple[float, list[int]]:
                before = set(submitted)
                deadline = time.monotonic() + args.time_limit
                t0 = time.monotonic()
                if gap:
                    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
                        for _ in range(per):
                            await asyncio.sleep(gap)
                            await one(c)
                else:
                    await asyncio.gather(*(client(per, deadline) for _ in range(clients)))
                return time.monotonic() - t0, [j for j in submitted if j not in before]

            await phase(1, 3)  # warm-up
            wall, ids = await phase(args.clients, args.jobs // args.clients)
            _, idle_ids = await phase(1, args.idle_jobs, gap=0.05)
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                cur = await conn.execute("SELECT job_id, started FROM peer_starts")
                started = dict(await cur.fetchall())
        finally:
            worker.terminate()
            worker.wait(30)
    return {
        "jobs": len(ids),
        "wall_s": round(wall, 2),
        "jobs_per_s": round(len(ids) / wall, 1),
        "submit_to_start_load": stats([started[j] - submitted[j] for j in ids if j in started]),
        "idle_submit_to_start": stats(
            [started[j] - submitted[j] for j in idle_ids if j in started]
        ),
        "versions": {"procrastinate": version("procrastinate"), "psycopg": version("psycopg")},
        "worker": f"procrastinate worker, concurrency {args.concurrency}",
    }


def procrastinate_worker(dsn: str, concurrency: int) -> None:
    app = procrastinate_app(dsn)

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=concurrency, delete_jobs="never")

    asyncio.run(main())


# -- Celery ---------------------------------------------------------------------------


def celery_app() -> Any:
    from celery import Celery

    app = Celery("peer", broker=REDIS, backend=REDIS)
    app.conf.update(task_acks_late=False, worker_prefetch_multiplier=4,
                    result_expires=600, broker_connection_retry_on_startup=True)

    @app.task(name="noop")
    def noop() -> float:
        return time.time()

    return app


def celery_run(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(REDIS)
    r.flushdb()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "noop:APP", "worker", "--pool", "threads",
         "--concurrency", str(args.concurrency), "--loglevel", "warning", "--without-gossip",
         "--without-mingle", "--without-heartbeat"],
        cwd=HERE, env={**os.environ, "PEER_CELERY_WORKER": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    app = celery_app()
    noop = app.tasks["noop"]
    lock = threading.Lock()
    try:
        time.sleep(4)

        def one() -> tuple[float, float]:
            t0 = time.time()
            started = float(noop.delay().get(timeout=60))
            return t0, started

        def client(n: int, out: list[tuple[float, float]], deadline: float) -> None:
            for _ in range(n):
                if time.monotonic() > deadline:
                    return
                res = one()
                with lock:
                    out.append(res)

        for _ in range(3):
            one()  # warm-up
        load: list[tuple[float, float]] = []
        deadline = time.monotonic() + args.time_limit
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            for f in [pool.submit(client, args.jobs // args.clients, load, deadline)
                      for _ in range(args.clients)]:
                f.result()
        wall = time.monotonic() - t0
        idle = []
        for _ in range(args.idle_jobs):
            time.sleep(0.05)
            idle.append(one())
    finally:
        worker.terminate()
        worker.wait(30)
        r.flushdb()
    return {
        "jobs": len(load),
        "wall_s": round(wall, 2),
        "jobs_per_s": round(len(load) / wall, 1),
        "submit_to_start_load": stats([s - t for t, s in load]),
        "idle_submit_to_start": stats([s - t for t, s in idle]),
        "versions": {"celery": version("celery"), "redis": version("redis")},
        "worker": f"celery worker --pool threads --concurrency {args.concurrency}",
    }


APP = celery_app() if os.environ.get("PEER_CELERY_WORKER") == "1" else None


# -- main -----------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("peer", choices=["procrastinate", "celery", "procrastinate-worker"])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--time-limit", type=float, default=180)
    p.add_argument("--dsn", default="")
    args = p.parse_args()
    if args.peer == "procrastinate-worker":
        procrastinate_worker(args.dsn, args.concurrency)
        return 0
    load_before = os.getloadavg()[0]
    if args.peer == "procrastinate":
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DB}")
        try:
            result = asyncio.run(procrastinate_run(args))
        finally:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    else:
        result = celery_run(args)
    result.update(
        peer=args.peer,
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        machine={"nproc": os.cpu_count(), "python": platform.python_version(),
                 "loadavg_before": round(load_before, 2),
                 "loadavg_after": round(os.getloadavg()[0], 2)},
        params={"jobs": args.jobs, "clients": args.clients, "concurrency": args.concurrency,
                "idle_jobs": args.idle_jobs},
    )
    OUT.mkdir(exist_ok=True)
    path = OUT / f"peer_{args.peer}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("peer", "jobs_per_s", "submit_to_start_load",
                                              "idle_submit_to_start")}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
