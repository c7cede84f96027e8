"""In-process CPU cost of the hot path, without a network or an HTTP server: the bench
ASGI app (genq + /bench/raw + /bench/fastapi) is called directly with a prepared scope,
so the numbers are the application's own microseconds per request. Then cProfile over
the genq requests, top functions by own time and by cumulative time.

    ../.venv/bin/python profile_hot_path.py [--engine demo/noop] [--n 5000]

Results: out/profile_hot_path.json and out/profile_hot_path.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH_PLANS,
    OUT,
    ROOT,
    create_keys,
    engine_input,
    engines_path,
    machine,
    now_iso,
    save_json,
)


class Lifespan:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        self.task = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                                 self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        msg = await self.outbox.get()
        if msg["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {msg}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        assert self.task is not None
        await self.task


async def call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]],
               body: bytes = b"", query: bytes = b"") -> tuple[int, bytes, dict[bytes, bytes]]:
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
    }
    sent = False
    status, chunks, hdrs = 0, [], {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
            hdrs.update(dict(msg.get("headers", [])))
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks), hdrs


HOPS = {"n": 0, "asyncio": 0}


def count_thread_hops() -> None:
    """Count thread-pool round trips: anyio.to_thread.run_sync (what Starlette/FastAPI
    use to run sync code such as a `def` dependency) and asyncio.to_thread (used by
    libraries, e.g. `limits`' in-memory storage)."""
    import anyio.to_thread

    orig = anyio.to_thread.run_sync
    orig_asyncio = asyncio.to_thread

    async def counted(*a: Any, **k: Any) -> Any:
        HOPS["n"] += 1
        return await orig(*a, **k)

    async def counted_asyncio(*a: Any, **k: Any) -> Any:
        HOPS["asyncio"] += 1
        return await orig_asyncio(*a, **k)

    anyio.to_thread.run_sync = counted  # type: ignore[assignment]
    asyncio.to_thread = counted_asyncio  # type: ignore[assignment]


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from bench.asgi import STATS, create_app

    count_thread_hops()

    keys = await asyncio.to_thread(create_keys, data_dir, dict(os.environ), args.accounts)
    app = create_app()
    async with Lifespan(app):
        body = json.dumps({"engine": args.engine,
                           "input": engine_input(args.engine, args.input)}).encode()
        jobs = []  # (path, auth headers, etag) of one succeeded job per account
        for key in keys:
            auth = [(b"authorization", f"Bearer {key['key']}".encode())]
            st, raw, _ = await call(app, "POST", "/v1/jobs",
                                    [*auth, (b"content-type", b"application/json"),
                                     (b"prefer", b"wait=30")], body)
            assert st in (200, 202), (st, raw)
            job_id = json.loads(raw)["id"]
            for _ in range(300):
                st, raw, hdrs = await call(app, "GET", f"/v1/jobs/{job_id}", auth)
                if json.loads(raw)["status"] == "succeeded":
                    break
                await asyncio.sleep(0.1)
            jobs.append((f"/v1/jobs/{job_id}", auth, hdrs[b"etag"]))
        job_id = jobs[0][0].rsplit("/", 1)[1]
        st, _, _ = await call(app, "POST", "/bench/raw", [], b"",
                              f"job_id={job_id}&account_id={keys[0]['account_id']}".encode())
        assert st == 204
        # each request goes to the next account in turn, as in hot_path.py (genq keeps a
        # rate-limit window per account)
        targets: dict[str, tuple[list[tuple[str, list[tuple[bytes, bytes]]]], int]] = {
            "genq": ([(p, a) for p, a, _ in jobs], 200),
            "genq_304": ([(p, [*a, (b"if-none-match", e)]) for p, a, e in jobs], 304),
            "fastapi_floor": ([("/bench/fastapi", a) for _, a, _ in jobs], 200),
            "bare": ([("/bench/raw", a) for _, a, _ in jobs], 200),
        }
        timings: dict[str, float] = {}
        per_request: dict[str, dict[str, float]] = {}

        async def burst(reqs: list[tuple[str, list[tuple[bytes, bytes]]]], n: int,
                        want: int | None = None) -> None:
            for i in range(n):
                path, headers = reqs[i % len(reqs)]
                st, _, _ = await call(app, "GET", path, headers)
                assert want is None or st == want, (path, st)

        for name, (reqs, want) in targets.items():
            await burst(reqs, 200, want)  # warm
            HOPS["n"], HOPS["asyncio"] = 0, 0
            STATS.reset()
            await burst(reqs, 1000)
            db = STATS.report()  # the store's operations: one thread hop each
            store_ops = db["read_operations"] + db["write_operations"]
            per_request[name] = {
                "thread_hops": (HOPS["n"] + HOPS["asyncio"] + store_ops) / 1000,
                "anyio_thread_hops": HOPS["n"] / 1000,
                "asyncio_thread_hops": HOPS["asyncio"] / 1000,
                "store_operations": store_ops / 1000,
                "sql_statements": db["sql_statements"] / 1000}
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                await burst(reqs, args.n)
                best = min(best, (time.perf_counter() - t0) / args.n)
            timings[name] = round(best * 1e6, 1)
            print(f"{name:14s} {timings[name]:8.1f} us/request (in-process, best of 3 x {args.n}); "
                  f"thread-pool hops/request {per_request[name]['anyio_thread_hops']:.2f} (anyio) "
                  f"+ {per_request[name]['asyncio_thread_hops']:.2f} (asyncio.to_thread) "
                  f"+ {per_request[name]['store_operations']:.2f} (store), "
                  f"SQL/request {per_request[name]['sql_statements']:.3f}", flush=True)
        prof = cProfile.Profile()
        prof.enable()
        await burst(targets["genq"][0], args.n)
        prof.disable()
    texts = {}
    for sort in ("tottime", "cumulative"):
        buf = io.StringIO()
        st_ = pstats.Stats(prof, stream=buf)
        st_.strip_dirs().sort_stats(sort).print_stats(args.top)
        texts[sort] = buf.getvalue()
    return {"us_per_request": timings, "per_request": per_request, "profile": texts,
            "n": args.n, "accounts": args.accounts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="demo/noop")
    p.add_argument("--input", default=None)
    p.add_argument("--engines-path", default=None)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--accounts", type=int, default=64,
                   help="accounts (one job each) the requests go to in turn")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="genq-prof-") as tmp:
        data_dir = Path(tmp) / "data"
        os.environ["GENQ_DATA_DIR"] = str(data_dir)
        os.environ["PYTHONPATH"] = str(ROOT) + (
            os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
        os.environ["BENCH_WORKERS"] = "1"
        os.environ["BENCH_INSTRUMENT"] = "1"  # counts SQL statements
        os.environ["BENCH_ENGINE"] = args.engine
        os.environ["GENQ_PLANS"] = json.dumps(BENCH_PLANS)
        os.environ.pop("GENQ_ENGINES", None)
        ep = engines_path(args.engine, args.engines_path)
        if ep:
            os.environ["GENQ_ENGINES"] = ep
        sys.path.insert(0, str(ROOT))
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run
        res = runner(run(args, data_dir))
    result = {"benchmark": "profile_hot_path", "date": now_iso(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "machine": machine(), "engine": args.engine, **res}
    save_json("profile_hot_path.json", result)
    (OUT / "profile_hot_path.txt").write_text(res["profile"]["tottime"] + "\n"
                                              + res["profile"]["cumulative"])
    print("cProfile top lists: out/profile_hot_path.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
