"""Account and API key SQL."""

from __future__ import annotations

from datetime import datetime

from genq.ids import utcnow
from genq.store.db import Cx, Database, autocommit
from genq.store.records import Account, ApiKey

A_COLS, K_COLS = Account.select("a"), ApiKey.select("k")


@autocommit
def _create(cx: Cx, account_id: str, name: str, plan: str, now: datetime) -> Account:
    row = cx.one(
        "INSERT INTO accounts (id, name, plan, created_at) VALUES (%(id)s, %(n)s, %(p)s, %(t)s)"
        f" RETURNING {Account.select()}",
        {"id": account_id, "n": name, "p": plan, "t": cx.ts(now)},
    )
    return Account.of(row)


def _get(cx: Cx, account_id: str) -> Account | None:
    row = cx.one(f"SELECT {A_COLS} FROM accounts a WHERE a.id = %(id)s", {"id": account_id})
    return Account.of(row) if row else None


def _by_name(cx: Cx, name: str) -> Account | None:
    row = cx.one(f"SELECT {A_COLS} FROM accounts a WHERE a.name = %(n)s", {"n": name})
    return Account.of(row) if row else None


def _all(cx: Cx) -> list[Account]:
    return [Account.of(r) for r in cx.all(f"SELECT {A_COLS} FROM accounts a ORDER BY created_at")]


@autocommit
def _add_key(
    cx: Cx, key_id: str, account_id: str, prefix: str, digest: str, name: str | None, now: datetime
) -> ApiKey:
    row = cx.one(
        "INSERT INTO api_keys (id, account_id, prefix, hash, name, created_at)"
        " VALUES (%(id)s, %(a)s, %(p)s, %(h)s, %(n)s, %(t)s)"
        f" RETURNING {ApiKey.select()}",
        {"id": key_id, "a": account_id, "p": prefix, "h": digest, "n": name, "t": cx.ts(now)},
    )
    return ApiKey.of(row)


def _key_by_hash(cx: Cx, digest: str) -> tuple[ApiKey, Account] | None:
    row = cx.one(
        f"SELECT {K_COLS}, {A_COLS} FROM api_keys k JOIN accounts a ON a.id = k.account_id"
        " WHERE k.hash = %(h)s",
        {"h": digest},
    )
    if row is None:
        return None
    n = len(ApiKey.COLUMNS)
    return ApiKey.of(row[:n]), Account.of(row[n:])


def _keys(cx: Cx, account_id: str) -> list[ApiKey]:
    rows = cx.all(
        f"SELECT {K_COLS} FROM api_keys k WHERE k.account_id = %(a)s ORDER BY k.created_at",
        {"a": account_id},
    )
    return [ApiKey.of(r) for r in rows]


@autocommit
def _set_plan(cx: Cx, account_id: str, plan: str, limit: int) -> None:
    cx.execute("UPDATE accounts SET plan = %(p)s WHERE id = %(a)s", {"p": plan, "a": account_id})
    # queued jobs wait under the new plan's limit
    cx.execute(
        "UPDATE jobs SET account_limit = %(n)s WHERE account_id = %(a)s AND status = 'queued'",
        {"n": limit, "a": account_id},
    )


@autocommit
def _touch_key(cx: Cx, key_id: str, when: datetime) -> None:
    cx.execute(
        "UPDATE api_keys SET last_used_at = %(t)s WHERE id = %(id)s",
        {"t": cx.ts(when), "id": key_id},
    )


@autocommit
def _revoke_key(cx: Cx, prefix: str, now: datetime) -> int:
    rows = cx.all(
        "UPDATE api_keys SET revoked_at = %(t)s WHERE prefix = %(p)s AND revoked_at IS NULL"
        " RETURNING id",
        {"t": cx.ts(now), "p": prefix},
    )
    return len(rows)


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, account_id: str, name: str, plan: str) -> Account:
        return await self.db.write(_create, account_id, name, plan, utcnow())

    async def get(self, account_id: str) -> Account | None:
        return await self.db.read(_get, account_id)

    async def by_name(self, name: str) -> Account | None:
        return await self.db.read(_by_name, name)

    async def all(self) -> list[Account]:
        return await self.db.read(_all)

    async def add_key(
        self, key_id: str, account_id: str, prefix: str, digest: str, name: str | None
    ) -> ApiKey:
        return await self.db.write(_add_key, key_id, account_id, prefix, digest, name, utcnow())

    async def key_by_hash(self, digest: str) -> tuple[ApiKey, Account] | None:
        return await self.db.read(_key_by_hash, digest)

    async def keys(self, account_id: str) -> list[ApiKey]:
        return await self.db.read(_keys, account_id)

    async def set_plan(self, account_id: str, plan: str, concurrent_jobs: int) -> None:
        await self.db.write(_set_plan, account_id, plan, concurrent_jobs)

    async def touch_key(self, key_id: str, when: datetime) -> None:
        await self.db.write(_touch_key, key_id, when)

    async def revoke_key(self, prefix: str) -> bool:
        return bool(await self.db.write(_revoke_key, prefix, utcnow()))
