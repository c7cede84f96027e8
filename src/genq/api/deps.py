"""Request-scoped helpers: the assembled `Genq`, the caller, and JSON bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.middleware import too_large
from genq.core import Genq
from genq.errors import InvalidInput, UnsupportedMediaType
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


# documents the API key in OpenAPI (`authorize` reads the header itself)
_bearer = HTTPBearer(scheme_name="apiKey", description="an API key", auto_error=False)
Documented = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


async def principal(request: Request, _key: Documented) -> Principal:
    return await authorize(request, STATUS)


async def creator(request: Request, _key: Documented) -> Principal:
    return await authorize(request, GENERATE)


Caller = Annotated[Principal, Depends(principal)]  # reads: the status window
Creator = Annotated[Principal, Depends(creator)]  # job-creating requests: generate window
App = Annotated[Genq, Depends(get_genq)]


_REPLAYED_HEADERS = ("content-type", "location", "etag", "retry-after", "preference-applied")


async def idempotent_reply(
    genq: Genq,
    caller: Principal,
    key: str | None,
    fingerprint: Callable[[], str],
    handler: Callable[[], Awaitable[Reply]],
    replay: Callable[[str], Awaitable[Reply]] | None = None,
) -> Reply:
    """Run a creating request's `handler` under its `Idempotency-Key` (if it has one):
    a retry gets the first reply again, byte for byte. `fingerprint()` hashes the
    request (`genq.idempotency.request_hash`). `replay(job_id)`: the answer for a job
    whose first answer was lost (default: the job, as `POST /v1/jobs` answers)."""
    if key is None:
        return await handler()

    async def run() -> Reply:
        reply = await handler()
        headers = {k: v for k, v in reply.headers.items() if k.lower() in _REPLAYED_HEADERS}
        return Reply(reply.status_code, headers, reply.body)

    async def replay_resource(resource_id: str) -> Reply:
        item = await genq.jobs.body(caller.account.id, resource_id)
        return Reply(
            202,
            {"content-type": "application/json", "location": f"/v1/jobs/{resource_id}"},
            item.body,
            replayed=True,
        )

    return await genq.idempotency.run(
        caller.account.id, key, fingerprint(), run, replay or replay_resource
    )


def reply_headers(reply: Reply) -> dict[str, str]:
    headers = dict(reply.headers)
    if reply.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


async def idempotent(
    request: Request, caller: Principal, handler: Callable[[], Awaitable[Response]]
) -> Response:
    """`idempotent_reply` for a route whose handler makes a Response."""
    raw = await request.body()

    async def run() -> Reply:
        response = await handler()
        return Reply(response.status_code, dict(response.headers), bytes(response.body))

    reply = await idempotent_reply(
        app_genq(request),
        caller,
        request.headers.get("idempotency-key"),
        lambda: request_hash(request.method, request.url.path, raw),
        run,
    )
    return Response(reply.body, status_code=reply.status_code, headers=reply_headers(reply))


def parse_json(raw: bytes, content_type: str, model: type[M], *, max_bytes: int) -> M:
    """Parse a JSON body into `model`: 415 for another content type, 413 past the
    limit, 422 for malformed JSON or a body that does not match."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype or 'nothing'}")
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
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


async def json_body(request: Request, model: type[M], *, max_bytes: int) -> M:
    """`parse_json` of the request's body."""
    content_type = request.headers.get("content-type", "")
    ctype = content_type.split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype or 'nothing'}")
    return parse_json(await request.body(), content_type, model, max_bytes=max_bytes)
