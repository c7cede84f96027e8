"""Replicate (https://api.replicate.com): any model there, as `replicate/<owner>/<name>`.

One engine per model named in the option `models` (`"owner/name"`, or `{name,
version?, task?, media?, cost?, description?}`; default `DEFAULT_MODELS`). Its input
schema is the service's: when the gateway starts, `discover` reads
`GET /v1/models/{owner}/{name}` and keeps `latest_version.openapi_schema`'s
`components.schemas.Input` (and the version id); inputs are then validated against it
(JSON Schema) and `GET /v1/engines/replicate/<owner>/<name>` shows it. Until then (the
service down at startup: the gateway tries again every 30 s) the engine
exists and takes any JSON object, which Replicate validates when the job is created.

- Create: `POST /v1/predictions {version, input, webhook, webhook_events_filter:
  ["completed"]}` when the version is known, else `POST /v1/models/{owner}/{name}/
  predictions {input, ...}` -> 201 + the prediction (`id`).
- Status: `GET /v1/predictions/{id}`: `starting` -> queued, `processing` -> running
  (progress from the last tqdm line of `logs`), `succeeded` -> the URLs in `output`
  (a URL, a list, or an object of them; outputs that are not file URLs, such as a
  language model's text, are not kept), `failed` -> failed (`error`), `canceled`.
- Webhooks: Replicate posts the prediction to the job's callback URL when it completes
  (`parse_callback` reads it; polls are the safety net).
- Cancel: `POST /v1/predictions/{id}/cancel`.
- Check: `GET /v1/account`.

Errors are problem bodies `{title, detail, status}`: 401/403 -> upstream_unauthorized,
402 -> upstream_insufficient_credits, 404 -> upstream_not_found, 422 ->
upstream_rejected, 429 (`Retry-After`) -> upstream_rate_limited, 5xx ->
upstream_unavailable. Limits: 600 predictions a minute (`rate_per_min`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import httpx
import jsonschema  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, create_model, model_validator

from genq.engines.contract import TASKS, OutputKind
from genq.engines.upstream.base import (
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

log = logging.getLogger(__name__)
STATES: Final[dict[str, State]] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
DEFAULT_MODELS: Final = ("black-forest-labs/flux-schnell",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PROGRESS = re.compile(r"^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)")
_KINDS: Final[dict[str, OutputKind]] = {"image": "image", "video": "video", "model": "model"}


@dataclass
class Model:
    """One Replicate model and what genq has learnt of it."""

    name: str  # owner/name
    task: str = "text2image"
    media: tuple[OutputKind, ...] = ("image",)
    cost: float | None = None
    description: str = ""
    version: str | None = None  # pinned in the config, or the latest one discovered
    schema: dict[str, Any] | None = None  # the Input JSON Schema, once discovered
    validator: Any = field(default=None, repr=False)


class DiscoveredInput(BaseModel):
    """A remote model's input (Replicate's, a Cog server's): any object until its schema
    is discovered, then that schema. `discovered` is the model (with `schema` and
    `validator` once known); `pending` describes the input until then."""

    model_config = ConfigDict(extra="allow")
    discovered: ClassVar[Any]
    pending: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        validator = cls.discovered.validator
        if validator is not None and isinstance(data, dict):
            problems = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
            if problems:
                first = problems[0]
                where = ".".join(str(p) for p in first.path)
                raise ValueError(f"{where + ': ' if where else ''}{first.message}")
        return data

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema: dict[str, Any] | None = cls.discovered.schema
        if schema is not None:
            return schema
        return {
            "title": "Input",
            "type": "object",
            "additionalProperties": True,
            "description": cls.pending,
        }


def discovered_input(prefix: str, model: Any, pending: str) -> type[BaseModel]:
    """The input model of one remote model whose schema is discovered at run time."""
    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", model.name) if p)
    built: type[DiscoveredInput] = create_model(f"{prefix}{camel}Input", __base__=DiscoveredInput)
    built.discovered, built.pending = model, pending
    return built


def _model_of(entry: Any) -> Model:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ValueError(f"replicate models: {entry!r} is neither owner/name nor {{name, ...}}")
    name = entry["name"]
    if not _NAME.match(name):
        raise ValueError(f"replicate models: {name!r} is not owner/name")
    task = str(entry.get("task") or "text2image")
    if task not in TASKS:
        raise ValueError(f"replicate models: {name}: unknown task {task!r}")
    media = tuple(_KINDS.get(str(m), "other") for m in entry.get("media") or ["image"])
    cost = entry.get("cost")
    return Model(
        name=name,
        task=task,
        media=media,
        cost=float(cost) if cost is not None else None,
        description=str(entry.get("description") or f"Replicate model {name}."),
        version=str(entry["version"]) if entry.get("version") else None,
    )


def _input_model(model: Model) -> type[BaseModel]:
    return discovered_input(
        "Replicate",
        model,
        f"The input of {model.name} at Replicate (its schema is read from Replicate when the"
        " server starts).",
    )


def _urls(value: Any) -> list[str]:
    """The file URLs in a prediction's `output` (a URL, a list or an object of them)."""
    if isinstance(value, str):
        return [value] if value.startswith(("http://", "https://")) else []
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    return []


