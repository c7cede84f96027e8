"""Retries: what is retried, how long the client sleeps first, and what is never retried."""

from __future__ import annotations

import httpx
import pytest

import genq.client as sdk
from genq.client import AsyncClient, Client
from genq.client._retry import backoff, parse_retry_after

from .conftest import FakeClock
from .fakes import FakeServer, problem


def rate_limited(seconds: str) -> httpx.Response:
    return problem(429, "rate_limited", "slow down", headers={"Retry-After": seconds})


def test_429_is_retried_after_the_advised_seconds(
    client: Client, server: FakeServer, clock: FakeClock
):
    job = server.add_job()
    server.fail_next(rate_limited("3"), rate_limited("1.5"))
    assert client.jobs.retrieve(job.id).id == job.id
    assert clock.sleeps == [3.0, 1.5]
    assert len(server.requests) == 3


def test_5xx_backs_off_exponentially(client: Client, server: FakeServer, clock: FakeClock):
    job = server.add_job()
    server.fail_next(problem(503, "unavailable", "busy"), problem(500, "internal", "oops"))
    assert client.jobs.retrieve(job.id).id == job.id
    assert clock.sleeps == [0.5, 1.0]  # jitter pinned to 0 by the fixture


def test_retries_are_bounded_by_max_retries(client: Client, server: FakeServer, clock: FakeClock):
    server.fail_next(*(problem(503, "unavailable", "busy") for _ in range(3)))
    with pytest.raises(sdk.InternalServerError):
        client.jobs.retrieve("job_x")
    assert len(server.requests) == 3 and len(clock.sleeps) == 2


def test_a_too_long_retry_after_is_raised_not_slept(
    client: Client, server: FakeServer, clock: FakeClock
):
    server.fail_next(rate_limited("3600"))
    with pytest.raises(sdk.RateLimitError) as info:
        client.jobs.retrieve("job_x")
    assert info.value.retry_after == 3600.0 and clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        problem(503, "unavailable", "busy"),
        rate_limited("1"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("peer closed"),
    ],
)
def test_a_post_without_idempotency_key_is_not_retried(
    client: Client, server: FakeServer, clock: FakeClock, failure: httpx.Response | Exception
):
    server.fail_next(failure)
    with pytest.raises(sdk.APIError):
        client.jobs.create(engine="demo/text2image", input={})
    assert len(server.requests) == 1 and clock.sleeps == []
    assert server.jobs == {}


def test_a_post_with_idempotency_key_is_retried(
    client: Client, server: FakeServer, clock: FakeClock
):
    server.fail_next(problem(502, "bad_gateway", "upstream"), rate_limited("2"))
    job = client.jobs.create(engine="demo/text2image", input={}, idempotency_key="abc")
    assert job.status == "queued" and clock.sleeps == [0.5, 2.0]
    assert [r.headers["idempotency-key"] for r in server.requests] == ["abc"] * 3


def test_connection_errors_are_retried_then_raised(
    client: Client, server: FakeServer, clock: FakeClock
):
    server.fail_next(*(httpx.ReadError("reset") for _ in range(3)))
    with pytest.raises(sdk.APIConnectionError) as info:
        client.engines.list()
    assert not isinstance(info.value, sdk.APITimeoutError)
    assert len(server.requests) == 3 and clock.sleeps == [0.5, 1.0]


def test_a_timeout_becomes_api_timeout_error(client: Client, server: FakeServer):
    client._core.max_retries = 0
    server.fail_next(httpx.ReadTimeout("slow"))
    with pytest.raises(sdk.APITimeoutError):
        client.engines.list()


def test_a_connect_error_is_retried_even_for_post(
    client: Client, server: FakeServer, clock: FakeClock
):
    # The connection was never opened, so the server cannot have seen the request.
    server.fail_next(httpx.ConnectError("refused"))
    assert client.jobs.create(engine="demo/text2image", input={}).status == "queued"
    assert clock.sleeps == [0.5]


def test_the_per_call_timeout_is_applied(client: Client, server: FakeServer):
    client.engines.list(timeout=2.5)
    client.engines.list()
    timeouts = [r.extensions["timeout"] for r in server.requests]
    assert timeouts[0] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert timeouts[1]["read"] == 30.0


async def test_async_retries_use_the_async_sleep(
    aclient: AsyncClient, server: FakeServer, clock: FakeClock
):
    job = server.add_job()
    server.fail_next(rate_limited("4"), httpx.ReadError("reset"))
    assert (await aclient.jobs.retrieve(job.id)).id == job.id
    assert clock.sleeps == [4.0, 1.0]


def test_retry_after_parsing_and_backoff():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after({"retry-after": date}, now=lambda: 1445412480.0 - 10) == 10.0
    assert [backoff(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert 0.375 <= backoff(0, 0.999) <= 0.5
