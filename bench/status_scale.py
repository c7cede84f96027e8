"""Status reads with 1,000 vs 1,000,000 jobs in the table, on SQLite and PostgreSQL:
`GET /v1/jobs/{id}` and `GET /v1/jobs?limit=50` (keyset pages with next_cursor).

    ../.venv/bin/python status_scale.py [--sizes 1000,1000000] [--dbs sqlite,postgres]
                                        [--reads 2000] [--time-limit 120]

For each database and size N:

1. A fresh database (SQLite: a temp data dir; PostgreSQL: bench_scale_<pid> on
   127.0.0.1:5432, BENCH_PG, dropped at the end, always) migrated with genq's own
   migrations (`genq.migrate.upgrade`), --accounts accounts on the `bench` plan
   (limits far above the run, bench/common.py) with an API key each (genq's
   AccountService, what `genq keys create` calls).
2. N jobs bulk-loaded (PostgreSQL: COPY through psycopg; SQLite: multi-row inserts
   through SQLAlchemy Core on genq.store.tables), spread round-robin over the accounts,
   one every 3 s back from now, real `job_<ULID>` ids; all `succeeded` but the newest
   --queued (50: 5 an account), which are `queued`, the same number at every N so
   that only the table's size changes. Then ANALYZE (PostgreSQL: VACUUM ANALYZE).
3. `genq serve --no-workers` on that database, and one sequential httpx client
   (keep-alive) measuring, each request's wall time:
   - point_cold: `GET /v1/jobs/{id}` for min(--reads, N) distinct random job ids, each
     read once with its owner's key: every read misses genq's job body cache and reads
     the database (the cache holds 20,000 bodies; none of these was read before);
   - point_queued: `GET /v1/jobs/{id}` of the queued jobs, round-robin, --reads / 4
     reads, each id read at most once a 1.05 s so that genq's 1 s cache of a
     non-terminal body never answers (such a body renders queue_position, eta_s and
     the throttle message from more queries); point_queued_first: the first read of a
     queued job on the fresh server, which also fills the engine's typical-duration
     cache (30 s; the `recent_durations` query below);
   - page_first: `GET /v1/jobs?limit=50`, the first page of a random account;
   - page_deep: `GET /v1/jobs?limit=50&after=<random job id of that account>` and the
     next page through the returned next_cursor (keyset pages at any depth);
   - page_queued: `GET /v1/jobs?limit=50&status=queued`.
4. The exact SQL genq runs for these reads (captured from genq's own store methods
   with a SQLAlchemy cursor hook), with its plan: PostgreSQL `EXPLAIN (ANALYZE,
   BUFFERS)`, SQLite `EXPLAIN QUERY PLAN` plus the query's own time.

Results: out/status_scale.json, and a table db x N -> p50/p99 per read with the
1M/1k ratio. Bounded: --reads requests per measurement at most and --time-limit
seconds per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from ulid import ULID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BENCH_PLAN,
    BENCH_PLANS,
    LOGS,
    PY,
    ROOT,
    free_port,
    loadavg,
    machine,
    now_iso,
    percentile,
    save_json,
)
from genq.accounts import AccountService
from genq.migrate import upgrade
from genq.plans import merge
from genq.store import Store
from genq.store import tables as t

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ENGINE = "demo/noop"
STEP_S = 3  # seconds between two jobs' created_at
COLUMNS = ("id", "account_id", "engine", "task", "status", "progress", "input", "metadata",
           "credits_estimate", "credits_used", "seq", "attempt", "created_at", "started_at",
           "completed_at", "expires_at", "updated_at")


# ---------------------------------------------------------------------------- setup


def make_accounts(url: str, count: int) -> list[tuple[str, str]]:
    """[(account id, API key)] on the bench plan, through genq's AccountService."""

    async def main() -> list[tuple[str, str]]:
        store = Store(url, procrastinate=False)
        try:
            svc = AccountService(store, merge(BENCH_PLANS))
            out = []
            for i in range(count):
                acct = await svc.get_or_create(f"scale{i:02d}", BENCH_PLAN, None)
                key, _ = await svc.create_key(acct, "status_scale")
                out.append((acct.id, key))
            return out
        finally:
            await store.close()

    return asyncio.run(main())


