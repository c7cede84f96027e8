"""How fast does a client learn that a job finished, and what do idle streams cost?

1. Notification latency: the time from a job's completion (its `completed_at`, stamped
   just before the commit) to the moment a client holds the news, over N `demo/noop`
   jobs, for the account's SSE stream, long-poll and a webhook receiver; beside the
   expected delay of polling at the seed services' advised intervals (half the interval).
2. Fan-out: C idle SSE clients on one server process (one job each, all waiting), then
   the server's RSS per connection and the time until all C clients hear their job end.

All load is on 127.0.0.1, bounded in count and time; the server is always stopped.

    python bench/notify.py --jobs 1000 --clients 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import resource
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    machine,
    now_iso,
    percentile,
    running_server,
    save_json,
)

INPUT = {"delay_s": 0}


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else None}


async def sse_latency(url: str, key: str, jobs: int) -> list[float]:
    """One account stream; submit jobs one after another and time each `completed`."""
    h = {"Authorization": f"Bearer {key}"}
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        done: asyncio.Queue[float] = asyncio.Queue()

        async def listen() -> None:
            async with c.stream("GET", "/v1/events") as r:
                event = ""
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "completed":
                        now = time.time()
                        job = json.loads(line[6:])
                        done.put_nowait((now - ts(job["completed_at"])) * 1000)

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.5)
        for _ in range(jobs):
            await c.post("/v1/jobs", json={"engine": "demo/noop", "input": INPUT})
            out.append(await asyncio.wait_for(done.get(), 30))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return out


async def longpoll_latency(url: str, key: str, jobs: int) -> list[float]:
    h = {"Authorization": f"Bearer {key}"}
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        for _ in range(jobs):
            r = await c.post("/v1/jobs", json={"engine": "demo/noop", "input": INPUT})
            job, etag = r.json(), r.headers.get("etag", "")
            while job["status"] not in ("succeeded", "failed", "canceled", "expired"):
                r = await c.get(f"/v1/jobs/{job['id']}", params={"wait": 30},
                                headers={"If-None-Match": etag})
                if r.status_code == 200:
                    job, etag = r.json(), r.headers["etag"]
            out.append((time.time() - ts(job["completed_at"])) * 1000)
    return out


def webhook_latency(url: str, key: str, jobs: int) -> list[float]:
    got: list[float] = []
    arrived = threading.Semaphore(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            now = time.time()
            got.append((now - ts(json.loads(body)["data"]["completed_at"])) * 1000)
            self.send_response(204)
            self.end_headers()
            arrived.release()

        def log_message(self, *args: Any) -> None:
            pass

    rx = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    hook = {"url": f"http://127.0.0.1:{rx.server_address[1]}/hook"}
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as c:
            for _ in range(jobs):
                c.post("/v1/jobs", json={"engine": "demo/noop", "input": INPUT,
                                         "webhook": hook})
                if not arrived.acquire(timeout=30):
                    raise RuntimeError("a webhook did not arrive in 30 s")
    finally:
        rx.shutdown()
        rx.server_close()
    return got


def rss_kib(pid: int) -> int:
    total = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


async def fanout(url: str, key: str, pid: int, clients: int) -> dict[str, Any]:
    """`clients` raw SSE connections, each on its own job held by `delay_s`, then the
    time from the first to the last completion each heard."""
    h = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        # one long job per 50 clients keeps the job count (and the workers) small
        jobs = []
        for _ in range(max(1, clients // 50)):
            r = await c.post("/v1/jobs", json={"engine": "demo/noop",
                                               "input": {"delay_s": 600}})
            jobs.append(r.json()["id"])
    before = rss_kib(pid)
    host, port = url.removeprefix("http://").split(":")
    ready = 0
    heard: list[float] = []
    writers: list[asyncio.StreamWriter] = []

    async def client(i: int) -> None:
        nonlocal ready
        reader, writer = await asyncio.open_connection(host, int(port))
        writers.append(writer)
        job = jobs[i % len(jobs)]
        writer.write((f"GET /v1/jobs/{job}/events HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
                      ).encode())
        await writer.drain()
        counted = False
        while line := await reader.readline():
            if not counted and line.startswith(b"retry:"):
                ready += 1
                counted = True
            if line.startswith(b"event: completed"):
                heard.append(time.monotonic())
                return

    t0 = time.monotonic()
    tasks = []
    for i in range(clients):
        tasks.append(asyncio.create_task(client(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    while ready < clients and time.monotonic() - t0 < 300:
        await asyncio.sleep(0.2)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(2)
    during = rss_kib(pid)
    async with httpx.AsyncClient(base_url=url, headers=h, timeout=60) as c:
        start = time.monotonic()
        for job in jobs:
            await c.post(f"/v1/jobs/{job}/cancel")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for w in writers:
        w.close()
    return {
        "clients": clients,
        "connected": ready,
        "connect_s": round(connect_s, 1),
        "rss_before_kib": before,
        "rss_with_clients_kib": during,
        "rss_per_connection_kib": round((during - before) / max(1, ready), 1),
        "notified": len(heard),
        "all_notified_s": round(max(heard) - start, 3) if heard else None,
        "p50_notified_s": round(percentile([x - start for x in heard], 50) or 0, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--server", default="uvicorn")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result: dict[str, Any] = {"date": now_iso(), "machine": machine(),
                              "command": " ".join(["python", "bench/notify.py", *sys.argv[1:]])}
    extra = {"GENQ_WEBHOOK_ALLOW_PRIVATE": "1", "GENQ_WORKER_SLOTS": "8"}
    with running_server(args.server, "demo/noop", None, accounts=3, **extra) as (srv, keys):
        url = srv.url
        result["sse"] = summary(asyncio.run(sse_latency(url, keys[0]["key"], args.jobs)))
        result["long_poll"] = summary(asyncio.run(
            longpoll_latency(url, keys[1]["key"], args.jobs)))
        result["webhook"] = summary(webhook_latency(url, keys[2]["key"], args.jobs))
        result["polling_expected_ms"] = {f"every {s} s": s * 1000 / 2 for s in (2, 5, 10)}
        assert srv.proc is not None
        result["fanout"] = asyncio.run(fanout(url, keys[0]["key"], srv.proc.pid, args.clients))
    print(json.dumps(result, indent=2))
    save_json("notify", result)


if __name__ == "__main__":
    main()
