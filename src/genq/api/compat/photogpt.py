"""PhotoGPT face (`/compat/photogpt`, seed 002): images, upscaling, videos and trained
models. Auth is `Authorization: Bearer <key>`; `API-Version: 1` is accepted (another
version is refused with 400). Every payload is wrapped as `{"result": ...}`.

- `POST /images/generation` `{prompt, modelID?, preset?, inputImageId?, width?, height?,
  numImages? (1-4), steps?, seed?, aspectRatio?, negativePrompt?}` -> `{"result":
  {"jobId"}}`. `modelID` is a model made with `POST /models` and trained (it colours
  the pictures); `width`/`height` are rounded to what the engine takes; `aspectRatio`
  sizes the picture when they are not given; `preset` and `steps` are kept in the
  job's metadata; `inputImageId` goes to the engine only if it takes an `image`.
- `POST /images/upscaling` `{imageID, scale? (2|4)}`: `imageID` is an `images[].id` of
  a job (`job_.../<output>`), an uploaded genq file id, or a job id (its first image).
- `POST /videos/generation` `{modelID (a video model name), prompt, numVideos?,
  referenceImages?}`: `modelID` routes through `photogpt:videos/<modelID>` when the
  operator configured it, else `photogpt:videos/generation`; the demo engine makes one
  video whatever `numVideos` says.
- `GET /jobs/{id}` -> `{"result": {jobId, status, images: [{id, url}], videos: [{id,
  url}], error, modelId, createdAt}}`, status `queued|running|success|failed` (genq
  never reports `created`: a job is queued when it is accepted). `images` and `videos`
  are always lists; `error` is a string when failed, else null.

Models (inferred shapes):
- `POST /models` `{name, age?, gender?, ethnicity?, eyeColor?}` -> 201 `{"result":
  {"id", "name", "status": "created"}}`.
- `POST /models/{id}/images`: multipart/form-data, one or more image files (any field
  name, e.g. `image` or `images`) -> 201 `{"result": {"modelId", "images": [{"id"}]}}`.
- `GET /models/{id}/train` starts training on the uploaded images and answers
  `{"result": "success"}`; 409 while it is already training.
- `GET /models/{id}` -> `{"result": {"id", "name", "status" (created|training|ready|
  failed), "age", "gender", "ethnicity", "eyeColor", "error", "createdAt",
  "updatedAt"}}`.

Errors (inferred): `{"error": {"code", "message"}}` with 400 (plus `details`), 401, 402
(plus `balance`, `needed`), 404 (also an expired job), 409, 429 (with `Retry-After`).

Routing keys: `photogpt:images/generation` (demo/text2image), `photogpt:images/upscaling`
(demo/upscale), `photogpt:videos/generation` (demo/text2video), `photogpt:videos/<name>`,
`photogpt:models` (demo/train).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    engine_for,
    error_message,
    extra_input,
    face_router,
    first_error,
    fit,
    form_items,
    image_ref,
    json_response,
    outputs,
    parse,
    read_body,
    retry_headers,
    sized,
    snap_side,
)
from genq.api.compat._docs import PhotogptError, PhotogptImagesForm, errors
from genq.api.deps import App, Caller, Creator
from genq.api.front import FastRead
from genq.api.schemas import request_body
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
from genq.store.records import Model

NAME: Final = "photogpt"
STATUS: Final[dict[str, str]] = {  # genq -> PhotoGPT; expired answers 404
    "queued": "queued",
    "starting": "running",
    "running": "running",
    "succeeded": "success",
    "failed": "failed",
    "canceled": "failed",
}
ENGINES: Final[dict[str, str]] = {
    "images/generation": "demo/text2image",
    "images/upscaling": "demo/upscale",
    "videos/generation": "demo/text2video",
    "models": "demo/train",
}
API_VERSION: Final = "1"
_CODES: Final[dict[type[GenqError], str]] = {
    Unauthorized: "unauthorized",
    InsufficientCredits: "insufficient_credits",
    Expired: "not_found",
    NotFound: "not_found",
    Conflict: "conflict",
    RateLimited: "rate_limited",
    InvalidInput: "invalid_request",
}


def error_response(exc: GenqError) -> Response:
    status, message = exc.status, exc.detail
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), exc.code)
    error: dict[str, Any] = {"code": code, "message": message}
    if isinstance(exc, EngineNotFound):
        status, error["code"] = 400, "invalid_request"
    elif isinstance(exc, Expired):
        status = 404
    elif isinstance(exc, InvalidInput):
        status, error["message"] = 400, first_error(exc)
        error["details"] = exc.extra.get("errors", [])
    elif isinstance(exc, InsufficientCredits):
        error.update({k: exc.extra[k] for k in ("balance", "needed") if k in exc.extra})
    return json_response({"error": error}, status, retry_headers(exc))


def check_version(headers: Mapping[str, str]) -> None:
    version = headers.get("api-version")
    if version is not None and version.strip() != API_VERSION:
        raise InvalidInput(f"API-Version {version!r} is not supported; send API-Version: 1")


def api_version(request: Request) -> None:
    check_version(request.headers)


router = face_router(f"/compat/{NAME}", NAME, error_response)
_CREATE = (400, 401, 402, 404, 408, 409, 413, 429)


_VERSION: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": "API-Version",
            "in": "header",
            "required": False,
            "description": "another version than 1 is refused (400)",
            "schema": {"type": "string", "enum": [API_VERSION]},
        }
    ]
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(PhotogptError, *statuses)


router.dependencies.append(Depends(api_version))


def result(data: Any, status_code: int = 200) -> Response:
    return json_response({"result": data}, status_code)


def render(job: Job) -> dict[str, Any]:
    """A canonical job as PhotoGPT's job payload (seed 002), without the wrapper."""
    if job["status"] not in STATUS:
        raise Expired(f"job {job['id']} has expired")
    status = STATUS[job["status"]]
    done = status == "success"

    def records(kind: str) -> list[dict[str, str]]:
        return (
            [{"id": f"{job['id']}/{o['name']}", "url": o["url"]} for o in outputs(job, (kind,))]
            if done
            else []
        )

    error = None
    if status == "failed":
        error = error_message(job) or ("canceled" if job["status"] == "canceled" else "failed")
    return {
        "jobId": job["id"],
        "status": status,
        "images": records("image"),
        "videos": records("video"),
        "error": error,
        "modelId": job.get("model_id"),
        "createdAt": job["created_at"],
    }


