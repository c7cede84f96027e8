"""Connections: every store operation is one synchronous function, run in one thread hop.

An operation is `op(cx, *args)`: plain DB-API calls on `cx` (a `Cx`), no awaits, no
locks. `Database.write(op, ...)` and `Database.read(op, ...)` run it off the event loop
and hand back its result (or its exception) to the awaiting caller.

SQLite: one writer thread owns the only connection that writes. It takes whatever
operations are waiting (submits, claims, progress, finishes, ...) and commits them
as one transaction (group commit), each in a savepoint of its own, so each caller
gets its own result or error and a failing operation undoes only its own work.
Other processes on the same file queue on SQLite's lock (`BEGIN IMMEDIATE`,
`busy_timeout`). The writer notices their commits with `PRAGMA data_version` (which
only moves for other connections' commits) and reads their events before its own,
so this process learns of every change in commit order. Reads run on a small pool
of read connections (WAL lets them run beside the writer); a single-statement read
runs without BEGIN.

PostgreSQL: a pool of threads, each with its own autocommit connection (a broken
one is replaced on the next operation; no ping before use). An operation marked
`@autocommit` sends its statements in autocommit, one round trip, atomic
on its own (the job transitions are one statement each); others run in a
transaction. Sessions are READ COMMITTED and UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate["Cx", P], T]
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)
MAX_BATCH = 256  # operations committed together at most
MMAP_BYTES = 1 << 30  # SQLite: memory-map up to this much of the database file
CACHE_KIB = 16384  # SQLite: page cache per connection


def autocommit(op: Callable[P, T]) -> Callable[P, T]:
    """Mark an operation whose statements each commit on their own on PostgreSQL (no
    BEGIN/COMMIT around them): one that sends a single statement (a transition), or
    several that are each atomic and correct alone. SQLite runs it in the writer's
    transaction like any other."""
    op.autocommit = True  # type: ignore[attr-defined]
    return op


class Stats:
    """Counters, for tests and benchmarks: statements sent, write transactions
    committed, write operations and read operations run."""

    __slots__ = ("read_ops", "statements", "write_ops", "write_txns")

    def __init__(self) -> None:
        self.statements = self.write_txns = self.write_ops = self.read_ops = 0

    def snapshot(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


_PARAM = re.compile(r"%\((\w+)\)s")
_sqlite_sql: dict[str, str] = {}


def _for_sqlite(sql: str) -> str:
    """psycopg's `%(name)s` placeholders as sqlite3's `:name` (and `%%` as `%`)."""
    out = _sqlite_sql.get(sql)
    if out is None:
        out = _PARAM.sub(r":\1", sql).replace("%%", "%")
        _sqlite_sql[sql] = out
    return out


def _sqlite_ts(dt: datetime) -> str:
    # the format SQLAlchemy's SQLite DateTime wrote (earlier rows are in it): sortable text
    dt = dt.astimezone(UTC) if dt.tzinfo else dt
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}"
    )


class Cx:
    """A connection as store operations see it: statements (counted) and the few
    places where SQLite and PostgreSQL differ."""

    __slots__ = ("last_event_id", "postgres", "raw", "stats")

    def __init__(self, raw: Any, postgres: bool, stats: Stats) -> None:
        self.raw = raw
        self.postgres = postgres
        self.stats = stats
        self.last_event_id = 0  # highest job event id written (SQLite writer)

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> Any:
        self.stats.statements += 1
        if self.postgres:
            return self.raw.execute(sql, params or None)
        return self.raw.execute(_for_sqlite(sql), params)

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> None:
        self.stats.statements += 1
        if self.postgres:
            with self.raw.cursor() as cur:
                cur.executemany(sql, list(rows))
        else:
            self.raw.executemany(_for_sqlite(sql), rows)

    def all(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[Any]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- values ------------------------------------------------------------------------

    def ts(self, dt: datetime | None) -> Any:
        if dt is None or self.postgres:
            return dt
        return _sqlite_ts(dt)

    def json(self, value: Any) -> Any:
        if value is None:
            return None
        if self.postgres:
            return Jsonb(value)
        return orjson.dumps(value).decode()

    def array(self, values: Iterable[Any]) -> Any:
        """A list parameter for `in_list`."""
        return list(values) if self.postgres else orjson.dumps(list(values)).decode()

    def in_list(self, name: str) -> str:
        """`IN` a list parameter made with `array`."""
        if self.postgres:
            return f"= ANY(%({name})s)"
        return f"IN (SELECT value FROM json_each(%({name})s))"


def dt_of(value: Any) -> datetime | None:
    """A timestamp read back (SQLite: text in UTC; PostgreSQL: aware, UTC session)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def json_of(value: Any) -> Any:
    """A JSON column read back (SQLite: text; PostgreSQL: parsed already)."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


# -- SQLite ------------------------------------------------------------------------------


def _sqlite_connect(path: str, *, writer: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=ON")
    # reads of a large file straight from the OS page cache (no copy per page read),
    # and more of the hot pages kept decoded per connection
    conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    if writer:
        # WAL persists in the file: switching is only asked for once (it needs the file
        # to itself, which another process's write denies)
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class _Call:
    __slots__ = ("args", "fut", "loop", "op")

    def __init__(
        self, op: Any, args: tuple[Any, ...], loop: asyncio.AbstractEventLoop, fut: Any
    ) -> None:
        self.op, self.args, self.loop, self.fut = op, args, loop, fut


def _settle(results: list[tuple[Any, bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():  # the caller stopped waiting; the work is done regardless
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


ForeignReader = Callable[["Cx", int], tuple[int, list[Any]]]


class _SqliteWriter:
    """The writer thread (see the module docstring)."""

    _PROBE = object()
    _STOP = object()

    def __init__(self, path: str, stats: Stats) -> None:
        self.path = path
        self.stats = stats
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # other processes' events: read with `_foreign(cx, after_id)`, handed to
        # `_on_foreign(events)` on `_foreign_loop` before this batch's own results
        self._foreign: ForeignReader | None = None
        self._on_foreign: Callable[[list[Any]], None] | None = None
        self._foreign_loop: asyncio.AbstractEventLoop | None = None
        self.last_event_id = 0
        self._data_version = -1

    def submit(self, call: Any) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="genq-sqlite-writer", daemon=True
                    )
                    self._thread.start()
        self._q.put(call)

    def follow(
        self,
        reader: ForeignReader,
        on_events: Callable[[list[Any]], None],
        loop: asyncio.AbstractEventLoop,
        after_id: int,
    ) -> None:
        self._foreign, self._on_foreign, self._foreign_loop = reader, on_events, loop
        self.last_event_id = max(self.last_event_id, after_id)

    def probe(self) -> None:
        """Look for other processes' commits now (idle: no write needed)."""
        self.submit(self._PROBE)

    def stop(self) -> None:
        if self._thread is not None:
            self._q.put(self._STOP)
            self._thread.join(timeout=30)
            self._thread = None

    def _connect(self) -> tuple[sqlite3.Connection | None, list[Any]]:
        """The writing connection (None: stopped meanwhile), and the calls taken from the
        queue while it was being made. While it cannot be made, the waiting calls fail
        with why (no caller waits forever), and it is tried again when the next call
        comes."""
        taken: list[Any] = []
        busy_until = time.monotonic() + 30  # as busy_timeout: a busy file is waited for
        while True:
            try:
                return _sqlite_connect(self.path, writer=True), taken
            except sqlite3.Error as exc:
                if "locked" in str(exc) and time.monotonic() < busy_until:
                    time.sleep(0.05)
                    continue
                log.warning("cannot open %s for writing: %s", self.path, exc)
                while not self._q.empty():
                    taken.append(self._q.get_nowait())
                if any(item is self._STOP for item in taken):
                    return None, []
                self._deliver([(c, False, exc) for c in taken if c is not self._PROBE])
                taken = [self._q.get()]

    def _run(self) -> None:
        conn, taken = self._connect()
        if conn is None:
            return
        cx = Cx(conn, False, self.stats)
        try:
            while True:
                item = taken.pop(0) if taken else self._q.get()
                if item is self._STOP:
                    return
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        more = taken.pop(0) if taken else self._q.get_nowait()
                    except queue.Empty:
                        break
                    if more is self._STOP:
                        self._q.put(more)  # after this batch
                        break
                    batch.append(more)
                calls = [c for c in batch if c is not self._PROBE]
                if not calls:
                    self._check_foreign(cx)
                    continue
                self._commit(cx, calls)
        finally:
            conn.close()

    def _check_foreign(self, cx: Cx) -> None:
        if self._foreign is None:
            return
        version = cx.raw.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        try:
            last, events = self._foreign(cx, self.last_event_id)
        except Exception:
            log.exception("reading other processes' events failed")
            return
        self.last_event_id = max(self.last_event_id, last)
        if events and self._on_foreign is not None and self._foreign_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                self._foreign_loop.call_soon_threadsafe(self._on_foreign, events)

    def _commit(self, cx: Cx, calls: list[_Call]) -> None:
        raw = cx.raw
        try:
            raw.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            self._deliver([(c, False, exc) for c in calls])
            return
        self._check_foreign(cx)
        cx.last_event_id = 0
        results: list[tuple[_Call, bool, Any]] = []
        single = len(calls) == 1
        for c in calls:
            if not single:
                raw.execute("SAVEPOINT op")
            try:
                value = c.op(cx, *c.args)
            except BaseException as exc:
                if single:
                    raw.execute("ROLLBACK")
                    self._deliver([(c, False, exc)])
                    return
                raw.execute("ROLLBACK TO op")
                raw.execute("RELEASE op")
                results.append((c, False, exc))
            else:
                if not single:
                    raw.execute("RELEASE op")
                results.append((c, True, value))
        try:
            raw.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(Exception):
                raw.execute("ROLLBACK")
            self._deliver([(c, False, exc) for c in calls])
            return
        self.stats.write_txns += 1
        self.stats.write_ops += len(calls)
        if cx.last_event_id:
            self.last_event_id = max(self.last_event_id, cx.last_event_id)
        self._deliver(results)

    @staticmethod
    def _deliver(results: list[tuple[_Call, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
        for c, ok, value in results:
            by_loop.setdefault(c.loop, []).append((c.fut, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(_settle, items)


class _ThreadConnections:
    """One connection per pool thread, made on first use, replaced once broken."""

    def __init__(self, connect: Callable[[], Any], broken: Callable[[Any], bool]) -> None:
        self._connect, self._broken = connect, broken
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._broken(conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


def _pg_dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        readers: int = 4,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.stats = Stats()
        # this process's connections' application_name: its NOTIFYs say so
        self.origin = f"genq/{os.getpid()}/{secrets.token_hex(4)}"
        self._writer: _SqliteWriter | None = None
        if self.dialect == "sqlite":
            path = parsed.database or ""
            if not path or path == ":memory:":
                raise ValueError("genq needs a SQLite file, not an in-memory database")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path = path
            self._writer = _SqliteWriter(path, self.stats)
            self._conns = _ThreadConnections(
                lambda: _sqlite_connect(path, writer=False), lambda c: False
            )
            self._pool = ThreadPoolExecutor(readers, thread_name_prefix="genq-read")
        elif self.dialect == "postgresql":
            self.conninfo = parsed.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            self._conns = _ThreadConnections(self._pg_connect, lambda c: c.closed or c.broken)
            self._pool = ThreadPoolExecutor(pool_size, thread_name_prefix="genq-pg")
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use SQLite or PostgreSQL")

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _pg_connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            application_name=self.origin,
            options="-c timezone=UTC -c default_transaction_isolation=read\\ committed",
        )
        set_json_loads(orjson.loads, conn)
        set_json_dumps(_pg_dumps, conn)
        return conn

    # -- running operations ----------------------------------------------------------------

    async def write(self, op: Op[P, T], *args: Any) -> T:
        """Run a write operation in its own transaction (SQLite: committed with whatever
        else is waiting, in a savepoint of its own)."""
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            fut: asyncio.Future[T] = loop.create_future()
            self._writer.submit(_Call(op, args, loop, fut))
            return await fut
        return await loop.run_in_executor(self._pool, self._pg_call, op, args, True)

    async def read(self, op: Op[P, T], *args: Any) -> T:
        """Run a read operation (one statement: no transaction around it)."""
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            return await loop.run_in_executor(self._pool, self._sqlite_read, op, args)
        return await loop.run_in_executor(self._pool, self._pg_call, op, args, False)

    def _sqlite_read(self, op: Any, args: tuple[Any, ...]) -> Any:
        self.stats.read_ops += 1
        return op(Cx(self._conns.get(), False, self.stats), *args)

    def _pg_call(self, op: Any, args: tuple[Any, ...], write: bool) -> Any:
        for attempt in (1, 2):
            conn = self._conns.get()
            cx = Cx(conn, True, self.stats)
            try:
                if write and not getattr(op, "autocommit", False):
                    with conn.transaction():
                        result = op(cx, *args)
                else:
                    result = op(cx, *args)
            except psycopg.OperationalError:
                if not (conn.closed or conn.broken):
                    raise
                self._conns.drop()  # reconnect on the next operation
                if write or attempt == 2:
                    raise  # a write may have reached the server: the caller decides
                continue
            if write:
                self.stats.write_txns += 1
                self.stats.write_ops += 1
            else:
                self.stats.read_ops += 1
            return result
        raise AssertionError("unreachable")

    # -- other processes' changes (SQLite) ------------------------------------------------

    def follow_foreign(
        self, reader: ForeignReader, on_events: Callable[[list[Any]], None], after_id: int
    ) -> None:
        """SQLite: have the writer read the events other processes commit (`reader`, on
        its own connection) and hand them to `on_events` in this loop, ahead of the
        results of its own next transaction."""
        assert self._writer is not None
        self._writer.follow(reader, on_events, asyncio.get_running_loop(), after_id)

    def probe_foreign(self) -> None:
        if self._writer is not None:
            self._writer.probe()

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
        await asyncio.to_thread(self._pool.shutdown, True)
        self._conns.close_all()
