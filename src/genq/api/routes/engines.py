"""/v1/engines: what can be run, with each engine's input JSON Schema and price."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from genq.api.deps import App, Caller
from genq.api.schemas import AUTH, PROBLEMS, EngineList, EngineOut, problems
from genq.engines.registry import describe

router = APIRouter(prefix="/v1/engines", tags=["engines"])


@router.get("", responses={200: {"model": EngineList}, **PROBLEMS}, summary="List engines")
async def list_engines(genq: App, _caller: Caller) -> Response:
    data = [describe(e) for _, e in sorted(genq.engines.items())]
    return JSONResponse({"object": "list", "data": data})


@router.get(
    "/{name:path}",
    responses={200: {"model": EngineOut}, **problems(*AUTH, 404)},
    summary="One engine",
)
async def get_engine(name: str, genq: App, _caller: Caller) -> Response:
    return JSONResponse(describe(genq.jobs.engine(name)))
