"""Connections: one AsyncEngine, write transactions and read transactions.

On SQLite, write transactions start with `BEGIN IMMEDIATE` (so a reader never has to
upgrade its lock and meet SQLITE_BUSY) and are serialized in-process by a lock;
other processes wait on `busy_timeout`. WAL mode lets readers run beside a writer.

On PostgreSQL every transaction is READ COMMITTED whatever the server's default: each
statement sees what was committed before it began, so a statement that follows a lock
(the claim's advisory lock, a row lock) reads the state the previous holder left.
Sessions run in UTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

PENDING = "genq.before_commit"  # conn.info key of the work queued for the commit
Finisher = Callable[[AsyncConnection, list[Any]], Awaitable[None]]


def _sqlite_setup(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        echo: bool = False,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {
            "echo": echo,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
        }
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        elif self.dialect == "postgresql":
            kwargs.update(
                pool_pre_ping=True,
                isolation_level="READ COMMITTED",
                connect_args={"options": "-c timezone=UTC"},
            )
        else:
            kwargs.update(pool_pre_ping=True)
        self.engine = create_async_engine(url, **kwargs)
        self._writer = self.engine
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)
            self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self._write_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on success. Work the transaction queued with
        `before_commit` runs last, just before the commit."""
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                conn.info.pop(PENDING, None)  # left by a transaction that rolled back
                yield conn
                await self._finish(conn)
            return
        async with self._write_lock, self._writer.begin() as conn:
            conn.info.pop(PENDING, None)
            yield conn
            await self._finish(conn)

    @staticmethod
    def before_commit(conn: AsyncConnection, key: str, fn: Finisher) -> list[Any]:
        """Have `fn(conn, items)` run once just before this transaction commits; returns
        the list `items` the caller appends to (one list per key and transaction)."""
        pending: dict[str, tuple[Finisher, list[Any]]] = conn.info.setdefault(PENDING, {})
        if key not in pending:
            pending[key] = (fn, [])
        return pending[key][1]

    @staticmethod
    async def _finish(conn: AsyncConnection) -> None:
        pending = conn.info.pop(PENDING, None)
        for fn, items in (pending or {}).values():
            await fn(conn, items)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read transaction (a consistent snapshot)."""
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
