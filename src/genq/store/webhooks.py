"""Webhook outbox SQL: due deliveries are claimed with a lease (so several senders can
share the table), attempts are recorded, and the schedule lives in `genq.webhooks`."""

from __future__ import annotations

from datetime import datetime, timedelta

from genq.ids import utcnow
from genq.store.db import Cx, Database, autocommit, dt_of
from genq.store.records import WebhookAttempt, WebhookDelivery

PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"
D_COLS, W_COLS = WebhookDelivery.select(), WebhookAttempt.select()


# A delivery is due when its time has come and no sender holds it; and it is not
# taken while an earlier delivery of its job is in flight, so a job's deliveries go
# out one after another, in order. (One waiting for a retry does not hold back later
# ones.)
_DUE = (
    "d.status = 'pending' AND d.next_attempt_at <= %(now)s"
    " AND (d.leased_until IS NULL OR d.leased_until <= %(now)s)"
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.job_id = d.job_id"
    " AND e.seq < d.seq AND e.status = 'pending' AND e.leased_until > %(now)s)"
)
# The earlier of a pending delivery's retry time and the end of a sender's lease on it.
_WHEN = (
    "CASE WHEN leased_until IS NOT NULL AND leased_until > next_attempt_at"
    " THEN leased_until ELSE next_attempt_at END"
)
CLAIM_LOCK = 7405313  # PostgreSQL: senders claim one at a time (see _claim_due)


def _claim_due(cx: Cx, limit: int, now: datetime, until: datetime) -> list[WebhookDelivery]:
    if cx.postgres:
        # One claimer at a time, and the claim's snapshot taken after the lock: a
        # claimer must see the leases the previous one committed (else it could take a
        # job's next delivery while the one before is in flight).
        cx.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": CLAIM_LOCK})
    # The lease is checked again on the row itself: a row a sender renewed after this
    # statement's snapshot is re-read when it is locked here, and then not taken.
    rows = cx.all(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = %(until)s"
        f" WHERE id IN (SELECT d.id FROM webhook_deliveries d WHERE {_DUE}"
        " ORDER BY d.next_attempt_at, d.seq LIMIT %(n)s)"
        " AND status = 'pending' AND (leased_until IS NULL OR leased_until <= %(now)s)"
        f" RETURNING {D_COLS}",
        {"until": cx.ts(until), "now": cx.ts(now), "n": limit},
    )
    return [WebhookDelivery.of(r) for r in rows]


@autocommit
def _renew(cx: Cx, d: WebhookDelivery, until: datetime) -> bool:
    # PostgreSQL: under the claimers' lock, so that a claim that follows sees this
    # lease (its snapshot is taken after the lock) and leaves the job's later
    # deliveries alone while this one is sent
    lock = "WITH l AS (SELECT pg_advisory_xact_lock(%(k)s)) " if cx.postgres else ""
    row = cx.one(
        f"{lock}UPDATE webhook_deliveries SET leased_until = %(until)s"
        f"{' FROM l' if cx.postgres else ''}"
        " WHERE id = %(d)s AND attempts = %(n)s AND status = 'pending' RETURNING 1",
        {"until": cx.ts(until), "d": d.id, "n": d.attempts, "k": CLAIM_LOCK},
    )
    return row is not None


def _next_due(cx: Cx) -> datetime | None:
    row = cx.one(
        f"SELECT {_WHEN} AS due FROM webhook_deliveries WHERE status = 'pending'"
        " ORDER BY due LIMIT 1"
    )
    return dt_of(row[0]) if row else None


def _record(
    cx: Cx,
    d: WebhookDelivery,
    status_code: int | None,
    latency_ms: float | None,
    error: str | None,
    outcome: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    ts = cx.ts(now)
    cx.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms, error)"
        " VALUES (%(d)s, %(n)s, %(t)s, %(c)s, %(l)s, %(e)s)",
        {"d": d.id, "n": d.attempts, "t": ts, "c": status_code, "l": latency_ms, "e": error},
    )
    cx.execute(
        "UPDATE webhook_deliveries SET status = %(o)s, next_attempt_at = %(next)s,"
        " leased_until = NULL, last_status_code = %(c)s, last_error = %(e)s,"
        " delivered_at = %(at)s"
        " WHERE id = %(d)s AND attempts = %(n)s",
        {
            "o": outcome,
            "next": cx.ts(next_attempt_at),
            "c": status_code,
            "e": error,
            "at": ts if outcome == DELIVERED else None,
            "d": d.id,
            "n": d.attempts,
        },
    )
    if outcome == DISABLED:  # the receiver said 410 Gone: stop sending it more
        cx.execute(
            "UPDATE webhook_deliveries SET status = 'disabled',"
            " last_error = 'endpoint disabled by 410'"
            " WHERE account_id = %(a)s AND url = %(u)s AND status = 'pending'",
            {"a": d.account_id, "u": d.url},
        )


