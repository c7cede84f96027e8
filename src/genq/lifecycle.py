"""The job state machine: statuses, events, and what every transition does.

Each transition of a job is a `Step`: the columns it sets, the event it logs, the
webhook event it fires (to a job whose webhook asked for it), the ledger entries it
writes and what it does to a training job's model. The functions below are the whole
policy; `genq.store` executes a `Step` against the rows it selects (fenced on a lease,
or on the job's status) in one transaction, and decides nothing itself.

    queued --claim--> running --finish--> succeeded | failed | canceled
      |  ^               |  \\--release (shutdown), reap (lease lapsed)--> queued
      |  \\--------------/   \\--reap (attempts used up)--> failed worker_lost
      \\--cancel--> canceled      ended --expire--> expired

`starting` is a valid status that nothing in the core sets any more (a claim goes
straight to `running`); engines that hand work to another service may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genq.store.records import Job


class Status(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


ACTIVE: tuple[Status, ...] = (Status.STARTING, Status.RUNNING)
NON_TERMINAL: tuple[Status, ...] = (Status.QUEUED, *ACTIVE)
ENDED: tuple[Status, ...] = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
TERMINAL: tuple[Status, ...] = (*ENDED, Status.EXPIRED)


class EventType(StrEnum):
    STATUS = "status"
    PROGRESS = "progress"
    OUTPUT = "output"
    LOG = "log"
    COMPLETED = "completed"


class Hook(StrEnum):
    """Webhook events a job can subscribe to."""

    STARTED = "started"
    PROGRESS = "progress"
    OUTPUT = "output"
    COMPLETED = "completed"


class LedgerKind(StrEnum):
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    GRANT = "grant"
    ADJUST = "adjust"


class CancelOutcome(StrEnum):
    CANCELED = "canceled"  # it was queued: canceled at once
    REQUESTED = "cancel_requested"  # it runs: its worker is told to stop
    ENDED = "ended"  # it had already ended
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    retryable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


@dataclass(frozen=True, slots=True)
class ModelEnd:
    """What a training job's end does to its model: ready with `artifact`, or failed."""

    model_id: str
    artifact: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """One transition, as data for the store to execute."""

    values: Mapping[str, Any]  # columns set on the job (seq and updated_at always move)
    event: EventType
    data: Mapping[str, Any] = field(default_factory=dict)  # the event's data (+ status)
    hook: Hook | None = None  # fired when the job's webhook subscribes to it
    ledger: tuple[tuple[LedgerKind, int], ...] = ()  # settlement, when the job ended
    model: ModelEnd | None = None
    clear_outputs: bool = False


def webhook_wants(webhook: Mapping[str, Any] | None, hook: Hook | None) -> bool:
    return bool(webhook) and hook is not None and hook in (webhook or {}).get("events", ())


# -- the transitions -----------------------------------------------------------------


def created() -> Step:
    """A job was submitted: it waits, its estimate held."""
    return Step(values={"status": Status.QUEUED}, event=EventType.STATUS)


def hold(estimate: int) -> tuple[LedgerKind, int]:
    return (LedgerKind.HOLD, estimate)


def claimed(owner: str, lease_until: datetime, now: datetime) -> Step:
    """A worker took the job: it runs at once, under a lease."""
    return Step(
        values={
            "status": Status.RUNNING,
            "lease_owner": owner,
            "lease_expires_at": lease_until,
            "started_at": now,  # the first attempt's start is kept (see the store)
            "progress": 0.0,
            "message": None,
        },
        event=EventType.STATUS,
        data={"owner": owner},
        hook=Hook.STARTED,
    )


def progressed(pct: float, message: str | None) -> Step:
    values: dict[str, Any] = {"progress": pct}
    if message is not None:
        values["message"] = message
    return Step(
        values=values,
        event=EventType.PROGRESS,
        data={"progress": pct, "message": message},
        hook=Hook.PROGRESS,
    )


def output_added(output: Mapping[str, Any]) -> Step:
    return Step(
        values={},
        event=EventType.OUTPUT,
        data={k: output[k] for k in ("name", "kind", "content_type", "bytes")},
        hook=Hook.OUTPUT,
    )


def logged(level: str, message: str) -> Step:
    return Step(values={}, event=EventType.LOG, data={"level": level, "message": message})


def settlement(status: Status, estimate: int, used: int) -> tuple[tuple[LedgerKind, int], ...]:
    """A job ended: capture what it cost (only a success costs), release the rest."""
    if status == Status.SUCCEEDED:
        captured = max(0, min(used, estimate))
        return ((LedgerKind.CAPTURE, captured), (LedgerKind.RELEASE, estimate - captured))
    return ((LedgerKind.RELEASE, estimate),)


