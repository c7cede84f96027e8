"""What one job costs the database: SQL statements, write transactions and store
operations (each one thread hop) of a `demo/noop` job, end to end through the HTTP API,
on SQLite and on PostgreSQL.

    ../.venv/bin/python costs.py [--jobs 50] [--dbs sqlite,postgres]

For each database: a fresh one (SQLite: a temp data dir; PostgreSQL: bench_costs_<pid>
on 127.0.0.1:5432, BENCH_PG, dropped at the end), genq's app with in-process workers
on uvicorn in this process (its background loops slowed so they stay out of the
count), one key. After a warm-up job, --jobs jobs one at a time, each submitted with
`Prefer: wait=10` (the answer comes when the job has ended); the store's own counters
(`genq.store.db.Stats`) are read before and after each job. Also: the same counters
over 2 s of an idle server whose background loops run every 50 ms (it must write
nothing). This is the measurement `tests/integration/test_costs.py` holds to at most
12 statements and 3 write transactions per job. Results: out/costs.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import free_port, machine, now_iso, pg_database, save_json  # noqa: E402
from genq.accounts import AccountService  # noqa: E402
from genq.api import create_app  # noqa: E402
from genq.core import Genq  # noqa: E402
from genq.migrate import upgrade  # noqa: E402
from genq.settings import Settings  # noqa: E402
from genq.store import Store  # noqa: E402

QUIET = {"lease_s": 60.0, "reaper_interval_s": 60.0, "poll_interval_s": 60.0,
         "sweep_interval_s": 60.0, "event_poll_s": 60.0, "pg_event_poll_s": 60.0}
BUSY = {"lease_s": 0.3, "reaper_interval_s": 0.05, "poll_interval_s": 0.05,
        "sweep_interval_s": 0.05, "event_poll_s": 0.02, "pg_event_poll_s": 0.05}


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'genq.db'}"
        return
    with pg_database("bench_costs") as url:
        yield url


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[Genq]:
    genq = Genq(settings)
    config = uvicorn.Config(create_app(genq=genq), host="127.0.0.1", port=settings.port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield genq
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def new_key(url: str) -> str:
    async def make() -> str:
        store = Store(url)
        try:
            svc = AccountService(store, Settings().plan_table)
            account = await svc.create("bench", "pro", 1_000_000)
            return (await svc.create_key(account))[0]
        finally:
            await store.close()

    return asyncio.run(make())


def noop(api: httpx.Client) -> None:
    r = api.post("/v1/jobs", json={"engine": "demo/noop", "input": {"delay_s": 0}},
                 headers={"Prefer": "wait=10"})
    r.raise_for_status()
    assert r.json()["status"] == "succeeded", r.text


def measure(kind: str, jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="genq-costs-") as tmp, database(kind, Path(tmp)) as url:
        upgrade(url)
        key = new_key(url)
        out: dict[str, Any] = {"database": kind}
        port = free_port()
        settings = Settings(data_dir=Path(tmp), database_url=url, port=port, **QUIET)
        with serving(settings) as genq, httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as api:
            noop(api)
            time.sleep(0.2)
            per_job = []
            for _ in range(jobs):
                before = genq.store.db.stats.snapshot()
                noop(api)
                time.sleep(0.02)
                after = genq.store.db.stats.snapshot()
                per_job.append({k: after[k] - before[k] for k in after})
        out["per_job"] = {k: {"median": statistics.median(c[k] for c in per_job),
                              "max": max(c[k] for c in per_job)} for k in per_job[0]}
        out["jobs"] = jobs
        settings = Settings(data_dir=Path(tmp), database_url=url, port=free_port(), **BUSY)
        with serving(settings) as genq:
            time.sleep(0.5)
            before = genq.store.db.stats.snapshot()
            time.sleep(2.0)
            after = genq.store.db.stats.snapshot()
        out["idle_2s"] = {k: after[k] - before[k] for k in after}
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--dbs", default="sqlite,postgres")
    args = p.parse_args()
    result: dict[str, Any] = {
        "benchmark": "costs", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "engine": "demo/noop", "databases": [],
    }
    for kind in [d.strip() for d in args.dbs.split(",") if d.strip()]:
        res = measure(kind, args.jobs)
        result["databases"].append(res)
        pj = res["per_job"]
        print(f"[{kind}] per job: {pj['statements']['median']} statements (max "
              f"{pj['statements']['max']}), {pj['write_txns']['median']} write transactions, "
              f"{pj['write_ops']['median']} write + {pj['read_ops']['median']} read "
              f"operations; idle 2 s: {res['idle_2s']['write_txns']} write transactions, "
              f"{res['idle_2s']['read_ops']} reads", flush=True)
    print(f"wrote {save_json('costs.json', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