def _for_job(cx: Cx, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    ds = [
        WebhookDelivery.of(r)
        for r in cx.all(
            f"SELECT {D_COLS} FROM webhook_deliveries WHERE job_id = %(j)s"
            " ORDER BY seq, created_at",
            {"j": job_id},
        )
    ]
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in ds}
    if ds:
        rows = cx.all(
            f"SELECT {W_COLS} FROM webhook_attempts WHERE delivery_id {cx.in_list('ids')}"
            " ORDER BY id",
            {"ids": cx.array(attempts)},
        )
        for r in rows:
            a = WebhookAttempt.of(r)
            attempts[a.delivery_id].append(a)
    return [(d, attempts[d.id]) for d in ds]


def _recent(cx: Cx, account_id: str, limit: int) -> list[WebhookDelivery]:
    rows = cx.all(
        f"SELECT {D_COLS} FROM webhook_deliveries WHERE account_id = %(a)s"
        " ORDER BY created_at DESC LIMIT %(n)s",
        {"a": account_id, "n": limit},
    )
    return [WebhookDelivery.of(r) for r in rows]


def _get(cx: Cx, delivery_id: str) -> WebhookDelivery | None:
    row = cx.one(f"SELECT {D_COLS} FROM webhook_deliveries WHERE id = %(d)s", {"d": delivery_id})
    return WebhookDelivery.of(row) if row else None


@autocommit
def _redeliver(cx: Cx, delivery_id: str, now: datetime) -> WebhookDelivery | None:
    row = cx.one(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = %(t)s,"
        f" delivered_at = NULL WHERE id = %(d)s RETURNING {D_COLS}",
        {"t": cx.ts(now), "d": delivery_id},
    )
    return WebhookDelivery.of(row) if row else None


@autocommit
def _secret(cx: Cx, account_id: str, make: str) -> str:
    row = cx.one(
        "UPDATE accounts SET webhook_secret = coalesce(webhook_secret, %(s)s)"
        " WHERE id = %(a)s RETURNING webhook_secret",
        {"s": make, "a": account_id},
    )
    return str(row[0]) if row else make


def _read_secret(cx: Cx, account_id: str) -> str | None:
    value = cx.scalar("SELECT webhook_secret FROM accounts WHERE id = %(a)s", {"a": account_id})
    return str(value) if value else None


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_due(self, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """Take due deliveries; each is hidden from other senders for `lease_s`, and a
        job's later deliveries wait while one of its earlier ones is held."""
        now = utcnow()
        return await self.db.write(_claim_due, limit, now, now + timedelta(seconds=lease_s))

    async def renew(self, delivery: WebhookDelivery, lease_s: float) -> bool:
        """Hold a claimed delivery for `lease_s` more (right before sending it); False
        when it is no longer this claim's (its lease lapsed and another sender took it,
        or it was settled)."""
        until = utcnow() + timedelta(seconds=lease_s)
        return await self.db.write(_renew, delivery, until)

    async def next_due(self) -> datetime | None:
        return await self.db.read(_next_due)

    async def record(
        self,
        delivery: WebhookDelivery,
        *,
        status_code: int | None,
        latency_ms: float | None,
        error: str | None,
        outcome: str,
        next_attempt_at: datetime | None,
    ) -> None:
        """Log one attempt and move the delivery to `outcome` (pending = retry later)."""
        await self.db.write(
            _record, delivery, status_code, latency_ms, error, outcome, next_attempt_at, utcnow()
        )

    async def for_job(self, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
        return await self.db.read(_for_job, job_id)

    async def recent(self, account_id: str, limit: int = 50) -> list[WebhookDelivery]:
        return await self.db.read(_recent, account_id, limit)

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        return await self.db.read(_get, delivery_id)

    async def redeliver(self, delivery_id: str) -> WebhookDelivery | None:
        """Send again now (a delivered, failed or disabled delivery too)."""
        return await self.db.write(_redeliver, delivery_id, utcnow())

    async def secret(self, account_id: str, make: str) -> str:
        """The account's signing secret; `make` is stored if it has none yet."""
        found = await self.db.read(_read_secret, account_id)
        if found:
            return found
        return await self.db.write(_secret, account_id, make)
