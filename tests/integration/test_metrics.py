"""/metrics after a known workload, across processes: an API replica (no workers) and a
`genq worker` process with its own `--metrics-port`, on one database. Every count is
exact once summed over both endpoints, and each counter is counted by the one process
that made the transition (the API accepts, the worker starts and ends), so nothing is
counted twice. Queue gauges come from each process's board; credits held from the
periodic query; HTTP latency is labelled by route template, never by raw path."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GENQ, LiveServer, free_port, genq_env, make_settings, wait_for
from tests.integration.test_webhooks import Receiver

TOKEN = "metrics-s3cret"
N_OK, N_BOOM, N_MODERATED, N_CANCELED, N_QUEUED = 3, 2, 1, 2, 2
WORKER_ENGINES = "test/sleep,test/boom,test/moderated"  # not test/chatter: those wait
WORKER_SLOTS = 3

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def total(scrapes: list[Samples], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`, over all scrapes."""
    want = set(labels.items())
    return sum(
        v for samples in scrapes for (n, ls), v in samples.items() if n == name and want <= ls
    )


def scrape(url: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, timeout=10)


@dataclass
class World:
    api: LiveServer
    worker_url: str
    key: str
    ok: Receiver
    failing: Receiver
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    engines_reads: int = 0
    estimate: int = 0

    @property
    def api_url(self) -> str:
        return f"{self.api.url}/metrics"

    def scrapes(self) -> list[Samples]:
        return [parse(scrape(self.api_url).text), parse(scrape(self.worker_url).text)]

    def until(self, check: Callable[[list[Samples]], bool], timeout: float = 30) -> list[Samples]:
        """Scrape both until `check` holds (what other processes do arrives a moment
        later); the last scrapes either way."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.scrapes()
            if check(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def start_worker(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = genq_env(
        data_dir,
        GENQ_METRICS_PORT=str(port),
        GENQ_METRICS_TOKEN=TOKEN,
        GENQ_METRICS_QUERY_S="0.2",
        GENQ_WORKER_SLOTS=str(WORKER_SLOTS),
        GENQ_WEBHOOK_ALLOW_PRIVATE="1",
        GENQ_WEBHOOK_RETRY_SCHEDULE_S="0.2",
        GENQ_POLL_INTERVAL_S="0.2",
        GENQ_SHUTDOWN_GRACE_S="1",
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [*GENQ, "worker", "--engines", WORKER_ENGINES], env=env, stdout=log, stderr=log
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("metrics") / "data"
    settings = make_settings(
        data,
        metrics_token=TOKEN,
        metrics_query_s=0.2,
        webhook_allow_private=True,
        webhook_retry_schedule_s=[0.2],
    )
    api = LiveServer(settings, workers=False).start()
    port = free_port()
    proc = start_worker(data, port)
    ok, failing = Receiver(), Receiver([500, 500, 500])
    try:
        worker_url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                if scrape(worker_url).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (data / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker's /metrics never answered"
            time.sleep(0.1)
        w = World(api, worker_url, api.new_key("metrics"), ok, failing)
        run_workload(w)
        yield w
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        api.stop()
        ok.close()
        failing.close()


def run_workload(w: World) -> None:
    with w.api.client(w.key) as api:

        def submit(engine: str, body: dict[str, Any] | None = None, **extra: Any) -> Any:
            r = api.post("/v1/jobs", json={"engine": engine, "input": body or {}, **extra})
            assert r.status_code == 202, r.text
            return r.json()

        sleep = {"seconds": 0.05, "steps": 1}
        w.jobs["ok"] = [
            submit("test/sleep", sleep, webhook={"url": w.ok.url, "events": ["completed"]}),
            submit("test/sleep", sleep, webhook={"url": w.failing.url, "events": ["completed"]}),
            *(submit("test/sleep", sleep) for _ in range(N_OK - 2)),
        ]
        w.jobs["boom"] = [submit("test/boom") for _ in range(N_BOOM)]
        w.jobs["moderated"] = [submit("test/moderated") for _ in range(N_MODERATED)]
        # test/chatter is run by no worker: these wait; some are canceled while queued
        w.jobs["canceled"] = [submit("test/chatter") for _ in range(N_CANCELED)]
        w.jobs["queued"] = [submit("test/chatter") for _ in range(N_QUEUED)]
        w.estimate = w.jobs["queued"][0]["credits"]["estimate"]
        for job in w.jobs["canceled"]:
            assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
        for kind in ("ok", "boom", "moderated", "canceled"):
            for job in w.jobs[kind]:
                wait_for(api, job["id"])
        for _ in range(3):
            assert api.get("/v1/engines").status_code == 200
        w.engines_reads = 3
        assert api.get("/no/such/path").status_code == 404
    w.ok.wait(1)
    w.failing.wait(2)


def submissions(w: World) -> int:
    return sum(len(jobs) for jobs in w.jobs.values())


def settled(scrapes: list[Samples]) -> bool:
    return (
        total(scrapes, "genq_webhook_attempts_total", outcome="failed") >= 1
        and total(scrapes, "genq_webhook_attempts_total", outcome="delivered") >= 1
    )


def test_job_counts_are_exact_and_counted_once(world: World) -> None:
    both = world.until(settled)
    api, worker = both
    n = {k: len(v) for k, v in world.jobs.items()}
    for engine, count in (
        ("test/sleep", n["ok"]),
        ("test/boom", n["boom"]),
        ("test/moderated", n["moderated"]),
        ("test/chatter", n["canceled"] + n["queued"]),
    ):
        assert total(both, "genq_jobs_submitted_total", engine=engine) == count
        assert total([worker], "genq_jobs_submitted_total", engine=engine) == 0  # API's
    ran = {"test/sleep": n["ok"], "test/boom": n["boom"], "test/moderated": n["moderated"]}
    for engine, count in ran.items():
        assert total(both, "genq_jobs_started_total", engine=engine) == count
        assert total([api], "genq_jobs_started_total", engine=engine) == 0  # the worker's
        assert total(both, "genq_job_queue_wait_seconds_count", engine=engine) == count
    assert total(both, "genq_jobs_started_total", engine="test/chatter") == 0
    completed = "genq_jobs_completed_total"
    assert total(both, completed, engine="test/sleep", status="succeeded", error="") == n["ok"]
    assert (
        total(both, completed, engine="test/boom", status="failed", error="engine_error")
        == n["boom"]
    )
    assert (
        total(both, completed, engine="test/moderated", status="failed", error="moderated")
        == n["moderated"]
    )
    # canceled while queued: the API process ended them
    assert (
        total([api], completed, engine="test/chatter", status="canceled", error="canceled")
        == n["canceled"]
    )
    assert total(both, completed) == n["ok"] + n["boom"] + n["moderated"] + n["canceled"]
    assert total(both, "genq_jobs_finished_total", status="succeeded") == n["ok"]
    assert total(both, "genq_jobs_finished_total", status="failed") == n["boom"] + n["moderated"]
    assert total(both, "genq_jobs_finished_total", status="canceled") == n["canceled"]
    # durations: every job that ran; a job canceled in the queue never started
    duration = "genq_job_duration_seconds_count"
    assert total(both, duration, engine="test/sleep", status="succeeded") == n["ok"]
    assert total(both, duration, engine="test/boom", status="failed") == n["boom"]
    assert total(both, duration, engine="test/chatter") == 0
    inf = total(both, "genq_job_duration_seconds_bucket", engine="test/sleep", le="+Inf")
    assert inf == n["ok"]


def test_queue_and_credits_held_from_memory_and_the_periodic_query(world: World) -> None:
    queued = len(world.jobs["queued"])
    want = {("test/chatter", queued * world.estimate)}

    def held(scrapes: list[Samples]) -> set[tuple[str, float]]:
        return {
            (dict(ls)["engine"], v)
            for (name, ls), v in scrapes[0].items()
            if name == "genq_credits_held" and v
        }

    both = world.until(lambda s: held(s) == want)
    assert held(both) == want
    for samples in both:  # every process's board: the same queue
        one = [samples]
        assert total(one, "genq_queue_depth", engine="test/chatter") == queued
        assert total(one, "genq_jobs", status="queued", engine="test/chatter") == queued
        assert total(one, "genq_queue_depth", engine="test/sleep") == 0
        age = total(one, "genq_queue_oldest_age_seconds", engine="test/chatter")
        assert 0 < age < 600
    api, worker = both
    assert total([worker], "genq_worker_slots") == WORKER_SLOTS
    assert total([worker], "genq_worker_running_jobs") == 0
    assert total([api], "genq_worker_slots") == 0  # an API replica runs no jobs


def test_webhook_outcomes(world: World) -> None:
    both = world.until(settled)
    attempts = "genq_webhook_attempts_total"
    assert total(both, attempts, outcome="delivered") == len(world.ok.got) == 1
    # the failing receiver: one retry (the schedule has one delay), then given up
    assert len(world.failing.got) == 2
    assert total(both, attempts, outcome="retry") == 1
    assert total(both, attempts, outcome="failed") == 1
    assert total(both, "genq_webhook_attempt_duration_seconds_count") == 3


def test_http_requests_by_route_template(world: World) -> None:
    api = parse(scrape(world.api_url).text)
    http = "genq_http_request_duration_seconds_count"
    assert total([api], http, method="GET", route="/v1/engines", status="200") == 3
    assert total([api], http, method="POST", route="/v1/jobs", status="202") == submissions(world)
    assert total([api], http, method="POST", route="/v1/jobs/{job_id}/cancel") == len(
        world.jobs["canceled"]
    )
    assert total([api], http, route="unmatched", status="404") == 1
    assert total([api], http, method="GET", route="/v1/jobs/{job_id}", status="200") > 0
    routes = {dict(ls)["route"] for (name, ls) in api if name == http}
    assert not [r for r in routes if "job_0" in r], routes  # templates, never raw paths


def test_open_event_streams_are_counted(world: World) -> None:
    def count() -> tuple[float, float]:
        got = [parse(scrape(world.api_url).text)]
        name = "genq_sse_connections"
        return total(got, name, stream="job"), total(got, name, stream="account")

    def eventually(want: tuple[float, float]) -> tuple[float, float]:
        deadline = time.monotonic() + 20
        while (got := count()) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return got

    job_id = world.jobs["queued"][0]["id"]
    with (
        world.api.client(world.key) as api,
        api.stream("GET", f"/v1/jobs/{job_id}/events") as job_stream,
        api.stream("GET", "/v1/events") as account_stream,
    ):
        readers = [r.iter_raw() for r in (job_stream, account_stream)]  # (kept: open)
        for r, reader in zip((job_stream, account_stream), readers, strict=True):
            assert r.status_code == 200
            assert next(reader).startswith(b"retry:")
        assert eventually((1, 1)) == (1, 1)
    assert eventually((0, 0)) == (0, 0)


def test_both_endpoints_want_the_token(world: World) -> None:
    for url in (world.api_url, world.worker_url):
        for token in (None, "wrong"):
            r = scrape(url, token)
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "genq_" not in r.text
        ok = scrape(url)
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
        assert parse(ok.text)
    assert httpx.get(world.worker_url.replace("/metrics", "/other")).status_code == 404


def test_upstream_calls_by_provider_and_status(tmp_path: Path) -> None:
    """A front genq drives a vivix upstream through a counting proxy that answers one
    status read 500: the front's counts by status are the proxy's, exactly."""
    from tests.integration.gateway_harness import (
        CASES,
        Fault,
        Proxy,
        front_server,
        upstream_config,
        upstream_server,
    )

    up, up_key = upstream_server(tmp_path)
    proxy = Proxy(up.url, faults=[Fault(500, 1, match=("GET", "/generations/"))]).start()
    front = front_server(tmp_path, upstream_config("vivix", proxy.url, up_key))
    try:
        engine, data, _ = CASES["vivix"]
        with front.client(front.new_key("alice")) as api:
            job = api.post("/v1/jobs", json={"engine": engine, "input": data}).json()
            assert wait_for(api, job["id"], timeout=60)["status"] == "succeeded"

        def by_status() -> dict[str, float]:
            got = parse(httpx.get(f"{front.url}/metrics").text)
            return {
                dict(ls)["status"]: v
                for (name, ls), v in got.items()
                if name == "genq_upstream_requests_total" and dict(ls)["provider"] == "vivix"
            }

        def proxied() -> dict[str, float]:
            with proxy._lock:
                statuses = [str(status) for _, _, status in proxy.log]
            return {s: float(statuses.count(s)) for s in set(statuses)}

        deadline = time.monotonic() + 20
        while by_status() != proxied() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert by_status() == proxied()
        assert proxied()["500"] == 1 and proxied()["200"] >= 2
        got = parse(httpx.get(f"{front.url}/metrics").text)
        latency = total([got], "genq_upstream_request_duration_seconds_count", provider="vivix")
        assert latency == sum(proxied().values())
    finally:
        front.stop()
        proxy.stop()
        up.stop()
