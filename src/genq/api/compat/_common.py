"""What the compat faces share: a router whose errors come out in the face's own shape,
request parsing (JSON or multipart), engine routing (`settings.compat_engines`),
fitting a provider's request to an engine's input, and readers of canonical jobs.

Every create endpoint of every face honours `Idempotency-Key` as `POST /v1/jobs` does
(`idempotent`), and one genq extension, the request header
`X-Genq-Input: {"delay_s": 0}`: a JSON object merged over the engine input
the face built (validated by the engine like the rest). Unchanged clients never send
it; tests and operators use it to reach engine options no provider field names.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from ulid import ULID

from genq import payloads
from genq.accounts import Principal
from genq.api.deps import idempotent_reply, reply_headers
from genq.api.middleware import too_large
from genq.core import Genq
from genq.errors import GenqError, InvalidInput
from genq.idempotency import IdempotencyKeyReused, Reply, request_hash
from genq.jobs import pydantic_errors

M = TypeVar("M", bound=BaseModel)
Job = dict[str, Any]  # a canonical job (DESIGN.md section 2) as a dict
ErrorRenderer = Callable[[GenqError], Response]
EXTRA_INPUT_HEADER = "x-genq-input"


def json_response(
    data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        payloads.dumps(data),  # rows stored before the depth checks render too
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def retry_headers(exc: GenqError) -> dict[str, str]:
    """The headers a domain error carries (Retry-After and RateLimit on 429)."""
    headers = exc.extra.get("headers")
    return dict(headers) if isinstance(headers, Mapping) else {}


def face_router(prefix: str, name: str, render_error: ErrorRenderer) -> APIRouter:
    """An APIRouter whose handlers' domain errors (auth, rate limits, validation,
    not found, ...) are answered by `render_error` in the provider's shape, not as
    genq's problem+json."""

    class FaceRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def route(request: Request) -> Response:
                try:
                    return await handler(request)
                except GenqError as exc:
                    return render_error(exc)
                except RequestValidationError as exc:
                    errors = [
                        {
                            "field": ".".join(str(p) for p in e.get("loc", ())),
                            "message": e.get("msg", ""),
                            "type": e.get("type", ""),
                        }
                        for e in exc.errors()
                    ]
                    return render_error(InvalidInput("the request is not valid", errors=errors))
                finally:
                    await request.close()  # the spooled files of a parsed form

            return route

    return APIRouter(prefix=prefix, tags=[f"compat: {name}"], route_class=FaceRoute)


class KeyReused(GenqError):
    """This Idempotency-Key was used with a different request."""

    status, code, title = 422, "idempotency_key_reused", "Idempotency key reused"


_NOT_REPLAYED = frozenset(("content-length",))


async def idempotent(
    request: Request,
    genq: Genq,
    caller: Principal,
    create: Callable[[], Awaitable[Response]],
    replay: Callable[[Job], Awaitable[Response]] | None = None,
) -> Response:
    """A face's create under its `Idempotency-Key`, as `POST /v1/jobs` (see
    `genq.api.deps.idempotent_reply`): the same key and body get the first answer again
    (headers and all, plus `Idempotent-Replayed: true`) and make nothing more; another
    body is 422, a twin still in flight 409 with `Retry-After`, each in the face's shape.
    `replay(job)`: the face's create answer for a job whose first answer was lost."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await create()
    raw = await request.body()  # kept: the handler reads it (or its form) from here

    async def run() -> Reply:
        response = await create()
        headers = {k: v for k, v in response.headers.items() if k not in _NOT_REPLAYED}
        return Reply(response.status_code, headers, bytes(response.body))

    async def replay_job(job_id: str) -> Reply:
        assert replay is not None
        response = await replay(await genq.jobs.canonical(caller.account.id, job_id))
        headers = {k: v for k, v in response.headers.items() if k not in _NOT_REPLAYED}
        return Reply(response.status_code, headers, bytes(response.body), replayed=True)

    try:
        reply = await idempotent_reply(
            genq,
            caller,
            key,
            lambda: request_hash(request.method, request.url.path, raw),
            run,
            replay_job if replay is not None else None,
        )
    except IdempotencyKeyReused as exc:
        raise KeyReused(exc.detail) from exc
    return Response(reply.body, status_code=reply.status_code, headers=reply_headers(reply))


def invalid(field: str, message: str, type_: str = "value_error") -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": type_}]
    )


def first_error(exc: InvalidInput) -> str:
    """A one-line message for an InvalidInput: its first field error, or its detail."""
    errors = exc.extra.get("errors") or []
    if errors:
        e = errors[0]
        field = str(e.get("field", "")).removeprefix("body.")
        return f"{field}: {e.get('message', '')}" if field else str(e.get("message", ""))
    return exc.detail


# -- requests -------------------------------------------------------------------------


class JsonFields(dict[str, Any]):
    """A body's fields that came as JSON: typed already, so `parse` validates them
    strictly (`false` is no integer); a form's fields are text and are coerced."""


