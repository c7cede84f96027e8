"""Runway API face (`/compat/runway`): `RunwayML(api_key=KEY, base_url=BASE + "/compat/runway")`.

- Every request carries `X-Runway-Version`; a missing or unsupported one (only
  `2024-11-06`, the one the `runwayml` SDK sends, is) is 400, checked before the key,
  as Runway does.
- `POST /v1/image_to_video` `{model, promptImage (URL, data URI, or
  [{uri, position: first|last}]), promptText?, ratio?, duration?, seed?}` and
  `POST /v1/text_to_image` `{model, promptText, ratio?, referenceImages?: [{uri, tag?}]
  (<=3), seed?}` -> 200 `{"id", "estimatedCost": {"credits"}}` (camelCase bodies;
  unknown fields such as `contentModeration` are accepted and ignored).
- `GET /v1/tasks/{id}` -> `{id, status, createdAt, ...}`: `PENDING`/`THROTTLED`
  (`estimatedCost`), `RUNNING` (`progress` 0-1), `SUCCEEDED` (`output`: the output
  URLs, `cost`), `FAILED` (`failure`, `failureCode`, `cost`), `CANCELLED` (`cost`).
- `DELETE /v1/tasks/{id}` -> 204: cancels a task that has not ended, deletes one that
  has (it then reads 404, as on Runway).
- `GET /v1/organization` -> `{creditBalance, tier: {maxMonthlyCreditSpend, models:
  {name: {maxConcurrentGenerations, maxDailyGenerations}}}, usage: {models: {}}}`: the
  plan's limits (a day's generations as its per-minute limit times 1440; usage is not
  counted, inferred).

Routing: `runway:model:<name>` in `settings.compat_engines` serves (or adds) a model;
the defaults are in `MODELS` (Runway's image models -> `demo/text2image`, its video
models -> `demo/text2video`, genq having no image-to-video demo engine).

Errors are Runway's `{"error": "...", "issues"?: [...]}`: 400 (bad input, with zod-like
`issues` `{code, path, message}`; an unknown model; a bad version header), 401, 402,
404 (missing, another account's, deleted or past retention), 409, 413, 422 (an
`Idempotency-Key` reused with another body), 429 (with `Retry-After`).

Inferred (Runway does not document it, or genq differs):
- Task ids are UUIDs, as on Runway: the 128 bits of the genq job's ULID (the same job
  is `job_<ULID>` on `/v1`); a `job_...` id is accepted as well.
- Insufficient credits is 402 (Runway answers 400 with a message); the SDK raises its
  `APIStatusError` with `status_code == 402`.
- `THROTTLED` is a queued job held back by the account's (or the engine's) concurrency
  limit; `PENDING` any other queued job; a job being started is `RUNNING` at 0.
- `failureCode` from genq's error code: `moderated` -> `SAFETY.OUTPUT`,
  `invalid_input` -> `ASSET.INVALID`, others `INTERNAL...`; `cost.credits` is genq's
  credits used (0 when refunded), `estimatedCost.credits` its estimate.
- `ratio` `W:H` is the output size (kept inside the engine's limits); `duration` is
  `seconds` of the engine; an image_to_video without `promptText` asks the engine for
  `MOTION_PROMPT`.
- Images: a data URI becomes a genq input file (its size bounded by
  `GENQ_MAX_JSON_BYTES`, 1 MiB by default, where Runway allows 5 MB); this server's own
  output URLs, genq file ids (`file_...`) and `job_.../<output>` references are used
  as they are. Other URLs (and `runway://` upload URIs) are refused with 400 when the
  engine takes images (`image`, `images`), since genq does not fetch remote inputs;
  for an engine that takes none (the demo video engine behind `gen4_turbo`) a remote
  URL is kept as given and not fetched, so Runway's README quick-start (a remote
  `promptImage`) runs unchanged. The job's metadata lists the images (`images`).
- `Idempotency-Key` is honoured as on `/v1` (the SDK sends none by itself).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Request
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
    invalid,
    is_url,
    job_id_in_output_url,
    job_of_uuid,
    job_uuid,
    json_response,
    outputs,
    parse,
    read_body,
    retry_headers,
    sized,
)
from genq.api.compat._docs import RunwayError, errors
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
    Unauthorized,
)

NAME: Final = "runway"
VERSION_HEADER: Final = "x-runway-version"
VERSIONS: Final = ("2024-11-06",)
Endpoint = Literal["image_to_video", "text_to_image"]
# Runway's model names per endpoint, each with its default engine
MODELS: Final[dict[Endpoint, dict[str, str]]] = {
    "image_to_video": {
        "gen4_turbo": "demo/text2video",
        "gen3a_turbo": "demo/text2video",
        "gen4.5": "demo/text2video",
        "veo3.1": "demo/text2video",
        "veo3.1_fast": "demo/text2video",
    },
    "text_to_image": {
        "gen4_image": "demo/text2image",
        "gen4_image_turbo": "demo/text2image",
    },
}
FAILURE_CODES: Final[dict[str, str]] = {  # genq error.code -> Runway failureCode
    "moderated": "SAFETY.OUTPUT",
    "invalid_input": "ASSET.INVALID",
    "engine_error": "INTERNAL.BAD_OUTPUT",
    "timeout": "INTERNAL.TIMEOUT",
}
_STATUS: Final[dict[str, str]] = {  # genq -> Runway (queued: PENDING or THROTTLED)
    "queued": "PENDING",
    "starting": "RUNNING",
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "canceled": "CANCELLED",
}
# image_to_video's promptText is optional; engines that want a prompt get this one
MOTION_PROMPT: Final = "the image, in motion"
_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.I)
_IMAGE_EXT: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class BadVersion(GenqError):
    """The X-Runway-Version header is missing or names no supported version."""

    status, code, title = 400, "bad_version", "Bad API version"


def error_response(exc: GenqError) -> Response:
    status = exc.status
    body: dict[str, Any] = {"error": exc.detail}
    if isinstance(exc, InvalidInput):
        status = 400
        body["error"] = "Validation of body failed" if exc.extra.get("errors") else exc.detail
        body["issues"] = [
            {
                "code": e.get("type", "custom"),
                "path": [p for p in str(e.get("field", "")).removeprefix("body.").split(".") if p],
                "message": e.get("message", ""),
            }
            for e in exc.extra.get("errors") or []
        ]
        if body["issues"]:
            body["error"] = f"Validation of body failed: {first_error(exc)}"
    elif isinstance(exc, EngineNotFound):
        status = 400
    elif isinstance(exc, NotFound | Expired):
        status, body["error"] = 404, "Task not found"
    elif isinstance(exc, Unauthorized):
        body["error"] = "Invalid API key"
    elif isinstance(exc, InsufficientCredits):
        body["error"] = "You do not have enough credits to run this task."
    return json_response(body, status, retry_headers(exc))


router = face_router(f"/compat/{NAME}", NAME, error_response)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(RunwayError, *statuses)


def check_version(headers: dict[str, str]) -> None:
    """Runway's version check (headers by lower-case name), before the key."""
    version = headers.get(VERSION_HEADER)
    if version is None:
        raise BadVersion(
            f"The X-Runway-Version header is required; supported: {', '.join(VERSIONS)}"
        )
    if version.strip() not in VERSIONS:
        raise BadVersion(
            f"Invalid API version {version!r}; supported versions: {', '.join(VERSIONS)}"
        )


