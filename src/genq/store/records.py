"""What the store hands back: plain frozen records, one per table row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import sqlalchemy as sa

QUEUED, STARTING, RUNNING = "queued", "starting", "running"
SUCCEEDED, FAILED, CANCELED, EXPIRED = "succeeded", "failed", "canceled", "expired"
ACTIVE = (STARTING, RUNNING)
NON_TERMINAL = (QUEUED, STARTING, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELED, EXPIRED)


class _Record:
    @classmethod
    def from_row(cls, row: sa.Row[Any] | sa.RowMapping) -> Self:
        mapping = row if isinstance(row, sa.RowMapping) else row._mapping
        return cls(**mapping)


@dataclass(frozen=True, slots=True)
class Account(_Record):
    id: str
    name: str
    plan: str
    webhook_secret: str | None
    balance: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey(_Record):
    id: str
    account_id: str
    prefix: str
    hash: str
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Job(_Record):
    id: str
    account_id: str
    engine: str
    task: str
    status: str
    progress: float
    message: str | None
    input: dict[str, Any]
    metadata: dict[str, Any]
    webhook: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    credits_estimate: int
    credits_used: int
    credits_refunded: int
    parent_id: str | None
    model_id: str | None
    seq: int
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    dispatch_id: int | None
    cancel_requested_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class JobOutput(_Record):
    job_id: str
    name: str
    kind: str
    content_type: str
    bytes: int
    sha256: str
    path: str
    meta: dict[str, Any]
    position: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobEvent(_Record):
    id: int
    job_id: str
    account_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class File(_Record):
    id: str
    account_id: str
    filename: str
    content_type: str
    bytes: int
    sha256: str
    path: str
    purpose: str | None
    model_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Model(_Record):
    id: str
    account_id: str
    name: str
    engine: str
    status: str
    job_id: str | None
    artifact: str | None
    error: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker has claimed: the fence for every write it makes for it."""

    job: Job
    owner: str
    attempt: int


@dataclass(frozen=True, slots=True)
class WebhookDelivery(_Record):
    id: str
    job_id: str
    account_id: str
    event: str
    seq: int
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookAttempt(_Record):
    id: int
    delivery_id: str
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class LedgerEntry(_Record):
    id: int
    account_id: str
    job_id: str | None
    kind: str
    amount: int
    balance_after: int
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyRecord(_Record):
    account_id: str
    key: str
    request_hash: str
    state: str
    resource_id: str | None
    status_code: int | None
    headers: dict[str, str] | None
    body: bytes | None
    created_at: datetime
    expires_at: datetime
