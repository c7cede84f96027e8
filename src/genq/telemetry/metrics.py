"""Prometheus metrics, on a registry of their own per `Genq` (tests run several in one
process; nothing global). Every process exposes its own: the API at `/metrics`, a
`genq worker` on `--metrics-port` (`serve`). Counters are counted once, by the process
that made the transition (its `JobService.publish`), never by the processes that only
hear of it, so `sum()` over all scraped processes is exact. Gauges of the queue come
from the board every process keeps (`genq.jobcache.Board`): the same in every process,
read with `max()`. Credits held are the one number memory does not have: a query at
most every `metrics_query_s`, in the background while somebody scrapes, never per
scrape (so the first scrape after a start has none yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genq.events import Change
from genq.lifecycle import EventType, Hook, Status

if TYPE_CHECKING:
    from genq.core import Genq

log = logging.getLogger(__name__)

# a job: 10 ms (demo/noop) .. 1 h (a training run)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# a request or a webhook/upstream call: sub-millisecond status reads .. a minute
CALL_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
_LE = (*(str(float(b)) for b in CALL_BUCKETS), "+Inf")  # their `le` labels
# error codes kept as label values (see `error_class`)
ERROR_CODES = frozenset(
    {
        "engine_error",
        "provider_error",
        "moderated",
        "timeout",
        "worker_lost",
        "canceled",
        "invalid_input",
    }
)
IDLE_SCRAPES_S = 300.0  # no scrape for this long: the periodic query pauses
UNMATCHED = "unmatched"  # the route label of a request no route took (404s)
_CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def submitted_at(job_id: str) -> float | None:
    """Unix time a job was submitted, from its ULID (`job_<26 chars>`: 48 bits of ms)."""
    ulid = job_id.rpartition("_")[2]
    if len(ulid) != 26:
        return None
    ms = 0
    for c in ulid[:10]:
        digit = _CROCKFORD.get(c)
        if digit is None:
            return None
        ms = ms * 32 + digit
    return ms / 1000


def error_class(code: str | None) -> str:
    """The `error` label of an ended job: its code when it is one of genq's, else
    `other` (engines may invent codes; a label must not take unbounded values)."""
    if not code:
        return ""
    if code in ERROR_CODES or code.startswith("upstream_"):
        return code
    return "other"


class Metrics:
    """The registry and the hooks that feed it (see `bind`)."""

    def __init__(self, query_s: float = 15.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.query_s = query_s
        self.events = Counter(
            "genq_job_events", "Job events this process heard of (any process's)", ["type"],
            registry=r,
        )  # fmt: skip
        self.finished = Counter(
            "genq_jobs_finished",
            "Jobs this process ended, by status (see genq_jobs_completed_total)",
            ["status"],
            registry=r,
        )
        self.submitted = Counter(
            "genq_jobs_submitted", "Jobs this process accepted", ["engine"], registry=r
        )
        self.started = Counter(
            "genq_jobs_started",
            "Runs this process's worker claimed (a re-queued job starts again)",
            ["engine"],
            registry=r,
        )
        self.completed = Counter(
            "genq_jobs_completed",
            "Jobs this process ended, by engine, status and error code",
            ["engine", "status", "error"],
            registry=r,
        )
        self.duration = Histogram(
            "genq_job_duration_seconds",
            "From a job's first start to its end (jobs that ran)",
            ["engine", "status"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "genq_job_queue_wait_seconds",
            "From submission to the first start",
            ["engine"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "genq_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, failed, disabled)",
            ["outcome"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "genq_webhook_attempt_duration_seconds",
            "How long a receiver took to answer (or to fail)",
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.upstream = Counter(
            "genq_upstream_requests",
            "Calls to upstream providers by HTTP status (error: no answer)",
            ["provider", "status"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            "genq_upstream_request_duration_seconds",
            "Upstream calls' latency",
            ["provider"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        # (method, route, status) -> bucket counts (the last: +Inf) and the sum, written
        # by `HttpMetrics` without locks (one event loop), exposed by `_Http`
        self.http: dict[tuple[str, Any, int], list[float]] = {}
        r.register(_Http(self.http))
        # label children looked up once (labels() costs a lock and a tuple each call)
        self._children: dict[tuple[object, ...], Any] = {}
        self.held: dict[str, int] | None = None  # credits held by engine, last query
        self.scraped = -math.inf  # monotonic time of the last scrape
        self.job_streams: Callable[[], int] = lambda: 0
        self.account_streams = 0
        self._genq: Genq | None = None
        self._task: asyncio.Task[None] | None = None

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- wiring -------------------------------------------------------------------------

    def bind(self, genq: Genq) -> None:
        """Feed the registry from `genq`'s services (called once, by `Genq`)."""
        self._genq = genq
        genq.bus.subscribe(self._on_change)
        genq.jobs.on_made = self.job_made
        genq.webhooks.observe = self.webhook_attempt
        genq.gateway.observe = self.upstream_call
        self.registry.register(_State(self, genq))

    async def start(self) -> None:
        if self._genq is not None and self._task is None:
            self._task = asyncio.create_task(self._query_loop(), name="genq-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _query_loop(self) -> None:
        """Every `query_s`, while somebody scrapes (within the last five minutes): no
        query at all where nobody reads the metrics."""
        assert self._genq is not None
        while True:
            await asyncio.sleep(self.query_s)
            if time.monotonic() - self.scraped > max(IDLE_SCRAPES_S, 4 * self.query_s):
                continue
            try:
                self.held = await self._genq.store.jobs.held_credits()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("metrics: reading the credits held failed", exc_info=True)

    # -- hooks ----------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        self._child(self.events, change.type).inc()

    def job_made(self, change: Change, hook: Hook | None) -> None:
        """A transition this process committed (`JobService.publish`)."""
        kind = change.type
        if kind == EventType.COMPLETED:
            status = change.status
            error = change.data.get("error")
            code = error_class(error.get("code") if isinstance(error, dict) else None)
            self._child(self.finished, status).inc()
            self._child(self.completed, change.engine, status, code).inc()
            job = change.job
            if job is not None and job.started_at is not None and job.completed_at is not None:
                took = (job.completed_at - job.started_at).total_seconds()
                self._child(self.duration, change.engine, status).observe(max(took, 0.0))
        elif kind == EventType.STATUS:
            if hook == Hook.STARTED:
                self._child(self.started, change.engine).inc()
                job = change.job
                if job is not None and job.attempt == 1 and job.started_at is not None:
                    waited = (job.started_at - job.created_at).total_seconds()
                    self._child(self.queue_wait, change.engine).observe(max(waited, 0.0))
            elif change.seq == 1 and change.status == Status.QUEUED:
                self._child(self.submitted, change.engine).inc()

    def webhook_attempt(self, outcome: str, seconds: float | None) -> None:
        self._child(self.webhooks, "retry" if outcome == "pending" else outcome).inc()
        if seconds is not None:
            self.webhook_latency.observe(seconds)

    def upstream_call(self, provider: str, status: int | None, seconds: float) -> None:
        self._child(self.upstream, provider, str(status) if status else "error").inc()
        self._child(self.upstream_latency, provider).observe(seconds)

    # -- exposition -----------------------------------------------------------------------

    def text(self) -> bytes:
        self.scraped = time.monotonic()
        return _generate_latest(self.registry)

    def authorized(self, header: str) -> bool:
        """Whether an `Authorization` header value carries the metrics token (or none is
        wanted)."""
        token = self._genq.settings.metrics_token if self._genq is not None else None
        if not token:
            return True
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )


