"""Webhook deliveries and the account's signing secret."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from genq.api.deps import App, Caller
from genq.api.schemas import (
    AUTH,
    PROBLEMS,
    DeliveryList,
    DeliveryOut,
    WebhookSecret,
    problems,
)
from genq.webhooks import render_delivery

router = APIRouter(tags=["webhooks"])


@router.get(
    "/v1/account/webhook-secret",
    responses={200: {"model": WebhookSecret}, **PROBLEMS},
    summary="The secret webhooks are signed with",
)
async def webhook_secret(genq: App, caller: Caller) -> Response:
    """A `whsec_` secret per account (Standard Webhooks); verify deliveries with it."""
    secret = await genq.accounts.webhook_secret(caller.account.id)
    return JSONResponse({"object": "webhook_secret", "secret": secret})


@router.get(
    "/v1/jobs/{job_id}/deliveries",
    responses={200: {"model": DeliveryList}, **problems(*AUTH, 404, 410)},
    summary="A job's webhook deliveries and their attempts",
)
async def job_deliveries(job_id: str, genq: App, caller: Caller) -> Response:
    await genq.jobs.get(caller.account.id, job_id)
    rows = await genq.webhooks.for_job(job_id)
    return JSONResponse({"object": "list", "data": [render_delivery(d, a) for d, a in rows]})


@router.get(
    "/v1/deliveries",
    responses={200: {"model": DeliveryList}, **PROBLEMS},
    summary="Recent webhook deliveries",
)
async def recent_deliveries(genq: App, caller: Caller) -> Response:
    rows = await genq.webhooks.recent(caller.account.id)
    return JSONResponse({"object": "list", "data": [render_delivery(d, []) for d in rows]})


@router.post(
    "/v1/deliveries/{delivery_id}/redeliver",
    status_code=202,
    responses={202: {"model": DeliveryOut}, **problems(*AUTH, 402, 404, 409)},
    summary="Send a delivery again",
)
async def redeliver(delivery_id: str, genq: App, caller: Caller) -> Response:
    again = await genq.webhooks.redeliver(caller.account.id, delivery_id)
    return JSONResponse(render_delivery(again, []), status_code=202)
