"""End to end: jobs/s with N concurrent clients that submit a job and long-poll it to
the end (`GET /v1/jobs/{id}?wait=30` with If-None-Match), and the idle server's
submit-to-start latency (one job at a time).

    ../.venv/bin/python e2e.py [--server uvicorn] [--engine demo/noop] [--jobs 1000]
                               [--clients 32] [--slots 16] [--engine-concurrency 64]

The server is bench/asgi.py under uvicorn or granian with in-process workers
(GENQ_WORKER_SLOTS=--slots, the engine's concurrency set to --engine-concurrency).
Bounded: --jobs jobs at most and --time-limit seconds at most per phase.
Results: out/e2e.json (RESULTS.md is written by report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    CpuWindow,
    engine_input,
    engines_path,
    machine,
    now_iso,
    percentile,
    pyspy_during,
    running_server,
    save_json,
)

TERMINAL = ("succeeded", "failed", "canceled", "expired")


def ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def stats_ms(values: list[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {"n": len(values), "p50_ms": r(percentile(values, 50)),
            "p90_ms": r(percentile(values, 90)), "p99_ms": r(percentile(values, 99)),
            "max_ms": r(max(values) if values else None)}


async def one_job(c: Any, engine: str, inp: dict[str, Any],
                  deadline: float) -> dict[str, Any]:
    """Submit, then long-poll with the previous ETag until the job ends."""
    t0 = time.monotonic()
    r = await c.post("/v1/jobs", json={"engine": engine, "input": inp})
    if r.status_code not in (200, 202):
        return {"error": f"submit {r.status_code}: {r.text[:200]}"}
    job = r.json()
    etag = r.headers.get("etag")
    polls = 0
    while job["status"] not in TERMINAL:
        if time.monotonic() > deadline:
            return {"error": "time limit", "id": job["id"]}
        headers = {"If-None-Match": etag} if etag else {}
        r = await c.get(f"/v1/jobs/{job['id']}", params={"wait": "30"}, headers=headers)
        polls += 1
        if r.status_code == 304:
            continue
        if r.status_code != 200:
            return {"error": f"get {r.status_code}: {r.text[:200]}", "id": job["id"]}
        job, etag = r.json(), r.headers.get("etag")
    t1 = time.monotonic()
    created, started, completed = (ts(job["created_at"]), ts(job["started_at"]),
                                   ts(job["completed_at"]))
    return {
        "id": job["id"],
        "status": job["status"],
        "polls": polls,
        "t_submit": t0,
        "t_observed": t1,
        "submit_to_observed_s": t1 - t0,
        "queue_s": (started - created) if started and created else None,
        "run_s": (completed - started) if completed and started else None,
        "created_to_completed_s": (completed - created) if completed and created else None,
    }


def digest(results: list[dict[str, Any]], wall: float | None = None) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    done = [r for r in ok if r["status"] == "succeeded"]
    out: dict[str, Any] = {
        "submitted": len(results),
        "succeeded": len(done),
        "other_terminal": {s: sum(1 for r in ok if r["status"] == s)
                           for s in TERMINAL[1:] if any(r["status"] == s for r in ok)},
        "errors": [r["error"] for r in results if "error" in r][:10],
        "error_count": sum(1 for r in results if "error" in r),
        "submit_to_start": stats_ms([r["queue_s"] for r in ok if r["queue_s"] is not None]),
        "run": stats_ms([r["run_s"] for r in ok if r["run_s"] is not None]),
        "submit_to_observed_completion": stats_ms([r["submit_to_observed_s"] for r in ok]),
        "polls_per_job_mean": round(sum(r["polls"] for r in ok) / len(ok), 2) if ok else None,
    }
    if wall is not None and ok:
        span = max(r["t_observed"] for r in ok) - min(r["t_submit"] for r in ok)
        out["wall_s"] = round(wall, 2)
        out["span_s"] = round(span, 2)
        out["jobs_per_s"] = round(len(ok) / span, 1) if span > 0 else None
    return out


class AiohttpClient:
    """The few calls `one_job` makes, on aiohttp (a C-accelerated client: the clients
    share the server's two cores, so a lighter client leaves more of them to genq)."""

    def __init__(self, url: str, key: str) -> None:
        import aiohttp

        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=45),
            connector=aiohttp.TCPConnector(limit=4),
        )

    async def __aenter__(self) -> AiohttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def post(self, path: str, json: Any) -> Reply:
        async with self.session.post(self.url + path, json=json) as r:
            return Reply(r.status, await r.read(), r.headers)

    async def get(self, path: str, params: dict[str, Any], headers: dict[str, str]) -> Reply:
        async with self.session.get(self.url + path, params=params, headers=headers) as r:
            return Reply(r.status, await r.read(), r.headers)


