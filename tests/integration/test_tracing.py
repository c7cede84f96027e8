"""OpenTelemetry traces, end to end: `genq serve --no-workers` and a `genq worker`
process export OTLP/HTTP to a loopback receiver written here (protobuf decoded with
opentelemetry-proto). Each job is one trace: the submitting request's server span ->
`job.submit` -> `job.queued`, `job.run` (in the other process, from the context stored
with the job) and `webhook.deliver`, whose `traceparent` the webhook receiver sees.
Without the OTel variables nothing is installed at all."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from genq.api.front import Front
from genq.store import Store
from genq.store.records import Job
from genq.telemetry import tracing
from tests.conftest import (
    GENQ,
    LiveServer,
    create_key,
    db_url_for,
    free_port,
    genq_env,
    wait_for,
    wait_healthy,
)
from tests.integration.gateway_harness import CASES, upstream_config, upstream_server
from tests.integration.test_postgres import stop_workers


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    status: int
    attrs: dict[str, Any]
    events: list[str]
    instance: str  # service.instance.id of the process that made it


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


class Collector:
    """A loopback OTLP/HTTP receiver (`POST /v1/traces`) and webhook receiver
    (`POST /hook`, noting each delivery's job id and `traceparent`)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.hooks: list[tuple[str, str]] = []  # (job id, traceparent)
        self.paths: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/v1/traces":
                    assert self.headers["content-type"] == "application/x-protobuf"
                    owner.take(ExportTraceServiceRequest.FromString(body))
                    reply = ExportTraceServiceResponse().SerializeToString()
                    ctype = "application/x-protobuf"
                else:
                    job_id = orjson.loads(body)["data"]["id"]
                    with owner.lock:
                        owner.hooks.append((job_id, self.headers.get("traceparent", "")))
                    reply, ctype = b"{}", "application/json"
                with owner.lock:
                    owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def take(self, req: ExportTraceServiceRequest) -> None:
        got = []
        for rs in req.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            s.status.code,
                            {a.key: _value(a.value) for a in s.attributes}
                            | {"service.name": res.get("service.name")},
                            [e.name for e in s.events],
                            str(res.get("service.instance.id")),
                        )
                    )
        with self.lock:
            self.spans.extend(got)

    def wait(self, what: Callable[[list[Span]], bool], timeout: float = 30) -> list[Span]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if what(spans):
                return spans
            assert time.monotonic() < deadline, sorted({s.name for s in spans})
            time.sleep(0.05)


def of_job(spans: list[Span], name: str, job_id: str) -> list[Span]:
    return [s for s in spans if s.name == name and s.attrs.get("genq.job_id") == job_id]


