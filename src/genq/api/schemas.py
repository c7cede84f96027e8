"""Request bodies and (for the OpenAPI document) response shapes of the canonical API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

WebhookEvent = Literal["started", "progress", "output", "completed"]


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl
    events: list[WebhookEvent] = Field(default_factory=lambda: list[WebhookEvent](["completed"]))


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: str = Field(min_length=1, max_length=100, examples=["demo/text2image"])
    input: dict[str, Any] = Field(default_factory=dict, examples=[{"prompt": "a red fox"}])
    webhook: WebhookSpec | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    engine: str = "demo/train"
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelTrain(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] = Field(default_factory=dict)


class JobError(BaseModel):
    code: str
    message: str
    retryable: bool


class JobOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    kind: Literal["image", "video", "model", "thumbnail", "archive", "other"]
    url: str
    content_type: str
    bytes: int
    sha256: str


class Credits(BaseModel):
    estimate: int
    used: int
    refunded: int


class JobOut(BaseModel):
    """A job (the canonical job JSON)."""

    id: str
    object: Literal["job"]
    engine: str
    task: str
    status: Literal["queued", "starting", "running", "succeeded", "failed", "canceled", "expired"]
    progress: float
    message: str | None
    queue_position: int | None
    eta_s: float | None
    input: dict[str, Any]
    outputs: list[JobOutput]
    error: JobError | None
    credits: Credits
    parent_id: str | None
    model_id: str | None
    metadata: dict[str, Any]
    created_at: str
    started_at: str | None
    completed_at: str | None
    expires_at: str
    processing_time_s: float | None
    urls: dict[str, str]


class JobList(BaseModel):
    object: Literal["list"]
    data: list[JobOut]
    has_more: bool
    next_cursor: str | None


class FileOut(BaseModel):
    """An uploaded file's record."""

    id: str
    object: Literal["file"]
    filename: str | None
    content_type: str | None
    bytes: int
    sha256: str
    purpose: str | None
    model_id: str | None
    created_at: str


class ModelOut(BaseModel):
    """A trainable model."""

    id: str
    object: Literal["model"]
    name: str
    engine: str
    status: Literal["created", "training", "ready", "failed"]
    job_id: str | None
    error: str | None
    weights_url: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


class EngineOut(BaseModel):
    """An engine: what it does, its price and its input's JSON Schema."""

    name: str
    object: Literal["engine"]
    task: str
    description: str
    media: list[str]
    price: int
    typical_duration_s: float
    concurrency: int
    timeout_s: float
    input_schema: dict[str, Any]


class EngineList(BaseModel):
    object: Literal["list"]
    data: list[EngineOut]


class DeliveryAttempt(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryOut(BaseModel):
    """A webhook delivery (one event of a job to one URL) and its attempts."""

    id: str
    object: Literal["webhook_delivery"]
    job_id: str
    event: str
    url: str
    status: str
    attempts: list[DeliveryAttempt]
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None


class DeliveryList(BaseModel):
    object: Literal["list"]
    data: list[DeliveryOut]


class WebhookSecret(BaseModel):
    object: Literal["webhook_secret"]
    secret: str = Field(pattern=r"^whsec_")


class Limits(BaseModel):
    generation_per_min: int
    status_per_min: int
    concurrent_jobs: int
    retention_days: float
    monthly_credits: int
    open_streams: int


class Usage(BaseModel):
    generation_remaining: int
    status_remaining: int
    window_reset_s: float
    running_jobs: int
    queued_jobs: int
    open_streams: int


class KeyOut(BaseModel):
    id: str
    prefix: str
    name: str | None
    created_at: str


class AccountOut(BaseModel):
    """The caller's account: balance, plan, limits, usage and the key in use."""

    id: str
    object: Literal["account"]
    name: str
    plan: str
    balance: int
    limits: Limits
    usage: Usage
    created_at: str
    key: KeyOut


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")
    field: str = Field(examples=["body.input.prompt"])
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details with genq's stable `code` (more members, like a 402's
    `balance` and `needed`, by code)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[FieldError] | None = None


_WHY: dict[int, str] = {
    400: "Bad request (e.g. a malformed form)",
    401: "No valid API key",
    402: "Not enough credits",
    403: "The key may not do this",
    404: "Not found",
    408: "The body arrived too slowly",
    409: "Conflict with the resource's state",
    410: "Expired",
    413: "The body is too large",
    415: "The body is not JSON",
    422: "Invalid input",
    429: "Rate limited (see Retry-After)",
    503: "The object store does not answer (storage_unavailable)",
}
PROBLEM_TYPE = "application/problem+json"


def problem_response(status: int, description: str) -> dict[str, Any]:
    """One response in problem+json (no `model`: FastAPI would document it as JSON)."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": schema}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Responses in problem+json for these statuses (a route's `responses=`)."""
    return {s: problem_response(s, _WHY[s]) for s in sorted(statuses)}


AUTH = (401, 429)  # every authenticated request
BODY = (408, 413, 415, 422)  # a JSON body (`genq.api.middleware.Guard` and `parse_json`)
UPLOAD = (400, 408, 413, 422)  # a multipart form
PROBLEMS = problems(*AUTH)  # an authenticated read
BINARY: dict[str, Any] = {"*/*": {"schema": {"type": "string", "format": "binary"}}}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same key gets the first answer again (printable ASCII)",
    # no space at either end: HTTP strips it
    "schema": {"type": "string", "pattern": r"^[!-~](?:[ -~]{0,253}[!-~])?$"},
}


def event_id_param(name: str, description: str) -> dict[str, Any]:
    """A query parameter holding an event id (`genq.api.front.event_id`)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1},
    }


_REQUEST_MODELS: dict[str, type[BaseModel]] = {"Problem": Problem}  # and problem_response


def schema_name(model: type[BaseModel]) -> str:
    """A model's name in components/schemas: a compat face module's models get the
    face's name in front (`PhotogptModelCreate`); others are named as they are."""
    module = model.__module__.rsplit(".", 1)[-1]
    face = model.__module__.startswith("genq.api.compat.") and not module.startswith("_")
    return (module.capitalize() if face else "") + model.__name__


def request_body(
    content: type[BaseModel] | dict[str, type[BaseModel]],
    *,
    required: bool = True,
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """`openapi_extra` documenting a request body the route reads itself: a model's
    schema by media type (a bare model: JSON), each model in components/schemas; and
    header `parameters` the route reads itself (e.g. `IDEMPOTENCY_KEY`)."""
    if not isinstance(content, dict):
        content = {"application/json": content}
    out = {}
    for media_type, model in content.items():
        name = schema_name(model)
        if _REQUEST_MODELS.setdefault(name, model) is not model:
            raise ValueError(f"two request models named {name}")
        out[media_type] = {"schema": {"$ref": f"#/components/schemas/{name}"}}
    extra: dict[str, Any] = {"requestBody": {"required": required, "content": out}}
    if parameters:
        extra["parameters"] = list(parameters)
    return extra


def request_schemas() -> dict[str, Any]:
    """The components/schemas entries of the models `request_body` documented, and
    `Problem` (nested models hoisted beside them)."""
    out: dict[str, Any] = {}
    for name, model in _REQUEST_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for nested, sub in schema.pop("$defs", {}).items():
            if out.setdefault(nested, sub) != sub:
                raise ValueError(f"two request schemas named {nested}")
        out[name] = schema
    return out
