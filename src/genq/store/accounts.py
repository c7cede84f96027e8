"""Account and API key SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from genq.ids import utcnow
from genq.store import tables as t
from genq.store.db import Database
from genq.store.records import Account, ApiKey

A, K = t.accounts.c, t.api_keys.c


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, account_id: str, name: str, plan: str) -> Account:
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(t.accounts).values(
                    id=account_id, name=name, plan=plan, created_at=utcnow()
                )
            )
            row = (await conn.execute(sa.select(t.accounts).where(A.id == account_id))).one()
        return Account.from_row(row)

    async def get(self, account_id: str) -> Account | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.accounts).where(A.id == account_id))).first()
        return Account.from_row(row) if row else None

    async def by_name(self, name: str) -> Account | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.accounts).where(A.name == name))).first()
        return Account.from_row(row) if row else None

    async def all(self) -> list[Account]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.accounts).order_by(A.created_at))).all()
        return [Account.from_row(r) for r in rows]

    async def add_key(
        self, key_id: str, account_id: str, prefix: str, digest: str, name: str | None
    ) -> ApiKey:
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(t.api_keys).values(
                    id=key_id,
                    account_id=account_id,
                    prefix=prefix,
                    hash=digest,
                    name=name,
                    created_at=utcnow(),
                )
            )
            row = (await conn.execute(sa.select(t.api_keys).where(K.id == key_id))).one()
        return ApiKey.from_row(row)

    async def key_by_hash(self, digest: str) -> tuple[ApiKey, Account] | None:
        stmt = (
            sa.select(t.api_keys, t.accounts)
            .join(t.accounts, A.id == K.account_id)
            .where(K.hash == digest)
        )
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        m = row._mapping
        key = ApiKey(**{c.name: m[c] for c in t.api_keys.c})
        account = Account(**{c.name: m[c] for c in t.accounts.c})
        return key, account

    async def keys(self, account_id: str) -> list[ApiKey]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.api_keys).where(K.account_id == account_id).order_by(K.created_at)
                )
            ).all()
        return [ApiKey.from_row(r) for r in rows]

    async def set_plan(self, account_id: str, plan: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(sa.update(t.accounts).where(A.id == account_id).values(plan=plan))

    async def touch_key(self, key_id: str, when: datetime) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(t.api_keys).where(K.id == key_id).values(last_used_at=when)
            )

    async def revoke_key(self, prefix: str) -> bool:
        async with self.db.write() as conn:
            result = await conn.execute(
                sa.update(t.api_keys)
                .where(K.prefix == prefix, K.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return bool(result.rowcount)
