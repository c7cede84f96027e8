"""The store: the only code that speaks SQL. `Store(url)` opens it; `store.jobs`,
`store.accounts`, `store.files`, `store.models` hold the queries."""

from __future__ import annotations

import sqlalchemy as sa

from genq.store.accounts import AccountStore
from genq.store.db import Database
from genq.store.dispatch import Tokens
from genq.store.files import FileStore, ModelStore
from genq.store.idempotency import IdempotencyStore
from genq.store.jobs import JobStore
from genq.store.ledger import LedgerStore
from genq.store.webhooks import WebhookStore

__all__ = ["Store"]


class Store:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        procrastinate: bool | None = None,
    ) -> None:
        """`procrastinate`: defer a Procrastinate token with every queued job (see
        `genq.store.dispatch`); None means on PostgreSQL, the default dispatch there."""
        self.db = Database(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout
        )
        if procrastinate is None:
            procrastinate = self.db.is_postgres
        if procrastinate and not self.db.is_postgres:
            raise ValueError("Procrastinate dispatch needs PostgreSQL")
        self.jobs = JobStore(self.db, Tokens() if procrastinate else None)
        self.accounts = AccountStore(self.db)
        self.files = FileStore(self.db)
        self.models = ModelStore(self.db)
        self.webhooks = WebhookStore(self.db)
        self.ledger = LedgerStore(self.db)
        self.idempotency = IdempotencyStore(self.db)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self.db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.db.dispose()
