"""What the store hands back: plain frozen records, one per table row, each built from
a row whose columns are in its `COLUMNS` order (`of(row)`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, Self

from genq.lifecycle import ACTIVE, NON_TERMINAL, TERMINAL, Status
from genq.store.db import dt_of, json_of

# kept here too: older code and the compat faces import them from the records
QUEUED, STARTING, RUNNING = Status.QUEUED, Status.STARTING, Status.RUNNING
SUCCEEDED, FAILED, CANCELED, EXPIRED = (
    Status.SUCCEEDED,
    Status.FAILED,
    Status.CANCELED,
    Status.EXPIRED,
)
__all__ = ["ACTIVE", "NON_TERMINAL", "TERMINAL"]


class _Record:
    COLUMNS: ClassVar[tuple[str, ...]]
    _DATES: ClassVar[frozenset[str]] = frozenset()
    _JSON: ClassVar[frozenset[str]] = frozenset()
    _BOOLS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def _setup(cls) -> None:
        cls.COLUMNS = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def of(cls, row: Any) -> Self:
        """The record of a row selected as `cls.select()`."""
        values = list(row)
        for i, name in enumerate(cls.COLUMNS):
            v = values[i]
            if v is None:
                continue
            if name in cls._DATES:
                values[i] = dt_of(v)
            elif name in cls._JSON:
                values[i] = json_of(v)
            elif name in cls._BOOLS:
                values[i] = bool(v)
        return cls(*values)

    @classmethod
    def select(cls, alias: str = "") -> str:
        """The column list to select for `of`."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(f'{prefix}"{c}"' for c in cls.COLUMNS)


@dataclass(frozen=True, slots=True)
class Account(_Record):
    id: str
    name: str
    plan: str
    webhook_secret: str | None
    balance: int
    created_at: datetime

    _DATES = frozenset({"created_at"})


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

    _DATES = frozenset({"created_at", "last_used_at", "revoked_at"})


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
    cancel_requested_at: datetime | None
    account_limit: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime
    updated_at: datetime
    # the submitting request's W3C traceparent (only while tracing is on: genq.telemetry.tracing)
    trace_context: str | None = None

    _DATES = frozenset(
        {
            "lease_expires_at",
            "cancel_requested_at",
            "created_at",
            "started_at",
            "completed_at",
            "expires_at",
            "updated_at",
        }
    )
    _JSON = frozenset({"input", "metadata", "webhook"})
    _BOOLS = frozenset({"error_retryable"})

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
    created_at: datetime | None  # None where read as part of its job's row

    _DATES = frozenset({"created_at"})
    _JSON = frozenset({"meta"})
    # the fields of an output row as its writers hand it to the store
    ROW_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "kind",
        "content_type",
        "bytes",
        "sha256",
        "path",
        "meta",
        "position",
    )

    @classmethod
    def of_row(cls, job_id: str, row: Mapping[str, Any], created_at: datetime) -> JobOutput:
        """The record of an output row just written (see `ROW_FIELDS`)."""
        return cls(job_id=job_id, created_at=created_at, **{f: row[f] for f in cls.ROW_FIELDS})


@dataclass(frozen=True, slots=True)
class JobEvent(_Record):
    id: int
    job_id: str
    account_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    _DATES = frozenset({"created_at"})
    _JSON = frozenset({"data"})

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))


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

    _DATES = frozenset({"created_at"})


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

    _DATES = frozenset({"created_at", "updated_at"})
    _JSON = frozenset({"metadata"})


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
    leased_until: datetime | None

    _DATES = frozenset({"next_attempt_at", "created_at", "delivered_at", "leased_until"})


@dataclass(frozen=True, slots=True)
class WebhookAttempt(_Record):
    id: int
    delivery_id: str
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None

    _DATES = frozenset({"at"})


@dataclass(frozen=True, slots=True)
class LedgerEntry(_Record):
    id: int
    account_id: str
    job_id: str | None
    kind: str
    amount: int
    balance_after: int | None
    note: str | None
    created_at: datetime

    _DATES = frozenset({"created_at"})


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
    token: str | None
    lease_expires_at: datetime | None

    _DATES = frozenset({"created_at", "expires_at", "lease_expires_at"})
    _JSON = frozenset({"headers"})


for _cls in (
    Account,
    ApiKey,
    Job,
    JobOutput,
    JobEvent,
    File,
    Model,
    WebhookDelivery,
    WebhookAttempt,
    LedgerEntry,
    IdempotencyRecord,
):
    _cls._setup()
