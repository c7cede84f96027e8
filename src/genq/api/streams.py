"""Server-Sent Events of one job, fanned out in O(1) per event.

Every subscriber of a job's stream in this process shares one `Feed`: each change of
the job is turned into its SSE frame once (bytes; a `completed` frame carries the
whole job body, from the write-through cache, or read once for everyone) and appended
to the feed, and the subscribers waiting on it are woken. No subscriber reads the
database or renders anything of its own, except to replay what happened before it
subscribed (one shared read per position) or, if it fell so far behind that the feed
no longer holds what it missed, to catch up the same way. A slow client only slows
itself: the feed never waits for anyone.

An idle subscriber costs its connection, its coroutine and one pending `receive()`
(which tells it when the client goes away); nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from genq.errors import GenqError
from genq.events import Change, EventBus
from genq.ids import iso
from genq.jobs import EVENTS_PAGE, JobService
from genq.lifecycle import NON_TERMINAL, EventType
from genq.store.records import JobEvent

log = logging.getLogger(__name__)
KEEP = 256  # frames a feed holds for subscribers that fall behind
ACCOUNT_FRAMES = 4096  # account-stream frames kept for the streams that will send them
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
RETRY = b"retry: 2000\n\n"
KEEPALIVE = b": keep-alive\n\n"
_NON_TERMINAL = frozenset(str(s) for s in NON_TERMINAL)


def frame(event_id: int, type: str, data: Mapping[str, Any] | bytes) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, type.encode(), payload)


def event_data(ev: JobEvent) -> dict[str, Any]:
    """The data of a non-`completed` event's frame."""
    return {
        "job_id": ev.job_id,
        "seq": ev.seq,
        "type": ev.type,
        "created_at": iso(ev.created_at),
        **ev.data,
    }


class Sub:
    """One subscriber's wake-ups: a new frame, its client leaving, the keep-alive tick.
    While it sends it is not waiting; it looks at the feed again before it waits."""

    __slots__ = ("gone", "tick", "waiter")

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.gone = False
        self.tick = False

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def left(self, _: object = None) -> None:
        self.gone = True
        self.wake()


class Feed:
    """One job's frames, shared by its subscribers: (seq, frame, last?) in seq order."""

    __slots__ = ("frames", "subs")

    def __init__(self) -> None:
        self.frames: deque[tuple[int, bytes, bool]] = deque(maxlen=KEEP)
        self.subs: set[Sub] = set()

    def add(self, seq: int, data: bytes, last: bool) -> None:
        if self.frames and seq <= self.frames[-1][0]:
            return
        self.frames.append((seq, data, last))
        for sub in self.subs:
            sub.wake()

    def after(self, seq: int) -> tuple[list[tuple[int, bytes, bool]], bool]:
        """Frames after `seq`, and whether the feed still holds all of them."""
        frames = [f for f in self.frames if f[0] > seq]
        complete = not frames or frames[0][0] == seq + 1
        return frames, complete


