"""OpenAI Images face (`/compat/openai/v1`): `OpenAI(base_url=BASE + "/compat/openai/v1",
api_key=KEY)` and `client.images.generate/edit/create_variation` work unchanged.

- `POST /images/generations` (JSON) `{prompt, model?, n? (1-10), size? ("auto" or
  "WxH"), quality?, response_format? (url|b64_json), output_format? (png|jpeg|webp),
  style?, background?, moderation?, user?}` -> 200 `{"created", "data": [{"url"} |
  {"b64_json"}], "size", "output_format", "quality"?}`, answered when the genq job ends
  (the API is synchronous). `n` is the engine's `num_images`, `size` its width/height
  (rounded to what the engine takes), `output_format` its file format; `quality`,
  `style`, `background`, `moderation` and `user` are kept in the job's metadata.
- `POST /images/edits` (multipart) `{image (or image[]), prompt, mask?, model?, n?,
  size?, response_format?, ...}` and `POST /images/variations` (multipart) `{image,
  model?, n?, size?, response_format?}`: the uploads become genq input files and go to
  an engine that takes an `image` (and `mask` if it takes one).
- `GET /models`, `GET /models/{model}`: the model names this face routes (OpenAI's
  model object: `{id, object: "model", created, owned_by}`).

Every answer carries `x-request-id` and `X-Genq-Job-Id` (the job, also on `/v1/jobs`).
Errors are OpenAI's `{"error": {"message", "type", "param", "code"}}`: 400
`invalid_request_error` (with `param`; `content_policy_violation` for a moderated
job), 401 `invalid_api_key`, 404 `model_not_found`, 422 (an Idempotency-Key reused
with another body), 429 `rate_limit_exceeded` (with `Retry-After`), 500 `server_error`
(a failed job; `x-should-retry` says whether the failure was transient), 504 when the
job did not end in time.

Inferred, as OpenAI's API does not say or genq differs:
- Model names route by `openai:model:<name>` in `settings.compat_engines` (defaults in
  `MODELS`: OpenAI's image model names -> `demo/text2image`); a genq engine name (e.g.
  `demo/text2image`) is a model too. Without `model`, `DEFAULT_MODEL`. Edits and
  variations use the named model when its engine takes an `image`, else the routes
  `openai:images/edits` and `openai:images/variations` (default `demo/upscale`).
- `response_format` defaults to `b64_json` for GPT image models (as OpenAI answers
  them) and to `url` otherwise; the `url` is genq's public output URL.
- Out of credits is OpenAI's 429 `insufficient_quota` (with `x-should-retry: false`),
  not genq's 402: that is how an OpenAI client sees an exhausted balance.
- The wait is capped (`MAX_WAIT_S`, under the SDK's 600 s default timeout); the genq
  extension header `X-Genq-Wait: N` lowers it. A job not ended by then is canceled
  (refunded) and the answer is 504 `timeout` with `x-should-retry: false`.
- `Idempotency-Key` (which the SDK sends when given `extra_headers` or
  `idempotency_key`) is honoured as on `POST /v1/jobs`: a repeat waits for and answers
  with the first job. There are no reads by id in this API, so nothing else can name
  another account's job. OpenAI's image streaming (`stream=true`) and webhooks are not
  offered (400 for `stream`).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    engine_fields,
    engine_for,
    error_code,
    error_message,
    extra_input,
    face_router,
    fit,
    idempotent,
    invalid,
    json_response,
    outputs,
    parse,
    read_body,
    retry_headers,
    snap_side,
)
from genq.api.compat._docs import OpenaiError, errors, form_of
from genq.api.deps import App, Caller, Creator
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
    TooManyStreams,
    Unauthorized,
)

NAME: Final = "openai"
BASE_SEGMENTS: Final = ("v1",)
DEFAULT_MODEL: Final = "gpt-image-1"
MODELS: Final[dict[str, str]] = {  # OpenAI's image models -> default engine
    name: "demo/text2image"
    for name in (
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "gpt-image-2.5-sunburst",
        "gpt-image-2.5-flare",
        "gpt-image-2.6-sunburst",
        "gpt-image-2.6-flare",
        "chatgpt-image-latest",
        "dall-e-2",
        "dall-e-3",
    )
}
ENGINES: Final[dict[str, str]] = {
    "images/edits": "demo/upscale",
    "images/variations": "demo/upscale",
}
MAX_WAIT_S: Final = 570.0  # under the SDK's default timeout (600 s)
WAIT_HEADER: Final = "x-genq-wait"
TERMINAL: Final = frozenset(("succeeded", "failed", "canceled", "expired"))
# engine input field -> the OpenAI parameter it came from
PARAMS: Final[dict[str, str]] = {
    "num_images": "n",
    "width": "size",
    "height": "size",
    "output_format": "output_format",
    "prompt": "prompt",
    "image": "image",
    "images": "image",
    "mask": "mask",
}
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


class Moderated(GenqError):
    """Your request was rejected by the safety system."""

    status, code, title = 400, "content_policy_violation", "Moderated"


class ImageFailed(GenqError):
    """The image could not be made."""

    status, code, title = 500, "server_error", "Failed"


class NotReady(GenqError):
    """The image was not ready in time."""

    status, code, title = 504, "timeout", "Timeout"


def _param(field: str) -> str | None:
    """A field path of an InvalidInput as the OpenAI parameter: `body.n` -> `n`,
    `input.num_images` -> `n`, `input.<other>` -> `X-Genq-Input.<other>`."""
    head, _, rest = field.partition(".")
    name = rest.split(".")[0] if rest else head
    if head == "input":
        return PARAMS.get(name, f"X-Genq-Input.{name}")
    return name or None


def error_response(exc: GenqError) -> Response:
    status, type_, code, param = exc.status, "invalid_request_error", None, None
    message = exc.detail
    headers = retry_headers(exc)
    if isinstance(exc, Unauthorized):
        code = "invalid_api_key"
        message = "Incorrect API key provided. You can make a key with `genq keys create`."
    elif isinstance(exc, InsufficientCredits):
        status, type_, code = 429, "insufficient_quota", "insufficient_quota"
        message = f"You exceeded your current quota: {exc.detail}"
        headers["x-should-retry"] = "false"
    elif isinstance(exc, RateLimited | TooManyStreams):
        type_, code = "requests", "rate_limit_exceeded"
    elif isinstance(exc, EngineNotFound):
        code = "model_not_found"
    elif isinstance(exc, NotFound | Expired):
        status = 404
    elif isinstance(exc, InvalidInput):
        status = 400
        found = exc.extra.get("errors") or []
        if found:
            param = _param(str(found[0].get("field", "")))
            message = f"Invalid '{param}': {found[0].get('message', '')}"
    elif isinstance(exc, Moderated):
        type_, code = "image_generation_user_error", "content_policy_violation"
    elif isinstance(exc, ImageFailed):
        type_ = "server_error"
        retry = bool(exc.extra.get("retryable"))
        headers["x-should-retry"] = "true" if retry else "false"
    elif isinstance(exc, NotReady):
        type_, code = "server_error", "timeout"
        headers["x-should-retry"] = "false"
    elif isinstance(exc, Conflict):
        code = "conflict"
    elif status >= 500:
        type_ = "server_error"
    error = {"message": message, "type": type_, "param": param, "code": code}
    headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex}")
    return json_response({"error": error}, status, headers)


router = face_router(f"/compat/{NAME}", NAME, error_response)
_CREATE = (400, 401, 404, 408, 413, 429)


_MORE: Final[dict[int, str]] = {
    422: "Idempotency-Key reused with another request",
    500: "The job failed (x-should-retry says whether to try again)",
    504: "The job did not end in time (it was canceled)",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out = errors(OpenaiError, *(s for s in statuses if s not in _MORE))
    out.update({s: {"model": OpenaiError, "description": _MORE[s]} for s in statuses if s in _MORE})
    return out


def models(genq: Genq) -> dict[str, str]:
    """Model name -> engine: the defaults, then the operator's `openai:model:` routes."""
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


