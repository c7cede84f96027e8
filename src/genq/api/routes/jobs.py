"""/v1/jobs: submit, read (the hot path), list, cancel."""

from __future__ import annotations

import re
import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from genq import payloads
from genq.accounts import Principal
from genq.api.deps import App, Caller, Creator, idempotent_reply, parse_json, reply_headers
from genq.api.schemas import (
    AUTH,
    BODY,
    IDEMPOTENCY_KEY,
    JobCreate,
    JobList,
    JobOut,
    problems,
    request_body,
)
from genq.core import Genq
from genq.errors import InvalidInput
from genq.idempotency import Reply, request_hash
from genq.jobcache import CachedJob
from genq.lifecycle import NON_TERMINAL, TERMINAL, CancelOutcome

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JSON = "application/json"
MAX_WAIT_S = 60.0
_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait=(\d+(?:\.\d+)?)")


def job_response(
    item: CachedJob,
    genq_retry: str | None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    h = {"ETag": item.etag, "Cache-Control": "no-cache"}
    if genq_retry is not None and item.status in NON_TERMINAL:
        h["Retry-After"] = genq_retry
    if headers:
        h.update(headers)
    return Response(item.body, status_code=status_code, media_type=JSON, headers=h)


@router.post(
    "",
    status_code=202,
    responses={
        200: {"model": JobOut, "description": "The job ended within `Prefer: wait`"},
        202: {"model": JobOut, "description": "The job, queued"},
        **problems(*AUTH, *BODY, 402, 404, 409),
    },
    openapi_extra=request_body(
        JobCreate,
        parameters=[
            IDEMPOTENCY_KEY,
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "description": "`wait=N` (N <= 60): hold the answer until the job ends"
                " (other preferences are ignored, RFC 7240)",
                "schema": {"type": "string"},
            },
        ],
    ),
    summary="Submit a job",
)
async def create_job(request: Request, genq: App, caller: Creator) -> Response:
    """Queue a job; answers 202 with the job at once. `Prefer: wait=N` (N <= 60) holds
    the answer until the job ends or N seconds pass. With an `Idempotency-Key`, a retry
    gets the first answer again (and no second job)."""
    h = request.headers
    reply = await create_reply(
        genq,
        caller,
        await request.body(),
        content_type=h.get("content-type", ""),
        prefer=h.get("prefer", ""),
        key=h.get("idempotency-key"),
        path=request.url.path,
    )
    return Response(reply.body, status_code=reply.status_code, headers=reply_headers(reply))


async def create_reply(
    genq: Genq,
    caller: Principal,
    raw: bytes,
    *,
    content_type: str,
    prefer: str,
    key: str | None,
    path: str,
) -> Reply:
    """`POST /v1/jobs` without the framework: the route above and
    `genq.api.front.Front` both answer with this."""

    async def create() -> Reply:
        body = parse_json(raw, content_type, JobCreate, max_bytes=genq.settings.max_json_bytes)
        job = await genq.jobs.submit(
            caller.account,
            body.engine,
            body.input,
            metadata=body.metadata,
            webhook=body.webhook.model_dump(mode="json") if body.webhook else None,
        )
        item = genq.jobs.entry(job)
        wait = _PREFER_WAIT.search(prefer)
        status_code = 202
        headers = {"location": f"/v1/jobs/{job.id}"}
        # the job exists now: at the account's limit of open waits the preference is
        # not applied (202 at once), rather than refused
        hold = genq.holds.try_take(caller.account.id, caller.account.plan) if wait else None
        if wait and hold is not None:
            with hold:
                deadline = time.monotonic() + min(float(wait.group(1)), MAX_WAIT_S)
                while item.status not in TERMINAL and (left := deadline - time.monotonic()) > 0:
                    item = await genq.jobs.wait_body(
                        caller.account.id, job.id, seen=None, after_seq=item.seq, timeout=left
                    )
            headers["preference-applied"] = f"wait={wait.group(1)}"
            status_code = 200 if item.status in TERMINAL else 202
        headers.update({"content-type": JSON, "etag": item.etag, "cache-control": "no-cache"})
        if item.status in NON_TERMINAL:
            headers["retry-after"] = genq.jobs.retry_after(item.status, item.engine)
        return Reply(status_code, headers, item.body)

    return await idempotent_reply(
        genq, caller, key, lambda: request_hash("POST", path, raw), create
    )


