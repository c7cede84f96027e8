"""jobs.create / retrieve / list (with paging) / cancel, on Client and AsyncClient."""

from __future__ import annotations

import json

import pytest

from genq.client import (
    AsyncClient,
    AsyncJobPage,
    Client,
    ConflictError,
    Job,
    JobPage,
    NotFoundError,
)
from genq.client._version import __version__

from .fakes import API_KEY, FakeServer


def test_create_sends_body_headers_and_parses_the_job(client: Client, server: FakeServer):
    job = client.jobs.create(
        engine="demo/text2image",
        input={"prompt": "a red fox"},
        metadata={"user": "u1"},
        webhook="https://hook.example/x",
    )
    assert isinstance(job, Job)
    assert job.id == "job_0001" and job.status == "queued" and not job.is_terminal
    assert job.queue_position == 1 and job.credits is not None and job.credits.estimate == 20
    assert job.created_at is not None and job.created_at.tzinfo is not None
    assert job.model_extra == {"a_new_server_field": {"x": 1}}  # kept, not an error
    request = server.requests[0]
    assert request.method == "POST" and request.url == "http://genq.test/v1/jobs"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["user-agent"] == f"genq-python/{__version__}"
    assert "idempotency-key" not in request.headers
    assert json.loads(request.content) == {
        "engine": "demo/text2image",
        "input": {"prompt": "a red fox"},
        "webhook": {"url": "https://hook.example/x"},
        "metadata": {"user": "u1"},
    }


def test_create_sends_the_idempotency_key(client: Client, server: FakeServer):
    client.jobs.create(engine="demo/text2image", input={}, idempotency_key="k-1")
    assert server.requests[0].headers["idempotency-key"] == "k-1"


def test_retrieve_and_cancel(client: Client, server: FakeServer):
    created = client.jobs.create(engine="demo/text2image", input={})
    job = client.jobs.retrieve(created.id)
    assert job.id == created.id
    canceled = client.jobs.cancel(created.id)
    assert canceled.status == "canceled" and canceled.is_terminal
    assert canceled.error is not None and canceled.error.code == "canceled"
    assert canceled.model_extra == {"a_new_server_field": {"x": 1}, "cancel": "canceled"}
    assert server.paths()[-1] == f"POST /v1/jobs/{created.id}/cancel"
    with pytest.raises(ConflictError) as info:
        client.jobs.cancel(created.id)
    assert info.value.code == "conflict"


def test_ids_are_escaped_in_paths(client: Client, server: FakeServer):
    with pytest.raises(NotFoundError):
        client.jobs.retrieve("a/b?c")
    assert server.requests[-1].url.raw_path == b"/v1/jobs/a%2Fb%3Fc"


def test_list_pages_with_the_cursor(client: Client, server: FakeServer):
    for _ in range(5):
        server.add_job()
    page = client.jobs.list(limit=2, status=["queued", "running"], engine="demo/text2image")
    assert isinstance(page, JobPage)
    assert [j.id for j in page.data] == ["job_0005", "job_0004"]
    assert page.has_more and page.next_cursor == "job_0004"
    params = server.requests[0].url.params
    assert params["limit"] == "2" and params["status"] == "queued,running"
    assert params["engine"] == "demo/text2image" and "after" not in params

    assert [j.id for j in page.iter_all()] == [f"job_{n:04d}" for n in (5, 4, 3, 2, 1)]
    assert [r.url.params.get("after") for r in server.requests] == [None, "job_0004", "job_0002"]
    assert [j.id for j in client.jobs.list_all(limit=3)] == [
        f"job_{n:04d}" for n in (5, 4, 3, 2, 1)
    ]


def test_list_rejects_a_bad_limit(client: Client):
    with pytest.raises(ValueError, match="limit"):
        client.jobs.list(limit=0)


async def test_async_create_retrieve_cancel(aclient: AsyncClient, server: FakeServer):
    created = await aclient.jobs.create(
        engine="demo/text2image", input={"prompt": "x"}, idempotency_key="k"
    )
    assert created.status == "queued"
    assert server.requests[0].headers["idempotency-key"] == "k"
    job = await aclient.jobs.retrieve(created.id)
    assert job.id == created.id
    canceled = await aclient.jobs.cancel(created.id)
    assert canceled.status == "canceled"


async def test_async_list_pages(aclient: AsyncClient, server: FakeServer):
    for _ in range(5):
        server.add_job()
    page = await aclient.jobs.list(limit=2)
    assert isinstance(page, AsyncJobPage) and page.has_more
    assert [j.id async for j in page.iter_all()] == [f"job_{n:04d}" for n in (5, 4, 3, 2, 1)]
    assert [j.id async for j in aclient.jobs.list_all(limit=4)] == [
        f"job_{n:04d}" for n in (5, 4, 3, 2, 1)
    ]
