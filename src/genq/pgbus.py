"""The cross-process event bus on PostgreSQL: LISTEN/NOTIFY wakes the event tailer.

Every transaction that writes job events also sends `NOTIFY genq_events` with
`<job_id>:<seq>:<account_id>:<type>:<status>` (see `genq.store.jobs`), delivered on
commit. `PgListener` keeps one autocommit connection LISTENing; on a notification of
a change this process has not published yet it has the tailer read the new rows, so
the bus carries the same `Change` (data included) as with polling, milliseconds after
the commit. The tailer's own poll stays on, slowly, as a safety net, and runs once
after every (re)connect, so nothing is lost while the connection was down.

Event ids are handed out in insert order but PostgreSQL may commit them out of order
(id 10 after id 11). `PgTailer` keeps the ids it skipped over as holes and reads them
again until they appear or `hole_s` passes (a rolled-back transaction leaves a hole
for good); a change a notification announced that is still missing after a read is
published from the notification itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

from genq.events import Change, EventBus, Tailer
from genq.store.jobs import EVENTS_CHANNEL, JobStore
from genq.store.records import JobEvent

log = logging.getLogger(__name__)

MAX_HOLES = 10_000
APPLICATION_NAME = "genq-listen"  # in pg_stat_activity


@dataclass(frozen=True, slots=True)
class Note:
    """One notification: which change of which job was committed."""

    job_id: str
    seq: int
    account_id: str
    type: str
    status: str

    @classmethod
    def parse(cls, payload: str) -> Note | None:
        parts = payload.split(":")
        if len(parts) != 5 or not parts[1].isdigit():
            return None
        job_id, seq, account_id, type_, status = parts
        return cls(job_id, int(seq), account_id, type_, status)

    def change(self) -> Change:
        return Change(self.job_id, self.account_id, self.seq, self.type, self.status)


def conninfo(url: str) -> str:
    """A libpq connection string from genq's SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgTailer(Tailer):
    """The tailer, safe against event ids that commit out of order (see the module)."""

    def __init__(
        self, jobs: JobStore, bus: EventBus, interval: float, *, hole_s: float = 30.0
    ) -> None:
        super().__init__(jobs, bus, interval)
        self.hole_s = hole_s
        self._holes: dict[int, float] = {}  # id skipped over -> when to give up on it
        self._lock = asyncio.Lock()

    async def poll_once(self) -> int:
        """Read and publish new events and holes that filled; returns how many of them
        the bus had not seen yet."""
        async with self._lock:
            found = await self.jobs.events_since(self.last_id)
            if self._holes:  # after the read above: see the note on order in _publish
                found += await self.jobs.events_by_ids(list(self._holes))
            return self._publish(found)

    def _publish(self, found: list[JobEvent]) -> int:
        # In id order: one job's events commit in seq order (its row lock serializes
        # them) and so in id order; a hole read after the new rows is never older in
        # the job's history than a new row of the same job that was read.
        fresh = 0
        now = time.monotonic()
        for ev in sorted(found, key=lambda e: e.id):
            if ev.id > self.last_id:
                if len(self._holes) < MAX_HOLES:
                    for missing in range(self.last_id + 1, min(ev.id, self.last_id + 1001)):
                        self._holes[missing] = now + self.hole_s
                self.last_id = ev.id
            else:
                self._holes.pop(ev.id, None)
            fresh += not self.bus.seen(ev.job_id, ev.seq)
            self.bus.publish(Change.of_event(ev))
        for hole, deadline in list(self._holes.items()):
            if deadline < now:
                del self._holes[hole]
        return fresh


class PgListener:
    """LISTEN on a dedicated connection; each notification of a change this process
    has not published wakes the tailer. Reconnects with backoff."""

    def __init__(
        self,
        url: str,
        tailer: Tailer,
        *,
        keepalive_s: float = 10.0,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.conninfo = conninfo(url)
        self.tailer, self.bus = tailer, tailer.bus
        self.keepalive_s = keepalive_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.connected = asyncio.Event()
        self.notifications = 0  # received, for tests and metrics
        self._pending: list[str] = []
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, wait_s: float = 5.0) -> None:
        """Start listening; waits up to `wait_s` for the first LISTEN (it keeps trying in
        the background if the database is not there yet)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="genq-pg-listen"),
            asyncio.create_task(self._consume(), name="genq-pg-notifies"),
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
            self.conninfo, autocommit=True, application_name=APPLICATION_NAME
        )
        async with conn:
            await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
            self.connected.set()
            self._kick.set()  # catch up on what was committed while we were not listening
            while True:
                async for note in conn.notifies(timeout=self.keepalive_s):
                    self.notifications += 1
                    self._pending.append(note.payload)
                    self._kick.set()
                await conn.execute("SELECT 1")  # a quiet spell: is the server still there?

    async def _consume(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            batch, self._pending = self._pending, []
            notes = [n for n in map(Note.parse, batch) if n is not None]
            if batch and all(self.bus.seen(n.job_id, n.seq) for n in notes):
                continue  # published here already (this process wrote them)
            try:
                await self.tailer.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading notified events failed; the tailer will retry")
            for n in notes:
                if not self.bus.seen(n.job_id, n.seq):
                    self.bus.publish(n.change())
