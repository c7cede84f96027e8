"""Replicate face (`/compat/replicate`): predictions, as the official `replicate` SDK
speaks them (`replicate.Client(api_token=KEY, base_url=BASE + "/compat/replicate")`).

- genq engines are models: `demo/text2image` is `owner=demo, name=text2image`, its
  input JSON Schema the model's `latest_version.openapi_schema` (Cog's layout:
  `components.schemas.Input` / `Output`), its version id a stable hash of the engine
  name and that schema. `replicate:model:<owner>/<name>` in `settings.compat_engines`
  routes a model name to an engine; a few well-known Replicate models (`ALIASES`, e.g.
  `black-forest-labs/flux-schnell`) default to the demo engines so that Replicate's
  README runs unchanged.
- `POST /v1/predictions` `{version | model, input, webhook?, webhook_events_filter?,
  webhook_completed?, stream?}` (`version` is an id, `owner/name:id` or `owner/name`)
  and `POST /v1/models/{owner}/{name}/predictions` `{input, ...}` -> 201 + the
  prediction. `Prefer: wait[=n]` (1-60 s, default 60) holds the answer until the job
  ends; an answer that is still not done then says `starting` (as Replicate's does,
  and as `replicate.run` expects to go on polling).
- `GET /v1/predictions/{id}`, `GET /v1/predictions` (cursor paging: `{next, previous,
  results}`), `POST /v1/predictions/{id}/cancel`, `GET /v1/predictions/{id}/stream`
  (SSE: `output` per output file, `logs` per progress or log line, `error` when it
  failed, then `done`), `GET /v1/models[/{owner}/{name}[/versions[/{id}]]]`,
  `GET /v1/account`, `GET /v1/webhooks/default/secret` (`{"key": "whsec_..."}`: the
  account's Standard Webhooks secret, with which every delivery is signed).
- Statuses: queued/starting -> `starting`, running -> `processing`, then `succeeded`,
  `failed`, `canceled`; an expired job is 404 (Replicate removes old predictions).
- A prediction id is the job's ULID in lower case (lossless: `job_` + it in upper case
  is the job on `/v1`); every read also takes the `job_...` id.
- Errors are Replicate's problem bodies `{"title", "detail", "status"}`: 400 (neither
  `version` nor `model`, a cursor this server did not issue), 401, 402 `Insufficient
  credit`, 404 (unknown or another account's prediction, unknown model or version),
  409, 413, 422 `Input validation failed` (with `invalid_fields`), 429 `Request was
  throttled.` (with `Retry-After`).

Inferred (Replicate does not document it, or genq has no exact counterpart):
- `output` is always a list of file URLs (every output but thumbnails). In a
  `Prefer: wait` answer that ended, outputs of up to `INLINE_MAX_BYTES` are `data:`
  URIs, as Replicate's sync mode returns them, so that `replicate.run` hands back
  readable `FileOutput`s over plain http too (over https the URLs are wrapped as they are).
- `logs` are the job's progress lines (tqdm-style `NN%|...| NN/100 message`, so the SDK's
  `prediction.progress` reads them) and log lines; in webhook bodies only the latest.
- Input fields the engine does not take are dropped (Cog ignores them too), after two
  translations: `num_outputs` -> `num_images`, `aspect_ratio` -> `width`/`height`.
- `webhook_events_filter`: `start` -> genq's `started`, `output` -> `output`, `logs` ->
  `progress` (genq has no webhook event per log line), `completed` -> `completed`.
- Idempotency: Replicate has no idempotency header; `Idempotency-Key` works as on `/v1`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from functools import cache
from typing import Any, Final, Literal

import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from genq import payloads
from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    engine_fields,
    extra_input,
    face_router,
    fit,
    idempotent,
    json_response,
    parse,
    parse_time,
    read_body,
    retry_headers,
    sized,
)
from genq.api.compat._docs import ReplicateError, errors
from genq.api.deps import App, Caller, Creator
from genq.api.front import FastRead
from genq.api.schemas import IDEMPOTENCY_KEY, request_body
from genq.core import Genq
from genq.errors import (
    EngineNotFound,
    Expired,
    GenqError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from genq.lifecycle import TERMINAL
from genq.ratelimits import Hold

NAME: Final = "replicate"
STATUS: Final[dict[str, str]] = {  # genq -> Replicate; expired answers 404
    "queued": "starting",
    "starting": "starting",
    "running": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
# well-known Replicate models served by the demo engines unless routed elsewhere
ALIASES: Final[dict[str, str]] = {
    "black-forest-labs/flux-schnell": "demo/text2image",
    "black-forest-labs/flux-dev": "demo/text2image",
    "black-forest-labs/flux-1.1-pro": "demo/text2image",
    "stability-ai/sdxl": "demo/text2image",
    "stability-ai/stable-diffusion-3": "demo/text2image",
    "minimax/video-01": "demo/text2video",
    "wan-video/wan-2.1-t2v-480p": "demo/text2video",
}
EVENTS: Final[dict[str, str]] = {  # webhook_events_filter -> genq webhook events
    "start": "started",
    "output": "output",
    "logs": "progress",
    "completed": "completed",
}
MAX_WAIT_S: Final = 60.0
INLINE_MAX_BYTES: Final = 8 * 1024 * 1024
COG_VERSION: Final = "0.9.0"
PAGE: Final = 100
_PREFER_WAIT = re.compile(r"(?:^|[;,\s])wait(?:=(\d+))?(?:$|[;,\s])")
_ULID = re.compile(r"^[0-9a-hjkmnp-tv-z]{26}$")
_TITLES: Final[dict[int, str]] = {
    400: "Bad request",
    401: "Unauthenticated",
    402: "Insufficient credit",
    404: "Not found",
    409: "Conflict",
    410: "Not found",
    413: "Request too large",
    422: "Input validation failed",
    429: "Request was throttled.",
}


class BadRequest(GenqError):
    """The request cannot be served as it is."""

    status, code, title = 400, "bad_request", "Bad request"


def _problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"title": title, "detail": detail, "status": status, **extra}


def error_response(exc: GenqError) -> Response:
    status, detail = exc.status, exc.detail
    extra: dict[str, Any] = {}
    if isinstance(exc, Unauthorized):
        detail = "You did not pass a valid authentication token"
    elif isinstance(exc, Expired):
        status, detail = 404, "The requested resource could not be found."
    elif isinstance(exc, EngineNotFound):
        status = 404
    elif isinstance(exc, InsufficientCredits):
        detail = f"You have insufficient credit to run this model. {exc.detail}"
    elif isinstance(exc, RateLimited):
        after = retry_headers(exc).get("Retry-After")
        detail = f"Request was throttled. Expected available in {after or 1} second."
    elif isinstance(exc, InvalidInput):
        status = 422
        fields = [
            {
                "type": str(e.get("type", "value_error")),
                "field": str(e.get("field", "")).removeprefix("body."),
                "description": str(e.get("message", "")),
            }
            for e in exc.extra.get("errors") or []
        ]
        if fields:
            detail = "\n".join(f"- {f['field']}: {f['description']}" for f in fields)
            extra["invalid_fields"] = fields
    title = _TITLES.get(status, exc.title)
    return json_response(_problem(status, title, detail, **extra), status, retry_headers(exc))


router = face_router(f"/compat/{NAME}", NAME, error_response)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    found = errors(ReplicateError, *(s for s in statuses if s != 422))
    if 422 in statuses:
        found[422] = {"model": ReplicateError, "description": "Input validation failed"}
    return dict(sorted(found.items(), key=lambda kv: int(kv[0])))


# -- ids, models and versions -----------------------------------------------------------


def prediction_id(job_id: str) -> str:
    return job_id.removeprefix("job_").lower()


def job_id_of(given: str) -> str | None:
    if given.startswith("job_"):
        return given
    return f"job_{given.upper()}" if _ULID.match(given) else None


@cache
def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def input_schema(genq: Genq, engine_name: str) -> dict[str, Any]:
    return _input_schema(genq.jobs.engine(engine_name).input_model)


def version_of(genq: Genq, engine_name: str) -> str:
    """A stable version id: the engine's name and input schema, hashed."""
    schema = orjson.dumps(input_schema(genq, engine_name), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(engine_name.encode() + b"\n" + schema).hexdigest()


def models(genq: Genq) -> dict[str, str]:
    """Replicate model name (`owner/name`) -> genq engine: every engine named so, the
    aliases, then the operator's routes (`replicate:model:<owner>/<name>`)."""
    found = {n: n for n in genq.jobs.engines if n.count("/") == 1}
    found.update({k: v for k, v in ALIASES.items() if v in genq.jobs.engines})
    prefix = f"{NAME}:model:"
    for key, engine in genq.settings.compat_engines.items():
        if key.startswith(prefix) and engine in genq.jobs.engines:
            found[key[len(prefix) :]] = engine
    return found


def engine_of_model(genq: Genq, owner: str, name: str) -> str:
    engine = models(genq).get(f"{owner}/{name}")
    if engine is None:
        raise NotFound(f"Model {owner}/{name} not found")
    return engine


def engine_of_version(genq: Genq, version: str) -> tuple[str, str]:
    """(model name, engine) of a version id, `owner/name:id` or `owner/name`."""
    ref, _, vid = version.partition(":")
    if "/" in ref:
        owner, _, name = ref.partition("/")
        engine = engine_of_model(genq, owner, name)
        if vid and vid != version_of(genq, engine):
            raise NotFound(f"Version {vid} of {ref} not found")
        return ref, engine
    for model, engine in models(genq).items():
        if version_of(genq, engine) == version:
            return model, engine
    raise NotFound(f"Version {version} not found")


def _output_schema(genq: Genq, engine_name: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "title": "Output",
    }


def render_version(genq: Genq, engine_name: str) -> dict[str, Any]:
    engine = genq.jobs.engine(engine_name)
    return {
        "id": version_of(genq, engine_name),
        "created_at": "2026-01-01T00:00:00.000000Z",
        "cog_version": COG_VERSION,
        "openapi_schema": {
            "openapi": "3.0.2",
            "info": {"title": "Cog", "version": "0.1.0"},
            "paths": {},
            "components": {
                "schemas": {
                    "Input": {**input_schema(genq, engine_name), "title": "Input"},
                    "Output": _output_schema(genq, engine_name),
                }
            },
            "x-genq-engine": engine.name,
        },
    }


def render_model(genq: Genq, model: str, engine_name: str) -> dict[str, Any]:
    owner, _, name = model.partition("/")
    engine = genq.jobs.engine(engine_name)
    base = genq.settings.base_url
    return {
        "url": f"{base}/compat/{NAME}/v1/models/{model}",
        "owner": owner,
        "name": name,
        "description": getattr(engine, "description", None),
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": render_version(genq, engine_name),
    }


# -- predictions ----------------------------------------------------------------------


def _base_of(job: Job) -> str:
    own = str((job.get("urls") or {}).get("self") or "")
    return own.split("/v1/jobs/")[0]


def _seconds(job: Job, start: str, end: str) -> float | None:
    a, b = parse_time(job.get(start)), parse_time(job.get(end))
    return round((b - a).total_seconds(), 3) if a and b else None


def _bar(pct: float, message: str | None) -> str:
    done = max(0, min(100, int(pct)))
    bar = "█" * (done // 10) + " " * (10 - done // 10)
    return f"{done:3d}%|{bar}| {done}/100" + (f" {message}" if message else "")


def _file_urls(job: Job) -> list[str]:
    return [o["url"] for o in job.get("outputs") or [] if o.get("kind") != "thumbnail"]


def render(
    job: Job, logs: list[str] | None = None, output: list[str] | None = None
) -> dict[str, Any]:
    """A canonical job as a Replicate prediction."""
    if job["status"] not in STATUS:
        raise Expired(f"job {job['id']} has expired")
    md: dict[str, Any] = job.get("metadata") or {}
    pid = prediction_id(job["id"])
    base = f"{_base_of(job)}/compat/{NAME}/v1/predictions/{pid}"
    status = STATUS[job["status"]]
    if logs is None:
        logs = [_bar(float(job.get("progress") or 0), job.get("message"))]
    files = _file_urls(job) if output is None else output
    err = job.get("error")
    metrics: dict[str, Any] = {}
    predict = _seconds(job, "started_at", "completed_at")
    if predict is not None:
        metrics["predict_time"] = predict
        metrics["total_time"] = _seconds(job, "created_at", "completed_at")
    return {
        "id": pid,
        "model": str(md.get("model") or job["engine"]),
        "version": str(md.get("version") or ""),
        "input": job.get("input") or {},
        "logs": "\n".join(line for line in logs if line) + ("\n" if logs else ""),
        "output": files if status == "succeeded" else (files or None),
        "data_removed": False,
        "error": (err.get("message") or err.get("code")) if isinstance(err, dict) else None,
        "status": status,
        "source": "api",
        "created_at": job["created_at"],
        "started_at": job.get("started_at"),
        "completed_at": job.get("completed_at"),
        "urls": {
            "get": base,
            "cancel": f"{base}/cancel",
            "stream": f"{base}/stream",
            "web": f"{_base_of(job)}/ui/#/jobs/{job['id']}",  # the dashboard
        },
        "metrics": metrics,
    }


def WEBHOOK_FORMAT(job: Job) -> dict[str, Any]:
    """A webhook's body: the prediction (logs: its latest progress line)."""
    try:
        return render(job)
    except Expired:
        return {"id": prediction_id(job["id"]), "status": "canceled", "data_removed": True}


def _log_lines(events: list[Any]) -> list[str]:
    lines: list[str] = []
    for ev in events:
        data: dict[str, Any] = ev.data or {}
        if ev.type == "progress":
            lines.append(_bar(float(data.get("progress") or 0), data.get("message")))
        elif ev.type == "log" and data.get("message"):
            lines.append(str(data["message"]))
    return lines


async def _logs(genq: Genq, job_id: str) -> list[str]:
    return _log_lines(await genq.jobs.events_after(job_id, 0))


def _output_key(genq: Genq, url: str) -> str | None:
    prefix = f"{genq.settings.base_url}/files/"
    if not url.startswith(prefix):
        return None
    return genq.storage.public_key(url[len(prefix) :])


def _data_uris(genq: Genq, job: Job) -> list[str]:
    """The outputs as `data:` URIs (those not over INLINE_MAX_BYTES; the rest as URLs)."""
    out: list[str] = []
    for o in job.get("outputs") or []:
        if o.get("kind") == "thumbnail":
            continue
        url = str(o["url"])
        key = _output_key(genq, url)
        if url.startswith("https:") or key is None or int(o.get("bytes") or 0) > INLINE_MAX_BYTES:
            out.append(url)
            continue
        data = genq.storage.read(key)  # (from the object store: StorageUnavailable -> 503)
        if data is None:
            out.append(url)
            continue
        encoded = base64.b64encode(data).decode()
        out.append(f"data:{o.get('content_type') or 'application/octet-stream'};base64,{encoded}")
    return out


async def prediction(
    genq: Genq, account_id: str, job_id: str, *, inline: bool = False
) -> dict[str, Any]:
    job = await genq.jobs.canonical(account_id, job_id)
    logs = await _logs(genq, job_id)
    output = None
    if inline and job["status"] == "succeeded":
        output = await asyncio.to_thread(_data_uris, genq, job)
    return render(job, logs, output)


def _job_id(given: str) -> str:
    job_id = job_id_of(given)
    if job_id is None:
        raise NotFound(f"Prediction {given} not found")
    return job_id


# -- requests -------------------------------------------------------------------------

EventName = Literal["start", "output", "logs", "completed"]


class PredictionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: dict[str, Any] = Field(default_factory=dict)
    webhook: str | None = Field(default=None, max_length=2000)
    webhook_completed: str | None = Field(default=None, max_length=2000)
    webhook_events_filter: list[EventName] | None = None
    stream: bool | None = None


class VersionPrediction(PredictionBody):
    version: str | None = Field(default=None, min_length=1, max_length=300)
    model: str | None = Field(default=None, min_length=3, max_length=300)


def _webhook(body: PredictionBody) -> dict[str, Any] | None:
    if body.webhook:
        names: list[str] = list(body.webhook_events_filter or EVENTS)
        events = list(dict.fromkeys(EVENTS[n] for n in names))
        return {"url": body.webhook, "events": events, "format": NAME}
    if body.webhook_completed:
        return {"url": body.webhook_completed, "events": ["completed"], "format": NAME}
    return None


def _candidate(genq: Genq, engine: str, given: dict[str, Any]) -> dict[str, Any]:
    fields = engine_fields(genq, engine)
    data = dict(given)
    if "num_outputs" in data and "num_outputs" not in fields:
        data.setdefault("num_images", data.pop("num_outputs"))
    aspect = data.get("aspect_ratio")
    if isinstance(aspect, str) and "aspect_ratio" not in fields and "width" not in data:
        data.pop("aspect_ratio")
        data.update(sized(genq, engine, aspect=aspect))
    return data


def _wait_s(prefer: str) -> float | None:
    found = _PREFER_WAIT.search(prefer.lower())
    if found is None:
        return None
    n = found.group(1)
    return min(MAX_WAIT_S, max(1.0, float(n))) if n else MAX_WAIT_S


async def _create(
    request: Request, genq: Genq, caller: Principal, model: str, engine: str, body: PredictionBody
) -> Response:
    data = fit(genq, engine, _candidate(genq, engine, body.input), extra_input(request))
    md = {"compat": NAME, "model": model, "version": version_of(genq, engine)}
    job = await genq.jobs.submit(caller.account, engine, data, metadata=md, webhook=_webhook(body))
    wait = _wait_s(request.headers.get("prefer", ""))
    headers: dict[str, str] = {"Location": f"/compat/{NAME}/v1/predictions/{prediction_id(job.id)}"}
    account = caller.account
    hold = genq.holds.try_take(account.id, account.plan) if wait else None
    if wait is not None and hold is not None:
        with hold:
            item = genq.jobs.entry(job)
            deadline = asyncio.get_running_loop().time() + wait
            while item.status not in TERMINAL:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                item = await genq.jobs.wait_body(
                    account.id, job.id, seen=None, after_seq=item.seq, timeout=left
                )
        headers["Preference-Applied"] = f"wait={int(wait)}"
        body_out = await prediction(genq, account.id, job.id, inline=True)
    else:
        body_out = await prediction(genq, account.id, job.id)
    if wait is not None and body_out["status"] == "processing":
        body_out["status"] = "starting"  # not done in time: `replicate.run` polls on
    return Response(
        payloads.dumps(body_out), status_code=201, media_type="application/json", headers=headers
    )


async def _replay(genq: Genq, caller: Principal, job: Job) -> Response:
    body = await prediction(genq, caller.account.id, job["id"])
    return Response(payloads.dumps(body), status_code=201, media_type="application/json")


async def _predict(
    request: Request, genq: Genq, caller: Principal, owner: str | None, name: str | None
) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    if owner is not None and name is not None:
        body: PredictionBody = parse(PredictionBody, fields)
        model, engine = f"{owner}/{name}", engine_of_model(genq, owner, name)
    else:
        vbody = parse(VersionPrediction, fields)
        body = vbody
        if vbody.version:
            model, engine = engine_of_version(genq, vbody.version)
        elif vbody.model:
            o, _, n = vbody.model.partition("/")
            model, engine = vbody.model, engine_of_model(genq, o, n)
        else:
            raise BadRequest("version is required (or model, as owner/name)")
    return await _create(request, genq, caller, model, engine, body)


@router.post(
    "/v1/predictions",
    status_code=201,
    responses=_errors(400, 401, 402, 404, 409, 413, 422, 429),
    openapi_extra=request_body(VersionPrediction, parameters=[IDEMPOTENCY_KEY]),
    summary="Create a prediction",
)
async def create_prediction(request: Request, genq: App, caller: Creator) -> Response:
    return await idempotent(
        request,
        genq,
        caller,
        lambda: _predict(request, genq, caller, None, None),
        lambda job: _replay(genq, caller, job),
    )


@router.post(
    "/v1/models/{owner}/{name}/predictions",
    status_code=201,
    responses=_errors(400, 401, 402, 404, 409, 413, 422, 429),
    openapi_extra=request_body(PredictionBody, parameters=[IDEMPOTENCY_KEY]),
    summary="Create a prediction of a model",
)
async def create_model_prediction(
    owner: str, name: str, request: Request, genq: App, caller: Creator
) -> Response:
    return await idempotent(
        request,
        genq,
        caller,
        lambda: _predict(request, genq, caller, owner, name),
        lambda job: _replay(genq, caller, job),
    )


async def read_prediction(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    job_id = _job_id(params["prediction_id"])
    try:
        body = await prediction(genq, caller.account.id, job_id)
    except NotFound as exc:
        raise NotFound(f"Prediction {params['prediction_id']} not found") from exc
    return Response(payloads.dumps(body), media_type="application/json")


@router.get(
    "/v1/predictions/{prediction_id}",
    responses=_errors(401, 404, 429),
    summary="Get a prediction",
)
async def get_prediction(prediction_id: str, genq: App, caller: Caller) -> Response:
    return await read_prediction(genq, caller, {"prediction_id": prediction_id}, {})


@router.get("/v1/predictions", responses=_errors(400, 401, 429), summary="List predictions")
async def list_predictions(genq: App, caller: Caller, cursor: str | None = None) -> Response:
    after = job_id_of(cursor) if cursor else None
    if cursor and after is None:
        raise BadRequest(f"unknown cursor {cursor!r}")
    try:
        data, more = await genq.jobs.list(
            caller.account.id, status=[], engine=None, limit=PAGE, after=after
        )
    except InvalidInput as exc:  # a well-formed id this account never had
        raise BadRequest(f"unknown cursor {cursor!r}") from exc
    base = f"{genq.settings.base_url}/compat/{NAME}/v1/predictions"
    results = [render(job) for job in data if job["status"] in STATUS]  # (not expired ones)
    return Response(
        payloads.dumps(
            {
                "previous": None,
                "next": f"{base}?cursor={prediction_id(more)}" if more else None,
                "results": results,
            }
        ),
        media_type="application/json",
    )


@router.post(
    "/v1/predictions/{prediction_id}/cancel",
    responses=_errors(401, 404, 429),
    openapi_extra={  # the SDK sends no body; one sent is ignored
        "requestBody": {
            "required": False,
            "description": "None (ignored)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    summary="Cancel a prediction",
)
async def cancel_prediction(prediction_id: str, genq: App, caller: Caller) -> Response:
    job_id = _job_id(prediction_id)
    try:
        await genq.jobs.cancel(caller.account.id, job_id)
    except NotFound as exc:
        raise NotFound(f"Prediction {prediction_id} not found") from exc
    except GenqError as exc:
        if exc.status != 409:  # already ended: Replicate answers the prediction as it is
            raise
    body = await prediction(genq, caller.account.id, job_id)
    return Response(payloads.dumps(body), media_type="application/json")


def _sse(event: str, seq: int, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in (data.split("\n") or [""]))
    return f"event: {event}\nid: {seq}\n{lines}\n".encode()


async def _stream(genq: Genq, account_id: str, job_id: str, hold: Hold) -> AsyncIterator[bytes]:
    with hold:
        seq, sent, n = 0, 0, 0
        yield b"retry: 2000\n\n"
        while True:
            item = await genq.jobs.body(account_id, job_id)
            for ev in await genq.jobs.events_after(job_id, seq):
                seq = max(seq, ev.seq)
                for line in _log_lines([ev]):
                    n += 1
                    yield _sse("logs", n, line)
            job = await genq.jobs.canonical(account_id, job_id)
            files = _file_urls(job)
            for url in files[sent:]:
                n += 1
                yield _sse("output", n, url)
            sent = len(files)
            if item.status in TERMINAL:
                if job["status"] == "failed":
                    n += 1
                    yield _sse("error", n, str(render(job)["error"] or "failed"))
                n += 1
                reason = {"canceled": '{"reason": "canceled"}'}.get(job["status"], "{}")
                yield _sse("done", n, reason)
                return
            await genq.jobs.wait_body(account_id, job_id, seen=None, after_seq=item.seq, timeout=15)


@router.get(
    "/v1/predictions/{prediction_id}/stream",
    responses={
        200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}},
        **_errors(401, 404, 429),
    },
    summary="Stream a prediction's output and logs",
)
async def stream_prediction(prediction_id: str, genq: App, caller: Caller) -> Response:
    job_id = _job_id(prediction_id)
    try:
        await genq.jobs.canonical(caller.account.id, job_id)
    except NotFound as exc:
        raise NotFound(f"Prediction {prediction_id} not found") from exc
    hold = genq.holds.take(caller.account.id, caller.account.plan)  # 429 past the plan's
    return StreamingResponse(
        _stream(genq, caller.account.id, job_id, hold),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- models, account, webhooks --------------------------------------------------------


@router.get("/v1/models", responses=_errors(401, 429), summary="List models")
async def list_models(genq: App, caller: Caller) -> Response:
    results = [render_model(genq, m, e) for m, e in sorted(models(genq).items())]
    return Response(
        payloads.dumps({"previous": None, "next": None, "results": results}),
        media_type="application/json",
    )


@router.get("/v1/models/{owner}/{name}", responses=_errors(401, 404, 429), summary="Get a model")
async def get_model(owner: str, name: str, genq: App, caller: Caller) -> Response:
    engine = engine_of_model(genq, owner, name)
    return Response(
        payloads.dumps(render_model(genq, f"{owner}/{name}", engine)), media_type="application/json"
    )


@router.get(
    "/v1/models/{owner}/{name}/versions",
    responses=_errors(401, 404, 429),
    summary="List a model's versions",
)
async def list_versions(owner: str, name: str, genq: App, caller: Caller) -> Response:
    engine = engine_of_model(genq, owner, name)
    body = {"previous": None, "next": None, "results": [render_version(genq, engine)]}
    return Response(payloads.dumps(body), media_type="application/json")


@router.get(
    "/v1/models/{owner}/{name}/versions/{version_id}",
    responses=_errors(401, 404, 429),
    summary="Get a model version",
)
async def get_version(
    owner: str, name: str, version_id: str, genq: App, caller: Caller
) -> Response:
    engine = engine_of_model(genq, owner, name)
    if version_id != version_of(genq, engine):
        raise NotFound(f"Version {version_id} of {owner}/{name} not found")
    return Response(payloads.dumps(render_version(genq, engine)), media_type="application/json")


@router.get("/v1/account", responses=_errors(401, 429), summary="The account")
async def account(genq: App, caller: Caller) -> Response:
    acct = caller.account
    body = {"type": "organization", "username": acct.name, "name": acct.name, "github_url": None}
    return Response(payloads.dumps(body), media_type="application/json")


@router.get(
    "/v1/webhooks/default/secret",
    responses=_errors(401, 429),
    summary="The signing secret of webhooks",
)
async def webhook_secret(genq: App, caller: Caller) -> Response:
    secret = await genq.accounts.webhook_secret(caller.account.id)
    return Response(payloads.dumps({"key": secret}), media_type="application/json")


FAST_READS = [
    FastRead(f"/compat/{NAME}/v1/predictions/{{prediction_id}}", read_prediction, error_response)
]