def engine_of(genq: Genq, model: str) -> str:
    """The engine a model name routes to (a genq engine name is a model too)."""
    engine = models(genq).get(model)
    if engine is None and model in genq.jobs.engines:
        engine = model
    if engine is None or engine not in genq.jobs.engines:
        raise EngineNotFound(f"The model '{model}' does not exist or you do not have access to it.")
    return engine


def default_format(model: str) -> str:
    return "b64_json" if model.startswith(("gpt-image", "chatgpt-image")) else "url"


# -- requests -------------------------------------------------------------------------


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, max_length=200)
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = Field(default=None, max_length=20)
    response_format: Literal["url", "b64_json"] | None = None
    user: str | None = Field(default=None, max_length=256)


class OpenaiImagesGenerate(_Common):
    prompt: str = Field(min_length=1, max_length=32000)
    quality: str | None = Field(default=None, max_length=20)
    output_format: Literal["png", "jpeg", "webp"] | None = None
    style: str | None = Field(default=None, max_length=20)
    background: str | None = Field(default=None, max_length=20)
    moderation: str | None = Field(default=None, max_length=20)
    stream: bool | None = None


class OpenaiImagesEdit(_Common):
    prompt: str = Field(min_length=1, max_length=32000)
    quality: str | None = Field(default=None, max_length=20)
    output_format: Literal["png", "jpeg", "webp"] | None = None
    background: str | None = Field(default=None, max_length=20)
    stream: bool | None = None


