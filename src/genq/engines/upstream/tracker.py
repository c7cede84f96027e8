"""Parked jobs: the create call in a worker slot (`UpstreamRun`), then tracking without
one (`Tracker`).

The create call. In the worker's slot, under the worker's lease: the intent is written
first (`upstream_jobs` row, with the hash of a per-job callback token), then the call
goes out, then the job is parked: the upstream id is written and the worker's lease
(its slot) let go, in one transaction. A refusal (an answer saying no) drops the
intent and fails the job (refunded). A call that may have reached the service without
an answer (a timeout, a dropped connection, a process killed mid-call) leaves the
intent: the tracker reconciles it, never creating a second paid job blindly (see
`_reconcile`). A synchronous service (OpenAI's Images API) answers the create call with
the finished job: its outputs are copied and the job ends there, in the worker's slot,
with no status call (`UpstreamRun._end_here`); `data:` URLs (base64 results) are
outputs too. Killed during such a call, the job is reconciled like any other: sent
again with the same key where the service de-duplicates (another genq), else failed
`upstream_unknown` and refunded.

Tracking. Every process with the gateway runs a `Tracker`. It claims due rows for one
poll at a time with a lease (`genq.store.upstream`), so exactly one process reads a
job's upstream status at a time, whatever number of clients watch the job on genq, and
another process takes over when one dies. A poll reads the pushed callback body when
there is one (useapi's `replyUrl`), else the upstream status; news becomes the job's
status/progress; an end copies the outputs into genq's storage and settles the job in
one transaction. Errors back off (`Retry-After` honoured), a provider that keeps
failing opens its breaker, and a job whose polls fail `max_failures` times in a row
fails `upstream_unavailable` (refunded).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from genq import lifecycle
from genq.aio import wait_event
from genq.engines.context import extension_for, kind_of
from genq.engines.upstream.base import (
    FAILED,
    LOST,
    NOT_FOUND,
    RATE_LIMITED,
    UNAVAILABLE,
    UNKNOWN,
    Created,
    Remote,
    Snapshot,
    UpstreamError,
)
from genq.engines.upstream.call import HttpCall
from genq.engines.upstream.gateway import Gateway, Upstream, UpstreamEngine
from genq.errors import LeaseLost, StorageUnavailable
from genq.ids import utcnow
from genq.lifecycle import ErrorInfo, Status
from genq.payloads import clean_text
from genq.storage import Storage
from genq.store import Store
from genq.store.records import Claim, Job, JobOutput
from genq.store.upstream import INTENT, Tracked
from genq.telemetry import logs, tracing

log = logging.getLogger(__name__)

Publish = Callable[..., Job]
Resolver = Callable[[Job], Awaitable[tuple[Callable[[str], Path], Path | None]]]

CREATE_ATTEMPTS = 4  # a create call refused for now (429, 5xx, no connection): tries
MAX_BACKOFF_S = 300.0
_STATUS = {"queued": Status.STARTING, "running": Status.RUNNING}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def idempotency_key(job_id: str) -> str:
    return f"genq-{job_id}"


def jitter(seconds: float, spread: float = 0.1) -> float:
    return seconds * (1 + random.uniform(-spread, spread))


def backoff(poll_s: float, failures: int, retry_after: float | None) -> float:
    """Seconds to wait after the `failures`-th failure in a row."""
    delay = min(MAX_BACKOFF_S, max(0.25, poll_s) * (2 ** min(failures, 10)))
    if retry_after is not None:
        delay = max(delay if failures > 1 else 0.0, retry_after)
    return max(jitter(max(delay, 0.5), 0.2), retry_after or 0.0)  # never before Retry-After


def _where(up: Upstream, snap: Snapshot) -> str:
    said = f" ({snap.message})" if snap.message else ""
    if snap.state == "queued":
        return f"queued at {up.provider.title}{said}"
    return f"running at {up.provider.title}{said}"


def slow_create(up: Upstream, call: HttpCall) -> None:
    """A provider whose create call answers only when the job is done (OpenAI's Images
    API) names a longer HTTP timeout for it (`create_timeout_s`)."""
    wait = getattr(up.provider, "create_timeout_s", None)
    if isinstance(wait, int | float) and wait > call.timeout_s:
        call.timeout_s = float(wait)


def _progress(snap: Snapshot) -> float | None:
    if snap.progress is None:
        return None
    return max(0.0, min(100.0, float(snap.progress)))


class UpstreamRun:
    """One attempt at an upstream job in a worker slot: intent, create, park. It has
    what `genq.worker.Worker` uses of a `JobRun` (claim, job_id, request_cancel,
    lose_lease, run)."""

    def __init__(
        self,
        claim: Claim,
        engine: UpstreamEngine,
        *,
        gateway: Gateway,
        store: Store,
        publish: Publish,
        resolver: Resolver,
        callback_url: Callable[[str, str], str | None],
        storage: Storage | None = None,
    ) -> None:
        self.claim = claim
        self.engine = engine
        self.gateway = gateway
        self.up = gateway.upstreams[engine.upstream.provider]
        self.store = store
        self.publish = publish
        self.resolver = resolver
        self.callback_url = callback_url
        self.storage = storage  # (without it, a create answered already ended is parked)
        self.cancel_requested = asyncio.Event()
        self.lost = False

    @property
    def job_id(self) -> str:
        return self.claim.job.id

    def request_cancel(self) -> None:
        self.cancel_requested.set()

    def lose_lease(self) -> None:
        self.lost = True
        self.cancel_requested.set()

    async def run(self) -> None:
        job = self.claim.job
        logs.set_job(job.id, job.account_id, job.engine)  # (run in the job's own task)
        with tracing.job_run(self.claim, "upstream"):
            await self._run_attempt()

    async def _run_attempt(self) -> None:
        try:
            await self._run()
        except LeaseLost:
            log.warning("upstream job %s: lease lost before it was parked", self.job_id)
        except Exception as exc:
            log.exception("upstream job %s: could not be handed over", self.job_id)
            with contextlib.suppress(LeaseLost):
                await self._fail(ErrorInfo("engine_error", clean_text(f"{exc!r}"[:2000])))

    async def _fail(self, error: ErrorInfo, status: Status = Status.FAILED) -> None:
        step = lifecycle.ended_unrun(self.claim.job, status, error, utcnow())
        if tracing.ON:
            tracing.finished(status, error)
        made = await self.store.jobs.fenced(self.claim, step)
        self.publish(made, hook=step.hook, outputs=())

    async def _run(self) -> None:
        job, up = self.claim.job, self.up
        if self.cancel_requested.is_set() or job.cancel_requested_at is not None:
            await self._fail(lifecycle.CANCELED_RUNNING, Status.CANCELED)
            return
        try:
            data = self.engine.input_model.model_validate(job.input)
            resolve_input, model = await self.resolver(job)
            api_key, byo = await self.gateway.key_for(up, job.account_id)
        except UpstreamError as exc:
            await self._fail(ErrorInfo(exc.code, exc.message))
            return
        call = self.gateway.call(up, api_key, input_path=resolve_input, model_artifact=model)
        token = self.gateway.callback_token(job.id)
        now = utcnow()
        if not await self.store.upstream.intent(self.claim, up.name, token_hash(token), byo, now):
            # an earlier attempt recorded the intent: the call may have gone out
            await self._park(None, None)
            return
        callback = self.callback_url(job.id, token) if up.callbacks else None
        try:
            created = await self._create(call, data, callback)
        except UpstreamError as exc:
            if exc.may_have_acted:
                log.warning(
                    "upstream job %s: create call to %s unanswered (%s): reconciling",
                    job.id,
                    up.name,
                    exc.message,
                )
                await self._park(None, None)
                return
            await self.store.upstream.drop_intent(self.claim)
            await self._fail(ErrorInfo(exc.code, exc.message, exc.transient))
            return
        snap = created.snapshot
        if snap is not None and snap.terminal and self.storage is not None:
            await self._end_here(call, snap)
            return
        await self._park(created.upstream_id, snap)

    async def _end_here(self, call: HttpCall, snap: Snapshot) -> None:
        """A synchronous service (OpenAI's Images API) answered the create call with
        the finished job: it ends here, in the worker's slot, with no status call (the
        service has none). The intent row stays (the job's end makes it inert). A
        failure to copy the outputs fails the job (refunded): nothing can read the
        answer again."""
        job, title = self.claim.job, self.up.provider.title
        if self.cancel_requested.is_set():
            await self._fail(
                ErrorInfo(
                    "canceled",
                    f"canceled on genq while {title} made it; its answer was not kept",
                ),
                Status.CANCELED,
            )
            return
        if snap.state == "canceled":
            await self._fail(ErrorInfo("canceled", f"canceled at {title}"), Status.CANCELED)
            return
        if snap.state == "failed":
            message = snap.error_message or f"the job failed at {title}"
            await self._fail(ErrorInfo(snap.error_code or FAILED, clean_text(message[:2000])))
            return
        assert self.storage is not None
        try:
            rows = await copy_outputs(self.storage, job, call, snap)
        except UpstreamError as exc:
            await self._fail(ErrorInfo(exc.code, exc.message))
            return
        now = utcnow()
        model = lifecycle.model_end(
            job.task, job.model_id, Status.SUCCEEDED, [(r["name"], r["path"]) for r in rows], None
        )
        end = lifecycle.finished(
            Status.SUCCEEDED,
            estimate=job.credits_estimate,
            used=job.credits_estimate,
            now=now,
            message=f"done at {title}",
            model=model,
        )
        steps = [lifecycle.output_added(r) for r in rows]
        items: list[tuple[lifecycle.Step, dict[str, Any] | None]] = [
            *zip(steps, rows, strict=True),
            (end, None),
        ]
        made = await self.store.jobs.record(self.claim, items)
        outs = tuple(JobOutput.of_row(job.id, r, now) for r in rows)
        for i, (step, pair) in enumerate(zip([*steps, end], made, strict=True)):
            self.publish(pair, hook=step.hook, outputs=outs[: i + 1])

    async def _create(self, call: HttpCall, data: Any, callback: str | None) -> Created:
        up, job = self.up, self.claim.job
        key = idempotency_key(job.id) if up.idempotent else None
        slow_create(up, call)
        failures = 0
        while True:
            try:
                return await up.provider.create(
                    call,
                    self.engine.upstream.what,
                    data,
                    reference=job.id,
                    callback_url=callback,
                    idempotency_key=key,
                )
            except UpstreamError as exc:
                failures += 1
                if call.last_ok:
                    # the create call was answered 2xx and its answer could not be
                    # read: the service took it, whatever the provider module says
                    exc.may_have_acted = True
                # retried only when nothing can have been made (or the service
                # de-duplicates by key), and while the job has not been canceled
                again = exc.transient and (not exc.may_have_acted or key is not None)
                if not again or failures >= CREATE_ATTEMPTS or self.cancel_requested.is_set():
                    raise
                delay = min(60.0, backoff(1.0, failures, exc.retry_after))
                await wait_event(self.cancel_requested, delay)

    async def _park(self, upstream_id: str | None, snap: Snapshot | None) -> None:
        up = self.up
        now = utcnow()
        if upstream_id is None:
            status, message = Status.RUNNING, f"handed to {up.provider.title}; confirming it"
            when = now
        else:
            snap = snap or Snapshot("queued")
            status = _STATUS.get(snap.state, Status.STARTING)
            message = _where(up, snap)
            # a job created already ended (or canceled meanwhile): the tracker ends it now
            soon = snap.terminal or self.cancel_requested.is_set()
            when = now if soon else now + timedelta(seconds=jitter(up.poll_every(self.engine.spec)))
        step = lifecycle.parked(status, message)
        made = await self.store.upstream.park(
            self.claim, upstream_id, snap.message if snap else None, step, when, now
        )
        if made is not None:
            self.publish(made, hook=None)
        else:
            self.lost = True


class Tracker:
    """Follows this database's parked jobs of the configured providers (shared with
    other processes: each poll is claimed)."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        store: Store,
        storage: Storage,
        publish: Publish,
        resolver: Resolver,
        owner: str,
        callback_url: Callable[[str, str], str | None] = lambda job_id, token: None,
        lease_s: float = 60.0,
        tick_s: float = 1.0,
        concurrency: int = 64,
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.storage = storage
        self.publish = publish
        self.resolver = resolver
        self.owner = owner
        self.callback_url = callback_url
        self.lease_s = lease_s
        self.tick_s = tick_s
        self.concurrency = concurrency
        self.providers = sorted(gateway.upstreams)
        self.active: dict[str, asyncio.Task[None]] = {}
        self.polls = 0  # upstream status reads made here (for tests and benchmarks)
        self._wake = asyncio.Event()
        self._more = False  # the last claim filled every free place
        self._scheduled: list[float] = []  # (a heap) when polls scheduled here fall due
        self._deadline = 0.0  # when the loop's current wait ends
        self._reschedule_only = False
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name="genq-upstream-tracker"),
            asyncio.create_task(self._renew_loop(), name="genq-upstream-renew"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self.active:
            # a poll in flight ends (or is abandoned: its lease lapses and another
            # process takes the job)
            await asyncio.wait(set(self.active.values()), timeout=5)
            for task in self.active.values():
                task.cancel()
        for task in [*self._tasks, *self.active.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def wake(self) -> None:
        """Look for due work now (a pushed result, room freed)."""
        self._reschedule_only = False
        self._wake.set()

    # -- loops ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if self._reschedule_only:  # woken only to wait for a sooner poll of ours
                self._reschedule_only = False
            else:
                try:
                    await self.once()
                except Exception:
                    log.exception("upstream tracker: claim failed")
            # the next look: at the tick (polls other processes scheduled, pushes), or
            # sooner when a poll scheduled here falls due first
            wait, now = self.tick_s, time.monotonic()
            while self._scheduled and self._scheduled[0] <= now:
                heapq.heappop(self._scheduled)
            if self._scheduled:
                wait = min(wait, self._scheduled[0] - now + 0.01)
            self._deadline = now + wait
            await wait_event(self._wake, wait)

    def _due_at(self, seconds: float) -> None:
        """A poll this process scheduled falls due in `seconds` (the loop, waiting for
        later, is woken to wait for this one instead)."""
        at = time.monotonic() + seconds
        heapq.heappush(self._scheduled, at)
        if at < self._deadline and not self._wake.is_set():
            self._reschedule_only = True
            self._wake.set()

    async def once(self) -> int:
        """Claim and start what is due (as many as there is room for)."""
        free = self.concurrency - len(self.active)
        if free <= 0 or not self.providers:
            self._more = free <= 0
            return 0
        now = utcnow()
        if not await self.store.upstream.due(now, self.providers):
            self._more = False
            return 0
        until = now + timedelta(seconds=self.lease_s)
        claimed = await self.store.upstream.claim(self.owner, self.providers, free, now, until)
        # all it asked for: more may be due, taken as soon as a poll here ends
        self._more = len(claimed) >= free
        for tracked in claimed:
            task = asyncio.create_task(self._track(tracked), name=f"track-{tracked.job.id}")
            self.active[tracked.job.id] = task

            def forget(done: asyncio.Task[None], job_id: str = tracked.job.id) -> None:
                if self.active.get(job_id) is done:
                    del self.active[job_id]
                    if self._more:
                        self.wake()

            task.add_done_callback(forget)
        return len(claimed)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                until = utcnow() + timedelta(seconds=self.lease_s)
                await self.store.upstream.renew(self.owner, list(self.active), until)
            except Exception:
                log.exception("upstream tracker: lease renewal failed")

    # -- one poll ---------------------------------------------------------------------------

    async def _track(self, t: Tracked) -> None:
        with tracing.job_span("upstream.poll", t.job, {"genq.provider": t.provider}):
            await self._track_traced(t)

    async def _track_traced(self, t: Tracked) -> None:
        job = t.job
        logs.set_job(job.id, job.account_id, job.engine)  # (each poll is a task of its own)
        engine = self.gateway.engines.get(job.engine)
        up = self.gateway.upstreams.get(t.provider)
        try:
            if engine is None or up is None:
                await self._end(
                    t,
                    Status.FAILED,
                    ErrorInfo(
                        UNAVAILABLE,
                        f"engine {job.engine} is no longer configured on this server",
                    ),
                )
                return
            await self._poll(t, up, engine)
        except LeaseLost:
            log.warning("upstream job %s: tracking lease lost", job.id)
        except Exception as exc:
            log.exception("upstream job %s: poll failed", job.id)
            failures = t.failures + 1
            with contextlib.suppress(Exception):
                await self._reschedule(
                    t,
                    up,
                    failures,
                    ErrorInfo(UNAVAILABLE, clean_text(f"{type(exc).__name__}: {exc}"[:500])),
                    retry_after=None,
                    poll_s=30.0,
                )

    async def _poll(self, t: Tracked, up: Upstream, engine: UpstreamEngine) -> None:
        job, what = t.job, engine.upstream.what
        poll_s = up.cadence(engine.spec)
        try:
            api_key, _ = await self.gateway.key_for(up, job.account_id)
            resolve_input, model = await self.resolver(job)
            call = self.gateway.call(
                up, api_key, input_path=resolve_input, model_artifact=model, poll=True
            )
            upstream_id = t.upstream_id
            if t.state == INTENT:
                found = await self._reconcile(t, up, engine, call)
                if found is not None and found.snapshot is not None and found.snapshot.terminal:
                    # a synchronous service answered the create sent again with the job
                    await self._finish(t, up, call, found.snapshot, False)
                elif found is not None:  # kept at once; its status is read next
                    await self._let_go(t, 0.0, failures=t.failures, upstream_id=found.upstream_id)
                    self.wake()
                return
            assert upstream_id is not None
            if job.cancel_requested_at is not None:
                await self._cancel(t, up, engine, call, upstream_id)
                return
            if job.started_at and (utcnow() - job.started_at).total_seconds() > engine.timeout_s:
                canceled = up.provider.cancellable and await up.provider.cancel(
                    call, what, upstream_id
                )
                note = "" if canceled else f"; it may still run at {up.provider.title}"
                await self._end(
                    t,
                    Status.FAILED,
                    ErrorInfo("timeout", f"not done within {engine.timeout_s:g} s{note}", True),
                )
                return
            snap, counted = None, False
            if t.pushed is not None:
                snap = up.provider.parse_callback(what, t.pushed)
            if snap is None:
                snap = await up.provider.status(call, what, upstream_id)
                counted = True
                self.polls += 1
            if snap.logs:
                await self._log(t, snap.logs)
            if snap.terminal:
                await self._finish(t, up, call, snap, counted)
                return
            await self._news(t, up, snap, up.poll_every(engine.spec), counted)
        except UpstreamError as exc:
            if exc.code == LOST:
                await self._requeue(t, up, exc.message)
            elif exc.transient:
                # over our own count of the provider's rate limit: nothing failed
                local = exc.code == RATE_LIMITED and exc.status is None
                await self._reschedule(
                    t,
                    up,
                    t.failures if local else t.failures + 1,
                    ErrorInfo(exc.code, exc.message, True),
                    retry_after=exc.retry_after,
                    poll_s=poll_s,
                )
            else:
                await self._end(t, Status.FAILED, ErrorInfo(exc.code, exc.message))

    async def _log(self, t: Tracked, lines: tuple[str, ...]) -> None:
        """The log lines the service reported since the last read, as the job's log events."""
        steps = [lifecycle.logged("info", clean_text(line[:2000])) for line in lines]
        for made in await self.store.upstream.logged(self.owner, t.job.id, steps):
            self.publish(made, hook=None)

    async def _requeue(self, t: Tracked, up: Upstream, why: str) -> None:
        """The service lost the job (a Cog server stopped answering): back to the queue,
        to be handed to another server, while it has attempts left (the provider's
        `max_attempts` option, default 3); else it fails `upstream_unavailable`."""
        job = t.job
        if job.cancel_requested_at is not None:
            await self._end(t, Status.CANCELED, ErrorInfo("canceled", f"canceled ({why})"))
            return
        attempts = int(up.provider.options.get("max_attempts", 3))
        if job.attempt >= attempts:
            message = f"{why}; given up after {job.attempt} attempts"
            await self._end(t, Status.FAILED, ErrorInfo(UNAVAILABLE, message, True))
            return
        log.warning("upstream job %s: %s: re-queued", job.id, why)
        step = lifecycle.requeued(f"re-queued: {why}"[:500])
        made = await self.store.upstream.requeue(self.owner, job.id, step, utcnow())
        self.publish(made, hook=None)

    async def _reconcile(
        self, t: Tracked, up: Upstream, engine: UpstreamEngine, call: HttpCall
    ) -> Created | None:
        """An intent without an upstream id: the create call may or may not have made a
        job. With a service that de-duplicates by `Idempotency-Key`, the call is sent
        again with the same key (it answers with the job it made, or makes the one it
        never got); otherwise the job fails `upstream_unknown`, and nothing is sent."""
        job = t.job
        if not up.idempotent and up.callbacks:
            # the service pushes each job's result to the URL in the create call: a job
            # it made is adopted when its push arrives (matched by the token); until
            # `adopt_s` has passed, wait for it
            if t.pushed is not None:
                found = up.provider.callback_id(engine.upstream.what, t.pushed)
                if found:
                    log.info("upstream job %s: adopted %s from its push", job.id, found)
                    return Created(found)
            left = up.adopt_s - (utcnow() - t.intent_at).total_seconds()
            if left > 0:
                note = (
                    f"genq could not confirm the hand-over to {up.provider.title}; waiting"
                    f" up to {left:.0f} s for it to report the job (reference {job.id})"
                )
                step = None
                if not (job.message or "").startswith("genq could not confirm"):  # once
                    step = lifecycle.upstream_moved(
                        Status(job.status), job.progress, note, status_changed=False
                    )
                await self._let_go(t, left, failures=t.failures, step=step)
                return None
        if not up.idempotent:
            await self._end(
                t,
                Status.FAILED,
                ErrorInfo(
                    UNKNOWN,
                    f"genq stopped while handing this job to {up.provider.title}: it may or"
                    f" may not have been created there (look for reference {job.id} in your"
                    f" {up.provider.title} account). genq did not send it again, and refunded"
                    " it.",
                ),
            )
            return None
        data = engine.input_model.model_validate(job.input)
        callback = None
        if up.callbacks:  # (the same URL: the same request as the first time)
            callback = self.callback_url(job.id, self.gateway.callback_token(job.id))
        slow_create(up, call)
        created = await up.provider.create(
            call,
            engine.upstream.what,
            data,
            reference=job.id,
            callback_url=callback,
            idempotency_key=idempotency_key(job.id),
        )
        log.info("upstream job %s: reconciled as %s", job.id, created.upstream_id)
        return created

    async def _cancel(
        self, t: Tracked, up: Upstream, engine: UpstreamEngine, call: HttpCall, upstream_id: str
    ) -> None:
        title = up.provider.title
        if up.provider.cancellable:
            try:
                done = await up.provider.cancel(call, engine.upstream.what, upstream_id)
            except UpstreamError as exc:
                done, why = False, exc.message
            else:
                why = ""
            if done:
                error = ErrorInfo("canceled", f"canceled (and canceled at {title})")
            else:
                error = ErrorInfo(
                    "canceled",
                    f"canceled on genq; {title} refused to cancel it ({why}), so it may still"
                    " run there; genq stopped tracking it",
                )
        else:
            error = ErrorInfo(
                "canceled",
                f"canceled on genq; {title} has no way to cancel a job, so it may still run"
                " (and be charged) there; genq stopped tracking it",
            )
        await self._end(t, Status.CANCELED, error)

    async def _news(
        self,
        t: Tracked,
        up: Upstream,
        snap: Snapshot,
        poll_s: float,
        counted: bool,
    ) -> None:
        job = t.job
        status = _STATUS[snap.state]
        progress = _progress(snap)
        message = _where(up, snap)
        step = None
        if status != job.status:
            step = lifecycle.upstream_moved(status, progress, message, status_changed=True)
        elif (progress is not None and abs(progress - job.progress) >= 0.01) or (
            message != job.message
        ):
            step = lifecycle.upstream_moved(
                status,
                progress if progress is not None else job.progress,
                message,
                status_changed=False,
            )
        await self._let_go(
            t, jitter(poll_s), failures=0, step=step, upstream_status=snap.message, counted=counted
        )

    async def _reschedule(
        self,
        t: Tracked,
        up: Upstream | None,
        failures: int,
        error: ErrorInfo,
        *,
        retry_after: float | None,
        poll_s: float,
    ) -> None:
        limit = up.max_failures if up is not None else 10
        if failures >= limit:
            title = up.provider.title if up is not None else t.provider
            await self._end(
                t,
                Status.FAILED,
                ErrorInfo(
                    UNAVAILABLE,
                    f"{title} failed {failures} times in a row; last: {error.message}",
                    True,
                ),
            )
            return
        delay = backoff(poll_s, failures, retry_after)
        step = None
        note = f"waiting: {error.message} (retry in {delay:.0f} s)"
        if error.code == RATE_LIMITED or failures > 1:
            step = lifecycle.upstream_moved(
                Status(t.job.status), t.job.progress, note[:500], status_changed=False
            )
        await self._let_go(t, delay, failures=failures, step=step)

    async def _let_go(
        self,
        t: Tracked,
        after_s: float,
        *,
        failures: int,
        step: lifecycle.Step | None = None,
        upstream_id: str | None = None,
        upstream_status: str | None = None,
        counted: bool = False,
    ) -> None:
        """A read that did not end the job: its news (`step`) written, the next read
        due in `after_s`, and the row's lease let go."""
        now = utcnow()
        made = await self.store.upstream.polled(
            self.owner,
            t.job.id,
            step=step,
            upstream_id=upstream_id,
            upstream_status=upstream_status,
            next_poll_at=now + timedelta(seconds=after_s),
            failures=failures,
            counted=counted,
            now=now,
            read=t.pushed,
            pushes=up.callbacks if (up := self.gateway.upstreams.get(t.provider)) else False,
        )
        self._due_at(after_s)
        if made is not None and step is not None:
            self.publish(made, hook=step.hook)

    async def _finish(
        self, t: Tracked, up: Upstream, call: HttpCall, snap: Snapshot, counted: bool
    ) -> None:
        if snap.state == "succeeded":
            rows = await self._copy_outputs(t.job, call, snap)
            await self._end(t, Status.SUCCEEDED, None, outputs=rows, counted=counted, snap=snap)
        elif snap.state == "canceled":
            error = ErrorInfo("canceled", f"canceled at {up.provider.title}")
            await self._end(t, Status.CANCELED, error, counted=counted, snap=snap)
        else:
            message = snap.error_message or f"the job failed at {up.provider.title}"
            error = ErrorInfo(snap.error_code or FAILED, clean_text(message[:2000]))
            await self._end(t, Status.FAILED, error, counted=counted, snap=snap)

    async def _copy_outputs(self, job: Job, call: HttpCall, snap: Snapshot) -> list[dict[str, Any]]:
        return await copy_outputs(self.storage, job, call, snap)

    async def _end(
        self,
        t: Tracked,
        status: Status,
        error: ErrorInfo | None,
        *,
        outputs: list[dict[str, Any]] | None = None,
        counted: bool = False,
        snap: Snapshot | None = None,
    ) -> None:
        job = t.job
        rows = outputs or []
        model = lifecycle.model_end(
            job.task, job.model_id, status, [(r["name"], r["path"]) for r in rows], error
        )
        message = error.message if error is not None else None
        now = utcnow()
        step = lifecycle.finished(
            status,
            estimate=job.credits_estimate,
            used=job.credits_estimate if status == Status.SUCCEEDED else 0,
            now=now,
            error=error,
            message=message,
            model=model,
        )
        if tracing.ON:
            tracing.finished(status, error)
        made = await self.store.upstream.ended(
            self.owner,
            job.id,
            step,
            rows,
            snap.message if snap is not None else None,
            counted,
            now,
        )
        outs = tuple(JobOutput.of_row(job.id, r, now) for r in rows)
        self.publish(made, hook=step.hook, outputs=outs)


# -- outputs ----------------------------------------------------------------------------


async def copy_outputs(
    storage: Storage, job: Job, call: HttpCall, snap: Snapshot
) -> list[dict[str, Any]]:
    """The upstream outputs, downloaded into genq's storage (their URLs expire)."""
    out_dir = storage.new_output_dir(job.id)
    try:
        await asyncio.to_thread(storage.delete_job, job.id, out_dir)
    except StorageUnavailable as exc:
        raise UpstreamError(UNAVAILABLE, str(exc)) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return await _copy_into(storage, call, snap, out_dir)
    finally:
        if not storage.local:  # the local copies (stored by now, or not to be recorded)
            await asyncio.to_thread(storage.drop_scratch, job.id, out_dir)


async def _copy_into(
    storage: Storage, call: HttpCall, snap: Snapshot, out_dir: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for remote in snap.outputs:
        rows.append(await _download(storage, call, remote, out_dir, len(rows)))
        await _persist(storage, rows[-1])
    if snap.artifact is not None:
        data = orjson.dumps(snap.artifact, option=orjson.OPT_INDENT_2)
        path = out_dir / "weights.json"
        path.write_bytes(data)
        rows.append(
            _row(
                storage,
                path,
                "weights",
                "application/json",
                "other",
                {},
                len(rows),
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
        )
        await _persist(storage, rows[-1])
    return rows


async def _persist(storage: Storage, row: dict[str, Any]) -> None:
    """Into the object store before the row is recorded (no-op on the local backend)."""
    if storage.local:
        return
    try:
        await asyncio.to_thread(storage.persist_output, row["path"], row["content_type"])
    except StorageUnavailable as exc:
        raise UpstreamError(UNAVAILABLE, f"output {row['name']} not stored: {exc}") from exc


def _row(
    storage: Storage,
    path: Path,
    name: str,
    content_type: str,
    kind: str,
    meta: dict[str, Any],
    position: int,
    *,
    sha256: str,
    size: int,
) -> dict[str, Any]:
    """An output row (`JobOutput.ROW_FIELDS`) of a file stored under `path`."""
    return {
        "name": name,
        "kind": kind,
        "content_type": content_type,
        "bytes": size,
        "sha256": sha256,
        "path": storage.relative(path),
        "meta": meta,
        "position": position,
    }


def decode_data_url(url: str) -> tuple[str, bytes]:
    """A `data:` URL's media type and bytes (base64 or percent-encoded)."""
    head, sep, payload = url.partition(",")
    if not sep:
        raise ValueError("a data: URL without a comma")
    params = head[len("data:") :].split(";")
    media = params[0].strip() or "text/plain"
    if "base64" in (p.strip().lower() for p in params[1:]):
        return media, base64.b64decode(payload, validate=False)
    return media, urllib.parse.unquote_to_bytes(payload)


async def _download(
    storage: Storage, call: HttpCall, remote: Remote, out_dir: Path, position: int
) -> dict[str, Any]:
    if remote.url[:5].lower() == "data:":  # the answer carried the bytes (OpenAI's b64_json)
        try:
            media, data = decode_data_url(remote.url)
        except ValueError as exc:
            raise UpstreamError(
                FAILED, f"output {remote.name} is not a readable data: URL ({exc})"
            ) from exc
        content_type = (remote.content_type or media).split(";")[0].strip()
        path = out_dir / f"{remote.name}{extension_for(content_type)}"
        await asyncio.to_thread(path.write_bytes, data)
        return _row(
            storage,
            path,
            remote.name,
            content_type,
            remote.kind or kind_of(content_type),
            dict(remote.meta),
            position,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
    auth = call.same_origin(remote.url)
    headers = call.provider.auth_headers(call.api_key) if auth else {}
    tmp = out_dir / f".{remote.name}.part"
    digest, size = hashlib.sha256(), 0
    try:
        async with call.client.stream(
            "GET", remote.url, headers=headers, timeout=call.timeout_s
        ) as response:
            if response.status_code >= 400:
                raise call.provider.error_of(response)
            content_type = (
                (
                    remote.content_type
                    or response.headers.get("content-type", "application/octet-stream")
                )
                .split(";")[0]
                .strip()
            )
            with tmp.open("wb") as f:
                async for chunk in response.aiter_bytes(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
    except UpstreamError as exc:
        if exc.code == NOT_FOUND or exc.status in (403, 404, 410):
            raise UpstreamError(
                FAILED, f"output {remote.name} could not be fetched: {exc.message}"
            ) from exc
        raise
    except Exception as exc:
        raise UpstreamError(
            UNAVAILABLE, f"output {remote.name} could not be fetched: {type(exc).__name__}"
        ) from exc
    path = out_dir / f"{remote.name}{extension_for(content_type)}"
    tmp.replace(path)
    meta = {**remote.meta, "upstream_url": remote.url}
    return _row(
        storage,
        path,
        remote.name,
        content_type,
        remote.kind or kind_of(content_type),
        meta,
        position,
        sha256=digest.hexdigest(),
        size=size,
    )


__all__ = ["Tracker", "UpstreamRun", "copy_outputs", "idempotency_key", "token_hash"]