class Reply:
    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status_code, self.content, self.headers = status, body, headers

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def make_client(kind: str, url: str, key: str) -> Any:
    if kind == "aiohttp":
        return AiohttpClient(url, key)
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                             timeout=45)


async def throughput(url: str, keys: list[str], engine: str, inp: dict[str, Any], *,
                     jobs: int, time_limit: float, client_kind: str = "aiohttp",
                     ) -> tuple[list[dict[str, Any]], float]:
    """One client per key (account), each on its own connection pool, taking job
    tickets from one shared counter until `jobs` are taken or time is up."""
    results: list[dict[str, Any]] = []
    tickets = iter(range(jobs))
    deadline = time.monotonic() + time_limit

    async def client(key: str) -> None:
        async with make_client(client_kind, url, key) as c:
            for _ in tickets:
                if time.monotonic() > deadline:
                    return
                try:
                    results.append(await one_job(c, engine, inp, deadline))
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    results.append({"error": f"{type(exc).__name__}: {exc}"})

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(k) for k in keys)), time_limit + 60)
    return results, time.monotonic() - t0


async def idle(url: str, key: str, engine: str, inp: dict[str, Any], *, jobs: int,
               gap_s: float, time_limit: float) -> list[dict[str, Any]]:
    results = []
    deadline = time.monotonic() + time_limit
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=45) as c:
        for _ in range(jobs):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(gap_s)  # let the worker go back to waiting
            results.append(await one_job(c, engine, inp, deadline))
    return results