class OpenaiImagesVariation(_Common):
    pass


def _size(genq: Genq, engine: str, size: str | None) -> dict[str, int]:
    if size is None or size == "auto":
        return {}
    found = _SIZE.match(size)
    if found is None or not all(int(g) > 0 for g in found.groups()):
        raise invalid("size", f"must be 'auto' or WIDTHxHEIGHT, like 1024x1024; got {size!r}")
    w, h = (int(g) for g in found.groups())
    sides = {
        "width": snap_side(genq, engine, "width", w),
        "height": snap_side(genq, engine, "height", h),
    }
    return {k: v for k, v in sides.items() if v is not None and k in engine_fields(genq, engine)}


def _wait_s(request: Request) -> float:
    raw = request.headers.get(WAIT_HEADER)
    if raw is None:
        return MAX_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_WAIT_S:
        raise invalid("X-Genq-Wait", f"must be a number of seconds in (0, {MAX_WAIT_S:g}]")
    return value


def _candidate(genq: Genq, engine: str, body: _Common) -> dict[str, Any]:
    fields = engine_fields(genq, engine)
    if (body.n or 1) > 1 and "num_images" not in fields:
        raise invalid("n", "this model makes one image per request")
    candidate: dict[str, Any] = {"num_images": body.n, **_size(genq, engine, body.size)}
    fmt = getattr(body, "output_format", None)
    if fmt is not None:
        candidate["output_format"] = fmt
    return candidate


def _metadata(endpoint: str, model: str, fmt: str, body: _Common) -> dict[str, Any]:
    kept = body.model_dump(
        include={"quality", "style", "background", "moderation", "user", "size"},
        exclude_none=True,
    )
    return {"compat": NAME, "endpoint": endpoint, "model": model, "response_format": fmt, **kept}


async def _submit(
    request: Request,
    genq: Genq,
    caller: Principal,
    engine: str,
    candidate: dict[str, Any],
    md: dict[str, Any],
) -> Response:
    data = fit(genq, engine, candidate, extra_input(request))
    wait_s = _wait_s(request)
    job = await genq.jobs.submit(caller.account, engine, data, metadata=md)
    return await _answer(genq, caller, job.id, wait_s)


