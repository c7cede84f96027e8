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
(plus `balance`, `needed`), 404 (also an expired job), 405, 409, 429 (with
`Retry-After`). A 400 names PhotoGPT's parameters (`numImages`, `modelID`, ...) in
`message` (`"numImages must be less than or equal to 4"`) and in `details`
(`[{"field", "message"}]`), whichever check refused it (the face's or the engine's);
an engine option given in `X-Genq-Input` is named `X-Genq-Input.<name>`.

Routing keys: `photogpt:images/generation` (demo/text2image), `photogpt:images/upscaling`
(demo/upscale), `photogpt:videos/generation` (demo/text2video), `photogpt:videos/<name>`,
`photogpt:models` (demo/train).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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
    fit,
    form_items,
    idempotent,
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
# engine input field -> the parameter of the endpoint it came from
PARAMS: Final[dict[str, dict[str, str]]] = {
    "images/generation": {
        "prompt": "prompt",
        "negative_prompt": "negativePrompt",
        "num_images": "numImages",
        "seed": "seed",
        "model_id": "modelID",
        "width": "width",
        "height": "height",
        "image": "inputImageId",
    },
    "images/upscaling": {"image": "imageID", "scale": "scale"},
    "models/train": {"images": "images"},  # those uploaded to the model
    "videos/generation": {
        "prompt": "prompt",
        "num_videos": "numVideos",
        "image": "referenceImages",
        "images": "referenceImages",
    },
}
RENAMED: Final = {"aspect_ratio": "aspectRatio"}  # the shared helpers' names
MISSHAPEN: Final = {"modelID": "is not the id of a model (made with POST /models)"}
_WORDING: Final = (  # pydantic's phrasing -> PhotoGPT's
    ("Input should be ", "must be "),
    ("String should have ", "must have "),
    ("List should have ", "must have "),
    ("Value should have ", "must have "),
    ("Field required", "is required"),
    ("Extra inputs are not permitted", "is not a parameter of this engine"),
)
_CODES: Final[dict[type[GenqError], str]] = {
    Unauthorized: "unauthorized",
    InsufficientCredits: "insufficient_credits",
    Expired: "not_found",
    NotFound: "not_found",
    Conflict: "conflict",
    RateLimited: "rate_limited",
    InvalidInput: "invalid_request",
}


def _param(field: str, params: Mapping[str, str]) -> str:
    """A field path of an InvalidInput as PhotoGPT's parameter: `body.numImages` ->
    `numImages`, `input.num_images` -> the parameter `params` names for it (else
    `X-Genq-Input.num_images`), list positions as `[i]`, union branches dropped."""
    head, *rest = field.split(".")
    if head in ("body", "input") and rest:
        source, (head, *rest) = head, rest
        if source == "input":
            head = params.get(head) or f"X-Genq-Input.{head}"
    head = RENAMED.get(head, head)
    return head + "".join(f"[{p}]" for p in rest if p.isdigit())


def _message(param: str, type_: str, message: str) -> str:
    if type_ == "string_pattern_mismatch":
        return MISSHAPEN.get(param, "is not in the expected format")
    message = message.replace(" after validation,", ",")
    for theirs, ours in _WORDING:
        if message.startswith(theirs):
            return ours + message[len(theirs) :]
    return message


class Plain(InvalidInput):
    """An InvalidInput in PhotoGPT's terms already."""


def in_our_terms(exc: InvalidInput, params: Mapping[str, str] | None = None) -> InvalidInput:
    """The InvalidInput with its fields named as PhotoGPT's parameters and its messages
    in plain words (no genq field paths, no patterns); one detail per parameter."""
    details: dict[str, list[str]] = {}
    for e in exc.extra.get("errors") or []:
        param = _param(str(e.get("field", "")), params or {})
        said = _message(param, str(e.get("type", "")), str(e.get("message", "")))
        details.setdefault(param, [])
        if said not in details[param]:
            details[param].append(said)
    if not details or isinstance(exc, Plain):
        return exc
    errors = [
        {
            "field": p,
            "message": " or ".join([said[0], *(m.removeprefix("must be ") for m in said[1:])]),
        }
        for p, said in details.items()
    ]
    return Plain(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)


def error_response(exc: GenqError) -> Response:
    status, message = exc.status, exc.detail
    code = next((c for t, c in _CODES.items() if isinstance(exc, t)), exc.code)
    error: dict[str, Any] = {"code": code, "message": message}
    if isinstance(exc, EngineNotFound):
        status, error["code"] = 400, "invalid_request"
    elif isinstance(exc, Expired):
        status = 404
    elif isinstance(exc, InvalidInput):
        if not isinstance(exc, Plain):
            exc = in_our_terms(exc)
        status, error["message"] = 400, exc.detail
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


_VERSION_HEADER: Final[dict[str, Any]] = {
    "name": "API-Version",
    "in": "header",
    "required": False,
    "description": "another version than 1 is refused (400)",
    "schema": {"type": "string", "enum": [API_VERSION]},
}
_VERSION: Final = {"parameters": [_VERSION_HEADER]}


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
    try:
        job = await genq.jobs.submit(
            caller.account, engine, data, metadata=metadata, model_id=model_id
        )
    except InvalidInput as exc:
        raise in_our_terms(exc, PARAMS[endpoint]) from exc
    return result({"jobId": job.id})


def _once(
    request: Request, genq: Genq, caller: Principal, create: Callable[[], Awaitable[Response]]
) -> Awaitable[Response]:
    """`create` under the request's Idempotency-Key; a job whose first answer was lost
    is answered as a create answers."""

    async def replay(job: Job) -> Response:
        return result({"jobId": job["id"]})

    return idempotent(request, genq, caller, create, replay)


@router.post(
    "/images/generation",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(ImageGeneration, parameters=[IDEMPOTENCY_KEY, _VERSION_HEADER]),
    summary="Generate images",
)
async def images_generation(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _images_generation(request, genq, caller))


async def _images_generation(request: Request, genq: Genq, caller: Principal) -> Response:
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
    openapi_extra=request_body(Upscaling, parameters=[IDEMPOTENCY_KEY, _VERSION_HEADER]),
    summary="Upscale an image",
)
async def images_upscaling(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _images_upscaling(request, genq, caller))


async def _images_upscaling(request: Request, genq: Genq, caller: Principal) -> Response:
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
    openapi_extra=request_body(VideoGeneration, parameters=[IDEMPOTENCY_KEY, _VERSION_HEADER]),
    summary="Generate videos",
)
async def videos_generation(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _videos_generation(request, genq, caller))


async def _videos_generation(request: Request, genq: Genq, caller: Principal) -> Response:
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
    openapi_extra=request_body(ModelCreate, parameters=[IDEMPOTENCY_KEY, _VERSION_HEADER]),
    summary="Create a model to train",
)
async def create_model(request: Request, genq: App, caller: Caller) -> Response:
    return await idempotent(request, genq, caller, lambda: _create_model(request, genq, caller))


async def _create_model(request: Request, genq: Genq, caller: Principal) -> Response:
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
    openapi_extra=request_body(
        {"multipart/form-data": PhotogptImagesForm}, parameters=[_VERSION_HEADER]
    ),
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
    try:
        await genq.models.train(caller.account, model_id, extra_input(request))
    except InvalidInput as exc:
        raise in_our_terms(exc, PARAMS["models/train"]) from exc
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
