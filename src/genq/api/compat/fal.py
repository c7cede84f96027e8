"""fal face (`/compat/fal`): fal's queue API, as the `fal-client` SDK speaks it.

The SDK builds its URLs from two hosts read once, when `fal_client` is imported:
`https://{FAL_QUEUE_RUN_HOST}/<app>` (queue) and `https://{FAL_RUN_HOST}/<app>` (a
blocking run). It speaks only https, so genq serves TLS (`genq serve --ssl-certfile
--ssl-keyfile`) and the SDK trusts its CA through `SSL_CERT_FILE` (httpx's default
`trust_env`; a certificate from a public CA needs none). An unchanged app points both
hosts at genq before importing the SDK:

    FAL_KEY=<genq key>
    FAL_QUEUE_RUN_HOST=genq.example:8000/compat/fal
    FAL_RUN_HOST=genq.example:8000/compat/fal/run

- `POST /{app}` (queue submit; `?fal_webhook=<url>`) -> `{request_id,
  gateway_request_id, status: IN_QUEUE, queue_position, response_url, status_url,
  cancel_url}`; the URLs are absolute, on the request's own scheme and host, under
  the app's `owner/alias` as fal's are, and the SDK follows them.
- `GET /{app}/requests/{id}/status[?logs=1]`: `IN_QUEUE` with `queue_position`,
  `IN_PROGRESS`, `COMPLETED` (with `metrics.inference_time`; a failed or canceled
  request is `COMPLETED` with `error` and `error_type`); `logs` is a list when asked
  for (the job's log and progress messages as `{message, level, source, timestamp}`),
  else null.
  A read of an unfinished request answers at its next change or after 1 s (a
  short long-poll): the SDK polls every 0.1 s, which would otherwise spend the
  plan's status rate limit in a minute.
- `GET /{app}/requests/{id}/status/stream[?logs=1]`: the same objects as
  server-sent events (`data: {...}`), one per change, ending after `COMPLETED`.
- `GET /{app}/requests/{id}`: the result in the app's shape: images
  `{images: [{url, width, height, content_type}], seed, prompt, has_nsfw_concepts,
  timings}`, videos `{video: {url, content_type, file_name, file_size}, seed}`. Before
  the end: 400 `Request is still in progress`; a failed request answers 422 (bad
  input, moderated) or 500 with `{detail, error_type}`, a canceled one 400.
- `PUT /{app}/requests/{id}/cancel`: 202 `{"status": "CANCELLATION_REQUESTED"}`,
  400 `{"status": "ALREADY_COMPLETED"}`, 404 `{"status": "NOT_FOUND"}`.
- `POST /run/{app}`: the blocking run (`fal_client.run`): submit, wait for the end,
  answer the result as above.
- `GET /.well-known/jwks.json`: the ED25519 public key webhooks are signed with.

A request id is a UUID holding the genq job's ULID (lossless: `job_` plus that ULID is
the job on `/v1` and the dashboard); every read takes either spelling.

Webhooks (`fal_webhook`): when the request ends, `{request_id, gateway_request_id,
status: OK|ERROR, payload, error?}` (payload: the result, or `{detail}`), signed as fal
documents: ED25519 over `request_id\\nuser_id\\ntimestamp\\nsha256(body) hex` in the
headers `X-Fal-Webhook-Request-Id`, `-User-Id` (the genq account id), `-Timestamp`
(Unix seconds) and `-Signature` (hex); the key is derived from the server secret.

Auth: `Authorization: Key <genq key>` (what the SDK sends) or `Bearer`. Idempotency:
`Idempotency-Key` as on `/v1` (the SDK sends no header of its own). Errors are
FastAPI's `{"detail": ...}` as fal answers them (422's `detail` is the list of field
errors), with `error_type`: 401, 402, 404, 410 (expired), 422, 429 (`Retry-After`).

Routing: `fal:app:<app id>` in `settings.compat_engines` serves (or adds) an app;
the defaults are in `APPS`; a genq engine name (`demo/text2image`) is an app as itself.

Inferred: the result shapes of genq's engines as fal apps; `image_size` presets as
pixel sizes; the 400/422/500 answers of a failed or canceled request's result; the
status stream's event framing; the JWKS path (fal publishes its keys elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response, StreamingResponse

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    by_name,
    error_code,
    error_message,
    extra_input,
    face_router,
    fit,
    idempotent,
    invalid,
    job_of_uuid,
    job_uuid,
    json_response,
    outputs,
    parse,
    read_body,
    retry_headers,
    snap_side,
)
from genq.api.compat._docs import FalError, errors
from genq.api.deps import App, app_genq
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
from genq.ratelimits import GENERATE, STATUS

NAME: Final = "fal"
PREFIX: Final = f"/compat/{NAME}"
APPS: Final[dict[str, str]] = {  # fal app id -> default engine
    "fal-ai/flux/dev": "demo/text2image",
    "fal-ai/flux/schnell": "demo/text2image",
    "fal-ai/flux-pro": "demo/text2image",
    "fal-ai/fast-sdxl": "demo/text2image",
    "fal-ai/recraft-v3": "demo/text2image",
    "fal-ai/kling-video/v1/standard/text-to-video": "demo/text2video",
    "fal-ai/minimax/video-01": "demo/text2video",
    "fal-ai/ltx-video": "demo/text2video",
}
IMAGE_SIZES: Final[dict[str, tuple[int, int]]] = {  # fal's presets, width x height
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
QUEUED: Final = ("queued",)
RUNNING: Final = ("starting", "running")
RUN_WAIT_S: Final = 600.0  # the blocking run waits this long for the end
STATUS_HOLD_S: Final = 1.0  # an unfinished request's status read waits this long for news
STREAM_IDLE_S: Final = 15.0  # a status stream repeats the status at least this often
USER_ERRORS: Final = ("invalid_input", "moderated")
_ERRORS: Final[tuple[tuple[type[GenqError], int, str], ...]] = (
    (Unauthorized, 401, "unauthorized"),
    (InsufficientCredits, 402, "insufficient_credits"),
    (EngineNotFound, 404, "app_not_found"),
    (Expired, 410, "request_expired"),
    (NotFound, 404, "not_found"),
    (InvalidInput, 422, "validation_error"),
    (Conflict, 409, "conflict"),
    (RateLimited, 429, "rate_limited"),
)


class StillRunning(GenqError):
    """Request is still in progress."""

    status, code, title = 400, "request_in_progress", "Request is still in progress"


def error_response(exc: GenqError) -> Response:
    status, kind = next(((s, k) for t, s, k in _ERRORS if isinstance(exc, t)), (exc.status, None))
    body: dict[str, Any] = {"detail": exc.detail, "error_type": kind or exc.code}
    if isinstance(exc, InvalidInput) and exc.extra.get("errors"):
        body["detail"] = [
            {
                # the engine's `input.x` is the app's `body.x`, as fal (FastAPI) says
                "loc": [
                    "body" if i == 0 and p == "input" else p
                    for i, p in enumerate(q for q in str(e.get("field", "")).split(".") if q)
                ],
                "msg": e.get("message", ""),
                "type": e.get("type", "value_error"),
            }
            for e in exc.extra["errors"]
        ]
    elif isinstance(exc, Unauthorized):
        body["detail"] = "Authentication is required: a valid key in 'Authorization: Key ...'."
    return json_response(
        body, status, {**retry_headers(exc), "X-Fal-Error-Type": body["error_type"]}
    )


class AppConvertor(Convertor[str]):
    """An app id in a path: segments, the first not starting with a dot and none after
    it named `requests`; so a request's URLs and the JWKS are never taken for an app,
    and take no POST (405, as any path that does not take the method)."""

    regex = r"[A-Za-z0-9][^/]*(?:/(?!requests(?:/|$))[^/]+)*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fal_app", AppConvertor())
router = face_router(PREFIX, NAME, error_response)


NO_BODY: Final[dict[str, Any]] = {  # the SDK's PUT carries none; anything sent is ignored
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_MORE: Final[dict[int, str]] = {
    422: "Invalid input (FastAPI's field errors in `detail`), or a request that failed so",
    500: "The request failed",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    found = errors(FalError, *(s for s in statuses if s not in _MORE))
    found.update({s: {"model": FalError, "description": _MORE[s]} for s in statuses if s in _MORE})
    return found


# -- auth: fal's `Key` scheme ---------------------------------------------------------


def fal_key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("key", "bearer") else None


async def _authorize(request: Request, kind: str) -> Principal:
    """As `genq.api.deps.authorize`, reading the key from `Key` or `Bearer`."""
    genq = app_genq(request)
    p: Principal = await genq.accounts.authenticate(fal_key(request))
    request.state.principal = p
    window = await genq.limiter.hit(p.account.id, p.account.plan, kind)
    request.state.ratelimit = window.headers()
    return p


async def _reader(request: Request) -> Principal:
    return await _authorize(request, STATUS)


async def _creator(request: Request) -> Principal:
    return await _authorize(request, GENERATE)


Caller = Annotated[Principal, Depends(_reader)]
Creator = Annotated[Principal, Depends(_creator)]


# -- ids, apps and URLs ---------------------------------------------------------------


def request_id(job_id: str) -> str:
    """The UUID fal shows for a job: its ULID's 128 bits."""
    return job_uuid(job_id)


