"""Masterpiece X face (`/compat/masterpiecex`, seed 000): 3D models and images.

- `POST /functions/general` `{prompt, seed?, texture_size?}`: text to 3D.
- `POST /functions/imageto3d` `{image_request_id | image_url, seed?, texture_size?}`.
  `image_request_id` is an asset's `requestId` (below), the `requestId` of a finished
  text2image request (its first image), a genq file id or `job_.../<output>`;
  `image_url` must be an output URL of this server (remote URLs are not fetched: 400).
- `POST /components/text2image` `{prompt, aspect_ratio?, lora_id?, megapixels? (1|2|4),
  num_images? (1-4), num_steps?, output_format? (png|jpg|webp), seed?}`. `lora_id` may
  name a genq trained model (`model_...`); `num_steps` is accepted and ignored.
- Create answers 200 `{"requestId", "status": "pending", "balance"}`.
- `GET /status/{requestId}`: `{requestId, status, progress}`, and only when complete
  `processingTime_s`, `outputUrl` and `outputs` (`{fbx, glb, usdz, thumbnail}` for 3D,
  a list of image URLs for text2image). Expired or unknown: 404.

Inferred shapes (nothing public confirmed them):
- `POST /assets/create` `{name?, type?, description?}` answers
  `{"assetId", "requestId", "assetUrl", "balance"}` (`assetId` == `requestId`, a genq
  file id). `assetUrl` is an expiring capability URL, signed with a key of the server's
  own (`Genq.secret`): `PUT` (or `POST`) the
  image bytes to it with no auth, as one would to a presigned bucket URL; it answers
  `{"assetId", "requestId", "status": "complete", "size"}`. The id is then usable as
  `image_request_id`.
- Errors: `{"error": <code>, "message": <text>}` with 400 (bad input), 401, 402 (plus
  `balance` and `needed`), 404, 409, 429 (with `Retry-After`).

Every route answers under `/compat/masterpiecex/v2/...` too: the service's base URL
ends in its API version (`/v2`), and a client that swaps only the host keeps it.

Routing keys (`settings.compat_engines`): `masterpiecex:functions/general`,
`masterpiecex:functions/imageto3d`, `masterpiecex:components/text2image`.
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, BinaryIO, Final, Literal, cast
from urllib.parse import urlencode

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from genq.accounts import Principal
from genq.api.compat._common import (
    Job,
    by_name,
    engine_for,
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
    read_body,
    retry_headers,
    sized,
)
from genq.api.compat._docs import BYTES, MasterpiecexError, errors
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
from genq.ids import new_id
from genq.store.records import Account

NAME: Final = "masterpiecex"
STATUS: Final[dict[str, str]] = {  # genq -> Masterpiece X; expired answers 404
    "queued": "pending",
    "starting": "dispatching",
    "running": "processing",
    "succeeded": "complete",
    "failed": "failed",
    "canceled": "failed",
}
ENGINES: Final[dict[str, str]] = {  # function -> default engine
    "functions/general": "demo/text-to-3d",
    "functions/imageto3d": "demo/image-to-3d",
    "components/text2image": "demo/text2image",
}
MODEL_OUTPUTS: Final = ("fbx", "glb", "usdz", "thumbnail")
BASE_SEGMENTS: Final = ("v2",)  # see genq.api.compat
ASSET_URL_TTL_S: Final = 24 * 3600
MEGAPIXEL: Final = 1024 * 1024
_ERRORS: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_credits",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "not_found",
    413: "too_large",
    415: "unsupported_media_type",
    422: "bad_request",
    429: "rate_limited",
}


def error_response(exc: GenqError) -> Response:
    status = exc.status
    message = exc.detail
    body: dict[str, Any] = {}
    if isinstance(exc, EngineNotFound):
        status, message = 400, f"this server has no engine for that function: {exc.detail}"
    elif isinstance(exc, InvalidInput):
        status, message = 400, first_error(exc)
        body["errors"] = exc.extra.get("errors", [])
    elif isinstance(exc, Expired | NotFound):
        status = 404
    elif isinstance(exc, InsufficientCredits):
        body.update({k: exc.extra[k] for k in ("balance", "needed") if k in exc.extra})
    body = {"error": _ERRORS.get(status, "error"), "message": message, **body}
    return json_response(body, status, retry_headers(exc))


router = face_router(f"/compat/{NAME}", NAME, error_response)
_CREATE = (400, 401, 402, 404, 408, 409, 413, 429)
_UPLOAD = (400, 401, 404, 408, 409, 413)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return errors(MasterpiecexError, *statuses)


def render(job: Job) -> dict[str, Any]:
    """A canonical job as Masterpiece X's status object (seed 000)."""
    if job["status"] not in STATUS:
        raise Expired(f"request {job['id']} has expired")
    status = STATUS[job["status"]]
    body: dict[str, Any] = {
        "requestId": job["id"],
        "status": status,
        "progress": 100.0 if status == "complete" else float(job.get("progress") or 0.0),
    }
    if status == "complete":
        named = by_name(job)
        if any(n in named for n in ("glb", "fbx", "usdz")):
            files = {n: named[n]["url"] for n in MODEL_OUTPUTS if n in named}
            primary = files.get("glb") or next(iter(files.values()))
            body["outputs"] = files
        else:
            images = [o["url"] for o in outputs(job, ("image",))]
            primary = images[0] if images else ""
            body["outputs"] = images
        body["outputUrl"] = primary
        body["processingTime_s"] = float(job.get("processing_time_s") or 0.0)
    return body


