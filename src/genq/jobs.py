"""The job service: submit, read (through a write-through cache of serialized bodies),
list, cancel, wait; and the resolution of a job's file and model references for the
worker. What each transition does is `genq.lifecycle`'s; the store executes it; this
module publishes every change it commits on the bus (`Change.made`), which writes the
new body into the cache and wakes whoever waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from genq import idempotency, lifecycle, netsafe, payloads
from genq.engines.contract import Engine
from genq.errors import (
    Conflict,
    EngineNotFound,
    Expired,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from genq.events import Change, EventBus
from genq.ids import iso, new_id, utcnow
from genq.jobcache import OVERHEAD, Board, CachedJob, JobCache
from genq.lifecycle import CancelOutcome, Status
from genq.refs import FILE_FORMAT, MODEL_FORMAT, find_refs
from genq.settings import Settings
from genq.storage import Storage
from genq.store import Store
from genq.store.jobs import Cap as Cap  # a condition on `submit`
from genq.store.records import Account, Job, JobEvent, JobOutput
from genq.telemetry import logs, tracing

log = logging.getLogger(__name__)
EVENTS_PAGE = 500  # a job's events read at once
NON_TERMINAL_TTL_S = 1.0  # queue_position, eta_s and elapsed time drift without events
_NON_TERMINAL = frozenset(str(s) for s in lifecycle.NON_TERMINAL)


def pydantic_errors(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join([prefix, *(str(p) for p in err["loc"])]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_context=False)
    ]


class SharedReads:
    """Coalesces identical reads in flight: when thousands of waiters wake for the same
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


