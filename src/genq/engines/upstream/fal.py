"""fal (https://fal.ai): apps on fal's queue, one engine per app, `fal/<app id>`.

    GENQ_UPSTREAMS='{"fal": {"base_url": "https://queue.fal.run", "api_key": "...",
                             "apps": ["fal-ai/flux/dev",
                                      {"app": "fal-ai/kling-video/v1/standard/text-to-video",
                                       "kind": "video", "cost": 50}]}}'

The option `apps` lists the apps (an id, or `{app, kind: image|video, cost?,
description?}`; the kind, when not given, is `video` if the id says so), else
`DEFAULT_APPS`. fal publishes each app's OpenAPI schema on its website, not on the
queue host, so an engine's input is the arguments fal's image and video apps share
(`prompt`, `negative_prompt`, `image_size`, `num_images`, `seed`, `duration`,
`aspect_ratio`, ...) and takes any other argument the app knows as it is.

- create: `POST {base}/{app}?fal_webhook=<genq callback>` (JSON: the arguments) ->
  `{request_id, status_url, response_url, cancel_url}`; the request id is the upstream
  id, and the queue's URLs are rebuilt from it as fal's SDK does
  (`{base}/{owner}/{alias}/requests/{id}`).
- status: `GET .../requests/{id}/status`: `IN_QUEUE` -> queued (`queue_position`),
  `IN_PROGRESS` -> running, `COMPLETED` -> the result `GET .../requests/{id}`: images
  (`images[].url`, `image.url`) and videos (`video.url`) are the outputs; a completed
  request with `error`, or a result answered 4xx/5xx with `detail`, failed.
- cancel: `PUT .../requests/{id}/cancel` (202 `CANCELLATION_REQUESTED`; 400
  `ALREADY_COMPLETED` is no cancel).
- callbacks: fal posts `{request_id, status: OK|ERROR, payload, error?}` to
  `fal_webhook` when the request ends (matched by the gateway's token; fal's ED25519
  signature is not needed for that).
- check: a status read of a request that does not exist: 404 means the key is good.

Auth is `Authorization: Key <key>`. Errors are `{"detail": ..., "error_type"?}`
(422: FastAPI's field errors): 401/403 -> upstream_unauthorized, 402 ->
upstream_insufficient_credits, 404 -> upstream_not_found, 422/400 ->
upstream_rejected, 429 -> upstream_rate_limited, 5xx -> upstream_unavailable.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model

from genq.engines.contract import OutputKind
from genq.engines.upstream.base import (
    NOT_FOUND,
    REJECTED,
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

Kind = Literal["image", "video"]
NAMESPACES: Final = ("workflows", "comfy")
_APP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){1,5}$")
NIL_REQUEST: Final = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class App:
    """What genq knows of one fal app without asking fal."""

    app: str
    kind: Kind
    cost: float | None = None  # the app's price per request (unknown: None)
    description: str = ""


DEFAULT_APPS: Final[tuple[App, ...]] = (
    App("fal-ai/flux/dev", "image", description="FLUX.1 [dev] on fal: text to image."),
    App("fal-ai/flux/schnell", "image", description="FLUX.1 [schnell] on fal: fast images."),
    App("fal-ai/fast-sdxl", "image", description="Stable Diffusion XL on fal, fast."),
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="allow")  # the app's own arguments pass as they are


def input_model(app: App) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "prompt": (str, Field(min_length=1, max_length=5000, description="What to make.")),
        "negative_prompt": (
            str | None,
            Field(default=None, max_length=2000, description="What to avoid."),
        ),
        "seed": (int | None, Field(default=None, ge=0, le=2**32 - 1, description="A seed.")),
    }
    if app.kind == "image":
        fields["image_size"] = (
            str | dict[str, int] | None,
            Field(
                default=None,
                description="square_hd, square, portrait_4_3, portrait_16_9, landscape_4_3,"
                " landscape_16_9, or {width, height}.",
            ),
        )
        fields["num_images"] = (
            int | None,
            Field(default=None, ge=1, le=8, description="How many images."),
        )
    else:
        fields["duration"] = (
            str | None,
            Field(default=None, max_length=8, description="Seconds, as the app spells them."),
        )
        fields["aspect_ratio"] = (
            str | None,
            Field(default=None, max_length=8, description="e.g. 16:9"),
        )
    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", app.app) if p)
    built: type[BaseModel] = create_model(f"Fal{camel}Input", __base__=_Input, **fields)
    return built


def _app_of(entry: Any) -> App:
    if isinstance(entry, str):
        entry = {"app": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("app"), str):
        raise ValueError(f"fal apps: {entry!r} is neither an app id nor an {{app, kind}}")
    name = entry["app"].strip("/")
    if not _APP.match(name):
        raise ValueError(f"fal apps: {name!r} is not an app id like fal-ai/flux/dev")
    known = {a.app: a for a in DEFAULT_APPS}.get(name)
    kind = entry.get("kind") or (known.kind if known else None)
    if kind is None:
        kind = "video" if "video" in name.lower() else "image"
    if kind not in ("image", "video"):
        raise ValueError(f"fal apps: {name}: kind must be image or video")
    cost = entry.get("cost", known.cost if known else None)
    return App(
        app=name,
        kind=cast(Kind, kind),
        cost=float(cost) if cost is not None else None,
        description=str(entry.get("description") or (known.description if known else "")),
    )


def queue_path(app: str, request_id: str) -> str:
    """`{owner}/{alias}/requests/{id}` (a namespace kept in front), as fal's SDK builds it."""
    parts = app.split("/")
    keep = 3 if parts[0] in NAMESPACES else 2
    return f"{'/'.join(parts[:keep])}/requests/{request_id}"


