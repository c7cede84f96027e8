"""The gateway: what genq in front of an upstream service costs that service, adds to a
job's completion, and how many upstream jobs one process tracks.

    python gateway.py                       # all three parts, SQLite
    python gateway.py --db postgres         # both genq servers on PostgreSQL (127.0.0.1)
    python gateway.py --parts latency --latency-jobs 20

Two genq servers on 127.0.0.1, as in tests/integration/gateway_harness.py:

- the *upstream*: `genq serve` in a subprocess of its own (its own process, database and
  data dir), whose compat faces (`/compat/vivix`, `/compat/useapi`, ...) are the upstream
  APIs, routed to the scripted engine of tests/integration/gateway_engines.py (the
  prompt says what the job does: `sleep:SECONDS steps:N`; an asyncio sleep, so cheap).
  Here the engine is subclassed with a higher engine concurrency (`WIDE`, 100,000
  instead of 200) so that part 3 can run more than 200 upstream jobs at once; its plan
  (`ultimate`, raised like the harness's BIG) and `GENQ_WORKER_SLOTS` are raised too.
  Webhooks may reach 127.0.0.1 (`GENQ_WEBHOOK_ALLOW_PRIVATE`), so useapi's `replyUrl`
  callbacks reach the front.
- the *front*: the genq under test, in this process (tests.conftest's LiveServer:
  uvicorn in a thread, workers and the upstream tracker on its event loop), with
  `GENQ_UPSTREAMS` naming the upstream's face; a fresh data dir (and database) per
  configuration. Settings are genq's defaults except those named in each part (in
  particular `upstream_tick_s`, how often the tracker looks for due polls, is the
  default 1.0 s unless a row says otherwise).

Each configuration's jobs run on an upstream account of their own; a front job's
upstream job is found by a tag in its prompt.

1. `watchers`: upstream status requests per job vs the number of clients watching it.
   Front: vivix, `poll_s` --watch-poll-s, through the harness's counting loopback
   `Proxy`. For N in --watchers, --watch-jobs jobs one after another, each a
   `sleep:--watch-job-s` upstream job; while it runs N clients watch it on the front
   (asyncio httpx, one connection each): even-numbered ones long-poll
   `GET /v1/jobs/{id}?wait=10` with If-None-Match until a terminal body, odd-numbered ones
   hold `GET /v1/jobs/{id}/events` until `event: completed`. Counted at the proxy between
   the submit and the job's end: status reads of that job (`GET .../generations/{id}`),
   and every other request (the create call). Outputs are downloaded from the
   upstream's own URL, not through the proxy.
2. `latency`: completion latency added by genq. For each configuration --latency-jobs
   jobs of `sleep:S`, S drawn uniformly from --latency-job-s + [0, --latency-spread-s]
   (more than the longest poll interval plus a tick, so that the upstream's end falls at
   a random phase of the front's polls, which are scheduled from the job's hand-over),
   submitted --latency-gap-s apart (+-50%, random); one client
   long-polls each on the front. Per job: the upstream job's `completed_at` (the
   upstream genq's own, read from its canonical API `GET /v1/jobs` with the upstream
   key), the front job's `completed_at`, and this process's `time.time()` when the
   client held the front's terminal body (one machine, one clock; `completed_at` has
   millisecond precision). Added latency = front `completed_at` - upstream
   `completed_at`, and client-seen - upstream `completed_at`. Configurations: vivix
   polled (`poll_s` 0.5 and 2.0 with the default tick 1.0 s, and 0.5 with tick 0.1 s as
   the harness uses), and useapi with callbacks (the upstream's webhook sender POSTs
   the job's end to the front's `/v1/upstreams/callbacks/...`; the status read is a
   safety net every 60 s). No proxy in this part.
3. `capacity`: upstream jobs tracked by one front process, once per `upstream_tick_s`
   in --capacity-ticks (default: 1.0, genq's default, and 0.1). Front: --capacity-slots
   worker slots, vivix with `poll_s` --capacity-poll-s, `max_jobs` and `rate_per_min`
   far above the run. --capacity-jobs jobs of `sleep:--capacity-job-s` submitted as fast
   as one client can (4 threads). Sampled every second in this process: the front's
   jobs by status (one `SELECT status, count(*)` on its database), the worker slots in
   use (`front.genq.worker.runs`; also read every 5 ms by a second thread while the jobs
   are handed over, as the create calls are short), polls in flight (`tracker.active`),
   the tracker's
   status reads (`tracker.polls`), and CPU time: this process's (RUSAGE_SELF) minus the
   sampling thread's own (`time.thread_time()`) is the front's (during the plateau the
   submitting threads and the 5 ms reader have ended); the upstream's process group
   separately. Reported for the plateau (every sample with all jobs in flight:
   submitted, handed over and none finished) and over the whole run: jobs in flight,
   polls/s, front CPU seconds per tracked job-minute (job-minutes = the integral of jobs
   in flight over time), that all jobs succeeded on the front and the upstream, and the
   completion latency added under this load (as in part 2, from both servers' lists).

All load is on 127.0.0.1 and bounded (every wait has a deadline); the upstream
subprocess is stopped (its process group) and the data dirs (and PostgreSQL databases)
removed at the end. Result: out/gateway.json (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BENCH,
    LOGS,
    PY,
    ROOT,
    Server,
    free_port,
    group_cpu_s,
    machine,
    now_iso,
    percentile,
    pg_database,
    save_json,
)

# ---------------------------------------------------------------- the upstream's engine

try:  # (the upstream subprocess imports this module for WIDE)
    from tests.integration.gateway_engines import Scripted as _Scripted

    class WideScripted(_Scripted):
        """The harness's scripted engine with room for part 3's jobs at once."""

        concurrency = 100_000

    WIDE = [WideScripted]
except ImportError:  # pragma: no cover
    WIDE = []

TERMINAL = ("succeeded", "failed", "canceled", "expired")
UP_PLANS = {"ultimate": {"concurrent_jobs": 100_000, "generation_per_min": 1_000_000,
                         "status_per_min": 10_000_000}}
FRONT_PLANS = {"bench": {"generation_per_min": 1_000_000, "status_per_min": 10_000_000,
                         "concurrent_jobs": 100_000, "retention_days": 1,
                         "monthly_credits": 1_000_000_000, "open_streams": 1_000_000}}
CASES = {  # engine on the front, its input, the path part of the upstream's status read
    "vivix": ("vivix/grok-imagine-image", {"prompt": ""}, "/generations/"),
    "useapi": ("useapi/pixverse-video", {"prompt": "", "style": "Realistic"}, "/jobs"),
}


def iso_ts(value: str | None) -> float | None:
    return None if not value else dt.datetime.fromisoformat(value).timestamp()


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": round(statistics.fmean(values), 2),
            "p50": round(percentile(values, 50) or 0, 2),
            "p95": round(percentile(values, 95) or 0, 2),
            "min": round(min(values), 2), "max": round(max(values), 2)}


# ---------------------------------------------------------------- the servers


class Bench:
    """The upstream subprocess, its accounts, and fronts made on demand."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="genq-gw-"))
        self.stack = contextlib.ExitStack()
        self.upstream: Server | None = None
        self.up_env: dict[str, str] = {}
        self.fronts = 0

    def db_url(self, name: str) -> str | None:
        if self.args.db == "postgres":
            return self.stack.enter_context(pg_database(f"bench_gw_{name}"))
        return None

    def start_upstream(self) -> None:
        data = self.tmp / "upstream"
        port = free_port()
        from tests.integration.gateway_engines import ROUTES

        env = dict(os.environ)
        env.pop("GENQ_ENGINES", None)
        env.update(
            GENQ_DATA_DIR=str(data), GENQ_HOST="127.0.0.1", GENQ_PORT=str(port),
            PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else ""),
            GENQ_ENGINES="bench.gateway:WIDE",
            GENQ_COMPAT_ENGINES=json.dumps(ROUTES),
            GENQ_WORKER_SLOTS=str(self.args.upstream_slots),
            GENQ_PLANS=json.dumps(UP_PLANS),
            GENQ_WEBHOOK_ALLOW_PRIVATE="true",
            GENQ_LOG_LEVEL="warning",
        )
        url = self.db_url("up")
        if url:
            env["GENQ_DATABASE_URL"] = url
        self.up_env = env
        self.upstream = Server("genq-serve", data, port, env, LOGS / f"gateway-upstream-{port}.log")
        self.upstream.start()
        self.stack.callback(self.upstream.stop)

    def upstream_key(self, account: str) -> str:
        assert self.upstream is not None
        cmd = [PY, str(BENCH / "make_keys.py"), "--data-dir", str(self.upstream.data_dir),
               "--count", "1", "--plan", "ultimate", "--prefix", account]
        out = subprocess.run(cmd, cwd=ROOT, env=self.up_env, capture_output=True, text=True,
                             timeout=120, check=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
        for k in ("key", "secret", "api_key", "token"):
            if k in (d := json.loads(line)):
                return str(d[k])
        raise RuntimeError(f"no key in {line}")

    def front(self, provider: str, base: str, up_key: str, *, tick_s: float = 1.0,
              slots: int = 4, **options: Any) -> Any:
        from tests.conftest import LiveServer

        from genq.migrate import upgrade
        from genq.settings import Settings

        self.fronts += 1
        data = self.tmp / f"front{self.fronts}"
        data.mkdir(parents=True)
        url = self.db_url(f"front{self.fronts}") or f"sqlite:///{data / 'genq.db'}"
        upgrade(url)
        upstreams = {provider: {"base_url": f"{base}/compat/{provider}", "api_key": up_key,
                                **options}}
        settings = Settings(data_dir=data, port=free_port(), database_url=url, engines=[],
                            upstreams=upstreams, upstream_tick_s=tick_s, worker_slots=slots,
                            plans=FRONT_PLANS, log_level="warning")
        return LiveServer(settings).start()

    def close(self) -> None:
        self.stack.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def upstream_jobs(bench: Bench, key: str) -> list[dict[str, Any]]:
    import httpx

    assert bench.upstream is not None
    out: list[dict[str, Any]] = []
    after = None
    with httpx.Client(base_url=bench.upstream.url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            r = c.get("/v1/jobs", params=params)
            r.raise_for_status()
            body = r.json()
            out += body["data"]
            after = body.get("next_cursor")
            if not after or not body["data"]:
                return out


def front_jobs(url: str, key: str) -> list[dict[str, Any]]:
    import httpx

    out: list[dict[str, Any]] = []
    after = None
    with httpx.Client(base_url=url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as c:
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            r = c.get("/v1/jobs", params=params)
            r.raise_for_status()
            body = r.json()
            out += body["data"]
            after = body.get("next_cursor")
            if not after or not body["data"]:
                return out


def tag_of(job: dict[str, Any]) -> str | None:
    text = json.dumps(job.get("input") or {})
    i = text.find("tag:")
    if i < 0:
        return None
    return text[i + 4:].split()[0].split('"')[0].split("\\")[0]


def submit(api: Any, provider: str, prompt: str) -> dict[str, Any]:
    engine, data, _ = CASES[provider]
    r = api.post("/v1/jobs", json={"engine": engine, "input": {**data, "prompt": prompt}})
    if r.status_code != 202:
        raise RuntimeError(f"submit: {r.status_code} {r.text}")
    body: dict[str, Any] = r.json()
    return body


# ---------------------------------------------------------------- part 1: watchers


async def watch_long_poll(c: Any, job_id: str, deadline: float) -> int:
    etag, n = None, 0
    while time.monotonic() < deadline:
        headers = {"If-None-Match": etag} if etag else {}
        r = await c.get(f"/v1/jobs/{job_id}", params={"wait": 10}, headers=headers)
        n += 1
        if r.status_code == 200:
            etag = r.headers.get("etag")
            if r.json()["status"] in TERMINAL:
                return n
    raise TimeoutError(job_id)


async def watch_sse(c: Any, job_id: str, deadline: float) -> int:
    frames = 0
    async with c.stream("GET", f"/v1/jobs/{job_id}/events",
                        headers={"Accept": "text/event-stream"}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"SSE {r.status_code}")
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                frames += 1
                if line.split(":", 1)[1].strip() == "completed":
                    return frames
            if time.monotonic() > deadline:
                break
    raise TimeoutError(job_id)


async def watch(url: str, key: str, job_id: str, n: int, timeout: float) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60, limits=limits) as c:
        tasks = [watch_long_poll(c, job_id, deadline) if i % 2 == 0
                 else watch_sse(c, job_id, deadline) for i in range(n)]
        res = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(x) for x in res if isinstance(x, BaseException)]
    polls = [x for i, x in enumerate(res) if i % 2 == 0 and isinstance(x, int)]
    return {"watchers": n, "long_pollers": (n + 1) // 2, "sse": n // 2,
            "long_poll_requests": sum(polls), "errors": errors[:5], "error_count": len(errors)}


def part_watchers(bench: Bench) -> dict[str, Any]:
    from tests.integration.gateway_harness import Proxy

    a = bench.args
    assert bench.upstream is not None
    up_key = bench.upstream_key("watch")
    proxy = Proxy(bench.upstream.url).start()
    status_part = CASES["vivix"][2]
    front = bench.front("vivix", proxy.url, up_key, poll_s=a.watch_poll_s)
    rows = []
    try:
        key = front.new_key("watcher", plan="bench")
        with front.client(key) as api:
            # one job first, uncounted (connections, caches)
            wait_job(api, submit(api, "vivix", "sleep:0.5")["id"], 60)
            for n in a.watchers:
                for rep in range(a.watch_jobs):
                    before = len(proxy.log)
                    job = submit(api, "vivix", f"sleep:{a.watch_job_s:g} steps:5 tag:w{n}-{rep}")
                    t0 = time.monotonic()
                    w = asyncio.run(watch(front.url, key, job["id"], n, a.watch_job_s + 60))
                    final = wait_job(api, job["id"], 60)
                    time.sleep(0.3)  # (the proxy notes a request once it is answered)
                    log = proxy.log[before:]
                    status = [p for m, p, _ in log if m == "GET" and status_part in p]
                    other = [f"{m} {p}" for m, p, _ in log if not (m == "GET" and status_part in p)]
                    rows.append({
                        "watchers": n, "rep": rep, "job": job["id"], "status": final["status"],
                        "upstream_status_gets": len(status), "other_upstream_requests": other,
                        "watch_s": round(time.monotonic() - t0, 2), **w,
                    })
                    print(f"watchers {n:>3} job {rep}: {len(status)} status GETs, "
                          f"{len(other)} other; {final['status']}; errors {w['error_count']}",
                          flush=True)
    finally:
        front.stop()
        proxy.stop()
    by = {}
    for n in a.watchers:
        mine = [r for r in rows if r["watchers"] == n]
        counts = [r["upstream_status_gets"] for r in mine]
        by[str(n)] = {"jobs": len(mine), "mean": round(statistics.fmean(counts), 2),
                      "max": max(counts), "min": min(counts),
                      "succeeded": sum(r["status"] == "succeeded" for r in mine),
                      "watch_errors": sum(r["error_count"] for r in mine),
                      "long_poll_requests_per_job": round(statistics.fmean(
                          r["long_poll_requests"] for r in mine), 1)}
    return {"params": {"provider": "vivix", "poll_s": a.watch_poll_s, "tick_s": 1.0,
                       "job_s": a.watch_job_s, "jobs_per_n": a.watch_jobs,
                       "watchers": a.watchers},
            "by_watchers": by, "rows": rows}


def wait_job(api: Any, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", params={"wait": 5}).json()
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']}")


# ---------------------------------------------------------------- part 2: latency

LATENCY_CONFIGS = [
    # name, provider, front options, tick_s
    ("vivix polled, poll_s 0.5", "vivix", {"poll_s": 0.5}, 1.0),
    ("vivix polled, poll_s 2.0", "vivix", {"poll_s": 2.0}, 1.0),
    ("vivix polled, poll_s 0.5, tick 0.1 s", "vivix", {"poll_s": 0.5}, 0.1),
    ("useapi callback (poll_s 2.0: safety poll 60 s)", "useapi",
     {"poll_s": 2.0, "callbacks": True}, 1.0),
]


async def follow(url: str, key: str, provider: str, prompts: list[str], gap: float,
                 timeout: float) -> list[dict[str, Any]]:
    """Submit each prompt (gap s apart, +-50%) and long-poll each job to its end."""
    import httpx

    engine, data, _ = CASES[provider]
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60) as c:

        async def one(prompt: str) -> None:
            r = await c.post("/v1/jobs", json={"engine": engine,
                                               "input": {**data, "prompt": prompt}})
            r.raise_for_status()
            job = r.json()
            etag = r.headers.get("etag")
            deadline = time.monotonic() + timeout
            while job["status"] not in TERMINAL and time.monotonic() < deadline:
                r = await c.get(f"/v1/jobs/{job['id']}", params={"wait": 30},
                                headers={"If-None-Match": etag} if etag else {})
                if r.status_code == 200:
                    job, etag = r.json(), r.headers.get("etag")
            out.append({"id": job["id"], "prompt": prompt, "status": job["status"],
                        "seen": time.time(), "front_completed_at": job.get("completed_at")})

        tasks = []
        for p in prompts:
            tasks.append(asyncio.create_task(one(p)))
            await asyncio.sleep(gap * random.uniform(0.5, 1.5))
        await asyncio.gather(*tasks)
    return out


def part_latency(bench: Bench) -> dict[str, Any]:
    a = bench.args
    assert bench.upstream is not None
    configs = []
    for i, (name, provider, options, tick) in enumerate(LATENCY_CONFIGS):
        up_key = bench.upstream_key(f"lat{i}-")
        front = bench.front(provider, bench.upstream.url, up_key, tick_s=tick, **options)
        try:
            key = front.new_key("lat", plan="bench")
            with front.client(key) as api:
                wait_job(api, submit(api, provider, "sleep:0.2")["id"], 90)  # warm-up
            polls0 = front.genq.tracker.polls
            # durations drawn over more than the longest poll interval plus a tick, so
            # that the upstream's end falls at a random phase of the front's polls
            prompts = [f"sleep:{a.latency_job_s + random.uniform(0, a.latency_spread_s):.2f} "
                       f"steps:3 tag:l{i}-{j}" for j in range(a.latency_jobs)]
            seen = asyncio.run(follow(front.url, key, provider, prompts, a.latency_gap_s,
                                      a.latency_job_s + 180))
            polls = front.genq.tracker.polls - polls0
        finally:
            front.stop()
        ups = {tag_of(j): j for j in upstream_jobs(bench, up_key)}
        jobs = []
        for s in seen:
            u = ups.get(tag_of({"input": {"prompt": s["prompt"]}}))
            up_done = iso_ts(u.get("completed_at")) if u else None
            front_done = iso_ts(s["front_completed_at"])
            jobs.append({
                "id": s["id"], "status": s["status"],
                "upstream_status": u["status"] if u else None,
                "upstream_completed_at": u.get("completed_at") if u else None,
                "front_completed_at": s["front_completed_at"],
                "added_ms": None if up_done is None or front_done is None
                else round(1000 * (front_done - up_done), 1),
                "client_ms": None if up_done is None else round(1000 * (s["seen"] - up_done), 1),
            })
        added = [j["added_ms"] for j in jobs if j["added_ms"] is not None]
        client = [j["client_ms"] for j in jobs if j["client_ms"] is not None]
        row = {"name": name, "provider": provider, "options": options, "tick_s": tick,
               "jobs": len(jobs), "succeeded": sum(j["status"] == "succeeded" for j in jobs),
               "status_reads": polls, "status_reads_per_job": round(polls / max(1, len(jobs)), 2),
               "added_ms": summary(added), "client_ms": summary(client), "rows": jobs}
        configs.append(row)
        print(f"{name}: added p50 {row['added_ms'].get('p50')} p95 {row['added_ms'].get('p95')} "
              f"max {row['added_ms'].get('max')} ms; client p50 {row['client_ms'].get('p50')} ms; "
              f"{row['succeeded']}/{row['jobs']} succeeded; {polls} status reads", flush=True)
    return {"params": {"jobs": a.latency_jobs, "job_s": a.latency_job_s,
                       "spread_s": a.latency_spread_s, "gap_s": a.latency_gap_s},
            "configs": configs}


# ---------------------------------------------------------------- part 3: capacity


def counts_by_status(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    eng = sa.create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))
    try:
        with eng.connect() as cx:
            return {s: int(n) for s, n in cx.execute(
                sa.text("SELECT status, count(*) FROM jobs GROUP BY status"))}
    finally:
        eng.dispose()


