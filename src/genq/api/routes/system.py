"""/v1/account, /healthz, /readyz and /metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, PlainTextResponse, Response

from genq.api.deps import App, Caller
from genq.api.schemas import PROBLEMS, AccountOut, problems
from genq.errors import Unauthorized
from genq.ids import iso
from genq.ratelimits import GENERATE, STATUS

log = logging.getLogger(__name__)
router = APIRouter()


@router.get(
    "/v1/account",
    tags=["account"],
    responses={200: {"model": AccountOut}, **PROBLEMS},
    summary="The caller's account",
)
async def get_account(genq: App, caller: Caller) -> Response:
    """Balance, plan, limits and current usage."""
    a, k = caller.account, caller.key
    plan = genq.accounts.plan(a.plan)
    generate = await genq.limiter.peek(a.id, a.plan, GENERATE)
    status = await genq.limiter.peek(a.id, a.plan, STATUS)
    counts = await genq.accounts.job_counts(a.id)
    return JSONResponse(
        {
            "id": a.id,
            "object": "account",
            "name": a.name,
            "plan": a.plan,
            "balance": await genq.accounts.balance(a.id),
            "limits": {
                "generation_per_min": plan.generation_per_min,
                "status_per_min": plan.status_per_min,
                "concurrent_jobs": plan.concurrent_jobs,
                "retention_days": plan.retention_days,
                "monthly_credits": plan.monthly_credits,
                "open_streams": plan.open_streams,
            },
            "usage": {
                "generation_remaining": generate.remaining,
                "status_remaining": status.remaining,
                "window_reset_s": max(generate.reset_s, status.reset_s),
                "running_jobs": counts.get("starting", 0) + counts.get("running", 0),
                "queued_jobs": counts.get("queued", 0),
                "open_streams": genq.holds.open.get(a.id, 0),
            },
            "created_at": iso(a.created_at),
            "key": {
                "id": k.id,
                "prefix": k.prefix,
                "name": k.name,
                "created_at": iso(k.created_at),
            },
        }
    )


@router.get("/healthz", tags=["system"], summary="Liveness")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    tags=["system"],
    responses={503: {"description": "The database or the object store does not answer"}},
    summary="Readiness: the database (and object store) answer",
)
async def readyz(genq: App) -> Response:
    """503 when the database does not answer; why is logged, not shown (it names hosts
    and users)."""
    try:
        await genq.ping()
    except Exception:
        log.warning("readiness: the database does not answer", exc_info=True)
        return JSONResponse(
            {"status": "unavailable", "detail": "the database does not answer"}, status_code=503
        )
    try:
        await genq.storage.backend.ping()  # (the local backend: nothing to ask)
    except Exception:
        log.warning("readiness: the object store does not answer", exc_info=True)
        return JSONResponse(
            {"status": "unavailable", "detail": "the object store does not answer"},
            status_code=503,
        )
    return JSONResponse(
        {"status": "ok", "engines": len(genq.engines), "worker": genq.worker is not None}
    )


@router.get(
    "/metrics",
    tags=["system"],
    response_class=PlainTextResponse,
    responses={
        200: {"description": "Prometheus text exposition format"},
        **problems(401),  # with GENQ_METRICS_TOKEN, to a request without it
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request, genq: App) -> Response:
    """Prometheus text. With `GENQ_METRICS_TOKEN` set, only for `Authorization: Bearer
    <token>`."""
    if not genq.metrics.authorized(request.headers.get("authorization", "")):
        raise Unauthorized(
            "/metrics wants the metrics token: Authorization: Bearer <GENQ_METRICS_TOKEN>",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(genq.metrics.text(), media_type=CONTENT_TYPE_LATEST)
