"""Webhook outbox SQL: due deliveries are claimed with a lease (so several senders can
share the table), attempts are recorded, and the schedule lives in `genq.webhooks`."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from genq.ids import utcnow
from genq.store import tables as t
from genq.store.db import Database
from genq.store.records import WebhookAttempt, WebhookDelivery

D, W = t.webhook_deliveries.c, t.webhook_attempts.c
PENDING, DELIVERED, FAILED, DISABLED = "pending", "delivered", "failed", "disabled"


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_due(self, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """Take due deliveries; each is hidden from other senders for `lease_s`."""
        now = utcnow()
        pick = (
            sa.select(D.id)
            .where(D.status == PENDING, D.next_attempt_at <= now)
            .order_by(D.next_attempt_at)
            .limit(limit)
        )
        if self.db.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    sa.update(t.webhook_deliveries)
                    .where(D.id.in_(pick.scalar_subquery()))
                    .values(
                        attempts=D.attempts + 1, next_attempt_at=now + timedelta(seconds=lease_s)
                    )
                    .returning(*t.webhook_deliveries.c)
                )
            ).all()
        return [WebhookDelivery.from_row(r) for r in rows]

    async def next_due(self) -> datetime | None:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    sa.select(sa.func.min(D.next_attempt_at, type_=t.UTCDateTime())).where(
                        D.status == PENDING
                    )
                )
            ).scalar()
        return value  # type: ignore[no-any-return]

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
        now = utcnow()
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(t.webhook_attempts).values(
                    delivery_id=delivery.id,
                    attempt=delivery.attempts,
                    at=now,
                    status_code=status_code,
                    latency_ms=latency_ms,
                    error=error,
                )
            )
            await conn.execute(
                sa.update(t.webhook_deliveries)
                .where(D.id == delivery.id, D.attempts == delivery.attempts)
                .values(
                    status=outcome,
                    next_attempt_at=next_attempt_at,
                    last_status_code=status_code,
                    last_error=error,
                    delivered_at=now if outcome == DELIVERED else None,
                )
            )
            if outcome == DISABLED:  # the receiver said 410 Gone: stop sending it more
                await conn.execute(
                    sa.update(t.webhook_deliveries)
                    .where(
                        D.account_id == delivery.account_id,
                        D.url == delivery.url,
                        D.status == PENDING,
                    )
                    .values(status=DISABLED, last_error="endpoint disabled by 410")
                )

    async def for_job(self, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
        async with self.db.read() as conn:
            ds = [
                WebhookDelivery.from_row(r)
                for r in (
                    await conn.execute(
                        sa.select(t.webhook_deliveries)
                        .where(D.job_id == job_id)
                        .order_by(D.seq, D.created_at)
                    )
                ).all()
            ]
            attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in ds}
            if ds:
                rows = await conn.execute(
                    sa.select(t.webhook_attempts)
                    .where(W.delivery_id.in_(list(attempts)))
                    .order_by(W.id)
                )
                for r in rows.all():
                    a = WebhookAttempt.from_row(r)
                    attempts[a.delivery_id].append(a)
        return [(d, attempts[d.id]) for d in ds]

    async def recent(self, account_id: str, limit: int = 50) -> list[WebhookDelivery]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.webhook_deliveries)
                    .where(D.account_id == account_id)
                    .order_by(D.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [WebhookDelivery.from_row(r) for r in rows]

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(sa.select(t.webhook_deliveries).where(D.id == delivery_id))
            ).first()
        return WebhookDelivery.from_row(row) if row else None

    async def redeliver(self, delivery_id: str) -> WebhookDelivery | None:
        """Send again now (a delivered, failed or disabled delivery too)."""
        async with self.db.write() as conn:
            row = (
                await conn.execute(
                    sa.update(t.webhook_deliveries)
                    .where(D.id == delivery_id)
                    .values(status=PENDING, next_attempt_at=utcnow(), delivered_at=None)
                    .returning(*t.webhook_deliveries.c)
                )
            ).first()
        return WebhookDelivery.from_row(row) if row else None

    async def secret(self, account_id: str, make: str) -> str:
        """The account's signing secret; `make` is stored if it has none yet."""
        A = t.accounts.c
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(t.accounts)
                .where(A.id == account_id, A.webhook_secret.is_(None))
                .values(webhook_secret=make)
            )
            value = (
                await conn.execute(sa.select(A.webhook_secret).where(A.id == account_id))
            ).scalar_one()
        return str(value)