def rows(n: int, accounts: list[str], queued: int) -> Iterator[dict[str, Any]]:
    """N jobs, oldest first; the newest `queued` are queued."""
    now = datetime.now(UTC).replace(microsecond=0)
    queued_from = n - queued
    for i in range(n):
        created = now - timedelta(seconds=STEP_S * (n - i))
        queued = i >= queued_from
        yield {
            "id": f"job_{ULID.from_timestamp(created.timestamp() + (i % 1000) / 1e6)}",
            "account_id": accounts[i % len(accounts)],
            "engine": ENGINE, "task": "noop",
            "status": "queued" if queued else "succeeded",
            "progress": 0.0 if queued else 100.0,
            "input": {"delay_s": 0, "n": i}, "metadata": {},
            "credits_estimate": 1, "credits_used": 0 if queued else 1,
            "seq": 1 if queued else 3, "attempt": 0 if queued else 1,
            "created_at": created,
            "started_at": None if queued else created + timedelta(milliseconds=4),
            "completed_at": None if queued else created + timedelta(milliseconds=6),
            "expires_at": created + timedelta(days=3650),
            "updated_at": created if queued else created + timedelta(milliseconds=6),
        }


def load_pg(dsn: str, n: int, accounts: list[str], queued: int) -> None:
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy(
                f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for r in rows(n, accounts, queued):
                copy.write_row([json.dumps(r[c]) if c in ("input", "metadata") else r[c]
                                for c in COLUMNS])
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE jobs")


def load_sqlite(url: str, n: int, accounts: list[str], queued: int) -> None:
    engine = sa.create_engine(url.replace("+aiosqlite", ""))

    @sa.event.listens_for(engine, "connect")
    def _fast(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    stmt = sa.insert(t.jobs)
    with engine.begin() as conn:
        chunk: list[dict[str, Any]] = []
        for r in rows(n, accounts, queued):
            chunk.append(r)
            if len(chunk) == 20_000:
                conn.execute(stmt, chunk)
                chunk = []
        if chunk:
            conn.execute(stmt, chunk)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def sample(url: str, accounts: list[str], k: int) -> dict[str, Any]:
    """Random job ids with their owners, the queued ids, and per-account ids."""
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    J = t.jobs.c
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t.jobs)).scalar_one()
        if engine.dialect.name == "postgresql" and total > 50 * k:
            # TABLESAMPLE keeps this quick on a million rows; the ids are still random
            pct = min(100.0, 100.0 * 5 * k / total)
            got = conn.exec_driver_sql(
                f"SELECT id, account_id FROM jobs TABLESAMPLE SYSTEM ({pct}) "
                f"WHERE status = 'succeeded'").all()
        else:
            got = conn.execute(sa.select(J.id, J.account_id)
                               .where(J.status == "succeeded")).all()
        queued = conn.execute(sa.select(J.id, J.account_id).where(J.status == "queued")).all()
    engine.dispose()
    random.shuffle(got)
    return {"total": int(total), "cold": [tuple(r) for r in got[:k]],
            "queued": [tuple(r) for r in queued]}


# ---------------------------------------------------------------------------- the plans


