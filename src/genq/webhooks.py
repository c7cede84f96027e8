"""Webhooks: Standard Webhooks signatures, the retry schedule, and the sender that
drains the outbox (`webhook_deliveries`) in the background.

A delivery's id is its `webhook-id`, the same on every retry, so a receiver can
de-duplicate. The body is `{"type": "job.<event>", "timestamp": ..., "data": <job>}`.
A receiver that is down never delays or fails the job: deliveries live apart from it.
Receivers verify with `verify(payload, headers, secret)` (or the standardwebhooks
package directly).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from genq import netsafe, payloads
from genq.aio import wait_event
from genq.errors import NotFound
from genq.events import Change, EventBus
from genq.ids import iso, utcnow
from genq.jobs import JobService
from genq.store import Store
from genq.store.records import WebhookAttempt, WebhookDelivery
from genq.store.webhooks import DELIVERED, DISABLED, FAILED, PENDING
from genq.telemetry import logs, tracing

log = logging.getLogger(__name__)
SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)  # then give up
TIMEOUT_S = 15.0
MAX_RETRY_AFTER_S = 86400.0
IDLE_S = 30.0  # an idle sender looks at the outbox at least this often
# a face's own signature headers: (canonical job, account id, body, now) -> headers
Signer = Callable[[dict[str, Any], str, bytes, datetime], Awaitable[dict[str, str]]]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, when: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def verify(payload: bytes | str, headers: Mapping[str, str], secret: str) -> Any:
    """For receivers: check the signature and age of a delivery; returns the parsed
    body or raises `standardwebhooks.webhooks.WebhookVerificationError`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return Webhook(secret).verify(payload, lowered)


def next_delay(attempts: int, schedule: Sequence[float]) -> float | None:
    """Seconds until the next try after `attempts` failed ones; None = give up."""
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(0.8, 1.2)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    return None