async def form_items(request: Request) -> list[tuple[str, str | UploadFile]]:
    """A multipart or url-encoded form's items; a malformed form is a 400 in the
    face's shape (the files are closed when the request ends, see `face_router`)."""
    try:
        form = await request.form()
    except StarletteHTTPException as exc:
        raise invalid("body", f"not a readable form: {exc.detail}", "form_invalid") from exc
    return list(form.multi_items())


async def read_body(
    request: Request, max_bytes: int
) -> tuple[dict[str, Any], dict[str, UploadFile]]:
    """The request's fields and uploaded files: a JSON object, or a multipart /
    url-encoded form. An empty body is no fields."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields: dict[str, Any] = {}
        files: dict[str, UploadFile] = {}
        for key, value in await form_items(request):
            if isinstance(value, UploadFile):
                files.setdefault(key, value)
            else:
                fields[key] = value
        return fields, files
    raw = await request.body()
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if not raw.strip():
        return {}, {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid("body", f"not valid JSON: {exc}", "json_invalid") from exc
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object", "type_error")
    return JsonFields(data), {}


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(dict(data), strict=isinstance(data, JsonFields))
    except ValidationError as exc:
        raise InvalidInput(
            "the request body is not valid", errors=pydantic_errors(exc, "body")
        ) from exc


def extra_input(request: Request) -> dict[str, Any]:
    """The `X-Genq-Input` extension header (see the module docstring)."""
    raw = request.headers.get(EXTRA_INPUT_HEADER)
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid("X-Genq-Input", f"not valid JSON: {exc}", "json_invalid") from exc
    if not isinstance(data, dict):
        raise invalid("X-Genq-Input", "must be a JSON object", "type_error")
    return data


# -- engines --------------------------------------------------------------------------


def engine_for(genq: Genq, key: str, default: str) -> str:
    """The engine serving a face's function, verb or model: `settings.compat_engines`
    (the operator's routing table), else the face's default."""
    return genq.settings.compat_engines.get(key, default)


@cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def engine_fields(genq: Genq, engine_name: str) -> dict[str, Any]:
    """The JSON Schema properties of an engine's input (raises EngineNotFound)."""
    props: dict[str, Any] = _schema(genq.jobs.engine(engine_name).input_model).get("properties", {})
    return props


def fit(
    genq: Genq,
    engine_name: str,
    candidate: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The engine input: the face's candidate fields that the engine accepts (a
    provider field the engine has no use for is dropped, None values too), then the
    `X-Genq-Input` extras on top."""
    fields = engine_fields(genq, engine_name)
    data = {k: v for k, v in candidate.items() if k in fields and v is not None}
    data.update(extra or {})
    return data


def _ratio(aspect: str | None) -> float:
    if not aspect:
        return 1.0
    w, _, h = aspect.partition(":")
    try:
        ratio = float(w) / float(h)
    except (ValueError, ZeroDivisionError):
        raise invalid("aspect_ratio", f"not a ratio like 16:9: {aspect!r}") from None
    if not 0.1 <= ratio <= 10:
        raise invalid("aspect_ratio", f"out of range: {aspect!r}")
    return ratio


def sized(
    genq: Genq,
    engine_name: str,
    *,
    aspect: str | None = None,
    pixels: float | None = None,
    long_side: int | None = None,
    short_side: int | None = None,
    area_scale: float = 1.0,
) -> dict[str, int]:
    """`width` and `height` for the engine from an aspect ratio and a size given as a
    pixel count, a long side or a short side (default: the engine's default area
    times `area_scale`), rounded to the engine's multiple and kept inside its limits.
    Empty when the engine has no width/height or nothing was asked."""
    fields = engine_fields(genq, engine_name)
    if "width" not in fields or "height" not in fields:
        return {}
    if (
        aspect is None
        and pixels is None
        and long_side is None
        and short_side is None
        and area_scale == 1.0
    ):
        return {}
    wf, hf = fields["width"], fields["height"]
    step = int(wf.get("multipleOf", 1))
    lo = max(int(wf.get("minimum", 1)), int(hf.get("minimum", 1)))
    hi = min(int(wf.get("maximum", 4096)), int(hf.get("maximum", 4096)))
    ratio = _ratio(aspect)
    if long_side is not None:
        w, h = (long_side, long_side / ratio) if ratio >= 1 else (long_side * ratio, long_side)
    elif short_side is not None:
        w, h = (short_side * ratio, short_side) if ratio >= 1 else (short_side, short_side / ratio)
    else:
        area = pixels or (
            float(wf.get("default", 512)) * float(hf.get("default", 512)) * area_scale
        )
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
    shrink = min(1.0, hi / max(w, h))
    w, h = w * shrink, h * shrink

    def snap(v: float) -> int:
        return int(min(hi, max(lo, round(v / step) * step)))

    return {"width": snap(w), "height": snap(h)}


def snap_side(genq: Genq, engine_name: str, field: str, value: int | None) -> int | None:
    """A width or height the client chose, rounded to the engine's multiple and kept
    inside its limits (providers take any integer; engines are stricter)."""
    fields = engine_fields(genq, engine_name)
    if value is None or field not in fields:
        return value
    f = fields[field]
    step = int(f.get("multipleOf", 1))
    lo, hi = int(f.get("minimum", 1)), int(f.get("maximum", 1 << 16))
    return int(min(hi, max(lo, round(value / step) * step)))


def is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


# -- canonical jobs -------------------------------------------------------------------


def job_uuid(job_id: str) -> str:
    """The UUID a face shows for a job where its provider's ids are UUIDs (Vivix, fal,
    Runway): the 128 bits of the job's ULID, so nothing is stored to map them."""
    try:
        return str(ULID.from_str(job_id.removeprefix("job_")).to_uuid())
    except ValueError:  # not a ULID (no job genq made)
        return job_id