async def versioned(request: Request) -> None:
    check_version({k.lower(): v for k, v in request.headers.items()})


VERSIONED: Final = [Depends(versioned)]  # route dependencies: before the key is read


# -- ids and tasks --------------------------------------------------------------------


def task_id(job_id: str) -> str:
    """The UUID Runway shows for a job: its ULID's 128 bits."""
    return job_uuid(job_id)


def job_id_of(given: str) -> str:
    """The job a task id names (a UUID, or a `job_...` id as is)."""
    found = job_of_uuid(given)
    if found is None:
        raise NotFound(f"no task {given!r}")
    return found


def is_throttled(job: Job) -> bool:
    message = str(job.get("message") or "")
    return job["status"] == "queued" and message.startswith(("throttled:", "waiting:"))


def render(job: Job) -> dict[str, Any]:
    """A canonical job as Runway's task."""
    status = _STATUS.get(job["status"])
    if status is None:  # expired
        raise Expired("Task not found")
    if is_throttled(job):
        status = "THROTTLED"
    body: dict[str, Any] = {"id": task_id(job["id"]), "status": status}
    body["createdAt"] = job["created_at"]
    if status in ("PENDING", "THROTTLED", "RUNNING"):
        body["estimatedCost"] = {"credits": job["credits"]["estimate"]}
        if status == "RUNNING":
            body["progress"] = round(float(job.get("progress") or 0.0) / 100.0, 4)
        return body
    body["cost"] = {"credits": int(job["credits"]["used"])}
    if status == "SUCCEEDED":
        found = outputs(job, ("video",)) or outputs(job, ("image",)) or job.get("outputs") or []
        body["output"] = [o["url"] for o in found]
    elif status == "FAILED":
        code = error_code(job) or ""
        body["failure"] = error_message(job) or "The task failed."
        body["failureCode"] = FAILURE_CODES.get(
            code, f"INTERNAL.{code.upper()}" if code else "INTERNAL"
        )
    return body


