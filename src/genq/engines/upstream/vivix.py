"""Vivix Atelier (https://vivix-atelier.vercel.app, seed 003): images and videos by model.

One engine per model, `vivix/<model>`, known at startup without a network call: the
option `models` (a list of names, or of `{name, kind: image|video, resolutions?,
durations?: [min, max], audio?, cost?}`), else `DEFAULT_MODELS` (those genq's face and
Vivix's docs name). A model's kind, when not given, is `video` if its name says so.

- `POST /api/v1/generate` `{model, prompt (<=2000), negative_prompt? (<=500),
  aspect_ratio? (1:1|4:5|9:16|16:9), resolution? (image 1K|2K|4K, video
  720p|1080p|2160p, each model a subset), duration? (video, seconds), audio? (video),
  reference_images? (<=3 URLs), seed?, number_results? (1-4, image only)}` -> 201
  `{generation_id, status: "pending", model, credits_estimate, created_at}`.
- `GET /api/v1/generations/{id}`: `pending` -> queued, `processing` -> running,
  `completed` -> succeeded (outputs from `output_urls`, else `output_url`; public
  URLs), `failed` -> failed (`error` and `message`; refunded upstream).
- `GET /api/v1/credits`: `{balance, tier, rate_limit: {calls_per_minute,
  concurrent_jobs}}` (the `check`).

Errors `{error: CODE, message, ...}`: 401 `UNAUTHORIZED`/`KEY_INVALID`/`KEY_REVOKED`
and 403 `TIER_LOCKED` -> upstream_unauthorized; 402 `INSUFFICIENT_CREDITS` ->
upstream_insufficient_credits; 403 `NOT_YOURS` and 404 `NOT_FOUND` ->
upstream_not_found; 403 `MODEL_NOT_ALLOWED` and 400 -> upstream_rejected; 429
(`Retry-After`) and 429 `CONCURRENCY_LIMIT` -> upstream_rate_limited; 5xx
(`PROVIDER_DOWN`: retry after 60 s) -> upstream_unavailable.

Reference images: Vivix takes URLs it fetches itself (no upload endpoint is documented),
so the input takes http(s) URLs, e.g. an `output_url` of an earlier generation.
Limits: 240 calls a minute on Pro (600 on Ultimate: the `rate_per_min` option), polls
included; 5 generations in flight on Pro (20 on Ultimate). Polling advice: 2 s for
images, 4 s for video. There is no cancel endpoint and no lookup by a client reference.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model

from genq.engines.contract import OutputKind
from genq.engines.upstream.base import (
    INSUFFICIENT,
    NOT_FOUND,
    RATE_LIMITED,
    REJECTED,
    UNAUTHORIZED,
    UNAVAILABLE,
    Call,
    Created,
    EngineSpec,
    Provider,
    Remote,
    Snapshot,
    State,
    UpstreamError,
    error_by_status,
    message_of,
)

Kind = Literal["image", "video"]
STATES: Final[dict[str, State]] = {
    "pending": "queued",
    "processing": "running",
    "completed": "succeeded",
    "failed": "failed",
}
IMAGE_RESOLUTIONS: Final = ("1K", "2K", "4K")
VIDEO_RESOLUTIONS: Final = ("720p", "1080p", "2160p")
ASPECT_RATIOS: Final = ("1:1", "4:5", "9:16", "16:9")
# error word -> genq code (the status decides for the others)
CODES: Final[dict[str, str]] = {
    "UNAUTHORIZED": UNAUTHORIZED,
    "KEY_INVALID": UNAUTHORIZED,
    "KEY_REVOKED": UNAUTHORIZED,
    "TIER_LOCKED": UNAUTHORIZED,
    "INSUFFICIENT_CREDITS": INSUFFICIENT,
    "NOT_FOUND": NOT_FOUND,
    "NOT_YOURS": NOT_FOUND,
    "MODEL_NOT_ALLOWED": REJECTED,
    "UNKNOWN_MODEL": REJECTED,
    "RATE_LIMITED": RATE_LIMITED,
    "CONCURRENCY_LIMIT": RATE_LIMITED,
    "PROVIDER_DOWN": UNAVAILABLE,
    "INTERNAL_ERROR": UNAVAILABLE,
}
PROVIDER_DOWN_RETRY_S: Final = 60.0  # "Retry after 60s" (Vivix's errors page)
_CONTENT_TYPES: Final = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".mp4", ".webm", ".mov"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Model:
    """What genq knows of one Vivix model without asking Vivix."""

    name: str
    kind: Kind
    resolutions: tuple[str, ...]
    durations: tuple[int, int] = (2, 10)  # video: seconds, min and max
    audio: bool = True  # video: may ask for a synced audio track
    cost: float | None = None  # credits per generation (the top of its band)
    description: str = ""


DEFAULT_MODELS: Final[tuple[Model, ...]] = (
    Model(
        "grok-imagine-image-quality",
        "image",
        IMAGE_RESOLUTIONS,
        cost=211,  # credits_band 80-211 (Vivix's model list)
        description="Grok Imagine Image Quality (xAI): photorealistic stills up to 4K.",
    ),
    Model(
        "grok-imagine-image",
        "image",
        IMAGE_RESOLUTIONS,
        description="Grok Imagine Image (xAI): stills.",
    ),
    Model(
        "grok-imagine-video",
        "video",
        ("720p", "1080p"),
        description="Grok Imagine Video (xAI): short videos.",
    ),
    Model(
        "wan-2.7-text-to-video",
        "video",
        ("720p", "1080p"),
        durations=(2, 10),
        cost=1440,  # credits_band 400-1440
        description="Wan 2.7 Text to Video (Alibaba): up to 10 seconds.",
    ),
)

Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://\S+$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _model_of(entry: Any) -> Model:
    """One entry of the `models` option as a Model (ValueError when malformed)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"vivix models: {entry!r} is neither a name nor a {{name, kind}}")
    name = entry["name"]
    if not _NAME.match(name):
        raise ValueError(f"vivix models: {name!r} is not a model name")
    known = {m.name: m for m in DEFAULT_MODELS}.get(name)
    kind = entry.get("kind") or (known.kind if known else None)
    if kind is None:
        kind = "video" if "video" in name.lower() else "image"
    if kind not in ("image", "video"):
        raise ValueError(f"vivix models: {name}: kind must be image or video")
    default_res = (
        known.resolutions
        if known
        else (IMAGE_RESOLUTIONS if kind == "image" else VIDEO_RESOLUTIONS)
    )
    resolutions = tuple(str(r) for r in entry.get("resolutions") or default_res)
    durations = entry.get("durations") or (known.durations if known else (2, 10))
    lo, hi = int(durations[0]), int(durations[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"vivix models: {name}: durations must be [min, max] seconds")
    cost = entry.get("cost", known.cost if known else None)
    return Model(
        name=name,
        kind=cast(Kind, kind),
        resolutions=resolutions,
        durations=(lo, hi),
        audio=bool(entry.get("audio", known.audio if known else True)),
        cost=float(cost) if cost is not None else None,
        description=str(entry.get("description") or (known.description if known else "")),
    )


def input_model(model: Model) -> type[BaseModel]:
    """The engine input of one model: Vivix's generate body without `model`."""
    enum = cast(Any, Literal)
    fields: dict[str, Any] = {
        "prompt": (str, Field(min_length=1, max_length=2000, description="Up to 2000 chars.")),
        "negative_prompt": (
            str | None,
            Field(default=None, max_length=500, description="What to avoid (up to 500 chars)."),
        ),
        "aspect_ratio": (
            enum[ASPECT_RATIOS] | None,
            Field(default=None, description="1:1, 4:5, 9:16 or 16:9 (default: the model's)."),
        ),
        "resolution": (
            enum[model.resolutions] | None,
            Field(default=None, description=f"One of {', '.join(model.resolutions)}."),
        ),
        "reference_images": (
            list[Url] | None,
            Field(
                default=None,
                max_length=3,
                description="Up to 3 URLs of reference images (Vivix fetches them), e.g. an "
                "output_url of an earlier generation.",
            ),
        ),
        "seed": (
            int | None,
            Field(default=None, ge=0, le=2**32 - 1, description="Same seed, same result."),
        ),
    }
    if model.kind == "image":
        fields["number_results"] = (
            int,
            Field(default=1, ge=1, le=4, description="Variations in one call (1-4)."),
        )
    else:
        lo, hi = model.durations
        fields["duration"] = (
            int | None,
            Field(default=None, ge=lo, le=hi, description=f"Seconds ({lo}-{hi})."),
        )
        if model.audio:
            fields["audio"] = (
                bool | None,
                Field(default=None, description="A synced audio track (default false)."),
            )
    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", model.name) if p)
    built: type[BaseModel] = create_model(f"Vivix{camel}Input", __base__=_Input, **fields)
    return built


def _content_type(url: str) -> str | None:
    path = httpx.URL(url).path.lower()
    ext = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    return mimetypes.types_map.get(ext) if ext in _CONTENT_TYPES else None


class Vivix(Provider):
    name: ClassVar[str] = "vivix"
    title: ClassVar[str] = "Vivix Atelier"
    callbacks: ClassVar[bool] = False
    cancellable: ClassVar[bool] = False  # no cancel endpoint is documented
    default_max_jobs: ClassVar[int] = 5  # Pro: 5 in flight (Ultimate 20)
    default_rate_per_min: ClassVar[int | None] = 240  # Pro (Ultimate 600), polls included

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.models: dict[str, Model] = self.configured(
            "models", _model_of, DEFAULT_MODELS, lambda m: m.name
        )
        self._inputs = {n: input_model(m) for n, m in self.models.items()}

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what=m.name,
                task="text2image" if m.kind == "image" else "text2video",
                input_model=self._inputs[m.name],
                media=(m.kind,),
                description=m.description or f"Vivix Atelier model {m.name} ({m.kind}).",
                cost=m.cost,
                typical_duration_s=12.0 if m.kind == "image" else 90.0,
                poll_s=2.0 if m.kind == "image" else 4.0,
            )
            for m in self.models.values()
        ]

    def _model(self, what: str) -> Model:
        model = self.models.get(what)
        if model is None:
            raise UpstreamError("invalid_input", f"Vivix Atelier has no model {what!r} here")
        return model

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
        self._model(what)
        body: dict[str, Any] = {"model": what}
        body.update(data.model_dump(exclude_none=True))
        response = await call.request(
            "POST", "/api/v1/generate", json=body, idempotency_key=idempotency_key
        )
        answer = self.answer(response)
        gid = answer.get("generation_id")
        if not isinstance(gid, str) or not gid:
            raise UpstreamError(UNAVAILABLE, "Vivix Atelier answered without a generation_id")
        word = str(answer.get("status") or "pending").lower()
        return Created(gid, Snapshot(state=STATES.get(word, "queued"), message=word))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        model = self.models.get(what)
        response = await call.request("GET", f"/api/v1/generations/{upstream_id}")
        body = self.answer(response)
        word = str(body.get("status") or "").lower()
        state = STATES.get(word, "running")  # an unknown word is no end
        if state == "failed":
            code = str(body.get("error") or "PROVIDER_ERROR")
            said = str(body.get("message") or "the generation failed")
            return Snapshot(state="failed", message=word, error_message=f"{code}: {said}")
        if state != "succeeded":
            return Snapshot(state=state, message=word or None)
        urls = [u for u in body.get("output_urls") or [] if isinstance(u, str) and u]
        if not urls and isinstance(body.get("output_url"), str) and body["output_url"]:
            urls = [body["output_url"]]
        kind: OutputKind | None = model.kind if model else None
        stem = kind or "output"
        outputs = tuple(
            Remote(name=f"{stem}_{i}", url=url, content_type=_content_type(url), kind=kind)
            for i, url in enumerate(urls, start=1)
        )
        return Snapshot(state="succeeded", progress=100.0, message=word, outputs=outputs)

    async def check(self, call: Call) -> str:
        body = self.answer(await call.request("GET", "/api/v1/credits"))
        found = body.get("rate_limit")
        limits: dict[str, Any] = found if isinstance(found, dict) else {}
        parts = [f"balance {body.get('balance')}", f"tier {body.get('tier')}"]
        if limits.get("calls_per_minute") is not None:
            parts.append(f"{limits['calls_per_minute']} calls/min")
        if limits.get("concurrent_jobs") is not None:
            parts.append(f"{limits['concurrent_jobs']} jobs at once")
        return f"{self.title}: " + ", ".join(parts)

    def error_of(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        word, extra = "", ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):
                word = body["error"].upper()
            if "balance" in body or "needed" in body:
                extra = f" (balance {body.get('balance')}, needed {body.get('needed')})"
        said = message_of(response)
        if said == word.lower() or said.upper() == word:
            said = ""
        message = f"{self.title}: {word or f'HTTP {status}'}" + (f": {said}" if said else "")
        error = error_by_status(response, message + extra)
        if word in CODES:
            error.code = CODES[word]
        elif status == 404:
            error.code = NOT_FOUND
        elif status == 409 and error.retry_after is not None:
            error.code = UNAVAILABLE  # a twin request still in flight
        if word == "PROVIDER_DOWN" and error.retry_after is None:
            error.retry_after = PROVIDER_DOWN_RETRY_S
        return error


PROVIDER = Vivix
