"""useapi.net PixVerse face (`/compat/useapi`, seed 001): videos.

- `POST /v1/pixverse/create_single` `{prompt (<=512), style (Realistic|Anime|3D
  Animation), negative_prompt?, aspect_ratio? (16:9|9:16|1:1|4:3|3:4), character?,
  seed_value?, maxJobs?, replyUrl?, replyRef?, discord?, server?, channel?}`.
- `POST /v1/pixverse/create`: the same without `seed_value`. PixVerse made several
  videos here (inferred); genq makes one job, and each `U1`-`U4`/`V1`-`V4` button
  of the finished job makes a child variant (see `button`).
- `POST /v1/pixverse/animate` `{image (file), prompt?, motion? (1-10), seed_value?,
  hd_quality? (Yes|No)}` and `POST /v1/pixverse/meme_face` `{face (file), prompt,
  negative_prompt?, seed_value?, aspect_ratio?}`: as multipart/form-data with the file
  in `image`/`face`, or as JSON naming an uploaded genq file (`file_...`), an earlier
  output (`job_.../<name>`) or a job of this server (its first image). Remote URLs are
  not fetched (400). The image goes to the engine when it takes one (`image`).
- `POST /v1/pixverse/button` `{jobid, button, prompt?}`: a child job of a completed
  job (`parentJobId`): U1-U4 and ⏫ upscale (twice the sides), V1-V4, ReDo, 🔄 and 🔀
  re-run with a new seed (and the new `prompt` if given).
- Every create answers 200 with the job model, `status: created`.
- `GET /v1/pixverse/jobs/?jobid=...`: the job model of seed 001.

`discord`, `server` and `channel` are accepted, kept (the token masked as in the seed:
first and last three characters) and otherwise ignored. `replyUrl` gets the job model
when the job completes (genq's webhook sender, `WEBHOOK_FORMAT`). `maxJobs` caps the
account's unfinished jobs made through this face, counted in the transaction that
creates the job (racing creates cannot both pass): over it, 429 `Account is busy
executing N jobs` with `Retry-After` and `runningJobs`.

Errors are `{"error": "...", "code": N}`: 400 (`Query param jobid not provided`, bad
input), 401 `Unauthorized`, 402 (no credits), 404 `Unable to locate job <jobid>`,
410 `Job has expired`, 429.

Routing keys: `useapi:pixverse-create`, `useapi:pixverse-create_single`,
`useapi:pixverse-animate`, `useapi:pixverse-meme_face` (default `demo/text2video`),
`useapi:pixverse-button` (default: the parent job's engine).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    engine_for,
    error_code,
    error_message,
    extra_input,
    face_router,
    first_error,
    fit,
    idempotent,
    image_ref,
    invalid,
    json_response,
    outputs,
    parse,
    parse_time,
    read_body,
    retry_headers,
    sized,
)
from genq.api.compat._docs import UseapiError, errors, form_of
from genq.api.deps import App, Caller, Creator
from genq.api.front import FastRead
from genq.api.schemas import IDEMPOTENCY_KEY, request_body
from genq.core import Genq
from genq.engines.upstream.useapi import Aspect, Character, Style  # the service's words
from genq.errors import (
    Busy,
    EngineNotFound,
    Expired,
    GenqError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from genq.jobs import Cap

NAME: Final = "useapi"
STATUS: Final[dict[str, str]] = {  # genq -> PixVerse; expired answers 410
    "queued": "created",
    "starting": "started",
    "running": "progress",
    "succeeded": "completed",
    "failed": "failed",  # "moderated" when error.code is moderated
    "canceled": "cancelled",
}
MODERATED: Final = "moderated"
ENGINES: Final[dict[str, str]] = {
    "pixverse-create": "demo/text2video",
    "pixverse-create_single": "demo/text2video",
    "pixverse-animate": "demo/text2video",
    "pixverse-meme_face": "demo/text2video",
}
BUTTONS: Final = ("U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "ReDo")
UPSCALES: Final = ("U1", "U2", "U3", "U4", "⏫")
NO_SUBSCRIPTION: Final = "Account has no subscription or subscription expired"
BUSY_RETRY_S: Final = 10
# fields of the job model kept in the job's metadata and shown as they were given
SHOWN: Final = (
    "prompt",
    "negative_prompt",
    "style",
    "aspect_ratio",
    "character",
    "motion",
    "hd_quality",
    "seed_value",
    "button",
    "image",
    "face",
    "discord",
    "server",
    "channel",
    "maxJobs",
    "replyUrl",
    "replyRef",
)


def error_response(exc: GenqError) -> Response:
    status, message = exc.status, exc.detail
    if isinstance(exc, Unauthorized):
        message = "Unauthorized"
    elif isinstance(exc, InsufficientCredits):
        message = NO_SUBSCRIPTION
    elif isinstance(exc, Expired):
        message = "Job has expired"
    elif isinstance(exc, EngineNotFound):
        status = 400
    elif isinstance(exc, InvalidInput):
        status, message = 400, first_error(exc)
    body: dict[str, Any] = {"error": message, "code": status}
    if isinstance(exc, RateLimited) and "runningJobs" in exc.extra:
        body["runningJobs"] = exc.extra["runningJobs"]
    return json_response(body, status, retry_headers(exc))


router = face_router(f"/compat/{NAME}", NAME, error_response)
_CREATE = (400, 401, 402, 404, 408, 409, 410, 413, 429)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(UseapiError, *statuses)


def _updated(job: Job) -> str:
    stamps = [job.get(k) for k in ("created_at", "started_at", "completed_at")]
    return str(max(s for s in stamps if s))


def _content(job: Job, word: str, md: dict[str, Any], prompt: str | None) -> str:
    """The progress message PixVerse's bot would post for the job."""
    head = f"(prompt: {prompt or ''}"
    if md.get("style"):
        head += f" style: {md['style']}"
    if md.get("aspect_ratio"):
        head += f" aspect-ratio: {md['aspect_ratio']}"
    head += ")"
    if word == "created":
        pos = job.get("queue_position")
        tail = "Waiting to start" + (f" (position {pos + 1} in queue)" if pos is not None else "")
    elif word in ("started", "progress"):
        tail = f"{float(job.get('progress') or 0):.0f}%"
        if job.get("message"):
            tail += f" {job['message']}"
    elif word == "completed":
        tail = "Completed"
    else:
        tail = error_message(job) or word.capitalize()
    return f"{head} {tail}"


