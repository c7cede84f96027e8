"""Per-account request rate limits, two windows per account: `generate` (requests that
create jobs) and `status` (everything else), sized by the account's plan.

Counting uses the `limits` library: in memory by default (synchronous: no await and
no thread hop per request), in Redis when `GENQ_REDIS_URL` is set so that several
server processes share one count. The `generate` window is a moving window (exact:
a plan's jobs per minute are never exceeded); the `status` window, which polling
clients hit thousands of times a second, is a fixed-window counter (one counter per
account and minute, a few microseconds per request; across a minute's edge a client
may fit up to twice the plan's reads into one minute). Headers follow the IETF
RateLimit header fields draft.

`Holds` bounds the other thing an account can take: requests it holds open (event
streams and long-polls), counted in each process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import coredis
from limits import RateLimitItem, RateLimitItemPerMinute, WindowStats, strategies
from limits.aio import strategies as aio_strategies
from limits.aio.storage import Storage as AsyncStorage
from limits.storage import MemoryStorage, storage_from_string

from genq.errors import RateLimited, TooManyStreams
from genq.plans import Plan

GENERATE, STATUS = "generate", "status"


_POLICIES: dict[tuple[str, int], tuple[bytes, bytes]] = {}


@dataclass(slots=True)
class Window:
    kind: str
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"{self.kind}";q={self.limit};w=60',
            "RateLimit": f'"{self.kind}";r={self.remaining};t={self.reset_s}',
        }

    def raw(self) -> list[tuple[bytes, bytes]]:
        """`headers()` as ASGI header pairs (the policy's encoded once per plan)."""
        policy = _POLICIES.get((self.kind, self.limit))
        if policy is None:
            value = f'"{self.kind}";q={self.limit};w=60'.encode()
            policy = _POLICIES[(self.kind, self.limit)] = (b"ratelimit-policy", value)
        return [
            policy,
            (b"ratelimit", b'"%s";r=%d;t=%d' % (self.kind.encode(), self.remaining, self.reset_s)),
        ]


class RateLimiter:
    def __init__(self, plans: Mapping[str, Plan], redis_url: str = "") -> None:
        self.plans = plans
        self._items: dict[tuple[str, str], RateLimitItem] = {}
        self._keys: dict[tuple[str, str, str], tuple[RateLimitItem, str]] = {}
        # our own Redis pool, so that close() can release its connections
        self._pool = coredis.ConnectionPool.from_url(redis_url) if redis_url else None
        self._shared: dict[str, Any] = {}
        self._local: dict[str, Any] = {}
        if redis_url:
            options: dict[str, Any] = {"key_prefix": "genq", "connection_pool": self._pool}
            storage = storage_from_string("async+" + redis_url, **options)
            assert isinstance(storage, AsyncStorage)
            self._shared = {
                GENERATE: aio_strategies.MovingWindowRateLimiter(storage),
                STATUS: aio_strategies.FixedWindowRateLimiter(storage),
            }
        else:
            memory = self._memory = MemoryStorage()
            self._local = {
                GENERATE: strategies.MovingWindowRateLimiter(memory),
                STATUS: strategies.FixedWindowRateLimiter(memory),
            }

    @property
    def synchronous(self) -> bool:
        """Whether `hit_now` can be used (counts kept in this process)."""
        return bool(self._local)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()

    def _item(self, plan: str, kind: str) -> RateLimitItem:
        item = self._items.get((plan, kind))
        if item is None:
            p = self.plans.get(plan) or self.plans["free"]
            limit = p.generation_per_min if kind == GENERATE else p.status_per_min
            item = self._items[(plan, kind)] = RateLimitItemPerMinute(limit)
        return item

    @staticmethod
    def _window(item: RateLimitItem, kind: str, allowed: bool, stats: WindowStats) -> Window:
        reset_s = max(0, math.ceil(stats.reset_time - time.time()))
        window = Window(kind, item.amount, max(0, stats.remaining), reset_s)
        if not allowed:
            retry = max(1, reset_s)
            raise RateLimited(
                f"over the {kind} limit of {item.amount} requests a minute; retry in {retry} s",
                headers={"Retry-After": str(retry), **window.headers()},
            )
        return window

    def hit_now(self, account_id: str, plan: str, kind: str) -> Window:
        """`hit` for in-memory counts, without an await (see `synchronous`). The same
        calls on `limits`' memory storage as its strategies' `hit` and
        `get_window_stats`, with the storage key built once per account."""
        found = self._keys.get((account_id, plan, kind))
        if found is None:
            item = self._item(plan, kind)
            found = self._keys[(account_id, plan, kind)] = (item, item.key_for(account_id, kind))
            if len(self._keys) > 100_000:
                self._keys.clear()
        item, key = found
        storage, expiry, amount = self._memory, item.get_expiry(), item.amount
        if kind == GENERATE:  # moving window
            allowed = storage.acquire_entry(key, amount, expiry)
            start, count = storage.get_moving_window(key, amount, expiry)
            stats = WindowStats(start + expiry, amount - count)
        else:  # fixed-window counter
            count = storage.incr(key, expiry)
            allowed = count <= amount
            stats = WindowStats(storage.get_expiry(key), amount - count)
        return self._window(item, kind, allowed, stats)

    async def hit(self, account_id: str, plan: str, kind: str) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over."""
        if self._local:
            return self.hit_now(account_id, plan, kind)
        item = self._item(plan, kind)
        limiter = self._shared[kind]
        allowed = await limiter.hit(item, account_id, kind)
        stats = await limiter.get_window_stats(item, account_id, kind)
        return self._window(item, kind, allowed, stats)

    async def peek(self, account_id: str, plan: str, kind: str) -> Window:
        item = self._item(plan, kind)
        if self._local:
            stats = self._local[kind].get_window_stats(item, account_id, kind)
        else:
            stats = await self._shared[kind].get_window_stats(item, account_id, kind)
        return self._window(item, kind, True, stats)


class Holds:
    """Requests an account holds open in this process (SSE streams, long-polls): at most
    its plan's `open_streams` at once; one more is `TooManyStreams` (429). A hold is
    taken before the request waits and given back (`release`) when it ends."""

    RETRY_AFTER_S = 5

    def __init__(self, plans: Mapping[str, Plan]) -> None:
        self.plans = plans
        self.open: dict[str, int] = {}

    def limit(self, plan: str) -> int:
        found = self.plans.get(plan)
        return found.open_streams if found is not None else 1

    def take(self, account_id: str, plan: str) -> Hold:
        held = self.open.get(account_id, 0)
        limit = self.limit(plan)
        if held >= limit:
            raise TooManyStreams(
                f"this account holds {held} event streams and long-polls open, its plan's"
                f" limit; close one or retry in {self.RETRY_AFTER_S} s",
                headers={"Retry-After": str(self.RETRY_AFTER_S)},
                limit=limit,
            )
        self.open[account_id] = held + 1
        return Hold(self, account_id)

    def try_take(self, account_id: str, plan: str) -> Hold | None:
        """A hold if one is free, else None (for a wait the request may skip)."""
        if self.open.get(account_id, 0) >= self.limit(plan):
            return None
        return self.take(account_id, plan)


class Hold:
    """One open request's share of its account's `Holds`; `release` is idempotent."""

    __slots__ = ("account_id", "holds")

    def __init__(self, holds: Holds | None, account_id: str) -> None:
        self.holds, self.account_id = holds, account_id

    def release(self) -> None:
        holds, self.holds = self.holds, None
        if holds is None:
            return
        left = holds.open.get(self.account_id, 1) - 1
        if left > 0:
            holds.open[self.account_id] = left
        else:
            holds.open.pop(self.account_id, None)

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