class _State(Collector):
    """Gauges read at scrape time from what the process keeps in memory."""

    def __init__(self, metrics: Metrics, genq: Genq) -> None:
        self.metrics, self.genq = metrics, genq

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        board = self.genq.jobs.board
        jobs, depth, age = self._families()[:3]
        for (status, engine), n in board.counts().items():
            jobs.add_metric([status, engine], n)
        now = time.time()
        oldest = board.oldest_queued()
        # every engine, 0 when none waits (a graph drops to 0 instead of a gap)
        for engine in sorted(oldest.keys() | self.genq.engines.keys()):
            depth.add_metric([engine], board.queued(engine))
            at = submitted_at(oldest[engine]) if engine in oldest else None
            age.add_metric([engine], max(0.0, now - at) if at is not None else 0.0)
        yield jobs
        yield depth
        yield age
        worker = self.genq.worker
        running = GaugeMetricFamily(
            "genq_worker_running_jobs", "Jobs this process's worker runs now (or hands over)"
        )
        slots = GaugeMetricFamily("genq_worker_slots", "Jobs this process's worker may run")
        running.add_metric([], len(worker.runs) if worker is not None else 0)
        slots.add_metric([], worker.slots if worker is not None else 0)
        yield running
        yield slots
        sse = GaugeMetricFamily(
            "genq_sse_connections", "Event streams open on this process", labels=["stream"]
        )
        sse.add_metric(["job"], self.metrics.job_streams())
        sse.add_metric(["account"], self.metrics.account_streams)
        yield sse
        held = GaugeMetricFamily(
            "genq_credits_held",
            "Credits held for unfinished jobs (read every GENQ_METRICS_QUERY_S)",
            labels=["engine"],
        )
        for engine, n in sorted((self.metrics.held or {}).items()):
            held.add_metric([engine], n)
        yield held

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "genq_jobs", "Unfinished jobs by status and engine", labels=["status", "engine"]
            ),
            GaugeMetricFamily("genq_queue_depth", "Jobs queued per engine", labels=["engine"]),
            GaugeMetricFamily(
                "genq_queue_oldest_age_seconds",
                "Age of each engine's oldest queued job (since its submission)",
                labels=["engine"],
            ),
            GaugeMetricFamily("genq_worker_running_jobs", ""),
            GaugeMetricFamily("genq_worker_slots", ""),
            GaugeMetricFamily("genq_sse_connections", "", labels=["stream"]),
            GaugeMetricFamily("genq_credits_held", "", labels=["engine"]),
        )


