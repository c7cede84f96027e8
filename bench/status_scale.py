"""Status reads with 1,000 vs 1,000,000 jobs in the table, on SQLite and PostgreSQL:
`GET /v1/jobs/{id}` answered from the database (not genq's body cache) and
`GET /v1/jobs?limit=50` pages (keyset, next_cursor).

    ../.venv/bin/python status_scale.py [--sizes 1000,1000000] [--dbs sqlite,postgres]
                                        [--reads 2000] [--time-limit 120]

For each database, every size N is prepared first (1, 2, 4), then the servers on all
of them run at once and are measured side by side (3):

1. A fresh database (SQLite: genq.db in a temp dir; PostgreSQL: bench_scale_<pid>_<N>
   on 127.0.0.1:5432, BENCH_PG), both removed at the end, always; migrated with genq's
   own migrations (`genq.migrate.upgrade`); --accounts accounts with an API key each
   through genq's AccountService (what `genq keys create` calls), on the `bench` plan of
   bench/common.py (limits far above the run) with a retention of 60 days, longer than
   the loaded history, so that no job is past its expires_at (nothing for genq's
   retention sweep to do).
2. N `demo/noop` jobs bulk-loaded, oldest first (the order genq inserts them in), one
   every 3 s back from now, round-robin over the accounts, `job_<ULID>` ids of their
   created_at; rows as genq writes them: the normalized input, account_limit = the
   plan's concurrent_jobs, expires_at = created_at + the plan's retention; succeeded
   jobs started 4 ms and completed 6 ms after creation (updated_at = completed_at,
   seq 4, attempt 1); all `succeeded` but the newest --queued (50: 5 an account), which
   are `queued` (seq 1, attempt 0), the same number at every N so that only the
   table's size changes. No job_outputs rows (noop makes no files): every read's
   outputs subquery runs and finds nothing.
   PostgreSQL: COPY through psycopg, then VACUUM ANALYZE (what autovacuum does after
   such a load). SQLite: one transaction of plain sqlite3 inserts, with all of genq's
   indexes in place as in a real database (timestamps as the store writes them, UTC
   text 'YYYY-MM-DD HH:MM:SS.ffffff'; JSON as text), with the rollback journal off,
   synchronous off and a 512 MiB page cache for the load only; then the file is put back
   in WAL mode and fsync'ed (no write-back of the load runs during the reads), and it
   is NOT analyzed: genq never runs ANALYZE, so a real genq SQLite file has no
   sqlite_stat1 and its planner works from the same heuristics as here.
   The jobs the client reads are drawn (by load position) before loading; the loader
   notes their ids.
3. `genq serve --no-workers` on each database, with GENQ_JOB_CACHE_BYTES=0: genq's
   serialized-body cache then keeps nothing (a body is evicted as it is stored), so
   every `GET /v1/jobs/{id}` runs the store's point read (`get_with_outputs`, one
   statement), whatever was read before; list pages never use that cache. ready_s is
   the time from spawning the server to /readyz answering 200 (startup reads the board
   of unfinished jobs and each engine's recent durations from the database). After a
   warm-up (20 point reads of ids not measured, one first page per account, one
   queued job), one sequential httpx client (keep-alive, one request in flight at a
   time) measures each request's wall time, switching servers every 25 requests (the
   one going first alternates) so that every size sees the same machine:
   - point_cold: `GET /v1/jobs/{id}` of --reads random succeeded jobs (distinct while N
     allows; at small N each is read about reads/N times) with the owner's key;
   - point_queued: `GET /v1/jobs/{id}` of the queued jobs, round-robin, --reads / 4
     (queue_position, eta_s and the throttle message come from the in-memory board:
     no further queries);
   - page_first: `GET /v1/jobs?limit=50`, the first page of an account, --reads / 10;
   - page_deep: `GET /v1/jobs?limit=50&after=<job id>` (a next_cursor is such an id),
     --reads / 5, each after a random job with at least 50 older jobs of its account,
     so that every page is full (50 jobs, checked) at every N; each is the cursor's
     point read (`get`) plus the page statement;
   - page_queued: `GET /v1/jobs?limit=50&status=queued`, --reads / 10.
4. The exact SQL genq runs for these reads, captured in-process by wrapping
   `genq.store.db.Cx.execute` (the one place statements go through) around the store's
   own `get_with_outputs`, `get` (a page cursor's lookup) and `page` calls, and those of
   startup (`nonterminal`, `recent_durations`); each with its plan, PostgreSQL
   `EXPLAIN (ANALYZE, BUFFERS)`, SQLite `EXPLAIN QUERY PLAN` (of the statement as sqlite3
   runs it: `:name` placeholders, list parameters as JSON arrays read with json_each),
   and its own time (median of 9 runs on one warm connection); the point read also
   over up to 500 of the distinct random ids the client reads, each once, on that
   connection (the cost of pages not yet cached).

Results: out/status_scale.json, and a table db x N -> p50/p99 per read kind with the
largest/smallest N ratio. Bounded: --reads requests per size and read kind at most,
--time-limit seconds per read kind (all sizes together).
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
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
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
from genq.store.db import Cx, _for_sqlite, _sqlite_ts

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ENGINE = "demo/noop"
TASK = "noop"
STEP_S = 3  # seconds between two jobs' created_at
RETENTION_DAYS = 60.0  # > the history of 1,000,000 jobs 3 s apart (34.7 days)
PLANS: dict[str, dict[str, object]] = {
    BENCH_PLAN: {**BENCH_PLANS[BENCH_PLAN], "retention_days": RETENTION_DAYS}}
ACCOUNT_LIMIT = int(str(PLANS[BENCH_PLAN]["concurrent_jobs"]))
COLUMNS = ("id", "account_id", "engine", "task", "status", "progress", "message", "input",
           "metadata", "credits_estimate", "credits_used", "seq", "attempt", "account_limit",
           "created_at", "started_at", "completed_at", "expires_at", "updated_at")
TIMES = frozenset({"created_at", "started_at", "completed_at", "expires_at", "updated_at"})
JSONS = frozenset({"input", "metadata"})
WARM = 20  # warm-up point reads, of ids not measured


# ---------------------------------------------------------------------------- setup


def make_accounts(url: str, count: int) -> list[tuple[str, str]]:
    """[(account id, API key)] on the bench plan, through genq's AccountService."""

    async def main() -> list[tuple[str, str]]:
        store = Store(url)
        try:
            svc = AccountService(store, merge(PLANS))
            out = []
            for i in range(count):
                acct = await svc.get_or_create(f"scale{i:02d}", BENCH_PLAN, None)
                key, _ = await svc.create_key(acct, "status_scale")
                out.append((acct.id, key))
            return out
        finally:
            await store.close()

    return asyncio.run(main())