async def _ended(genq: Genq, account_id: str, job_id: str, wait_s: float) -> Job:
    """The job once it ended, or as it is after `wait_s`."""
    deadline = time.monotonic() + wait_s
    item = await genq.jobs.body(account_id, job_id)
    while item.status not in TERMINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        item = await genq.jobs.wait_body(
            account_id, job_id, seen=None, after_seq=item.seq, timeout=min(left, 30.0)
        )
    job: Job = orjson.loads(item.body)
    return job


async def _answer(genq: Genq, caller: Principal, job_id: str, wait_s: float) -> Response:
    account_id = caller.account.id
    job = await _ended(genq, account_id, job_id, wait_s)
    status = job["status"]
    head = {"x-request-id": f"req_{uuid.uuid4().hex}", "X-Genq-Job-Id": job_id}
    if status == "succeeded":
        return json_response(await render(genq, job), 200, head)
    if status == "failed":
        message = error_message(job) or "the image could not be made"
        if error_code(job) == "moderated":
            raise Moderated(message, headers=head)
        retryable = bool((job.get("error") or {}).get("retryable"))
        raise ImageFailed(f"{message} (job {job_id})", retryable=retryable, headers=head)
    if status in ("canceled", "expired"):
        raise ImageFailed(f"job {job_id} was {status}", headers=head)
    try:
        await genq.jobs.cancel(account_id, job_id)
    except Conflict:  # it ended meanwhile
        return await _answer(genq, caller, job_id, 1.0)
    raise NotReady(
        f"the image was not ready within {wait_s:g} s; job {job_id} was canceled (refunded)",
        headers=head,
    )


def _read_output(genq: Genq, url: str) -> bytes:
    key = genq.storage.public_key(url.split("/files/", 1)[-1])
    data = genq.storage.read(key) if key is not None else None
    if data is None:
        raise ImageFailed(f"output {url} is gone")
    return data


async def render(genq: Genq, job: Job) -> dict[str, Any]:
    """A succeeded job as OpenAI's ImagesResponse."""
    md: dict[str, Any] = job.get("metadata") or {}
    fmt = str(md.get("response_format") or "url")
    images = outputs(job, ("image",)) or list(job.get("outputs") or [])
    data: list[dict[str, Any]] = []
    for o in images:
        if fmt == "b64_json":
            raw = await asyncio.to_thread(_read_output, genq, str(o["url"]))
            data.append({"b64_json": base64.b64encode(raw).decode()})
        else:
            data.append({"url": o["url"]})
    ended = job.get("completed_at") or job["created_at"]
    body: dict[str, Any] = {
        "created": int(datetime.fromisoformat(ended).timestamp()),
        "data": data,
    }
    if images:
        first = images[0]
        if first.get("width") and first.get("height"):
            body["size"] = f"{first['width']}x{first['height']}"
        ctype = str(first.get("content_type") or "")
        if ctype.startswith("image/"):
            body["output_format"] = ctype.removeprefix("image/")
    if md.get("quality") in ("low", "medium", "high"):
        body["quality"] = md["quality"]
    return body


def _once(
    request: Request, genq: Genq, caller: Principal, create: Callable[[], Awaitable[Response]]
) -> Awaitable[Response]:
    """`create` under the request's Idempotency-Key; a repeat whose first answer was
    lost waits for the job and answers with it."""
    wait_s = _wait_s(request)

    async def replay(job: Job) -> Response:
        return await _answer(genq, caller, job["id"], wait_s)

    return idempotent(request, genq, caller, create, replay)


@router.post(
    "/images/generations",
    responses=_errors(*_CREATE, 422, 500, 504),
    openapi_extra=request_body(OpenaiImagesGenerate, parameters=[IDEMPOTENCY_KEY]),
    summary="Create images from a prompt",
)
async def generations(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _generations(request, genq, caller))