def models(genq: Genq, endpoint: Endpoint) -> dict[str, str]:
    """Model name -> engine on one endpoint: the defaults, then the operator's
    `runway:model:` routes (a routed model not in the defaults serves both endpoints)."""
    table = dict(MODELS[endpoint])
    others = {m for e, ms in MODELS.items() if e != endpoint for m in ms}
    prefix = f"{NAME}:model:"
    for key, engine in genq.settings.compat_engines.items():
        name = key[len(prefix) :]
        if key.startswith(prefix) and name not in others:
            table[name] = engine
    return table


# -- requests -------------------------------------------------------------------------

_Ratio = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,4}:[1-9][0-9]{0,4}$")]
_Seed = Annotated[int, Field(ge=0, le=4294967295)]
_Text = Annotated[str, Field(min_length=1, max_length=1000)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class PromptImage(_Body):
    uri: str = Field(min_length=1)
    position: Literal["first", "last"] = "first"


class ReferenceImage(_Body):
    uri: str = Field(min_length=1)
    tag: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]{2,15}$")


class RunwayImageToVideo(_Body):
    model: str = Field(min_length=1, max_length=100)
    prompt_image: str | list[PromptImage] = Field(alias="promptImage")
    prompt_text: _Text | None = Field(default=None, alias="promptText")
    ratio: _Ratio | None = None
    duration: int | None = Field(default=None, ge=1, le=10)
    seed: _Seed | None = None


class RunwayTextToImage(_Body):
    model: str = Field(min_length=1, max_length=100)
    prompt_text: _Text = Field(alias="promptText")
    ratio: _Ratio | None = None
    reference_images: list[ReferenceImage] | None = Field(
        default=None, max_length=3, alias="referenceImages"
    )
    seed: _Seed | None = None


