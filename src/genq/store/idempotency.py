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


def _lapsed(rec: IdempotencyRecord, now: datetime, legacy_stale_s: float) -> bool:
    """Whether the request holding `rec` in flight stopped renewing its lease (it died
    with its process, or lost its database). Keys written before leases existed count
    from their creation."""
    if rec.lease_expires_at is not None:
        return rec.lease_expires_at <= now
    return rec.created_at < now - timedelta(seconds=legacy_stale_s)


@autocommit
def _begin(
    cx: Cx,
    account_id: str,
    key: str,
    request_hash: str,
    token: str,
    ttl_s: float,
    lease_s: float,
    legacy_stale_s: float,
    now: datetime,
) -> IdempotencyRecord | None:
    p = {
        "a": account_id,
        "k": key,
        "h": request_hash,
        "tok": token,
        "t": cx.ts(now),
        "l": cx.ts(now + timedelta(seconds=lease_s)),
        "x": cx.ts(now + timedelta(seconds=ttl_s)),
    }
    rec = _find(cx, account_id, key)
    if rec is not None:
        if rec.expires_at > now:
            takeover = (
                rec.state == IN_FLIGHT
                and rec.resource_id is None
                and rec.request_hash == request_hash
                and _lapsed(rec, now, legacy_stale_s)
            )
            if not takeover:
                return rec
            # its request died before creating anything: this retry takes the key over
            # (fenced on the dead one's token, so two retries cannot both take it)
            same = "IS NOT DISTINCT FROM" if cx.postgres else "IS"
            row = cx.one(
                "UPDATE idempotency_keys SET token = %(tok)s, lease_expires_at = %(l)s,"
                f" created_at = %(t)s WHERE {_KEY} AND state = 'in_flight'"
                f" AND resource_id IS NULL AND token {same} %(old)s RETURNING 1",
                {**p, "old": rec.token},
            )
            return None if row is not None else _find(cx, account_id, key)
        cx.execute(f"DELETE FROM idempotency_keys WHERE {_KEY}", p)
    try:
        cx.execute(
            "INSERT INTO idempotency_keys (account_id, key, request_hash, state, created_at,"
            " expires_at, token, lease_expires_at)"
            " VALUES (%(a)s, %(k)s, %(h)s, 'in_flight', %(t)s, %(x)s, %(tok)s, %(l)s)",
            p,
        )
    except IntegrityError:  # a twin inserted it first (PostgreSQL: autocommit, no harm)
        return _find(cx, account_id, key)
    return None


@autocommit
def _renew(cx: Cx, account_id: str, key: str, token: str, until: datetime) -> bool:
    row = cx.one(
        f"UPDATE idempotency_keys SET lease_expires_at = %(l)s WHERE {_KEY}"
        " AND token = %(tok)s AND state = 'in_flight' RETURNING 1",
        {"a": account_id, "k": key, "tok": token, "l": cx.ts(until)},
    )
    return row is not None


@autocommit
def _finish(
    cx: Cx,
    account_id: str,
    key: str,
    token: str,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    cx.execute(
        "UPDATE idempotency_keys SET state = 'done', status_code = %(c)s, headers = %(h)s,"
        f" body = %(b)s, lease_expires_at = NULL WHERE {_KEY} AND token = %(tok)s",
        {
            "a": account_id,
            "k": key,
            "tok": token,
            "c": status_code,
            "h": cx.json(headers),
            "b": body,
        },
    )


@autocommit
def _abort(cx: Cx, account_id: str, key: str, token: str) -> None:
    cx.execute(
        f"DELETE FROM idempotency_keys WHERE {_KEY} AND state = 'in_flight'"
        " AND resource_id IS NULL AND token = %(tok)s",
        {"a": account_id, "k": key, "tok": token},
    )


def owns(cx: Cx, account_id: str, key: str, token: str) -> bool:
    """Whether the request with `token` still holds `key` in flight, with nothing
    created under it yet (what creating under the key is fenced on)."""
    row = cx.one(
        f"SELECT 1 FROM idempotency_keys WHERE {_KEY} AND token = %(tok)s"
        " AND state = 'in_flight' AND resource_id IS NULL",
        {"a": account_id, "k": key, "tok": token},
    )
    return row is not None


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
        self,
        account_id: str,
        key: str,
        request_hash: str,
        token: str,
        *,
        ttl_s: float,
        lease_s: float,
        legacy_stale_s: float = 120.0,
    ) -> IdempotencyRecord | None:
        """Claim `key` for a new request holding `token`, in flight for `lease_s`: None
        when this request should run (a new key, or one whose request stopped renewing
        its lease before creating anything), else the existing record (done: replay it;
        in flight: a twin holds it)."""
        return await self.db.write(
            _begin, account_id, key, request_hash, token, ttl_s, lease_s, legacy_stale_s, utcnow()
        )

    async def renew(self, account_id: str, key: str, token: str, lease_s: float) -> bool:
        """Extend the in-flight lease; False if the key is no longer this request's."""
        until = utcnow() + timedelta(seconds=lease_s)
        return await self.db.write(_renew, account_id, key, token, until)

    async def finish(
        self,
        account_id: str,
        key: str,
        token: str,
        status_code: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        await self.db.write(_finish, account_id, key, token, status_code, headers, body)

    async def abort(self, account_id: str, key: str, token: str) -> None:
        """The request failed before creating anything: free the key for a retry."""
        await self.db.write(_abort, account_id, key, token)

    async def sweep(self) -> int:
        now = utcnow()
        if not await self.db.read(_any_expired, now):
            return 0
        return await self.db.write(_sweep, now)
