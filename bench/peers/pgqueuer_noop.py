"""Peer benchmark: the same no-op job as genq's e2e.py on PgQueuer alone (PostgreSQL),
in its own venv (`make -C bench peer-pgqueuer`).

    peers/pgqueuer/.venv/bin/python peers/pgqueuer_noop.py \
        [--jobs 1000] [--clients 32] [--concurrency 16] [--time-limit 120] \
        [--driver asyncpg|psycopg]

--driver: the database driver of the worker and of the clients. asyncpg (the default)
is the one PgQueuer's own CLI tries first. With psycopg, PgQueuer's worker listens and
queries on one connection, and psycopg's notifies() holds that connection's lock while
it waits (up to 1 s a wait), so a query issued meanwhile waits for the next
notification or for that second: a few jobs/s and 1-2 s idle starts on this machine.

1. A fresh database bench_pgqueuer_<pid> on 127.0.0.1:5432 (BENCH_PG), its schema
   installed with `pgq install`; dropped at the end, always.
2. One worker subprocess: `python -m pgqueuer run pgqueuer_tasks:create_worker
   --max-concurrent-tasks 16 --batch-size 8` (a QueueManager on one connection;
   LISTEN/NOTIFY wakes it, the default). --max-concurrent-tasks is PgQueuer's cap on
   the jobs one worker holds, i.e. --concurrency; it must be at least twice the batch
   size, so the batch is min(10 (PgQueuer's default), concurrency // 2).
3. Throughput: --clients concurrent clients (asyncio tasks in one process, a
   connection and a `Queries` each), each enqueueing one job with `Queries.enqueue()`
   and then waiting for its end with PgQueuer's own completion tracking: one shared
   `CompletionWatcher` (LISTEN on the queue table's change channel; a burst of
   notifications is coalesced into one status query per --debounce-ms window, the
   status being the job's last row in pgqueuer_log; a 5 s poll as a safety net). Its
   listening connection and its status queries use separate connections, so a query
   never waits behind the listener. Clients take tickets from one counter until exactly
   --jobs jobs are done. jobs/s = jobs / (last observed completion - first enqueue).
   Also reported: the database's own span (first `queued` to last `successful` row in
   pgqueuer_log), which does not depend on the watcher, and submit-to-start under load
   as in 4.
4. Idle: --idle-jobs jobs one at a time (after an --idle-gap pause each).
   Submit-to-start = the task's own time.time() (appended to a file by the task) - the
   client's time.time() just before enqueue(); also pgqueuer_log's `picked.created -
   queued.created` (the same measure as genq's started_at - created_at).

The worker records a finished job in pgqueuer_log through a buffer flushed every
~0.1 s or every batch-size jobs (PgQueuer's design); that delay is part of what a
client observes. Results: out/peer_pgqueuer.json (out/peer_pgqueuer_psycopg.json
with --driver psycopg).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from pgqueuer import Queries
from pgqueuer.core.completion import CompletionWatcher

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgqueuer_tasks import DRIVER_ENV, DRIVERS, DSN_ENV, ENTRYPOINT, STARTS_ENV, open_queries
from peer_common import HERE, OUT, PG, loadavg, machine, pg_version, stats_ms, stop_worker


def read_starts(path: Path) -> dict[int, float]:
    """{job id: the task's time.time() at start} from the worker's starts file."""
    out: dict[int, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[int(parts[0])] = float(parts[1])
    return out


# ---------------------------------------------------------------------------- phases


async def one_job(q: Queries, watcher: CompletionWatcher,
                  deadline: float) -> dict[str, Any]:
    t_submit = time.time()
    m0 = time.monotonic()
    (job_id,) = await q.enqueue(ENTRYPOINT, None)
    try:
        status = await asyncio.wait_for(watcher.wait_for(job_id),
                                        max(0.1, deadline - time.monotonic()))
    except TimeoutError:
        return {"id": job_id, "error": "time limit"}
    m1 = time.monotonic()
    return {"id": job_id, "status": status, "t_submit": t_submit, "m_submit": m0,
            "m_observed": m1, "submit_to_observed_s": m1 - m0}


async def throughput(queries: list[Queries], watcher: CompletionWatcher, jobs: int,
                     time_limit: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    tickets = iter(range(jobs))
    deadline = time.monotonic() + time_limit

    async def client(q: Queries) -> None:
        for _ in tickets:
            if time.monotonic() > deadline:
                return
            results.append(await one_job(q, watcher, deadline))

    await asyncio.wait_for(asyncio.gather(*(client(q) for q in queries)), time_limit + 30)
    return results


async def idle(q: Queries, watcher: CompletionWatcher, jobs: int, gap_s: float,
               time_limit: float) -> list[dict[str, Any]]:
    results = []
    deadline = time.monotonic() + time_limit
    for _ in range(jobs):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(gap_s)
        results.append(await one_job(q, watcher, deadline))
    return results


async def log_for(dsn: str, ids: list[int]) -> dict[int, dict[str, float]]:
    """{job id: {status: epoch seconds}} from pgqueuer_log."""
    out: dict[int, dict[str, float]] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT job_id, status::text, extract(epoch FROM created)::float8 "
            "FROM pgqueuer_log WHERE job_id = ANY(%s)", (ids,))
        for job_id, status, at in await cur.fetchall():
            out.setdefault(job_id, {})[status] = at
    return out


def start_delays(log: dict[int, dict[str, float]]) -> list[float]:
    return [e["picked"] - e["queued"] for e in log.values() if "picked" in e and "queued" in e]


async def bench(dsn: str, args: argparse.Namespace, starts_file: Path) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        queries = [await stack.enter_async_context(open_queries(args.driver, dsn))
                   for _ in range(args.clients + 2)]
        listen = await stack.enter_async_context(queries.pop().driver)
        watcher = await stack.enter_async_context(CompletionWatcher(
            listen, queries=queries.pop(), debounce=timedelta(milliseconds=args.debounce_ms)))

        # warm-up: imports, connections, the worker's first fetches
        await idle(queries[0], watcher, 3, 0, 30)
        print(f"[pgqueuer {args.driver}] throughput: {args.jobs} jobs, {args.clients} clients, "
              f"completion watcher debounce {args.debounce_ms} ms", flush=True)
        load0 = loadavg()
        tp = await throughput(queries, watcher, args.jobs, args.time_limit)
        load1 = loadavg()
        ok = [r for r in tp if "error" not in r]
        span = (max(r["m_observed"] for r in ok) - min(r["m_submit"] for r in ok)) if ok else 0
        log = await log_for(dsn, [r["id"] for r in ok])
        queued = [e["queued"] for e in log.values() if "queued" in e]
        done = [e["successful"] for e in log.values() if "successful" in e]
        db_span = (max(done) - min(queued)) if queued and done else None
        started = read_starts(starts_file)
        tp_sum = {
            "jobs": len(ok),
            "succeeded": sum(1 for r in ok if r["status"] == "successful"),
            "errors": len(tp) - len(ok),
            "wall_s": round(span, 3),
            "jobs_per_s": round(len(ok) / span, 1) if span > 0 else None,
            "db_span_s": round(db_span, 3) if db_span else None,
            "db_jobs_per_s": round(len(done) / db_span, 1) if db_span else None,
            "submit_to_start": stats_ms([started[r["id"]] - r["t_submit"] for r in ok
                                         if r["id"] in started]),
            "submit_to_start_db": stats_ms(start_delays(log)),
            "submit_to_observed_completion": stats_ms([r["submit_to_observed_s"]
                                                       for r in ok]),
            "loadavg_before": load0, "loadavg_after": load1,
        }
        print(f"[pgqueuer {args.driver}] {tp_sum['jobs_per_s']} jobs/s observed by clients, "
              f"{tp_sum['db_jobs_per_s']} jobs/s in pgqueuer_log; under load "
              f"submit->start (task clock) p50 {tp_sum['submit_to_start']['p50_ms']} ms "
              f"p99 {tp_sum['submit_to_start']['p99_ms']} ms", flush=True)

        print(f"[pgqueuer {args.driver}] idle: {args.idle_jobs} jobs one at a time", flush=True)
        idle_res = await idle(queries[0], watcher, args.idle_jobs, args.idle_gap,
                              args.time_limit)
        iok = [r for r in idle_res if "error" not in r]
        log = await log_for(dsn, [r["id"] for r in iok])
        started = read_starts(starts_file)
        idle_sum = {
            "jobs": len(iok),
            "errors": len(idle_res) - len(iok),
            "submit_to_start": stats_ms([started[r["id"]] - r["t_submit"] for r in iok
                                         if r["id"] in started]),
            "submit_to_start_db": stats_ms(start_delays(log)),
            "submit_to_observed_completion": stats_ms([r["submit_to_observed_s"]
                                                       for r in iok]),
        }
        print(f"[pgqueuer {args.driver}] idle submit->start (task clock) p50 "
              f"{idle_sum['submit_to_start']['p50_ms']} ms p99 "
              f"{idle_sum['submit_to_start']['p99_ms']} ms", flush=True)
    return {"throughput": tp_sum, "idle": idle_sum}


def batch_size(concurrency: int) -> int:
    return max(1, min(10, concurrency // 2))


def worker_cmd(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "pgqueuer", "run", "pgqueuer_tasks:create_worker",
            "--max-concurrent-tasks", str(args.concurrency),
            "--batch-size", str(batch_size(args.concurrency)), "--log-level", "WARNING"]


def start_worker(dsn: str, args: argparse.Namespace, starts_file: Path,
                 log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, DSN_ENV: dsn, DRIVER_ENV: args.driver, STARTS_ENV: str(starts_file),
           "PYTHONPATH": str(HERE)}
    with log.open("wb") as f:
        return subprocess.Popen(worker_cmd(args), cwd=HERE, env=env, stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--time-limit", type=float, default=120, help="seconds per phase")
    p.add_argument("--debounce-ms", type=float, default=20,
                   help="the completion watcher's debounce: at most one status query per "
                        "window (PgQueuer's default is 50; 20 = procrastinate_noop.py's "
                        "poll interval)")
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--idle-gap", type=float, default=0.05)
    p.add_argument("--driver", default="asyncpg", choices=DRIVERS)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out_name = args.out or ("peer_pgqueuer.json" if args.driver == "asyncpg"
                            else f"peer_pgqueuer_{args.driver}.json")

    db = f"bench_pgqueuer_{os.getpid()}"
    dsn = f"{PG}/{db}"
    load_before = loadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "logs").mkdir(exist_ok=True)
    starts_file = OUT / "logs" / f"peer_pgqueuer_starts_{os.getpid()}.txt"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    worker = None
    try:
        subprocess.run([sys.executable, "-m", "pgqueuer", "--pg-dsn", dsn, "install"],
                       cwd=HERE, check=True, timeout=120, capture_output=True)
        worker = start_worker(dsn, args, starts_file,
                              OUT / "logs" / f"peer_pgqueuer_{args.driver}_worker.log")
        time.sleep(2)
        if worker.poll() is not None:
            raise RuntimeError("the pgqueuer worker exited; see "
                               f"out/logs/peer_pgqueuer_{args.driver}_worker.log")
        result = asyncio.run(bench(dsn, args, starts_file))
        server = pg_version(dsn)
    finally:
        if worker is not None:
            stop_worker(worker)
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        starts_file.unlink(missing_ok=True)

    tp = result["throughput"]
    out = {
        "peer": "pgqueuer",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": tp["jobs"],
        "wall_s": tp["wall_s"],
        "jobs_per_s": tp["jobs_per_s"],
        "idle_submit_to_start": result["idle"]["submit_to_start"],
        **result,
        "worker": (f"python -m pgqueuer run pgqueuer_tasks:create_worker "
                   f"--max-concurrent-tasks {args.concurrency} --batch-size "
                   f"{batch_size(args.concurrency)} (listen/notify on), one {args.driver} "
                   "connection"),
        "client": (f"{args.clients} asyncio clients in one process, an {args.driver} "
                   "connection each; wait = one shared CompletionWatcher (LISTEN + status "
                   f"query on two more connections, debounce {args.debounce_ms} ms)"),
        "driver": args.driver,
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": loadavg()},
        "versions": {"pgqueuer": version("pgqueuer"), args.driver: version(args.driver),
                     "postgresql": server},
        "params": {k: getattr(args, k) for k in ("jobs", "clients", "concurrency",
                                                 "time_limit", "driver", "debounce_ms",
                                                 "idle_jobs", "idle_gap")},
    }
    path = OUT / out_name
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
