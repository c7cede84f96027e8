"""Procrastinate dispatch, the worker side (PostgreSQL; the SQL side and the design
are in `genq.store.dispatch`).

A genq worker with Procrastinate dispatch runs a Procrastinate worker on the queues
of the engines it hosts. Each token it fetches runs `take`: genq's counted claim of
the oldest eligible queued job of that engine, then the job itself through the same
`JobRun` (context, leases, heartbeats, fencing) as the claim loop, the token staying
"doing" in Procrastinate while the job runs. So:

- the job row and its token commit together (the store writes both);
- per-engine and per-account limits hold across all workers because the claim counts
  running jobs under one advisory lock; a token that meets a full engine or account
  raises `Busy` and Procrastinate retries it `dispatch_retry_s` later;
- a cancel of a running job aborts its token: Procrastinate NOTIFYs the worker,
  cancels the `take` task, and `take` tells the engine to stop (genq's heartbeat
  would notice too, a lease period later);
- stalled tokens (their worker sent no Procrastinate heartbeat for a lease period,
  `GENQ_LEASE_S`) are retried by a periodic task every 5 s; this recovers a token a
  worker died holding before it claimed a job. A job that was claimed comes back
  through genq's own reaper (its lease lapsed; re-queued with a new token), so its
  old token, once retried, finds nothing and ends. Either way a dead worker's work
  is running again about a lease period later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.job_context import AbortReason
from procrastinate.worker import Worker as ProcrastinateWorker

from genq.pgbus import conninfo
from genq.store.dispatch import TASK

if TYPE_CHECKING:
    from genq.worker import Worker

log = logging.getLogger(__name__)

MAINTENANCE = "genq.maintenance"  # queue of genq's periodic Procrastinate tasks
STALLED_EVERY = "* * * * * */5"  # cron with seconds (the 6th field): every 5 s


class Busy(Exception):
    """The token's engine (or every account with queued jobs of it) is at its limit."""


class ProcrastinateDispatch:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        settings = worker.settings
        self.app = App(
            connector=PsycopgConnector(
                conninfo=conninfo(settings.db_url),
                min_size=1,
                max_size=max(4, worker.slots + 2),
                kwargs={"application_name": "genq-dispatch"},
            )
        )
        self.app.task(
            name=TASK,
            pass_context=True,
            # Busy, or a database hiccup: try again, on whichever worker fetches it
            retry=RetryStrategy(wait=settings.dispatch_retry_s),
        )(self._take)
        retry_stalled = self.app.task(
            name="genq.retry_stalled", queue=MAINTENANCE, queueing_lock="genq.retry_stalled"
        )(self._retry_stalled)
        self.app.periodic(cron=STALLED_EVERY)(retry_stalled)
        self.taken = 0  # tokens that claimed a job, for tests and logs
        self._pworker: ProcrastinateWorker | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.app.open_async()
        self._pworker = ProcrastinateWorker(
            self.app,
            queues=[*sorted(self.worker.engines), MAINTENANCE],
            name=self.worker.owner,
            concurrency=self.worker.slots,
            install_signal_handlers=False,  # genq's process handles SIGTERM
            delete_jobs="successful",  # a token's work is recorded in genq's tables
            # genq stops its runs itself (finish within the grace, then re-queue)
            shutdown_graceful_timeout=self.worker.settings.shutdown_grace_s
            + self.worker.settings.cancel_grace_s
            + 5,
            # the same liveness period as genq's own leases
            update_heartbeat_interval=self.worker.settings.lease_s / 3,
            stalled_worker_timeout=self.worker.settings.lease_s,
        )
        self._task = asyncio.create_task(
            self._pworker.run(),  # type: ignore[no-untyped-call]
            name="genq-procrastinate",
        )

    def stop_fetching(self) -> None:
        if self._pworker is not None:
            self._pworker.stop()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        """After the genq worker stopped its runs: wait for Procrastinate to wind down."""
        self.stop_fetching()
        if self._task is not None:
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                log.exception("the Procrastinate worker failed")
            self._task = None
        await self.app.close_async()

    async def _take(self, context: JobContext, engine: str) -> str:
        worker = self.worker
        assert context.job.id is not None
        if worker.stopping:
            raise Busy("this worker is stopping")
        claim = await worker.claim_engine(engine, dispatch_id=context.job.id)
        if claim is None:
            if await worker.store.jobs.has_queued(engine):
                raise Busy(f"{engine}: at its limit")
            return "nothing queued"
        self.taken += 1
        run_task = worker.run_task(claim.job.id)
        if run_task is None:  # already over
            return claim.job.id
        try:
            await asyncio.shield(run_task)
        except asyncio.CancelledError:
            if context.abort_reason() == AbortReason.USER_REQUEST:
                log.info("job %s: cancel received through Procrastinate", claim.job.id)
                worker.request_cancel(claim.job.id)
            # see the run out (canceled, or re-queued by a shutdown); genq records it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run_task)
        return claim.job.id

    async def _retry_stalled(self, timestamp: int) -> None:
        manager = self.app.job_manager
        stalled = await manager.get_stalled_jobs(
            seconds_since_heartbeat=self.worker.settings.lease_s
        )
        for job in stalled:
            log.warning("retrying Procrastinate job %s of a stalled worker", job.id)
            await manager.retry_job(job)