def tqdm_progress(logs: Any) -> float | None:
    """The progress (0-100) the last tqdm bar line in `logs` shows (Replicate, Cog)."""
    if not isinstance(logs, str):
        return None
    for line in reversed(logs.splitlines()):
        found = _PROGRESS.match(line)
        if found:
            current, total = int(found.group(2)), int(found.group(3))
            return round(100.0 * current / total, 1) if total else float(found.group(1))
    return None


def snapshot_of(body: Any) -> Snapshot | None:
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        return None
    word = body["status"]
    state = STATES.get(word, "running")
    if state == "failed":
        said = body.get("error")
        return Snapshot(
            state="failed",
            message=word,
            error_message=f"Replicate: {said}" if said else "Replicate: the prediction failed",
        )
    if state != "succeeded":
        return Snapshot(state=state, progress=tqdm_progress(body.get("logs")), message=word)
    outputs = tuple(
        Remote(name=f"output_{i}", url=url) for i, url in enumerate(_urls(body.get("output")))
    )
    return Snapshot(state="succeeded", progress=100.0, message=word, outputs=outputs)


class Replicate(Provider):
    name: ClassVar[str] = "replicate"
    title: ClassVar[str] = "Replicate"
    callbacks: ClassVar[bool] = True
    cancellable: ClassVar[bool] = True
    default_rate_per_min: ClassVar[int | None] = 600

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.models: dict[str, Model] = self.configured(
            "models", _model_of, map(_model_of, DEFAULT_MODELS), lambda m: m.name
        )
        self._inputs = {n: _input_model(m) for n, m in self.models.items()}

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what=m.name,
                task=m.task,
                input_model=self._inputs[m.name],
                media=m.media,
                description=m.description,
                cost=m.cost,
                typical_duration_s=10.0 if "video" not in m.media else 120.0,
                poll_s=1.0 if "video" not in m.media else 5.0,
            )
            for m in self.models.values()
        ]

    def _model(self, what: str) -> Model:
        model = self.models.get(what)
        if model is None:
            raise UpstreamError("invalid_input", f"Replicate model {what!r} is not configured")
        return model

    async def discover(self, call: Call) -> int:
        """Read each model's input schema (and latest version) from Replicate; the number
        of models still unknown (raise UpstreamError when none could be read)."""
        missing = 0
        for model in self.models.values():
            if model.schema is not None:
                continue
            try:
                body = self.answer(await call.request("GET", f"/v1/models/{model.name}"))
            except UpstreamError:
                missing += 1
                continue
            version = body.get("latest_version")
            if not isinstance(version, dict):
                missing += 1
                continue
            openapi = version.get("openapi_schema") or {}
            schema = ((openapi.get("components") or {}).get("schemas") or {}).get("Input")
            if not isinstance(schema, dict):
                missing += 1
                continue
            kind = jsonschema.validators.validator_for(schema)
            try:
                kind.check_schema(schema)
            except jsonschema.SchemaError:
                # not a schema genq can check with: Replicate validates (as before discovery)
                log.warning("Replicate model %s: its input schema is not valid", model.name)
                continue
            model.validator = kind(schema)
            model.schema = schema
            if model.version is None and isinstance(version.get("id"), str):
                model.version = version["id"]
            if isinstance(body.get("description"), str) and body["description"]:
                model.description = body["description"]
        return missing

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
        body: dict[str, Any] = {"input": data.model_dump(mode="json", exclude_none=True)}
        if callback_url:
            body["webhook"] = callback_url
            body["webhook_events_filter"] = ["completed"]
        if model.version:
            body["version"] = model.version
            path = "/v1/predictions"
        else:
            path = f"/v1/models/{model.name}/predictions"
        answer = self.answer(
            await call.request("POST", path, json=body, idempotency_key=idempotency_key)
        )
        pid = answer.get("id")
        if not isinstance(pid, str) or not pid:
            raise UpstreamError(UNAVAILABLE, "Replicate answered without a prediction id")
        return Created(pid, snapshot_of(answer))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        body = self.answer(await call.request("GET", f"/v1/predictions/{upstream_id}"))
        snap = snapshot_of(body)
        if snap is None:
            raise UpstreamError(UNAVAILABLE, "Replicate answered a prediction without a status")
        return snap

    async def cancel(self, call: Call, what: str, upstream_id: str) -> bool:
        await call.request("POST", f"/v1/predictions/{upstream_id}/cancel")
        return True

    def parse_callback(self, what: str, body: Any) -> Snapshot | None:
        return snapshot_of(body)

    def callback_id(self, what: str, body: Any) -> str | None:
        found = body.get("id") if isinstance(body, dict) else None
        return found if isinstance(found, str) and found else None

    async def check(self, call: Call) -> str:
        body = self.answer(await call.request("GET", "/v1/account"))
        return f"{self.title}: account {body.get('username')} ({body.get('type')})"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        error = error_by_status(response, f"{self.title}: {message_of(response)}")
        if response.status_code == 404:
            error.code = NOT_FOUND
        return error


PROVIDER = Replicate
