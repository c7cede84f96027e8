"""Peer benchmark: the same no-op job as genq's e2e.py on Procrastinate alone
(PostgreSQL), in its own venv (`make -C bench peer-procrastinate`).

    peers/procrastinate/.venv/bin/python peers/procrastinate_noop.py \
        [--jobs 1000] [--clients 32] [--concurrency 16] [--time-limit 120]

1. A fresh database bench_procrastinate_<pid> on 127.0.0.1:5432 (BENCH_PG), its schema
   applied with `procrastinate schema --apply`; dropped at the end, always.
2. One worker subprocess: `python -m procrastinate --app procrastinate_tasks.app worker
   --concurrency 16 --delete-jobs never` (LISTEN/NOTIFY on, the default).
3. Throughput: --clients concurrent clients (asyncio tasks sharing one App, whose pool
   has a connection per client), each deferring one job with `defer_async()` and then
   waiting for its end by polling `app.job_manager.get_job_status_async(id)` every
   --poll-ms (Procrastinate has no result channel; this is what a client of it does),
   taking tickets from one counter until exactly --jobs jobs are done. jobs/s = jobs
   / (last observed completion - first defer). Also reported: the database's own span
   (first `deferred` event to last `succeeded` event in procrastinate_events), which
   does not depend on the polling interval.
4. Idle: --idle-jobs jobs one at a time (after a --idle-gap pause each). Submit-to-
   start = the task's own time.time() (written into a table by the task) - the
   client's time.time() just before defer; also the events table's
   `started.at - deferred.at` (the same measure as genq's started_at - created_at).

Results: out/peer_procrastinate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procrastinate_tasks import DSN_ENV, POOL_ENV, START_TABLE, app, noop
from peer_common import HERE, OUT, PG, loadavg, machine, pg_version, stats_ms, stop_worker


# ---------------------------------------------------------------------------- phases


async def one_job(poll_s: float, deadline: float, record: bool) -> dict[str, Any]:
    t_submit = time.time()
    m0 = time.monotonic()
    job_id = await noop.defer_async(record=record)
    while True:
        status = await app.job_manager.get_job_status_async(job_id)
        if status.value in ("succeeded", "failed", "cancelled", "aborted"):
            break
        if time.monotonic() > deadline:
            return {"id": job_id, "error": "time limit"}
        await asyncio.sleep(poll_s)
    m1 = time.monotonic()
    return {"id": job_id, "status": status.value, "t_submit": t_submit, "m_submit": m0,
            "m_observed": m1, "submit_to_observed_s": m1 - m0}


async def throughput(jobs: int, clients: int, poll_s: float,
                     time_limit: float) -> tuple[list[dict[str, Any]], float]:
    results: list[dict[str, Any]] = []
    tickets = iter(range(jobs))
    deadline = time.monotonic() + time_limit

    async def client() -> None:
        for _ in tickets:
            if time.monotonic() > deadline:
                return
            results.append(await one_job(poll_s, deadline, record=False))

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))),
                           time_limit + 30)
    return results, time.monotonic() - t0


async def idle(jobs: int, gap_s: float, poll_s: float,
               time_limit: float) -> list[dict[str, Any]]:
    results = []
    deadline = time.monotonic() + time_limit
    for _ in range(jobs):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(gap_s)
        results.append(await one_job(poll_s, deadline, record=True))
    return results


async def events_for(dsn: str, ids: list[int]) -> dict[int, dict[str, float]]:
    """{job id: {event type: epoch seconds}} from procrastinate_events."""
    out: dict[int, dict[str, float]] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT job_id, type::text, extract(epoch FROM at)::float8 "
            "FROM procrastinate_events WHERE job_id = ANY(%s)", (ids,))
        for job_id, typ, at in await cur.fetchall():
            out.setdefault(job_id, {})[typ] = at
    return out


async def bench(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    poll_s = args.poll_ms / 1000
    pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=4, max_size=args.clients + 2,
                                            open=False)
    await pool.open(wait=True)
    async with pool, app.open_async(pool=pool):
        # warm-up: imports, connections, the worker's first fetches
        await idle(3, 0, poll_s, 30)
        print(f"[procrastinate] throughput: {args.jobs} jobs, {args.clients} clients, "
              f"poll {args.poll_ms} ms", flush=True)
        load0 = loadavg()
        tp, _ = await throughput(args.jobs, args.clients, poll_s, args.time_limit)
        load1 = loadavg()
        ok = [r for r in tp if "error" not in r]
        span = (max(r["m_observed"] for r in ok) - min(r["m_submit"] for r in ok)) if ok else 0
        ev = await events_for(dsn, [r["id"] for r in ok])
        deferred = [e["deferred"] for e in ev.values() if "deferred" in e]
        done = [e["succeeded"] for e in ev.values() if "succeeded" in e]
        db_span = (max(done) - min(deferred)) if deferred and done else None
        tp_sum = {
            "jobs": len(ok),
            "succeeded": sum(1 for r in ok if r["status"] == "succeeded"),
            "errors": len(tp) - len(ok),
            "wall_s": round(span, 3),
            "jobs_per_s": round(len(ok) / span, 1) if span > 0 else None,
            "db_span_s": round(db_span, 3) if db_span else None,
            "db_jobs_per_s": round(len(done) / db_span, 1) if db_span else None,
            "submit_to_start_db": stats_ms([e["started"] - e["deferred"] for e in ev.values()
                                            if "started" in e and "deferred" in e]),
            "submit_to_observed_completion": stats_ms([r["submit_to_observed_s"]
                                                       for r in ok]),
            "loadavg_before": load0, "loadavg_after": load1,
        }
        print(f"[procrastinate] {tp_sum['jobs_per_s']} jobs/s observed by clients, "
              f"{tp_sum['db_jobs_per_s']} jobs/s in the events table; under load "
              f"deferred->started p50 {tp_sum['submit_to_start_db']['p50_ms']} ms", flush=True)

        print(f"[procrastinate] idle: {args.idle_jobs} jobs one at a time", flush=True)
        idle_res = await idle(args.idle_jobs, args.idle_gap, poll_s, args.time_limit)
        ids = [r["id"] for r in idle_res if "error" not in r]
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cur = await conn.execute(f"SELECT job_id, started FROM {START_TABLE} "
                                     "WHERE job_id = ANY(%s)", (ids,))
            started = dict(await cur.fetchall())
        ev = await events_for(dsn, ids)
        idle_sum = {
            "jobs": len(ids),
            "submit_to_start": stats_ms([started[r["id"]] - r["t_submit"] for r in idle_res
                                         if r["id"] in started]),
            "submit_to_start_db": stats_ms([e["started"] - e["deferred"] for e in ev.values()
                                            if "started" in e and "deferred" in e]),
            "submit_to_observed_completion": stats_ms([r["submit_to_observed_s"]
                                                       for r in idle_res if "error" not in r]),
        }
        print(f"[procrastinate] idle submit->start (task clock) p50 "
              f"{idle_sum['submit_to_start']['p50_ms']} ms p99 "
              f"{idle_sum['submit_to_start']['p99_ms']} ms", flush=True)
    return {"throughput": tp_sum, "idle": idle_sum}


def start_worker(dsn: str, args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, DSN_ENV: dsn, POOL_ENV: str(args.concurrency + 2),
           "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "procrastinate", "--app", "procrastinate_tasks.app",
           "worker", "--concurrency", str(args.concurrency), "--delete-jobs", "never"]
    with log.open("wb") as f:
        return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--time-limit", type=float, default=120, help="seconds per phase")
    p.add_argument("--poll-ms", type=float, default=20,
                   help="a waiting client's status poll interval")
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--idle-gap", type=float, default=0.05)
    p.add_argument("--out", default="peer_procrastinate.json")
    args = p.parse_args()

    db = f"bench_procrastinate_{os.getpid()}"
    dsn = f"{PG}/{db}"
    load_before = loadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "logs").mkdir(exist_ok=True)
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    worker = None
    try:
        env = {**os.environ, DSN_ENV: dsn, "PYTHONPATH": str(HERE)}
        subprocess.run([sys.executable, "-m", "procrastinate", "--app",
                        "procrastinate_tasks.app", "schema", "--apply"],
                       cwd=HERE, env=env, check=True, timeout=120, capture_output=True)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {START_TABLE} (job_id bigint PRIMARY KEY, "
                         "started float8 NOT NULL)")
        worker = start_worker(dsn, args, OUT / "logs" / "peer_procrastinate_worker.log")
        time.sleep(2)
        if worker.poll() is not None:
            raise RuntimeError("the procrastinate worker exited; see "
                               "out/logs/peer_procrastinate_worker.log")
        result = asyncio.run(bench(dsn, args))
        server = pg_version(dsn)
    finally:
        if worker is not None:
            stop_worker(worker)
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    tp = result["throughput"]
    out = {
        "peer": "procrastinate",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": tp["jobs"],
        "wall_s": tp["wall_s"],
        "jobs_per_s": tp["jobs_per_s"],
        "idle_submit_to_start": result["idle"]["submit_to_start"],
        **result,
        "worker": (f"python -m procrastinate worker --concurrency {args.concurrency} "
                   f"--delete-jobs never (listen/notify on), pool max {args.concurrency + 2}"),
        "client": (f"{args.clients} asyncio clients in one process, one App, pool max "
                   f"{args.clients + 2}; wait = poll get_job_status_async every "
                   f"{args.poll_ms} ms"),
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": loadavg()},
        "versions": {"procrastinate": version("procrastinate"), "psycopg": version("psycopg"),
                     "psycopg_pool": version("psycopg-pool"), "postgresql": server},
        "params": {k: getattr(args, k) for k in ("jobs", "clients", "concurrency",
                                                 "time_limit", "poll_ms", "idle_jobs",
                                                 "idle_gap")},
    }
    path = OUT / args.out
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
