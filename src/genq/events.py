"""The event bus: wakes whoever waits on a job as soon as it changes.

The durable record is the `job_events` table; the bus carries only `Change`
notices (job id, seq, type). Writers in this process publish at once; a tailer
polls the event table for changes other processes made (several `genq worker`
processes on one SQLite file), and a cross-process bus (PostgreSQL LISTEN/NOTIFY)
can replace the tailer behind the same `publish`/`subscribe` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genq.store.jobs import JobStore
from genq.store.records import Job, JobEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    job_id: str
    account_id: str
    seq: int
    type: str  # the event type of the change: status, progress, output, log, completed
    status: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_event(cls, ev: JobEvent) -> Change:
        return cls(ev.job_id, ev.account_id, ev.seq, ev.type, ev.data.get("status", ""), ev.data)

    @classmethod
    def of_job(cls, job: Job, type: str, data: dict[str, Any] | None = None) -> Change:
        return cls(job.id, job.account_id, job.seq, type, job.status, data or {})


Listener = Callable[[Change], None]


class EventBus:
    """In-process fan-out. Listeners must be cheap and must not block."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._last_seq: dict[str, int] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, change: Change) -> None:
        last = self._last_seq.get(change.job_id, 0)
        if change.seq <= last:
            return  # already seen (published here, then read back by the tailer)
        self._last_seq[change.job_id] = change.seq
        if len(self._last_seq) > 100_000:
            self._last_seq.clear()
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # one broken listener must not starve the others
                log.exception("event listener failed")
        for fut in self._waiters.pop(change.job_id, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, job_id: str, timeout: float) -> bool:
        """Wait for the next change of a job; False on timeout."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(job_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[job_id]


class Tailer:
    """Feeds the bus with events written by other processes, by polling the log."""

    def __init__(self, jobs: JobStore, bus: EventBus, interval: float) -> None:
        self.jobs, self.bus, self.interval = jobs, bus, interval
        self._task: asyncio.Task[None] | None = None
        self.last_id = 0

    async def start(self) -> None:
        self.last_id = await self.jobs.last_event_id()
        self._task = asyncio.create_task(self._run(), name="genq-tailer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll_once(self) -> int:
        events = await self.jobs.events_since(self.last_id)
        for ev in events:
            self.last_id = ev.id
            self.bus.publish(Change.of_event(ev))
        return len(events)

    async def _run(self) -> None:
        while True:
            try:
                if await self.poll_once() == 0:
                    await asyncio.sleep(self.interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event tailer failed; retrying")
                await asyncio.sleep(max(self.interval, 1.0))
