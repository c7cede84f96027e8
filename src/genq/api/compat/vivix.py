"""Vivix Atelier face (`/compat/vivix`, seed 003): images and videos by model name.

- `POST /api/v1/generate` `{model, prompt (<=2000), negative_prompt? (<=500),
  aspect_ratio? (1:1|4:5|9:16|16:9), resolution?, duration?, audio?,
  reference_images? (<=3), seed?, number_results? (1-4, image models)}` -> 201
  `{generation_id, status: "pending", model, credits_estimate, created_at}` with the
  headers `X-Request-Id`, `X-RateLimit-Remaining` (this minute's generations left) and
  `X-Credits-Balance` (after the estimate is held). `resolution` is `480p`, `720p`,
  `1080p` (the short side) or `1k`, `2k` (the long side), kept inside the engine's
  limits; `duration` is the video length in seconds; `audio` is kept in the metadata;
  `reference_images` are genq file ids, `job_.../<output>` references, generations or
  jobs of this server or its output URLs (remote URLs are not fetched: 400) and go to the engine
  only when it takes images.
- `GET /api/v1/generations/{id}`: exactly seed 003 (pending/processing: `elapsed_ms`,
  `credits_estimate`; completed: `output_url`, `output_urls` (every output, so also
  for `number_results` > 1), `credits_used`, `duration_ms`, `completed_at`; failed:
  `error`, `message`, `credits_used: 0`). Timestamps are to the second, as in the seed.
  A `generation_id` is a UUID, as in the seed: the 128 bits of the genq job id's ULID
  (lossless: `job_` and the ULID of those bits is the job on /v1 and the other faces).
  Every read takes it, or the job id itself.
- `GET /api/v1/models` (inferred shape): `{"models": [{"id", "type" (image|video),
  "credits_estimate", "parameters": [...]}]}`.
- `GET /api/v1/credits`: `{balance, tier, rate_limit: {calls_per_minute,
  concurrent_jobs}, calls_remaining}`.

Errors are `{"error": CODE, "message": ...}`: 400 `INVALID_REQUEST` (with `details`)
or `UNKNOWN_MODEL`, 401 `KEY_INVALID`, 402 `INSUFFICIENT_CREDITS` (with `balance` and
`needed`), 403 `NOT_YOURS`, 404 `NOT_FOUND` (also past retention), 409 `CONFLICT`,
429 `RATE_LIMITED` (with `Retry-After`).

Routing: `vivix:model:<name>` in `settings.compat_engines` serves (or adds) a model;
the defaults are in `MODELS`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    engine_fields,
    error_code,
    error_message,
    extra_input,
    face_router,
    first_error,
    fit,
    idempotent,
    image_ref,
    iso_seconds,
    job_of_uuid,
    job_uuid,
    json_response,
    ms_between,
    outputs,
    parse,
    read_body,
    retry_headers,
    sized,
)
from genq.api.compat._docs import VivixError, errors
from genq.api.deps import App, Caller, Creator
from genq.api.front import FastRead
from genq.api.schemas import IDEMPOTENCY_KEY, request_body
from genq.core import Genq
from genq.errors import (
    Conflict,
    EngineNotFound,
    Expired,
    GenqError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from genq.ids import iso
from genq.ratelimits import GENERATE
from genq.store.records import Account

NAME: Final = "vivix"
STATUS: Final[dict[str, str]] = {  # genq -> Vivix; expired answers 404 NOT_FOUND
    "queued": "pending",
    "starting": "processing",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "failed",
}
MODELS: Final[dict[str, str]] = {  # model name -> default engine
    "grok-imagine-image-quality": "demo/text2image",
    "grok-imagine-image": "demo/text2image",
    "grok-imagine-video": "demo/text2video",
}
ERRORS: Final[dict[str, str]] = {  # genq error.code -> Vivix error of a failed generation
    "engine_error": "PROVIDER_ERROR",
    "provider_error": "PROVIDER_ERROR",
    "worker_lost": "PROVIDER_ERROR",
    "moderated": "CONTENT_MODERATED",
    "timeout": "TIMEOUT",
    "canceled": "CANCELLED",
    "invalid_input": "INVALID_INPUT",
}
VIDEO_TASKS: Final = ("text2video", "image2video")
RESOLUTIONS: Final[dict[str, tuple[str, int]]] = {
    "480p": ("short", 480),
    "720p": ("short", 720),
    "1080p": ("short", 1080),
    "1k": ("long", 1024),
    "2k": ("long", 2048),
}
_CODES: Final[tuple[tuple[type[GenqError], int, str], ...]] = (
    (Unauthorized, 401, "KEY_INVALID"),
    (InsufficientCredits, 402, "INSUFFICIENT_CREDITS"),
    (EngineNotFound, 400, "UNKNOWN_MODEL"),
    (Expired, 404, "NOT_FOUND"),
    (NotFound, 404, "NOT_FOUND"),
    (InvalidInput, 400, "INVALID_REQUEST"),
    (Conflict, 409, "CONFLICT"),
    (RateLimited, 429, "RATE_LIMITED"),
)


class NotYours(GenqError):
    """The generation_id belongs to a different account."""

    status, code, title = 403, "NOT_YOURS", "Not yours"


def generation_id(job_id: str) -> str:
    """The UUID Vivix shows for a job: its ULID's 128 bits."""
    return job_uuid(job_id)