@dataclass
class Traced:
    url: str
    key: str
    collector: Collector

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A genq (in this process, not tracing) playing the upstream services."""
    srv, key = upstream_server(tmp_path_factory.mktemp("up"))
    try:
        yield srv, key
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, upstream: tuple[LiveServer, str]
) -> Iterator[Traced]:
    """An API process and a worker process on one database, both tracing; vivix jobs
    go to the upstream genq."""
    collector = Collector()
    data = tmp_path_factory.mktemp("traced")
    up, up_key = upstream
    env = genq_env(
        data,
        GENQ_DATABASE_URL=db_url_for(data),
        GENQ_UPSTREAMS=orjson.dumps(upstream_config("vivix", up.url, up_key)).decode(),
        GENQ_UPSTREAM_TICK_S="0.1",
        GENQ_WEBHOOK_ALLOW_PRIVATE="true",
        GENQ_SHUTDOWN_GRACE_S="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="genq-test",
    )
    key = create_key_for(env, data)
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for args in (["serve", "--no-workers", "--port", str(port)], ["worker"]):
            with (data / f"{args[0]}.log").open("wb") as log:
                procs.append(subprocess.Popen([*GENQ, *args], env=env, stdout=log, stderr=log))
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, procs[0], data / "serve.log")
        yield Traced(url, key, collector)
    finally:
        stop_workers(procs)
        collector.http.shutdown()
        collector.http.server_close()


def create_key_for(env: dict[str, str], data: Path) -> str:
    from genq.settings import Settings

    return create_key(Settings(data_dir=data, database_url=env["GENQ_DATABASE_URL"]), "tracy")


def test_one_trace_per_job_across_processes(traced: Traced) -> None:
    hook = {"url": f"{traced.collector.url}/hook", "events": ["completed"]}
    with traced.client() as api:
        ids = []
        for text in ("one", "two"):
            r = api.post(
                "/v1/jobs",
                json={
                    "engine": "test/sleep",
                    "input": {"seconds": 0.3, "steps": 2, "text": text},
                    "webhook": hook,
                },
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for job_id in ids:
            assert wait_for(api, job_id)["status"] == "succeeded"
    col = traced.collector

    def complete(spans: list[Span]) -> bool:
        return all(
            of_job(spans, "job.run", j)
            and of_job(spans, "webhook.deliver", j)
            and of_job(spans, "job.submit", j)
            for j in ids
        ) and any(s.name == "POST /v1/jobs" for s in spans)

    spans = col.wait(complete)
    by_id = {s.span_id: s for s in spans}
    traces = set()
    for job_id in ids:
        [submit] = of_job(spans, "job.submit", job_id)
        server = by_id[submit.parent_id]  # the request's server span
        assert server.name == "POST /v1/jobs"
        assert server.kind == PbSpan.SPAN_KIND_SERVER
        assert server.parent_id == ""  # the trace starts at the request
        [queued] = of_job(spans, "job.queued", job_id)
        [run] = of_job(spans, "job.run", job_id)
        [deliver] = of_job(spans, "webhook.deliver", job_id)
        for child in (queued, run, deliver):
            assert child.trace_id == submit.trace_id
            assert child.parent_id == submit.span_id
        # the run happened in the worker process, from the context stored with the job
        assert run.instance != server.instance
        assert run.attrs["genq.engine"] == "test/sleep"
        assert run.attrs["genq.attempt"] == 1
        assert run.attrs["genq.status"] == "succeeded"
        assert run.status != PbStatus.STATUS_CODE_ERROR
        assert "progress" in run.events and "output" in run.events
        assert run.attrs["service.name"] == "genq-test"
        assert deliver.kind == PbSpan.SPAN_KIND_CLIENT
        assert deliver.attrs["http.response.status_code"] == 200
        # the receiver saw the delivery span as its parent
        [(_, header)] = [(j, tp) for j, tp in col.hooks if j == job_id]
        assert header.startswith(f"00-{deliver.trace_id}-{deliver.span_id}-")
        # the store's operations of the run are in the trace too
        assert any(
            s.name == "db.write" and s.parent_id == run.span_id and s.trace_id == run.trace_id
            for s in spans
        )
        traces.add(submit.trace_id)
    assert len(traces) == 2  # two jobs, two traces


def test_failing_engine_marks_its_run_span(traced: Traced) -> None:
    with traced.client() as api:
        r = api.post("/v1/jobs", json={"engine": "test/boom", "input": {}})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert wait_for(api, job_id)["status"] == "failed"
        assert api.get(f"/v1/jobs/{job_id}").status_code == 200
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 409  # (through FastAPI)
        assert httpx.get(f"{traced.url}/healthz").status_code == 200
    spans = traced.collector.wait(
        lambda spans: (
            bool(of_job(spans, "job.run", job_id))
            and any(s.name == "POST /v1/jobs/{job_id}/cancel" for s in spans)
        )
    )
    [run] = of_job(spans, "job.run", job_id)
    [submit] = of_job(spans, "job.submit", job_id)
    assert run.trace_id == submit.trace_id and run.parent_id == submit.span_id
    assert run.status == PbStatus.STATUS_CODE_ERROR
    assert run.attrs["genq.status"] == "failed"
    assert run.attrs["genq.error_code"] == "engine_error"
    assert "exception" in run.events
    # span names are route templates, never raw paths; health checks make none, nor do
    # the polled status reads (GENQ_TRACE_READS is off)
    names = {s.name for s in spans}
    assert not any(job_id in n for n in names)
    assert not any("/healthz" in n or "/metrics" in n for n in names)
    assert "GET /v1/jobs/{job_id}" not in names
    # FastAPI made no server spans of its own: the middleware's all have a route
    servers = [s for s in spans if s.kind == PbSpan.SPAN_KIND_SERVER]
    assert servers and all(s.attrs.get("http.route") for s in servers)


def test_off_without_the_otel_variables(server: LiveServer, api: httpx.Client) -> None:
    """No endpoint set (the test process's environment): no provider, no middleware,
    no wrapped methods, and jobs carry no trace context."""
    assert not tracing.wanted({})
    endpoint = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"}
    assert tracing.wanted(endpoint)
    assert not tracing.wanted({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.wanted({**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.ON
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    # the app is genq's own front (measured by the HTTP metrics), not wrapped by OTel
    assert isinstance(server.genq_app, Front)
    assert "submit" not in vars(server.genq.jobs)
    assert "write" not in vars(server.genq.store.db)
    r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}})
    assert r.status_code == 202, r.text
    wait_for(api, r.json()["id"])

    async def read() -> Job | None:
        store = Store(server.settings.db_url)  # a connection of its own
        try:
            return await store.jobs.get(r.json()["id"])
        finally:
            await store.close()

    job = asyncio.run(read())
    assert job is not None and job.trace_context is None


def test_upstream_calls_join_the_job_trace(traced: Traced) -> None:
    """A job handed to an upstream service: its create call (in `job.run`) and the
    tracker's polls (`upstream.poll`) are HTTP client spans in the job's trace."""
    engine, data, _ = CASES["vivix"]
    with traced.client() as api:
        r = api.post("/v1/jobs", json={"engine": engine, "input": data})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert wait_for(api, job_id, timeout=120)["status"] == "succeeded"

    def done(spans: list[Span]) -> bool:
        polls = of_job(spans, "upstream.poll", job_id)
        return bool(of_job(spans, "job.run", job_id)) and any(
            p.attrs.get("genq.status") == "succeeded" for p in polls
        )

    spans = traced.collector.wait(done)
    [submit] = of_job(spans, "job.submit", job_id)
    [run] = of_job(spans, "job.run", job_id)
    polls = of_job(spans, "upstream.poll", job_id)
    assert run.attrs["genq.run"] == "upstream"
    for span in (run, *polls):
        assert span.trace_id == submit.trace_id and span.parent_id == submit.span_id
    clients = [  # httpx's spans (not the store's)
        s
        for s in spans
        if s.kind == PbSpan.SPAN_KIND_CLIENT
        and ("http.request.method" in s.attrs or "http.method" in s.attrs)
    ]
    assert any(c.parent_id == run.span_id for c in clients)  # the create call
    assert any(c.parent_id in {p.span_id for p in polls} for c in clients)  # a status read