def picks(n: int, accounts: int, queued: int, reads: int) -> dict[str, list[int]]:
    """Which jobs (by load index, 0 = oldest) the client reads: `cold` (WARM warm-up ids
    first), random succeeded jobs, distinct while there are enough; `deep`, random
    succeeded jobs with at least 50 older jobs of their account (job i is the
    (i // accounts)-th of its account), so that the page after each is full at every N;
    `queued`, the newest `queued`."""
    succeeded = n - queued
    cold = random.sample(range(succeeded), min(succeeded, reads + WARM))
    deep = [random.randrange(50 * accounts, succeeded) for _ in range(max(1, reads // 5))]
    return {"cold": cold, "deep": deep, "queued": list(range(succeeded, n))}


def rows(n: int, accounts: list[str], queued: int,
         seen: dict[int, tuple[str, str]]) -> Iterator[tuple[Any, ...]]:
    """N jobs in COLUMNS order, oldest first (aware UTC datetimes, JSON as dicts); the
    newest `queued` are queued. Fills `seen` {index: (job id, account id)} for the
    indexes it holds as keys."""
    now = datetime.now(UTC).replace(microsecond=0)
    first = now - timedelta(seconds=STEP_S * n)
    keep = timedelta(days=RETENTION_DAYS)
    started_after, completed_after = timedelta(milliseconds=4), timedelta(milliseconds=6)
    queued_from = n - queued
    n_acc = len(accounts)
    for i in range(n):
        created = first + timedelta(seconds=STEP_S * i)
        q = i >= queued_from
        done = None if q else created + completed_after
        job_id, account = f"job_{ULID.from_datetime(created)}", accounts[i % n_acc]
        if i in seen:
            seen[i] = (job_id, account)
        yield (
            job_id, account, ENGINE, TASK,
            "queued" if q else "succeeded", 0.0 if q else 100.0, None if q else "done",
            {"delay_s": 0.0, "fail": False, "message": f"scale job {i}"}, {},
            1, 0 if q else 1, 1 if q else 4, 0 if q else 1, ACCOUNT_LIMIT,
            created, None if q else created + started_after, done, created + keep,
            created if q else done,
        )


def load_pg(dsn: str, n: int, accounts: list[str], queued: int,
            seen: dict[int, tuple[str, str]]) -> None:
    js = [i for i, c in enumerate(COLUMNS) if c in JSONS]
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur, cur.copy(
                f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for r in rows(n, accounts, queued, seen):
                row = list(r)
                for i in js:
                    row[i] = orjson.dumps(row[i]).decode()
                copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE jobs")


def load_sqlite(path: Path, n: int, accounts: list[str], queued: int,
                seen: dict[int, tuple[str, str]]) -> None:
    ts = [i for i, c in enumerate(COLUMNS) if c in TIMES]
    js = [i for i, c in enumerate(COLUMNS) if c in JSONS]

    def as_sqlite() -> Iterator[list[Any]]:
        for r in rows(n, accounts, queued, seen):
            row = list(r)
            for i in ts:
                if row[i] is not None:
                    row[i] = _sqlite_ts(row[i])
            for i in js:
                row[i] = orjson.dumps(row[i]).decode()
            yield row

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # loading only: no rollback journal, no syncs, index pages kept in memory
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-524288")  # 512 MiB
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            as_sqlite())
        conn.execute("COMMIT")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # as genq runs it
        assert mode == "wal", mode
    finally:
        conn.close()
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            fd = os.open(name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def read_ids(url: str, n: int, chosen: dict[str, list[int]],
             seen: dict[int, tuple[str, str]], reads: int) -> dict[str, Any]:
    """The chosen jobs' (id, account id), checked against the loaded table."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.split("///", 1)[1])
        try:
            total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            queued = conn.execute(
                "SELECT id, account_id FROM jobs WHERE status = 'queued' ORDER BY id").fetchall()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as conn:
            total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            queued = conn.execute(
                "SELECT id, account_id FROM jobs WHERE status = 'queued' ORDER BY id").fetchall()
    out: dict[str, Any] = {k: [seen[i] for i in v] for k, v in chosen.items()}
    if total != n or [tuple(r) for r in queued] != out["queued"]:
        raise RuntimeError(f"loaded {total} jobs, {len(queued)} queued: not what was meant")
    cold = out.pop("cold")
    out["warm"], rest = cold[:WARM], cold[WARM:]
    # fewer jobs than reads: each read about reads / len(rest) times
    out["cold"] = [rest[i % len(rest)] for i in range(reads)]
    out["total"] = int(total)
    return out


# ---------------------------------------------------------------------------- the plans


@contextlib.contextmanager
def capture() -> Iterator[list[tuple[str, Any]]]:
    """The statements (with their parameters, as the store passes them to `Cx.execute`)
    genq's store runs meanwhile in this process."""
    seen: list[tuple[str, Any]] = []
    original = Cx.execute

    def execute(self: Cx, sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return original(self, sql, params)

    Cx.execute = execute  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Cx.execute = original  # type: ignore[method-assign]


def genq_queries(url: str, job_id: str, account: str) -> dict[str, Any]:
    """{name: (sql, params)} of what genq runs for the measured reads (and at startup)."""

    async def main() -> dict[str, Any]:
        store = Store(url)
        out: dict[str, Any] = {}
        try:
            job = await store.jobs.get(job_id)
            assert job is not None
            calls: dict[str, Callable[[], Any]] = {
                # GET /v1/jobs/{id} on a cache miss
                "point": lambda: store.jobs.get_with_outputs(job_id),
                # GET /v1/jobs?limit=50 (JobService.list asks for limit + 1)
                "page_first": lambda: store.jobs.page(account, limit=51),
                # ...&after=<id>: the cursor's row, then the page before it
                "page_cursor": lambda: store.jobs.get(job_id),
                "page_after": lambda: store.jobs.page(
                    account, limit=51, before=(job.created_at, job.id)),
                # ...&status=queued
                "page_status_queued": lambda: store.jobs.page(account, status=["queued"],
                                                              limit=51),
                # startup: the board and the engines' typical durations
                "startup_nonterminal": lambda: store.jobs.nonterminal(),
                "startup_recent_durations": lambda: store.jobs.recent_durations(ENGINE, 20),
            }
            for name, call in calls.items():
                with capture() as seen:
                    await call()
                if len(seen) != 1:
                    raise RuntimeError(f"{name}: {len(seen)} statements, expected one: {seen}")
                out[name] = seen[0]
        finally:
            await store.close()
        return out

    return asyncio.run(main())


def _sqlite_plan(rows_: list[Any]) -> str:
    """EXPLAIN QUERY PLAN's (id, parent, _, detail) rows as an indented tree."""
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows_:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + str(detail))
    return "\n".join(lines)


def explain(url: str, queries: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """Each statement's plan and its own time (median of 9 runs, warm); and the point
    read's time over `ids` (distinct random jobs, each once), as the server runs it."""
    out: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        conn: Any = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    else:
        conn = psycopg.connect(url, autocommit=True, options="-c timezone=UTC")
    try:
        for name, (sql, params) in queries.items():
            if sqlite:
                sql = _for_sqlite(sql)
                plan = _sqlite_plan(conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
            else:
                plan = "\n".join(r[0] for r in conn.execute(
                    "EXPLAIN (ANALYZE, BUFFERS) " + sql, params or None).fetchall())
            times = []
            for _ in range(9):
                t0 = time.perf_counter()
                conn.execute(sql, params or (() if sqlite else None)).fetchall()
                times.append(time.perf_counter() - t0)
            out[name] = {"sql": " ".join(sql.split()), "plan": plan,
                         "query_ms_p50": round((percentile(times, 50) or 0) * 1000, 3)}
            if name == "point":
                times = []
                for job_id in ids:
                    t0 = time.perf_counter()
                    conn.execute(sql, {**params, "id": job_id}).fetchall()
                    times.append(time.perf_counter() - t0)
                out[name]["random_ids"] = {
                    "n": len(ids), "p50_ms": round((percentile(times, 50) or 0) * 1000, 3),
                    "p99_ms": round((percentile(times, 99) or 0) * 1000, 3)}
    finally:
        conn.close()
    return out


# ---------------------------------------------------------------------------- measuring


def start_server(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str, Path, float]:
    port = free_port()
    env = {**os.environ, "GENQ_DATABASE_URL": url, "GENQ_DATA_DIR": str(data_dir),
           "GENQ_PLANS": json.dumps(PLANS), "GENQ_HOST": "127.0.0.1",
           # no body cache: every GET /v1/jobs/{id} reads the database
           "GENQ_JOB_CACHE_BYTES": "0",
           "PYTHONPATH": str(ROOT)}
    env.pop("GENQ_ENGINES", None)
    log = LOGS / f"status_scale-{port}.log"
    t0 = time.monotonic()
    with log.open("wb") as f:
        proc = subprocess.Popen([PY, "-m", "genq", "serve", "--no-workers", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"genq serve exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base, log, time.monotonic() - t0
        if time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"genq serve not ready: {log.read_text()[-2000:]}")
        time.sleep(0.05)


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


NAMES = ["point_cold", "point_queued", "page_first", "page_deep", "page_queued"]
Request = tuple[str, str, dict[str, Any] | None]  # path, account, query
BLOCK = 25  # requests to one server before the next one's turn


@dataclass
class Side:
    """One database of one size, and the server on it."""

    db: str
    n: int
    tmp: Path
    url: str = ""  # genq's
    plain: str = ""  # the driver's
    dbname: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, Any] = field(default_factory=dict)
    load_s: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    base: str = ""
    log: Path | None = None
    ready_s: float = 0.0


def measure(sides: list[Side], reads: int, time_limit: float) -> list[dict[str, Any]]:
    """Every read kind on every side, interleaved in blocks of BLOCK requests (one
    request in flight at a time; which side goes first alternates), so that all sizes
    see the same machine."""
    out: list[dict[str, Any]] = [{} for _ in sides]
    clients = [httpx.Client(base_url=s.base, timeout=30) for s in sides]
    try:

        def get(i: int, path: str, account: str, params: dict[str, Any] | None
                ) -> tuple[float, httpx.Response]:
            auth = {"Authorization": f"Bearer {sides[i].keys[account]}"}
            t0 = time.perf_counter()
            r = clients[i].get(path, params=params, headers=auth)
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} {params}: {r.status_code} {r.text[:300]}")
            return dt, r

        # warm-up: the connections, imports, every account's key cache, plan caches
        for i, s in enumerate(sides):
            for job_id, acct in s.ids["warm"]:
                get(i, f"/v1/jobs/{job_id}", acct, None)
            for acct in s.keys:
                get(i, "/v1/jobs", acct, {"limit": 50})
            queued = s.ids["queued"]
            body = get(i, f"/v1/jobs/{queued[-1][0]}", queued[-1][1], None)[1].json()
            if body["status"] != "queued" or body["queue_position"] != len(queued) - 1:
                raise RuntimeError(f"unexpected queued body: {body}")

        def timed(name: str, requests: Callable[[Side], list[Request]],
                  check: Callable[[httpx.Response], None] | None = None) -> None:
            lat: list[list[float]] = [[] for _ in sides]
            todo = [requests(s) for s in sides]
            deadline = time.monotonic() + time_limit
            for b, start in enumerate(range(0, len(todo[0]), BLOCK)):
                order = list(range(len(sides)))
                for i in order if b % 2 == 0 else order[::-1]:
                    for path, acct, params in todo[i][start:start + BLOCK]:
                        if time.monotonic() > deadline:
                            break
                        dt, r = get(i, path, acct, params)
                        if check is not None:
                            check(r)
                        lat[i].append(dt)
            for i in range(len(sides)):
                out[i][name] = stats(lat[i])

        def full(r: httpx.Response) -> None:
            if len(r.json()["data"]) != 50:
                raise RuntimeError(f"{r.url}: not a full page")

        timed("point_cold", lambda s: [(f"/v1/jobs/{j}", a, None)
                                       for j, a in s.ids["cold"][:reads]])
        timed("point_queued", lambda s: [
            (f"/v1/jobs/{j}", a, None)
            for j, a in (s.ids["queued"][k % len(s.ids["queued"])]
                         for k in range(max(1, reads // 4)))])
        timed("page_first", lambda s: [("/v1/jobs", a, {"limit": 50})
                                       for a in (list(s.keys)[k % len(s.keys)]
                                                 for k in range(max(1, reads // 10)))], full)
        # the (full) page after a random job of the account, as after a next_cursor
        timed("page_deep", lambda s: [("/v1/jobs", a, {"limit": 50, "after": j})
                                      for j, a in s.ids["deep"]], full)
        timed("page_queued", lambda s: [("/v1/jobs", a, {"limit": 50, "status": "queued"})
                                        for a in (list(s.keys)[k % len(s.keys)]
                                                  for k in range(max(1, reads // 10)))])
    finally:
        for c in clients:
            c.close()
    return out


# ---------------------------------------------------------------------------- one database


def prepare(side: Side, args: argparse.Namespace) -> None:
    """A fresh database of side.n jobs, its ids to read and genq's plans on it."""
    db, n = side.db, side.n
    if db == "sqlite":
        path = side.tmp / "genq.db"
        side.url = side.plain = f"sqlite:///{path}"
    else:
        side.dbname = f"bench_scale_{os.getpid()}_{n}"
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {side.dbname} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {side.dbname}")
        side.plain = f"{PG}/{side.dbname}"
        side.url = side.plain.replace("postgresql://", "postgresql+psycopg://", 1)
    with contextlib.redirect_stdout(io.StringIO()):
        upgrade(side.url)
    side.keys = dict(make_accounts(side.url, args.accounts))
    chosen = picks(n, len(side.keys), args.queued, args.reads)
    seen: dict[int, tuple[str, str]] = {i: ("", "") for v in chosen.values() for i in v}
    t0 = time.monotonic()
    if db == "sqlite":
        load_sqlite(path, n, list(side.keys), args.queued, seen)
    else:
        load_pg(side.plain, n, list(side.keys), args.queued, seen)
    side.load_s = time.monotonic() - t0
    side.ids = read_ids(side.plain, n, chosen, seen, args.reads)
    print(f"[{db} {n:,}] loaded {side.ids['total']:,} jobs in {side.load_s:.1f} s "
          f"({len(side.ids['queued'])} queued)", flush=True)
    cold_id, cold_acct = side.ids["cold"][0]
    queries = genq_queries(side.url, cold_id, cold_acct)
    distinct = list(dict.fromkeys(j for j, _ in side.ids["warm"] + side.ids["cold"]))
    side.plans = explain(side.plain, queries, distinct[-500:])


def db_bytes(side: Side) -> int | None:
    if side.db == "sqlite":
        return sum(p.stat().st_size for p in side.tmp.glob("genq.db*"))
    with psycopg.connect(side.plain) as conn:
        row = conn.execute("SELECT pg_total_relation_size('jobs')").fetchone()
        return int(row[0]) if row else None


def run(db: str, sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """All sizes of one database: loaded one after the other, then measured side by side."""
    sides = [Side(db, n, Path(tempfile.mkdtemp(prefix="genq-scale-"))) for n in sizes]
    try:
        for side in sides:
            prepare(side, args)
        load0 = loadavg()
        for side in sides:
            side.proc, side.base, side.log, side.ready_s = start_server(
                side.url, side.tmp / "data")
        results = measure(sides, args.reads, args.time_limit)
        load1 = loadavg()
        out = []
        for side, result in zip(sides, results, strict=True):
            print(f"[{db} {side.n:,}] ready in {side.ready_s:.2f} s; " + "; ".join(
                f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" for k, v in result.items()),
                flush=True)
            assert side.log is not None
            out.append({"db": db, "jobs": side.n, "accounts": args.accounts,
                        "load_s": round(side.load_s, 1), "db_bytes": db_bytes(side),
                        "queued_jobs": len(side.ids["queued"]),
                        "ready_s": round(side.ready_s, 2), "loadavg_1m": [load0, load1],
                        "measured_with": [s.n for s in sides],
                        "server_log": str(side.log.relative_to(ROOT)),
                        "reads": result, "plans": side.plans})
        return out
    finally:
        for side in sides:
            if side.proc is not None:
                stop_server(side.proc)
        for side in sides:
            shutil.rmtree(side.tmp, ignore_errors=True)
            if side.dbname:
                with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                    admin.execute(f"DROP DATABASE IF EXISTS {side.dbname} WITH (FORCE)")


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or b is None else f"{b / a:.2f}"


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| db | jobs | " + " | ".join(f"{n} p50 / p99 ms" for n in NAMES)
             + " | ready s |",
             "|---|---|" + "---|" * (len(NAMES) + 1)]
    by = {(r["db"], r["jobs"]): r for r in runs}
    for r in runs:
        cells = [f"{r['reads'][n]['p50_ms']} / {r['reads'][n]['p99_ms']}" for n in NAMES]
        lines.append(f"| {r['db']} | {r['jobs']:,} | " + " | ".join(cells)
                     + f" | {r['ready_s']} |")
    dbs = list(dict.fromkeys(r["db"] for r in runs))
    sizes = sorted({r["jobs"] for r in runs})
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for db in dbs:
            a, b = by.get((db, lo)), by.get((db, hi))
            if not a or not b:
                continue
            cells = [f"{_ratio(a['reads'][n]['p50_ms'], b['reads'][n]['p50_ms'])} / "
                     f"{_ratio(a['reads'][n]['p99_ms'], b['reads'][n]['p99_ms'])}"
                     for n in NAMES]
            lines.append(f"| {db} | ratio {hi:,}/{lo:,} | " + " | ".join(cells)
                         + f" | {_ratio(a['ready_s'], b['ready_s'])} |")
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
    sizes = [int(x) for x in args.sizes.split(",")]
    dbs = args.dbs.split(",")
    if bad := [d for d in dbs if d not in ("sqlite", "postgres")]:
        p.error(f"unknown database {bad[0]!r}: sqlite or postgres")
    if max(sizes) * STEP_S >= RETENTION_DAYS * 86400 * 0.9:
        p.error(f"{max(sizes):,} jobs {STEP_S} s apart outlast the {RETENTION_DAYS} days "
                "of retention")
    if min(sizes) <= args.queued + max(50 * args.accounts, WARM):
        p.error("each size must exceed --queued plus 50 jobs an account")
    random.seed(args.seed)
    LOGS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "benchmark": "status_scale", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": {k: getattr(args, k) for k in ("sizes", "dbs", "reads", "accounts",
                                                 "queued", "time_limit", "seed")},
        "runs": [],
    }
    for db in dbs:
        out["runs"] += run(db, sizes, args)
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