# -- HTTP -----------------------------------------------------------------------------------


class _Http(Collector):
    """`genq_http_request_duration_seconds` from the counts `HttpMetrics` keeps."""

    def __init__(self, series: dict[tuple[str, Any, int], list[float]]) -> None:
        self.series = series

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            "genq_http_request_duration_seconds",
            "HTTP requests by method, route template and status (_count: the requests)",
            labels=["method", "route", "status"],
        )
        for (method, route, status), counts in list(self.series.items()):
            cumulative, buckets = 0.0, []
            for le, n in zip(_LE, counts, strict=False):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric([method, str(route), str(status)], buckets, counts[-1])
        yield family


class HttpMetrics:
    """Pure ASGI middleware: each request's latency by method, route template and status
    into `genq_http_request_duration_seconds`. The template is FastAPI's matched route
    (`scope["route"]`) or the one `genq.api.front.Front` names for the reads it answers
    itself (`scope["genq.route"]`); a request no route took is `unmatched`, so raw paths
    (job ids) never become label values. A request costs two clock reads, a dict lookup,
    a bisect and two additions to a list: no lock, no `observe` (the hot path serves tens
    of thousands a second; `_Http` turns the counts into the histogram when scraped)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.series = metrics.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        def send_status(message: Message) -> Awaitable[None]:
            # a plain function handing back `send`'s awaitable: no coroutine of its own
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        start = perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            took = perf_counter() - start
            route = scope.get("genq.route")
            if route is None:
                found = scope.get("route")
                route = getattr(found, "path_format", None) or getattr(found, "path", UNMATCHED)
            key = (scope["method"], route, status)
            counts = self.series.get(key)
            if counts is None:
                counts = self.series[key] = [0.0] * (len(CALL_BUCKETS) + 2)
            counts[bisect_left(CALL_BUCKETS, took)] += 1  # (le: the first bound >= took)
            counts[-1] += took


# -- a worker's own endpoint ------------------------------------------------------------------


async def serve(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """`GET /metrics` on `host:port` for a process without the API (`genq worker`): a
    tiny HTTP/1.0 server on the process's own loop (no thread: the collectors read the
    board the loop writes), answering 401 without the token when one is set."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, *_ = [*lines[0].split(" "), "", ""]
            auth = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "authorization":
                    auth = value.strip()
            if method != "GET" or path.split("?")[0] not in ("/metrics", "/"):
                status, body, ctype, extra = 404, b"not found\n", "text/plain", ""
            elif not metrics.authorized(auth):
                status, body, ctype = 401, b"/metrics wants the metrics token\n", "text/plain"
                extra = 'WWW-Authenticate: Bearer realm="metrics"\r\n'
            else:
                status, body, ctype, extra = 200, metrics.text(), CONTENT_TYPE_LATEST, ""
            reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
