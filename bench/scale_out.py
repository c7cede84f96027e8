"""Scale-out: end-to-end `demo/noop` throughput and submit-to-start latency for genq on
SQLite (in-process workers) and on PostgreSQL with 1 and 2 `genq worker` processes
behind an API-only server (genq's own claim, LISTEN/NOTIFY events), in one run.

    ../.venv/bin/python scale_out.py [--configs sqlite,pg-1w,pg-2w] [--jobs 1000]
                                     [--clients 32] [--slots 16]

The same clients as e2e.py (aiohttp; submit, then long-poll to the end; idle: one job at a
time). PostgreSQL: a fresh database bench_scale_out_<pid> on 127.0.0.1:5432 (user
postgres; BENCH_PG to change), dropped at the end. CPU: the API server's and the
worker processes' together. Results: out/scale_out.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    LOGS,
    PY,
    ROOT,
    engine_input,
    group_cpu_s,
    machine,
    now_iso,
    pg_database,
    running_server,
    save_json,
)
from bench.e2e import digest, idle, throughput  # noqa: E402



@contextlib.contextmanager
def workers(env: dict[str, str], count: int, tag: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for i in range(count):
            with (LOGS / f"scale_out-{tag}-worker{i}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [PY, "-m", "genq", "worker"], cwd=ROOT, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
        time.sleep(3)  # started, migrated, listening
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker exited {p.returncode}; see {LOGS}")
        yield procs
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def run_config(config: str, db_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    inp = engine_input(args.engine, None)
    n_workers = 0 if config == "sqlite" else int(config.split("-")[1].rstrip("w"))
    env = {
        "BENCH_WORKERS": "0" if n_workers else "1",
        "BENCH_INSTRUMENT": "0",
        "GENQ_WORKER_SLOTS": str(args.slots),
        "BENCH_ENGINE_CONCURRENCY": str(args.engine_concurrency),
        "GENQ_LOG_LEVEL": "warning",
    }
    if db_url:
        env["GENQ_DATABASE_URL"] = db_url
    with running_server("uvicorn", args.engine, None, accounts=args.clients, **env) as (
        srv, keys
    ), workers(srv.env, n_workers, config) as procs:
        secrets = [k["key"] for k in keys]
        key = secrets[0]
        asyncio.run(idle(srv.url, key, args.engine, inp, jobs=3, gap_s=0, time_limit=60))
        idle_sum = digest(asyncio.run(idle(srv.url, key, args.engine, inp, jobs=args.idle_jobs,
                                           gap_s=args.idle_gap, time_limit=args.time_limit)))
        print(f"[{config}] idle submit->start p50 {idle_sum['submit_to_start']['p50_ms']} ms"
              f" p99 {idle_sum['submit_to_start']['p99_ms']} ms", flush=True)
        pids = [srv.proc.pid if srv.proc else 0] + [p.pid for p in procs]
        cpu0, t0 = sum(group_cpu_s(p) for p in pids), time.monotonic()
        res, wall = asyncio.run(throughput(srv.url, secrets, args.engine, inp, jobs=args.jobs,
                                           time_limit=args.time_limit))
        cpu = sum(group_cpu_s(p) for p in pids) - cpu0
        tp = digest(res, wall)
        tp["genq_cpu_pct"] = round(100 * cpu / max(1e-9, time.monotonic() - t0), 1)
        print(f"[{config}] {tp['jobs_per_s']} jobs/s, submit->start p50 "
              f"{tp['submit_to_start']['p50_ms']} ms p99 {tp['submit_to_start']['p99_ms']} ms,"
              f" genq cpu {tp['genq_cpu_pct']}%", flush=True)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(srv.url + "/healthz", timeout=5)
    return {"config": config, "worker_processes": n_workers, "database": db_url and "postgres"
            or "sqlite", "idle": idle_sum, "throughput": tp}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="sqlite,pg-1w,pg-2w")
    p.add_argument("--engine", default="demo/noop")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--engine-concurrency", type=int, default=64)
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--idle-gap", type=float, default=0.05)
    p.add_argument("--time-limit", type=float, default=180)
    p.add_argument("--out", default="scale_out.json")
    args = p.parse_args()
    result: dict[str, Any] = {
        "benchmark": "scale_out", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": {k: getattr(args, k) for k in ("engine", "jobs", "clients", "slots",
                                                   "engine_concurrency", "idle_jobs")},
        "configs": [],
    }
    LOGS.mkdir(parents=True, exist_ok=True)
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if config == "sqlite":
            result["configs"].append(run_config(config, None, args))
        else:
            with pg_database("bench_scale_out") as url:
                result["configs"].append(run_config(config, url, args))
        save_json(args.out, result)
    print(f"wrote {save_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
