"""Per-account request rate limits, two windows per account: `generate` (requests that
create jobs) and `status` (everything else), sized by the account's plan.

Counting uses the `limits` library's moving window: in memory by default, in Redis
when `GENQ_REDIS_URL` is set so that several server processes share one count.
Headers follow the IETF RateLimit header fields draft.
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

from genq.errors import RateLimited
from genq.plans import Plan

GENERATE, STATUS = "generate", "status"


@dataclass(frozen=True, slots=True)
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


class RateLimiter:
    def __init__(self, plans: Mapping[str, Plan], redis_url: str = "") -> None:
        self.plans = plans
        # our own Redis pool, so that close() can release its connections
        self._pool = coredis.ConnectionPool.from_url(redis_url) if redis_url else None
        self._shared: aio_strategies.MovingWindowRateLimiter | None = None
        self._local: strategies.MovingWindowRateLimiter | None = None
        if redis_url:
            options: dict[str, Any] = {"key_prefix": "genq", "connection_pool": self._pool}
            storage = storage_from_string("async+" + redis_url, **options)
            assert isinstance(storage, AsyncStorage)
            self._shared = aio_strategies.MovingWindowRateLimiter(storage)
        else:
            # the synchronous in-memory storage: no await and no thread hop per request
            # (the asyncio one runs an expiry pass in a worker thread on every hit)
            self._local = strategies.MovingWindowRateLimiter(MemoryStorage())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()

    def _limit(self, plan: str, kind: str) -> int:
        p = self.plans.get(plan) or self.plans["free"]
        return p.generation_per_min if kind == GENERATE else p.status_per_min

    async def _count(
        self, item: RateLimitItem, account_id: str, kind: str, hit: bool
    ) -> tuple[bool, WindowStats]:
        if self._local is not None:
            allowed = self._local.hit(item, account_id, kind) if hit else True
            return allowed, self._local.get_window_stats(item, account_id, kind)
        assert self._shared is not None
        allowed = await self._shared.hit(item, account_id, kind) if hit else True
        return allowed, await self._shared.get_window_stats(item, account_id, kind)

    async def hit(self, account_id: str, plan: str, kind: str) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over."""
        limit = self._limit(plan, kind)
        allowed, stats = await self._count(RateLimitItemPerMinute(limit), account_id, kind, True)
        reset_s = max(0, math.ceil(stats.reset_time - time.time()))
        window = Window(kind, limit, max(0, stats.remaining), reset_s)
        if not allowed:
            retry = max(1, reset_s)
            raise RateLimited(
                f"over the {kind} limit of {limit} requests a minute; retry in {retry} s",
                headers={"Retry-After": str(retry), **window.headers()},
            )
        return window

    async def peek(self, account_id: str, plan: str, kind: str) -> Window:
        limit = self._limit(plan, kind)
        _, stats = await self._count(RateLimitItemPerMinute(limit), account_id, kind, False)
        return Window(
            kind, limit, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - time.time()))
        )
