"""Server-Sent Events: one job's events (`/v1/jobs/{id}/events`, served from a shared
feed, see `genq.api.streams`) and all of an account's (`/v1/events`), replayed from the
durable event log after `Last-Event-ID` (or `?after=`), then live. The job stream
closes after its `completed` event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from genq.api.deps import App, Caller
from genq.api.front import event_id, resume_point
from genq.api.schemas import AUTH, event_id_param, problems
from genq.api.streams import Feeds
from genq.errors import InvalidInput
from genq.ratelimits import Hold

router = APIRouter(tags=["events"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class FeedResponse(Response):
    """A job's stream from the shared feed (the same as `genq.api.front.Front` serves)."""

    def __init__(self, feeds: Feeds, account_id: str, job_id: str, last: int, hold: Hold) -> None:
        super().__init__(media_type="text/event-stream")
        self.feeds, self.account_id, self.job_id, self.last = feeds, account_id, job_id, last
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.hold:
            await self.feeds.stream(scope, receive, send, self.account_id, self.job_id, self.last)


class HeldStream(StreamingResponse):
    """A stream that gives its account's `Hold` back when it ends, however it ends."""

    def __init__(self, content: AsyncIterator[bytes], hold: Hold, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.hold:
            await super().__call__(scope, receive, send)


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problems(*AUTH, 404, 410, 422),
    },
    openapi_extra={"parameters": [event_id_param("after", "resume after this seq")]},
    summary="Stream a job's events (SSE)",
)
async def job_events(
    job_id: str,
    request: Request,
    genq: App,
    caller: Caller,
    after: Annotated[str | None, Query(include_in_schema=False)] = None,  # documented above
) -> Response:
    """`id:` is the job's event sequence number; `event:` is status, progress, output,
    log or completed (whose data is the whole job). Reconnect with `Last-Event-ID`."""
    last = resume_point(request.scope)
    account = caller.account
    await genq.jobs.body(account.id, job_id)  # 404 / 410 before streaming
    feeds: Feeds = request.app.state.feeds
    return FeedResponse(feeds, account.id, job_id, last, genq.holds.take(account.id, account.plan))


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **problems(*AUTH, 422),
    },
    openapi_extra={"parameters": [event_id_param("after", "resume after this event id")]},
    summary="Stream all of the account's job events (SSE)",
)
async def account_events(
    request: Request,
    genq: App,
    caller: Caller,
    after: Annotated[str | None, Query(include_in_schema=False)] = None,  # documented above
) -> StreamingResponse:
    """Every event of every job of the account; `id:` is a global event id. Without
    `Last-Event-ID`/`after`, starts with events from now on."""
    account = caller.account
    header = event_id(request.headers.get("last-event-id", ""))
    resume = header
    if resume is None and after is not None:
        resume = event_id(after)
        if resume is None:
            raise InvalidInput(
                "the request is not valid",
                errors=[{"field": "query.after", "message": "not an event id", "type": "value"}],
            )
    keepalive = genq.settings.sse_keepalive_s
    feeds: Feeds = request.app.state.feeds

    bus = genq.bus

    async def stream() -> AsyncIterator[bytes]:
        last = resume if resume is not None else await genq.jobs.last_event_id()
        yield b"retry: 2000\n\n"
        genq.metrics.account_streams += 1
        try:
            with bus.watch(account.id) as watch:
                while not bus.draining:  # see `Feeds.close`
                    events = await genq.jobs.account_events(account.id, last)
                    for ev in events:
                        last = ev.id
                        yield await feeds.account_frame(ev)
                    if not events and not await watch.wait(keepalive) and not bus.draining:
                        yield b": keep-alive\n\n"
        finally:
            genq.metrics.account_streams -= 1

    hold = genq.holds.take(account.id, account.plan)
    return HeldStream(stream(), hold, media_type="text/event-stream", headers=SSE_HEADERS)
