"""Request bodies and (for the OpenAPI document) response shapes of the canonical API."""

from __future__ import annotations

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


class Problem(BaseModel):
    """RFC 9457 problem details with genq's stable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    s: {"model": Problem, "content": {"application/problem+json": {}}}
    for s in (401, 404, 409, 410, 413, 415, 422, 429)
}
