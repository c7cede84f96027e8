"""The event bus: wakes whoever waits on a job as soon as it changes.

The durable record is the `job_events` table; the bus carries only `Change`
notices (job id, seq, type). Writers in this process publish at once; a tailer
polls the event table for changes other processes made (several `genq worker`
processes on one SQLite file). On PostgreSQL, `genq.pgbus` wakes the tailer with
LISTEN/NOTIFY instead, behind the same `publish`/`subscribe` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genq.aio import wait_event
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


class Watch:
    """Changes of one key (a job id or an account id) since the last `wait` returned.
    Armed from creation, so nothing published between a read and a wait is missed."""

    def __init__(self, bus: EventBus, key: str) -> None:
        self.bus, self.key = bus, key
        self._event = asyncio.Event()
        bus._watches.setdefault(key, set()).add(self)

    def fire(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True as soon as the key changed (possibly already); False after `timeout`."""
        if not await wait_event(self._event, timeout):
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        watches = self.bus._watches.get(self.key)
        if watches is not None:
            watches.discard(self)
            if not watches:
                del self.bus._watches[self.key]

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """In-process fan-out. Listeners must be cheap and must not block."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._watches: dict[str, set[Watch]] = {}
        self._last_seq: dict[str, int] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def watch(self, key: str) -> Watch:
        return Watch(self, key)

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
        for key in (change.job_id, change.account_id):
            for watch in self._watches.get(key, ()):
                watch.fire()

    def seen(self, job_id: str, seq: int) -> bool:
        """Whether change `seq` of the job (or a later one) was published here."""
        return self._last_seq.get(job_id, 0) >= seq

    async def wait(self, key: str, timeout: float) -> bool:
        """Wait for the next change of `key`; False on timeout."""
        with self.watch(key) as w:
            return await w.wait(timeout)


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
