"""Idempotency-Key SQL: claim a key, link the resource it created (inside the creating
transaction), keep the response, replay it."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from genq.ids import utcnow
from genq.store import tables as t
from genq.store.db import Database
from genq.store.records import IdempotencyRecord

K = t.idempotency_keys.c
IN_FLIGHT, DONE = "in_flight", "done"


def _key(account_id: str, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(K.account_id == account_id, K.key == key)


async def link(conn: AsyncConnection, account_id: str, key: str, resource_id: str) -> None:
    """Inside a creating transaction: this key made `resource_id`."""
    await conn.execute(
        sa.update(t.idempotency_keys).where(_key(account_id, key)).values(resource_id=resource_id)
    )


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(
        self, account_id: str, key: str, request_hash: str, ttl_s: float, stale_s: float = 120.0
    ) -> IdempotencyRecord | None:
        """Claim `key` for a new request: None when this request should run, else the
        existing record (done: replay it; in flight: a twin is running)."""
        now = utcnow()
        async with self.db.write() as conn:
            row = (
                await conn.execute(sa.select(t.idempotency_keys).where(_key(account_id, key)))
            ).first()
            if row is not None:
                rec = IdempotencyRecord.from_row(row)
                abandoned = (
                    rec.state == IN_FLIGHT
                    and rec.resource_id is None
                    and rec.created_at < now - timedelta(seconds=stale_s)
                )
                if rec.expires_at > now and not abandoned:
                    return rec
                await conn.execute(sa.delete(t.idempotency_keys).where(_key(account_id, key)))
            try:
                # a savepoint: on PostgreSQL a failed statement would poison the transaction
                async with conn.begin_nested():
                    await conn.execute(
                        sa.insert(t.idempotency_keys).values(
                            account_id=account_id,
                            key=key,
                            request_hash=request_hash,
                            state=IN_FLIGHT,
                            created_at=now,
                            expires_at=now + timedelta(seconds=ttl_s),
                        )
                    )
            except IntegrityError:  # a twin inserted it first (PostgreSQL)
                row = (
                    await conn.execute(sa.select(t.idempotency_keys).where(_key(account_id, key)))
                ).one()
                return IdempotencyRecord.from_row(row)
        return None

    async def finish(
        self, account_id: str, key: str, status_code: int, headers: dict[str, str], body: bytes
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(t.idempotency_keys)
                .where(_key(account_id, key))
                .values(state=DONE, status_code=status_code, headers=headers, body=body)
            )

    async def abort(self, account_id: str, key: str) -> None:
        """The request failed before creating anything: free the key for a retry."""
        async with self.db.write() as conn:
            await conn.execute(
                sa.delete(t.idempotency_keys).where(
                    _key(account_id, key), K.state == IN_FLIGHT, K.resource_id.is_(None)
                )
            )

    async def sweep(self) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.delete(t.idempotency_keys).where(K.expires_at < utcnow())
            )
        return int(result.rowcount or 0)