def job_id_of(given: str) -> str:
    found = job_of_uuid(given)
    if found is None:
        raise NotFound(f"Request {given!r} not found")
    return found


def apps(genq: Genq) -> dict[str, str]:
    """App id -> engine: the defaults, then the operator's `fal:app:` routes."""
    table = dict(APPS)
    prefix = f"{NAME}:app:"
    table.update(
        {
            k[len(prefix) :]: v
            for k, v in genq.settings.compat_engines.items()
            if k.startswith(prefix)
        }
    )
    return table


def engine_of(genq: Genq, app: str) -> str:
    app = app.strip("/")
    found = apps(genq).get(app)
    if found is not None:
        return found
    if app in genq.jobs.engines:
        return app
    raise EngineNotFound(f"Application {app!r} not found")


def is_video(genq: Genq, engine: str) -> bool:
    e = genq.jobs.engine(engine)
    return e.task in ("text2video", "image2video") or "video" in e.media


def queue_path(app: str) -> str:
    """Where fal's queue keeps an app's requests: its `owner/alias` (with a namespace
    such as `workflows/` in front), not the sub-path."""
    parts = app.strip("/").split("/")
    keep = 3 if parts[0] in ("workflows", "comfy") else 2
    return "/".join(parts[:keep])


def urls(request: Request, app: str, rid: str) -> dict[str, str]:
    base = f"{request.url.scheme}://{request.url.netloc}{PREFIX}/{queue_path(app)}/requests/{rid}"
    return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}


