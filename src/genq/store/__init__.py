"""The store: the only code that speaks SQL. `Store(url)` opens it; `store.jobs`,
`store.accounts`, `store.files`, `store.models`, `store.webhooks`, `store.ledger`,
`store.idempotency`, `store.secrets` and `store.upstream` hold the operations (each
one function run in one thread hop, see `genq.store.db`)."""

from __future__ import annotations

from genq.store.accounts import AccountStore
from genq.store.db import Cx, Database
from genq.store.files import FileStore, ModelStore
from genq.store.idempotency import IdempotencyStore
from genq.store.jobs import JobStore
from genq.store.ledger import LedgerStore
from genq.store.secrets import SecretStore
from genq.store.upstream import UpstreamStore
from genq.store.webhooks import WebhookStore

__all__ = ["Store"]


def _ping(cx: Cx) -> None:
    cx.scalar("SELECT 1")


class Store:
    def __init__(self, url: str, *, pool_size: int = 10, readers: int = 4) -> None:
        """`pool_size`: PostgreSQL connections (and threads) of this process; `readers`:
        SQLite read connections (one writer besides)."""
        self.db = Database(url, pool_size=pool_size, readers=readers)
        self.jobs = JobStore(self.db)
        self.accounts = AccountStore(self.db)
        self.files = FileStore(self.db)
        self.models = ModelStore(self.db)
        self.webhooks = WebhookStore(self.db)
        self.ledger = LedgerStore(self.db)
        self.idempotency = IdempotencyStore(self.db)
        self.secrets = SecretStore(self.db)
        self.upstream = UpstreamStore(self.db)

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.db.read(_ping)

    async def close(self) -> None:
        await self.db.close()