def job_id_of(generation: str) -> str | None:
    """The job a client's id names: a `generation_id` or a job id as is; None for neither."""
    return job_of_uuid(generation)


def error_response(exc: GenqError) -> Response:
    status, code = next(
        ((s, c) for t, s, c in _CODES if isinstance(exc, t)), (exc.status, exc.code.upper())
    )
    body: dict[str, Any] = {"error": code, "message": exc.detail}
    if isinstance(exc, InvalidInput):
        body["message"] = first_error(exc)
        body["details"] = exc.extra.get("errors", [])
    elif isinstance(exc, InsufficientCredits):
        body.update({k: exc.extra[k] for k in ("balance", "needed") if k in exc.extra})
    elif isinstance(exc, Unauthorized):
        body["message"] = "The API key is missing, malformed or revoked."
    return json_response(body, status, retry_headers(exc))


router = face_router(f"/compat/{NAME}", NAME, error_response)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(VivixError, *statuses)


def render(job: Job) -> dict[str, Any]:
    """A canonical job as Vivix's generation object (seed 003)."""
    if job["status"] not in STATUS:
        raise Expired(f"generation {generation_id(job['id'])} is past the retention window")
    status = STATUS[job["status"]]
    md: dict[str, Any] = job.get("metadata") or {}
    model = md.get("model") or job["engine"]
    body: dict[str, Any] = {"generation_id": generation_id(job["id"]), "status": status}
    created = iso_seconds(job["created_at"])
    if status in ("pending", "processing"):
        body.update(
            {
                "model": model,
                "credits_estimate": int(job["credits"]["estimate"]),
                "elapsed_ms": ms_between(job["created_at"]),
                "created_at": created,
            }
        )
    elif status == "completed":
        urls = [o["url"] for o in outputs(job, ("video",)) + outputs(job, ("image",))]
        if not urls:
            urls = [o["url"] for o in job.get("outputs") or []]
        body.update(
            {
                "model": model,
                "output_url": urls[0] if urls else None,
                "output_urls": urls,
                "credits_used": int(job["credits"]["used"]),
                "duration_ms": ms_between(job["created_at"], job["completed_at"]),
                "created_at": created,
                "completed_at": iso_seconds(job["completed_at"]),
            }
        )
    else:
        code = error_code(job) or ("canceled" if job["status"] == "canceled" else "")
        body.update(
            {
                "error": ERRORS.get(code, code.upper() or "PROVIDER_ERROR"),
                "message": error_message(job) or "The generation was cancelled.",
                "credits_used": 0,
                "created_at": created,
                "completed_at": iso_seconds(job["completed_at"]),
            }
        )
    return body


def models(genq: Genq) -> dict[str, str]:
    """Model name -> engine: the defaults, then the operator's `vivix:model:` routes."""
    table = dict(MODELS)
    prefix = f"{NAME}:model:"
    table.update(
        {
            k[len(prefix) :]: v
            for k, v in genq.settings.compat_engines.items()
            if k.startswith(prefix)
        }
    )
    return table


def is_video(genq: Genq, engine: str) -> bool:
    e = genq.jobs.engine(engine)
    return e.task in VIDEO_TASKS or "video" in e.media


# -- requests -------------------------------------------------------------------------


class Generate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=100)
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=500)
    aspect_ratio: Literal["1:1", "4:5", "9:16", "16:9"] | None = None
    resolution: str | None = Field(default=None, max_length=10)
    duration: float | None = Field(default=None, gt=0, le=60)
    audio: bool | None = None
    reference_images: list[str] | None = Field(default=None, max_length=3)
    seed: Annotated[int | None, Field(ge=0, le=2**32 - 1)] = None
    number_results: int = Field(default=1, ge=1, le=4)


def _size(genq: Genq, engine: str, body: Generate) -> dict[str, int]:
    if body.resolution is None:
        return sized(genq, engine, aspect=body.aspect_ratio)
    found = RESOLUTIONS.get(body.resolution.lower())
    if found is None:
        raise InvalidInput(
            f"resolution must be one of {', '.join(RESOLUTIONS)}",
            errors=[
                {
                    "field": "body.resolution",
                    "type": "enum",
                    "message": f"must be one of {', '.join(RESOLUTIONS)}",
                }
            ],
        )
    side, px = found
    if side == "short":
        return sized(genq, engine, aspect=body.aspect_ratio, short_side=px)
    return sized(genq, engine, aspect=body.aspect_ratio, long_side=px)


