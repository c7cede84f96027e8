"""Status reads with 1,000 vs 1,000,000 jobs in the table: `GET /v1/jobs/{id}` and
`GET /v1/jobs?limit=50` (following next_cursor), on SQLite and on PostgreSQL.

    ../.venv/bin/python status_scale.py [--sizes 1000,1000000] [--dbs sqlite,postgres]

For each database and size: a fresh database migrated by genq, N jobs bulk-loaded
(a tenth of them the measured account's, the rest another account's; all ended, a few
queued), then `genq serve --no-workers` and one client reading 2,000 distinct random
job ids (so genq's body cache rarely answers) and 100 list pages (10 walks of 10
pages each). Also prints the query plans of both reads. PostgreSQL: database
bench_scale_<pid> on 127.0.0.1:5432 (BENCH_PG), dropped at the end. Results:
out/status_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import LOGS, PY, ROOT, free_port, machine, now_iso, percentile, save_json  # noqa: E402
from genq.accounts import AccountService  # noqa: E402
from genq.migrate import upgrade  # noqa: E402
from genq.plans import merge  # noqa: E402
from genq.store import Store  # noqa: E402
from genq.store import tables as t  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def make_key(url: str) -> tuple[str, str, str]:
    """(key, account id, other account id)"""

    async def main() -> tuple[str, str, str]:
        store = Store(url, procrastinate=False)
        try:
            svc = AccountService(store, merge({}))
            acct = await svc.get_or_create("reader", "ultimate", None)
            other = await svc.get_or_create("others", "ultimate", None)
            key, _ = await svc.create_key(acct)
            return key, acct.id, other.id
        finally:
            await store.close()

    return asyncio.run(main())


def load(url: str, n: int, account: str, other: str) -> tuple[list[str], float]:
    sync_url = url.replace("+aiosqlite", "")
    engine = sa.create_engine(sync_url)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    mine: list[str] = []
    t0 = time.monotonic()
    with engine.begin() as conn:
        chunk: list[dict[str, Any]] = []
        for i in range(n):
            acct = account if i % 10 == 0 else other
            job_id = f"job_{i:026d}"
            if acct == account:
                mine.append(job_id)
            created = base + timedelta(seconds=i)
            chunk.append({
                "id": job_id, "account_id": acct, "engine": "demo/noop", "task": "noop",
                "status": "queued" if i % 1000 == 999 else "succeeded", "progress": 100.0,
                "input": {"i": i}, "metadata": {}, "seq": 3, "attempt": 1,
                "created_at": created, "started_at": created, "completed_at": created,
                "updated_at": created, "expires_at": created + timedelta(days=3650),
            })
            if len(chunk) == 20_000:
                conn.execute(sa.insert(t.jobs), chunk)
                chunk = []
        if chunk:
            conn.execute(sa.insert(t.jobs), chunk)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return mine, time.monotonic() - t0


def plans(url: str, account: str, some_id: str) -> dict[str, str]:
    sync_url = url.replace("+aiosqlite", "")
    engine = sa.create_engine(sync_url)
    J = t.jobs.c
    point = sa.select(t.jobs).where(J.id == some_id)
    page = (sa.select(t.jobs).where(J.account_id == account)
            .where(sa.tuple_(J.created_at, J.id) < sa.tuple_(datetime(2026, 1, 5, tzinfo=UTC),
                                                               "job_z"))
            .order_by(J.created_at.desc(), J.id.desc()).limit(50))
    out = {}
    with engine.connect() as conn:
        for name, stmt in (("point", point), ("page", page)):
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + sql).all()
            out[name] = "\n".join(" ".join(str(c) for c in r) for r in rows)
    engine.dispose()
    return out


def measure(url: str, key: str, ids: list[str], reads: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GENQ_DATABASE_URL": url, "GENQ_DATA_DIR": tmp,
               "GENQ_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
        with (LOGS / f"status_scale-{port}.log").open("wb") as log:
            proc = __import__("subprocess").Popen(
                [PY, "-m", "genq", "serve", "--no-workers", "--port", str(port)],
                env=env, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.2)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
                for j in ids[:20]:
                    c.get(f"/v1/jobs/{j}")  # warm-up
                point = []
                for j in random.sample(ids, min(reads, len(ids))):
                    t0 = time.perf_counter()
                    assert c.get(f"/v1/jobs/{j}").status_code == 200
                    point.append(time.perf_counter() - t0)
                pages = []
                for _ in range(10):
                    after = None
                    for _ in range(10):
                        params: dict[str, Any] = {"limit": 50}
                        if after:
                            params["after"] = after
                        t0 = time.perf_counter()
                        r = c.get("/v1/jobs", params=params)
                        pages.append(time.perf_counter() - t0)
                        assert r.status_code == 200
                        after = r.json()["next_cursor"]
        finally:
            proc.terminate()
            proc.wait(30)

    def s(v: list[float]) -> dict[str, float | None]:
        return {"n": len(v), "p50_ms": round((percentile(v, 50) or 0) * 1000, 2),
                "p99_ms": round((percentile(v, 99) or 0) * 1000, 2)}

    return {"point": s(point), "page": s(pages)}


def run(db: str, n: int, reads: int) -> dict[str, Any]:
    if db == "sqlite":
        tmp = tempfile.mkdtemp(prefix="genq-scale-")
        url = f"sqlite+aiosqlite:///{tmp}/genq.db"
        drop = None
    else:
        name = f"bench_scale_{os.getpid()}_{n}"
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
        url = f"{PG.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
        drop = name
    try:
        upgrade(url)
        key, account, other = make_key(url)
        ids, load_s = load(url, n, account, other)
        print(f"[{db} {n:,}] loaded in {load_s:.0f} s", flush=True)
        result = measure(url, key, ids, reads)
        result.update(db=db, jobs=n, account_jobs=len(ids), load_s=round(load_s, 1),
                      plans=plans(url, account, ids[len(ids) // 2]))
        print(f"[{db} {n:,}] point p50 {result['point']['p50_ms']} ms p99 "
              f"{result['point']['p99_ms']} ms; page p50 {result['page']['p50_ms']} ms p99 "
              f"{result['page']['p99_ms']} ms", flush=True)
        return result
    finally:
        if drop:
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {drop} WITH (FORCE)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,1000000")
    p.add_argument("--dbs", default="sqlite,postgres")
    p.add_argument("--reads", type=int, default=2000)
    args = p.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "status_scale", "date": now_iso(), "machine": machine(),
                           "command": " ".join([Path(sys.executable).name, *sys.argv]),
                           "runs": []}
    for db in args.dbs.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            out["runs"].append(run(db, n, args.reads))
            save_json("status_scale.json", out)
    for r in out["runs"]:
        print(f"\n{r['db']} {r['jobs']:,}:\n  point: {r['plans']['point']}\n"
              f"  page:  {r['plans']['page']}")
    print(f"wrote {save_json('status_scale.json', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
