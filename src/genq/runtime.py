"""Running one claimed job: the engine, its context, and every write fenced on the lease.

Records from the engine (which may be on another thread) go through a queue to one
flusher task; progress is coalesced to at most `PROGRESS_HZ` writes a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genq.engines.context import Context, call_engine
from genq.engines.contract import Engine, EngineError, JobCanceled, Log, Output, Progress, Record
from genq.errors import LeaseLost
from genq.events import Change, EventBus
from genq.storage import Storage
from genq.store import Store
from genq.store.records import CANCELED, FAILED, SUCCEEDED, Claim, Job

log = logging.getLogger(__name__)
PROGRESS_HZ = 4.0
_STOP = object()


class JobRun:
    """One attempt at one job. `run()` returns when the job is settled or the lease lost."""

    def __init__(
        self,
        claim: Claim,
        engine: Engine,
        *,
        store: Store,
        storage: Storage,
        bus: EventBus,
        cancel_grace_s: float,
        resolve_input: Callable[[str], Path],
        model: Path | None,
    ) -> None:
        self.claim = claim
        self.engine = engine
        self.store = store
        self.storage = storage
        self.bus = bus
        self.cancel_grace_s = cancel_grace_s
        self.resolve_input = resolve_input
        self.model = model
        self.cancel_requested = asyncio.Event()
        self.lost = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    @property
    def job_id(self) -> str:
        return self.claim.job.id

    def request_cancel(self) -> None:
        self.cancel_requested.set()

    def lose_lease(self) -> None:
        self.lost = True
        self.cancel_requested.set()

    def _sink(self, record: Record) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, record)

    def _publish(self, job: Job, type: str, data: dict[str, Any] | None = None) -> None:
        self.bus.publish(Change.of_job(job, type, data))

    async def _flush(self) -> None:
        """Write records in order; coalesce progress to PROGRESS_HZ writes a second."""
        try:
            await self._flush_loop()
        except LeaseLost:
            self.lose_lease()

    async def _flush_loop(self) -> None:
        pending: Progress | None = None
        last_write = 0.0
        while True:
            timeout = None
            if pending is not None:
                timeout = max(0.0, last_write + 1 / PROGRESS_HZ - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    item = await self._queue.get()
            except TimeoutError:
                item = None
            if isinstance(item, Progress):
                pending = item
                if time.monotonic() - last_write < 1 / PROGRESS_HZ:
                    continue
            if pending is not None:  # due, or something else must not overtake it
                job = await self.store.jobs.progress(self.claim, pending.pct, pending.message)
                self._publish(job, "progress")
                pending, last_write = None, time.monotonic()
            if isinstance(item, Output):
                job = await self.store.jobs.add_output(
                    self.claim,
                    {
                        "name": item.name,
                        "kind": item.kind,
                        "content_type": item.content_type,
                        "bytes": item.bytes,
                        "sha256": item.sha256,
                        "path": self.storage.relative(item.path),
                        "meta": item.meta,
                    },
                )
                self._publish(job, "output")
            elif isinstance(item, Log):
                job = await self.store.jobs.log(self.claim, item.level, item.message[:4000])
                self._publish(job, "log")
            elif item is _STOP:
                return

    async def run(self) -> None:
        try:
            await self._run()
        except LeaseLost:
            self.lost = True
            log.warning(
                "job %s: lease lost; abandoning attempt %s", self.job_id, self.claim.attempt
            )
        except Exception as exc:  # the runtime itself failed: fail the job, keep the worker
            log.exception("job %s: could not be run", self.job_id)
            error = ("engine_error", f"{type(exc).__name__}: {exc}"[:2000], False)
            with contextlib.suppress(LeaseLost):
                job = await self.store.jobs.finish(self.claim, FAILED, error=error)
                self._publish(job, "completed")

    async def _run(self) -> None:
        job = self.claim.job
        out_dir = self.storage.new_output_dir(job.id)
        self.storage.delete_job(job.id, keep=out_dir)  # leftovers of a lost attempt
        data = self.engine.input_model.model_validate(job.input)
        ctx = Context(
            job_id=job.id,
            input=data,
            output_dir=out_dir,
            sink=self._sink,
            resolve_input=self.resolve_input,
            model=self.model,
        )
        started = await self.store.jobs.mark_running(self.claim)
        self._publish(started, "status")
        flusher = asyncio.create_task(self._flush(), name=f"flush-{job.id}")
        engine_task = asyncio.create_task(
            self._call_with_timeout(ctx),
            name=f"engine-{job.id}",
        )
        cancel_wait = asyncio.create_task(self.cancel_requested.wait())
        stopped = False
        try:
            await asyncio.wait({engine_task, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not engine_task.done():  # asked to stop: tell the engine, give it grace
                stopped = True
                ctx.cancel()
                done, _ = await asyncio.wait({engine_task}, timeout=self.cancel_grace_s)
                if not done:
                    engine_task.cancel()
                    with contextlib.suppress(BaseException):
                        await engine_task
        finally:
            cancel_wait.cancel()
            if engine_task.done() and not engine_task.cancelled():
                engine_task.exception()  # retrieved here; judged by _outcome
            ctx.close()  # a thread that runs on past this point writes nothing
            self._queue.put_nowait(_STOP)
            if self.lost:
                flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self.lost:
            return
        status, error = self._outcome(engine_task, stopped)
        credits = job.credits_estimate if status == SUCCEEDED else 0
        finished = await self.store.jobs.finish(
            self.claim, status, error=error, credits_used=credits
        )
        self._publish(finished, "completed")

    async def _call_with_timeout(self, ctx: Context) -> None:
        async with asyncio.timeout(self.engine.timeout_s):
            await call_engine(self.engine, ctx)

    def _outcome(
        self, task: asyncio.Task[None], stopped: bool
    ) -> tuple[str, tuple[str, str, bool] | None]:
        if stopped or task.cancelled():
            return CANCELED, ("canceled", "canceled while running", False)
        exc = task.exception()
        if exc is None:
            return SUCCEEDED, None
        if isinstance(exc, JobCanceled):
            return CANCELED, ("canceled", "canceled while running", False)
        if isinstance(exc, TimeoutError):
            return FAILED, (
                "timeout",
                f"engine ran past its {self.engine.timeout_s:g} s limit",
                True,
            )
        if isinstance(exc, EngineError):
            return FAILED, (exc.code, str(exc), exc.retryable)
        if isinstance(exc, ValidationError):
            return FAILED, ("invalid_input", str(exc), False)
        log.warning("job %s: engine %s raised", self.job_id, self.engine.name, exc_info=exc)
        return FAILED, ("engine_error", f"{type(exc).__name__}: {exc}"[:2000], False)