@contextlib.contextmanager
def capture(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (with their driver parameters) genq's store runs."""
    seen: list[tuple[str, Any]] = []
    sync = store.db.engine.sync_engine

    def hook(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any,
             _many: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(sync, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        sa.event.remove(sync, "before_cursor_execute", hook)


def genq_queries(url: str, job_id: str, account: str, queued_id: str) -> dict[str, Any]:
    """{name: (sql, params)} of what genq runs for the measured reads."""

    async def main() -> dict[str, Any]:
        store = Store(url, procrastinate=False)
        out: dict[str, Any] = {}
        try:
            job = await store.jobs.get(job_id)
            qjob = await store.jobs.get(queued_id)
            assert job is not None and qjob is not None
            calls: dict[str, Callable[[], Any]] = {
                "point_job": lambda: store.jobs.get(job_id),
                "point_outputs": lambda: store.jobs.outputs_for([job_id]),
                "page_first": lambda: store.jobs.page(account, limit=51),
                "page_after": lambda: store.jobs.page(
                    account, limit=51, before=(job.created_at, job.id)),
                "page_outputs": lambda: store.jobs.outputs_for(
                    [f"job_{ULID()}" for _ in range(50)]),
                "page_status_queued": lambda: store.jobs.page(account, status=["queued"],
                                                              limit=51),
                "queued_position": lambda: store.jobs.queue_position(qjob),
                "queued_active_count": lambda: store.jobs.active_count(qjob.account_id),
                "queued_recent_durations": lambda: store.jobs.recent_durations(ENGINE),
            }
            for name, call in calls.items():
                with capture(store) as seen:
                    await call()
                stmts = [s for s in seen if s[0].lstrip().upper().startswith("SELECT")]
                out[name] = stmts[-1] if stmts else None
        finally:
            await store.close()
        return out

    return asyncio.run(main())


def explain(url: str, queries: dict[str, Any]) -> dict[str, Any]:
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    pg = engine.dialect.name == "postgresql"
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, q in queries.items():
            if q is None:
                continue
            sql, params = q
            params = tuple(params) if isinstance(params, list) else params
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
            plan_rows = conn.exec_driver_sql(prefix + sql, params).all()
            if pg:
                plan = "\n".join(r[0] for r in plan_rows)
            else:
                plan = "\n".join(str(r[-1]) for r in plan_rows)
            # the query's own time, median of 9 runs (warm cache)
            times = []
            for _ in range(9):
                t0 = time.perf_counter()
                conn.exec_driver_sql(sql, params).all()
                times.append(time.perf_counter() - t0)
            out[name] = {"sql": " ".join(sql.split()), "plan": plan,
                         "query_ms_p50": round((percentile(times, 50) or 0) * 1000, 3)}
    engine.dispose()
    return out


# ---------------------------------------------------------------------------- measuring


def start_server(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    env = {**os.environ, "GENQ_DATABASE_URL": url, "GENQ_DATA_DIR": str(data_dir),
           "GENQ_PLANS": json.dumps(BENCH_PLANS), "GENQ_HOST": "127.0.0.1",
           "PYTHONPATH": str(ROOT)}
    env.pop("GENQ_ENGINES", None)
    log = LOGS / f"status_scale-{port}.log"
    with log.open("wb") as f:
        proc = subprocess.Popen([PY, "-m", "genq", "serve", "--no-workers", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"genq serve exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base, log
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"genq serve not ready: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)


def stats(values: list[float]) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 2)

    return {"n": len(values), "p50_ms": r(percentile(values, 50)),
            "p90_ms": r(percentile(values, 90)), "p99_ms": r(percentile(values, 99)),
            "max_ms": r(max(values) if values else None)}


def measure(base: str, keys: dict[str, str], ids: dict[str, Any], reads: int,
            time_limit: float) -> dict[str, Any]:
    accounts = list(keys)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=30) as c:

        def get(path: str, account: str, params: dict[str, Any] | None = None,
                ok: tuple[int, ...] = (200,)) -> tuple[float, httpx.Response]:
            t0 = time.perf_counter()
            r = c.get(path, params=params, headers={"Authorization": f"Bearer {keys[account]}"})
            dt = time.perf_counter() - t0
            if r.status_code not in ok:
                raise RuntimeError(f"GET {path} {params}: {r.status_code} {r.text[:300]}")
            return dt, r

        # warm-up: connections, imports, the key cache of every account, plan caches;
        # the ids read here are not among the measured ones
        warm = ids["cold"][-20:]
        for job_id, acct in warm:
            get(f"/v1/jobs/{job_id}", acct)
        queued = ids["queued"]
        out["point_queued_first_ms"] = round(
            get(f"/v1/jobs/{queued[-1][0]}", queued[-1][1])[0] * 1000, 2)
        for acct in accounts:
            get("/v1/jobs", acct, {"limit": 50})

        def timed(name: str, gen: Iterator[tuple[str, str, dict[str, Any] | None]]) -> None:
            lat: list[float] = []
            deadline = time.monotonic() + time_limit
            for path, acct, params in gen:
                if time.monotonic() > deadline:
                    break
                lat.append(get(path, acct, params)[0])
            out[name] = stats(lat)

        cold = ids["cold"][: min(reads, len(ids["cold"]) - len(warm))]
        timed("point_cold", ((f"/v1/jobs/{j}", a, None) for j, a in cold))
        last_read: dict[str, float] = {}

        def paced() -> Iterator[tuple[str, str, dict[str, Any] | None]]:
            for i in range(max(1, reads // 4)):
                job_id, acct = queued[i % len(queued)]
                wait = last_read.get(job_id, 0.0) + 1.05 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                last_read[job_id] = time.monotonic()
                yield f"/v1/jobs/{job_id}", acct, None

        timed("point_queued", paced())
        timed("page_first", (("/v1/jobs", accounts[i % len(accounts)], {"limit": 50})
                             for i in range(max(1, reads // 10))))

        # deep pages: start after a random job of the account, then one more page
        # through the cursor the API returned
        lat: list[float] = []
        deadline = time.monotonic() + time_limit
        for j, a in ids["cold"][: max(1, reads // 10)]:
            if time.monotonic() > deadline:
                break
            dt, r = get("/v1/jobs", a, {"limit": 50, "after": j})
            lat.append(dt)
            cursor = r.json().get("next_cursor")
            if cursor:
                dt, r = get("/v1/jobs", a, {"limit": 50, "after": cursor})
                lat.append(dt)
        out["page_deep"] = stats(lat)
        timed("page_queued", (("/v1/jobs", accounts[i % len(accounts)],
                               {"limit": 50, "status": "queued"})
                              for i in range(max(1, reads // 10))))
    return out


# ---------------------------------------------------------------------------- one run


def run(db: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="genq-scale-"))
    dbname = None
    try:
        if db == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/genq.db"
        else:
            dbname = f"bench_scale_{os.getpid()}"
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {dbname}")
            url = f"{PG.replace('postgresql://', 'postgresql+psycopg://', 1)}/{dbname}"
        with contextlib.redirect_stdout(io.StringIO()):
            upgrade(url)
        accts = make_accounts(url, args.accounts)
        keys = dict(accts)
        t0 = time.monotonic()
        if db == "sqlite":
            load_sqlite(url, n, list(keys), args.queued)
        else:
            load_pg(f"{PG}/{dbname}", n, list(keys), args.queued)
        load_s = time.monotonic() - t0
        ids = sample(url, list(keys), args.reads + 20)
        print(f"[{db} {n:,}] loaded {ids['total']:,} jobs in {load_s:.1f} s "
              f"({len(ids['queued'])} queued)", flush=True)
        qid, _ = ids["queued"][0]
        queries = genq_queries(url, ids["cold"][0][0], ids["cold"][0][1], qid)
        plans = explain(url, queries)
        load0 = loadavg()
        proc, base, log = start_server(url, tmp / "data")
        try:
            result = measure(base, keys, ids, args.reads, args.time_limit)
        finally:
            stop_server(proc)
        size = None
        if db == "sqlite":
            size = (tmp / "genq.db").stat().st_size
        else:
            with psycopg.connect(f"{PG}/{dbname}") as conn:
                row = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()
                size = int(row[0]) if row else None
        print(f"[{db} {n:,}] " + "; ".join(
            f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" if isinstance(v, dict) else f"{k} {v}"
            for k, v in result.items()),
            flush=True)
        return {"db": db, "jobs": n, "accounts": args.accounts, "load_s": round(load_s, 1),
                "jobs_table_bytes": size, "queued_jobs": len(ids["queued"]),
                "loadavg_1m": [load0, loadavg()], "server_log": str(log.relative_to(ROOT)),
                "reads": result, "plans": plans}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if dbname:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def table(runs: list[dict[str, Any]]) -> str:
    names = ["point_cold", "point_queued", "page_first", "page_deep", "page_queued"]
    lines = ["| db | jobs | " + " | ".join(f"{n} p50 / p99 ms" for n in names)
             + " | first queued read ms |",
             "|---|---|" + "---|" * (len(names) + 1)]
    by = {(r["db"], r["jobs"]): r for r in runs}
    for r in runs:
        cells = [f"{r['reads'][n]['p50_ms']} / {r['reads'][n]['p99_ms']}" for n in names]
        lines.append(f"| {r['db']} | {r['jobs']:,} | " + " | ".join(cells)
                     + f" | {r['reads']['point_queued_first_ms']} |")
    dbs = list(dict.fromkeys(r["db"] for r in runs))
    sizes = sorted({r["jobs"] for r in runs})
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for db in dbs:
            a, b = by.get((db, lo)), by.get((db, hi))
            if not a or not b:
                continue
            cells = []
            for n in names:
                pa, pb = a["reads"][n], b["reads"][n]
                cells.append(f"{pb['p50_ms'] / pa['p50_ms']:.2f} / "
                             f"{pb['p99_ms'] / pa['p99_ms']:.2f}")
            first = (b["reads"]["point_queued_first_ms"]
                     / a["reads"]["point_queued_first_ms"])
            lines.append(f"| {db} | ratio {hi:,}/{lo:,} | " + " | ".join(cells)
                         + f" | {first:.2f} |")
    return "\n".join(lines)


def qtable(runs: list[dict[str, Any]]) -> str:
    names = list(runs[0]["plans"]) if runs else []
    lines = ["| query | " + " | ".join(f"{r['db']} {r['jobs']:,}" for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(
            str(r["plans"].get(n, {}).get("query_ms_p50")) for r in runs) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,1000000")
    p.add_argument("--dbs", default="sqlite,postgres")
    p.add_argument("--reads", type=int, default=2000, help="requests per measurement")
    p.add_argument("--accounts", type=int, default=10)
    p.add_argument("--queued", type=int, default=50,
                   help="queued jobs (the newest), the same at every size")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per measurement")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="status_scale.json")
    args = p.parse_args()
    random.seed(args.seed)
    LOGS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "benchmark": "status_scale", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": {k: getattr(args, k) for k in ("sizes", "dbs", "reads", "accounts",
                                                 "queued", "time_limit", "seed")},
        "runs": [],
    }
    for db in args.dbs.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            out["runs"].append(run(db, n, args))
            save_json(args.out, out)
    for r in out["runs"]:
        print(f"\n== {r['db']} {r['jobs']:,} jobs: plans")
        for name, q in r["plans"].items():
            print(f"-- {name} ({q['query_ms_p50']} ms): {q['sql'][:300]}")
            print("   " + q["plan"].replace("\n", "\n   "))
    print("\nHTTP latency, one sequential client (ms):")
    print(table(out["runs"]))
    print("\nQuery time alone, p50 of 9 (ms):")
    print(qtable(out["runs"]))
    print(f"wrote {save_json(args.out, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