def _decode_data_uri(value: str, field: str, limit: int) -> tuple[bytes, str]:
    match = _DATA_URI.match(value)
    if match is None or not match.group(3):
        raise invalid(field, "a data URI must be base64 (data:image/png;base64,...)")
    ctype = (match.group(1) or "application/octet-stream").lower()
    if not ctype.startswith("image/"):
        raise invalid(field, f"a data URI must hold an image, not {ctype}")
    try:
        blob = base64.b64decode(value[match.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(field, f"the data URI is not valid base64: {exc}") from exc
    if not blob:
        raise invalid(field, "the data URI is empty")
    if len(blob) > limit:
        raise invalid(field, f"the image is larger than {limit} bytes")
    return blob, ctype


async def _image(genq: Genq, account_id: str, value: str, field: str, used: bool) -> str:
    """An engine file reference for an image a client gave: a data URI (saved as an
    input file), or what `image_ref` takes (this server's output URLs, file ids). A
    remote URL is refused when the engine would use the image (`used`), else kept as
    given: genq does not fetch it, and the engine has no need of it."""
    value = value.strip()
    if not used and is_url(value) and job_id_in_output_url(genq, value) is None:
        return value
    if value.lower().startswith("data:"):
        blob, ctype = _decode_data_uri(value, field, genq.settings.max_upload_bytes)
        record = await genq.files.save(
            account_id,
            io.BytesIO(blob),
            filename=f"{field}.{_IMAGE_EXT.get(ctype, 'bin')}",
            content_type=ctype,
            purpose=f"{NAME}-{field}",
        )
        return record.id
    if not is_url(value) and "://" in value:
        raise invalid(
            field,
            f"{value.split('://')[0]}:// URIs are not served here; give a data URI",
            "url_not_supported",
        )
    return await image_ref(genq, account_id, value, field)


def _size(genq: Genq, engine: str, ratio: str | None) -> dict[str, int]:
    if ratio is None:
        return {}
    w, _, h = ratio.partition(":")
    return sized(genq, engine, aspect=ratio, long_side=max(int(w), int(h)))


async def _create(request: Request, genq: Genq, caller: Principal, endpoint: Endpoint) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body: RunwayImageToVideo | RunwayTextToImage
    uris: list[tuple[str, str]] = []  # (field, uri) of the images given
    seconds: int | None = None
    if endpoint == "image_to_video":
        body = video = parse(RunwayImageToVideo, fields)
        given = video.prompt_image
        if isinstance(given, str):
            uris = [("promptImage", given)]
        else:
            if not given:
                raise invalid("promptImage", "at least one image is required")
            ordered = sorted(enumerate(given), key=lambda p: p[1].position != "first")
            uris = [(f"promptImage.{i}.uri", p.uri) for i, p in ordered]
        seconds = video.duration
    else:
        body = still = parse(RunwayTextToImage, fields)
        uris = [
            (f"referenceImages.{i}.uri", r.uri) for i, r in enumerate(still.reference_images or [])
        ]
    engine = models(genq, endpoint).get(body.model)
    if engine is None:
        known = ", ".join(sorted(models(genq, endpoint)))
        raise invalid(
            "model", f"{body.model!r} is not a model of /v1/{endpoint}; use one of {known}"
        )
    account = caller.account
    used = bool({"image", "images"} & engine_fields(genq, engine).keys())
    images = [await _image(genq, account.id, uri, where, used) for where, uri in uris]
    md: dict[str, Any] = {"compat": NAME, "endpoint": endpoint, "model": body.model}
    if body.ratio:
        md["ratio"] = body.ratio
    if images:  # kept whether or not the engine takes images
        md["images"] = images
    candidate: dict[str, Any] = {
        "prompt": body.prompt_text or (MOTION_PROMPT if endpoint == "image_to_video" else None),
        "seed": body.seed,
        "seconds": seconds,
        **_size(genq, engine, body.ratio),
    }
    if images and used:
        candidate["image"], candidate["images"] = images[0], images
    data = fit(genq, engine, candidate, extra_input(request))
    job = await genq.jobs.submit(account, engine, data, metadata=md)
    return created(job.id, job.credits_estimate)


def created(job_id: str, estimate: int) -> Response:
    """A create's answer: the task id and what it may cost."""
    return json_response({"id": task_id(job_id), "estimatedCost": {"credits": estimate}})


async def _replay(job: Job) -> Response:
    return created(job["id"], int(job["credits"]["estimate"]))


@router.post(
    "/v1/image_to_video",
    dependencies=VERSIONED,
    responses=_errors(400, 401, 402, 408, 409, 413, 429),
    openapi_extra=request_body(RunwayImageToVideo, parameters=[IDEMPOTENCY_KEY]),
    summary="Start a video from an image",
)
async def image_to_video(request: Request, genq: App, caller: Creator) -> Response:
    return await idempotent(
        request, genq, caller, lambda: _create(request, genq, caller, "image_to_video"), _replay
    )


@router.post(
    "/v1/text_to_image",
    dependencies=VERSIONED,
    responses=_errors(400, 401, 402, 408, 409, 413, 429),
    openapi_extra=request_body(RunwayTextToImage, parameters=[IDEMPOTENCY_KEY]),
    summary="Start an image from text",
)
async def text_to_image(request: Request, genq: App, caller: Creator) -> Response:
    return await idempotent(
        request, genq, caller, lambda: _create(request, genq, caller, "text_to_image"), _replay
    )


@router.get(
    "/v1/tasks/{id}",
    dependencies=VERSIONED,
    responses=_errors(400, 401, 404, 429),
    summary="Read a task",
)
async def task(id: str, genq: App, caller: Caller) -> Response:
    return await read_task(genq, caller, {"id": id}, {})


async def read_task(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    job = await genq.jobs.canonical(caller.account.id, job_id_of(params["id"]))
    return json_response(render(job))


@router.delete(
    "/v1/tasks/{id}",
    status_code=204,
    dependencies=VERSIONED,
    responses=_errors(400, 401, 404, 429),
    summary="Cancel or delete a task",
)
async def delete_task(id: str, genq: App, caller: Caller) -> Response:
    account_id = caller.account.id
    job_id = job_id_of(id)
    job = await genq.jobs.canonical(account_id, job_id)  # 404 / gone
    if job["status"] not in ("succeeded", "failed", "canceled", "expired"):
        try:
            await genq.jobs.cancel(account_id, job_id)
            return Response(status_code=204)
        except Conflict:
            pass  # it ended meanwhile: delete it
    await genq.jobs.delete(account_id, job_id)
    return Response(status_code=204)


@router.get(
    "/v1/organization",
    dependencies=VERSIONED,
    responses=_errors(400, 401, 429),
    summary="Credit balance and tier",
)
async def organization(genq: App, caller: Caller) -> Response:
    account = caller.account
    plan = genq.accounts.plan(account.plan)
    limits = {
        "maxConcurrentGenerations": plan.concurrent_jobs,
        "maxDailyGenerations": plan.generation_per_min * 24 * 60,
    }
    names = sorted({m for table in MODELS.values() for m in table})
    return json_response(
        {
            "creditBalance": await genq.accounts.balance(account.id),
            "tier": {
                "maxMonthlyCreditSpend": plan.monthly_credits,
                "models": {name: limits for name in names},
            },
            "usage": {"models": {}},
        }
    )


FAST_READS = [FastRead(f"/compat/{NAME}/v1/tasks/{{id}}", read_task, error_response, check_version)]