def render_model(model: Model) -> dict[str, Any]:
    md = model.metadata
    return {
        "id": model.id,
        "name": model.name,
        "status": model.status,
        **{k: md.get(k) for k in ("age", "gender", "ethnicity", "eyeColor")},
        "error": model.error,
        "createdAt": iso(model.created_at),
        "updatedAt": iso(model.updated_at),
    }


# -- requests -------------------------------------------------------------------------

Seed = Annotated[int | None, Field(default=None, ge=0, le=2**32 - 1)]
Prompt = Annotated[str, Field(min_length=1, max_length=2000)]
Side = Annotated[int | None, Field(default=None, ge=1, le=8192)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageGeneration(_Body):
    prompt: Prompt
    modelID: str | None = Field(default=None, max_length=100)
    preset: str | None = Field(default=None, max_length=100)
    inputImageId: str | None = Field(default=None, max_length=2000)
    width: Side = None
    height: Side = None
    numImages: int = Field(default=1, ge=1, le=4)
    steps: int | None = Field(default=None, ge=1, le=200)
    seed: Seed = None
    aspectRatio: str | None = Field(default=None, max_length=10)
    negativePrompt: str | None = Field(default=None, max_length=2000)


class Upscaling(_Body):
    imageID: str = Field(min_length=1, max_length=2000)
    scale: Literal[2, 4] | None = None


class VideoGeneration(_Body):
    prompt: Prompt
    modelID: str | None = Field(default=None, max_length=100)
    numVideos: int = Field(default=1, ge=1, le=4)
    referenceImages: list[str] | None = Field(default=None, max_length=4)


class ModelCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    age: int | str | None = None
    gender: str | None = Field(default=None, max_length=50)
    ethnicity: str | None = Field(default=None, max_length=100)
    eyeColor: str | None = Field(default=None, max_length=50)


async def _submit(
    request: Request,
    genq: Genq,
    caller: Principal,
    endpoint: str,
    engine: str,
    candidate: dict[str, Any],
    md: dict[str, Any],
    model_id: str | None = None,
) -> Response:
    data = fit(genq, engine, candidate, extra_input(request))
    metadata = {
        "compat": NAME,
        "endpoint": endpoint,
        **{k: v for k, v in md.items() if v is not None},
    }
    job = await genq.jobs.submit(caller.account, engine, data, metadata=metadata, model_id=model_id)
    return result({"jobId": job.id})


@router.post(
    "/images/generation",
    responses=_errors(*_CREATE),
    openapi_extra={**request_body(ImageGeneration), **_VERSION},
    summary="Generate images",
)
async def images_generation(request: Request, genq: App, caller: Creator) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(ImageGeneration, fields)
    engine = engine_for(genq, f"{NAME}:images/generation", ENGINES["images/generation"])
    candidate: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negativePrompt,
        "num_images": body.numImages,
        "seed": body.seed,
        "model_id": body.modelID,
    }
    if body.width or body.height:
        w = body.width or body.height
        h = body.height or body.width
        candidate["width"] = snap_side(genq, engine, "width", w)
        candidate["height"] = snap_side(genq, engine, "height", h)
    else:
        candidate.update(sized(genq, engine, aspect=body.aspectRatio))
    if body.inputImageId:
        candidate["image"] = await image_ref(
            genq, caller.account.id, body.inputImageId, "inputImageId"
        )
    md = {"preset": body.preset, "steps": body.steps, "modelID": body.modelID}
    return await _submit(
        request, genq, caller, "images/generation", engine, candidate, md, body.modelID
    )


