"""Server-Sent Events: one job's events (`/v1/jobs/{id}/events`) and all of an
account's (`/v1/events`), replayed from the durable event log after `Last-Event-ID`
(or `?after=`), then live. The job stream closes after its `completed` event."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import StreamingResponse

from genq.api.deps import App, Caller
from genq.api.schemas import PROBLEMS
from genq.core import Genq
from genq.errors import GenqError
from genq.ids import iso
from genq.store.records import JobEvent

router = APIRouter(tags=["events"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _resume_point(request: Request, after: int | None) -> int:
    header = request.headers.get("last-event-id", "").strip()
    if header.isdigit():
        return int(header)
    return after or 0


def frame(event_id: int, type: str, data: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, type.encode(), orjson.dumps(data))


async def event_data(genq: Genq, ev: JobEvent) -> dict[str, Any]:
    if ev.type == "completed":  # carries the whole job, from the shared body cache
        with contextlib.suppress(GenqError):
            return await genq.jobs.canonical(ev.account_id, ev.job_id)
    return {
        "job_id": ev.job_id,
        "seq": ev.seq,
        "type": ev.type,
        "created_at": iso(ev.created_at),
        **ev.data,
    }


@router.get(
    "/v1/jobs/{job_id}/events",
    responses={200: {"content": {"text/event-stream": {}}}, **PROBLEMS},
    summary="Stream a job's events (SSE)",
)
async def job_events(
    job_id: str,
    request: Request,
    genq: App,
    caller: Caller,
    after: Annotated[int | None, Query(ge=0, description="resume after this seq")] = None,
) -> StreamingResponse:
    """`id:` is the job's event sequence number; `event:` is status, progress, output,
    log or completed (whose data is the whole job). Reconnect with `Last-Event-ID`."""
    await genq.jobs.get(caller.account.id, job_id)  # 404 / 410 before streaming
    last = _resume_point(request, after)
    keepalive = genq.settings.sse_keepalive_s

    async def stream() -> AsyncIterator[bytes]:
        nonlocal last
        yield b"retry: 2000\n\n"
        with genq.bus.watch(job_id) as watch:
            while True:
                events = await genq.jobs.events_after(job_id, last)
                for ev in events:
                    last = ev.seq
                    yield frame(ev.seq, ev.type, await event_data(genq, ev))
                    if ev.type == "completed":
                        return
                if not events:
                    job = await genq.store.jobs.get(job_id)
                    if job is None or (job.terminal and job.seq <= last):
                        return
                    if not await watch.wait(keepalive):
                        yield b": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/v1/events",
    responses={200: {"content": {"text/event-stream": {}}}, **PROBLEMS},
    summary="Stream all of the account's job events (SSE)",
)
async def account_events(
    request: Request,
    genq: App,
    caller: Caller,
    after: Annotated[int | None, Query(ge=0, description="resume after this event id")] = None,
) -> StreamingResponse:
    """Every event of every job of the account; `id:` is a global event id. Without
    `Last-Event-ID`/`after`, starts with events from now on."""
    account_id = caller.account.id
    resume = request.headers.get("last-event-id", "").strip().isdigit() or after is not None
    keepalive = genq.settings.sse_keepalive_s

    async def stream() -> AsyncIterator[bytes]:
        last = _resume_point(request, after) if resume else await genq.store.jobs.last_event_id()
        yield b"retry: 2000\n\n"
        with genq.bus.watch(account_id) as watch:
            while True:
                events = await genq.store.jobs.events_since(last, account_id=account_id)
                for ev in events:
                    last = ev.id
                    yield frame(ev.id, ev.type, await event_data(genq, ev))
                if not events and not await watch.wait(keepalive):
                    yield b": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
