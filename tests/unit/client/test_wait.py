"""jobs.wait (long-poll, pacing, progress callbacks, timeout), jobs.run and ETag reuse."""

from __future__ import annotations

import httpx
import pytest

from genq.client import AsyncClient, Client, Job, JobFailed, WaitTimeout

from .conftest import FakeClock, make_client
from .fakes import FakeServer


def snapshot(job: Job) -> tuple[str, float, str | None]:
    return job.status, job.progress, job.message


def test_wait_reports_changes_and_returns_the_terminal_job(
    client: Client, server: FakeServer, clock: FakeClock
):
    created = client.jobs.create(engine="demo/text2image", input={})
    seen: list[tuple[str, float, str | None]] = []
    job = client.jobs.wait(created.id, on_progress=lambda j: seen.append(snapshot(j)), stream=False)
    assert job.status == "succeeded" and job.is_terminal and len(job.outputs) == 2
    # The repeated "step 1 of 4" state is not reported twice.
    assert seen == [
        ("queued", 0.0, None),
        ("running", 25.0, "step 1 of 4"),
        ("running", 75.0, "step 3 of 4"),
        ("succeeded", 100.0, None),
    ]
    gets = server.requests[1:]
    assert all(r.url.params["wait"] == "30" for r in gets)
    # The ETag from the create response is revalidated at once.
    assert gets[0].headers["if-none-match"]
    assert clock.sleeps == [1.0, 1.0, 1.0, 1.0]  # the fake server's Retry-After: 1
    assert all(r.extensions["timeout"]["read"] == 60.0 for r in gets)  # 30 s + the wait


def test_wait_paces_by_retry_after_with_a_cap(client: Client, server: FakeServer, clock: FakeClock):
    server.retry_after = "60"
    job = server.add_job()
    client.jobs.wait(job.id, stream=False)
    assert clock.sleeps == [10.0] * 4
    server.retry_after = None
    clock.sleeps.clear()
    client.jobs.wait(server.add_job().id, stream=False)
    assert clock.sleeps == [1.0] * 4


def test_poll_interval_overrides_retry_after(client: Client, server: FakeServer, clock: FakeClock):
    client.jobs.wait(server.add_job().id, poll_interval=0.25)
    assert clock.sleeps == [0.25] * 4


def test_wait_timeout_carries_the_last_job(client: Client, server: FakeServer, clock: FakeClock):
    job = server.add_job("demo/static")
    with pytest.raises(WaitTimeout) as info:
        client.jobs.wait(job.id, timeout=2.5, stream=False)
    assert info.value.job.id == job.id and info.value.job.status == "running"
    assert info.value.timeout == 2.5
    assert clock.sleeps == [1.0, 1.0, 0.5]
    # Long-polls never outlast the deadline; the last polls are plain GETs.
    assert [r.url.params.get("wait") for r in server.requests] == ["2", "1", None, None]


def test_a_server_that_holds_the_request_is_asked_again_at_once(
    server: FakeServer, clock: FakeClock
):
    def holding_server(request: httpx.Request) -> httpx.Response:
        response = server(request)
        if response.status_code == 304:  # unchanged: a real server held it `wait` s
            clock.now += float(request.url.params["wait"])
        return response

    job = server.add_job("demo/static")
    http = httpx.Client(transport=httpx.MockTransport(holding_server))
    with make_client(server, clock) as client:
        client._http = http
        client._core.http = http
        with pytest.raises(WaitTimeout):
            client.jobs.wait(job.id, timeout=65, stream=False)
    http.close()
    # First GET answers at once (no ETag yet) and is paced by Retry-After; then every
    # long-poll is held by the server and re-asked without sleeping.
    assert clock.sleeps == [1.0]
    assert [r.url.params.get("wait") for r in server.requests] == ["30", "30", "30", "4"]


def test_run_returns_the_succeeded_job(client: Client, server: FakeServer):
    calls: list[str] = []
    job = client.jobs.run(
        engine="demo/text2image",
        input={"prompt": "fox"},
        on_progress=lambda j: calls.append(j.status),
    )
    assert job.status == "succeeded" and calls[-1] == "succeeded"
    assert server.requests[0].method == "POST"


def test_run_raises_job_failed(client: Client):
    with pytest.raises(JobFailed) as info:
        client.jobs.run(engine="demo/fail", input={})
    err = info.value
    assert err.job.status == "failed"
    assert err.code == "engine_error" and err.message == "the engine crashed"
    assert str(err) == f"job {err.job.id} failed: engine_error: the engine crashed"


def test_run_raises_job_failed_when_canceled(client: Client, server: FakeServer):
    def cancel_when_running(job: Job) -> None:
        if job.status == "running":
            server.jobs[job.id].canceled = True

    with pytest.raises(JobFailed) as info:
        client.jobs.run(engine="demo/text2image", input={}, on_progress=cancel_when_running)
    assert info.value.job.status == "canceled" and info.value.code == "canceled"


def test_retrieve_reuses_the_etag_on_304(client: Client, server: FakeServer):
    job = server.add_job("demo/static")
    first = client.jobs.retrieve(job.id)
    second = client.jobs.retrieve(job.id)
    assert "if-none-match" not in server.requests[0].headers
    etag = server.job_response(job).headers["etag"]  # the static job's only state
    assert server.requests[1].headers["if-none-match"] == etag
    assert second == first and second is not first
    assert second.status == "running" and second.message == "stuck"


def test_retrieve_returns_a_changed_job(client: Client, server: FakeServer):
    job = server.add_job()
    assert client.jobs.retrieve(job.id).status == "queued"
    changed = client.jobs.retrieve(job.id)
    assert changed.status == "running" and changed.progress == 25.0
    assert server.requests[1].headers["if-none-match"]


def test_a_sync_client_rejects_an_async_callback(client: Client, server: FakeServer):
    async def on_progress(job: Job) -> None:
        pass

    with pytest.raises(TypeError, match="AsyncClient"):
        client.jobs.wait(server.add_job().id, on_progress=on_progress)


async def test_async_wait_and_run(aclient: AsyncClient, server: FakeServer, clock: FakeClock):
    seen: list[str] = []

    async def on_progress(job: Job) -> None:
        seen.append(job.status)

    created = await aclient.jobs.create(engine="demo/text2image", input={})
    job = await aclient.jobs.wait(created.id, on_progress=on_progress, stream=False)
    assert job.status == "succeeded" and seen == ["queued", "running", "running", "succeeded"]
    assert clock.sleeps == [1.0] * 4
    with pytest.raises(JobFailed):
        await aclient.jobs.run(engine="demo/fail", input={}, on_progress=lambda j: None)
    with pytest.raises(WaitTimeout):
        await aclient.jobs.wait(server.add_job("demo/static").id, timeout=1)


def test_wait_falls_back_to_long_poll_without_an_event_stream(
    client: Client, server: FakeServer, clock: FakeClock
):
    # the fake server has no /events route (404): wait long-polls instead
    job = client.jobs.wait(server.add_job().id)
    assert job.status == "succeeded"
    paths = [r.url.path for r in server.requests]
    assert any(p.endswith("/events") for p in paths)
    assert any("wait" in r.url.params for r in server.requests)
