"""The event bus: every process learns of every job change, in commit order, at once.

The durable record is the `job_events` table. A `Change` is one event as the bus
carries it: a change this process committed is published by the code that made it
(with the job's new row, so caches are written through); a change of another process
arrives through a follower:

- SQLite (`SqliteFollower`): the store's writer thread notices other processes'
  commits with `PRAGMA data_version` (before each of its own transactions, and when
  idle every `interval` seconds) and reads their events, so they are published in
  commit order, ahead of this process's next changes;
- PostgreSQL (`PgFollower`): every transition NOTIFYs `genq_events` with its event;
  a LISTEN connection publishes each as it commits. The event log is also read every
  `poll_s` as a safety net (and after every reconnect), up to the watermark below
  which event ids are final (`genq.store.jobs.JobStore.events_since`).

Listeners (`subscribe`) must be cheap and must not block; `watch(key)` wakes a waiter
on the next change of a job or an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from genq.aio import wait_event
from genq.lifecycle import EventType, webhook_wants
from genq.store import Store
from genq.store.db import dt_of
from genq.store.records import Job, JobEvent, JobOutput
from genq.store.steps import EVENTS_CHANNEL

log = logging.getLogger(__name__)
OWN_DELAY_S = 1.0  # PostgreSQL: a notification of this process's own change waits this long


@dataclass(frozen=True, slots=True)
class Change:
    job_id: str
    account_id: str
    engine: str
    seq: int
    type: str  # the event type: status, progress, output, log, completed
    status: str  # the job's status after the change
    data: Mapping[str, Any]
    event_id: int
    created_at: datetime
    webhook: bool = False  # a webhook delivery was written with it
    job: Job | None = None  # the job's row after the change, when this process made it
    outputs: tuple[JobOutput, ...] | None = None  # all its outputs, when known

    @classmethod
    def made(
        cls,
        job: Job,
        event: JobEvent,
        *,
        hook: Any = None,
        outputs: tuple[JobOutput, ...] | None = None,
    ) -> Change:
        """A change this process committed (`hook`: the webhook event of its step)."""
        return cls(
            job.id,
            job.account_id,
            job.engine,
            job.seq,
            str(event.type),
            str(job.status),
            event.data,
            event.id,
            event.created_at,
            webhook_wants(job.webhook, hook),
            job,
            outputs,
        )

    @classmethod
    def of_event(cls, ev: JobEvent, engine: str, webhook: bool) -> Change:
        return cls(
            ev.job_id,
            ev.account_id,
            engine,
            ev.seq,
            str(ev.type),
            ev.status,
            ev.data,
            ev.id,
            ev.created_at,
            webhook,
        )

    @property
    def terminal(self) -> bool:
        return self.type == EventType.COMPLETED or self.status == "expired"

    def event(self) -> JobEvent:
        return JobEvent(
            self.event_id,
            self.job_id,
            self.account_id,
            self.seq,
            self.type,
            dict(self.data),
            self.created_at,
        )


Listener = Callable[[Change], None]


class Watch:
    """Changes of one key (a job id or an account id) since the last `wait` returned.
    Armed from creation, so nothing published between a read and a wait is missed."""

    __slots__ = ("_fired", "_waiter", "bus", "key")

    def __init__(self, bus: EventBus, key: str) -> None:
        self.bus, self.key = bus, key
        self._fired = False
        self._waiter: asyncio.Future[None] | None = None
        bus._watches.setdefault(key, set()).add(self)

    def fire(self) -> None:
        self._fired = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """True as soon as the key changed (possibly already); False after `timeout`,
        or at once (and from then on) when the bus is draining."""
        if self.bus.draining:
            return False
        if not self._fired:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                return False
            finally:
                self._waiter = None
            if self.bus.draining:
                return False
        self._fired = False
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
    """In-process fan-out of `Change`s, each once and in order per job."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._row_listeners: list[Listener] = []
        self._watches: dict[str, set[Watch]] = {}
        self._last_seq: dict[str, int] = {}
        self._rowless: set[str] = set()  # jobs whose last change came without its row
        self.draining = False  # the server is stopping: nobody waits any more

    def drain(self) -> None:
        """The server is stopping: every wait ends now (as if timed out), and no new
        one waits, so that long-polls answer and event streams close at once."""
        self.draining = True
        for watches in list(self._watches.values()):
            for w in list(watches):
                w.fire()

    def subscribe(self, listener: Listener, *, rows: bool = False) -> Callable[[], None]:
        """Call `listener` with every change once. With `rows`, also with a change that
        was published already but now comes with the job's row: a follower can hear
        of this process's own commit (NOTIFY) before the code that made it publishes."""
        self._listeners.append(listener)
        if rows:
            self._row_listeners.append(listener)

        def unsubscribe() -> None:
            self._listeners.remove(listener)
            if rows:
                self._row_listeners.remove(listener)

        return unsubscribe

    def watch(self, key: str) -> Watch:
        return Watch(self, key)

    def publish(self, change: Change) -> None:
        last = self._last_seq.get(change.job_id, 0)
        if change.seq <= last:
            # already seen (published here, then read back by a follower; or the reverse)
            if change.seq == last and change.job is not None and change.job_id in self._rowless:
                self._rowless.discard(change.job_id)
                for listener in self._row_listeners:
                    listener(change)
            return
        self._last_seq[change.job_id] = change.seq
        if change.job is None:
            self._rowless.add(change.job_id)
        else:
            self._rowless.discard(change.job_id)
        if len(self._last_seq) > 200_000:
            self._last_seq.clear()
            self._rowless.clear()
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # one broken listener must not starve the others
                log.exception("event listener failed")
        for key in (change.job_id, change.account_id):
            watches = self._watches.get(key)
            if watches:
                for watch in list(watches):
                    watch.fire()

    def seen(self, job_id: str, seq: int) -> bool:
        """Whether change `seq` of the job (or a later one) was published here."""
        return self._last_seq.get(job_id, 0) >= seq

    async def wait(self, key: str, timeout: float) -> bool:
        """Wait for the next change of `key`; False on timeout."""
        with self.watch(key) as w:
            return await w.wait(timeout)