# -- requests -------------------------------------------------------------------------

Seed = Annotated[int | None, Field(default=None, ge=0, le=2**32 - 1)]
TextureSize = Literal[256, 512, 1024, 2048]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class General(_Body):
    prompt: str = Field(min_length=1, max_length=2000)
    seed: Seed = None
    texture_size: TextureSize | None = None


class ImageTo3D(_Body):
    image_request_id: str | None = Field(default=None, min_length=1, max_length=300)
    image_url: str | None = Field(default=None, min_length=1, max_length=2000)
    seed: Seed = None
    texture_size: TextureSize | None = None


class Text2Image(_Body):
    prompt: str = Field(min_length=1, max_length=2000)
    aspect_ratio: str | None = Field(default=None, max_length=10)
    lora_id: str | None = Field(default=None, max_length=100)
    megapixels: Literal[1, 2, 4] | None = None
    num_images: int = Field(default=1, ge=1, le=4)
    num_steps: int | None = Field(default=None, ge=1, le=100)
    output_format: Literal["png", "jpg", "jpeg", "webp"] = "png"
    seed: Seed = None


class AssetCreate(_Body):
    name: str | None = Field(default=None, max_length=200)
    type: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)


async def _submit(
    request: Request,
    genq: Genq,
    account: Account,
    function: str,
    candidate: dict[str, Any],
    model_id: str | None = None,
) -> Response:
    engine = engine_for(genq, f"{NAME}:{function}", ENGINES[function])
    data = fit(genq, engine, candidate, extra_input(request))
    job = await genq.jobs.submit(
        account, engine, data, model_id=model_id, metadata={"compat": NAME, "function": function}
    )
    balance = await genq.accounts.balance(account.id)
    return json_response({"requestId": job.id, "status": STATUS["queued"], "balance": balance})


def _once(
    request: Request, genq: Genq, caller: Principal, create: Callable[[], Awaitable[Response]]
) -> Awaitable[Response]:
    """`create` under the request's Idempotency-Key; a job whose first answer was lost
    is answered as a create answers."""

    async def replay(job: Job) -> Response:
        balance = await genq.accounts.balance(caller.account.id)
        status = STATUS.get(job["status"], STATUS["queued"])
        return json_response({"requestId": job["id"], "status": status, "balance": balance})

    return idempotent(request, genq, caller, create, replay)


@router.post(
    "/functions/general",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(General, parameters=[IDEMPOTENCY_KEY]),
    summary="Text to 3D",
)
async def general(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _general(request, genq, caller))