async def _generations(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(OpenaiImagesGenerate, fields)
    if body.stream:
        raise invalid("stream", "streaming is not offered by this server; send stream=false")
    model = body.model or DEFAULT_MODEL
    engine = engine_of(genq, model)
    fmt = body.response_format or default_format(model)
    candidate = {"prompt": body.prompt, **_candidate(genq, engine, body)}
    md = _metadata("images/generations", model, fmt, body)
    return await _submit(request, genq, caller, engine, candidate, md)


def _image_engine(genq: Genq, endpoint: str, model: str | None) -> str:
    """The named model's engine when it takes an image, else the endpoint's route."""
    if model is not None:
        engine = engine_of(genq, model)
        if "image" in engine_fields(genq, engine):
            return engine
    return engine_for(genq, f"{NAME}:{endpoint}", ENGINES[endpoint])


async def _upload(genq: Genq, caller: Principal, upload: UploadFile, purpose: str) -> str:
    record = await genq.files.save(
        caller.account.id,
        upload.file,
        filename=upload.filename,
        content_type=upload.content_type,
        purpose=purpose,
    )
    return record.id


def _file(files: dict[str, UploadFile], name: str, required: bool) -> UploadFile | None:
    found = files.get(name) or files.get(f"{name}[]")
    if found is None and required:
        raise invalid(name, "an image file is required (multipart/form-data)", "missing")
    return found


async def _with_image(
    request: Request, genq: Genq, caller: Principal, endpoint: str, model: type[_Common]
) -> Response:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise invalid("image", "send the request as multipart/form-data", "content_type")
    fields, files = await read_body(request, genq.settings.max_json_bytes)
    body = parse(model, fields)
    if getattr(body, "stream", None):
        raise invalid("stream", "streaming is not offered by this server; send stream=false")
    engine = _image_engine(genq, endpoint, body.model)
    image = _file(files, "image", True)
    mask = _file(files, "mask", False)
    assert image is not None
    candidate = _candidate(genq, engine, body)
    candidate["prompt"] = getattr(body, "prompt", None)
    candidate["image"] = await _upload(genq, caller, image, "openai-image")
    candidate["images"] = [candidate["image"]]
    if mask is not None and "mask" in engine_fields(genq, engine):
        candidate["mask"] = await _upload(genq, caller, mask, "openai-mask")
    model_name = body.model or DEFAULT_MODEL
    fmt = body.response_format or default_format(model_name)
    md = _metadata(endpoint, model_name, fmt, body)
    return await _submit(request, genq, caller, engine, candidate, md)


@router.post(
    "/images/edits",
    responses=_errors(*_CREATE, 422, 500, 504),
    openapi_extra=request_body(
        {"multipart/form-data": form_of(OpenaiImagesEdit, "image")}, parameters=[IDEMPOTENCY_KEY]
    ),
    summary="Edit an image",
)
async def edits(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(
        request,
        genq,
        caller,
        lambda: _with_image(request, genq, caller, "images/edits", OpenaiImagesEdit),
    )


@router.post(
    "/images/variations",
    responses=_errors(*_CREATE, 422, 500, 504),
    openapi_extra=request_body(
        {"multipart/form-data": form_of(OpenaiImagesVariation, "image")},
        parameters=[IDEMPOTENCY_KEY],
    ),
    summary="Make variations of an image",
)
async def variations(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(
        request,
        genq,
        caller,
        lambda: _with_image(request, genq, caller, "images/variations", OpenaiImagesVariation),
    )


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "genq"}


@router.get("/models", responses=_errors(401, 429), summary="The image models")
async def list_models(genq: App, caller: Caller) -> Response:
    names = sorted(n for n, e in models(genq).items() if e in genq.jobs.engines)
    return json_response({"object": "list", "data": [_model(n) for n in names]})


@router.get("/models/{model:path}", responses=_errors(401, 404, 429), summary="One model")
async def get_model(model: str, genq: App, caller: Caller) -> Response:
    engine_of(genq, model)
    return json_response(_model(model))
