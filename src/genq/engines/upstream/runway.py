"""Runway (https://docs.dev.runwayml.com): videos from an image, images from text.

One engine per model, `runway/<model>`, known at startup without a network call: the
option `models` (a list of names, or of `{name, kind: image|video, ratios?,
durations?: [min, max], cost?}`), else every model of `DEFAULT_MODELS`. A model's kind,
ratios, durations and cost come from that table when it names the model; a model it
does not know is a video model unless its name says `image` (or `kind` says otherwise).

- `POST /v1/image_to_video` `{model, promptImage, promptText?, ratio, duration?,
  seed?}` (video models) and `POST /v1/text_to_image` `{model, promptText, ratio,
  referenceImages?: [{uri}], seed?}` (image models) -> `{"id", "estimatedCost"}`.
  Every request sends `X-Runway-Version: 2024-11-06`.
- `GET /v1/tasks/{id}`: `PENDING` -> queued, `THROTTLED` -> queued (the message says
  so), `RUNNING` -> running (`progress` 0-1 as percent), `SUCCEEDED` -> succeeded
  (`output`: URLs, copied into genq's storage), `FAILED` -> failed (`failureCode`
  `SAFETY...` -> moderated, else `failure`), `CANCELLED` -> canceled.
- `DELETE /v1/tasks/{id}`: cancels a task that has not ended (`cancellable`).
- `GET /v1/organization`: `{creditBalance, tier}` (the `check`).

Runway has no webhooks: jobs are polled, at most every 5 s as its docs ask (`poll_s`).
Images go as data URIs (Runway takes `data:image/...;base64,` up to 5 MB; a larger genq
file is refused before any call), or as an https URL Runway fetches (`image_url`).
Errors are `{"error": "...", "issues"?: [...]}`: 401 -> upstream_unauthorized, 400
"not enough credits" (and 402) -> upstream_insufficient_credits, 404 ->
upstream_not_found, 429 -> upstream_rate_limited, other 4xx -> upstream_rejected, 5xx
-> upstream_unavailable.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from genq.engines.contract import FileRef, OutputKind
from genq.engines.upstream.base import (
    INSUFFICIENT,
    NOT_FOUND,
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

TITLE: Final = "Runway"
VERSION: Final = "2024-11-06"
Kind = Literal["image", "video"]
STATES: Final[dict[str, State]] = {
    "PENDING": "queued",
    "THROTTLED": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "CANCELLED": "canceled",
}
MAX_DATA_URI: Final = 5 * 1024 * 1024  # Runway's limit on a data URI (its docs)
POLL_S: Final = 5.0  # "no more frequent than once every five seconds" (tasks.retrieve)
GEN4_VIDEO_RATIOS: Final = ("1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672")
GEN4_IMAGE_RATIOS: Final = (
    "1920:1080",
    "1080:1920",
    "1024:1024",
    "1080:1080",
    "1168:880",
    "1360:768",
    "1440:1080",
    "1080:1440",
    "1808:768",
    "2112:912",
    "1280:720",
    "720:1280",
    "720:720",
    "960:720",
    "720:960",
    "1680:720",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_IMAGE_TYPES: Final = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"RIFF": "image/webp",
}


@dataclass(frozen=True, slots=True)
class Model:
    """What genq knows of one Runway model without asking Runway."""

    name: str
    kind: Kind
    ratios: tuple[str, ...]
    durations: tuple[int, int] = (2, 10)  # video: seconds, min and max
    cost: float | None = None  # Runway credits per task (the most it costs)
    description: str = ""
    min_references: int = 0  # image: reference images it needs (gen4_image_turbo: 1)


DEFAULT_MODELS: Final[tuple[Model, ...]] = (
    Model(
        "gen4_turbo",
        "video",
        GEN4_VIDEO_RATIOS,
        cost=50,  # 5 credits a second, up to 10 s
        description="Runway Gen-4 Turbo: a video from an image (2-10 s).",
    ),
    Model(
        "gen3a_turbo",
        "video",
        ("1280:768", "768:1280"),
        durations=(5, 10),
        cost=50,
        description="Runway Gen-3 Alpha Turbo: a video from an image (5 or 10 s).",
    ),
    Model(
        "gen4_image",
        "image",
        GEN4_IMAGE_RATIOS,
        cost=8,  # 5 at 720p, 8 at 1080p
        description="Runway Gen-4 Image: an image from text, up to 3 reference images.",
    ),
    Model(
        "gen4_image_turbo",
        "image",
        GEN4_IMAGE_RATIOS,
        cost=2,
        description="Runway Gen-4 Image Turbo: an image from text and 1-3 reference images.",
        min_references=1,
    ),
)

HttpsUrl = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https://\S+$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _VideoInput(_Input):
    @model_validator(mode="after")
    def _one_image(self) -> _VideoInput:
        image, url = getattr(self, "image", None), getattr(self, "image_url", None)
        if (image is None) == (url is None):
            raise ValueError("give exactly one of `image` (a genq file) and `image_url` (https)")
        return self


def _model_of(entry: Any) -> Model:
    """One entry of the `models` option as a Model (ValueError when malformed)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"runway models: {entry!r} is neither a name nor a {{name, kind}}")
    name = entry["name"]
    if not _NAME.match(name):
        raise ValueError(f"runway models: {name!r} is not a model name")
    known = {m.name: m for m in DEFAULT_MODELS}.get(name)
    kind = entry.get("kind") or (known.kind if known else None)
    if kind is None:
        kind = "image" if "image" in name.lower() else "video"
    if kind not in ("image", "video"):
        raise ValueError(f"runway models: {name}: kind must be image or video")
    default_ratios = known.ratios if known and known.kind == kind else ()
    if not default_ratios:
        default_ratios = GEN4_IMAGE_RATIOS if kind == "image" else GEN4_VIDEO_RATIOS
    ratios = tuple(str(r) for r in entry.get("ratios") or default_ratios)
    if not ratios or not all(re.match(r"^\d+:\d+$", r) for r in ratios):
        raise ValueError(f"runway models: {name}: ratios must be like 1280:720")
    durations = entry.get("durations") or (known.durations if known else (2, 10))
    lo, hi = int(durations[0]), int(durations[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"runway models: {name}: durations must be [min, max] seconds")
    cost = entry.get("cost", known.cost if known else None)
    return Model(
        name=name,
        kind=cast(Kind, kind),
        ratios=ratios,
        durations=(lo, hi),
        cost=float(cost) if cost is not None else None,
        description=str(entry.get("description") or (known.description if known else "")),
        min_references=int(entry.get("min_references", known.min_references if known else 0)),
    )


def input_model(model: Model) -> type[BaseModel]:
    """The engine input of one model (genq's names; Runway's camelCase on the wire)."""
    enum = cast(Any, Literal)
    said = "What should appear (up to 1000 chars)."
    fields: dict[str, Any] = {
        "ratio": (
            enum[model.ratios],
            Field(default=model.ratios[0], description=f"Size: {', '.join(model.ratios)}."),
        ),
        "seed": (
            int | None,
            Field(default=None, ge=0, le=2**32 - 1, description="Same seed, similar result."),
        ),
    }
    base: type[BaseModel] = _Input
    if model.kind == "image":
        fields["prompt"] = (str, Field(min_length=1, max_length=1000, description=said))
        if model.min_references:
            fields["reference_images"] = (
                list[FileRef],
                Field(
                    min_length=model.min_references,
                    max_length=3,
                    description=f"{model.min_references} to 3 genq image files.",
                ),
            )
        else:
            fields["reference_images"] = (
                list[FileRef] | None,
                Field(default=None, max_length=3, description="Up to 3 genq image files."),
            )
    else:
        base = _VideoInput
        lo, hi = model.durations
        fields["prompt"] = (str | None, Field(default=None, max_length=1000, description=said))
        fields["image"] = (
            FileRef | None,
            Field(default=None, description="The first frame: a genq image file (sent inline)."),
        )
        fields["image_url"] = (
            HttpsUrl | None,
            Field(default=None, description="The first frame: an https URL Runway fetches."),
        )
        fields["duration"] = (
            int | None,
            Field(default=None, ge=lo, le=hi, description=f"Seconds ({lo}-{hi})."),
        )
    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", model.name) if p)
    built: type[BaseModel] = create_model(f"Runway{camel}Input", __base__=base, **fields)
    return built


def _content_type(url: str) -> str | None:
    path = httpx.URL(url).path
    return mimetypes.guess_type(path)[0] if "." in path.rsplit("/", 1)[-1] else None


def _image_type(blob: bytes, name: str) -> str:
    for magic, ctype in _IMAGE_TYPES.items():
        if blob.startswith(magic):
            return ctype
    return mimetypes.guess_type(name)[0] or "image/png"


async def data_uri(path: Path, ref: str) -> str:
    """A genq input file as a data URI (refused past Runway's 5 MB)."""
    size = (await asyncio.to_thread(path.stat)).st_size
    if size * 4 // 3 + 64 > MAX_DATA_URI:
        raise UpstreamError("invalid_input", f"{ref}: too large to send to Runway ({size} bytes)")
    blob = await asyncio.to_thread(path.read_bytes)
    return f"data:{_image_type(blob, path.name)};base64,{base64.b64encode(blob).decode()}"


class Runway(Provider):
    name: ClassVar[str] = "runway"
    title: ClassVar[str] = TITLE
    callbacks: ClassVar[bool] = False  # Runway pushes nothing: poll
    cancellable: ClassVar[bool] = True  # DELETE /v1/tasks/{id}
    # Runway holds tasks past the tier's concurrency as THROTTLED itself
    default_max_jobs: ClassVar[int] = 20

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
                task="text2image" if m.kind == "image" else "image2video",
                input_model=self._inputs[m.name],
                media=(m.kind,),
                description=m.description or f"Runway model {m.name} ({m.kind}).",
                cost=m.cost,
                typical_duration_s=20.0 if m.kind == "image" else 60.0,
                poll_s=POLL_S,
            )
            for m in self.models.values()
        ]

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}", "X-Runway-Version": VERSION}

    def _model(self, what: str) -> Model:
        model = self.models.get(what)
        if model is None:
            raise UpstreamError("invalid_input", f"{TITLE} has no model {what!r} here")
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
        model = self._model(what)
        given = data.model_dump(exclude_none=True)
        body: dict[str, Any] = {"model": what, "ratio": given["ratio"]}
        if "seed" in given:
            body["seed"] = given["seed"]
        if "prompt" in given:
            body["promptText"] = given["prompt"]
        if model.kind == "video":
            path = "/v1/image_to_video"
            if "image" in given:
                ref = given["image"]
                body["promptImage"] = await data_uri(call.input_path(ref), ref)
            else:
                body["promptImage"] = given["image_url"]
            if "duration" in given:
                body["duration"] = given["duration"]
        else:
            path = "/v1/text_to_image"
            refs = given.get("reference_images") or []
            if refs:
                body["referenceImages"] = [
                    {"uri": await data_uri(call.input_path(r), r)} for r in refs
                ]
        response = await call.request("POST", path, json=body, idempotency_key=idempotency_key)
        task_id = self.answer(response).get("id")
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamError(UNAVAILABLE, f"{TITLE} answered without a task id")
        return Created(task_id, Snapshot(state="queued", message="PENDING"))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        model = self.models.get(what)
        body = self.answer(await call.request("GET", f"/v1/tasks/{upstream_id}"))
        word = str(body.get("status") or "").upper()
        state = STATES.get(word, "running")  # an unknown word is no end
        if state == "failed":
            code = str(body.get("failureCode") or "")
            said = str(body.get("failure") or "the task failed")
            return Snapshot(
                state="failed",
                message=word,
                error_code="moderated" if code.upper().startswith("SAFETY") else None,
                error_message=f"{code}: {said}" if code else said,
            )
        if state == "running":
            progress = body.get("progress")
            pct = float(progress) * 100 if isinstance(progress, int | float) else None
            return Snapshot(state="running", progress=pct, message=word or None)
        if state != "succeeded":
            return Snapshot(state=state, message=word)
        urls = [u for u in body.get("output") or [] if isinstance(u, str) and u]
        if not urls:
            return Snapshot(
                state="failed", message=word, error_message=f"{TITLE}: SUCCEEDED without output"
            )
        kind: OutputKind | None = model.kind if model else None
        stem = kind or "output"
        outputs = tuple(
            Remote(
                name=stem if len(urls) == 1 and kind == "video" else f"{stem}_{i}",
                url=url,
                content_type=_content_type(url),
                kind=kind,
            )
            for i, url in enumerate(urls)
        )
        return Snapshot(state="succeeded", progress=100.0, message=word, outputs=outputs)

    async def cancel(self, call: Call, what: str, upstream_id: str) -> bool:
        await call.request("DELETE", f"/v1/tasks/{upstream_id}")
        return True

    async def check(self, call: Call) -> str:
        body = self.answer(await call.request("GET", "/v1/organization"))
        found = body.get("tier")
        tier: dict[str, Any] = found if isinstance(found, dict) else {}
        parts = [f"{body.get('creditBalance')} credits"]
        if tier.get("maxMonthlyCreditSpend") is not None:
            parts.append(f"up to {tier['maxMonthlyCreditSpend']} a month")
        return f"{TITLE}: " + ", ".join(parts)

    def error_of(self, response: httpx.Response) -> UpstreamError:
        status = response.status_code
        said = message_of(response)
        error = error_by_status(response, f"{TITLE}: HTTP {status}: {said}" if said else "")
        if status == 404:
            error.code = NOT_FOUND
        elif status == 400 and "enough credits" in said.lower():
            error.code = INSUFFICIENT
        return error


PROVIDER = Runway
