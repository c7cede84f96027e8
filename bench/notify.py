"""How fast does a client learn that a job ended, and what do idle job streams cost?

One server process (bench/asgi.py under uvicorn, in-process workers, --slots worker
slots), one run, two parts:

1. Notification latency per channel. For each channel, --warmup uncounted jobs then
   --jobs `demo/noop` jobs with `{"delay_s": --delay}` (0.05: the client is already
   waiting when the job ends), submitted one at a time, each channel on its own account
   (no channel sees another's jobs). A job's latency is this process's clock
   (`time.time()`) at the moment it holds the news minus the job's `completed_at`
   (stamped by the server just before the finishing transaction commits; the API gives
   it in milliseconds, truncated, so every figure may be up to 1 ms high). Client and
   server are on the same machine and clock. The client is aiohttp on uvloop.
   - `job_sse`: `GET /v1/jobs/{id}/events` opened right after the job is submitted; the
     news is the `event: completed` line. A stream whose `retry:` preamble arrived after
     `completed_at` may have been told by a replay rather than live: it is counted in
     `late` and left out of the figures.
   - `long_poll`: `GET /v1/jobs/{id}?wait=30` with If-None-Match (the ETag of the
     previous answer, the first from the submit) until a terminal body; the news is
     that 200 read in full. Each progress step of the job answers too (`polls_mean`).
   - `account_sse`: one `GET /v1/events` stream, open (its `retry:` preamble received)
     before the first job is submitted and for the whole channel; the news is the
     job's `event: completed` line.
   - `webhook`: jobs submitted with `"webhook": {"url": <receiver>, "events":
     ["completed"]}`; the receiver is an aiohttp server on 127.0.0.1 in this process
     (GENQ_WEBHOOK_ALLOW_PRIVATE=1) answering 204; the news is the delivery's body read
     in full.
   Reported: p50/p99/max per channel; the project's target is p99 <= 20 ms for SSE and
   long-poll.

2. Idle SSE fan-out. ceil(--clients / --per-job) `demo/noop` jobs with `{"delay_s": 600}`
   (they do not end by themselves during the run; with the default --slots all of them
   run) on one more account; then --clients raw TCP connections (asyncio protocols on
   uvloop, no HTTP library), --per-job on each job (default 1,000 per job: 10 jobs for
   10,000 clients, so that the cancels are a small part of the time measured), each
   sending `GET /v1/jobs/{id}/events` and holding it open. Connections are made
   --connect-concurrency at a time; one counts as connected once it has read a `200`
   status line and the `retry:` preamble, else as failed (with the reason). The
   server's VmRSS (/proc/<pid>/status of the uvicorn process) is read after the jobs are
   created and before the first connection, and again --settle seconds after the last
   one connected: KiB per connection = the difference / connected (target <= 50).
   Then all jobs are canceled (`POST /v1/jobs/{id}/cancel`, --cancel-concurrency at a
   time; a running job's stream gets a `status` frame, cancel requested, then its
   `completed` frame) and each client's delay is the time from the first cancel to its
   `event: completed` line; `notify_all_s` is the largest (target: all within 1 s).
   This process's cyclic GC is off while it waits, so that a collection here does not
   delay its timestamps. Also reported, to tell cancel from fan-out: when the cancels
   had all been answered and when the last job ended (`completed_at`), both from the
   first cancel; each client's delay from its job's `completed_at` (the fan-out alone);
   the server's CPU time over the window (it shares 2 cores with this client and the
   machine's other work, also reported); the keep-alive comments the streams received
   (every 15 s per stream, so a connect phase longer than ~12 s makes them overlap the
   cancels). --profile python|native records the server with py-spy from the cancels
   until all clients are told (out/profiles/notify-fanout-*.raw; top functions in the
   JSON; `native` shows C frames such as the garbage collector, `gc_pct`, but pauses the
   server at each sample: that run's timings are slower).

Both processes get RLIMIT_NOFILE raised to its hard limit: this one directly, the server
because it inherits the limit from this process, which starts it. All load is on
127.0.0.1, bounded in count and by --time-limit seconds per phase (each channel: no job
started after it, each observed for 30 s at most; the connections; the wait for the
notifications); the server is always stopped.
Results: out/notify.json.

    ../.venv/bin/python notify.py [--jobs 200] [--clients 10000] [--per-job 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    OUT,
    PY,
    CpuWindow,
    Server,
    machine,
    now_iso,
    percentile,
    pyspy_available,
    pyspy_top,
    running_server,
    save_json,
)

TERMINAL = ("succeeded", "failed", "canceled", "expired")
CHANNELS = ("job_sse", "long_poll", "account_sse", "webhook")
TARGET_P99_MS = 20.0  # SSE and long-poll
TARGET_KB_PER_CONNECTION = 50.0
TARGET_NOTIFY_ALL_S = 1.0
IDLE_INPUT = {"delay_s": 600}  # the most demo/noop accepts; the fan-out's jobs


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def stats(ms: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {"n": len(ms), "p50_ms": r(percentile(ms, 50)), "p99_ms": r(percentile(ms, 99)),
            "max_ms": r(max(ms) if ms else None)}


class Account:
    """One account's aiohttp session (keep-alive connections to the server)."""

    def __init__(self, url: str, key: str, connections: int = 4) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
            connector=aiohttp.TCPConnector(limit=connections),
        )

    async def close(self) -> None:
        await self.session.close()

    async def submit(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The created job and its ETag."""
        async with self.session.post(self.url + "/v1/jobs", json=body) as r:
            raw = await r.read()
            if r.status not in (200, 201, 202):
                raise RuntimeError(f"submit answered {r.status}: {raw[:200]!r}")
            return json.loads(raw), r.headers.get("etag", "")


# ---------------------------------------------------------------- 1. latency

Observe = Callable[[], Awaitable[dict[str, Any]]]


async def channel(one: Observe, *, jobs: int, warmup: int, time_limit: float,
                  ) -> dict[str, Any]:
    """Run `one()` (one job, submitted and observed to its end, in 30 s at most) warmup +
    jobs times, one after another, none started after `time_limit`; the figures of the
    counted ones."""
    deadline = time.monotonic() + time_limit
    ms: list[float] = []
    errors: Counter[str] = Counter()
    late = 0
    polls: list[int] = []
    for i in range(warmup + jobs):
        if time.monotonic() > deadline:
            break
        try:
            seen = await asyncio.wait_for(one(), timeout=30)
        except Exception as exc:  # counted, the run goes on
            errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
            continue
        if i < warmup:
            continue
        if seen.get("late"):
            late += 1
            continue
        ms.append(seen["ms"])
        if "polls" in seen:
            polls.append(seen["polls"])
    out = stats(ms)
    out["late"] = late
    if polls:
        out["polls_mean"] = round(sum(polls) / len(polls), 2)
    out["error_count"] = sum(errors.values())
    out["errors"] = dict(errors.most_common(5))
    return out


def job_sse(acc: Account, body: dict[str, Any]) -> Observe:
    async def one() -> dict[str, Any]:
        job, _ = await acc.submit(body)
        path = f"{acc.url}/v1/jobs/{job['id']}/events"
        async with acc.session.get(path, headers={"Accept": "text/event-stream"}) as r:
            if r.status != 200:
                raise RuntimeError(f"stream answered {r.status}")
            preamble = told = None
            async for line in r.content:
                if line.startswith(b"event: completed"):
                    told = time.time()
                elif told is not None and line.startswith(b"data: "):
                    end = ts(json.loads(line[6:])["completed_at"])
                    return {"ms": (told - end) * 1000,
                            "late": preamble is None or preamble > end}
                elif preamble is None and line.startswith(b"retry:"):
                    preamble = time.time()
        raise RuntimeError("the stream ended without a completed event")

    return one


def long_poll(acc: Account, body: dict[str, Any]) -> Observe:
    async def one() -> dict[str, Any]:
        job, etag = await acc.submit(body)
        path = f"{acc.url}/v1/jobs/{job['id']}"
        polls, told = 0, None
        while job["status"] not in TERMINAL:
            async with acc.session.get(path, params={"wait": "30"},
                                       headers={"If-None-Match": etag}) as r:
                raw = await r.read()
                told = time.time()
            polls += 1
            if r.status == 304:
                continue
            if r.status != 200:
                raise RuntimeError(f"long-poll answered {r.status}: {raw[:200]!r}")
            job, etag = json.loads(raw), r.headers.get("etag", "")
        if told is None:
            raise RuntimeError("the job had ended before the first long-poll")
        return {"ms": (told - ts(job["completed_at"])) * 1000, "polls": polls}

    return one


class Arrivals:
    """(job id, when told, completed_at) as a stream or a receiver hears them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, float, float]] = asyncio.Queue()

    def put(self, job: dict[str, Any], told: float) -> None:
        self.queue.put_nowait((job["id"], told, ts(job["completed_at"])))

    async def of(self, job_id: str) -> float:
        """The latency (ms) of `job_id`'s news; others' are dropped."""
        while True:
            got, told, end = await self.queue.get()
            if got == job_id:
                return (told - end) * 1000


