"""Peer benchmark: the same no-op job as genq's e2e.py on Celery with Redis (broker and
result backend), in its own venv (`make -C bench peer-celery`).

    peers/celery/.venv/bin/python peers/celery_noop.py \
        [--jobs 1000] [--clients 32] [--concurrency 16] [--time-limit 120] [--pool threads]

1. Redis db 5 on 127.0.0.1:6379 (BENCH_CELERY_REDIS), flushed (that db only) before
   and after.
2. One worker subprocess: `celery -A celery_tasks worker --pool threads --concurrency
   16 --without-gossip --without-mingle --without-heartbeat` (a single machine needs
   no cluster chatter). The pool is --pool: `threads` by default, since on 2 cores 16
   prefork children only add IPC and context switches to a no-op task (the GIL does
   not matter for it); `--pool prefork` runs Celery's default pool for comparison.
3. Throughput: --clients client threads in one process (one Celery app), each calling
   `noop.delay()` and then waiting on the AsyncResult (`.get()`, the Redis backend's
   pub/sub), taking tickets from one counter until exactly --jobs jobs are done.
   jobs/s = jobs / (last observed completion - first delay()).
4. Idle: --idle-jobs jobs one at a time (after an --idle-gap pause each).
   Submit-to-start = the task's own time.time() (its return value) - the client's
   time.time() just before delay().

Results: out/peer_celery.json (or out/peer_celery_<pool>.json for a non-default pool).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from celery_tasks import REDIS, app, noop
from peer_common import HERE, OUT, loadavg, machine, stats_ms, stop_worker


def one_job(timeout: float) -> dict[str, Any]:
    t_submit = time.time()
    m0 = time.monotonic()
    try:
        started = float(noop.delay().get(timeout=timeout))
    except Exception as exc:  # a timeout or a broken connection: counted, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    m1 = time.monotonic()
    return {"t_submit": t_submit, "started": started, "m_submit": m0, "m_observed": m1,
            "submit_to_start_s": started - t_submit, "submit_to_observed_s": m1 - m0}


def throughput(jobs: int, clients: int, time_limit: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    tickets = iter(range(jobs))
    deadline = time.monotonic() + time_limit

    def client() -> None:
        while True:
            with lock:
                ticket = next(tickets, None)
            if ticket is None or time.monotonic() > deadline:
                return
            res = one_job(max(1.0, deadline - time.monotonic()))
            with lock:
                results.append(res)

    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result(timeout=time_limit + 30)
    return results


def idle(jobs: int, gap_s: float, time_limit: float) -> list[dict[str, Any]]:
    results = []
    deadline = time.monotonic() + time_limit
    for _ in range(jobs):
        if time.monotonic() > deadline:
            break
        time.sleep(gap_s)
        results.append(one_job(max(1.0, deadline - time.monotonic())))
    return results


def start_worker(args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker",
           "--pool", args.pool, "--concurrency", str(args.concurrency),
           "--loglevel", "warning", "--without-gossip", "--without-mingle",
           "--without-heartbeat"]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    with log.open("wb") as f:
        return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_ready(timeout: float) -> None:
    """The worker is ready when it answers a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if app.control.ping(timeout=1.0):
                return
        time.sleep(0.2)
    raise RuntimeError("the celery worker did not answer a ping")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--time-limit", type=float, default=120, help="seconds per phase")
    p.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--idle-gap", type=float, default=0.05)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out_name = args.out or ("peer_celery.json" if args.pool == "threads"
                            else f"peer_celery_{args.pool}.json")

    load_before = loadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "logs").mkdir(exist_ok=True)
    r = redis.Redis.from_url(REDIS)
    r.flushdb()  # db 5 only
    redis_version = str(r.info("server").get("redis_version"))
    worker = start_worker(args, OUT / "logs" / f"peer_celery_{args.pool}_worker.log")
    try:
        wait_ready(60)
        idle(3, 0, 30)  # warm-up
        print(f"[celery {args.pool}] throughput: {args.jobs} jobs, {args.clients} clients",
              flush=True)
        load0 = loadavg()
        tp = throughput(args.jobs, args.clients, args.time_limit)
        load1 = loadavg()
        ok = [x for x in tp if "error" not in x]
        span = (max(x["m_observed"] for x in ok) - min(x["m_submit"] for x in ok)) if ok else 0
        tp_sum = {
            "jobs": len(ok),
            "errors": len(tp) - len(ok),
            "error_samples": [x["error"] for x in tp if "error" in x][:5],
            "wall_s": round(span, 3),
            "jobs_per_s": round(len(ok) / span, 1) if span > 0 else None,
            "submit_to_start": stats_ms([x["submit_to_start_s"] for x in ok]),
            "submit_to_observed_completion": stats_ms([x["submit_to_observed_s"] for x in ok]),
            "loadavg_before": load0, "loadavg_after": load1,
        }
        print(f"[celery {args.pool}] {tp_sum['jobs_per_s']} jobs/s; under load "
              f"submit->start p50 {tp_sum['submit_to_start']['p50_ms']} ms", flush=True)
        print(f"[celery {args.pool}] idle: {args.idle_jobs} jobs one at a time", flush=True)
        idle_res = idle(args.idle_jobs, args.idle_gap, args.time_limit)
        iok = [x for x in idle_res if "error" not in x]
        idle_sum = {
            "jobs": len(iok),
            "errors": len(idle_res) - len(iok),
            "submit_to_start": stats_ms([x["submit_to_start_s"] for x in iok]),
            "submit_to_observed_completion": stats_ms([x["submit_to_observed_s"]
                                                       for x in iok]),
        }
        print(f"[celery {args.pool}] idle submit->start p50 "
              f"{idle_sum['submit_to_start']['p50_ms']} ms p99 "
              f"{idle_sum['submit_to_start']['p99_ms']} ms", flush=True)
    finally:
        stop_worker(worker)
        r.flushdb()
        r.close()

    out = {
        "peer": "celery",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": tp_sum["jobs"],
        "wall_s": tp_sum["wall_s"],
        "jobs_per_s": tp_sum["jobs_per_s"],
        "idle_submit_to_start": idle_sum["submit_to_start"],
        "throughput": tp_sum,
        "idle": idle_sum,
        "worker": (f"celery -A celery_tasks worker --pool {args.pool} --concurrency "
                   f"{args.concurrency} --without-gossip --without-mingle "
                   "--without-heartbeat"),
        "client": (f"{args.clients} threads in one process, one Celery app; wait = "
                   "AsyncResult.get() on the Redis result backend"),
        "broker": REDIS,
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": loadavg()},
        "versions": {"celery": version("celery"), "kombu": version("kombu"),
                     "redis-py": version("redis"), "redis_server": redis_version},
        "params": {k: getattr(args, k) for k in ("jobs", "clients", "concurrency",
                                                 "time_limit", "pool", "idle_jobs",
                                                 "idle_gap")},
    }
    path = OUT / out_name
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