def bench_server(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    inp = engine_input(args.engine, args.input)
    env = {"BENCH_WORKERS": "1", "BENCH_INSTRUMENT": "1" if args.instrument else "0",
           "GENQ_WORKER_SLOTS": str(args.slots),
           "BENCH_ENGINE_CONCURRENCY": str(args.engine_concurrency)}
    with running_server(kind, args.engine, engines_path(args.engine, args.engines_path),
                        accounts=args.clients, **env) as (srv, keys):
        key = keys[0]
        secrets = [k["key"] for k in keys]
        # warm-up: a few jobs so imports, caches and connections are in place
        asyncio.run(idle(srv.url, key["key"], args.engine, inp, jobs=3, gap_s=0,
                         time_limit=60))
        print(f"[{kind}] idle: {args.idle_jobs} jobs one at a time", flush=True)
        httpx.post(srv.url + "/bench/stats", timeout=10)
        idle_res = asyncio.run(idle(srv.url, key["key"], args.engine, inp,
                                    jobs=args.idle_jobs, gap_s=args.idle_gap,
                                    time_limit=args.time_limit))
        idle_sum = digest(idle_res)
        idle_sum["db"] = httpx.get(srv.url + "/bench/stats", timeout=10).json()
        print(f"[{kind}] idle submit->start p50 {idle_sum['submit_to_start']['p50_ms']} ms "
              f"p99 {idle_sum['submit_to_start']['p99_ms']} ms", flush=True)
        print(f"[{kind}] throughput: {args.jobs} jobs, {args.clients} clients", flush=True)
        httpx.post(srv.url + "/bench/stats", timeout=10)
        window = CpuWindow(srv)
        tp_res, wall = asyncio.run(throughput(srv.url, secrets, args.engine, inp,
                                              jobs=args.jobs, time_limit=args.time_limit,
                                              client_kind=args.client))
        cpu = window.done()
        tp_sum = digest(tp_res, wall)
        tp_sum["db"] = httpx.get(srv.url + "/bench/stats", timeout=10).json()
        tp_sum["cpu"] = cpu
        tp_sum["server_cpu_pct"] = cpu["server_pct"]
        tp_sum["client_cpu_pct"] = cpu["client_pct"]
        print(f"[{kind}] {tp_sum['jobs_per_s']} jobs/s; submit->start p50 "
              f"{tp_sum['submit_to_start']['p50_ms']} ms p99 "
              f"{tp_sum['submit_to_start']['p99_ms']} ms; submit->observed p50 "
              f"{tp_sum['submit_to_observed_completion']['p50_ms']} ms p99 "
              f"{tp_sum['submit_to_observed_completion']['p99_ms']} ms; server cpu "
              f"{tp_sum['server_cpu_pct']}% client cpu {tp_sum['client_cpu_pct']}% "
              f"others {cpu['others_pct']}%", flush=True)
        db = tp_sum["db"]
        if db.get("enabled"):
            n = max(1, tp_sum["succeeded"])
            print(f"[{kind}] per job: {db['write_transactions'] / n:.2f} write transactions, "
                  f"{db['write_operations'] / n:.2f} write operations, "
                  f"{db['sql_statements'] / n:.1f} SQL statements, "
                  f"{db['read_operations'] / n:.2f} read operations", flush=True)
        profile = None
        if args.profile_s > 0:
            print(f"[{kind}] py-spy during {args.profile_s}s more of the same load "
                  "(not counted)", flush=True)
            profile = pyspy_during(
                srv.proc.pid if srv.proc else 0, args.profile_s, f"e2e-{kind}",
                lambda: asyncio.run(throughput(srv.url, secrets, args.engine, inp,
                                               jobs=args.jobs, time_limit=args.profile_s - 1,
                                               client_kind=args.client)))
        return {"server": kind, "server_command": " ".join(srv.cmd), "server_env": env,
                "idle": idle_sum, "throughput": tp_sum, "pyspy": profile}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="uvicorn", help="comma-separated: uvicorn, granian")
    p.add_argument("--engine", default="demo/noop")
    p.add_argument("--input", default=None, help="job input JSON (default per engine)")
    p.add_argument("--engines-path", default=None,
                   help="GENQ_ENGINES for the server (default: scenario engines for test/*)")
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--client", default="aiohttp", choices=("aiohttp", "httpx"),
                   help="the load's HTTP client library")
    p.add_argument("--clients", type=int, default=32,
                   help="concurrent clients, each with its own account and connection")
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--engine-concurrency", type=int, default=64)
    p.add_argument("--idle-jobs", type=int, default=50)
    p.add_argument("--idle-gap", type=float, default=0.05)
    p.add_argument("--time-limit", type=float, default=120, help="seconds per phase")
    p.add_argument("--profile-s", type=float, default=8,
                   help="py-spy the server under the same load after the runs (0: off)")
    p.add_argument("--no-instrument", dest="instrument", action="store_false",
                   help="do not count the store's statements (bench/asgi.py BENCH_INSTRUMENT)")
    p.add_argument("--out", default="e2e.json")
    args = p.parse_args()
    kinds = [k.strip() for k in args.server.split(",") if k.strip()]
    for k in kinds:
        if k not in ("uvicorn", "granian"):
            p.error(f"unknown server {k!r} (uvicorn or granian)")
    result: dict[str, Any] = {
        "benchmark": "e2e",
        "date": now_iso(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "engine": args.engine,
        "input": engine_input(args.engine, args.input),
        "params": {k: getattr(args, k) for k in (
            "jobs", "clients", "slots", "engine_concurrency", "idle_jobs", "idle_gap",
            "time_limit", "client")},
        "servers": [],
    }
    for kind in kinds:
        result["servers"].append(bench_server(kind, args))
        save_json(args.out, result)
    path = save_json(args.out, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
