"""Write bench/RESULTS.md from bench/out/*.json (what `make bench` leaves there).

    ../.venv/bin/python report.py

Every number in RESULTS.md comes from those files; the readings are worded from the
numbers, so they stay true when the benchmarks are run again. The figures "before" come
from the last run of the benchmarks on the previous core (bench/RESULTS.md of
2026-11-22, same machine kind), quoted in BEFORE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH, BENCH_PLANS, OUT, now_iso  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
KEPT = "<!-- The sections below are written by their own scripts"


def load(name: str) -> dict[str, Any] | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def machine_section(m: dict[str, Any]) -> list[str]:
    v = m["versions"]
    rows = [
        ("CPUs (`nproc`)", str(m["nproc"])),
        ("CPU model (/proc/cpuinfo)", m["cpu_model"]),
        ("RAM", f"{m['ram_gib']} GiB"),
        ("kernel", m.get("kernel", "-")),
        ("Python", m["python"]),
        ("servers", f"uvicorn {v.get('uvicorn')} (uvloop {v.get('uvloop')}, httptools "
                    f"{v.get('httptools')}), granian {v.get('granian')}"),
        ("framework", f"FastAPI {v.get('fastapi')}, Starlette {v.get('starlette')}, "
                      f"pydantic {v.get('pydantic')}, limits {v.get('limits')}"),
        ("database drivers", f"sqlite3 (Python's), psycopg {v.get('psycopg')}; "
                             f"SQLAlchemy {v.get('sqlalchemy')} for the schema and Alembic"),
        ("genq", str(v.get("genq"))),
        ("load generators", f"{m.get('wrk')}; e2e clients: aiohttp {v.get('aiohttp')}, "
                            f"httpx {v.get('httpx')}"),
    ]
    out = ["| | |", "| --- | --- |"]
    out += [f"| {k} | {val} |" for k, val in rows]
    return out


ENDPOINTS = {
    "genq": "genq `GET /v1/jobs/{id}` → 200",
    "genq_304": "genq `GET /v1/jobs/{id}` + If-None-Match → 304",
    "bare": "bare ASGI `/bench/raw` → 200, same bytes",
    "fastapi_floor": "FastAPI route `/bench/fastapi` → 200, same bytes",
}


def hot_path_section(h: dict[str, Any]) -> list[str]:
    p = h["params"]
    out = [
        "## 1. Hot path: `GET /v1/jobs/{id}`",
        "",
        f"Run {h['date']} with `cd bench && {h['command']}` (engine `{h['engine']}`, input "
        f"`{json.dumps(h['input'])}`).",
        "",
        f"Each server gets a fresh data dir, {p['accounts']} accounts (one API key and one "
        f"succeeded `{h['engine']}` job each, made with `genq keys create --json`), then "
        f"`wrk -t{p['threads']} -c{p['connections']} -d{p['duration']:g}s --latency` with "
        "`wrk_report.lua`, which sends each account's request in turn (genq limits requests "
        "per account, so one key would only measure its rate limiter). Every endpoint is "
        f"run {p['repeats']}× for {p['duration']:g} s, interleaved (A B C D, then D C B A) "
        f"after a {p['warmup']:g} s warm-up; the table gives the best run (its p50/p99) and the "
        "median of the runs. *bare* is a raw ASGI callable in front of genq's app in the "
        "**same server process** (bench/asgi.py) that returns the same body bytes with the "
        "same content headers (genq's response also carries its ~80 bytes of RateLimit headers); *FastAPI floor* is a do-nothing route on genq's own FastAPI app (same "
        "middleware, same router, placed where the jobs routes are matched) returning those "
        "bytes. `genq serve` is the command users run, measured as shipped (uvicorn "
        "with uvloop and httptools, access log off unless `--access-log`); it has no bare "
        "endpoint.",
        "",
        "| server | endpoint | best req/s | median req/s | p50 ms | p99 ms | p99.9 ms "
        "| server CPU | others' CPU | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for srv in h["servers"]:
        for name, s in srv["summary"].items():
            if not isinstance(s, dict) or "best_rps" not in s:
                continue
            lat = s["best_latency_us"]
            out.append(
                f"| {srv['server']} | {ENDPOINTS.get(name, name)} | {num(s['best_rps'])} | "
                f"{num(s['median_rps'])} | {ms(lat.get('p50'))} | {ms(lat.get('p99'))} | "
                f"{ms(lat.get('p999'))} | {pct(s.get('server_cpu_pct'))} | "
                f"{pct(s.get('others_cpu_pct_max'))} | {s['errors']} |")
    kinds: dict[str, int] = {}
    for srv in h["servers"]:
        for rs in srv.get("runs", {}).values():
            for r in rs:
                if r.get("non_2xx_3xx"):
                    kinds["non-2xx/3xx status"] = kinds.get("non-2xx/3xx status", 0) + r["non_2xx_3xx"]
                for k, v in (r.get("socket_errors") or {}).items():
                    if v:
                        kinds[f"socket {k}"] = kinds.get(f"socket {k}", 0) + v
    out += ["", "*errors* adds wrk's non-2xx/3xx responses and socket errors over the runs "
            "of that row; " + (("in all: " + ", ".join(f"{v} {k}" for k, v in kinds.items())
                                + " (a socket timeout is a request unanswered after wrk's "
                                "2 s timeout).") if kinds else "there were none.")]
    out += ["", "Ratios (best req/s over best req/s; per repeat in brackets):", "",
            "| server | genq / bare | genq 304 / bare | FastAPI floor / bare | genq / FastAPI floor |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for srv in h["servers"]:
        s = srv["summary"]
        if "ratio_genq_over_bare" not in s:
            continue
        r = s["ratio_genq_over_bare"]
        per = ", ".join(f"{x:.2f}" for x in r["per_repeat"])
        floor = s["genq"]["best_rps"] / s["fastapi_floor"]["best_rps"]
        out.append(f"| {srv['server']} | **{r['best']:.2f}** ({per}) | "
                   f"{s['ratio_304_over_bare']:.2f} | {s['ratio_floor_over_bare']:.2f} | "
                   f"{floor:.2f} |")
    out += ["", "Server commands (`$PORT` is a free loopback port; environment: "
            "`GENQ_DATA_DIR`, `GENQ_PORT`, `GENQ_PLANS` with the bench plan, "
            "`PYTHONPATH=<repo>`, `BENCH_WORKERS=1`):", ""]
    for srv in h["servers"]:
        cmd = srv["server_command"].replace(str(Path(sys.executable)), "python")
        out.append(f"- {srv['server']}: `{_portless(cmd)}`")
    ex = h["servers"][0]["summary"]["genq"]["command"]
    out += ["", f"wrk, e.g.: `{_portless(ex)}` (the .tsv lists the path, key and ETag of "
            "each account's job; kept in `out/wrk/`)."]
    out += ["", "**Reading.** " + hot_path_reading(h)]
    return out


def _portless(cmd: str) -> str:
    import re

    cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", cmd)
    cmd = re.sub(r"--port \d+", "--port $PORT", cmd)
    cmd = re.sub(r"/tmp/genq-bench-\w+/data", "$DATA", cmd)
    cmd = re.sub(r"\S*/\.venv/bin/python\S*", "python", cmd)
    cmd = re.sub(r"\S*/\.venv/bin/py-spy", "py-spy", cmd)
    cmd = re.sub(r"--pid \d+", "--pid $SERVER_PID", cmd)
    cmd = cmd.replace(str(BENCH) + "/", "")
    return re.sub(r"out/wrk/[\w-]+\.tsv", "out/wrk/<server>-<endpoint>.tsv", cmd)


def hot_path_reading(h: dict[str, Any]) -> str:
    by = {s["server"]: s["summary"] for s in h["servers"]}
    parts = []
    with_bare = {k: v for k, v in by.items() if "ratio_genq_over_bare" in v}
    for name, g in with_bare.items():
        r = g["ratio_genq_over_bare"]["best"]
        r304 = g["ratio_304_over_bare"]
        parts.append(
            f"On {name} genq answers a cached job at {num(g['genq']['best_rps'])} req/s, "
            f"{r:.2f}× the bare endpoint in the same process ({num(g['bare']['best_rps'])} "
            f"req/s; the target is 0.6×), and the 304 at {r304:.2f}×"
            + (" (no slower than the 200)." if g['genq_304']['best_rps']
               >= 0.95 * g['genq']['best_rps'] else " (slower than the 200: see the rows).")
        )
    if with_bare:
        g = next(iter(with_bare.values()))
        parts.append(
            f"The do-nothing FastAPI route reaches {g['ratio_floor_over_bare']:.2f}× bare: "
            "genq's read no longer goes through the framework at all (it is answered before "
            "FastAPI's router, section 2), so it beats the framework's own floor.")
    if "genq-serve" in by and by.get("uvicorn"):
        gs = by["genq-serve"]["genq"]["best_rps"]
        uv = by["uvicorn"]["genq"]["best_rps"]
        parts.append(
            f"`genq serve` as shipped does {num(gs)} req/s, {gs / uv:.2f}× the uvicorn "
            "command above (the same server; `genq serve` adds its worker and the "
            "event follower in the same process).")
    busy = max((s["genq"].get("others_cpu_pct_max") or 0) for s in by.values())
    parts.append(
        "wrk and the server share the 2 cores. "
        + (f"Other work on the machine used up to {busy:.0f}% of a core during some runs "
           "(column *others' CPU*); ratios within one server process are the robust result."
           if busy >= 15 else
           "Other processes used little CPU during the runs (column *others' CPU*)."))
    return " ".join(parts)


def profile_section(pr: dict[str, Any] | None, h: dict[str, Any] | None) -> list[str]:
    out = ["## 2. Where the time goes", ""]
    if pr:
        us = pr["us_per_request"]
        per = pr.get("per_request", {})
        out += [
            f"In-process, no network and no HTTP server (`cd bench && {pr['command']}`, "
            f"{pr['date']}, {pr.get('accounts', 1)} accounts taken in turn): the bench ASGI app is called directly with a prepared scope, "
            "best of 3 × "
            f"{pr['n']} sequential requests on uvloop. Thread-pool hops are counted by "
            "wrapping `anyio.to_thread.run_sync` and `asyncio.to_thread`, plus the store's "
            "operations (one hop each); SQL statements by the store's own counter.",
            "",
            "| endpoint | µs per request | thread-pool hops per request (anyio + asyncio) "
            "| SQL statements per request |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in ("bare", "fastapi_floor", "genq", "genq_304"):
            if name in us:
                p = per.get(name, {})
                hops = (f"{p.get('anyio_thread_hops', 0):.2f} + "
                        f"{p.get('asyncio_thread_hops', 0):.2f}") if p else "-"
                out.append(f"| {ENDPOINTS[name]} | {us[name]:.1f} | {hops} | "
                           f"{p.get('sql_statements', 0):.3f} |")
        g, f = us.get("genq"), us.get("fastapi_floor")
        if g and f:
            pg = per.get("genq", {})
            hops = []
            if pg.get("anyio_thread_hops", 0) > 0.05:
                hops.append(f"{pg['anyio_thread_hops']:.2f} anyio thread-pool round trips per "
                            "request (FastAPI runs a plain `def` dependency in the thread pool)")
            if pg.get("asyncio_thread_hops", 0) > 0.05:
                hops.append(f"{pg['asyncio_thread_hops']:.2f} `asyncio.to_thread` round trips "
                            "per request (from a library, e.g. the rate limiter's storage)")
            b = us.get("bare", 0.0)
            out += ["", f"genq's read costs {g - b:.1f} µs more than bare per request "
                    f"in-process, {f / g:.1f}× less than the do-nothing FastAPI route. "
                    + (("It makes " + " and ".join(hops) + ". ") if hops else
                       "It makes no thread-pool round trips and sends no SQL. ")
                    + "What is left is the key check (a SHA-256 and a dict lookup), the "
                    "rate-limit counter (`limits`' memory storage, about half of it: see "
                    "the profile), the cache lookup and the two ASGI messages. Before: "
                    f"{BEFORE['hot_us']:.0f} µs per request (FastAPI's dependency solving "
                    "was 57% of it)."]
        out += ["", "cProfile of the genq route (top by own time; full lists in "
                "`out/profile_hot_path.txt`):", "", "```"]
        out += _trim_pstats(pr["profile"]["tottime"], 22)
        out += ["```"]
    if h:
        for srv in h["servers"]:
            spy = srv.get("pyspy")
            if not spy or "self" not in spy:
                continue
            out += ["", f"py-spy on the {srv['server']} server process while wrk loads genq's "
                    f"route ({spy['samples']} samples while a thread held the GIL, "
                    f"`{_portless(spy['command'])}`): functions by own samples, and genq's "
                    "own functions by inclusive samples (genq's ASGI middlewares wrap the "
                    "whole request, so they top the inclusive list).", "",
                    "| own % | function | | incl. % | genq function |",
                    "| ---: | --- | --- | ---: | --- |"]
            mine = spy.get("genq", [])
            for i in range(12):
                a = spy["self"][i] if i < len(spy["self"]) else None
                b = mine[i] if i < len(mine) else None
                out.append(
                    f"| {a['pct'] if a else ''} | {('`' + a['function'] + '`') if a else ''} | "
                    f"| {b['pct'] if b else ''} | {('`' + b['function'] + '`') if b else ''} |")
            break  # one server is enough here; all are in out/hot_path.json
    return out


def _trim_pstats(text: str, n: int) -> list[str]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return [line.rstrip() for line in lines[start:start + n + 1]]


# The previous core, measured by these scripts on 2026-11-22 (bench/RESULTS.md then).
BEFORE = {
    "e2e_jobs_per_s": 18.4,  # granian; uvicorn 17.1
    "statements_per_job": 41,
    "write_txns_per_job": 4.6,
    "thread_hops_per_job": 287,
    "hot_ratio": 0.13,
    "hot_us": 488.5,
    "sse_clients": 2000,
    "sse_notify_all_s": 14.8,
    "sse_kib_per_connection": 41.7,
    "scale_ratio_sqlite": 1.45,
    "pg_1w_jobs_per_s": 20.7,
    "pg_2w_jobs_per_s": 18.7,
}


def stat(d: dict[str, Any] | None, key: str = "p50_ms") -> str:
    return "-" if not d or d.get(key) is None else f"{d[key]:.1f}"


def e2e_section(e: dict[str, Any]) -> list[str]:
    p = e["params"]
    out = [
        "## 3. End to end on SQLite: jobs per second",
        "",
        f"Run {e['date']} with `cd bench && {e['command']}` (engine `{e['engine']}`, input "
        f"`{json.dumps(e['input'])}`).",
        "",
        f"The server is bench/asgi.py with in-process workers (`GENQ_WORKER_SLOTS="
        f"{p['slots']}`, the engine's concurrency {p['engine_concurrency']}, the bench plan). "
        f"{p['clients']} concurrent clients ({p.get('client', 'httpx')}, one account and "
        f"connection pool each) share {p['jobs']} job tickets; each submits `POST /v1/jobs`, "
        "then long-polls `GET /v1/jobs/{id}?wait=30` with If-None-Match until the job is "
        f"terminal. Idle: {p['idle_jobs']} jobs one at a time. submit → start is the job's "
        "`started_at − created_at` (server clock, ms); submit → observed is from before "
        "the client's POST to the answer that shows the job ended. The store's own counters "
        "give the database's work per job under this load.",
        "",
        "| server | jobs done | jobs/s | submit→start p50 / p99 ms | submit→observed "
        "p50 / p99 ms | statements / write txns / store ops per job | server CPU | client "
        "CPU | others' CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for srv in e["servers"]:
        t = srv["throughput"]
        c = t.get("cpu", {})
        db = t.get("db") or {}
        n = max(1, t["succeeded"])
        costs = "-"
        if db.get("enabled"):
            ops = (db["write_operations"] + db["read_operations"]) / n
            costs = (f"{db['sql_statements'] / n:.1f} / {db['write_transactions'] / n:.2f} / "
                     f"{ops:.2f}")
        out.append(
            f"| {srv['server']} | {t['succeeded']}/{t['submitted']} | "
            f"**{num(t.get('jobs_per_s'), '{:.1f}')}** | "
            f"{num(t['submit_to_start']['p50_ms'], '{:.0f}')} / "
            f"{num(t['submit_to_start']['p99_ms'], '{:.0f}')} | "
            f"{num(t['submit_to_observed_completion']['p50_ms'], '{:.0f}')} / "
            f"{num(t['submit_to_observed_completion']['p99_ms'], '{:.0f}')} | {costs} | "
            f"{pct(c.get('server_pct'))} | {pct(c.get('client_pct'))} | "
            f"{pct(c.get('others_pct'))} |")
    out += ["", "Idle server, one job at a time:", "",
            "| server | jobs | submit→start p50 / p99 ms | submit→observed p50 / p99 ms |",
            "| --- | ---: | ---: | ---: |"]
    for srv in e["servers"]:
        i = srv["idle"]
        out.append(
            f"| {srv['server']} | {i['succeeded']}/{i['submitted']} | "
            f"{num(i['submit_to_start']['p50_ms'], '{:.0f}')} / "
            f"{num(i['submit_to_start']['p99_ms'], '{:.0f}')} | "
            f"{num(i['submit_to_observed_completion']['p50_ms'], '{:.0f}')} / "
            f"{num(i['submit_to_observed_completion']['p99_ms'], '{:.0f}')} |")
    best = max(e["servers"], key=lambda s: s["throughput"].get("jobs_per_s") or 0)
    t = best["throughput"]
    db = t.get("db") or {}
    reading = (
        f"**Reading.** {num(t.get('jobs_per_s'), '{:.0f}')} no-op jobs a second on "
        f"{best['server']} (before: {BEFORE['e2e_jobs_per_s']}). ")
    if db.get("enabled"):
        n = max(1, t["succeeded"])
        reading += (
            f"Under this load the SQLite writer commits {db['write_operations'] / n:.2f} "
            f"operations per job in {db['write_transactions'] / n:.2f} transactions: group "
            "commit puts the submissions, claims and finishes that arrive together in one "
            "transaction (and one claim takes several jobs), so a job costs less than its "
            "three transitions. ")
    c = t.get("cpu", {})
    reading += (
        f"The server used {pct(c.get('server_pct'))} of a core and the clients "
        f"{pct(c.get('client_pct'))}: one Python process, bound by its own CPU (section 9).")
    out += ["", reading]
    return out


def scale_section(s: dict[str, Any] | None, peers: dict[str, dict[str, Any]]) -> list[str]:
    out = ["## 4. SQLite, PostgreSQL with 1 and 2 worker processes, and the peers", ""]
    if s:
        p = s["params"]
        out += [
            f"`cd bench && {s['command']}` ({s['date']}): a fresh database per configuration, "
            f"uvicorn serving bench/asgi.py, {p['clients']} clients (one account each) that "
            f"submit `{p['engine']}` and long-poll it to the end, {p['jobs']} jobs; then idle "
            "submit → start. `sqlite`: in-process workers. `pg-Nw`: PostgreSQL on the same "
            "machine, an API-only server and N `genq worker` processes "
            f"({p['slots']} slots each), genq's own claim and LISTEN/NOTIFY. *genq CPU* is the "
            "API server's and the workers' processes together (PostgreSQL's backends not "
            "included), as a share of one core.",
            "",
            "| system | jobs/s | submit→start p50 / p99 ms (load) | submit→observed p50 / p99 "
            "ms | idle submit→start p50 / p99 ms | genq CPU |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for c in s["configs"]:
            t, i = c["throughput"], c["idle"]
            out.append(
                f"| genq {c['config']} | **{num(t.get('jobs_per_s'), '{:.0f}')}** | "
                f"{stat(t['submit_to_start'])} / {stat(t['submit_to_start'], 'p99_ms')} | "
                f"{stat(t['submit_to_observed_completion'])} / "
                f"{stat(t['submit_to_observed_completion'], 'p99_ms')} | "
                f"{stat(i['submit_to_start'])} / {stat(i['submit_to_start'], 'p99_ms')} | "
                f"{pct(t.get('genq_cpu_pct'))} |")
    labels = {
        "celery": "Celery + Redis (threads pool; the client waits on the Redis result "
                  "backend)",
        "procrastinate": "Procrastinate alone (PostgreSQL; the client polls the job's "
                         "status)",
        "pgqueuer": "PgQueuer alone (PostgreSQL; the client waits on its completion "
                    "watcher)",
    }
    for name, d in peers.items():
        t, i = d.get("throughput", {}), d.get("idle", {})
        out.append(
            f"| {labels.get(name, name)} {d.get('versions', {}).get(name, '')} | "
            f"**{num(d.get('jobs_per_s'), '{:.0f}')}** | "
            f"{stat(t.get('submit_to_start'))} / {stat(t.get('submit_to_start'), 'p99_ms')} | "
            f"{stat(t.get('submit_to_observed_completion'))} / "
            f"{stat(t.get('submit_to_observed_completion'), 'p99_ms')} | "
            f"{stat(i.get('submit_to_start'))} / {stat(i.get('submit_to_start'), 'p99_ms')} | "
            "- |")
    if peers:
        out += ["", "The peers run the same no-op job with the same number of clients and "
                "jobs, each in its own venv under `bench/peers/` (`make -C bench peers`; "
                "their scripts' docstrings say exactly how), in the same `make bench` run. "
                "They do one thing (enqueue a function call, run it); a genq job also goes "
                "through HTTP (auth, rate limit, validation), a credit hold and settlement, "
                "an event log, fenced and leased worker writes, and is read back over HTTP."]
    if s:
        by = {c["config"]: c["throughput"].get("jobs_per_s") or 0 for c in s["configs"]}
        parts = []
        celery = peers.get("celery", {}).get("jobs_per_s")
        if celery and "sqlite" in by:
            parts.append(f"genq on SQLite does {by['sqlite'] / celery:.2f}× Celery + Redis")
        for peer in ("procrastinate", "pgqueuer"):
            v = peers.get(peer, {}).get("jobs_per_s")
            if v and "pg-2w" in by:
                parts.append(f"genq on PostgreSQL with 2 workers {by['pg-2w'] / v:.2f}× "
                             f"{peer.capitalize()} alone")
        reading = "**Reading.** " + ("; ".join(parts) + ". " if parts else "")
        reading += (
            f"Before this change: SQLite {BEFORE['e2e_jobs_per_s']}, PostgreSQL 1 worker "
            f"{BEFORE['pg_1w_jobs_per_s']}, 2 workers {BEFORE['pg_2w_jobs_per_s']} jobs/s. ")
        if by.get("pg-2w") and by.get("pg-1w"):
            more = by["pg-2w"] >= by["pg-1w"]
            reading += (
                f"A second worker process {'raises' if more else 'does not raise'} "
                f"PostgreSQL's throughput here ({by['pg-1w']:.0f} → {by['pg-2w']:.0f}): on one "
                "2-core machine the API server, the workers, PostgreSQL and the 32 clients "
                "share two cores, so another process adds CPU demand, not capacity (genq "
                "CPU is near one core, PostgreSQL's backends and the clients take the rest); "
                "what it adds is room for more hosts. ")
        reading += (
            "A genq job is three transactions with their events, NOTIFYs and ledger rows and "
            "three HTTP requests (submit, then a long-poll that returns at the start and "
            "another at the end); a peer's job is an enqueue, a fetch and an "
            "acknowledgement. Procrastinate is no longer in genq's dispatch: with it, every "
            "job also carried a token through Procrastinate's own queue beside genq's claim "
            f"(before: {BEFORE['pg_2w_jobs_per_s']} jobs/s with 2 workers); PgQueuer, the "
            "fastest peer here, has no per-engine or per-account limits, leases or fencing "
            "to give genq's claim, so it would sit beside genq's claim rather than replace it.")
        out += ["", reading]
    return out


def notify_section(n: dict[str, Any]) -> list[str]:
    p = n["params"]
    out = [
        "## 5. Notification latency and idle SSE fan-out",
        "",
        f"`cd bench && {n['command']}` ({n['date']}); the script's docstring says exactly "
        "what is measured. Latency is from a job's `completed_at` (stamped just before its "
        "finishing commit) to the moment the client holds the news; "
        f"{p['jobs']} `demo/noop` jobs per channel, one at a time.",
        "",
        "| channel | jobs | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    names = {"job_sse": "SSE, the job's stream `/v1/jobs/{id}/events`",
             "long_poll": "long-poll `?wait=30` + If-None-Match",
             "account_sse": "SSE, the account's stream `/v1/events`",
             "webhook": "webhook (signed, local receiver)"}
    for k, v in n["latency"].items():
        out.append(f"| {names.get(k, k)} | {v['n']} | {v['p50_ms']} | {v['p99_ms']} | "
                   f"{v['max_ms']} |")
    f = n["fanout"]
    out += [
        "",
        f"Idle fan-out: {f['connected']:,} of {f['clients']:,} raw SSE connections "
        f"({f['per_job']:,} per job, on {f['jobs']} running jobs) to one server process, "
        f"{f['failed']} failed. Server RSS {f['rss_before_mb']} → {f['rss_after_mb']} MiB: "
        f"**{f['kb_per_connection']} KiB per connection**. Then the jobs were canceled: all "
        f"{f['told']:,} clients held their `completed` frame **within {f['notify_all_s']} s** "
        f"of the first cancel (p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms); the server "
        f"spent {f['notify_server_cpu_us_per_client']} µs of CPU per client.",
        "",
        f"**Reading.** Before: {BEFORE['sse_clients']:,} clients at "
        f"{BEFORE['sse_kib_per_connection']} KiB each took {BEFORE['sse_notify_all_s']} s to "
        "all hear of their job's end. Each change is now turned into its SSE frame once per "
        "job and handed to every subscriber (section `genq.api.streams`): no subscriber reads "
        "the database or renders anything; a subscriber is its connection, one coroutine, "
        "one pending `receive()` and one future while it waits. What is left is one send "
        "per subscriber, bound by the one process's CPU.",
    ]
    return out


def status_scale_section(s: dict[str, Any]) -> list[str]:
    out = [
        "## 6. Status reads with 1,000 vs 1,000,000 jobs",
        "",
        f"`cd bench && {s['command']}` ({s['date']}); the script's docstring says how the "
        "table is loaded and that every point read misses genq's cache (it runs with "
        "`GENQ_JOB_CACHE_BYTES=0`).",
        "",
        "| database | jobs | point read p50 / p99 ms | first page p50 / p99 ms | deep page "
        "p50 / p99 ms | queued page p50 / p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    runs = s["runs"]
    for r in runs:
        rd = r["reads"]
        out.append(
            f"| {r['db']} | {r['jobs']:,} | {stat(rd['point_cold'])} / "
            f"{stat(rd['point_cold'], 'p99_ms')} | {stat(rd['page_first'])} / "
            f"{stat(rd['page_first'], 'p99_ms')} | {stat(rd['page_deep'])} / "
            f"{stat(rd['page_deep'], 'p99_ms')} | {stat(rd.get('page_queued'))} / "
            f"{stat(rd.get('page_queued'), 'p99_ms')} |")
    ratios = []
    for db in sorted({r["db"] for r in runs}):
        mine = sorted((r for r in runs if r["db"] == db), key=lambda r: r["jobs"])
        if len(mine) >= 2:
            a, b = mine[0]["reads"], mine[-1]["reads"]
            ratios.append(
                f"{db}: point read p50 {b['point_cold']['p50_ms'] / a['point_cold']['p50_ms']:.2f}×"
                f", first page {b['page_first']['p50_ms'] / a['page_first']['p50_ms']:.2f}×, "
                f"queued page {b['page_queued']['p50_ms'] / a['page_queued']['p50_ms']:.2f}×")
    out += ["", f"**Reading.** {mine[-1]['jobs']:,} / {mine[0]['jobs']:,} jobs, p50: "
            + "; ".join(ratios) + f" (target: ≤ 1.2× on SQLite; before: "
            f"{BEFORE['scale_ratio_sqlite']}×). Every read is one statement on an index "
            "(plans in `out/status_scale.json`), so the table's size barely shows."]
    return out


def costs_section(c: dict[str, Any] | None, e: dict[str, Any] | None) -> list[str]:
    out = [
        "## 7. What a job costs the database, before and after",
        "",
        "A `demo/noop` job end to end through the HTTP API. Before: the previous core, "
        "measured on 2026-11-22. After, one job at a time: `cd bench && costs.py` (the "
        "store's own counters; `tests/integration/test_costs.py` fails the build above 12 "
        "statements or 3 write transactions). A store operation is one thread hop (before: "
        "every statement was an aiosqlite hop).",
        "",
        "| | SQL statements | write transactions | thread hops (store operations) |",
        "| --- | ---: | ---: | ---: |",
        f"| before (SQLite) | {BEFORE['statements_per_job']} | {BEFORE['write_txns_per_job']} "
        f"| {BEFORE['thread_hops_per_job']} |",
    ]
    if c:
        for d in c["databases"]:
            pj = d["per_job"]
            ops = pj["write_ops"]["median"] + pj["read_ops"]["median"]
            out.append(f"| after, {d['database']}, one job at a time | "
                       f"{pj['statements']['median']:g} | {pj['write_txns']['median']:g} | "
                       f"{ops:g} |")
    if e:
        for srv in e["servers"]:
            t = srv["throughput"]
            db = t.get("db") or {}
            if db.get("enabled"):
                n = max(1, t["succeeded"])
                ops = (db["write_operations"] + db["read_operations"]) / n
                out.append(f"| after, SQLite, under load (section 3, {srv['server']}) | "
                           f"{db['sql_statements'] / n:.1f} | "
                           f"{db['write_transactions'] / n:.2f} | {ops:.2f} |")
    if c:
        idle = ", ".join(f"{d['database']} {d['idle_2s']['write_txns']} write transactions "
                         f"({d['idle_2s']['read_ops']} reads)" for d in c["databases"])
        out += ["", f"An idle server over 2 s with every background loop at 50 ms: {idle}. "
                "Nothing writes when there is nothing to do: the reaper, the sweeper, the "
                "credit fold and the webhook sender read first, and an idle worker only "
                "reads whether work exists that it did not hear of."]
    out += ["", "Where the statements went: a claim goes straight to `running` (no separate "
            "start), a last progress report is folded into the finish, a transition is "
            "`UPDATE ... RETURNING` with its event (and on PostgreSQL its ledger rows, "
            "webhook row and NOTIFY) in the same statement, settling is one ledger insert, "
            "the account's balance is not rewritten when a job ends (returned credits are "
            "folded in batches), and heartbeats renew all of a worker's leases in one "
            "statement. Reads of a job after it changed come from the cache the change wrote."]
    return out


def chaos_section(ch: dict[str, Any]) -> list[str]:
    out = ["## 8. kill -9 chaos", "",
           f"`cd bench && {ch.get('command', 'chaos.py')}` ({ch.get('date', '')}); the "
           "script's docstring says exactly what is done and checked.", "",
           "| database | jobs | worker kills | server kills | jobs run more than once "
           "| client connection errors | 409 answers (longest wait s) | 5xx | checks |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    checks_text: dict[str, str] = {}
    all_ok = bool(ch.get("runs"))
    for run in ch.get("runs", []):
        checks = run.get("checks") or {}
        # A run with no checks recorded is not a pass.
        ok = bool(checks) and bool(run.get("ok")) and all(c.get("ok") for c in checks.values())
        all_ok = all_ok and ok
        failed = [name for name, c in checks.items() if not c.get("ok")]
        cl = run.get("clients") or {}
        wait = cl.get("longest_409_wait_s")
        out.append(
            f"| {run.get('database')} | {run.get('params', {}).get('jobs', '-')} "
            f"| {len(run.get('kills') or [])} | {len(run.get('server_kills') or [])} "
            f"| {run.get('reruns', '-')} | {cl.get('connection_errors', '-')} "
            f"| {cl.get('conflicts_409', '-')} ({'-' if wait is None else wait}) "
            f"| {cl.get('server_errors_5xx', '-')} "
            f"| {'all ' + str(len(checks)) + ' held' if ok else '**failed**: ' + (', '.join(failed) or 'no checks recorded')} |")
        for name, c in checks.items():
            checks_text.setdefault(name, c.get("what", ""))
    if checks_text:
        out += ["", "Checks, after every run:", ""]
        out += [f"- `{name}`: {what}" for name, what in checks_text.items()]
    waits = [d for run in ch.get("runs", [])
             for d in (run.get("clients") or {}).get("submits_that_waited_on_409_detail") or []]
    if waits:
        held = "Every check held." if all_ok else "**Some checks failed** (above)."
        out += ["", f"**Reading.** {held} {len(waits)} submissions retried with the "
                "same Idempotency-Key got 409 (a request with that key in flight) until the key's "
                "claim, left by the killed server, timed out (~120 s); then each was answered "
                "with the one job for its key. Such a retry should not have to wait that long: "
                "that is issue 12."]
    return out


def remaining_section(e: dict[str, Any] | None) -> list[str]:
    out = ["## 9. Where the time goes now, and the remaining limit", ""]
    spy = None
    for srv in (e or {}).get("servers", []):
        if srv.get("pyspy") and srv["pyspy"].get("genq"):
            spy, name = srv["pyspy"], srv["server"]
            break
    if spy:
        out += [f"py-spy on the {name} server during the section 3 load "
                f"({spy['samples']} GIL samples; `{spy['raw']}`): genq's functions by "
                "inclusive samples, and all functions by own samples.", "",
                "| incl. % | genq function | | own % | function |",
                "| ---: | --- | --- | ---: | --- |"]
        for i in range(15):
            a = spy["genq"][i] if i < len(spy["genq"]) else None
            b = spy["self"][i] if i < len(spy["self"]) else None
            out.append(
                f"| {a['pct'] if a else ''} | {('`' + a['function'] + '`') if a else ''} | "
                f"| {b['pct'] if b else ''} | {('`' + b['function'] + '`') if b else ''} |")
    out += ["", "**The remaining limit** is one Python process's CPU. The database is no "
            "longer it: SQLite's writer thread commits many operations per transaction and "
            "is idle most of the time, and a job's reads come from memory. Per job the "
            "process now spends its time in HTTP parsing and sending (uvicorn), request "
            "validation, rendering the job's JSON at each change, the worker's per-job tasks "
            "and the event bus; each is a few tens of microseconds, none dominates. More "
            "throughput on one machine needs more processes (several API replicas and "
            "`genq worker` processes on the same SQLite file or on PostgreSQL), which this "
            "2-core machine, shared with the load generators, cannot show."]
    return out


def gateway_section(g: dict[str, Any]) -> list[str]:
    """Section 10: bench/gateway.py (out/gateway.json)."""
    out = ["## 10. Gateway: upstream status reads, added latency, upstream jobs per process",
           "",
           f"{_gw_command(g['command'])} ({g['date']}, {g['db']}); the script's docstring "
           "says exactly what is measured. Two genq servers on 127.0.0.1: the *upstream* "
           "(`genq serve` in a process of its own, its `/compat/<provider>` faces in front of "
           "the tests' scripted engine, `sleep:S` in the prompt) and the *front* under test "
           "(in the benchmark's process, `GENQ_UPSTREAMS` pointing at the upstream's face; "
           "genq's default settings unless a row says otherwise, in particular "
           "`upstream_tick_s` 1.0 s).", ""]
    w = g.get("watchers")
    if w:
        p = w["params"]
        out += [f"**Upstream status reads per job vs clients watching it.** Front: "
                f"{p['provider']}, `poll_s` {p['poll_s']:g}, through a counting loopback proxy; "
                f"{p['jobs_per_n']} jobs per row, one after another, each a "
                f"{p['job_s']:g} s upstream job; while it runs N clients watch it on the front "
                "(half long-poll `?wait=10` with If-None-Match, half hold its SSE stream). "
                "Counted at the proxy: status reads of that job (the create call and nothing "
                "else besides; outputs are fetched from the upstream directly).", "",
                "| clients watching | jobs | upstream status reads per job, mean / max | "
                "succeeded | watcher errors | long-poll answers per long-poller |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        by = w["by_watchers"]
        for n, r in by.items():
            lp = max(1, (int(n) + 1) // 2)
            out.append(f"| {n} | {r['jobs']} | {r['mean']:.2f} / {r['max']} | "
                       f"{r['succeeded']}/{r['jobs']} | {r['watch_errors']} | "
                       f"{r['long_poll_requests_per_job'] / lp:.1f} |")
        means = [r["mean"] for r in by.values()]
        maxes = [r["max"] for r in by.values()]
        ns = list(by)
        out += ["", f"**Reading.** {ns[0]} to {ns[-1]} watchers: {min(means):.2f} to "
                f"{max(means):.2f} status reads per job on average (at most {max(maxes)}); the "
                "count does not grow with the watchers, who are answered from the front's "
                "own copy of the job. "
                f"A {p['job_s']:g} s job at `poll_s` {p['poll_s']:g} gets about "
                f"{p['job_s'] / p['poll_s']:.0f} reads at that cadence (the first one "
                f"`poll_s` after the hand-over, each +-10% jittered).", ""]
    lat = g.get("latency")
    if lat:
        p = lat["params"]
        out += [f"**Completion latency added by genq.** Per configuration {p['jobs']} jobs, "
                f"each `sleep:S` with S uniform in [{p['job_s']:g}, "
                f"{p['job_s'] + p.get('spread_s', 0):g}] s (so the upstream's end falls at a "
                "random phase of the front's polls), submitted about "
                f"{p['gap_s']:g} s apart, one client long-polling each on the front. Added = "
                "the front job's `completed_at` − the upstream job's own `completed_at` (the "
                "upstream genq's, from its canonical API; one machine, one clock; "
                "millisecond timestamps); client = when the client held the front's terminal "
                "answer, from the same upstream `completed_at`.", "",
                "| configuration | jobs ok | added p50 / p95 / max ms | client-seen p50 / "
                "p95 / max ms | upstream status reads per job |",
                "| --- | ---: | ---: | ---: | ---: |"]
        for c in lat["configs"]:
            a, cl = c["added_ms"], c["client_ms"]
            out.append(f"| {c['name']} | {c['succeeded']}/{c['jobs']} | "
                       f"{a.get('p50', '-'):.0f} / {a.get('p95', '-'):.0f} / "
                       f"{a.get('max', '-'):.0f} | {cl.get('p50', '-'):.0f} / "
                       f"{cl.get('p95', '-'):.0f} / {cl.get('max', '-'):.0f} | "
                       f"{c['status_reads_per_job']:.1f} |")
        out += ["", "**Reading.** " + latency_reading(lat), ""]
    cap = g.get("capacity")
    if cap and cap.get("runs"):
        runs = cap["runs"]
        p = runs[0]["params"]
        out += [f"**Upstream jobs tracked by one process.** One front process with "
                f"{p['worker_slots']} worker slots, {p['provider']} with `poll_s` "
                f"{p['poll_s']:g} (`max_jobs` and `rate_per_min` far above the run; the "
                f"tracker polls at most {p['tracker_concurrency']} jobs at once), "
                f"{p['jobs']} jobs of {p['job_s']:g} s submitted by 4 client threads; once "
                "with genq's default `upstream_tick_s` and once with a shorter one. The "
                "plateau is every sample with all jobs in flight (handed over, none "
                "finished); the front's CPU is the benchmark process's minus its sampling "
                "thread's; a tracked job-minute is one job in flight for one minute; added "
                "latency as above (front `completed_at` − upstream `completed_at`).", ""]
        head = "| |"
        rule = "| --- |"
        for r in runs:
            t = r["params"]["tick_s"]
            head += f" tick {t:g} s: plateau | tick {t:g} s: whole run |"
            rule += " ---: | ---: |"
        out += [head, rule]

        def row(label: str, key: str) -> str:
            cells = ""
            for r in runs:
                pl = r.get("plateau") or {}
                cells += f" {pl.get(key, '-')} | {r['whole_run'].get(key, '-')} |"
            return f"| {label} |{cells}"

        out += [row("wall s", "wall_s"), row("tracked job-minutes", "tracked_job_minutes"),
                row("upstream status reads / s", "polls_per_s"),
                row(f"seconds between two reads of a job (`poll_s` {p['poll_s']:g})",
                    "poll_interval_s"),
                row("front CPU, % of one core", "front_cpu_pct"),
                row("front CPU s per tracked job-minute", "front_cpu_s_per_job_minute"),
                row("front CPU ms per status read", "front_cpu_ms_per_poll"),
                row("upstream process CPU, % of one core", "upstream_cpu_pct")]
        cells = ""
        for r in runs:
            a = r.get("added_ms") or {}
            cells += (f" | {a.get('p50', 0) / 1000:.2f} / {a.get('p95', 0) / 1000:.2f} / "
                      f"{a.get('max', 0) / 1000:.2f} |") if a.get("n") else " | - |"
        out += [f"| added latency p50 / p95 / max s (all jobs) |{cells}"]
        done = []
        for r in runs:
            q = r["params"]
            done.append(
                f"tick {q['tick_s']:g} s: {r['peak_in_flight']} of {q['jobs']} jobs in flight "
                f"at once, all {r['all_in_flight_after_s']:.0f} s after the first submit, "
                f"at most {max(r['peak_worker_runs'], r.get('peak_worker_runs_fine', 0))} "
                "worker slots busy at any time, "
                f"{r['front_final'].get('succeeded', 0)}/{q['jobs']} succeeded on the front "
                f"and {r['upstream_succeeded']}/{r['upstream_jobs']} upstream")
        out += ["", "**Reading.** " + "; ".join(done) + ". Parked jobs hold no worker slot: "
                "the slots only carry the create calls. " + capacity_reading(runs)]
    return out


def _gw_command(cmd: str) -> str:
    if "bench/gateway.py" in cmd:  # run from the repository's root
        return f"`PYTHONPATH=$PWD/src:$PWD {cmd}` (from the repository's root)"
    return f"`cd bench && {cmd}`"


def latency_reading(lat: dict[str, Any]) -> str:
    cfg = lat["configs"]
    parts = []
    for c in cfg:
        a = c["added_ms"]
        if a.get("n"):
            parts.append(f"{c['name']}: p50 {a['p50'] / 1000:.2f} s, mean "
                         f"{a['mean'] / 1000:.2f} s")
    text = "; ".join(parts) + "."
    cb = [c for c in cfg if c["options"].get("callbacks")]
    if cb and cb[0]["added_ms"].get("n"):
        a = cb[0]["added_ms"]
        text += (f" With the callback genq adds {a['p50']:.0f} ms at the median "
                 f"({a['max']:.0f} ms at most) and reads no status: the upstream's webhook "
                 "sender posts the end, the front's tracker is woken, reads the pushed body, "
                 "copies the output and settles the job; a polled job pays the same after "
                 "the read that sees the end, plus the wait for that read.")
    polled = [c for c in cfg if not c["options"].get("callbacks")]
    same = [c for c in polled if c["options"].get("poll_s") == 0.5]
    if len(same) == 2:
        a, b = same  # default tick, then a short tick
        text += (f" At `poll_s` 0.5: {a['status_reads_per_job']:.1f} reads per job on the "
                 f"{a['tick_s']:g} s tick, {b['status_reads_per_job']:.1f} on the "
                 f"{b['tick_s']:g} s tick (a process reads the polls it scheduled itself "
                 "when they fall due; the tick is how soon it finds the others'); mean added "
                 f"{a['added_ms']['mean'] / 1000:.2f} s vs {b['added_ms']['mean'] / 1000:.2f} s"
                 f", p95 {a['added_ms']['p95'] / 1000:.2f} s vs "
                 f"{b['added_ms']['p95'] / 1000:.2f} s ({a['jobs']} jobs each: the "
                 "percentiles are rough).")
    return text


def capacity_reading(runs: list[dict[str, Any]]) -> str:
    parts = []
    for r in runs:
        pl = r.get("plateau") or r["whole_run"]
        q = r["params"]
        want = r["peak_in_flight"] / q["poll_s"]
        parts.append(
            f"With `upstream_tick_s` {q['tick_s']:g} s the front read {pl['polls_per_s']} "
            f"statuses a second on the plateau ({want:.0f}/s would be every job at `poll_s` "
            f"{q['poll_s']:g}; it read each job every {pl['poll_interval_s']} s) using "
            f"{pl['front_cpu_pct']}% of a core: {pl['front_cpu_ms_per_poll']} ms of the "
            "front's CPU per read (all its CPU over the reads: the reads' writes and "
            f"events included), {pl['front_cpu_s_per_job_minute']} CPU s per tracked "
            "job-minute.")
        cap = q["tracker_concurrency"] / q["tick_s"]
        behind = pl["poll_interval_s"] > 1.2 * q["poll_s"]  # the cadence was not kept
        if behind and pl["polls_per_s"] <= 1.25 * cap and pl["front_cpu_pct"] < 50:
            parts.append(
                f"Here the reads stop near {q['tracker_concurrency']} (the tracker's "
                f"concurrency) per {q['tick_s']:g} s tick while the process is mostly idle: "
                "the limit is the tracker's claim loop, not the CPU; a job's "
                "completion then waits for a read that comes far later than `poll_s`.")
        elif behind and pl["front_cpu_pct"] >= 70:
            parts.append(
                "Here the process is near one core (one Python process, which also serves "
                "the API and the create calls): the reads fall short of `poll_s` by "
                f"{pl['poll_interval_s'] - q['poll_s']:.2f} s per job.")
    return " ".join(parts)


def targets_section(h: dict[str, Any] | None, s: dict[str, Any] | None,
                    peers: dict[str, dict[str, Any]], n: dict[str, Any] | None,
                    ss: dict[str, Any] | None, c: dict[str, Any] | None) -> list[str]:
    rows = []

    def row(target: str, measured: str, ok: bool | None) -> None:
        rows.append(f"| {target} | {measured} | "
                    f"{'yes' if ok else ('-' if ok is None else '**no**')} |")

    by = {x["config"]: x["throughput"].get("jobs_per_s") or 0 for x in (s or {}).get(
        "configs", [])}
    celery = peers.get("celery", {}).get("jobs_per_s")
    if "sqlite" in by:
        row("e2e jobs/s on SQLite ≥ Celery + Redis (aim: 1,000)",
            f"{by['sqlite']:.0f} vs {num(celery)}", by["sqlite"] >= celery if celery else None)
    proc = peers.get("procrastinate", {}).get("jobs_per_s")
    if "pg-2w" in by:
        row("e2e jobs/s on PostgreSQL, 2 workers ≥ Procrastinate alone",
            f"{by['pg-2w']:.0f} vs {num(proc)}", by["pg-2w"] >= proc if proc else None)
    for srv in (h or {}).get("servers", []):
        sm = srv["summary"]
        if "ratio_genq_over_bare" in sm:
            r = sm["ratio_genq_over_bare"]["best"]
            ok304 = sm["genq_304"]["best_rps"] >= 0.95 * sm["genq"]["best_rps"]
            row(f"cached `GET /v1/jobs/{{id}}` ≥ 0.6× bare ASGI ({srv['server']}); 304 no "
                "slower than 200", f"{r:.2f}×; 304 at {sm['ratio_304_over_bare']:.2f}×",
                r >= 0.6 and ok304)
    if n:
        for k in ("job_sse", "long_poll"):
            v = n["latency"].get(k)
            if v:
                row(f"completion → client p99 ≤ 20 ms ({k})", f"{v['p99_ms']} ms",
                    v["p99_ms"] <= 20)
        f = n["fanout"]
        row(f"{f['clients']:,} idle SSE clients ≤ 50 KB RSS each, all told within 1 s",
            f"{f['kb_per_connection']} KiB each; all told in {f['notify_all_s']} s",
            f["kb_per_connection"] <= 50 and f["notify_all_s"] <= 1 and f["failed"] == 0)
    if ss:
        mine = sorted((r for r in ss["runs"] if r["db"] == "sqlite"), key=lambda r: r["jobs"])
        if len(mine) >= 2:
            ratio = mine[-1]["reads"]["point_cold"]["p50_ms"] / mine[0]["reads"]["point_cold"][
                "p50_ms"]
            row(f"status p50 with {mine[-1]['jobs']:,} jobs ≤ 1.2× that with "
                f"{mine[0]['jobs']:,} (SQLite)", f"{ratio:.2f}×", ratio <= 1.2)
    if c:
        for d in c["databases"]:
            pj = d["per_job"]
            row(f"statements / write transactions per demo/noop job ({d['database']}) ≤ 12 / 3",
                f"{pj['statements']['max']:g} / {pj['write_txns']['max']:g} (before: "
                f"{BEFORE['statements_per_job']} / {BEFORE['write_txns_per_job']})",
                pj["statements"]["max"] <= 12 and pj["write_txns"]["max"] <= 3)
    if not rows:
        return []
    return ["## Targets", "", "| target | measured (this run) | met? |", "| --- | --- | --- |",
            *rows, ""]


def main() -> int:
    h, pr, e = load("hot_path.json"), load("profile_hot_path.json"), load("e2e.json")
    s, n, ss = load("scale_out.json"), load("notify.json"), load("status_scale.json")
    c, ch = load("costs.json"), load("chaos.json")
    g = load("gateway.json")
    peers = {name: d for name in ("celery", "procrastinate", "pgqueuer")
             if (d := load(f"peer_{name}.json"))}
    if not (h or e):
        print("no results in out/; run `make -C bench all` first", file=sys.stderr)
        return 1
    m = (h or e or {})["machine"]
    lines = [
        "# genq benchmarks",
        "",
        f"Generated by `bench/report.py` on {now_iso()} from `bench/out/*.json` (raw results, "
        "git-ignored). Regenerate everything with `make bench` (= `make -C bench all`): it "
        "installs what it lacks (wrk, the peers' venvs), runs every script below in one "
        "run, then this report. Sections 1-8 each name the command and date of their run.",
        "",
        *targets_section(h, s, peers, n, ss, c),
        "## Machine",
        "",
        *machine_section(m),
        "",
        f"Client and server share these {m['nproc']} cores: wrk or the Python clients run "
        "on the machine under test, and the machine may be shared with other work; the "
        "runs record the CPU used by the server, by the load generator and by everything "
        "else. All load goes to 127.0.0.1. The benchmark accounts are on a plan added "
        f"through `GENQ_PLANS` (`{json.dumps(BENCH_PLANS)}`): limits far above what the "
        "runs reach, so the numbers are the server's, not a plan's; the rate limiter still "
        "counts every request.",
        "",
    ]
    if h:
        lines += hot_path_section(h) + [""]
    lines += profile_section(pr, h) + [""]
    if e:
        lines += e2e_section(e) + [""]
    if s or peers:
        lines += scale_section(s, peers) + [""]
    if n:
        lines += notify_section(n) + [""]
    if ss:
        lines += status_scale_section(ss) + [""]
    lines += costs_section(c, e) + [""]
    if ch:
        lines += chaos_section(ch) + [""]
    lines += remaining_section(e)
    if g:
        lines += [""] + gateway_section(g)
    # sections other scripts wrote (storage, tracing, metrics, models...) stay as they are
    kept = ""
    if RESULTS.exists() and KEPT in (text := RESULTS.read_text()):
        kept = "\n" + text[text.index(KEPT) :]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n" + kept)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