# -- rendering ------------------------------------------------------------------------


def _app_of(job: Job) -> str:
    md: dict[str, Any] = job.get("metadata") or {}
    return str(md.get("app") or job["engine"])


def result(job: Job) -> dict[str, Any]:
    """A succeeded job's outputs in the app's shape (images or a video)."""
    data: dict[str, Any] = job.get("input") or {}
    seed = data.get("seed")
    timings = {"inference": job.get("processing_time_s") or 0.0}
    videos = outputs(job, ("video",))
    if videos:
        v = videos[0]
        return {
            "video": {
                "url": v["url"],
                "content_type": v.get("content_type"),
                "file_name": str(v["url"]).rsplit("/", 1)[-1],
                "file_size": v.get("bytes"),
            },
            "seed": seed,
            "timings": timings,
        }
    images = outputs(job, ("image",)) or list(by_name(job).values())
    return {
        "images": [
            {
                "url": o["url"],
                "width": o.get("width"),
                "height": o.get("height"),
                "content_type": o.get("content_type"),
            }
            for o in images
        ],
        "seed": seed,
        "prompt": data.get("prompt"),
        "has_nsfw_concepts": [False] * len(images),
        "timings": timings,
    }


def _failure(job: Job) -> tuple[int, dict[str, Any]]:
    """A failed or canceled job's result answer: status and `{detail, error_type}`."""
    if job["status"] == "canceled":
        return 400, {"detail": "Request was cancelled", "error_type": "request_cancelled"}
    code = error_code(job) or "internal_error"
    status = 422 if code in USER_ERRORS else 500
    return status, {"detail": error_message(job) or "The request failed", "error_type": code}


