"""The worker: claims jobs, runs them, renews their leases and reaps lost ones.

`genq serve` runs one inside the API process; `genq worker` runs it alone. Any
number of workers may share one database: the claim is atomic, every write is
fenced on (job id, attempt, owner), and the reaper re-queues what a dead worker
held once its lease lapses.

Two dispatchers feed it, behind the same claim: the built-in claim loop (SQLite, and
PostgreSQL with GENQ_DISPATCH=claim) wakes on local changes and polls for other
processes' jobs; with Procrastinate (PostgreSQL's default, `genq.dispatch`) each
fetched token claims one job of its engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from genq.aio import wait_event
from genq.engines.context import limit_native_threads
from genq.engines.contract import Engine
from genq.events import Change, EventBus
from genq.ids import token
from genq.runtime import JobRun
from genq.settings import Settings
from genq.storage import Storage
from genq.store import Store
from genq.store.records import QUEUED, Claim, Job

if TYPE_CHECKING:
    from genq.dispatch import ProcrastinateDispatch

log = logging.getLogger(__name__)

Resolver = Callable[[Job], Awaitable[tuple[Callable[[str], Path], Path | None]]]


class Worker:
    def __init__(
        self,
        *,
        store: Store,
        storage: Storage,
        engines: Mapping[str, Engine],
        bus: EventBus,
        settings: Settings,
        resolver: Resolver,
        slots: int | None = None,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.engines = dict(engines)
        self.bus = bus
        self.settings = settings
        self.resolver = resolver
        self.slots = slots or settings.worker_slots
        self.account_limits = {n: p.concurrent_jobs for n, p in settings.plan_table.items()}
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{token(4)}"
        self.runs: dict[str, JobRun] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._run_tasks: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self.dispatch: ProcrastinateDispatch | None = None
        if settings.uses_procrastinate:
            from genq.dispatch import ProcrastinateDispatch

            self.dispatch = ProcrastinateDispatch(self)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        limit_native_threads()
        self._unsubscribe = self.bus.subscribe(self._on_change)
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="genq-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="genq-reaper"),
        ]
        if self.dispatch is not None:
            await self.dispatch.start()
        else:
            self._tasks.append(asyncio.create_task(self._claim_loop(), name="genq-claim"))
        log.info(
            "worker %s started: %d slots, engines %s, dispatch %s",
            self.owner,
            self.slots,
            ", ".join(sorted(self.engines)),
            "procrastinate" if self.dispatch else "claim loop",
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running jobs finish for `grace` seconds, then hand the rest
        back to the queue."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self._stopping.set()
        self._wake.set()
        if self.dispatch is not None:
            self.dispatch.stop_fetching()
        if self._run_tasks:
            await asyncio.wait(set(self._run_tasks.values()), timeout=grace)
        for run in list(self.runs.values()):
            run.lose_lease()  # its engine is told to stop; nothing more gets written
            job = await self.store.jobs.release(run.claim, "re-queued: worker shut down")
            if job:
                self.bus.publish(Change.of_job(job, "status"))
        if self._run_tasks:
            await asyncio.wait(
                set(self._run_tasks.values()), timeout=self.settings.cancel_grace_s + 1
            )
        if self.dispatch is not None:
            await self.dispatch.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsubscribe:
            self._unsubscribe()

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_task(self, job_id: str) -> asyncio.Task[None] | None:
        """The task running the job here, if it still runs."""
        return self._run_tasks.get(job_id)

    def request_cancel(self, job_id: str) -> None:
        run = self.runs.get(job_id)
        if run is not None:
            run.request_cancel()

    def _on_change(self, change: Change) -> None:
        if change.status == QUEUED and change.job_id not in self.runs:
            self._wake.set()
        elif change.data.get("cancel_requested") and change.job_id in self.runs:
            self.runs[change.job_id].request_cancel()

    # -- loops ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self.claim_once()
            except Exception:
                log.exception("claim failed")
                claimed = 0
            if claimed and len(self.runs) < self.slots:
                continue  # there may be more
            await wait_event(self._wake, self.settings.poll_interval_s)

    async def claim_once(self) -> int:
        free = self.slots - len(self.runs)
        if free <= 0 or self._stopping.is_set():
            return 0
        limits = {name: e.concurrency for name, e in self.engines.items()}
        return len(await self._claim(free, limits))

    async def claim_engine(self, engine: str, *, dispatch_id: int) -> Claim | None:
        """Claim and start the oldest eligible queued job of `engine` for a Procrastinate
        token; None if none may run now."""
        if self.slots - len(self.runs) <= 0:
            return None
        claims = await self._claim(
            1, {engine: self.engines[engine].concurrency}, dispatch_id=dispatch_id
        )
        return claims[0] if claims else None

    async def _claim(
        self, slots: int, limits: dict[str, int], dispatch_id: int | None = None
    ) -> list[Claim]:
        claims = await self.store.jobs.claim(
            self.owner,
            slots=slots,
            limits=limits,
            lease_s=self.settings.lease_s,
            account_limits=self.account_limits,
            dispatch_id=dispatch_id,
        )
        for claim in claims:
            self.bus.publish(Change.of_job(claim.job, "status"))
            await self._start(claim)
        return claims

    async def _start(self, claim: Claim) -> None:
        resolve, model = await self.resolver(claim.job)
        run = JobRun(
            claim,
            self.engines[claim.job.engine],
            store=self.store,
            storage=self.storage,
            bus=self.bus,
            cancel_grace_s=self.settings.cancel_grace_s,
            resolve_input=resolve,
            model=model,
        )
        if claim.job.cancel_requested_at is not None:
            run.request_cancel()
        self.runs[claim.job.id] = run
        task = asyncio.create_task(self._run(run), name=f"job-{claim.job.id}")
        self._run_tasks[claim.job.id] = task

        def forget(done: asyncio.Task[None], job_id: str = claim.job.id) -> None:
            if self._run_tasks.get(job_id) is done:
                del self._run_tasks[job_id]

        task.add_done_callback(forget)

    async def _run(self, run: JobRun) -> None:
        try:
            await run.run()
        finally:
            self.runs.pop(run.job_id, None)
            self._wake.set()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat_once()
            except Exception:
                log.exception("heartbeat failed")

    async def heartbeat_once(self) -> None:
        runs = dict(self.runs)
        held, cancel = await self.store.jobs.heartbeat(
            self.owner, [r.claim for r in runs.values()], self.settings.lease_s
        )
        for job_id, run in runs.items():
            if job_id not in held and job_id in self.runs:
                run.lose_lease()
            elif job_id in cancel:
                run.request_cancel()

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval_s)
            try:
                await self.reap_once()
            except Exception:
                log.exception("reaper failed")

    async def reap_once(self) -> list[Job]:
        jobs = await self.store.jobs.reap(self.settings.max_attempts)
        if self.dispatch is not None:
            missing = await self.store.jobs.top_up_tokens()
            if missing:
                log.warning("queued jobs without a Procrastinate token: deferred %d", missing)
        for job in jobs:
            log.warning("reaped job %s: now %s", job.id, job.status)
            self.bus.publish(Change.of_job(job, "completed" if job.terminal else "status"))
        if jobs:
            self._wake.set()
        return jobs