async def account_sse(acc: Account, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    arrivals = Arrivals()
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def listen() -> None:
        async with acc.session.get(acc.url + "/v1/events",
                                   headers={"Accept": "text/event-stream"}) as r:
            if r.status != 200:
                raise RuntimeError(f"/v1/events answered {r.status}")
            told = None
            async for line in r.content:
                if line.startswith(b"event: "):
                    told = time.time() if line.startswith(b"event: completed") else None
                elif told is not None and line.startswith(b"data: "):
                    arrivals.put(json.loads(line[6:]), told)
                    told = None
                elif not ready.done() and line.startswith(b"retry:"):
                    ready.set_result(None)

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(asyncio.shield(ready), 30)

        async def one() -> dict[str, Any]:
            if task.done():
                raise RuntimeError(f"/v1/events ended: {task.exception()!r}")
            job, _ = await acc.submit(body)
            return {"ms": await arrivals.of(job["id"])}

        return await channel(one, **kw)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def webhook(acc: Account, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    arrivals = Arrivals()

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        told = time.time()
        message = json.loads(raw)
        if message.get("type") == "job.completed":
            arrivals.put(message["data"], told)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hooked = {**body, "webhook": {"url": f"http://127.0.0.1:{port}/hook",
                                  "events": ["completed"]}}
    try:
        async def one() -> dict[str, Any]:
            job, _ = await acc.submit(hooked)
            return {"ms": await arrivals.of(job["id"])}

        return await channel(one, **kw)
    finally:
        await runner.cleanup()


async def latency(url: str, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    body = {"engine": "demo/noop", "input": {"delay_s": args.delay}}
    kw = {"jobs": args.jobs, "warmup": args.warmup, "time_limit": args.time_limit}
    out: dict[str, Any] = {}
    for name, key in zip(CHANNELS, keys, strict=True):
        acc = Account(url, key)
        print(f"latency: {name}, {args.jobs} jobs one at a time", flush=True)
        window = CpuWindow(None)
        try:
            if name == "job_sse":
                res = await channel(job_sse(acc, body), **kw)
            elif name == "long_poll":
                res = await channel(long_poll(acc, body), **kw)
            elif name == "account_sse":
                res = await account_sse(acc, body, **kw)
            else:
                res = await webhook(acc, body, **kw)
        finally:
            await acc.close()
        cpu = window.done()
        res["cpu"] = {k: cpu[k] for k in ("wall_s", "client_pct", "others_pct", "loadavg_1m")}
        out[name] = res
        print(f"  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  max {res['max_ms']} ms"
              f"  (n {res['n']}, late {res['late']}, errors {res['error_count']})", flush=True)
    return out


# ---------------------------------------------------------------- 2. fan-out

COMPLETED = b"event: completed\n"
KEEPALIVE = b": keep-alive"
COMPLETED_AT = re.compile(rb'"completed_at":\s*"([^"]+)"')
HEADERS, PREAMBLE, LIVE, FRAME, TOLD = range(5)


class Fan:
    """What the fan-out's clients report: who was told when, who was lost."""

    def __init__(self) -> None:
        self.expected = 0  # connected clients, once all are
        self.told: list[StreamClient] = []
        self.lost_live = 0  # connected, then closed before the news
        self.keepalives = 0  # `: keep-alive` comments the live streams received
        self.all_done = asyncio.Event()

    def check(self) -> None:
        if self.expected and len(self.told) + self.lost_live >= self.expected:
            self.all_done.set()


class StreamClient(asyncio.Protocol):
    """One raw SSE connection: the request, a `200` status line, the `retry:` preamble
    (`ready`), then the time of the `event: completed` line and the frame's
    `completed_at`. The body is chunked; an SSE frame is one chunk, and the markers are
    looked for across reads."""

    __slots__ = (
        "buf",
        "completed_at",
        "fan",
        "ready",
        "request",
        "state",
        "told",
        "transport",
    )

    def __init__(self, request: bytes, fan: Fan, ready: asyncio.Future[None]) -> None:
        self.request, self.fan, self.ready = request, fan, ready
        self.transport: Any = None
        self.state = HEADERS
        self.buf = b""
        self.told = 0.0
        self.completed_at = b""

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.state == TOLD:
            return
        buf = self.buf + data if self.buf else data
        if self.state == HEADERS:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[:buf.find(b"\r\n")]
            if not status.startswith(b"HTTP/1.1 200"):
                self._fail(status.decode("latin-1", "replace")[:60])
                return
            self.state, buf = PREAMBLE, buf[end + 4:]
        if self.state == PREAMBLE:
            at = buf.find(b"retry:")
            if at < 0:
                self.buf = buf[-8:]
                return
            self.state, buf = LIVE, buf[at + 6:]
            if not self.ready.done():
                self.ready.set_result(None)
        if self.state == LIVE:
            self.fan.keepalives += data.count(KEEPALIVE)
            at = buf.find(COMPLETED)
            if at < 0:
                self.buf = buf[-(len(COMPLETED) - 1):]
                return
            self.told, self.state, buf = now, FRAME, buf[at:]
        if self.state == FRAME:
            m = COMPLETED_AT.search(buf)
            if m is None:
                self.buf = buf[-4096:]
                return
            self.completed_at, self.state, self.buf = m.group(1), TOLD, b""
            self.fan.told.append(self)
            self.fan.check()

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state in (HEADERS, PREAMBLE):
            self._fail("closed before the preamble")
        elif self.state != TOLD:
            self.fan.lost_live += 1
            self.fan.check()


def same(proto: StreamClient) -> StreamClient:
    return proto


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and the open descriptors of a process."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    with contextlib.suppress(OSError):
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def nofile_limit(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return " / ".join(line.split()[3:5])
    return None


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


class Profile:
    """py-spy record of the server from its start until stop(). `python`: Python frames,
    non-blocking (the server is not paused); `native`: with C frames (the garbage
    collector, uvloop, libc), pausing the server at each sample, which slows it."""

    def __init__(self, pid: int, limit_s: float, mode: str) -> None:
        exe = Path(PY).parent / "py-spy"
        self.out = OUT / "profiles" / f"notify-fanout-{mode}.raw"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        how = ["--nonblocking"] if mode == "python" else ["--native"]
        self.cmd = [str(exe) if exe.exists() else "py-spy", "record", "--pid", str(pid),
                    *how, "--rate", "250", "--duration", str(int(limit_s) + 5),
                    "--format", "raw", "--output", str(self.out)]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def stop(self) -> dict[str, Any]:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-500:]}
        res = pyspy_top(self.out, n=20)
        gc = sum(int(line.rpartition(" ")[2]) for line in self.out.read_text().splitlines()
                 if "gc_collect" in line)
        res["gc_pct"] = round(100 * gc / res["samples"], 1) if res["samples"] else None
        res["raw"] = str(self.out.relative_to(OUT.parent))
        res["command"] = " ".join(self.cmd)
        return res


async def fanout(srv: Server, key: str, args: argparse.Namespace) -> dict[str, Any]:
    assert srv.proc is not None
    pid = srv.proc.pid
    loop = asyncio.get_running_loop()
    n_jobs = math.ceil(args.clients / args.per_job)
    acc = Account(srv.url, key, connections=args.cancel_concurrency)
    res: dict[str, Any] = {"clients": args.clients, "per_job": args.per_job, "jobs": n_jobs,
                           "server_nofile": nofile_limit(pid)}
    clients: list[StreamClient] = []
    try:
        job_ids = []
        for _ in range(n_jobs):
            job, _ = await acc.submit({"engine": "demo/noop", "input": IDLE_INPUT})
            job_ids.append(job["id"])
        await asyncio.sleep(1)  # the jobs claimed, the server quiet again
        before = proc_status(pid)
        print(f"fan-out: {args.clients} SSE clients on {n_jobs} jobs, "
              f"{args.connect_concurrency} connecting at a time; server RSS "
              f"{mib(before.get('VmRSS'))} MiB", flush=True)

        fan = Fan()
        failures: Counter[str] = Counter()
        requests = [(f"GET /v1/jobs/{j}/events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                     f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
                     ).encode() for j in job_ids]
        tickets = iter(range(args.clients))
        deadline = time.monotonic() + args.time_limit

        async def connector() -> None:
            for i in tickets:
                if time.monotonic() > deadline:
                    failures["not tried: time limit"] += 1
                    continue
                ready: asyncio.Future[None] = loop.create_future()
                proto = StreamClient(requests[i // args.per_job], fan, ready)
                try:
                    async with asyncio.timeout(15):
                        await loop.create_connection(partial(same, proto), "127.0.0.1",
                                                     srv.port)
                        await ready
                except Exception as exc:  # counted
                    why = "timeout" if isinstance(exc, TimeoutError) else str(exc)
                    failures[f"{type(exc).__name__}: {why}"[:120]] += 1
                    if proto.transport is not None:
                        proto.transport.close()
                else:
                    clients.append(proto)

        window = CpuWindow(srv)
        t0 = time.monotonic()
        await asyncio.gather(*(connector() for _ in range(args.connect_concurrency)))
        connect_s = time.monotonic() - t0
        res["connect"] = {"s": round(connect_s, 2),
                          "per_s": round(len(clients) / connect_s, 1) if connect_s else None,
                          "cpu": window.done()}
        await asyncio.sleep(args.settle)
        after = proc_status(pid)
        early = sum(1 for c in clients if c.state != LIVE)
        connected = len(clients)
        res.update({
            "connected": connected,
            "failed": args.clients - connected,
            "failures": dict(failures.most_common(8)),
            "not_live_before_cancel": early,  # told or lost before the cancels
            "settle_s": args.settle,
            "rss_before_mb": mib(before.get("VmRSS")),
            "rss_after_mb": mib(after.get("VmRSS")),
            "rss_peak_mb": mib(after.get("VmHWM")),
            "kb_per_connection": (round((after["VmRSS"] - before["VmRSS"]) / connected, 1)
                                  if connected and "VmRSS" in after else None),
            "server_fds": [before.get("fds"), after.get("fds")],
        })
        print(f"  connected {connected}, failed {res['failed']} in {connect_s:.1f} s; "
              f"server RSS {res['rss_after_mb']} MiB, {res['kb_per_connection']} KiB per "
              f"connection", flush=True)

        # the news: cancel every job, wait until every connected client is told
        # a client told or lost before the cancels is not waited for (see above)
        fan.expected = sum(1 for c in clients if c.state == LIVE)
        fan.told.clear()
        fan.lost_live = 0
        keepalives_before = fan.keepalives
        profile = None
        if args.profile and pyspy_available():
            profile = Profile(pid, args.time_limit, args.profile)
        if profile:
            await asyncio.sleep(1)  # let py-spy attach
        sem = asyncio.Semaphore(args.cancel_concurrency)
        answered: list[float] = []
        cancel_errors: Counter[str] = Counter()

        async def cancel(job_id: str) -> None:
            async with sem, acc.session.post(f"{srv.url}/v1/jobs/{job_id}/cancel") as r:
                await r.read()
                answered.append(time.time())
                if r.status not in (200, 202):  # canceled / cancel requested
                    cancel_errors[str(r.status)] += 1

        # this process's cyclic GC off while it waits for the news: a collection here
        # would delay its timestamps (it holds one protocol object per client)
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            window = CpuWindow(srv)
            start = time.time()
            fan.check()
            await asyncio.gather(*(cancel(j) for j in job_ids))
            if fan.expected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fan.all_done.wait(), args.time_limit)
            cpu = window.done()
        finally:
            gc.enable()
            gc.unfreeze()
        if profile:
            res["pyspy"] = profile.stop()
        told = [c.told - start for c in fan.told]
        from_end = [(c.told - ts(c.completed_at.decode())) * 1000 for c in fan.told]
        ends = sorted({ts(c.completed_at.decode()) for c in fan.told})
        res.update({
            "told": len(told),
            "not_told": fan.expected - len(told),
            "lost_before_told": fan.lost_live,
            "notify_all_s": round(max(told), 3) if told else None,
            **{k: v for k, v in stats([t * 1000 for t in told]).items() if k != "n"},
            "cancels_answered_s": round(max(answered) - start, 3) if answered else None,
            "cancel_errors": dict(cancel_errors),
            # the server's keep-alive comments (every GENQ_SSE_KEEPALIVE_S, 15 s by
            # default, per stream) before the cancels and while the clients were told
            "keepalives_before_cancel": keepalives_before,
            "keepalives_during_notify": fan.keepalives - keepalives_before,
            "last_job_ended_s": round(ends[-1] - start, 3) if ends else None,
            "from_completed_at": stats(from_end),
            "notify_cpu": cpu,
            # CPU time, whatever else the machine was running meanwhile
            "notify_server_cpu_s": round(cpu["server_pct"] * cpu["wall_s"] / 100, 3),
            "notify_server_cpu_us_per_client": (
                round(cpu["server_pct"] * cpu["wall_s"] * 1e4 / len(told), 1) if told else None),
        })
        print(f"  told {len(told)} of {fan.expected}: all within {res['notify_all_s']} s "
              f"of the first cancel (p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms)",
              flush=True)
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.close()
        await acc.close()
        await asyncio.sleep(0.5)
    return res


# ---------------------------------------------------------------- run


def raise_nofile(need: int) -> tuple[int, int]:
    """RLIMIT_NOFILE of this process (and so of the server it starts) to its hard
    limit, higher if allowed and needed."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else max(hard, need)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        return want, want
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard, hard


async def run(srv: Server, keys: list[str], args: argparse.Namespace,
              result: dict[str, Any]) -> None:
    if args.jobs > 0:
        result["latency"] = await latency(srv.url, keys[:4], args)
        save_json("notify.json", result)
    if args.clients > 0:
        result["fanout"] = await fanout(srv, keys[4], args)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200, help="jobs per latency channel (0: skip)")
    p.add_argument("--warmup", type=int, default=3, help="uncounted jobs per channel first")
    p.add_argument("--delay", type=float, default=0.05, help="the latency jobs' delay_s")
    p.add_argument("--clients", type=int, default=10000, help="idle SSE clients (0: skip)")
    p.add_argument("--per-job", type=int, default=1000, help="SSE clients per job")
    p.add_argument("--connect-concurrency", type=int, default=64,
                   help="connections being opened at a time")
    p.add_argument("--cancel-concurrency", type=int, default=4,
                   help="cancel requests in flight at a time")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between the last connection and the RSS reading")
    p.add_argument("--slots", type=int, default=16, help="GENQ_WORKER_SLOTS")
    p.add_argument("--time-limit", type=float, default=120, help="seconds per phase")
    p.add_argument("--profile", choices=("python", "native"), default=None,
                   help="py-spy the server while the fan-out's clients are told (native: "
                        "with C frames such as the garbage collector; pauses the server "
                        "at each sample, so that run's timings are slower)")
    args = p.parse_args()
    if args.per_job < 1:
        p.error("--per-job must be at least 1")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    nofile = raise_nofile(args.clients + 1024)
    if args.clients + 256 > nofile[0]:
        p.error(f"RLIMIT_NOFILE is {nofile[0]}: too low for {args.clients} clients")
    result: dict[str, Any] = {
        "benchmark": "notify",
        "date": now_iso(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "params": {**{k: getattr(args, k) for k in (
            "jobs", "warmup", "delay", "clients", "per_job", "connect_concurrency",
            "cancel_concurrency", "settle", "slots", "time_limit")},
            "client": "aiohttp" + (" on uvloop" if "uvloop" in sys.modules else ""),
            "nofile": list(nofile)},
        "targets": {"p99_ms_sse_and_long_poll": TARGET_P99_MS,
                    "kb_per_connection": TARGET_KB_PER_CONNECTION,
                    "notify_all_s": TARGET_NOTIFY_ALL_S},
        "polling_expected_ms": {f"every {s} s": s * 1000 / 2 for s in (2, 5, 10)},
    }
    env = {"GENQ_WEBHOOK_ALLOW_PRIVATE": "1", "GENQ_WORKER_SLOTS": str(args.slots),
           "BENCH_INSTRUMENT": "0"}
    with running_server("uvicorn", "demo/noop", None, accounts=5, **env) as (srv, keys):
        result["server"] = {"kind": srv.kind, "command": " ".join(srv.cmd), "env": env}
        try:
            asyncio.run(run(srv, [k["key"] for k in keys], args, result))
        finally:
            path = save_json("notify.json", result)
    print_summary(result)
    print(f"wrote {path}")
    return 0


def print_summary(result: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print("\nsummary")
    for name, r in result.get("latency", {}).items():
        line = (f"  {name:12} n {r['n']:4}  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
                f"max {r['max_ms']} ms")
        if name != "webhook" and r["p99_ms"] is not None:
            line += f"  (p99 <= {TARGET_P99_MS:g} ms: {verdict(r['p99_ms'] <= TARGET_P99_MS)})"
        if r["late"] or r["error_count"]:
            line += f"  late {r['late']}, errors {r['error_count']}"
        print(line)
    f = result.get("fanout")
    if not f:
        return
    kb = f.get("kb_per_connection")
    print(f"  fan-out      {f.get('connected')} of {f['clients']} clients connected "
          f"({f.get('failed')} failed), {f['per_job']} per job on {f['jobs']} jobs, in "
          f"{f.get('connect', {}).get('s')} s")
    print(f"               server RSS {f.get('rss_before_mb')} -> {f.get('rss_after_mb')} MiB:"
          f" {kb} KiB per connection (<= {TARGET_KB_PER_CONNECTION:g}: "
          f"{verdict(kb is not None and kb <= TARGET_KB_PER_CONNECTION)})")
    if "told" in f:
        all_s = f["notify_all_s"]
        ok = all_s is not None and all_s <= TARGET_NOTIFY_ALL_S and not f["not_told"]
        print(f"               told {f['told']} (not told {f['not_told']}): all within "
              f"{all_s} s of the first cancel (<= {TARGET_NOTIFY_ALL_S:g} s: {verdict(ok)}); "
              f"p50 {f['p50_ms']} ms  p99 {f['p99_ms']} ms  max {f['max_ms']} ms")
        fc = f["from_completed_at"]
        print(f"               cancels answered by {f['cancels_answered_s']} s, last job ended "
              f"at {f['last_job_ended_s']} s; from each job's completed_at p50 "
              f"{fc['p50_ms']} ms  p99 {fc['p99_ms']} ms; server CPU "
              f"{f['notify_server_cpu_s']} s ({f['notify_server_cpu_us_per_client']} us per "
              f"client); other work {f['notify_cpu']['others_pct']}% of "
              f"{f['notify_cpu']['capacity_pct']}%")


if __name__ == "__main__":
    sys.exit(main())
