"""What the job service keeps in memory, current through the event bus.

`JobCache`: serialized job bodies (the hot path's answer), written through by every
change whose row this process has (the row a transition returned, or the one a
notification carried): the row is kept and rendered once, when the body is first
asked for (a worker process, which nobody reads from, renders nothing); dropped when
another process changes a job without its row; bounded in bytes.

`Board`: every unfinished job's engine, account and status; each engine's queue in
order; how many jobs each account runs; how long jobs of each engine take. Queue
positions, ETAs, the "throttled" message and the worker's "is there work?" come from
here instead of per-read queries. Loaded once at start; other processes' changes
reach it through the bus like everything else.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from genq.events import Change
from genq.lifecycle import ACTIVE, NON_TERMINAL, Status
from genq.store.records import Job, JobOutput

_NON_TERMINAL = frozenset(str(s) for s in NON_TERMINAL)
_ACTIVE = frozenset(str(s) for s in ACTIVE)
OVERHEAD = 400  # bytes an entry costs beyond its body (object, key, bookkeeping)
MAX_ROWS = 20_000  # rows kept for rendering on demand


@dataclass(slots=True)
class CachedJob:
    job_id: str
    account_id: str
    engine: str
    status: str
    seq: int
    etag: str
    body: bytes
    fresh_until: float  # monotonic; inf for ended jobs (nothing in them drifts)
    job: Job | None  # unfinished jobs: the row, to render drifting fields again
    outputs: tuple[JobOutput, ...]
    size: int
    epoch: int = 0  # the board's epoch it was rendered at (a queued job's position)
    head: list[tuple[bytes, bytes]] = field(default_factory=list)  # its 200's headers

    def __post_init__(self) -> None:
        if not self.head:
            self.head = [
                (b"etag", self.etag.encode()),
                (b"content-type", b"application/json"),
                (b"cache-control", b"no-cache"),
                (b"content-length", b"%d" % len(self.body)),
            ]


Render = Callable[[Job, tuple[JobOutput, ...]], CachedJob]


class JobCache:
    """Job bodies by job id, LRU, at most `max_bytes` (bodies plus overhead)."""

    def __init__(
        self, render: Render, max_bytes: int = 64 << 20, epoch: Callable[[], int] = lambda: 0
    ) -> None:
        self.render = render
        self.epoch = epoch
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, CachedJob] = OrderedDict()
        # rows written through and not rendered yet (rendered when first asked for)
        self._rows: OrderedDict[str, tuple[Job, tuple[JobOutput, ...]]] = OrderedDict()
        self._latest: OrderedDict[str, int] = OrderedDict()  # newest seq heard of per job

    def __len__(self) -> int:
        return len(self._items) + len(self._rows)

    def latest(self, job_id: str) -> int:
        return self._latest.get(job_id, 0)

    def get(self, job_id: str) -> CachedJob | None:
        row = self._rows.pop(job_id, None)
        if row is not None:
            rendered = self.render(*row)
            self._store(rendered)
            return rendered
        item = self._items.get(job_id)
        if item is None:
            return None
        if item.seq < self._latest.get(job_id, 0):
            self._drop(job_id)
            return None
        if item.fresh_until < time.monotonic() or (
            item.status == Status.QUEUED and item.epoch != self.epoch()
        ):
            if item.job is None:
                self._drop(job_id)
                return None
            item = self.render(item.job, item.outputs)  # drifting fields, no query
            self._store(item)
            return item
        self._items.move_to_end(job_id)
        return item

    def put(self, item: CachedJob) -> None:
        """Cache a body read or rendered (unless a newer change was heard of)."""
        if item.seq < self._latest.get(item.job_id, 0):
            return
        self._store(item)

    def _store(self, item: CachedJob) -> None:
        old = self._items.pop(item.job_id, None)
        if old is not None:
            self.bytes -= old.size
        self._items[item.job_id] = item
        self.bytes += item.size
        while self.bytes > self.max_bytes and self._items:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= evicted.size

    def _drop(self, job_id: str) -> None:
        old = self._items.pop(job_id, None)
        if old is not None:
            self.bytes -= old.size

    def on_change(self, change: Change) -> None:
        if change.seq > self._latest.get(change.job_id, 0):
            self._latest[change.job_id] = change.seq
            self._latest.move_to_end(change.job_id)
            while len(self._latest) > 200_000:
                self._latest.popitem(last=False)
        job_id = change.job_id
        row = self._rows.get(job_id)
        old = self._items.get(job_id)
        if change.job is None:  # another process changed it: read again when asked
            if row is not None and row[0].seq < change.seq:
                del self._rows[job_id]
            if old is not None and old.seq < change.seq:
                self._drop(job_id)
            return
        outputs = change.outputs
        if outputs is None and row is not None and row[0].seq == change.seq - 1:
            outputs = row[1]
        elif outputs is None and old is not None and old.seq == change.seq - 1:
            outputs = old.outputs
        self._rows.pop(job_id, None)
        if old is not None:
            self._drop(job_id)
        if outputs is None:
            return
        self._rows[job_id] = (change.job, outputs)
        while len(self._rows) > MAX_ROWS:
            self._rows.popitem(last=False)


class Board:
    """See the module docstring. Job ids are ULIDs, so their order is submission order
    (to the millisecond), which is the order of each engine's queue."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[str, str, str]] = {}  # id -> (engine, account, status)
        self._queues: dict[str, list[str]] = {}
        self._running: Counter[str] = Counter()
        self._counts: Counter[tuple[str, str]] = Counter()  # (status, engine) -> jobs
        self._typical: dict[str, float] = {}
        self.epoch = 0  # moves whenever a queue or a running count does

    def load(self, rows: list[tuple[str, str, str, str]]) -> None:
        for job_id, engine, account_id, status in rows:
            self._set(job_id, engine, account_id, str(status))

    def on_change(self, change: Change) -> None:
        if change.status in _NON_TERMINAL:
            self._set(change.job_id, change.engine, change.account_id, change.status)
        else:
            self._forget(change.job_id)
            job = change.job
            if change.status == Status.SUCCEEDED and job and job.started_at and job.completed_at:
                took = (job.completed_at - job.started_at).total_seconds()
                self.observe(job.engine, took)

    def observe(self, engine: str, seconds: float) -> None:
        before = self._typical.get(engine)
        self._typical[engine] = seconds if before is None else 0.8 * before + 0.2 * seconds

    def _set(self, job_id: str, engine: str, account_id: str, status: str) -> None:
        before = self._jobs.get(job_id)
        if before is not None:
            if before[2] == status:
                return
            self._leave(job_id, *before)
        self._jobs[job_id] = (engine, account_id, status)
        self._counts[status, engine] += 1
        self.epoch += 1
        if status == Status.QUEUED:
            bisect.insort(self._queues.setdefault(engine, []), job_id)
        elif status in _ACTIVE:
            self._running[account_id] += 1

    def _forget(self, job_id: str) -> None:
        before = self._jobs.pop(job_id, None)
        if before is not None:
            self._leave(job_id, *before)

    def _leave(self, job_id: str, engine: str, account_id: str, status: str) -> None:
        self.epoch += 1
        left = self._counts[status, engine] - 1
        if left > 0:
            self._counts[status, engine] = left
        else:
            del self._counts[status, engine]
        if status == Status.QUEUED:
            queue = self._queues.get(engine, [])
            i = bisect.bisect_left(queue, job_id)
            if i < len(queue) and queue[i] == job_id:
                del queue[i]
        elif status in _ACTIVE:
            self._running[account_id] -= 1
            if self._running[account_id] <= 0:
                del self._running[account_id]

    def position(self, job_id: str, engine: str) -> int:
        """0-based: how many jobs of the engine wait ahead of this one."""
        return bisect.bisect_left(self._queues.get(engine, []), job_id)

    def counts(self) -> dict[tuple[str, str], int]:
        """Unfinished jobs by (status, engine), as this process knows them."""
        return dict(self._counts)

    def oldest_queued(self) -> dict[str, str]:
        """Each engine's first job in its queue (engines with none left out)."""
        return {engine: queue[0] for engine, queue in list(self._queues.items()) if queue}

    def queued(self, engine: str) -> int:
        return len(self._queues.get(engine, ()))

    def active(self, engine: str) -> int:
        """The engine's jobs starting or running (upstream: in flight there)."""
        return self._counts.get((Status.STARTING, engine), 0) + self._counts.get(
            (Status.RUNNING, engine), 0
        )

    def running(self, account_id: str) -> int:
        return self._running.get(account_id, 0)

    def typical(self, engine: str) -> float | None:
        return self._typical.get(engine)