def _ctype(url: str, given: Any) -> str | None:
    if isinstance(given, str) and "/" in given:
        return given
    guessed, _ = mimetypes.guess_type(httpx.URL(url).path)
    return guessed


def outputs_of(payload: Any) -> tuple[Remote, ...]:
    """An app's result as remote outputs: `images[]`, `image`, `video`."""
    if not isinstance(payload, dict):
        return ()
    found: list[tuple[str, OutputKind, dict[str, Any]]] = []
    images = payload.get("images")
    if isinstance(images, list):
        found += [
            (f"image_{i}", "image", f) for i, f in enumerate(images, 1) if isinstance(f, dict)
        ]
    for field, kind in (("image", "image"), ("video", "video")):
        f = payload.get(field)
        if isinstance(f, dict):
            found.append((field, cast(OutputKind, kind), f))
    remotes = []
    for name, kind, f in found:
        url = f.get("url")
        if not isinstance(url, str) or not url:
            continue
        meta = {k: f[k] for k in ("width", "height") if isinstance(f.get(k), int)}
        remotes.append(Remote(name, url, _ctype(url, f.get("content_type")), kind, meta))
    return tuple(remotes)


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            where = ".".join(str(p) for p in first.get("loc") or [])
            return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
        if detail:
            return str(detail)
    return ""


class Fal(Provider):
    name: ClassVar[str] = "fal"
    title: ClassVar[str] = "fal"
    callbacks: ClassVar[bool] = True  # fal_webhook
    cancellable: ClassVar[bool] = True
    default_max_jobs: ClassVar[int] = 10  # fal's default concurrency per account

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.apps: dict[str, App] = self.configured("apps", _app_of, DEFAULT_APPS, lambda a: a.app)
        self._inputs = {n: input_model(a) for n, a in self.apps.items()}

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what=a.app,
                task="text2image" if a.kind == "image" else "text2video",
                input_model=self._inputs[a.app],
                media=(a.kind,),
                description=a.description or f"fal app {a.app} ({a.kind}).",
                cost=a.cost,
                typical_duration_s=8.0 if a.kind == "image" else 120.0,
                poll_s=1.0 if a.kind == "image" else 5.0,
            )
            for a in self.apps.values()
        ]

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Key {api_key}"}

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
        if what not in self.apps:
            raise UpstreamError("invalid_input", f"fal has no app {what!r} here")
        response = await call.request(
            "POST",
            f"/{what}",
            json=data.model_dump(exclude_none=True),
            params={"fal_webhook": callback_url} if callback_url else None,
            idempotency_key=idempotency_key,
        )
        answer = self.answer(response)
        rid = answer.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise UpstreamError(UNAVAILABLE, "fal answered without a request_id")
        position = answer.get("queue_position")
        note = f"IN_QUEUE at position {position}" if isinstance(position, int) else "IN_QUEUE"
        return Created(rid, Snapshot(state="queued", message=note))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        path = queue_path(what, upstream_id)
        body = self.answer(await call.request("GET", f"/{path}/status"))
        word = str(body.get("status") or "")
        if word == "IN_QUEUE":
            position = body.get("queue_position")
            return Snapshot(state="queued", message=f"IN_QUEUE at position {position}")
        if word != "COMPLETED":
            return Snapshot(state="running", message=word or None)
        if body.get("error"):
            return Snapshot(
                state="failed",
                message=word,
                error_message=f"fal: {body.get('error_type') or 'error'}: {body['error']}",
            )
        response = await call.request("GET", f"/{path}", ok=(400, 422, 500))
        return self._result(response)

    def _result(self, response: httpx.Response) -> Snapshot:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            said = _detail(body)
            if not said:
                raise UpstreamError(UNAVAILABLE, f"fal answered {response.status_code}")
            return Snapshot(state="failed", message="COMPLETED", error_message=f"fal: {said}")
        found = outputs_of(body)
        if not found:
            return Snapshot(
                state="failed", message="COMPLETED", error_message="fal: the result has no files"
            )
        return Snapshot(state="succeeded", progress=100.0, message="COMPLETED", outputs=found)

    async def cancel(self, call: Call, what: str, upstream_id: str) -> bool:
        path = queue_path(what, upstream_id)
        response = await call.request("PUT", f"/{path}/cancel", ok=(400,))
        return response.status_code < 300

    def parse_callback(self, what: str, body: Any) -> Snapshot | None:
        if not isinstance(body, dict):
            return None
        word = body.get("status")
        if word == "ERROR":
            said = body.get("error") or _detail(body.get("payload")) or "the request failed"
            return Snapshot(state="failed", message="ERROR", error_message=f"fal: {said}")
        if word == "OK":
            found = outputs_of(body.get("payload"))
            if found:
                return Snapshot(state="succeeded", progress=100.0, message="OK", outputs=found)
        return None  # nothing usable: the tracker reads the status

    def callback_id(self, what: str, body: Any) -> str | None:
        rid = body.get("request_id") if isinstance(body, dict) else None
        return rid if isinstance(rid, str) and rid else None

    async def check(self, call: Call) -> str:
        app = next(iter(self.apps), "fal-ai/flux/dev")
        await call.request("GET", f"/{queue_path(app, NIL_REQUEST)}/status", ok=(404,))
        return f"{self.title}: the key is accepted ({len(self.apps)} apps configured)"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        try:
            body = response.json()
        except ValueError:
            body = None
        said = _detail(body) or message_of(response)
        error = error_by_status(response, f"fal: {said}" if said else "")
        if response.status_code == 404:
            error.code = NOT_FOUND
        elif response.status_code in (400, 422):
            error.code = REJECTED
        return error


PROVIDER = Fal
