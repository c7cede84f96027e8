"""/v1/account, /healthz, /readyz and /metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response

from genq.api.deps import App, Caller
from genq.api.schemas import PROBLEMS
from genq.ids import iso

router = APIRouter()


@router.get("/v1/account", tags=["account"], responses=PROBLEMS, summary="The caller's account")
async def get_account(caller: Caller) -> Response:
    a, k = caller.account, caller.key
    return JSONResponse({
        "id": a.id,
        "object": "account",
        "name": a.name,
        "plan": a.plan,
        "created_at": iso(a.created_at),
        "key": {"id": k.id, "prefix": k.prefix, "name": k.name, "created_at": iso(k.created_at)},
    })


@router.get("/healthz", tags=["system"], summary="Liveness")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["system"], summary="Readiness: the database answers")
async def readyz(genq: App) -> Response:
    try:
        await genq.store.ping()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "engines": len(genq.engines),
                         "worker": genq.worker is not None})


@router.get("/metrics", tags=["system"], summary="Prometheus metrics")
async def metrics(genq: App) -> Response:
    await genq.metrics.refresh(genq.store)
    return Response(generate_latest(genq.metrics.registry), media_type=CONTENT_TYPE_LATEST)