def part_capacity(bench: Bench) -> dict[str, Any]:
    runs = []
    for i, tick in enumerate(bench.args.capacity_ticks):
        runs.append(capacity_run(bench, tick, i))
    return {"runs": runs}


def capacity_run(bench: Bench, tick: float, index: int) -> dict[str, Any]:
    import httpx

    a = bench.args
    assert bench.upstream is not None and bench.upstream.proc is not None
    print(f"-- upstream_tick_s {tick:g}", flush=True)
    up_key = bench.upstream_key(f"cap{index}-")
    front = bench.front("vivix", bench.upstream.url, up_key, slots=a.capacity_slots,
                        tick_s=tick, poll_s=a.capacity_poll_s, max_jobs=1_000_000,
                        rate_per_min=10_000_000)
    n = a.capacity_jobs
    samples: list[dict[str, Any]] = []
    try:
        key = front.new_key("cap", plan="bench")
        db_url = front.settings.db_url
        worker, tracker = front.genq.worker, front.genq.tracker
        ids: list[str] = []
        lock = threading.Lock()
        start = time.monotonic()

        def submitter(count: int, offset: int) -> None:
            with httpx.Client(base_url=front.url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as c:
                for i in range(count):
                    j = submit(c, "vivix", f"sleep:{a.capacity_job_s:g} steps:4 "
                                           f"tag:c{offset + i}")
                    with lock:
                        ids.append(j["id"])

        slot_peak = [0]
        slots_done = threading.Event()

        def slot_sampler() -> None:
            # the creates are short: the slots in use are read every 5 ms while jobs are
            # being handed over (and not during the plateau, whose CPU is measured)
            while not slots_done.is_set():
                slot_peak[0] = max(slot_peak[0], len(worker.runs))
                time.sleep(0.005)

        threads = [threading.Thread(target=submitter, args=(n // 4 + (k < n % 4), k * n))
                   for k in range(4)]
        sampler = threading.Thread(target=slot_sampler, daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        deadline = start + a.capacity_job_s + a.capacity_timeout_s
        polls0 = tracker.polls
        while True:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            me = time.thread_time()
            counts = counts_by_status(db_url)
            samples.append({
                "t": round(time.monotonic() - start, 3),
                "submitted": len(ids),
                "counts": counts,
                "in_flight": counts.get("starting", 0) + counts.get("running", 0),
                "terminal": sum(counts.get(s, 0) for s in TERMINAL),
                "worker_runs": len(worker.runs),
                "polls_active": len(tracker.active),
                "polls": tracker.polls - polls0,
                "proc_cpu_s": ru.ru_utime + ru.ru_stime,
                "sampler_cpu_s": time.thread_time() - me,
                "sampler_total_cpu_s": time.thread_time(),
                "upstream_cpu_s": group_cpu_s(bench.upstream.proc.pid),
            })
            s = samples[-1]
            if s["submitted"] >= n and s["in_flight"] + s["terminal"] >= n \
                    and s["worker_runs"] == 0:
                slots_done.set()
            if len(samples) % 10 == 1:
                print(f"t {s['t']:6.1f}s submitted {s['submitted']} in flight {s['in_flight']} "
                      f"done {s['terminal']} slots {s['worker_runs']} polls {s['polls']}",
                      flush=True)
            if s["terminal"] >= n or time.monotonic() > deadline:
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start - s["t"])))
        slots_done.set()
        for t in threads:
            t.join(timeout=60)
        sampler.join(timeout=5)
        concurrency = tracker.concurrency
        final = counts_by_status(db_url)
        fronts = front_jobs(front.url, key)
    finally:
        front.stop()
    ups = upstream_jobs(bench, up_key)
    # added latency under this load: the front's completed_at - the upstream's
    done_up = {tag_of(j): iso_ts(j.get("completed_at")) for j in ups}
    added = []
    for j in fronts:
        u, f = done_up.get(tag_of(j)), iso_ts(j.get("completed_at"))
        if u is not None and f is not None:
            added.append(round(1000 * (f - u), 1))
    return {"params": {"jobs": n, "job_s": a.capacity_job_s, "worker_slots": a.capacity_slots,
                       "poll_s": a.capacity_poll_s, "tick_s": tick,
                       "provider": "vivix",
                       "tracker_concurrency": concurrency,
                       "upstream_worker_slots": a.upstream_slots},
            **capacity_summary(samples, n), "peak_worker_runs_fine": slot_peak[0],
            "added_ms": summary(added), "front_final": final, "upstream_jobs": len(ups),
            "upstream_succeeded": sum(j["status"] == "succeeded" for j in ups),
            "samples": samples}


def capacity_summary(samples: list[dict[str, Any]], n: int) -> dict[str, Any]:
    def window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        wall = b["t"] - a["t"]
        # the sampler thread's CPU is this process's but not the front's
        cpu = (b["proc_cpu_s"] - a["proc_cpu_s"]) - (
            b["sampler_total_cpu_s"] - a["sampler_total_cpu_s"])
        job_min = sum((y["t"] - x["t"]) * (x["in_flight"] + y["in_flight"]) / 2
                      for x, y in itertools.pairwise(samples)
                      if x["t"] >= a["t"] and y["t"] <= b["t"]) / 60
        polls = b["polls"] - a["polls"]
        up = b["upstream_cpu_s"] - a["upstream_cpu_s"]
        return {"wall_s": round(wall, 1), "tracked_job_minutes": round(job_min, 1),
                "front_cpu_s": round(cpu, 2), "front_cpu_pct": round(100 * cpu / wall, 1),
                "front_cpu_s_per_job_minute": round(cpu / job_min, 4) if job_min else None,
                "polls": polls, "polls_per_s": round(polls / wall, 1),
                "front_cpu_ms_per_poll": round(1000 * cpu / polls, 2) if polls else None,
                # jobs in flight on average / polls per second: seconds between two polls
                # of one job
                "poll_interval_s": round(job_min * 60 / polls, 2) if polls else None,
                "upstream_cpu_s": round(up, 2), "upstream_cpu_pct": round(100 * up / wall, 1)}

    peak = max(s["in_flight"] for s in samples)
    plateau = [s for s in samples if s["in_flight"] == n and s["submitted"] == n]
    first_parked = next((s for s in samples if s["in_flight"] == peak), None)
    out: dict[str, Any] = {
        "peak_in_flight": peak,
        "peak_worker_runs": max(s["worker_runs"] for s in samples),
        "peak_polls_active": max(s["polls_active"] for s in samples),
        "all_in_flight_after_s": first_parked["t"] if first_parked else None,
        "last_done_s": samples[-1]["t"],
        "whole_run": window(samples[0], samples[-1]),
    }
    if len(plateau) >= 2:
        out["plateau"] = window(plateau[0], plateau[-1])
    return out


# ---------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--parts", default="watchers,latency,capacity")
    p.add_argument("--watchers", default="1,20,200")
    p.add_argument("--watch-jobs", type=int, default=3)
    p.add_argument("--watch-job-s", type=float, default=5.0)
    p.add_argument("--watch-poll-s", type=float, default=1.0)
    p.add_argument("--latency-jobs", type=int, default=15)
    p.add_argument("--latency-job-s", type=float, default=3.0)
    p.add_argument("--latency-spread-s", type=float, default=4.0)
    p.add_argument("--latency-gap-s", type=float, default=0.7)
    p.add_argument("--capacity-jobs", type=int, default=500)
    p.add_argument("--capacity-job-s", type=float, default=60.0)
    p.add_argument("--capacity-slots", type=int, default=2)
    p.add_argument("--capacity-poll-s", type=float, default=2.0)
    p.add_argument("--capacity-timeout-s", type=float, default=180.0)
    p.add_argument("--capacity-ticks", default="1.0,0.1",
                   help="upstream_tick_s of the front, one capacity run each")
    p.add_argument("--upstream-slots", type=int, default=1200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="gateway.json")
    args = p.parse_args()
    args.watchers = [int(x) for x in args.watchers.split(",")]
    args.capacity_ticks = [float(x) for x in args.capacity_ticks.split(",")]
    parts = args.parts.split(",")
    if bad := [x for x in parts if x not in ("watchers", "latency", "capacity")]:
        p.error(f"unknown part {bad[0]!r}")
    random.seed(args.seed)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    LOGS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "benchmark": "gateway", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "db": args.db,
        "params": {k: v for k, v in vars(args).items()},
    }
    bench = Bench(args)

    def _term(signum: int, frame: Any) -> None:  # SIGTERM (e.g. timeout): clean up too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    try:
        bench.start_upstream()
        t0 = time.monotonic()
        for part in parts:
            print(f"== {part}", flush=True)
            out[part] = {"watchers": part_watchers, "latency": part_latency,
                         "capacity": part_capacity}[part](bench)
            save_json(args.out, out)
        out["wall_s"] = round(time.monotonic() - t0, 1)
    finally:
        bench.close()
    print(f"wrote {save_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