def job_of_uuid(given: str) -> str | None:
    """The job a client's id names: such a UUID (in any of its spellings) or a job id
    as is; None for neither."""
    if given.startswith("job_"):
        return given
    try:
        return f"job_{ULID.from_bytes(uuid.UUID(given).bytes)}"
    except ValueError:
        return None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def iso_seconds(value: str | None) -> str | None:
    """`2026-05-10T12:34:56.789Z` as `2026-05-10T12:34:56Z` (no milliseconds)."""
    return value.split(".")[0] + "Z" if value and "." in value else value


def ms_between(start: str | None, end: str | None = None) -> int:
    """Milliseconds from `start` to `end` (default: now)."""
    a = parse_time(start)
    if a is None:
        return 0
    b = parse_time(end) or datetime.now(UTC)
    return max(0, int((b - a).total_seconds() * 1000))


def outputs(job: Job, kinds: Iterable[str]) -> list[dict[str, Any]]:
    wanted = set(kinds)
    return [o for o in job.get("outputs") or [] if o.get("kind") in wanted]


def by_name(job: Job) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in job.get("outputs") or []}


def error_code(job: Job) -> str | None:
    err = job.get("error")
    return str(err["code"]) if isinstance(err, dict) and err.get("code") else None


def error_message(job: Job) -> str | None:
    err = job.get("error")
    return str(err["message"]) if isinstance(err, dict) and err.get("message") else None


def file_ref_for(job: Job, *, kinds: Iterable[str] = ("image",), field: str = "image") -> str:
    """`job_.../<output name>`: the job's first output of `kinds`, as an engine file
    reference (raises InvalidInput when it has none or has not succeeded)."""
    if job["status"] != "succeeded":
        raise invalid(field, f"job {job['id']} is {job['status']}, not complete")
    found = outputs(job, kinds)
    if not found:
        raise invalid(field, f"job {job['id']} has no image output")
    return f"{job['id']}/{found[0]['name']}"


def output_ref_for_url(job: Job, url: str) -> str | None:
    """The `job_.../<name>` reference of one of the job's own output URLs."""
    for o in job.get("outputs") or []:
        if o.get("url") == url:
            return f"{job['id']}/{o['name']}"
    return None


def job_id_in_output_url(genq: Genq, url: str) -> str | None:
    """The job id of a public output URL of this server (`{base}/files/{job}/...`)."""
    prefix = f"{genq.settings.base_url}/files/"
    if not url.startswith(prefix):
        return None
    job_id = url[len(prefix) :].split("/", 1)[0]
    return job_id if job_id.startswith("job_") else None


async def image_ref(genq: Genq, account_id: str, value: str, field: str) -> str:
    """An engine file reference for an image a client named: an uploaded file id
    (`file_...`), an output reference (`job_.../<name>`), a job id (its first image),
    or a public output URL of this server. Other URLs are refused with a clear 4xx:
    this server does not fetch remote inputs (were it to, `genq.netsafe.resolve` would
    have to vet the address first)."""
    value = value.strip()
    if value.startswith("file_") or (value.startswith("job_") and "/" in value):
        return value
    job_id: str | None = value if value.startswith("job_") else None
    if job_id is None and is_url(value):
        job_id = job_id_in_output_url(genq, value)
        if job_id is None:
            raise invalid(
                field,
                "remote image URLs are not fetched by this server; upload "
                "the image and pass its id instead",
                "url_not_supported",
            )
    if job_id is None:
        raise invalid(field, f"no such image {value!r}", "not_found")
    try:
        job = await genq.jobs.canonical(account_id, job_id)
    except GenqError as exc:
        raise invalid(field, f"no such image {value!r}", "not_found") from exc
    if is_url(value):
        ref = output_ref_for_url(job, value)
        if ref is None:
            raise invalid(field, f"no such image {value!r}", "not_found")
        return ref
    return file_ref_for(job, kinds=("image", "thumbnail"), field=field)