def render(job: Job) -> dict[str, Any]:
    """A canonical job as the PixVerse job model (seed 001)."""
    if job["status"] not in STATUS:
        raise Expired("Job has expired")
    word = STATUS[job["status"]]
    if job["status"] == "failed" and error_code(job) == MODERATED:
        word = MODERATED
    md: dict[str, Any] = job.get("metadata") or {}
    data: dict[str, Any] = job.get("input") or {}
    body: dict[str, Any] = {"jobid": job["id"]}
    if job.get("parent_id"):
        body["parentJobId"] = job["parent_id"]
    body.update(
        {
            "verb": md.get("verb") or "pixverse-create",
            "status": word,
            "created": job["created_at"],
            "updated": _updated(job),
        }
    )
    body.update({k: md[k] for k in SHOWN if md.get(k) is not None})
    prompt = md.get("prompt") or data.get("prompt")
    if prompt is not None:
        body["prompt"] = prompt
    if "seed_value" not in body and isinstance(data.get("seed"), int):
        body["seed_value"] = data["seed"]
    body["messageId"] = job["id"]  # no Discord here: the job's own id
    body["content"] = _content(job, word, md, prompt)
    stamp = parse_time(job.get("started_at") or job["created_at"])
    if stamp is not None:
        body["timestamp"] = stamp.isoformat(timespec="microseconds")
    if word == "completed":
        upscaled = md.get("button") in UPSCALES
        body["buttons"] = [] if upscaled else list(BUTTONS)
        media = outputs(job, ("video",)) or outputs(job, ("image",))
        body["attachments"] = [
            {
                "url": o["url"],
                "proxy_url": o["url"],
                "width": int(o.get("width") or 0),
                "height": int(o.get("height") or 0),
                "content_type": o["content_type"],
                "id": f"{job['id']}/{o['name']}",
                "filename": o["url"].rsplit("/", 1)[-1],
                "size": int(o["bytes"]),
            }
            for o in media
        ]
    elif word in ("failed", MODERATED, "cancelled"):
        body["error"] = error_message(job) or f"Job {word}"
        body["errorDetails"] = error_code(job) or word
    body["code"] = 200
    return body


def WEBHOOK_FORMAT(job: Job) -> dict[str, Any]:
    """The body posted to `replyUrl`: the job model."""
    try:
        return render(job)
    except Expired:
        return {"jobid": job["id"], "error": "Job has expired", "code": 410}


# -- requests -------------------------------------------------------------------------

