"""OpenAI Images (https://platform.openai.com/docs/api-reference/images): `openai/<model>`
engines that make images with `POST /images/generations`.

    GENQ_UPSTREAMS='{"openai": {"base_url": "https://api.openai.com/v1", "api_key": "sk-...",
                                "models": ["gpt-image-1.5", "dall-e-3"]}}'

One engine per model of the option `models` (names, or `{name, cost?, description?}`;
default `DEFAULT_MODELS`). Its input is OpenAI's generate body without `model`:
`prompt`, `n` (1-10), `size` (`auto` or `WxH`), `quality`, `style`, `background`,
`output_format`, `moderation`. Options of this module: `response_format` (sent as is;
default: not sent, so GPT image models answer `b64_json` and DALL-E models `url`),
`organization` and `project` (the `OpenAI-Organization` / `OpenAI-Project` headers),
`headers` (more headers for every call), `create_timeout_s` (the create call's HTTP
timeout, default 600 s, as the official SDK's).

The API is synchronous: the create call answers with the images (`b64_json`, which
become `data:` URLs, or `url`s valid for an hour), so the job ends in the worker's slot
without a status call (see `genq.engines.upstream.tracker`). There is no job id (the
answer's `x-request-id` is kept as the upstream id), no status read, no cancel and no
webhook. A create whose answer was lost cannot be looked up: the job fails
`upstream_unknown` (refunded), unless the service honours `Idempotency-Key` (another
genq's face does: set `idempotent`), when it is sent again with the same key.

Errors `{"error": {message, type, param, code}}`: 401/403 -> upstream_unauthorized; 429
`insufficient_quota` -> upstream_insufficient_credits; other 429 -> upstream_rate_limited
(`Retry-After`); 400 `content_policy_violation` (or type `image_generation_user_error`)
-> moderated; other 4xx -> upstream_rejected; 409 with `Retry-After` (a twin request
in flight) and 5xx -> upstream_unavailable, except an answer with `x-should-retry:
false`, which is the job's own failure (upstream_failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.upstream.base import (
    FAILED,
    INSUFFICIENT,
    NOT_FOUND,
    UNAVAILABLE,
    Call,
    Created,
    EngineSpec,
    Provider,
    Remote,
    Snapshot,
    UpstreamError,
    error_by_status,
    message_of,
)

MODERATED: Final = "moderated"
DEFAULT_MODELS: Final = ("gpt-image-1.5", "gpt-image-1")
CONTENT_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    cost: float | None = None
    description: str = ""


def _model_of(entry: Any) -> Model:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"openai models: {entry!r} is neither a name nor a {{name, cost}}")
    name = entry["name"]
    if not _NAME.match(name):
        raise ValueError(f"openai models: {name!r} is not a model name")
    cost = entry.get("cost")
    return Model(
        name, float(cost) if cost is not None else None, str(entry.get("description") or "")
    )


class ImagesInput(BaseModel):
    """OpenAI's `POST /images/generations` body without `model`."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=32000, description="What to picture.")
    n: int = Field(default=1, ge=1, le=10, description="How many images (1-10).")
    size: str | None = Field(
        default=None,
        pattern=r"^(auto|\d{2,5}x\d{2,5})$",
        description="auto or WIDTHxHEIGHT (e.g. 1024x1024); the model's default if not given.",
    )
    quality: str | None = Field(default=None, max_length=20, description="e.g. low, high, hd.")
    style: Literal["vivid", "natural"] | None = Field(default=None, description="DALL-E 3.")
    background: Literal["transparent", "opaque", "auto"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    moderation: Literal["low", "auto"] | None = None


class OpenAI(Provider):
    name: ClassVar[str] = "openai"
    title: ClassVar[str] = "OpenAI"
    callbacks: ClassVar[bool] = False
    cancellable: ClassVar[bool] = False
    default_max_jobs: ClassVar[int] = 50

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        configured = options.get("models")
        entries = configured if isinstance(configured, list) and configured else DEFAULT_MODELS
        self.models = {m.name: m for m in (_model_of(e) for e in entries)}
        fmt = options.get("response_format")
        if fmt not in (None, "url", "b64_json"):
            raise ValueError("openai response_format must be url or b64_json")
        self.response_format: str | None = fmt
        self.create_timeout_s = float(options.get("create_timeout_s", 600))
        headers = dict(options.get("headers") or {})
        if options.get("organization"):
            headers["OpenAI-Organization"] = str(options["organization"])
        if options.get("project"):
            headers["OpenAI-Project"] = str(options["project"])
        self.headers = {str(k): str(v) for k, v in headers.items()}

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what=m.name,
                task="text2image",
                input_model=ImagesInput,
                media=("image",),
                description=m.description or f"OpenAI image model {m.name}.",
                cost=m.cost,
                typical_duration_s=30.0,
                poll_s=5.0,  # (never polled: the create call answers with the images)
            )
            for m in self.models.values()
        ]

    async def create(
        self,
        call: Call,
        what: str,
        data: BaseModel,
        *,
        reference: str,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> Created:
        if what not in self.models:
            raise UpstreamError("invalid_input", f"OpenAI model {what!r} is not configured here")
        body: dict[str, Any] = {"model": what, **data.model_dump(exclude_none=True)}
        if self.response_format is not None:
            body["response_format"] = self.response_format
        response = await call.request(
            "POST",
            "/images/generations",
            json=body,
            headers=self.headers or None,
            idempotency_key=idempotency_key,
        )
        answer = self.answer(response)
        upstream_id = response.headers.get("x-request-id") or f"created-{answer.get('created')}"
        return Created(upstream_id, snapshot(answer, body.get("output_format")))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        raise UpstreamError(
            NOT_FOUND,
            "OpenAI's Images API answers a request once; there is no way to read it again",
        )

    async def check(self, call: Call) -> str:
        body = self.answer(await call.request("GET", "/models", headers=self.headers or None))
        found = body.get("data")
        count = len(found) if isinstance(found, list) else 0
        return f"{self.title}: the key works ({count} models)"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        error: dict[str, Any] = {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
        code, kind = str(error.get("code") or ""), str(error.get("type") or "")
        said = message_of(response)
        message = f"{self.title}: {said}" if said else f"{self.title}: HTTP {status}"
        exc = error_by_status(response, message)
        if code == "insufficient_quota" or kind == "insufficient_quota":
            exc.code = INSUFFICIENT
        elif status == 400 and (
            code == "content_policy_violation" or kind == "image_generation_user_error"
        ):
            exc.code = MODERATED
        elif status == 409 and exc.retry_after is not None:
            exc.code = UNAVAILABLE  # a twin request (same Idempotency-Key) still in flight
        if status >= 500 and response.headers.get("x-should-retry") == "false":
            exc.code, exc.may_have_acted = FAILED, False  # the job's own failure
        return exc


def snapshot(answer: dict[str, Any], asked_format: Any = None) -> Snapshot:
    """An ImagesResponse as a finished job: each image a `data:` URL (`b64_json`) or
    the URL OpenAI gave."""
    items = answer.get("data")
    fmt = str(answer.get("output_format") or asked_format or "png")
    ctype = CONTENT_TYPES.get(fmt, f"image/{fmt}")
    outputs: list[Remote] = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        meta: dict[str, Any] = {}
        if isinstance(item.get("revised_prompt"), str):
            meta["revised_prompt"] = item["revised_prompt"][:2000]
        if isinstance(item.get("b64_json"), str) and item["b64_json"]:
            url, content_type = f"data:{ctype};base64,{item['b64_json']}", ctype
        elif isinstance(item.get("url"), str) and item["url"]:
            url, content_type = item["url"], None
        else:
            continue
        outputs.append(
            Remote(name=f"image_{i}", url=url, content_type=content_type, kind="image", meta=meta)
        )
    if not outputs:
        return Snapshot(
            state="failed", message="created", error_message="OpenAI answered with no image"
        )
    return Snapshot(state="succeeded", progress=100.0, message="created", outputs=tuple(outputs))


PROVIDER = OpenAI
