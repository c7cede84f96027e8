"""Hot path: `GET /v1/jobs/{id}` (200 and 304) against a bare ASGI endpoint returning the
same bytes from the same server process, with wrk, on uvicorn and granian (and, for
reference, `genq serve` as shipped).

    ../.venv/bin/python hot_path.py [--server uvicorn,granian,genq-serve] [--engine demo/noop]

For each server: a fresh data dir, --accounts accounts made with `genq keys create
--json` (make_keys.py), one job per account submitted and waited for, then interleaved
wrk runs of each endpoint (wrk_report.lua sends each account's request in turn: genq
rate-limits per account), repeated; then, with py-spy installed, a profiled run.
Results: out/hot_path.json (RESULTS.md is written by report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    SERVERS,
    engine_input,
    engines_path,
    machine,
    now_iso,
    pyspy_during,
    running_server,
    save_json,
    wrk,
    write_targets,
)


TERMINAL = ("succeeded", "failed", "canceled", "expired")


async def _one_job(c: httpx.AsyncClient, key: str, engine: str,
                   inp: dict[str, Any]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {key}"}
    r = await c.post("/v1/jobs", json={"engine": engine, "input": inp},
                     headers={**auth, "Prefer": "wait=30"})
    if r.status_code not in (200, 202):
        raise RuntimeError(f"submit failed: {r.status_code} {r.text}")
    job_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        r = await c.get(f"/v1/jobs/{job_id}", params={"wait": 5}, headers=auth)
        r.raise_for_status()
        job: dict[str, Any] = r.json()
        if job["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']}")
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return {"id": job_id, "etag": r.headers["etag"], "body": r.content,
            "auth": auth["Authorization"]}


def jobs_for(url: str, keys: list[dict[str, Any]], engine: str,
             inp: dict[str, Any]) -> list[dict[str, Any]]:
    """One succeeded job per account, submitted concurrently."""
    async def main() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return list(await asyncio.gather(*(_one_job(c, k["key"], engine, inp)
                                               for k in keys)))
    return asyncio.run(main())


def check_endpoints(url: str, job: dict[str, Any], key: dict[str, Any],
                    bench_routes: bool) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": job["auth"]}, timeout=30) as c:
        r = c.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": job["etag"]})
        assert r.status_code == 304, f"expected 304, got {r.status_code}"
        if not bench_routes:
            return
        r = c.post("/bench/raw", params={"job_id": job["id"], "account_id": key["account_id"]})
        assert r.status_code == 204, r.text
        genq = c.get(f"/v1/jobs/{job['id']}")
        for path in ("/bench/raw", "/bench/fastapi"):
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert r.content == genq.content == job["body"], f"{path} bytes differ from genq's"
            assert r.headers["etag"] == genq.headers["etag"]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(runs, key=lambda r: r["rps"])
    return {
        "best_rps": round(best["rps"], 1),
        "median_rps": round(statistics.median(r["rps"] for r in runs), 1),
        "all_rps": [round(r["rps"], 1) for r in runs],
        "best_latency_us": best["latency_us"],
        "p99_us_median": statistics.median(r["latency_us"]["p99"] for r in runs),
        "server_cpu_pct": best["server_cpu_pct"],
        "cpu": best["cpu"],
        "others_cpu_pct_max": max(r["cpu"]["others_pct"] for r in runs),
        "errors": sum(r["non_2xx_3xx"] + sum(r["socket_errors"].values()) for r in runs),
        "command": best["command"],
    }


def bench_server(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = args.engine
    inp = engine_input(engine, args.input)
    with running_server(kind, engine, engines_path(engine, args.engines_path),
                        accounts=args.accounts, BENCH_WORKERS="1") as (srv, keys):
        print(f"[{kind}] {len(keys)} accounts, one {engine} job each", flush=True)
        jobs = jobs_for(srv.url, keys, engine, inp)
        check_endpoints(srv.url, jobs[0], keys[0], srv.has_bench_routes)
        files = {
            "genq": write_targets(f"{kind}-genq", [
                (f"/v1/jobs/{j['id']}", j["auth"], "") for j in jobs]),
            "genq_304": write_targets(f"{kind}-genq_304", [
                (f"/v1/jobs/{j['id']}", j["auth"], j["etag"]) for j in jobs]),
            "bare": write_targets(f"{kind}-bare", [
                ("/bench/raw", j["auth"], "") for j in jobs]),
            "fastapi_floor": write_targets(f"{kind}-fastapi_floor", [
                ("/bench/fastapi", j["auth"], "") for j in jobs]),
        }
        names = ["genq", "bare", "genq_304", "fastapi_floor"]
        if not srv.has_bench_routes:
            names = ["genq", "genq_304"]
        opts = {"threads": args.threads, "connections": args.connections, "server": srv}
        print(f"[{kind}] warm-up {args.warmup}s", flush=True)
        wrk(srv.url, files["genq"], duration=args.warmup, **opts)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for rep in range(args.repeats):
            order = names if rep % 2 == 0 else list(reversed(names))
            for name in order:
                res = wrk(srv.url, files[name], duration=args.duration, **opts)
                lat = res["latency_us"]
                print(f"[{kind}] rep {rep + 1} {name:14s} {res['rps']:9.0f} req/s  "
                      f"p50 {lat['p50'] / 1000:6.2f} ms  p99 {lat['p99'] / 1000:6.2f} ms  "
                      f"cpu server {res['cpu']['server_pct']}% wrk {res['cpu']['tool_pct']}% "
                      f"others {res['cpu']['others_pct']}%  "
                      f"errors {res['non_2xx_3xx'] + sum(res['socket_errors'].values())}",
                      flush=True)
                runs[name].append(res)
        profile = None
        if args.profile_s > 0:
            print(f"[{kind}] py-spy on genq 200 for {args.profile_s}s (not counted)", flush=True)
            profile = pyspy_during(srv.proc.pid if srv.proc else 0, args.profile_s,
                                   f"hot_path-{kind}",
                                   lambda: wrk(srv.url, files["genq"],
                                               duration=args.profile_s - 1, **opts))
        summary = {name: summarize(rs) for name, rs in runs.items()}
        if "bare" in summary:
            pairs = [g["rps"] / b["rps"] for g, b in zip(runs["genq"], runs["bare"], strict=True)]
            summary["ratio_genq_over_bare"] = {
                "best": round(summary["genq"]["best_rps"] / summary["bare"]["best_rps"], 3),
                "per_repeat": [round(p, 3) for p in pairs],
            }
            summary["ratio_304_over_bare"] = round(
                summary["genq_304"]["best_rps"] / summary["bare"]["best_rps"], 3)
            summary["ratio_floor_over_bare"] = round(
                summary["fastapi_floor"]["best_rps"] / summary["bare"]["best_rps"], 3)
        return {
            "server": kind,
            "server_command": " ".join(srv.cmd),
            "accounts": len(keys),
            "body_bytes": len(jobs[0]["body"]),
            "summary": summary,
            "pyspy": profile,
            "runs": {n: [{k: v for k, v in r.items()} for r in rs] for n, rs in runs.items()},
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="uvicorn,granian,genq-serve",
                   help=f"comma-separated, of {', '.join(SERVERS)}")
    p.add_argument("--engine", default="demo/noop")
    p.add_argument("--input", default=None, help="job input JSON (default per engine)")
    p.add_argument("--engines-path", default=None,
                   help="GENQ_ENGINES for the server (default: scenario engines for test/*)")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--accounts", type=int, default=64,
                   help="accounts (API keys, one job each) the requests are spread over")
    p.add_argument("--profile-s", type=float, default=8,
                   help="py-spy the server under wrk for this long after the runs (0: off)")
    p.add_argument("--out", default="hot_path.json")
    args = p.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found (make -C bench all installs it)", file=sys.stderr)
        return 2
    kinds = [k.strip() for k in args.server.split(",") if k.strip()]
    for k in kinds:
        if k not in SERVERS:
            p.error(f"unknown server {k!r}")
    result: dict[str, Any] = {
        "benchmark": "hot_path",
        "date": now_iso(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "engine": args.engine,
        "input": engine_input(args.engine, args.input),
        "params": {k: getattr(args, k) for k in (
            "duration", "warmup", "repeats", "threads", "connections", "accounts")},
        "servers": [],
    }
    for kind in kinds:
        result["servers"].append(bench_server(kind, args))
        save_json(args.out, result)  # partial results survive a later failure
    path = save_json(args.out, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