async def logs(genq: Genq, job: Job) -> list[dict[str, Any]]:
    """The job's log lines and progress messages, as fal's log objects."""
    found = []
    for e in await genq.jobs.events_after(job["id"], 0):
        message = e.data.get("message")
        if e.type not in ("log", "progress") or not message:
            continue
        level = str(e.data.get("level") or "info").upper()
        found.append(
            {
                "message": str(message),
                "level": level,
                "source": "user",
                "timestamp": e.created_at.isoformat(),
            }
        )
    return found


async def status_body(genq: Genq, request: Request, job: Job, with_logs: bool) -> dict[str, Any]:
    rid = request_id(job["id"])
    body: dict[str, Any] = {"request_id": rid, **urls(request, _app_of(job), rid)}
    state = job["status"]
    lines = await logs(genq, job) if with_logs else None
    if state in QUEUED:
        body.update({"status": "IN_QUEUE", "queue_position": int(job.get("queue_position") or 0)})
    elif state in RUNNING:
        body.update({"status": "IN_PROGRESS", "logs": lines})
    elif state in ("succeeded", "failed", "canceled"):
        body.update(
            {
                "status": "COMPLETED",
                "logs": lines,
                "metrics": {"inference_time": job.get("processing_time_s")},
            }
        )
        if state != "succeeded":
            _, failure = _failure(job)
            body.update({"error": failure["detail"], "error_type": failure["error_type"]})
    else:
        raise Expired(f"Request {rid} has expired")
    return body


def WEBHOOK_FORMAT(job: Job) -> dict[str, Any]:
    """The body posted to `fal_webhook` when the request ends."""
    rid = request_id(job["id"])
    body: dict[str, Any] = {"request_id": rid, "gateway_request_id": rid}
    if job["status"] == "succeeded":
        body.update({"status": "OK", "payload": result(job)})
    else:
        _, failure = _failure(job) if job["status"] in ("failed", "canceled") else (0, {})
        detail = failure.get("detail", f"Request ended {job['status']}")
        body.update({"status": "ERROR", "error": detail, "payload": {"detail": detail}})
    return body