async def _created(
    genq: Genq, account: Account, job_id: str, status: str, model: str, estimate: int, at: str
) -> Response:
    """Generate's answer: 201 and its headers."""
    window = await genq.limiter.peek(account.id, account.plan, GENERATE)
    balance = await genq.accounts.balance(account.id)
    return json_response(
        {
            "generation_id": generation_id(job_id),
            "status": status,
            "model": model,
            "credits_estimate": estimate,
            "created_at": iso_seconds(at),
        },
        201,
        {
            "X-Request-Id": str(uuid.uuid4()),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-Credits-Balance": str(balance),
        },
    )


@router.post(
    "/api/v1/generate",
    status_code=201,
    responses=_errors(400, 401, 402, 408, 409, 413, 429),
    openapi_extra=request_body(Generate, parameters=[IDEMPOTENCY_KEY]),
    summary="Start a generation",
)
async def generate(request: Request, genq: App, caller: Creator) -> Response:
    async def replay(job: Job) -> Response:  # its first answer was lost
        md: dict[str, Any] = job.get("metadata") or {}
        return await _created(
            genq,
            caller.account,
            job["id"],
            STATUS.get(job["status"], STATUS["queued"]),
            str(md.get("model") or job["engine"]),
            int(job["credits"]["estimate"]),
            job["created_at"],
        )

    return await idempotent(request, genq, caller, lambda: _generate(request, genq, caller), replay)


async def _generate(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(Generate, fields)
    engine = models(genq).get(body.model)
    if engine is None:
        raise EngineNotFound(f"no model {body.model!r}; see GET /api/v1/models")
    video = is_video(genq, engine)
    if video and body.number_results > 1:
        raise InvalidInput(
            "number_results > 1 is for image models",
            errors=[
                {
                    "field": "body.number_results",
                    "type": "value_error",
                    "message": "number_results > 1 is for image models",
                }
            ],
        )
    account = caller.account
    refs = [
        await image_ref(genq, account.id, job_id_of(r) or r, "reference_images")
        for r in body.reference_images or []
    ]
    candidate: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "seed": body.seed,
        "num_images": body.number_results,
        "seconds": body.duration,
        **_size(genq, engine, body),
    }
    if refs:
        candidate["image"], candidate["images"] = refs[0], refs
    data = fit(genq, engine, candidate, extra_input(request))
    md = {
        "compat": NAME,
        "model": body.model,
        **body.model_dump(include={"resolution", "audio", "aspect_ratio"}, exclude_none=True),
    }
    job = await genq.jobs.submit(account, engine, data, metadata=md)
    created = iso(job.created_at) or ""
    return await _created(
        genq, account, job.id, STATUS["queued"], body.model, job.credits_estimate, created
    )


@router.get(
    "/api/v1/generations/{generation_id}",
    responses=_errors(401, 403, 404, 429),
    summary="Read a generation",
)
async def generation(generation_id: str, genq: App, caller: Caller) -> Response:
    return await read_generation(genq, caller, {"generation_id": generation_id}, {})


async def read_generation(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    given = params["generation_id"]
    job_id = job_id_of(given)
    if job_id is None:
        raise NotFound(f"no generation with id {given}")
    try:
        job = await genq.jobs.canonical(caller.account.id, job_id)
    except NotFound:  # missing, or another account's: this face tells them apart
        found = await genq.jobs.find(job_id)
        if found is not None and found.account_id != caller.account.id:
            raise NotYours("the generation_id belongs to a different account") from None
        raise NotFound(f"no generation with id {given}") from None
    return json_response(render(job))


@router.get(
    "/api/v1/models", responses=_errors(401, 429), summary="The models and their parameters"
)
async def list_models(genq: App, caller: Caller) -> Response:
    data = []
    for name, engine_name in sorted(models(genq).items()):
        engine = genq.jobs.engines.get(engine_name)
        if engine is None:
            continue
        video = is_video(genq, engine_name)
        fields = engine_fields(genq, engine_name)
        params = [
            p
            for p, f in (
                ("prompt", "prompt"),
                ("negative_prompt", "negative_prompt"),
                ("aspect_ratio", "width"),
                ("resolution", "width"),
                ("duration", "seconds"),
                ("seed", "seed"),
                ("number_results", "num_images"),
                ("reference_images", "image"),
            )
            if f in fields
        ]
        data.append(
            {
                "id": name,
                "type": "video" if video else "image",
                "credits_estimate": int(engine.price),
                "parameters": params,
            }
        )
    return json_response({"models": data})


@router.get("/api/v1/credits", responses=_errors(401, 429), summary="Balance, tier and rate limits")
async def credits(genq: App, caller: Caller) -> Response:
    account = caller.account
    plan = genq.accounts.plan(account.plan)
    window = await genq.limiter.peek(account.id, account.plan, GENERATE)
    return json_response(
        {
            "balance": await genq.accounts.balance(account.id),
            "tier": account.plan,
            "rate_limit": {
                "calls_per_minute": plan.generation_per_min,
                "concurrent_jobs": plan.concurrent_jobs,
            },
            "calls_remaining": window.remaining,
        }
    )


FAST_READS = [
    FastRead(
        f"/compat/{NAME}/api/v1/generations/{{generation_id}}", read_generation, error_response
    )
]