@router.get(
    "",
    responses={200: {"model": JobList}, **problems(*AUTH, 422)},
    openapi_extra={
        "parameters": [
            {
                "name": "status",
                "in": "query",
                "required": False,
                "description": "only jobs in these statuses (comma-separated)",
                "style": "form",
                "explode": False,
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "enum": [*NON_TERMINAL, *TERMINAL]},
                    "minItems": 1,
                },
            }
        ]
    },
    summary="List jobs",
)
async def list_jobs(
    genq: App,
    caller: Caller,
    status: Annotated[str | None, Query(include_in_schema=False)] = None,  # documented above
    engine: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """The account's jobs, newest first, with keyset (cursor) pagination."""
    statuses = status.split(",") if status is not None else []  # `status=` names none
    bad = [s for s in statuses if s not in NON_TERMINAL + TERMINAL]
    if bad:
        raise InvalidInput(
            f"unknown status {bad[0]!r}",
            errors=[{"field": "status", "message": f"unknown status {bad[0]!r}", "type": "enum"}],
        )
    data, cursor = await genq.jobs.list(
        caller.account.id, status=statuses, engine=engine, limit=limit, after=after
    )
    body = {"object": "list", "data": data, "has_more": cursor is not None, "next_cursor": cursor}
    return Response(payloads.dumps(body), media_type=JSON)


@router.get(
    "/{job_id}",
    responses={
        200: {"model": JobOut},
        304: {"description": "The job is as the client's copy (`If-None-Match`)"},
        **problems(*AUTH, 404, 410, 422),
    },
    summary="Get a job",
)
async def get_job(
    job_id: str,
    request: Request,
    genq: App,
    caller: Caller,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="long-poll seconds")] = 0,
    after_seq: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The job. Served from a cache of serialized bodies; `If-None-Match` gives 304.
    `?wait=N` holds the answer until the job differs from the client's copy."""
    seen = request.headers.get("if-none-match")
    if wait > 0:
        with genq.holds.take(caller.account.id, caller.account.plan):
            item = await genq.jobs.wait_body(
                caller.account.id, job_id, seen=seen, after_seq=after_seq, timeout=wait
            )
    else:
        item = await genq.jobs.body(caller.account.id, job_id)
    retry = genq.jobs.retry_after(item.status, item.engine)
    if seen is not None and seen == item.etag:
        h = {"ETag": item.etag}
        if item.status in NON_TERMINAL:
            h["Retry-After"] = retry
        return Response(status_code=304, headers=h)
    return job_response(item, retry)


@router.delete(
    "/{job_id}",
    status_code=204,
    responses=problems(*AUTH, 404, 409, 410),
    summary="Delete a job's outputs",
)
async def delete_job(job_id: str, genq: App, caller: Caller) -> Response:
    """Expire an ended job now: its output files are deleted at once and reads of it
    answer 410 `expired`. A queued or running job answers 409 (cancel it first)."""
    await genq.jobs.delete(caller.account.id, job_id)
    return Response(status_code=204)


@router.post(
    "/{job_id}/cancel",
    responses={
        200: {"model": JobOut, "description": "Canceled"},
        202: {"model": JobOut, "description": "Asked to stop (it was running)"},
        **problems(*AUTH, 404, 409, 410),
    },
    summary="Cancel a job",
)
async def cancel_job(job_id: str, genq: App, caller: Caller) -> Response:
    """A queued job is canceled at once; a running one is asked to stop and ends
    `canceled` when its engine stops or its grace period passes. 409 once it has ended.
    The `cancel` member says which happened."""
    what, _job = await genq.jobs.cancel(caller.account.id, job_id)
    item = await genq.jobs.body(caller.account.id, job_id)
    body = orjson.loads(item.body)
    body["cancel"] = str(what)
    return Response(
        payloads.dumps(body),
        status_code=200 if what == CancelOutcome.CANCELED else 202,
        media_type=JSON,
    )
