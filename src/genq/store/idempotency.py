"""Idempotency-Key SQL: claim a key, link the resource it created (inside the creating
transaction, `genq.store.jobs`), keep the response, replay it."""

from __future__ import annotations

from datetime import datetime, timedelta

from genq.ids import utcnow
from genq.store.db import Cx, Database, IntegrityError, autocommit
from genq.store.records import IdempotencyRecord

IN_FLIGHT, DONE = "in_flight", "done"
I_COLS = IdempotencyRecord.select()
_KEY = "account_id = %(a)s AND key = %(k)s"


def _find(cx: Cx, account_id: str, key: str) -> IdempotencyRecord | None:
    row = cx.one(f"SELECT {I_COLS} FROM idempotency_keys WHERE {_KEY}", {"a": account_id, "k": key})
    return IdempotencyRecord.of(row) if row else None


@autocommit
def _begin(
    cx: Cx,
    account_id: str,
    key: str,
    request_hash: str,
    ttl_s: float,
    stale_s: float,
    now: datetime,
) -> IdempotencyRecord | None:
    p = {"a": account_id, "k": key}
    rec = _find(cx, account_id, key)
    if rec is not None:
        abandoned = (
            rec.state == IN_FLIGHT
            and rec.resource_id is None
            and rec.created_at < now - timedelta(seconds=stale_s)
        )
        if rec.expires_at > now and not abandoned:
            return rec
        cx.execute(f"DELETE FROM idempotency_keys WHERE {_KEY}", p)
    try:
        cx.execute(
            "INSERT INTO idempotency_keys (account_id, key, request_hash, state, created_at,"
            " expires_at) VALUES (%(a)s, %(k)s, %(h)s, 'in_flight', %(t)s, %(x)s)",
            {**p, "h": request_hash, "t": cx.ts(now), "x": cx.ts(now + timedelta(seconds=ttl_s))},
        )
    except IntegrityError:  # a twin inserted it first (PostgreSQL: autocommit, no harm)
        return _find(cx, account_id, key)
    return None


@autocommit
def _finish(
    cx: Cx, account_id: str, key: str, status_code: int, headers: dict[str, str], body: bytes
) -> None:
    cx.execute(
        "UPDATE idempotency_keys SET state = 'done', status_code = %(c)s, headers = %(h)s,"
        f" body = %(b)s WHERE {_KEY}",
        {"a": account_id, "k": key, "c": status_code, "h": cx.json(headers), "b": body},
    )


@autocommit
def _abort(cx: Cx, account_id: str, key: str) -> None:
    cx.execute(
        f"DELETE FROM idempotency_keys WHERE {_KEY} AND state = 'in_flight'"
        " AND resource_id IS NULL",
        {"a": account_id, "k": key},
    )


@autocommit
def _sweep(cx: Cx, now: datetime) -> int:
    rows = cx.all(
        "DELETE FROM idempotency_keys WHERE expires_at < %(t)s RETURNING key", {"t": cx.ts(now)}
    )
    return len(rows)


def _any_expired(cx: Cx, now: datetime) -> bool:
    row = cx.one(
        "SELECT 1 FROM idempotency_keys WHERE expires_at < %(t)s LIMIT 1", {"t": cx.ts(now)}
    )
    return row is not None


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(
        self, account_id: str, key: str, request_hash: str, ttl_s: float, stale_s: float = 120.0
    ) -> IdempotencyRecord | None:
        """Claim `key` for a new request: None when this request should run, else the
        existing record (done: replay it; in flight: a twin is running)."""
        return await self.db.write(_begin, account_id, key, request_hash, ttl_s, stale_s, utcnow())

    async def finish(
        self, account_id: str, key: str, status_code: int, headers: dict[str, str], body: bytes
    ) -> None:
        await self.db.write(_finish, account_id, key, status_code, headers, body)

    async def abort(self, account_id: str, key: str) -> None:
        """The request failed before creating anything: free the key for a retry."""
        await self.db.write(_abort, account_id, key)

    async def sweep(self) -> int:
        now = utcnow()
        if not await self.db.read(_any_expired, now):
            return 0
        return await self.db.write(_sweep, now)