async def _general(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(General, fields)
    return await _submit(
        request, genq, caller.account, "functions/general", body.model_dump(exclude_none=True)
    )


@router.post(
    "/functions/imageto3d",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(ImageTo3D, parameters=[IDEMPOTENCY_KEY]),
    summary="Image to 3D",
)
async def imageto3d(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _imageto3d(request, genq, caller))


async def _imageto3d(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(ImageTo3D, fields)
    given = body.image_request_id or body.image_url
    if not given:
        raise invalid("image_request_id", "give image_request_id or image_url", "missing")
    field = "image_request_id" if body.image_request_id else "image_url"
    image = await image_ref(genq, caller.account.id, given, field)
    candidate = {"image": image, "seed": body.seed, "texture_size": body.texture_size}
    return await _submit(request, genq, caller.account, "functions/imageto3d", candidate)


@router.post(
    "/components/text2image",
    responses=_errors(*_CREATE),
    openapi_extra=request_body(Text2Image, parameters=[IDEMPOTENCY_KEY]),
    summary="Text to images",
)
async def text2image(request: Request, genq: App, caller: Creator) -> Response:
    return await _once(request, genq, caller, lambda: _text2image(request, genq, caller))


async def _text2image(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(Text2Image, fields)
    function = "components/text2image"
    engine = engine_for(genq, f"{NAME}:{function}", ENGINES[function])
    model_id = body.lora_id if body.lora_id and body.lora_id.startswith("model_") else None
    candidate: dict[str, Any] = {
        "prompt": body.prompt,
        "num_images": body.num_images,
        "seed": body.seed,
        "output_format": "jpeg" if body.output_format == "jpg" else body.output_format,
        "model_id": model_id,
        **sized(
            genq,
            engine,
            aspect=body.aspect_ratio,
            pixels=body.megapixels * MEGAPIXEL if body.megapixels else None,
        ),
    }
    return await _submit(request, genq, caller.account, function, candidate, model_id)


async def read_status(
    genq: Genq, caller: Principal, params: dict[str, str], query: dict[str, str]
) -> Response:
    job = await genq.jobs.canonical(caller.account.id, params["request_id"])
    return json_response(render(job))


@router.get("/status/{request_id}", responses=_errors(401, 404, 429), summary="Status of a request")
async def status(request_id: str, genq: App, caller: Caller) -> Response:
    return await read_status(genq, caller, {"request_id": request_id}, {})


FAST_READS = [FastRead(f"/compat/{NAME}/status/{{request_id}}", read_status, error_response)]


# -- assets (input images) ------------------------------------------------------------


SIGNING_KEY: Final = "masterpiecex-asset-url"  # the name of its server secret


async def _signature(
    genq: Genq, account_id: str, asset_id: str, name: str, ctype: str, expires: int
) -> str:
    """An upload URL's signature, by the server's own key (`Genq.secret`): nothing an
    account knows (its webhook secret, its API keys) can forge one."""
    key = await genq.secret(SIGNING_KEY)
    msg = "\n".join(("masterpiecex-asset", account_id, asset_id, name, ctype, str(expires)))
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


@router.post(
    "/assets/create",
    responses=_errors(400, 401, 408, 413, 429),
    openapi_extra=request_body(AssetCreate, required=False, parameters=[IDEMPOTENCY_KEY]),
    summary="Announce an input image; answers its upload URL",
)
async def create_asset(request: Request, genq: App, caller: Caller) -> Response:
    return await idempotent(request, genq, caller, lambda: _create_asset(request, genq, caller))


async def _create_asset(request: Request, genq: Genq, caller: Principal) -> Response:
    fields, _ = await read_body(request, genq.settings.max_json_bytes)
    body = parse(AssetCreate, fields)
    account_id = caller.account.id
    asset_id = new_id("file")
    name = body.name or "image"
    ctype = body.type or ""
    expires = int(time.time()) + ASSET_URL_TTL_S
    signature = await _signature(genq, account_id, asset_id, name, ctype, expires)
    query = urlencode(
        {
            "account": account_id,
            "name": name,
            "type": ctype,
            "expires": expires,
            "signature": signature,
        }
    )
    url = f"{genq.settings.base_url}/compat/{NAME}/assets/{asset_id}/content?{query}"
    balance = await genq.accounts.balance(account_id)
    return json_response(
        {"assetId": asset_id, "requestId": asset_id, "assetUrl": url, "balance": balance}
    )


@router.put(
    "/assets/{asset_id}/content",
    responses=_errors(*_UPLOAD),
    openapi_extra=BYTES,
    summary="Upload an asset's bytes (the signed assetUrl; no auth)",
)
@router.post(
    "/assets/{asset_id}/content",
    responses=_errors(*_UPLOAD),
    openapi_extra=BYTES,
    summary="Upload an asset's bytes (as PUT)",
)
async def upload_asset(
    asset_id: str,
    request: Request,
    genq: App,
    account: Annotated[str, Query()],
    name: Annotated[str, Query()],
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query()],
    type: Annotated[str, Query()] = "",
) -> Response:
    if not asset_id.startswith("file_"):
        raise NotFound("no such asset")
    expected = await _signature(genq, account, asset_id, name, type, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("the upload URL's signature does not match")
    if expires < time.time():
        raise Unauthorized("the upload URL has expired; create the asset again")
    if await genq.files.exists(asset_id):
        raise Conflict("this asset was already uploaded")
    ctype = type or request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        raise invalid("body", "send the image bytes as the body, not a multipart form")
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        record = await genq.files.save(
            account,
            cast(BinaryIO, spool),
            filename=name,
            content_type=ctype,
            purpose=f"{NAME}-asset",
            file_id=asset_id,
        )
    return json_response(
        {"assetId": record.id, "requestId": record.id, "status": "complete", "size": record.bytes}
    )
