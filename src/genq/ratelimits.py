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
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

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
        if redis_url:
            options: dict[str, Any] = {"key_prefix": "genq", "connection_pool": self._pool}
            storage = storage_from_string("async+" + redis_url, **options)
        else:
            storage = MemoryStorage()
        assert isinstance(storage, Storage)
        self.storage: Storage = storage
        self.strategy = MovingWindowRateLimiter(self.storage)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()

    def _limit(self, plan: str, kind: str) -> int:
        p = self.plans.get(plan) or self.plans["free"]
        return p.generation_per_min if kind == GENERATE else p.status_per_min

    async def hit(self, account_id: str, plan: str, kind: str) -> Window:
        """Count one request; raises RateLimited (with Retry-After) when over."""
        limit = self._limit(plan, kind)
        item = RateLimitItemPerMinute(limit)
        allowed = await self.strategy.hit(item, account_id, kind)
        stats = await self.strategy.get_window_stats(item, account_id, kind)
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
        stats = await self.strategy.get_window_stats(
            RateLimitItemPerMinute(limit), account_id, kind
        )
        return Window(
            kind, limit, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - time.time()))
        )
