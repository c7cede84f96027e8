"""The job service: submit, read (through a cache of serialized bodies), list, cancel,
wait; and the resolution of a job's file and model references for the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from genq import idempotency, netsafe
from genq.engines.contract import Engine
from genq.errors import Conflict, EngineNotFound, Expired, InvalidInput, NotFound
from genq.events import Change, EventBus
from genq.ids import iso, new_id, utcnow
from genq.plans import Plan
from genq.refs import FILE_FORMAT, MODEL_FORMAT, find_refs
from genq.settings import Settings
from genq.storage import Storage
from genq.store import Store
from genq.store.records import (
    EXPIRED,
    QUEUED,
    RUNNING,
    STARTING,
    Account,
    Job,
    JobEvent,
    JobOutput,
)

log = logging.getLogger(__name__)
NON_TERMINAL_TTL_S = 1.0  # queue_position and eta_s drift without events


def pydantic_errors(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join([prefix, *(str(p) for p in err["loc"])]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_context=False)
    ]


@dataclass(slots=True)
class CachedJob:
    account_id: str
    engine: str
    status: str
    seq: int
    etag: str
    body: bytes
    fresh_until: float  # monotonic; inf for terminal jobs


class JobCache:
    """Serialized job bodies keyed by job id, dropped when the job changes.

    It also remembers the newest seq the bus announced per job, so a body read from
    the database just before a change committed is never cached or served as current.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[str, CachedJob] = OrderedDict()
        self._latest: OrderedDict[str, int] = OrderedDict()

    def latest(self, job_id: str) -> int:
        return self._latest.get(job_id, 0)

    def get(self, job_id: str) -> CachedJob | None:
        item = self._items.get(job_id)
        if item is None:
            return None
        if item.fresh_until < time.monotonic() or item.seq < self.latest(job_id):
            del self._items[job_id]
            return None
        self._items.move_to_end(job_id)
        return item

    def put(self, job_id: str, item: CachedJob) -> None:
        if item.seq < self.latest(job_id):
            return
        self._items[job_id] = item
        self._items.move_to_end(job_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def on_change(self, change: Change) -> None:
        if change.seq > self._latest.get(change.job_id, 0):
            self._latest[change.job_id] = change.seq
            self._latest.move_to_end(change.job_id)
            while len(self._latest) > self.size:
                self._latest.popitem(last=False)
        item = self._items.get(change.job_id)
        if item is not None and item.seq < change.seq:
            del self._items[change.job_id]


class SharedReads:
    """Coalesces identical reads in flight: when thousands of streams wake for the same
    change, one query answers them all."""

    def __init__(self) -> None:
        self._inflight: dict[tuple[object, ...], asyncio.Future[Any]] = {}

    async def get(self, key: tuple[object, ...], read: Callable[[], Awaitable[Any]]) -> Any:
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(read())
            self._inflight[key] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(fut)


class JobService:
    def __init__(
        self,
        *,
        store: Store,
        storage: Storage,
        engines: Mapping[str, Engine],
        bus: EventBus,
        settings: Settings,
    ) -> None:
        self.store = store
        self.storage = storage
        self.engines = engines
        self.bus = bus
        self.settings = settings
        self.plans = settings.plan_table
        self.cache = JobCache()
        self.shared = SharedReads()
        self._durations: dict[str, tuple[float, float | None]] = {}
        self._plans_by_account: dict[str, tuple[float, str]] = {}
        bus.subscribe(self.cache.on_change)

    # -- submission -------------------------------------------------------------------

    def engine(self, name: str) -> Engine:
        engine = self.engines.get(name)
        if engine is None:
            raise EngineNotFound(f"no engine named {name!r}; see GET /v1/engines")
        return engine

    async def submit(
        self,
        account: Account,
        engine_name: str,
        input: Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        webhook: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        parent_id: str | None = None,
    ) -> Job:
        account_id = account.id
        plan = self.plans.get(account.plan)
        retention_days = plan.retention_days if plan else 31.0
        engine = self.engine(engine_name)
        if webhook:
            netsafe.check_plainly(
                str(webhook["url"]), allow_private=self.settings.webhook_allow_private
            )
        try:
            data = engine.input_model.model_validate(dict(input))
        except ValidationError as exc:
            raise InvalidInput(
                f"input does not match {engine_name}'s schema",
                errors=pydantic_errors(exc, "input"),
            ) from exc
        normalized = data.model_dump(mode="json", exclude_none=True)
        schema = engine.input_model.model_json_schema()
        for fmt, path, ref in find_refs(schema, normalized):
            if fmt == FILE_FORMAT:
                await self._check_file_ref(account_id, path, ref)
            elif fmt == MODEL_FORMAT:
                await self._check_model_ref(account_id, path, ref)
                model_id = model_id or ref
        estimate = getattr(engine, "estimate", None)
        credits = int(estimate(data)) if callable(estimate) else int(engine.price)
        now = utcnow()
        job = await self.store.jobs.create(
            {
                "id": new_id("job"),
                "account_id": account_id,
                "engine": engine.name,
                "task": engine.task,
                "input": normalized,
                "metadata": dict(metadata or {}),
                "webhook": dict(webhook) if webhook else None,
                "credits_estimate": credits,
                "model_id": model_id,
                "parent_id": parent_id,
                "expires_at": now + timedelta(days=retention_days),
            },
            idempotency=idempotency.current.get(),
        )
        self.bus.publish(Change.of_job(job, "status"))
        return job

    async def _check_file_ref(self, account_id: str, path: str, ref: str) -> None:
        if ref.startswith("file_"):
            f = await self.store.files.get(ref)
            ok = f is not None and f.account_id == account_id
        else:
            job_id, _, name = ref.partition("/")
            job = await self.store.jobs.get(job_id)
            ok = (
                job is not None
                and job.account_id == account_id
                and job.status != EXPIRED
                and await self.store.jobs.output(job_id, name) is not None
            )
        if not ok:
            raise InvalidInput(
                f"{path}: no such file {ref!r}",
                errors=[{"field": path, "message": f"no such file {ref!r}", "type": "not_found"}],
            )

    async def _check_model_ref(self, account_id: str, path: str, ref: str) -> None:
        model = await self.store.models.get(ref)
        if model is None or model.account_id != account_id:
            msg = f"no such model {ref!r}"
        elif model.status != "ready":
            msg = f"model {ref!r} is {model.status}, not ready"
        else:
            return
        raise InvalidInput(
            f"{path}: {msg}", errors=[{"field": path, "message": msg, "type": "model"}]
        )

    # -- reads ------------------------------------------------------------------------

    async def get(self, account_id: str, job_id: str) -> Job:
        job = await self.store.jobs.get(job_id)
        if job is None or job.account_id != account_id:
            raise NotFound(f"no job {job_id!r}")
        if job.status == EXPIRED:
            raise Expired(f"job {job_id} has expired")
        return job

    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        """A job's events after `seq` (one query for every stream asking at once)."""
        rows: list[JobEvent] = await self.shared.get(
            ("events", job_id, seq), lambda: self.store.jobs.events_after(job_id, seq)
        )
        return rows

    async def find(self, job_id: str) -> Job | None:
        """A job by id whoever owns it (for faces that tell "not yours" from "missing")."""
        return await self.store.jobs.get(job_id)

    async def canonical(self, account_id: str, job_id: str) -> dict[str, Any]:
        """The canonical job JSON as a dict, checked for ownership (404) and expiry (410);
        what compat faces translate from."""
        item = await self.body(account_id, job_id)
        data: dict[str, Any] = orjson.loads(item.body)
        return data

    async def body(self, account_id: str, job_id: str) -> CachedJob:
        """The hot path: the job's serialized body, from the cache when it is current."""
        item = self.cache.get(job_id)
        if item is None:
            found = await self.store.jobs.get_with_outputs(job_id)
            if found is None:
                raise NotFound(f"no job {job_id!r}")
            item = await self._cache_entry(*found)  # not cached if a change overtook it
        if item.account_id != account_id:
            raise NotFound(f"no job {job_id!r}")
        if item.status == EXPIRED:
            raise Expired(f"job {job_id} has expired")
        return item

    async def entry(self, job: Job) -> CachedJob:
        """The body of a job just created (it has no outputs yet): no read back."""
        return await self._cache_entry(job, [])

    async def _cache_entry(self, job: Job, outputs: list[JobOutput]) -> CachedJob:
        body = orjson.dumps(await self.render(job, outputs))
        item = CachedJob(
            account_id=job.account_id,
            engine=job.engine,
            status=job.status,
            seq=job.seq,
            etag=f'W/"{job.id[-12:]}-{job.seq}"',
            body=body,
            fresh_until=float("inf") if job.terminal else time.monotonic() + NON_TERMINAL_TTL_S,
        )
        self.cache.put(job.id, item)
        return item

    async def render(self, job: Job, outputs: list[JobOutput] | None = None) -> dict[str, Any]:
        """The canonical job JSON (DESIGN.md section 2)."""
        if outputs is None:
            outputs = (await self.store.jobs.outputs_for([job.id]))[job.id]
        base = self.settings.base_url
        queue_position = None
        message = job.message
        if job.status == QUEUED:
            queue_position = await self.store.jobs.queue_position(job)
            message = await self._throttled(job.account_id) or message
        processing = None
        if job.started_at and job.completed_at:
            processing = round((job.completed_at - job.started_at).total_seconds(), 3)
        return {
            "id": job.id,
            "object": "job",
            "engine": job.engine,
            "task": job.task,
            "status": job.status,
            "progress": round(job.progress, 2),
            "message": message,
            "queue_position": queue_position,
            "eta_s": await self._eta(job, queue_position),
            "input": job.input,
            "outputs": [self.render_output(o) for o in outputs],
            "error": (
                {
                    "code": job.error_code,
                    "message": job.error_message,
                    "retryable": bool(job.error_retryable),
                }
                if job.error_code
                else None
            ),
            "credits": {
                "estimate": job.credits_estimate,
                "used": job.credits_used,
                "refunded": job.credits_refunded,
            },
            "parent_id": job.parent_id,
            "model_id": job.model_id,
            "metadata": job.metadata,
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at),
            "expires_at": iso(job.expires_at),
            "processing_time_s": processing,
            "seq": job.seq,
            "urls": {
                "self": f"{base}/v1/jobs/{job.id}",
                "events": f"{base}/v1/jobs/{job.id}/events",
                "cancel": f"{base}/v1/jobs/{job.id}/cancel",
            },
        }

    def render_output(self, out: JobOutput) -> dict[str, Any]:
        return {
            "name": out.name,
            "kind": out.kind,
            "url": f"{self.settings.base_url}/files/{out.path}",
            "content_type": out.content_type,
            "bytes": out.bytes,
            **out.meta,
            "sha256": out.sha256,
        }

    async def _plan(self, account_id: str) -> Plan | None:
        now = time.monotonic()
        hit = self._plans_by_account.get(account_id)
        if hit is None or hit[0] < now:
            account = await self.store.accounts.get(account_id)
            hit = (now + 30.0, account.plan if account else "")
            self._plans_by_account[account_id] = hit
        return self.plans.get(hit[1])

    async def _throttled(self, account_id: str) -> str | None:
        """Why a queued job waits, when it is the account's concurrency limit (like
        Runway's THROTTLED): such jobs stay queued rather than being refused."""
        plan = await self._plan(account_id)
        if plan is None:
            return None
        active = await self.store.jobs.active_count(account_id)
        if active < plan.concurrent_jobs:
            return None
        return (
            f"throttled: the {plan.name} plan runs {plan.concurrent_jobs} jobs at once "
            f"and {active} are running"
        )

    async def _typical(self, engine_name: str) -> float:
        now = time.monotonic()
        hit = self._durations.get(engine_name)
        if hit is None or hit[0] < now:
            samples = await self.store.jobs.recent_durations(engine_name)
            avg = sum(samples) / len(samples) if samples else None
            self._durations[engine_name] = (now + 30.0, avg)
            hit = self._durations[engine_name]
        if hit[1] is not None:
            return hit[1]
        engine = self.engines.get(engine_name)
        return float(engine.typical_duration_s) if engine else 5.0

    async def _eta(self, job: Job, queue_position: int | None) -> float | None:
        if job.terminal:
            return None
        typical = await self._typical(job.engine)
        if job.status == QUEUED:
            engine = self.engines.get(job.engine)
            lanes = max(1, engine.concurrency if engine else 1)
            return round(typical * (1 + (queue_position or 0) // lanes), 1)
        elapsed = (utcnow() - job.started_at).total_seconds() if job.started_at else 0.0
        if job.status == RUNNING and job.progress >= 5:
            return round(max(0.0, elapsed * (100 - job.progress) / job.progress), 1)
        return round(max(0.0, typical - elapsed), 1)

    def retry_after(self, status: str, engine_name: str) -> int:
        """Seconds a polling client should wait before asking again."""
        engine = self.engines.get(engine_name)
        typical = engine.typical_duration_s if engine else 5.0
        if status == QUEUED:
            return int(min(10, max(1, typical / 4)))
        return int(min(5, max(1, typical / 10)))

    async def wait_body(
        self,
        account_id: str,
        job_id: str,
        *,
        seen: str | None,
        after_seq: int | None,
        timeout: float,
    ) -> CachedJob:
        """Long-poll: the job once it differs from what the client saw, or at `timeout`."""
        deadline = time.monotonic() + timeout
        with self.bus.watch(job_id) as watch:
            item = await self.body(account_id, job_id)
            baseline = after_seq if after_seq is not None else item.seq
            if seen is not None and after_seq is None and seen != item.etag:
                return item  # the client's copy is already stale
            while item.status in (QUEUED, STARTING, RUNNING) and item.seq <= baseline:
                left = deadline - time.monotonic()
                if left <= 0 or not await watch.wait(left):
                    break
                item = await self.body(account_id, job_id)
        return item

    async def list(
        self,
        account_id: str,
        *,
        status: list[str],
        engine: str | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        before = None
        if after:
            cursor = await self.store.jobs.get(after)
            if cursor is None or cursor.account_id != account_id:
                raise InvalidInput(
                    "invalid cursor",
                    errors=[{"field": "after", "message": "unknown cursor", "type": "cursor"}],
                )
            before = (cursor.created_at, cursor.id)
        jobs = await self.store.jobs.page(
            account_id, status=status, engine=engine, limit=limit + 1, before=before
        )
        more = len(jobs) > limit
        jobs = jobs[:limit]
        outputs = await self.store.jobs.outputs_for([j.id for j in jobs])
        data = [await self.render(j, outputs[j.id]) for j in jobs]
        return data, (jobs[-1].id if more else None)

    # -- cancel -----------------------------------------------------------------------

    async def cancel(self, account_id: str, job_id: str) -> tuple[str, Job]:
        """Returns what happened ("canceled" or "cancel_requested") and the job."""
        await self.get(account_id, job_id)
        what, job = await self.store.jobs.cancel(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if what == "terminal":
            raise Conflict(f"job {job_id} has already ended: {job.status}", job_status=job.status)
        if what == "canceled":
            self.bus.publish(Change.of_job(job, "completed"))
            return "canceled", job
        self.bus.publish(Change.of_job(job, "status", {"cancel_requested": True}))
        return "cancel_requested", job

    # -- retention ----------------------------------------------------------------------

    async def delete(self, account_id: str, job_id: str) -> Job:
        """Expire an ended job now: its outputs are deleted at once; reads answer 410."""
        job = await self.get(account_id, job_id)
        if not job.terminal:
            raise Conflict(f"job {job_id} is {job.status}; cancel it first", job_status=job.status)
        [expired] = await self.store.jobs.expire(job_id=job_id) or [job]
        self._expired(expired)
        return expired

    async def sweep(self) -> int:
        """Expire jobs past their retention; returns how many."""
        jobs = await self.store.jobs.expire()
        for job in jobs:
            self._expired(job)
        await self.store.idempotency.sweep()
        return len(jobs)

    def _expired(self, job: Job) -> None:
        self.storage.delete_job(job.id)
        self.bus.publish(Change.of_job(job, "status"))

    # -- for the worker ---------------------------------------------------------------

    async def resolver(self, job: Job) -> tuple[Callable[[str], Path], Path | None]:
        """Map each file reference in the job's input to a local path, checked against the
        job's account; and the trained model's artifact, if the job names one."""
        engine = self.engine(job.engine)
        paths: dict[str, Path] = {}
        for fmt, _path, ref in find_refs(engine.input_model.model_json_schema(), job.input):
            if fmt != FILE_FORMAT:
                continue
            if ref.startswith("file_"):
                f = await self.store.files.get(ref)
                if f is not None and f.account_id == job.account_id:
                    paths[ref] = self.storage.uploads / f.path
            else:
                ref_job, _, name = ref.partition("/")
                owner = await self.store.jobs.get(ref_job)
                out = await self.store.jobs.output(ref_job, name)
                if owner is not None and owner.account_id == job.account_id and out is not None:
                    paths[ref] = self.storage.output_path(out.path)
        model = None
        if job.model_id and job.task != "train":
            m = await self.store.models.get(job.model_id)
            if m is not None and m.account_id == job.account_id and m.artifact:
                model = self.storage.output_path(m.artifact)

        def resolve(ref: str) -> Path:
            if ref not in paths:
                raise LookupError(f"input file {ref!r} is not available to this job")
            return paths[ref]

        return resolve, model


class Sweeper:
    """Expires jobs past their retention, in the background of every process."""

    def __init__(self, jobs: JobService, interval_s: float) -> None:
        self.jobs = jobs
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="genq-sweeper")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                while await self.jobs.sweep():
                    pass
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.interval_s)
