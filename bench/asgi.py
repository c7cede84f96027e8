"""ASGI factory for the benchmarks: genq's real app plus two reference endpoints served
by the same process, so genq and "bare" are measured on the same server and loop.

    uvicorn --factory bench.asgi:create_app ...
    granian --interface asgi --factory bench.asgi:create_app ...

Configuration comes from the environment: every `GENQ_*` variable as for `genq serve`
(through `Settings()`), plus

    BENCH_WORKERS=1|0             run in-process workers (default 1)
    BENCH_ENGINE=name             engine whose concurrency BENCH_ENGINE_CONCURRENCY sets
    BENCH_ENGINE_CONCURRENCY=N    override that engine's `concurrency` (e2e)
    BENCH_INSTRUMENT=1            count the store's SQL statements, write transactions and
                                  operations (GET /bench/stats; POST resets)

Endpoints added (loopback benchmarking only, never for production):

    POST /bench/raw?job_id=..&account_id=..   fetch the job's cached body once, in-process
                                              (`genq.jobs.body`), and keep its bytes + ETag
    GET  /bench/raw        raw ASGI: the kept bytes with the same headers genq sends
                           (content-type, content-length, etag, cache-control); no
                           framework, no auth, no routing beyond one string compare
    GET  /bench/stats      SQL statements, write transactions and operations (with
                           BENCH_INSTRUMENT=1); POST /bench/stats resets them
    GET  /bench/fastapi    a FastAPI route on genq's own app (same middleware stack and
                           router, inserted at the position of `GET /v1/jobs/{id}`) that
                           returns the kept bytes: the framework floor, without genq's
                           auth dependency, query validation and cache lookup
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from genq.api import create_app as genq_create_app
from genq.core import Genq
from genq.settings import Settings

JSON = b"application/json"


class Stats:
    """What the store did (genq.store.db.Stats: statements, write transactions, write
    and read operations) since the last reset, while BENCH_INSTRUMENT=1."""

    def __init__(self) -> None:
        self.enabled = False
        self.note = ""
        self.db: Any = None
        self.reset()

    def reset(self) -> None:
        self.base = self.db.snapshot() if self.db is not None else {}
        self.t0 = time.monotonic()

    def report(self) -> dict[str, Any]:
        now = self.db.snapshot() if self.db is not None else {}
        delta = {k: v - self.base.get(k, 0) for k, v in now.items()}
        return {
            "enabled": self.enabled, "note": self.note,
            "window_s": round(time.monotonic() - self.t0, 2),
            "write_transactions": delta.get("write_txns", 0),
            "write_operations": delta.get("write_ops", 0),
            "read_operations": delta.get("read_ops", 0),
            "sql_statements": delta.get("statements", 0),
        }


STATS = Stats()


def instrument(core: Genq) -> None:
    STATS.db = core.store.db.stats
    STATS.enabled = True
    STATS.reset()


class BenchApp:
    """Dispatch `/bench/raw` itself; everything else (lifespan included) goes to genq."""

    def __init__(self, inner: Any, core: Genq) -> None:
        self.inner = inner
        self.core = core
        self.body = b"{}"
        self.etag = 'W/"unset"'
        self.headers: list[tuple[bytes, bytes]] = self._headers()

    def _headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", JSON),
            (b"etag", self.etag.encode()),
            (b"cache-control", b"no-cache"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/raw":
            if scope["method"] == "POST":
                await self._prime(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            await send({"type": "http.response.body", "body": self.body})
            return
        if scope["type"] == "http" and scope["path"] == "/bench/stats":
            if scope["method"] == "POST":
                STATS.reset()
            body = json.dumps(STATS.report()).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", JSON)]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.inner(scope, receive, send)

    async def _prime(self, scope: Scope, receive: Receive, send: Send) -> None:
        from urllib.parse import parse_qs

        q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        item = await self.core.jobs.body(q["account_id"], q["job_id"])
        self.body, self.etag = item.body, item.etag
        self.headers = self._headers()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def create_app() -> BenchApp:
    settings = Settings()
    core = Genq(settings)
    name = os.environ.get("BENCH_ENGINE", "")
    conc = os.environ.get("BENCH_ENGINE_CONCURRENCY", "")
    if name and conc:
        if name not in core.engines:
            raise SystemExit(f"bench.asgi: unknown engine {name!r}; have {sorted(core.engines)}")
        core.engines[name].concurrency = int(conc)  # the instance the worker will use
    if os.environ.get("BENCH_INSTRUMENT") == "1":
        instrument(core)
    workers = os.environ.get("BENCH_WORKERS", "1") not in ("0", "false", "no")
    app = genq_create_app(genq=core, workers=workers, freeze_gc=True)  # as `genq serve`
    bench = BenchApp(app, core)

    async def fastapi_floor() -> Response:
        return Response(bench.body, media_type="application/json",
                        headers={"ETag": bench.etag, "Cache-Control": "no-cache"})

    app.add_api_route("/bench/fastapi", fastapi_floor, methods=["GET"],
                      include_in_schema=False)
    # put the floor where genq's jobs routes are matched, so routing costs about the same
    from genq.api.routes import jobs as jobs_routes

    routes = app.router.routes
    floor = routes.pop()
    at = next((i for i, r in enumerate(routes)
               if getattr(r, "original_router", None) is jobs_routes.router
               or getattr(r, "path", None) == "/v1/jobs/{job_id}"), len(routes))
    routes.insert(at, floor)
    return bench
