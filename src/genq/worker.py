"""The worker: claims jobs, runs them, renews their leases and reaps lost ones.

`genq serve` runs one inside the API process; `genq worker` runs it alone. Any number
of workers may share one database: the claim is one atomic operation that counts
per-engine and per-account limits across all of them, every write is fenced on (job
id, attempt, owner), and the reaper re-queues what a dead worker held once its lease
lapsed (the reaper is a statement of its own, never queued behind other work).

A worker claims when it has a free slot and there is work for it: the board (fed by
the event bus, so by other processes' submissions too) tells it so without a query.
It writes nothing while there is nothing to do: when idle it only reads, every
`poll_interval_s`, whether queued work exists that it somehow did not hear of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from genq import lifecycle
from genq.aio import wait_event
from genq.engines.context import limit_native_threads
from genq.engines.contract import Engine
from genq.engines.diffusers.hosting import claim_batches, device_keys
from genq.engines.upstream.gateway import Gateway, UpstreamEngine
from genq.engines.upstream.tracker import UpstreamRun
from genq.events import Change, EventBus
from genq.ids import token, utcnow
from genq.jobcache import Board
from genq.lifecycle import Status
from genq.runtime import JobRun, Publish, Resolver
from genq.settings import Settings
from genq.storage import Storage
from genq.store import Store
from genq.store.records import Claim, Job

log = logging.getLogger(__name__)

FOLD_EVERY = 6  # reaper rounds between folds of settled credits into balances


class Worker:
    def __init__(
        self,
        *,
        store: Store,
        storage: Storage,
        engines: Mapping[str, Engine],
        bus: EventBus,
        board: Board,
        publish: Publish,
        settings: Settings,
        resolver: Resolver,
        slots: int | None = None,
        name: str | None = None,
        gateway: Gateway | None = None,
        callback_url: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.engines = dict(engines)
        self.limits = {n: e.concurrency for n, e in self.engines.items()}
        self.devices = device_keys(self.engines)  # engines run one job per device here
        # engines whose concurrency follows their servers (Cog: the slots that are up)
        self._live = {
            n: live
            for n, e in self.engines.items()
            if (live := getattr(e, "live_concurrency", None)) is not None
        }
        self.bus = bus
        self.board = board
        self.publish = publish
        self.settings = settings
        self.resolver = resolver
        self.slots = slots or settings.worker_slots
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{token(4)}"
        self.gateway = gateway
        self.callback_url = callback_url or (lambda job_id, token: None)
        self.runs: dict[str, JobRun | UpstreamRun] = {}
        self.claims = 0  # claim operations run (for tests and benchmarks)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._run_tasks: dict[str, asyncio.Task[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        limit_native_threads()
        self._unsubscribe = self.bus.subscribe(self._on_change)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="genq-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="genq-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="genq-reaper"),
        ]
        log.info(
            "worker %s started: %d slots, engines %s",
            self.owner,
            self.slots,
            ", ".join(sorted(self.engines)),
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; let running jobs finish for `grace` seconds, then hand the rest
        back to the queue."""
        grace = self.settings.shutdown_grace_s if grace is None else grace
        self._stopping.set()
        self._wake.set()
        # a claim in flight ends first: the jobs it took get their runs, which are then
        # finished or handed back below (not left `running` until their lease lapses)
        claiming = [t for t in self._tasks if t.get_name() == "genq-claim"]
        if claiming:
            await asyncio.wait(claiming, timeout=10)
        if self._run_tasks:
            await asyncio.wait(set(self._run_tasks.values()), timeout=grace)
        for run in list(self.runs.values()):
            run.lose_lease()  # its engine is told to stop; nothing more gets written
            with contextlib.suppress(Exception):
                made = await self.store.jobs.release(
                    run.claim, lifecycle.requeued(lifecycle.SHUTDOWN)
                )
                if made is not None:
                    self.publish(made)
        if self._run_tasks:
            await asyncio.wait(
                set(self._run_tasks.values()), timeout=self.settings.cancel_grace_s + 1
            )
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
        if change.status == Status.QUEUED:
            if change.engine in self.limits and change.job_id not in self.runs:
                self._wake.set()
        elif change.data.get("cancel_requested") and change.job_id in self.runs:
            self.runs[change.job_id].request_cancel()
        elif change.terminal and change.job_id not in self.runs and self._work_waiting():
            self._wake.set()  # a slot freed elsewhere: jobs held back by a limit may run now

    # -- loops ------------------------------------------------------------------------

    def _work_waiting(self) -> bool:
        return any(self.board.queued(e) for e in self.limits)

    async def _claim_loop(self) -> None:
        probe = True  # at start, and after a quiet spell: look for work not heard of
        while not self._stopping.is_set():
            self._wake.clear()
            claimed, free = 0, self.slots - len(self.runs)
            try:
                if free > 0 and (
                    self._work_waiting() or (probe and await self.store.jobs.probe(self.limits))
                ):
                    claimed = await self.claim_once()
            except Exception:
                log.exception("claim failed")
            probe = False
            if claimed >= free > 0 and len(self.runs) < self.slots:
                continue  # it took all it asked for: there may be more
            if not await wait_event(self._wake, self.settings.poll_interval_s):
                probe = True

    async def claim_once(self) -> int:
        free = self.slots - len(self.runs)
        if free <= 0 or self._stopping.is_set():
            return 0
        for name, live in self._live.items():
            self.limits[name] = live()
        # the engines the board knows have queued work (all of them when it knows of none:
        # then this is the periodic look for work not heard of)
        waiting = {e: n for e, n in self.limits.items() if self.board.queued(e)}
        if not self.devices:
            return len(await self._claim(free, waiting or self.limits))
        running = [run.claim.job.engine for run in self.runs.values()]
        claimed = 0
        for slots, limits in claim_batches(free, waiting or self.limits, self.devices, running):
            if claimed < free:
                claimed += len(await self._claim(min(slots, free - claimed), limits))
        return claimed

    async def _claim(self, slots: int, limits: dict[str, int]) -> list[Claim]:
        lease = timedelta(seconds=self.settings.lease_s)

        def step(now: datetime) -> lifecycle.Step:
            return lifecycle.claimed(self.owner, now + lease, now)

        self.claims += 1
        made = await self.store.jobs.claim_events(self.owner, slots=slots, limits=limits, step=step)
        claims = []
        for pair in made:
            # Nothing here awaits or can fail for one job without the others: every
            # claimed job gets its run (and so its heartbeats) at once. What can fail
            # (resolving inputs, the engine) fails that job inside its run.
            job = self.publish(pair, hook=lifecycle.Hook.STARTED, outputs=())
            claim = Claim(job=job, owner=self.owner, attempt=job.attempt)
            claims.append(claim)
            self._start(claim)
        return claims

    def _start(self, claim: Claim) -> None:
        engine = self.engines[claim.job.engine]
        run: JobRun | UpstreamRun
        if isinstance(engine, UpstreamEngine) and self.gateway is not None:
            # hands the job to its provider and lets go of the slot (see the tracker)
            run = UpstreamRun(
                claim,
                engine,
                gateway=self.gateway,
                store=self.store,
                publish=self.publish,
                resolver=self.resolver,
                callback_url=self.callback_url,
                storage=self.storage,
            )
        else:
            run = JobRun(
                claim,
                engine,
                store=self.store,
                storage=self.storage,
                publish=self.publish,
                cancel_grace_s=self.settings.cancel_grace_s,
                resolver=self.resolver,
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

    async def _run(self, run: JobRun | UpstreamRun) -> None:
        try:
            await run.run()
        finally:
            self.runs.pop(run.job_id, None)
            if self._work_waiting():
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
        rounds = 0
        while True:
            await asyncio.sleep(self.settings.reaper_interval_s)
            rounds += 1
            try:
                await self.reap_once()
                if rounds % FOLD_EVERY == 0:
                    await self.store.jobs.fold_credits()
            except Exception:
                log.exception("reaper failed")

    async def reap_once(self) -> list[Job]:
        now, max_attempts = utcnow(), self.settings.max_attempts

        def step_for(job: Job) -> lifecycle.Step:
            return lifecycle.reaped(job, max_attempts=max_attempts, now=now)

        made = await self.store.jobs.reap(step_for)
        jobs = []
        for pair in made:
            job = pair[0]
            log.warning(
                "reaped job %s: now %s",
                job.id,
                job.status,
                extra={"job_id": job.id, "account_id": job.account_id, "engine": job.engine},
            )
            hook = lifecycle.Hook.COMPLETED if job.terminal else None
            jobs.append(self.publish(pair, hook=hook))
        if jobs:
            self._wake.set()
        return jobs