Seed = Annotated[int | None, Field(default=None, ge=0, le=2**32 - 1)]
ButtonName = Literal["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "ReDo", "🔄", "🔀", "⏫"]
Prompt = Annotated[str, Field(min_length=1, max_length=512)]


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")
    maxJobs: int | None = Field(default=None, ge=1, le=10)
    replyUrl: str | None = Field(default=None, max_length=2000)
    replyRef: str | None = Field(default=None, max_length=1000)
    discord: str | None = Field(default=None, max_length=500)
    server: str | None = Field(default=None, max_length=100)
    channel: str | None = Field(default=None, max_length=100)


class Create(_Common):
    prompt: Prompt
    style: Style
    negative_prompt: str | None = Field(default=None, max_length=512)
    aspect_ratio: Aspect = "16:9"
    character: Character | None = None


class CreateSingle(Create):
    seed_value: Seed = None


class Animate(_Common):
    image: str = Field(min_length=1, max_length=2000)
    prompt: Prompt | None = None
    motion: int | None = Field(default=None, ge=1, le=10)
    seed_value: Seed = None
    hd_quality: Literal["Yes", "No"] | None = None


class MemeFace(_Common):
    face: str = Field(min_length=1, max_length=2000)
    prompt: Prompt
    negative_prompt: str | None = Field(default=None, max_length=512)
    seed_value: Seed = None
    aspect_ratio: Aspect | None = None


class Button(_Common):
    jobid: str = Field(min_length=1, max_length=100)
    button: ButtonName
    prompt: Prompt | None = None


def _masked(token: str | None) -> str | None:
    return f"{token[:3]}…{token[-3:]}" if token else None


def _metadata(verb: str, body: _Common, shown: dict[str, Any]) -> dict[str, Any]:
    md: dict[str, Any] = {"compat": NAME, "verb": f"pixverse-{verb}"}
    md.update(body.model_dump(exclude_none=True, exclude={"discord", "image", "face", "jobid"}))
    md.update(shown)
    if body.discord:
        md["discord"] = _masked(body.discord)
    return {k: v for k, v in md.items() if v is not None}


def _cap(max_jobs: int | None) -> Cap | None:
    """`maxJobs`: no new job while the account has that many unfinished jobs made
    through this face (checked as the job is created: racing creates cannot both pass)."""
    return Cap(max_jobs, ("compat", NAME)) if max_jobs is not None else None


async def _job(genq: Genq, account_id: str, jobid: str) -> Job:
    try:
        return await genq.jobs.canonical(account_id, jobid)
    except Expired:
        raise
    except NotFound as exc:
        raise NotFound(f"Unable to locate job {jobid}") from exc


async def _media(
    genq: Genq, caller: Principal, field: str, fields: dict[str, Any], files: dict[str, UploadFile]
) -> tuple[str, dict[str, Any]]:
    """The engine reference of the image in `field` (an upload or a reference) and its
    `{size, type}` for the job model."""
    account_id = caller.account.id
    upload = files.get(field)
    if upload is not None:
        record = await genq.files.save(
            account_id,
            upload.file,
            filename=upload.filename,
            content_type=upload.content_type,
            purpose=f"{NAME}-{field}",
        )
        return record.id, {"size": record.bytes, "type": record.content_type}
    ref = await image_ref(genq, account_id, str(fields[field]), field)
    if ref.startswith("file_"):
        try:
            f = await genq.files.get(account_id, ref)
        except NotFound as exc:
            raise invalid(field, f"no such file {ref!r}", "not_found") from exc
        return ref, {"size": f.bytes, "type": f.content_type}
    return ref, {}


async def _submit(
    request: Request,
    genq: Genq,
    caller: Principal,
    verb: str,
    engine: str,
    candidate: dict[str, Any],
    md: dict[str, Any],
    reply_url: str | None,
    max_jobs: int | None,
    parent_id: str | None = None,
) -> Response:
    data = fit(genq, engine, candidate, extra_input(request))
    hook = {"url": reply_url, "events": ["completed"], "format": NAME} if reply_url else None
    try:
        job = await genq.jobs.submit(
            caller.account,
            engine,
            data,
            metadata=md,
            webhook=hook,
            parent_id=parent_id,
            cap=_cap(max_jobs),
        )
    except Busy as exc:
        running = exc.extra.get("running", [])
        raise RateLimited(
            f"Account is busy executing {len(running)} jobs",
            headers={"Retry-After": str(BUSY_RETRY_S)},
            runningJobs=running,
        ) from exc
    return json_response(render(await genq.jobs.canonical(caller.account.id, job.id)))


async def _generate(
    request: Request, genq: Genq, caller: Principal, verb: str, model: type[_Common]
) -> Response:
    return await _once(request, genq, caller, lambda: _make(request, genq, caller, verb, model))


async def _make(
    request: Request, genq: Genq, caller: Principal, verb: str, model: type[_Common]
) -> Response:
    fields, files = await read_body(request, genq.settings.max_json_bytes)
    file_field = {"animate": "image", "meme_face": "face"}.get(verb)
    if file_field and file_field in files:
        fields[file_field] = "upload"
    body = parse(model, fields)
    engine = engine_for(genq, f"{NAME}:pixverse-{verb}", ENGINES[f"pixverse-{verb}"])
    shown: dict[str, Any] = {}
    candidate: dict[str, Any] = {}
    if file_field:
        ref, meta = await _media(genq, caller, file_field, fields, files)
        candidate["image"] = ref
        shown[file_field] = meta
    params = body.model_dump()
    prompt = params.get("prompt") or "the picture comes alive"
    hd = params.get("hd_quality") == "Yes"
    candidate.update(
        {
            "prompt": prompt,
            "negative_prompt": params.get("negative_prompt"),
            "seed": params.get("seed_value"),
            **sized(genq, engine, aspect=params.get("aspect_ratio"), area_scale=4.0 if hd else 1.0),
        }
    )
    md = _metadata(verb, body, shown)
    return await _submit(
        request, genq, caller, verb, engine, candidate, md, body.replyUrl, body.maxJobs
    )


def _once(
    request: Request, genq: Genq, caller: Principal, create: Callable[[], Awaitable[Response]]
) -> Awaitable[Response]:
    """`create` under the request's Idempotency-Key; a job whose first answer was lost
    is answered with its job model, as a create answers."""

    async def replay(job: Job) -> Response:
        return json_response(render(job))

    return idempotent(request, genq, caller, create, replay)


@router.post(
    "/v1/pixverse/create",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(Create, parameters=[IDEMPOTENCY_KEY]),
    summary="Create videos from a prompt",
)
async def create(request: Request, genq: App, caller: Creator) -> Response:
    return await _generate(request, genq, caller, "create", Create)


@router.post(
    "/v1/pixverse/create_single",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(CreateSingle, parameters=[IDEMPOTENCY_KEY]),
    summary="Create one video from a prompt",
)
async def create_single(request: Request, genq: App, caller: Creator) -> Response:
    return await _generate(request, genq, caller, "create_single", CreateSingle)


@router.post(
    "/v1/pixverse/animate",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(
        {"application/json": Animate, "multipart/form-data": form_of(Animate, "image")},
        parameters=[IDEMPOTENCY_KEY],
    ),
    summary="Animate an image",
)
async def animate(request: Request, genq: App, caller: Creator) -> Response:
    return await _generate(request, genq, caller, "animate", Animate)


@router.post(
    "/v1/pixverse/meme_face",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(
        {"application/json": MemeFace, "multipart/form-data": form_of(MemeFace, "face")},
        parameters=[IDEMPOTENCY_KEY],
    ),
    summary="A video from a face and a prompt",
)
async def meme_face(request: Request, genq: App, caller: Creator) -> Response:
    return await _generate(request, genq, caller, "meme_face", MemeFace)


@router.post(
    "/v1/pixverse/button",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(Button, parameters=[IDEMPOTENCY_KEY]),
    summary="Upscale or vary a completed job",
)
async def button(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _button(request, genq, caller))


async def _button(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(Button, fields)
    parent = await _job(genq, caller.account.id, body.jobid)
    if parent["status"] != "succeeded":
        raise InvalidInput(
            f"Job {body.jobid} is {render(parent)['status']}, buttons apply to completed jobs"
        )
    engine = genq.settings.compat_engines.get(f"{NAME}:pixverse-button") or parent["engine"]
    candidate = dict(parent.get("input") or {})
    if body.prompt:
        candidate["prompt"] = body.prompt
    if body.button in UPSCALES:
        w, h = candidate.get("width"), candidate.get("height")
        if isinstance(w, int) and isinstance(h, int):
            candidate.update(sized(genq, engine, aspect=f"{w}:{h}", pixels=4.0 * w * h))
        else:
            candidate.update(sized(genq, engine, area_scale=4.0))
    else:
        candidate["seed"] = secrets.randbelow(2**32)
    parent_md: dict[str, Any] = parent.get("metadata") or {}
    inherited: dict[str, Any] = {
        k: parent_md[k] for k in ("style", "aspect_ratio", "character", "prompt") if k in parent_md
    }
    md: dict[str, Any] = {**_metadata("button", body, {}), **inherited}
    if body.prompt:
        md["prompt"] = body.prompt
    return await _submit(
        request,
        genq,
        caller,
        "button",
        engine,
        candidate,
        md,
        body.replyUrl,
        body.maxJobs,
        parent_id=parent["id"],
    )


@router.get(
    "/v1/pixverse/jobs/",
    responses=_errors(400, 401, 404, 410, 429),
    summary="A job's status and results",
)
@router.get("/v1/pixverse/jobs", include_in_schema=False)
async def jobs(genq: App, caller: Caller, jobid: str | None = None) -> Response:
    return await read_job(genq, caller, {}, {"jobid": jobid} if jobid is not None else {})


async def read_job(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    jobid = query.get("jobid")
    if not jobid:
        raise InvalidInput("Query param jobid not provided")
    return json_response(render(await _job(genq, caller.account.id, jobid)))


FAST_READS = [
    FastRead(f"/compat/{NAME}/v1/pixverse/jobs/", read_job, error_response),
    FastRead(f"/compat/{NAME}/v1/pixverse/jobs", read_job, error_response),
]
