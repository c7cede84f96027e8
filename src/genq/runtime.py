"""Running one claimed job: the engine, its context, and every write fenced on the lease.

Records from the engine (which may be on another thread) go through a queue to one
flusher task, which writes whatever has piled up in one transaction: outputs and log
lines in order, progress coalesced to at most `PROGRESS_HZ` writes a second (none in a
job's first 1/PROGRESS_HZ seconds). The last progress report is folded into the
job's final write, so a quick job costs its claim and its finish, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genq import lifecycle
from genq.engines.context import Context, call_engine
from genq.engines.contract import Engine, EngineError, JobCanceled, Log, Output, Progress, Record
from genq.errors import LeaseLost, StorageUnavailable
from genq.ids import utcnow
from genq.lifecycle import ErrorInfo, Hook, Status, Step
from genq.payloads import clean_text
from genq.storage import Storage
from genq.store import Store
from genq.store.records import Claim, Job, JobOutput
from genq.telemetry import logs, tracing

log = logging.getLogger(__name__)
PROGRESS_HZ = 4.0
MAX_LOG_LINES = 1000  # per attempt; past it lines are counted, not kept
_STOP = object()

Publish = Callable[..., Job]
# A job's input files and trained model, as local paths (see JobService.resolver).
Resolver = Callable[[Job], Awaitable[tuple[Callable[[str], Path], Path | None]]]


class JobRun:
    """One attempt at one job. `run()` returns when the job is settled or the lease lost."""

    def __init__(
        self,
        claim: Claim,
        engine: Engine,
        *,
        store: Store,
        storage: Storage,
        publish: Publish,
        cancel_grace_s: float,
        resolver: Resolver,
    ) -> None:
        self.claim = claim
        self.engine = engine
        self.store = store
        self.storage = storage
        self.publish = publish
        self.cancel_grace_s = cancel_grace_s
        self.resolver = resolver
        self.cancel_requested = asyncio.Event()
        self.lost = False
        self.outputs: list[JobOutput] = []
        self._written = 0  # outputs written so far
        self._last_progress: Progress | None = None  # not written yet: folded into finish
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._sink_lock = threading.Lock()
        self._log_lines = self._logs_dropped = 0
        self._storage_error: StorageUnavailable | None = None  # an output could not be stored
        self._out_dir: Path | None = None
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
        # Called from the engine's thread: a runaway logger must not grow the queue (or
        # the job's event log) without bound.
        if isinstance(record, Log):
            with self._sink_lock:
                if self._log_lines >= MAX_LOG_LINES:
                    self._logs_dropped += 1
                    return
                self._log_lines += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, record)

    # -- the flusher ----------------------------------------------------------------------

    async def _flush(self) -> None:
        try:
            await self._flush_loop()
        except LeaseLost:
            self.lose_lease()

    async def _flush_loop(self) -> None:
        pending: Progress | None = None
        last_write = time.monotonic()
        interval = 1 / PROGRESS_HZ
        while True:
            timeout = None
            if pending is not None:
                timeout = max(0.0, last_write + interval - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    first = await self._queue.get()
            except TimeoutError:
                first = None
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items: list[tuple[Step, Hook | None, Mapping[str, Any] | None]] = []
            stop = False
            for rec in batch:
                if isinstance(rec, Progress):
                    pending = rec
                elif isinstance(rec, Output | Log):
                    if isinstance(rec, Output) and not await self._persist(rec):
                        continue
                    if pending is not None:  # nothing overtakes a progress report
                        items.append(self._progress_item(pending))
                        pending = None
                    items.append(
                        self._output_item(rec) if isinstance(rec, Output) else self._log_item(rec)
                    )
                elif rec is _STOP:
                    stop = True
                    if self._logs_dropped:
                        items.append(
                            self._log_item(
                                Log(
                                    "warning",
                                    f"{self._logs_dropped} more log lines were not kept "
                                    f"(at most {MAX_LOG_LINES} per run)",
                                )
                            )
                        )
            if stop:
                self._last_progress = pending  # folded into the finish
            elif pending is not None and time.monotonic() - last_write >= interval:
                items.append(self._progress_item(pending))
                pending = None
            if items:
                await self._write(items)
                last_write = time.monotonic()
            if stop:
                return

    @staticmethod
    def _progress_item(p: Progress) -> tuple[Step, Hook | None, None]:
        step = lifecycle.progressed(p.pct, p.message)
        return step, step.hook, None

    @staticmethod
    def _log_item(rec: Log) -> tuple[Step, None, None]:
        return lifecycle.logged(rec.level, clean_text(rec.message[:4000])), None, None

    async def _persist(self, item: Output) -> bool:
        """Store an output before its row is written (a no-op on the local backend).
        When the store stays down the engine is stopped and the job fails; no later
        output is recorded."""
        if self._storage_error is not None:
            return False
        if self.storage.local:
            return True
        try:
            rel = self.storage.relative(item.path)
            await asyncio.to_thread(self.storage.persist_output, rel, item.content_type)
        except StorageUnavailable as exc:
            log.warning("job %s: output %s not stored: %s", self.job_id, item.name, exc)
            self._storage_error = exc
            self.cancel_requested.set()
            return False
        return True

    def _output_item(self, item: Output) -> tuple[Step, Hook | None, dict[str, Any]]:
        path, position = self.storage.relative(item.path), len(self.outputs)
        row = {
            "name": item.name,
            "kind": item.kind,
            "content_type": item.content_type,
            "bytes": item.bytes,
            "sha256": item.sha256,
            "path": path,
            "meta": item.meta,
            "position": position,
        }
        self.outputs.append(JobOutput.of_row(self.job_id, row, utcnow()))
        step = lifecycle.output_added(row)
        return step, step.hook, row

    async def _write(self, items: list[tuple[Step, Hook | None, Mapping[str, Any] | None]]) -> None:
        if tracing.ON:
            tracing.steps(items)
        made = await self.store.jobs.record(self.claim, [(s, row) for s, _, row in items])
        count = self._written
        for (_step, hook, row), pair in zip(items, made, strict=True):
            count += row is not None
            # the outputs as of this change
            self.publish(pair, hook=hook, outputs=tuple(self.outputs[:count]))
        self._written = count

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        job = self.claim.job
        logs.set_job(job.id, job.account_id, job.engine)  # (run in the job's own task)
        with tracing.job_run(self.claim):
            await self._run_attempt()

    async def _run_attempt(self) -> None:
        try:
            await self._run()
        except LeaseLost:
            self.lost = True
            log.warning(
                "job %s: lease lost; abandoning attempt %s", self.job_id, self.claim.attempt
            )
        except StorageUnavailable as exc:  # inputs could not be fetched, leftovers deleted
            log.warning("job %s: %s", self.job_id, exc)
            with contextlib.suppress(LeaseLost):
                await self._finish(Status.FAILED, _storage_failure(exc))
        except Exception as exc:  # the runtime itself failed: fail the job, keep the worker
            log.exception("job %s: could not be run", self.job_id)
            error = ErrorInfo(
                "engine_error", clean_text(f"{type(exc).__name__}: {exc}"[:2000]), False
            )
            with contextlib.suppress(LeaseLost):
                await self._finish(Status.FAILED, error)
        finally:
            if not self.storage.local:  # the local copies of inputs and outputs
                await asyncio.to_thread(self.storage.drop_scratch, self.job_id, self._out_dir)

    async def _run(self) -> None:
        job = self.claim.job
        out_dir = self._out_dir = self.storage.new_output_dir(job.id)
        if job.attempt > 1:  # leftovers of a lost attempt
            await asyncio.to_thread(self.storage.delete_job, job.id, out_dir)
        data = self.engine.input_model.model_validate(job.input)
        resolve_input, model = await self.resolver(job)
        ctx = Context(
            job_id=job.id,
            input=data,
            output_dir=out_dir,
            sink=self._sink,
            resolve_input=resolve_input,
            model=model,
        )
        flusher = asyncio.create_task(self._flush(), name=f"flush-{job.id}")
        engine_task = asyncio.create_task(self._call_with_timeout(ctx), name=f"engine-{job.id}")
        stopped = False
        if not self.cancel_requested.is_set():
            cancel_wait = asyncio.create_task(self.cancel_requested.wait())
            try:
                await asyncio.wait({engine_task, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                cancel_wait.cancel()
        try:
            if not engine_task.done():  # asked to stop: tell the engine, give it grace
                stopped = True
                ctx.cancel()
                done, _ = await asyncio.wait({engine_task}, timeout=self.cancel_grace_s)
                if not done:
                    engine_task.cancel()
                    with contextlib.suppress(BaseException):
                        await engine_task
        finally:
            if engine_task.done() and not engine_task.cancelled():
                engine_task.exception()  # retrieved here; judged by _outcome
            ctx.stop()  # a thread that runs on past this point writes nothing
            self._queue.put_nowait(_STOP)
            if self.lost:
                flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await asyncio.to_thread(ctx.remove_workdir)  # (a video's frames, say)
        if self.lost:
            return
        status, error = self._outcome(engine_task, stopped)
        if self._storage_error is not None:  # nothing succeeds whose outputs are not stored
            status, error = Status.FAILED, _storage_failure(self._storage_error)
        if tracing.ON and not engine_task.cancelled():
            tracing.raised(engine_task.exception())
        await self._finish(status, error)

    async def _finish(self, status: Status, error: ErrorInfo | None) -> None:
        job = self.claim.job
        pending = self._last_progress
        model = lifecycle.model_end(
            job.task, job.model_id, status, [(o.name, o.path) for o in self.outputs], error
        )
        step = lifecycle.finished(
            status,
            estimate=job.credits_estimate,
            used=job.credits_estimate if status == Status.SUCCEEDED else 0,
            now=utcnow(),
            error=error,
            message=pending.message if pending is not None else None,
            model=model,
            progress=pending.pct if pending is not None else None,
        )
        if tracing.ON:
            tracing.finished(status, error)
        made = await self.store.jobs.fenced(self.claim, step)
        self.publish(made, hook=step.hook, outputs=tuple(self.outputs))

    async def _call_with_timeout(self, ctx: Context) -> None:
        async with asyncio.timeout(self.engine.timeout_s):
            await call_engine(self.engine, ctx)

    def _outcome(self, task: asyncio.Task[None], stopped: bool) -> tuple[Status, ErrorInfo | None]:
        if stopped or task.cancelled():
            return Status.CANCELED, lifecycle.CANCELED_RUNNING
        exc = task.exception()
        if exc is None:
            return Status.SUCCEEDED, None
        if isinstance(exc, JobCanceled):
            return Status.CANCELED, lifecycle.CANCELED_RUNNING
        if isinstance(exc, TimeoutError):
            return Status.FAILED, ErrorInfo(
                "timeout", f"engine ran past its {self.engine.timeout_s:g} s limit", True
            )
        if isinstance(exc, EngineError):
            return Status.FAILED, ErrorInfo(exc.code, clean_text(str(exc)), exc.retryable)
        if isinstance(exc, ValidationError):
            return Status.FAILED, ErrorInfo("invalid_input", clean_text(str(exc)))
        log.warning("job %s: engine %s raised", self.job_id, self.engine.name, exc_info=exc)
        return Status.FAILED, ErrorInfo(
            "engine_error", clean_text(f"{type(exc).__name__}: {exc}"[:2000])
        )


def _storage_failure(exc: StorageUnavailable) -> ErrorInfo:
    return ErrorInfo("storage_unavailable", clean_text(str(exc)[:2000]), True)