class WebhookSender:
    def __init__(
        self,
        *,
        store: Store,
        jobs: JobService,
        bus: EventBus,
        allow_private: bool,
        schedule: Sequence[float] = SCHEDULE_S,
        concurrency: int = 16,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store, self.jobs, self.bus = store, jobs, bus
        # a webhook with a "format" (set by a compat face, e.g. useapi's replyUrl) gets
        # that face's JSON as its body instead of the Standard Webhooks envelope
        self.formats: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        # ... and a format with a signer (fal's ED25519) is signed its way, not with
        # Standard Webhooks headers
        self.signers: dict[str, Signer] = {}
        self.allow_private = allow_private
        self.schedule = tuple(schedule)
        self.timeout_s = timeout_s
        # a delivery is held this long per attempt: its send, its settling, and slack
        self.lease_s = timeout_s * 4
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "genq-webhooks/1", "Content-Type": "application/json"},
        )
        self._unsubscribe = bus.subscribe(self._on_change)
        # told of each attempt: (outcome, seconds the receiver took or None) (telemetry.metrics)
        self.observe: Callable[[str, float | None], None] | None = None

    def _on_change(self, change: Change) -> None:
        if change.webhook:  # a delivery was written with this change
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def for_job(self, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
        return await self.store.webhooks.for_job(job_id)

    async def recent(self, account_id: str) -> list[WebhookDelivery]:
        return await self.store.webhooks.recent(account_id)

    async def redeliver(self, account_id: str, delivery_id: str) -> WebhookDelivery:
        """Send a delivery of the account's again, now (404 for another's)."""
        d = await self.store.webhooks.get(delivery_id)
        if d is None or d.account_id != account_id:
            raise NotFound(f"no delivery {delivery_id!r}")
        again = await self.store.webhooks.redeliver(delivery_id)
        if again is None:
            raise NotFound(f"no delivery {delivery_id!r}")
        self.wake()
        return again

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="genq-webhooks")

    async def stop(self) -> None:
        self._unsubscribe()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=self.timeout_s + 1)
        await self._client.aclose()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.send_due()
            except Exception:
                log.exception("webhook sender failed; retrying")
                sent = 0
            if sent:
                continue
            # asleep until a change writes a delivery, or the next retry is due (other
            # processes' retries too, at the latest after IDLE_S)
            timeout = IDLE_S
            with contextlib.suppress(Exception):
                due = await self.store.webhooks.next_due()
                if due is not None:
                    timeout = min(IDLE_S, max(0.0, (due - utcnow()).total_seconds()))
            if timeout > 0:
                await wait_event(self._wake, timeout)

    async def send_due(self) -> int:
        due = await self.store.webhooks.next_due()  # a read: nothing written when idle
        if due is None or due > utcnow():
            return 0
        deliveries = await self.store.webhooks.claim_due(limit=32, lease_s=self.lease_s)
        by_job: dict[str, list[WebhookDelivery]] = {}
        for d in deliveries:  # one job's events go out one after another, in order
            by_job.setdefault(d.job_id, []).append(d)
        for group in by_job.values():
            await self._limit.acquire()
            task = asyncio.create_task(self._send_in_order(sorted(group, key=lambda d: d.seq)))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(deliveries)

    async def _send_in_order(self, group: list[WebhookDelivery]) -> None:
        for i, d in enumerate(group):
            # Each was leased when claimed; the ones after the first may have waited
            # behind slow receivers for longer than that, so each is held afresh right
            # before it is sent, and skipped if it is no longer ours.
            if i and not await self.store.webhooks.renew(d, self.lease_s):
                continue
            await self._send(d)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._limit.release()

    async def _send(self, d: WebhookDelivery) -> None:
        logs.set_job(d.job_id, d.account_id)  # (in the task that sends this job's events)
        try:
            await self._attempt(d)
        except Exception as exc:  # never let one delivery kill the sender
            log.exception("webhook %s: attempt crashed", d.id)
            await self._settle(d, None, None, f"internal: {exc}")

    async def _attempt(self, d: WebhookDelivery) -> None:
        found = await self.store.jobs.get_with_outputs(d.job_id)
        if found is None:
            await self.store.webhooks.record(
                d,
                status_code=None,
                latency_ms=None,
                error="job deleted",
                outcome=FAILED,
                next_attempt_at=None,
            )
            if self.observe is not None:
                self.observe(FAILED, None)
            return
        job, outputs = found
        logs.set_job(job.id, job.account_id, job.engine)
        try:
            target = await netsafe.resolve(d.url, allow_private=self.allow_private)
        except netsafe.UnsafeURL as exc:
            await self.store.webhooks.record(
                d,
                status_code=None,
                latency_ms=None,
                error=exc.detail,
                outcome=FAILED,
                next_attempt_at=None,
            )
            _not_delivered(d, exc.detail, FAILED)
            if self.observe is not None:
                self.observe(FAILED, None)
            return
        now = utcnow()
        data = self.jobs.render(job, outputs)
        fmt = (job.webhook or {}).get("format")
        if fmt in self.formats:
            body = payloads.dumps(self.formats[fmt](data))
        else:
            body = payloads.dumps({"type": f"job.{d.event}", "timestamp": iso(now), "data": data})
        url, headers, extensions = netsafe.pinned(target)
        if fmt in self.signers:
            headers.update(await self.signers[fmt](data, job.account_id, body, now))
        else:
            secret = await self.store.webhooks.secret(job.account_id, new_secret())
            headers.update(sign(secret, d.id, now, body))
        with tracing.delivery(job, d.event, d.id, headers) as span:
            started = time.perf_counter()
            try:
                response = await self._client.post(
                    url, content=body, headers=headers, extensions=extensions
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                tracing.answered(span, None, error)
                await self._settle(d, None, (time.perf_counter() - started) * 1000, error)
                return
            latency = (time.perf_counter() - started) * 1000
            tracing.answered(span, response.status_code, None)
            await self._settle(d, response, latency, None)

    async def _settle(
        self,
        d: WebhookDelivery,
        response: httpx.Response | None,
        latency_ms: float | None,
        error: str | None,
    ) -> None:
        code = response.status_code if response is not None else None
        if code is not None and 200 <= code < 300:
            outcome, when = DELIVERED, None
        elif code == 410:
            outcome, when, error = DISABLED, None, "receiver answered 410 Gone"
        else:
            if code is not None:
                error = error or f"receiver answered {code}"
                if 300 <= code < 400:
                    error = f"receiver answered {code} (redirects are not followed)"
            delay = next_delay(d.attempts, self.schedule)
            hinted = retry_after(response) if response is not None and code in (429, 503) else None
            if hinted is not None and delay is not None:
                delay = max(delay, hinted)
            if delay is None:
                outcome, when = FAILED, None
            else:
                outcome, when = PENDING, utcnow() + timedelta(seconds=delay)
        await self.store.webhooks.record(
            d,
            status_code=code,
            latency_ms=latency_ms,
            error=error,
            outcome=outcome,
            next_attempt_at=when,
        )
        if outcome != DELIVERED:
            _not_delivered(d, error, f"next attempt at {iso(when)}" if when else outcome)
        if self.observe is not None:
            self.observe(outcome, latency_ms / 1000 if latency_ms is not None else None)
        if outcome == PENDING:
            self._wake.set()


def _not_delivered(d: WebhookDelivery, error: str | None, then: str) -> None:
    # (not the URL: it may carry the receiver's own secret)
    log.warning("webhook %s (job.%s) not delivered: %s; %s", d.id, d.event, error, then)


def render_delivery(d: WebhookDelivery, attempts: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "webhook_delivery",
        "job_id": d.job_id,
        "event": d.event,
        "url": d.url,
        "status": d.status,
        "attempts": [
            {
                "attempt": a.attempt,
                "at": iso(a.at),
                "status_code": a.status_code,
                "latency_ms": round(a.latency_ms, 1) if a.latency_ms is not None else None,
                "error": a.error,
            }
            for a in attempts
        ],
        "next_attempt_at": iso(d.next_attempt_at) if d.status == PENDING else None,
        "created_at": iso(d.created_at),
        "delivered_at": iso(d.delivered_at),
    }