def _ended(
    status: Status,
    *,
    estimate: int,
    used: int,
    now: datetime,
    error: ErrorInfo | None,
    message: str | None,
    model: ModelEnd | None,
    progress: float | None = None,
) -> Step:
    ledger = settlement(status, estimate, used)
    captured = sum(amount for kind, amount in ledger if kind == LedgerKind.CAPTURE)
    values: dict[str, Any] = {
        "status": status,
        "completed_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "credits_used": captured,
        "credits_refunded": estimate - captured,
        "message": message,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
        "error_retryable": error.retryable if error else None,
    }
    if status == Status.SUCCEEDED:
        values["progress"] = 100.0
    elif progress is not None:
        values["progress"] = progress
    data: dict[str, Any] = {"error": error.as_dict()} if error else {}
    return Step(
        values=values,
        event=EventType.COMPLETED,
        data=data,
        hook=Hook.COMPLETED,
        ledger=ledger,
        model=model,
    )


def finished(
    status: Status,
    *,
    estimate: int,
    used: int,
    now: datetime,
    error: ErrorInfo | None = None,
    message: str | None = None,
    model: ModelEnd | None = None,
    progress: float | None = None,
) -> Step:
    """The worker ended its run: succeeded, failed or canceled. A last progress report
    (`progress`, `message`) is folded into this one write."""
    assert status in ENDED
    return _ended(
        status,
        estimate=estimate,
        used=used,
        now=now,
        error=error,
        message=message,
        model=model,
        progress=progress,
    )


CANCELED_QUEUED = ErrorInfo("canceled", "canceled before it started")
CANCELED_RUNNING = ErrorInfo("canceled", "canceled while running")
CANCELED_LOST = ErrorInfo("canceled", "canceled while its worker was lost")


def canceled_queued(job: Job, now: datetime) -> Step:
    """A queued job was canceled: it never ran, everything held goes back."""
    return ended_unrun(job, Status.CANCELED, CANCELED_QUEUED, now)


def ended_unrun(job: Job, status: Status, error: ErrorInfo, now: datetime) -> Step:
    """Ended without output: nothing is charged, everything held goes back."""
    return _ended(
        status,
        estimate=job.credits_estimate,
        used=0,
        now=now,
        error=error,
        message=error.message,
        model=model_end(job.task, job.model_id, status, [], error),
    )


def cancel_requested(now: datetime) -> Step:
    return Step(
        values={"cancel_requested_at": now, "message": "cancel requested"},
        event=EventType.STATUS,
        data={"cancel_requested": True, "message": "cancel requested"},
    )


def requeued(message: str) -> Step:
    """Back to the queue: a worker shut down or stopped answering."""
    return Step(
        values={
            "status": Status.QUEUED,
            "lease_owner": None,
            "lease_expires_at": None,
            "progress": 0.0,
            "message": message,
        },
        event=EventType.STATUS,
        data={"message": message},
    )


def parked(status: Status, message: str, progress: float | None = None) -> Step:
    """An upstream service took the job (or may have: the tracker reconciles): the
    worker lets go of it, and a tracker follows it there poll by poll. It waits there
    (`starting`) or runs (`running`)."""
    values: dict[str, Any] = {
        "status": status,
        "lease_owner": None,
        "lease_expires_at": None,
        "message": message,
    }
    if progress is not None:
        values["progress"] = progress
    return Step(values=values, event=EventType.STATUS, data={"message": message})


def upstream_moved(
    status: Status, progress: float | None, message: str | None, *, status_changed: bool
) -> Step:
    """News of a parked job from its upstream service: a new status (a status event),
    else progress (a progress event)."""
    if not status_changed:
        return progressed(progress if progress is not None else 0.0, message)
    values: dict[str, Any] = {"status": status, "message": message}
    if progress is not None:
        values["progress"] = progress
    return Step(values=values, event=EventType.STATUS, data={"message": message})


SHUTDOWN = "re-queued: worker shut down"
LOST = "re-queued: its worker stopped answering"


def reaped(job: Job, *, max_attempts: int, now: datetime) -> Step:
    """A job whose lease lapsed: canceled if a cancel was pending, re-queued while it has
    attempts left, else failed `worker_lost`."""
    if job.cancel_requested_at is not None:
        return ended_unrun(job, Status.CANCELED, CANCELED_LOST, now)
    if job.attempt < max_attempts:
        return requeued(LOST)
    lost = ErrorInfo("worker_lost", f"worker lost {max_attempts} times", True)
    return ended_unrun(job, Status.FAILED, lost, now)


def expired() -> Step:
    return Step(
        values={"status": Status.EXPIRED, "message": "expired"},
        event=EventType.STATUS,
        data={"message": "expired: outputs deleted"},
        clear_outputs=True,
    )


def model_end(
    task: str,
    model_id: str | None,
    status: Status,
    outputs: list[tuple[str, str]],
    error: ErrorInfo | None,
) -> ModelEnd | None:
    """A training job ended: its model becomes ready with the `weights` output (or its
    first output), or failed. `outputs`: (name, storage path) in order."""
    if task != "train" or not model_id:
        return None
    artifact = None
    if status == Status.SUCCEEDED and outputs:
        named = [path for name, path in outputs if name == "weights"]
        artifact = named[0] if named else outputs[0][1]
    if artifact is not None:
        return ModelEnd(model_id, artifact, None)
    return ModelEnd(model_id, None, (error.message if error else None) or f"training {status}")