async def signing_key(genq: Genq) -> Ed25519PrivateKey:
    seed = hashlib.sha256(b"genq fal webhooks\x00" + await genq.secret("fal-webhooks")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def WEBHOOK_SIGNER(
    genq: Genq, job: Job, account_id: str, body: bytes, when: datetime
) -> dict[str, str]:
    """fal's webhook headers: ED25519 over request id, user id, timestamp and the
    body's SHA-256, newline-joined."""
    rid, stamp = request_id(job["id"]), str(int(when.timestamp()))
    message = "\n".join((rid, account_id, stamp, hashlib.sha256(body).hexdigest()))
    signature = (await signing_key(genq)).sign(message.encode())
    return {
        "X-Fal-Webhook-Request-Id": rid,
        "X-Fal-Webhook-User-Id": account_id,
        "X-Fal-Webhook-Timestamp": stamp,
        "X-Fal-Webhook-Signature": signature.hex(),
    }


# -- requests -------------------------------------------------------------------------


class ImageSize(BaseModel):
    width: int = Field(ge=1, le=16384)
    height: int = Field(ge=1, le=16384)


class Arguments(BaseModel):
    """The arguments genq reads of a fal app's input (others are ignored)."""

    model_config = ConfigDict(extra="ignore")
    prompt: str | None = Field(default=None, min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    image_size: (
        Literal[
            "square_hd",
            "square",
            "portrait_4_3",
            "portrait_16_9",
            "landscape_4_3",
            "landscape_16_9",
        ]
        | ImageSize
        | None
    ) = None
    num_images: int | None = Field(default=None, ge=1, le=4)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    duration: int | float | str | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None


def _seconds(value: int | float | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(str(value).removesuffix("s"))
    except ValueError:
        raise invalid("body.duration", f"not a number of seconds: {value!r}") from None


def _candidate(genq: Genq, engine: str, body: Arguments) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt,
        "num_images": body.num_images,
        "seed": body.seed,
        "seconds": _seconds(body.duration),
        "output_format": body.output_format,
    }
    size = body.image_size
    if size is not None:
        w, h = IMAGE_SIZES[size] if isinstance(size, str) else (size.width, size.height)
        candidate["width"] = snap_side(genq, engine, "width", w)
        candidate["height"] = snap_side(genq, engine, "height", h)
    return candidate


async def _submit(request: Request, genq: Genq, caller: Principal, app: str) -> Job:
    engine = engine_of(genq, app)
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(Arguments, fields)
    data = fit(genq, engine, _candidate(genq, engine, body), extra_input(request))
    hook_url = request.query_params.get("fal_webhook")
    hook = {"url": hook_url, "events": ["completed"], "format": NAME} if hook_url else None
    job = await genq.jobs.submit(
        caller.account, engine, data, metadata={"compat": NAME, "app": app}, webhook=hook
    )
    return await genq.jobs.canonical(caller.account.id, job.id)


def _queued(request: Request, job: Job) -> Response:
    rid = request_id(job["id"])
    return json_response(
        {
            "status": "IN_QUEUE",
            "request_id": rid,
            "gateway_request_id": rid,
            "queue_position": int(job.get("queue_position") or 0),
            **urls(request, _app_of(job), rid),
        },
        200,
        {"X-Fal-Request-Id": rid},
    )


async def _job(genq: Genq, caller: Principal, given: str) -> Job:
    return await genq.jobs.canonical(caller.account.id, job_id_of(given))


async def _until_end(
    genq: Genq, caller: Principal, job: Job, timeout: float, *, once: bool = False
) -> Job:
    """The job once it has ended (`once`: once it has changed at all), or at `timeout`."""
    deadline = time.monotonic() + timeout
    while job["status"] in QUEUED + RUNNING:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await genq.jobs.wait_body(
            caller.account.id, job["id"], seen=None, after_seq=job["seq"], timeout=min(left, 30)
        )
        job = await genq.jobs.canonical(caller.account.id, job["id"])
        if once:
            break
    return job


def _result_response(job: Job) -> Response:
    rid = request_id(job["id"])
    if job["status"] in QUEUED + RUNNING:
        raise StillRunning("Request is still in progress")
    if job["status"] == "succeeded":
        return json_response(result(job), 200, {"X-Fal-Request-Id": rid})
    status, body = _failure(job)
    return json_response(
        body, status, {"X-Fal-Request-Id": rid, "X-Fal-Error-Type": body["error_type"]}
    )


@router.get("/.well-known/jwks.json", summary="The public keys fal webhooks are signed with")
async def jwks(genq: App) -> Response:
    public = (await signing_key(genq)).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": hashlib.sha256(public).hexdigest()[:16],
        "x": _b64url(public),
    }
    return json_response({"keys": [key]}, headers={"Cache-Control": "max-age=86400"})


@router.get(
    "/{app:fal_app}/requests/{rid}/status/stream",
    responses=_errors(401, 404, 410, 429),
    summary="A request's status as server-sent events",
)
async def status_stream(
    app: str, rid: str, request: Request, genq: App, caller: Caller, logs: str | None = None
) -> Response:
    with_logs = _truthy(logs)
    job = await _job(genq, caller, rid)
    first = await status_body(genq, request, job, with_logs)

    async def events() -> AsyncIterator[bytes]:
        nonlocal job
        body = first
        while True:
            yield b"data: " + orjson.dumps(body) + b"\n\n"
            if body["status"] == "COMPLETED":
                return
            await genq.jobs.wait_body(
                caller.account.id, job["id"], seen=None, after_seq=job["seq"], timeout=STREAM_IDLE_S
            )
            job = await genq.jobs.canonical(caller.account.id, job["id"])
            body = await status_body(genq, request, job, with_logs)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


@router.get(
    "/{app:fal_app}/requests/{rid}/status",
    responses=_errors(401, 404, 410, 429),
    summary="A request's status",
)
async def status(
    app: str, rid: str, request: Request, genq: App, caller: Caller, logs: str | None = None
) -> Response:
    job = await _job(genq, caller, rid)
    if job["status"] in QUEUED + RUNNING:  # a short long-poll (see the module docstring)
        job = await _until_end(genq, caller, job, STATUS_HOLD_S, once=True)
    return json_response(await status_body(genq, request, job, _truthy(logs)))


@router.put(
    "/{app:fal_app}/requests/{rid}/cancel",
    status_code=202,
    responses=_errors(400, 401, 404, 429),
    openapi_extra=NO_BODY,
    summary="Cancel a request",
)
async def cancel(app: str, rid: str, genq: App, caller: Caller) -> Response:
    try:
        await genq.jobs.cancel(caller.account.id, job_id_of(rid))
    except Conflict:
        return json_response({"status": "ALREADY_COMPLETED"}, 400)
    except (NotFound, Expired):
        return json_response({"status": "NOT_FOUND"}, 404)
    return json_response({"status": "CANCELLATION_REQUESTED"}, 202)


@router.get(
    "/{app:fal_app}/requests/{rid}",
    responses=_errors(400, 401, 404, 410, 422, 429, 500),
    summary="A request's result",
)
async def response(app: str, rid: str, genq: App, caller: Caller) -> Response:
    return _result_response(await _job(genq, caller, rid))


@router.post(
    "/run/{app:fal_app}",
    responses=_errors(400, 401, 402, 404, 408, 413, 422, 429, 500),
    openapi_extra=request_body(Arguments, parameters=[IDEMPOTENCY_KEY]),
    summary="Run an app and answer its result (blocking)",
)
async def run(app: str, request: Request, genq: App, caller: Creator) -> Response:
    async def make() -> Response:
        job = await _submit(request, genq, caller, app)
        return _result_response(await _until_end(genq, caller, job, RUN_WAIT_S))

    async def replay(job: Job) -> Response:
        return _result_response(await _until_end(genq, caller, job, RUN_WAIT_S))

    return await idempotent(request, genq, caller, make, replay)


@router.post(
    "/{app:fal_app}",
    responses=_errors(401, 402, 404, 408, 413, 422, 429),
    openapi_extra=request_body(Arguments, parameters=[IDEMPOTENCY_KEY]),
    summary="Submit a request to an app's queue",
)
async def submit(app: str, request: Request, genq: App, caller: Creator) -> Response:
    async def make() -> Response:
        return _queued(request, await _submit(request, genq, caller, app))

    async def replay(job: Job) -> Response:
        return _queued(request, job)

    return await idempotent(request, genq, caller, make, replay)