class EngineInfo:
    """What the service needs of an engine, computed once when engines load."""

    __slots__ = ("engine", "ref_schema", "retry_after")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        schema = engine.input_model.model_json_schema()
        text = orjson.dumps(schema)
        # the JSON Schema only matters for inputs that can hold file or model references
        has_refs = FILE_FORMAT.encode() in text or MODEL_FORMAT.encode() in text
        self.ref_schema: dict[str, Any] | None = schema if has_refs else None
        typical = engine.typical_duration_s
        self.retry_after = {
            Status.QUEUED: str(int(min(10, max(1, typical / 4)))),
            Status.STARTING: str(int(min(5, max(1, typical / 10)))),
            Status.RUNNING: str(int(min(5, max(1, typical / 10)))),
        }

    def refs(self, value: Any) -> list[tuple[str, str, str]]:
        if self.ref_schema is None:
            return []
        return list(find_refs(self.ref_schema, value))


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
        self.info = {name: EngineInfo(e) for name, e in engines.items()}
        self.bus = bus
        self.settings = settings
        self.plans = settings.plan_table
        self.base = settings.base_url
        self.board = Board()
        self.cache = JobCache(
            self._render_entry, settings.job_cache_bytes, lambda: self.board.epoch
        )
        self.shared = SharedReads()
        # told of every change this process commits, before the bus (genq.telemetry.metrics)
        self.on_made: Callable[[Change, Any], None] | None = None
        bus.subscribe(self.board.on_change)  # first: bodies render from the board
        bus.subscribe(self.cache.on_change, rows=True)

    async def start(self) -> None:
        """Learn the unfinished jobs (the board) and engines' recent durations."""
        self.board.load(await self.store.jobs.nonterminal())
        for name in self.engines:
            samples = await self.store.jobs.recent_durations(name, 20)
            for took in reversed(samples):
                self.board.observe(name, took)

    def publish(
        self,
        made: tuple[Job, JobEvent],
        *,
        hook: Any = None,
        outputs: tuple[JobOutput, ...] | None = None,
    ) -> Job:
        job, event = made
        change = Change.made(job, event, hook=hook, outputs=outputs)
        if self.on_made is not None:
            self.on_made(change, hook)
        self.bus.publish(change)
        return job

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
        trains: bool = False,
        cap: Cap | None = None,
    ) -> Job:
        """Validate and queue a job (holding its estimate). `cap`: refuse it (`Busy`)
        unless the account has fewer unfinished jobs, checked in the creating
        transaction (two racing submits cannot both pass)."""
        account_id = account.id
        plan = self.plans.get(account.plan)
        retention_days = plan.retention_days if plan else 31.0
        engine = self.engine(engine_name)
        payloads.check_metadata(metadata)
        if webhook:
            payloads.check_json(webhook, "webhook")
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
        payloads.check_json(normalized, "input")
        for fmt, path, ref in self.info[engine.name].refs(normalized):
            if fmt == FILE_FORMAT:
                await self._check_file_ref(account_id, path, ref)
            elif fmt == MODEL_FORMAT:
                await self._check_model_ref(account_id, path, ref)
                model_id = model_id or ref
        estimate = getattr(engine, "estimate", None)
        credits = int(estimate(data)) if callable(estimate) else int(engine.price)
        now = utcnow()
        job = Job(
            id=new_id("job"),
            account_id=account_id,
            engine=engine.name,
            task=engine.task,
            status=Status.QUEUED,
            progress=0.0,
            message=None,
            input=normalized,
            metadata=dict(metadata or {}),
            webhook=dict(webhook) if webhook else None,
            error_code=None,
            error_message=None,
            error_retryable=None,
            credits_estimate=credits,
            credits_used=0,
            credits_refunded=0,
            parent_id=parent_id,
            model_id=model_id,
            seq=1,
            attempt=0,
            lease_owner=None,
            lease_expires_at=None,
            cancel_requested_at=None,
            account_limit=plan.concurrent_jobs if plan else 1,
            created_at=now,
            started_at=None,
            completed_at=None,
            expires_at=now + timedelta(days=retention_days),
            updated_at=now,
            trace_context=tracing.traceparent() if tracing.ON else None,
        )
        # the rest of the request (a handler's task of its own) logs about this job
        logs.set_job(job.id, account_id, engine.name)
        made = await self.store.jobs.create(
            job,
            lifecycle.created(),
            idempotency=idempotency.current.get(),
            trains=model_id if trains else None,
            cap=cap,
        )
        return self.publish(made, outputs=())

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
                and job.status != Status.EXPIRED
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
        """The job's row (checked: 404 for another account's, 410 once expired)."""
        job = await self.store.jobs.get(job_id)
        if job is None or job.account_id != account_id:
            raise NotFound(f"no job {job_id!r}")
        if job.status == Status.EXPIRED:
            raise Expired(f"job {job_id} has expired")
        return job

    async def events_after(self, job_id: str, seq: int) -> list[JobEvent]:
        """A job's events after `seq`, at most `EVENTS_PAGE` of them (one query for
        every stream asking at once)."""
        rows: list[JobEvent] = await self.shared.get(
            ("events", job_id, seq),
            lambda: self.store.jobs.events_after(job_id, seq, EVENTS_PAGE),
        )
        return rows

    async def unfinished(self, account_id: str, limit: int = 1000) -> list[Job]:
        """The account's queued and running jobs, newest first."""
        rows = await self.store.jobs.page(account_id, status=lifecycle.NON_TERMINAL, limit=limit)
        return [job for job, _ in rows]

    async def account_events(self, account_id: str, after: int) -> list[JobEvent]:
        """An account's events after id `after` (one query for every stream at the same
        position)."""
        rows: list[JobEvent] = await self.shared.get(
            ("account", account_id, after),
            lambda: self.store.jobs.events_since(after, account_id=account_id),
        )
        return rows

    async def last_event_id(self) -> int:
        return await self.store.jobs.last_event_id()

    async def find(self, job_id: str) -> Job | None:
        """A job by id whoever owns it (for faces that tell "not yours" from "missing")."""
        return await self.store.jobs.get(job_id)

    async def canonical(self, account_id: str, job_id: str) -> dict[str, Any]:
        """The canonical job JSON as a dict, checked for ownership (404) and expiry (410);
        what compat faces translate from."""
        item = await self.body(account_id, job_id)
        data: dict[str, Any] = orjson.loads(item.body)
        return data

    def cached(self, account_id: str, job_id: str) -> CachedJob | None:
        """The hot path without an await: the body if the cache holds it (checked for
        ownership and expiry like `body`), else None."""
        item = self.cache.get(job_id)
        if item is None:
            return None
        if item.account_id != account_id:
            raise NotFound(f"no job {job_id!r}")
        if item.status == Status.EXPIRED:
            raise Expired(f"job {job_id} has expired")
        return item

    async def body(self, account_id: str, job_id: str) -> CachedJob:
        """The job's serialized body, from the cache when it is current."""
        hit = self.cached(account_id, job_id)
        if hit is not None:
            return hit
        item: CachedJob | None = await self.shared.get(("body", job_id), lambda: self._load(job_id))
        if item is None or item.account_id != account_id:
            raise NotFound(f"no job {job_id!r}")
        if item.status == Status.EXPIRED:
            raise Expired(f"job {job_id} has expired")
        return item

    async def _load(self, job_id: str) -> CachedJob | None:
        found = await self.store.jobs.get_with_outputs(job_id)
        if found is None:
            return None
        job, outputs = found
        item = self._render_entry(job, tuple(outputs))
        self.cache.put(item)  # not if a change overtook the read
        return item

    def entry(self, job: Job) -> CachedJob:
        """The body of a job this process just changed (from the cache it was written
        into, else rendered from the row)."""
        item = self.cache.get(job.id)
        if item is not None and item.seq >= job.seq:
            return item
        return self._render_entry(job, ())

    def _render_entry(self, job: Job, outputs: tuple[JobOutput, ...]) -> CachedJob:
        body = payloads.dumps(self.render(job, outputs))
        unfinished = job.status in _NON_TERMINAL
        return CachedJob(
            job_id=job.id,
            account_id=job.account_id,
            engine=job.engine,
            status=str(job.status),
            seq=job.seq,
            etag=f'W/"{job.id[-12:]}-{job.seq}"',
            body=body,
            fresh_until=time.monotonic() + NON_TERMINAL_TTL_S if unfinished else float("inf"),
            job=job if unfinished else None,
            outputs=outputs if unfinished else (),
            size=len(body) * (2 if unfinished else 1) + OVERHEAD,
            epoch=self.board.epoch,
        )

    def render(self, job: Job, outputs: Sequence[JobOutput]) -> dict[str, Any]:
        """The canonical job JSON (DESIGN.md section 2); no I/O."""
        base = self.base
        queue_position = None
        message = job.message
        if job.status == Status.QUEUED:
            queue_position = self.board.position(job.id, job.engine)
            message = self._throttled(job) or message
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
            "eta_s": self._eta(job, queue_position),
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
            "url": f"{self.base}/files/{out.path}",
            "content_type": out.content_type,
            "bytes": out.bytes,
            **out.meta,
            "sha256": out.sha256,
        }

    def _throttled(self, job: Job) -> str | None:
        """Why a queued job waits, when it is a concurrency limit (like Runway's
        THROTTLED): the account's plan, or the engine's (for an upstream engine, the
        jobs in flight its provider allows, `max_jobs`). Such jobs stay queued rather
        than being refused."""
        running = self.board.running(job.account_id)
        if running >= job.account_limit:
            return (
                f"throttled: this account's plan runs {job.account_limit} jobs at once"
                f" and {running} are running"
            )
        engine = self.engines.get(job.engine)
        if engine is None:
            return None
        active = self.board.active(job.engine)
        if active < engine.concurrency:
            return None
        upstream = getattr(engine, "upstream", None)
        if upstream is not None:
            return (
                f"waiting: {upstream.provider} allows {engine.concurrency} jobs in flight"
                f" at once (max_jobs) and {active} are"
            )
        return f"waiting: {job.engine} runs {engine.concurrency} jobs at once"

    def _typical(self, engine_name: str) -> float:
        seen = self.board.typical(engine_name)
        if seen is not None:
            return seen
        engine = self.engines.get(engine_name)
        return float(engine.typical_duration_s) if engine else 5.0

    def _eta(self, job: Job, queue_position: int | None) -> float | None:
        if job.terminal:
            return None
        typical = self._typical(job.engine)
        if job.status == Status.QUEUED:
            engine = self.engines.get(job.engine)
            lanes = max(1, engine.concurrency if engine else 1)
            return round(typical * (1 + (queue_position or 0) // lanes), 1)
        elapsed = (utcnow() - job.started_at).total_seconds() if job.started_at else 0.0
        if job.status == Status.RUNNING and job.progress >= 5:
            return round(max(0.0, elapsed * (100 - job.progress) / job.progress), 1)
        return round(max(0.0, typical - elapsed), 1)

    def retry_after(self, status: str, engine_name: str) -> str:
        """Seconds a polling client should wait before asking again."""
        info = self.info.get(engine_name)
        if info is None:
            return "5"
        return info.retry_after.get(status, "5")  # type: ignore[call-overload, no-any-return]

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
            while item.status in _NON_TERMINAL and item.seq <= baseline:
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
        rows = await self.store.jobs.page(
            account_id, status=status, engine=engine, limit=limit + 1, before=before
        )
        more = len(rows) > limit
        rows = rows[:limit]
        data = [self.render(job, outputs) for job, outputs in rows]
        return data, (rows[-1][0].id if more else None)

    # -- cancel -----------------------------------------------------------------------

    async def cancel(self, account_id: str, job_id: str) -> tuple[CancelOutcome, Job]:
        """Returns what happened (canceled, or cancel_requested) and the job."""
        item = await self.body(account_id, job_id)  # 404 / 410
        logs.set_job(job_id, account_id, item.engine)  # (a request's task: the rest logs so)
        now = utcnow()

        what, made, job = await self.store.jobs.cancel(
            job_id,
            queued=lambda j: lifecycle.canceled_queued(j, now),
            requested=lifecycle.cancel_requested(now),
        )
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if what == CancelOutcome.ENDED:
            raise Conflict(f"job {job_id} has already ended: {job.status}", job_status=job.status)
        if made is not None:
            hook = lifecycle.Hook.COMPLETED if what == CancelOutcome.CANCELED else None
            self.publish(made, hook=hook)
        return what, job

    # -- retention ----------------------------------------------------------------------

    async def delete(self, account_id: str, job_id: str) -> Job:
        """Expire an ended job now: its outputs are deleted at once; reads answer 410."""
        job = await self.get(account_id, job_id)
        if not job.terminal:
            raise Conflict(f"job {job_id} is {job.status}; cancel it first", job_status=job.status)
        done = await self.store.jobs.expire(lifecycle.expired(), job_id=job_id)
        for made in done:
            await self._expired(made)
        return done[0][0] if done else job

    async def sweep(self) -> int:
        """Expire jobs past their retention; returns how many."""
        done = await self.store.jobs.expire(lifecycle.expired())
        for made in done:
            await self._expired(made)
        await self.store.idempotency.sweep()
        return len(done)

    async def _expired(self, made: tuple[Job, JobEvent]) -> None:
        try:
            await asyncio.to_thread(self.storage.delete_job, made[0].id)
        except StorageUnavailable as exc:  # the job is expired either way
            log.warning("job %s: outputs not deleted: %s", made[0].id, exc)
        self.publish(made, outputs=())

    # -- for the worker ---------------------------------------------------------------

    async def resolver(self, job: Job) -> tuple[Callable[[str], Path], Path | None]:
        """Map each file reference in the job's input to a local path, checked against the
        job's account; and the trained model's artifact, if the job names one."""
        info = self.info.get(job.engine)
        keys: dict[str, str] = {}
        for fmt, _path, ref in info.refs(job.input) if info else []:
            if fmt != FILE_FORMAT:
                continue
            if ref.startswith("file_"):
                f = await self.store.files.get(ref)
                if f is not None and f.account_id == job.account_id:
                    keys[ref] = f"uploads/{f.path}"
            else:
                ref_job, _, name = ref.partition("/")
                owner = await self.store.jobs.get(ref_job)
                out = await self.store.jobs.output(ref_job, name)
                if owner is not None and owner.account_id == job.account_id and out is not None:
                    keys[ref] = f"files/{out.path}"
        model_key = None
        if job.model_id and job.task != "train":
            m = await self.store.models.get(job.model_id)
            if m is not None and m.account_id == job.account_id and m.artifact:
                model_key = f"files/{m.artifact}"
        paths: dict[str, Path] = {}
        model = None
        if self.storage.local:  # the files themselves
            paths, model = self._local_inputs(job.id, keys, model_key)
        elif keys or model_key:  # fetched from the object store into the job's scratch dir
            paths, model = await asyncio.to_thread(self._local_inputs, job.id, keys, model_key)

        def resolve(ref: str) -> Path:
            if ref not in paths:
                raise LookupError(f"input file {ref!r} is not available to this job")
            return paths[ref]

        return resolve, model

    def _local_inputs(
        self, job_id: str, keys: dict[str, str], model_key: str | None
    ) -> tuple[dict[str, Path], Path | None]:
        paths = {}
        for ref, key in keys.items():
            path = self.storage.input_path(key, job_id)
            if path is not None:
                paths[ref] = path
        model = self.storage.input_path(model_key, job_id) if model_key else None
        return paths, model


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
