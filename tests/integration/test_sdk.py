"""The Python SDK against a real server: streams, waits, errors."""

from __future__ import annotations

import asyncio
import time

import pytest

import genq
from genq.client import InsufficientCreditsError, NotFoundError, WaitTimeout
from tests.conftest import LiveServer


def test_stream_yields_every_event_then_the_finished_job(server: LiveServer, key: str) -> None:
    with genq.Client(server.url, key) as client:
        job = client.jobs.create(engine="test/sync-sleep", input={"seconds": 0.4, "steps": 3})
        events = list(client.jobs.stream(job.id))
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-1].event == "completed" and events[-1].job is not None
        assert events[-1].job.status == "succeeded"
        assert events[-1].job.outputs[0].name == "text"
        # resume after an event: only what came later
        later = list(client.jobs.stream(job.id, after=events[2].id))
        assert [e.id for e in later] == [e.id for e in events[3:]]


def test_wait_follows_the_stream_and_reports_progress(server: LiveServer, key: str) -> None:
    seen: list[tuple[str, float]] = []
    with genq.Client(server.url, key) as client:
        job = client.jobs.run(
            engine="test/sleep",
            input={"seconds": 1.0, "steps": 4},
            on_progress=lambda j: seen.append((j.status, j.progress)),
        )
    assert job.status == "succeeded"
    assert seen[-1] == ("succeeded", 100.0)
    assert len({p for s, p in seen if s == "running"}) >= 2


def test_wait_timeout_on_a_quiet_stream(server: LiveServer, key: str) -> None:
    with genq.Client(server.url, key) as client:
        job = client.jobs.create(engine="test/stubborn", input={"seconds": 0.9})
        t0 = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.jobs.wait(job.id, timeout=0.3)
        assert time.monotonic() - t0 < 5
        client.jobs.wait(job.id, timeout=30)


async def test_async_client_streams_too(server: LiveServer, key: str) -> None:
    async with genq.AsyncClient(server.url, key) as client:
        job = await client.jobs.create(engine="test/sleep", input={"seconds": 0.3})
        events = [e async for e in client.jobs.stream(job.id)]
        assert events[-1].event == "completed"
        done = await client.jobs.wait(job.id)
        assert done.status == "succeeded"
        results = await asyncio.gather(
            *[client.jobs.run(engine="test/sleep", input={"seconds": 0.2}) for _ in range(3)]
        )
        assert all(r.status == "succeeded" for r in results)


def test_errors_are_typed(server: LiveServer) -> None:
    with genq.Client(server.url, server.new_key("broke", credits=0, plan="free")) as client:
        with pytest.raises(InsufficientCreditsError) as info:
            client.jobs.create(engine="test/sleep", input={})
        assert info.value.code == "insufficient_credits"
        with pytest.raises(NotFoundError):
            client.jobs.retrieve("job_01M8000000000000000000000")
