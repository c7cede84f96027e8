"""OpenTelemetry traces: one trace per job, from the submitting request to the last
webhook delivery, across processes.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
set: then `setup()` installs a tracer provider that exports over OTLP/HTTP in batches
(the standard `OTEL_*` variables apply) and flushes at exit. Off, nothing is installed
and the hot paths pay one module-attribute test (`ON`) at most.

On, the job's trace goes: the request's server span (`instrument_app`, route
templates as names) -> `job.submit` (`instrument_core`), whose W3C `traceparent` is
stored with the job (`jobs.trace_context`) -> `job.queued` (recorded at claim, from
the job's creation) and `job.run` (current while the engine runs, so its HTTP calls
and logs join it; steps as span events) -> `webhook.deliver` (client spans, the
`traceparent` sent on to the receiver). Store operations are `db.read`/`db.write`
spans (`GENQ_TRACE_DB`); httpx clients (upstream services) are instrumented. The
polled status reads get no server span unless `GENQ_TRACE_READS`: OpenTelemetry's
ASGI middleware costs several times what genq spends answering one (bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from functools import wraps
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from genq.api.front import Front
    from genq.core import Genq
    from genq.lifecycle import ErrorInfo, Step
    from genq.store.records import Claim, Job

ON = False  # set once by `setup()`; read on the hot paths
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
EXCLUDED_PATHS = "/metrics,/healthz"  # polled by machines: no spans
_OFF: AbstractContextManager[None] = nullcontext()  # what the span helpers are when off
_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, and neither
    `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARS)


def setup() -> bool:
    """Install the tracer provider once per process if the environment asks for it;
    whether tracing is on. Later calls (another `Genq` in the process) change nothing."""
    global ON, _provider, _tracer
    if ON or not wanted():
        return ON
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from genq import __version__

    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "genq",
            SERVICE_INSTANCE_ID: f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}",
            "service.version": __version__,
        }
    )
    # shutdown_on_exit: the batch still queued is exported when the process exits
    provider = TracerProvider(resource=resource, shutdown_on_exit=True)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider, _tracer = provider, provider.get_tracer("genq")
    ON = True
    return True


def flush() -> None:
    """Export what is queued now (a stopping server or worker; exit does it too)."""
    if _provider is not None:
        _provider.force_flush(5000)


def tracer() -> Tracer:
    assert _tracer is not None, "tracing is off"
    return _tracer


# -- carrying a trace in the job row ------------------------------------------------------


def traceparent() -> str | None:
    """The current span as a W3C `traceparent` (None when off or outside a span)."""
    if not ON:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def context_of(stored: str | None) -> Context | None:
    """The parent context a stored `traceparent` names (None: a root span then)."""
    if not stored:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": stored})


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1e9)


# -- the job's spans ----------------------------------------------------------------------


def job_run(claim: Claim, kind: str = "engine") -> AbstractContextManager[Span | None]:
    """`job.queued` (attempt 1: from the job's creation to its claim) and `job.run`,
    current for the block (the engine's task and threads inherit it); both children
    of the job's stored context."""
    return _job_run(claim, kind) if ON else _OFF


@contextlib.contextmanager
def _job_run(claim: Claim, kind: str = "engine") -> Iterator[Span | None]:
    from opentelemetry.trace import SpanKind

    job = claim.job
    parent = context_of(job.trace_context)
    attrs: dict[str, Any] = {
        "genq.job_id": job.id,
        "genq.engine": job.engine,
        "genq.account_id": job.account_id,
        "genq.attempt": claim.attempt,
    }
    t = tracer()
    if claim.attempt <= 1:
        queued = t.start_span(
            "job.queued", context=parent, start_time=_ns(job.created_at), attributes=attrs
        )
        queued.end()
    with t.start_as_current_span(
        "job.run", context=parent, kind=SpanKind.CONSUMER, attributes={**attrs, "genq.run": kind}
    ) as span:
        yield span


def finished(status: str, error: ErrorInfo | None) -> None:
    """Mark the current `job.run` span with the job's outcome."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    span.set_attribute("genq.status", str(status))
    if error is not None:
        span.set_attribute("genq.error_code", error.code)
        if str(status) == "failed":
            span.set_status(Status(StatusCode.ERROR, f"{error.code}: {error.message}"[:500]))


def raised(exc: BaseException | None) -> None:
    """The engine's exception as an event on the current span (its status comes with
    the outcome: `finished`)."""
    if exc is not None:
        from opentelemetry import trace

        trace.get_current_span().record_exception(exc)


def job_span(
    name: str, job: Job, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span | None]:
    """A span in the job's trace (parent: its stored context), current for the block."""
    return _job_span(name, job, attributes) if ON else _OFF


@contextlib.contextmanager
def _job_span(
    name: str, job: Job, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span | None]:
    attrs = {"genq.job_id": job.id, "genq.engine": job.engine, "genq.account_id": job.account_id}
    with tracer().start_as_current_span(
        name, context=context_of(job.trace_context), attributes={**attrs, **(attributes or {})}
    ) as span:
        yield span


def steps(items: Sequence[tuple[Step, Any, Any]]) -> None:
    """The engine's records written in one flush, as events on the current span."""
    from opentelemetry import trace

    span = trace.get_current_span()
    for step, _, row in items:
        attrs: dict[str, Any] = {}
        if row is not None:
            attrs["genq.output"] = str(row.get("name", ""))
        else:
            for k in ("progress", "level"):
                v = step.data.get(k)
                if isinstance(v, int | float | str):
                    attrs[f"genq.{k}"] = v
        span.add_event(str(step.event.value), attrs)


def delivery(
    job: Job, event: str, delivery_id: str, headers: MutableMapping[str, str]
) -> AbstractContextManager[Span | None]:
    """A webhook delivery as a client span in the job's trace; its `traceparent` goes
    in `headers` for the receiver. httpx's own span is left out (it would be a second
    client span for the same request)."""
    return _delivery(job, event, delivery_id, headers) if ON else _OFF


@contextlib.contextmanager
def _delivery(
    job: Job, event: str, delivery_id: str, headers: MutableMapping[str, str]
) -> Iterator[Span | None]:
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation
    from opentelemetry.trace import SpanKind

    with tracer().start_as_current_span(
        "webhook.deliver",
        context=context_of(job.trace_context),
        kind=SpanKind.CLIENT,
        attributes={
            "genq.job_id": job.id,
            "genq.account_id": job.account_id,
            "genq.webhook.event": event,
            "genq.webhook.delivery_id": delivery_id,
        },
    ) as span:
        tp = traceparent()
        if tp is not None:
            headers["traceparent"] = tp
        with suppress_http_instrumentation():
            yield span


def answered(span: Span | None, code: int | None, error: str | None) -> None:
    """A delivery's (or any client span's) outcome: the status code, ERROR unless 2xx."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if code is not None:
        span.set_attribute("http.response.status_code", code)
    if code is None or not 200 <= code < 300:
        span.set_status(Status(StatusCode.ERROR, error or f"receiver answered {code}"))


# -- wiring it in -------------------------------------------------------------------------


def instrument_core(core: Genq) -> None:
    """Spans for the service layer of a `Genq`: `job.submit`, and the store's
    operations. Off: nothing (the methods stay as they are)."""
    if not ON:
        return
    jobs = core.jobs
    submit = jobs.submit

    @wraps(submit)
    async def traced_submit(*args: Any, **kwargs: Any) -> Any:
        with tracer().start_as_current_span("job.submit") as span:
            job = await submit(*args, **kwargs)
            span.set_attribute("genq.job_id", job.id)
            span.set_attribute("genq.engine", job.engine)
            span.set_attribute("genq.account_id", job.account_id)
            return job

    setattr(jobs, "submit", traced_submit)  # noqa: B010 (an instance's method, replaced)
    if not core.settings.trace_db:
        return
    db = core.store.db
    system = "postgresql" if db.is_postgres else "sqlite"
    for name in ("read", "write"):
        setattr(db, name, _traced_op(getattr(db, name), f"db.{name}", system))


def _traced_op(
    run: Callable[..., Awaitable[Any]], name: str, system: str
) -> Callable[..., Awaitable[Any]]:
    from opentelemetry.trace import SpanKind, get_current_span

    @wraps(run)
    async def traced(op: Any, *args: Any) -> Any:
        if not get_current_span().get_span_context().is_valid:
            return await run(op, *args)  # background polls: not part of any trace
        with tracer().start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "db.operation.name": op.__name__},
        ):
            return await run(op, *args)

    return traced


def instrument_app(front: Front) -> Front:
    """`front` behind OpenTelemetry's ASGI middleware (server spans named by route
    template, `/metrics` and `/healthz` left out); `front` itself when off.

    The middleware owns the request's server span: FastAPI's own telemetry (which
    would start a second, unparented server span once a provider is installed) is
    told to stand aside for the request."""
    if not ON:
        return front
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider

    from genq.api.front import Front as FrontType

    names = RouteNames(front)
    reads = front.genq.settings.trace_reads

    class TracedFront(FrontType):
        """The same app, entered through the middleware (the polled status reads go
        straight in unless `trace_reads`)."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if not reads and scope.get("method") == "GET" and names.polled(scope["path"]):
                scope["fastapi.telemetry"] = None
                await FrontType.__call__(self, scope, receive, send)
            else:
                await self._traced(scope, receive, send)

    traced = object.__new__(TracedFront)
    traced.__dict__.update(front.__dict__)

    async def entered(scope: Any, receive: Any, send: Any) -> None:
        scope["fastapi.telemetry"] = None  # FastAPI: no telemetry of its own
        if scope["type"] != "http" or names.hot(scope["path"]) is not None:
            await FrontType.__call__(traced, scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":  # routed by now; span still open
                names.routed(scope)
            await send(message)

        await FrontType.__call__(traced, scope, receive, sending)

    traced.__dict__["_traced"] = OpenTelemetryMiddleware(
        entered,
        excluded_urls=EXCLUDED_PATHS,
        default_span_details=names,
        exclude_spans=["receive", "send"],
        tracer_provider=_provider,
        meter_provider=NoOpMeterProvider(),  # traces only: genq.telemetry.metrics has the metrics
    )
    return traced


class RouteNames:
    """A request's span name is `METHOD /route/{template}`, never the raw path (ids
    would make every name unique). The paths `Front` serves itself are named from
    their patterns when the span starts; the others get the template of the FastAPI
    route that answered (`scope["route"]`) when they are done."""

    def __init__(self, front: Front) -> None:
        self.faces = [(pattern, face.path) for pattern, face in front.faces]

    def __call__(self, scope: Any) -> tuple[str, dict[str, Any]]:
        method = scope.get("method") or "HTTP"
        template = self.hot(scope.get("path", ""))
        if template is None:
            return method, {}
        return f"{method} {template}", {"http.route": template}

    def polled(self, path: str) -> bool:
        """Whether a GET of `path` is one of the status reads clients poll."""
        return path != "/v1/jobs" and self.hot(path) is not None

    def hot(self, path: str) -> str | None:
        if path == "/v1/jobs":
            return path
        if path.startswith("/v1/jobs/"):
            job_id, _, rest = path[9:].partition("/")
            if job_id and not rest:
                return "/v1/jobs/{job_id}"
            return "/v1/jobs/{job_id}/events" if job_id and rest == "events" else None
        for pattern, template in self.faces:
            if pattern.match(path):
                return template
        return None

    @staticmethod
    def routed(scope: Any) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if not isinstance(template, str):
            return
        from opentelemetry import trace

        span = trace.get_current_span()
        span.update_name(f"{scope.get('method') or 'HTTP'} {template}")
        span.set_attribute("http.route", template)