@router.post(
    "/images/upscaling",
    responses=_errors(*_CREATE),
    openapi_extra={**request_body(Upscaling), **_VERSION},
    summary="Upscale an image",
)
async def images_upscaling(request: Request, genq: App, caller: Creator) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(Upscaling, fields)
    engine = engine_for(genq, f"{NAME}:images/upscaling", ENGINES["images/upscaling"])
    image = await image_ref(genq, caller.account.id, body.imageID, "imageID")
    return await _submit(
        request,
        genq,
        caller,
        "images/upscaling",
        engine,
        {"image": image, "scale": body.scale},
        {"imageID": body.imageID},
    )


@router.post(
    "/videos/generation",
    responses=_errors(*_CREATE),
    openapi_extra={**request_body(VideoGeneration), **_VERSION},
    summary="Generate videos",
)
async def videos_generation(request: Request, genq: App, caller: Creator) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(VideoGeneration, fields)
    default = engine_for(genq, f"{NAME}:videos/generation", ENGINES["videos/generation"])
    engine = engine_for(genq, f"{NAME}:videos/{body.modelID}", default) if body.modelID else default
    candidate: dict[str, Any] = {"prompt": body.prompt, "num_videos": body.numVideos}
    refs = [
        await image_ref(genq, caller.account.id, r, "referenceImages")
        for r in body.referenceImages or []
    ]
    if refs:
        candidate["image"], candidate["images"] = refs[0], refs
    md = {"modelID": body.modelID, "numVideos": body.numVideos}
    return await _submit(request, genq, caller, "videos/generation", engine, candidate, md)


async def read_job(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    return result(render(await genq.jobs.canonical(caller.account.id, params["job_id"])))


@router.get(
    "/jobs/{job_id}",
    responses=_errors(400, 401, 404, 429),
    openapi_extra=_VERSION,
    summary="A generation job",
)
async def get_job(job_id: str, genq: App, caller: Caller) -> Response:
    return await read_job(genq, caller, {"job_id": job_id}, {})


# -- models ---------------------------------------------------------------------------


@router.post(
    "/models",
    status_code=201,
    responses=_errors(400, 401, 408, 409, 413, 429),
    openapi_extra={**request_body(ModelCreate), **_VERSION},
    summary="Create a model to train",
)
async def create_model(request: Request, genq: App, caller: Caller) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(ModelCreate, fields)
    engine = engine_for(genq, f"{NAME}:models", ENGINES["models"])
    md = {"compat": NAME, **body.model_dump(exclude={"name"}, exclude_none=True)}
    model = await genq.models.create(caller.account.id, name=body.name, engine=engine, metadata=md)
    return result({"id": model.id, "name": model.name, "status": model.status}, 201)


@router.post(
    "/models/{model_id}/images",
    status_code=201,
    responses=_errors(400, 401, 404, 408, 413, 429),
    openapi_extra={**request_body({"multipart/form-data": PhotogptImagesForm}), **_VERSION},
    summary="Upload training images to a model",
)
async def upload_images(model_id: str, request: Request, genq: App, caller: Caller) -> Response:
    await genq.models.get(caller.account.id, model_id)
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise InvalidInput("send the images as multipart/form-data")
    uploads = [v for _, v in await form_items(request) if not isinstance(v, str)]
    if not uploads:
        raise InvalidInput("no image file in the form")
    saved = []
    for upload in uploads:
        record = await genq.files.save(
            caller.account.id,
            upload.file,
            filename=upload.filename,
            content_type=upload.content_type,
            model_id=model_id,
            purpose="training",
        )
        saved.append({"id": record.id})
    return result({"modelId": model_id, "images": saved}, 201)


@router.get(
    "/models/{model_id}/train",
    responses=_errors(400, 401, 402, 404, 409, 429),
    openapi_extra=_VERSION,
    summary="Start training a model",
)
async def train_model(model_id: str, request: Request, genq: App, caller: Creator) -> Response:
    await genq.models.train(caller.account, model_id, extra_input(request))
    return result("success")


@router.get(
    "/models/{model_id}",
    responses=_errors(400, 401, 404, 429),
    openapi_extra=_VERSION,
    summary="A model and its training status",
)
async def get_model(model_id: str, genq: App, caller: Caller) -> Response:
    return result(render_model(await genq.models.get(caller.account.id, model_id)))


FAST_READS = [FastRead(f"/compat/{NAME}/jobs/{{job_id}}", read_job, error_response, check_version)]