class SqliteFollower:
    """Other processes' changes on a SQLite file (see the module docstring)."""

    def __init__(self, store: Store, bus: EventBus, interval: float) -> None:
        self.store, self.bus, self.interval = store, bus, interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        after = await self.store.jobs.last_event_id()
        self.store.db.follow_foreign(self.store.jobs.foreign_reader, self._publish, after)
        self._task = asyncio.create_task(self._run(), name="genq-follow")

    def _publish(self, rows: list[tuple[JobEvent, str, bool]]) -> None:
        for ev, engine, webhook in rows:
            self.bus.publish(Change.of_event(ev, engine, webhook))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.store.db.probe_foreign()


def change_of_notice(payload: str, *, rows: bool = True) -> tuple[Change | None, str]:
    """A `Change` from a `genq_events` notification (None: not genq's, or no data) and
    the origin of the change (the writer's application_name). With `rows`, the job's
    row and outputs it carries are read too (a process that serves no reads skips it)."""
    try:
        n = orjson.loads(payload)
        data = n.get("data")
        origin = str(n.get("origin", ""))
        if data is None:
            return None, origin
        job = outputs = None
        row = n.get("job") if rows else None
        if row is not None:
            job = Job.of([row[c] for c in Job.COLUMNS])
            if "outputs" in n:
                outputs = tuple(
                    JobOutput(
                        job.id, name, kind, ct, int(size), sha, path, meta or {}, int(pos), None
                    )
                    for name, kind, ct, size, sha, path, meta, pos in n["outputs"]
                )
        change = Change(
            n["job_id"],
            n["account_id"],
            n["engine"],
            int(n["seq"]),
            n["type"],
            n["status"],
            data,
            int(n["id"]),
            dt_of(n["created_at"]) or datetime.min,
            bool(n.get("webhook")),
            job,
            outputs,
        )
        return change, origin
    except (ValueError, KeyError, TypeError):
        return None, ""


class PgFollower:
    """Other processes' changes on PostgreSQL: LISTEN (see the module docstring).
    Reconnects with backoff; after each (re)connect the log is read to catch up."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        poll_s: float,
        keepalive_s: float = 10.0,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.store, self.bus = store, bus
        self.conninfo = store.db.conninfo
        self.poll_s, self.keepalive_s = poll_s, keepalive_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.connected = asyncio.Event()
        self.notifications = 0  # received, for tests and metrics
        self.rows = True  # decode the rows notifications carry (off: nobody reads here)
        self.last_id = 0  # the event log has been read up to here
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, wait_s: float = 5.0) -> None:
        """Start listening; waits up to `wait_s` for the first LISTEN (it keeps trying in
        the background if the database is not there yet)."""
        self.last_id = await self.store.jobs.last_event_id()
        self._tasks = [
            asyncio.create_task(self._listen(), name="genq-pg-listen"),
            asyncio.create_task(self._poll(), name="genq-pg-poll"),
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self.connected.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def poll_once(self) -> int:
        """Read the log past `last_id` and publish what the bus has not seen."""
        fresh = 0
        while True:
            batch = await self.store.jobs.changes_since(self.last_id, 1000)
            for ev, engine, webhook in batch:
                self.last_id = max(self.last_id, ev.id)
                fresh += not self.bus.seen(ev.job_id, ev.seq)
                self.bus.publish(Change.of_event(ev, engine, webhook))
            if len(batch) < 1000:
                return fresh

    async def _poll(self) -> None:
        while True:
            await wait_event(self._kick, self.poll_s)
            self._kick.clear()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the event log failed; retrying")

    async def _listen(self) -> None:
        backoff = self.min_backoff_s
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event listener lost its connection (%s); retrying", exc)
            if self.connected.is_set():  # it had worked: start the backoff afresh
                self.connected.clear()
                backoff = self.min_backoff_s
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _session(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, application_name="genq-listen"
        )
        loop = asyncio.get_running_loop()
        async with conn:
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            self.connected.set()
            self._kick.set()  # catch up on what was committed while we were not listening
            while True:
                async for note in conn.notifies(timeout=self.keepalive_s):
                    self.notifications += 1
                    change, origin = change_of_notice(note.payload, rows=self.rows)
                    if change is None:
                        self._kick.set()  # too big to notify whole: read it from the log
                    elif origin == self.store.db.origin:
                        # this process's own commit: the code that made it publishes it
                        # (with the job's row); this is only the safety net
                        loop.call_later(OWN_DELAY_S, self.bus.publish, change)
                    else:
                        self.bus.publish(change)
                await conn.execute("SELECT 1")  # a quiet spell: is the server still there?
