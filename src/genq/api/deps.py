"""Request-scoped helpers: the assembled `Genq`, the caller, and JSON bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from genq.accounts import Principal
from genq.core import Genq
from genq.errors import InvalidInput, TooLarge, UnsupportedMediaType
from genq.idempotency import Reply, request_hash
from genq.jobs import pydantic_errors
from genq.ratelimits import GENERATE, STATUS

M = TypeVar("M", bound=BaseModel)


async def get_genq(request: Request) -> Genq:
    # async: FastAPI runs a plain `def` dependency in its thread pool
    return app_genq(request)


def app_genq(request: Request) -> Genq:
    genq: Genq = request.app.state.genq
    return genq


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def authorize(request: Request, kind: str) -> Principal:
    """Authenticate the caller and count the request in its `kind` rate window."""
    genq = app_genq(request)
    p: Principal = await genq.accounts.authenticate(bearer(request))
    request.state.principal = p
    window = await genq.limiter.hit(p.account.id, p.account.plan, kind)
    request.state.ratelimit = window.headers()
    return p


async def principal(request: Request) -> Principal:
    return await authorize(request, STATUS)


async def creator(request: Request) -> Principal:
    return await authorize(request, GENERATE)


Caller = Annotated[Principal, Depends(principal)]  # reads: the status window
Creator = Annotated[Principal, Depends(creator)]  # job-creating requests: generate window
App = Annotated[Genq, Depends(get_genq)]


_REPLAYED_HEADERS = ("content-type", "location", "etag", "retry-after", "preference-applied")


async def idempotent(
    request: Request, caller: Principal, handler: Callable[[], Awaitable[Response]]
) -> Response:
    """Serve a creating POST under its `Idempotency-Key` (if it has one): a retry gets
    the first response again, byte for byte."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await handler()
    genq = app_genq(request)
    fingerprint = request_hash(request.method, request.url.path, await request.body())

    async def run() -> Reply:
        response = await handler()
        headers = {k: v for k, v in response.headers.items() if k in _REPLAYED_HEADERS}
        return Reply(response.status_code, headers, bytes(response.body))

    async def replay_resource(resource_id: str) -> Reply:
        item = await genq.jobs.body(caller.account.id, resource_id)
        return Reply(
            202,
            {"content-type": "application/json", "location": f"/v1/jobs/{resource_id}"},
            item.body,
            replayed=True,
        )

    reply = await genq.idempotency.run(caller.account.id, key, fingerprint, run, replay_resource)
    headers = dict(reply.headers)
    if reply.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(reply.body, status_code=reply.status_code, headers=headers)


async def json_body(request: Request, model: type[M], *, max_bytes: int) -> M:
    """Parse a JSON body into `model`: 415 for another content type, 413 past the
    limit, 422 for malformed JSON or a body that does not match."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype or 'nothing'}")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise TooLarge(f"the body is larger than {max_bytes} bytes")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON: {exc}",
            errors=[{"field": "body", "message": str(exc), "type": "json_invalid"}],
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(
            "the request body is not valid", errors=pydantic_errors(exc, "body")
        ) from exc