class Feeds:
    """The feeds of the jobs somebody streams in this process."""

    def __init__(self, jobs: JobService, bus: EventBus, keepalive_s: float) -> None:
        self.jobs = jobs
        self.bus = bus
        self.keepalive_s = keepalive_s
        self._feeds: dict[str, Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._account_frames: OrderedDict[int, bytes] = OrderedDict()
        self._ticker: asyncio.Task[None] | None = None
        bus.subscribe(self._on_change)  # after the job cache: completed bodies are in it

    async def _tick(self) -> None:
        """Every `keepalive_s`, each idle subscriber sends a keep-alive comment (one
        timer for all of them, none per wait)."""
        while self._feeds:
            await asyncio.sleep(self.keepalive_s)
            for feed in list(self._feeds.values()):
                for sub in feed.subs:
                    sub.tick = True
                    sub.wake()
        self._ticker = None

    async def account_frame(self, ev: JobEvent) -> bytes:
        """The frame of an event on an account stream (`id:` the global event id), made
        once for every stream of the account that sends it."""
        found = self._account_frames.get(ev.id)
        if found is not None:
            return found
        if ev.type == EventType.COMPLETED:  # carries the whole job
            try:
                data = (await self.jobs.body(ev.account_id, ev.job_id)).body
            except GenqError:
                data = orjson.dumps(event_data(ev))
            made = frame(ev.id, ev.type, data)
        else:
            made = frame(ev.id, ev.type, event_data(ev))
        self._account_frames[ev.id] = made
        if len(self._account_frames) > ACCOUNT_FRAMES:
            self._account_frames.popitem(last=False)
        return made

    def close(self) -> None:
        """The server is stopping: every stream (job and account) ends now, cleanly, and
        long-polls answer; clients reconnect (`retry:`) to a server that runs."""
        self.bus.drain()
        for feed in list(self._feeds.values()):
            for sub in feed.subs:
                sub.wake()

    def __len__(self) -> int:
        return sum(len(f.subs) for f in self._feeds.values())

    def _on_change(self, change: Change) -> None:
        feed = self._feeds.get(change.job_id)
        if feed is None:
            return
        if change.type != EventType.COMPLETED:
            feed.add(change.seq, frame(change.seq, change.type, event_data(change.event())), False)
            return
        item = self.jobs.cache.get(change.job_id)
        if item is not None and item.seq == change.seq:
            feed.add(change.seq, frame(change.seq, change.type, item.body), True)
            return
        # another process finished it: read the body once for all subscribers
        task = asyncio.create_task(self._completed(feed, change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _completed(self, feed: Feed, change: Change) -> None:
        try:
            item = await self.jobs.body(change.account_id, change.job_id)
            body = item.body
        except GenqError:
            body = orjson.dumps(event_data(change.event()))
        feed.add(change.seq, frame(change.seq, change.type, body), True)

    async def _replay(
        self, account_id: str, job_id: str, after: int
    ) -> tuple[list[tuple[int, bytes, bool]], bool]:
        """Frames of the events after `after` from the log (shared by all who ask), and
        whether the log may hold more after them (the read was a full page)."""
        events = await self.jobs.events_after(job_id, after)
        more = len(events) >= EVENTS_PAGE
        out = []
        for ev in events:
            if ev.type == EventType.COMPLETED:
                try:
                    body = (await self.jobs.body(account_id, job_id)).body
                except GenqError:
                    body = orjson.dumps(event_data(ev))
                out.append((ev.seq, frame(ev.seq, ev.type, body), True))
                return out, False
            out.append((ev.seq, frame(ev.seq, ev.type, event_data(ev)), False))
        return out, more

    async def _over(self, account_id: str, job_id: str, last: int) -> bool:
        """Whether the stream has nothing more to send: the job ended at or before
        `last`, or is gone."""
        try:
            item = await self.jobs.body(account_id, job_id)
        except GenqError:
            return True
        return item.status not in _NON_TERMINAL and item.seq <= last

    async def stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        account_id: str,
        job_id: str,
        last: int,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Serve one subscriber: replay after `last`, then live, until the job's
        `completed` frame or the client leaves."""
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = Feed()
        sub = Sub()
        feed.subs.add(sub)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="genq-sse-keepalive")
        gone = asyncio.ensure_future(_disconnected(receive))
        gone.add_done_callback(sub.left)
        loop = asyncio.get_running_loop()
        try:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]}
            )
            await send({"type": "http.response.body", "body": RETRY, "more_body": True})
            replay = True
            while not sub.gone and not self.bus.draining:
                if replay:  # what happened before (or while the feed could not keep it)
                    frames, replay = await self._replay(account_id, job_id, last)
                    if not frames and await self._over(account_id, job_id, last):
                        return
                else:
                    frames, complete = feed.after(last)
                    if not complete:
                        replay = True
                        continue
                for seq, data, final in frames:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    last = seq
                    if final:
                        return
                if frames:
                    continue
                if sub.tick:
                    sub.tick = False
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    continue
                sub.waiter = loop.create_future()
                try:
                    await sub.waiter
                finally:
                    sub.waiter = None
        finally:
            gone.cancel()
            feed.subs.discard(sub)
            if not feed.subs and self._feeds.get(job_id) is feed:
                del self._feeds[job_id]
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
