"""genq as a gateway: the providers' state (`GET /v1/upstreams`, admin keys), an
account's own provider keys (`/v1/account/upstreams/{provider}`), and the URL upstream
services push results to (`POST /v1/upstreams/callbacks/{job_id}/{token}`)."""

from __future__ import annotations

import hashlib
import hmac

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from genq.api.deps import App, Caller, json_body
from genq.api.schemas import AUTH, BODY, problems, request_body
from genq.core import Genq
from genq.errors import Forbidden, InvalidInput, NotFound
from genq.ids import iso, utcnow
from genq.payloads import check_json
from genq.store.db import dt_of

router = APIRouter(tags=["upstreams"])


class UpstreamKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=4, max_length=4096, description="the account's own key")


class UpstreamPush(BaseModel):
    """What the upstream service posts: its own job document (useapi: the job model)."""

    model_config = ConfigDict(extra="allow")


class UpstreamKeyOut(BaseModel):
    object: str = "upstream_key"
    provider: str
    last4: str = Field(description="the key's last 4 characters (the key is never shown)")
    updated_at: str


def _configured(genq: Genq, provider: str) -> str:
    if provider not in genq.gateway.upstreams:
        known = ", ".join(sorted(genq.gateway.upstreams)) or "none"
        raise NotFound(f"no upstream provider {provider!r} on this server (configured: {known})")
    return provider


@router.get(
    "/v1/upstreams",
    responses=problems(*AUTH, 403),
    summary="Upstream providers: state, jobs in flight, error and poll rates (admin)",
)
async def list_upstreams(genq: App, caller: Caller) -> Response:
    if caller.account.name not in genq.settings.admin_accounts:
        raise Forbidden("an admin key is needed (GENQ_ADMIN_ACCOUNTS names their accounts)")
    counts = await genq.store.upstream.counts()
    data = [
        genq.gateway.describe(up, counts.get(name))
        for name, up in sorted(genq.gateway.upstreams.items())
    ]
    return JSONResponse({"object": "list", "data": data})


@router.put(
    "/v1/account/upstreams/{provider}",
    responses={200: {"model": UpstreamKeyOut}, **problems(*AUTH, *BODY, 404)},
    openapi_extra=request_body(UpstreamKeyIn),
    summary="Store the account's own key for a provider (encrypted at rest)",
    tags=["account"],
)
async def put_key(provider: str, request: Request, genq: App, caller: Caller) -> Response:
    """The account's jobs at this provider then use this key instead of the server's."""
    _configured(genq, provider)
    body = await json_body(request, UpstreamKeyIn, max_bytes=genq.settings.max_json_bytes)
    key = body.api_key.strip()
    if not key or any(c.isspace() for c in key):
        raise InvalidInput("api_key must be one word without spaces")
    now = utcnow()
    await genq.store.upstream.put_key(
        caller.account.id, provider, genq.gateway.encrypt(key), key[-4:], now
    )
    out = UpstreamKeyOut(provider=provider, last4=key[-4:], updated_at=iso(now) or "")
    return JSONResponse(out.model_dump())


@router.get(
    "/v1/account/upstreams/{provider}",
    responses={200: {"model": UpstreamKeyOut}, **problems(*AUTH, 404)},
    summary="The account's own key for a provider (its last 4 characters)",
    tags=["account"],
)
async def get_key(provider: str, genq: App, caller: Caller) -> Response:
    _configured(genq, provider)
    stored = await genq.store.upstream.get_key(caller.account.id, provider)
    if stored is None:
        raise NotFound(f"the account has no {provider} key of its own (the server's is used)")
    _, last4, updated = stored
    out = UpstreamKeyOut(provider=provider, last4=last4, updated_at=iso(dt_of(updated)) or "")
    return JSONResponse(out.model_dump())


@router.delete(
    "/v1/account/upstreams/{provider}",
    status_code=204,
    responses=problems(*AUTH, 404),
    summary="Forget the account's own key for a provider",
    tags=["account"],
)
async def delete_key(provider: str, genq: App, caller: Caller) -> Response:
    _configured(genq, provider)
    if not await genq.store.upstream.delete_key(caller.account.id, provider):
        raise NotFound(f"the account has no {provider} key of its own")
    return Response(status_code=204)


@router.post(
    "/v1/upstreams/callbacks/{job_id}/{token}",
    status_code=204,
    responses=problems(*BODY, 404),
    openapi_extra=request_body(UpstreamPush, required=False),
    summary="Where an upstream service pushes a job's result (no API key: the token)",
)
async def callback(job_id: str, token: str, request: Request, genq: App) -> Response:
    """The URL genq gives the service when it creates the job (e.g. useapi's
    `replyUrl`); the token in it is unguessable and good for that job only. The body
    is kept for the job's tracker, which reads it instead of polling."""
    found = await genq.store.upstream.token_of(job_id)
    digest = hashlib.sha256(token.encode()).hexdigest()
    if found is None or not hmac.compare_digest(found[0], digest):
        raise NotFound("no such callback")
    raw = await request.body()
    if len(raw) > genq.settings.max_json_bytes:
        raise InvalidInput("the body is too large")
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not JSON") from None
    check_json(body, "callback body")
    if not await genq.store.upstream.push(
        job_id, digest, body, utcnow(), final=genq.gateway.final_push
    ):
        return Response(status_code=204)  # the job is no longer tracked: nothing to do
    if genq.tracker is not None:
        genq.tracker.wake()
    return Response(status_code=204)
