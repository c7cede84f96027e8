"""The in-memory rate limiter's fast path counts exactly as `limits`' own strategies."""

from __future__ import annotations

import pytest
from limits import RateLimitItemPerMinute, strategies
from limits.storage import MemoryStorage

from genq.errors import RateLimited
from genq.plans import merge
from genq.ratelimits import GENERATE, STATUS, RateLimiter

PLANS = merge(
    {
        "tiny": {
            "generation_per_min": 5,
            "status_per_min": 7,
            "concurrent_jobs": 1,
            "retention_days": 1,
            "monthly_credits": 0,
        }
    }
)


@pytest.mark.parametrize(
    ("kind", "strategy", "limit"),
    [
        (GENERATE, strategies.MovingWindowRateLimiter, 5),
        (STATUS, strategies.FixedWindowRateLimiter, 7),
    ],
)
def test_fast_path_counts_as_the_strategy(kind: str, strategy: type, limit: int) -> None:
    limiter = RateLimiter(PLANS)
    reference = strategy(MemoryStorage())
    item = RateLimitItemPerMinute(limit)
    for i in range(limit + 3):
        expected = reference.hit(item, "acct", kind)
        stats = reference.get_window_stats(item, "acct", kind)
        if expected:
            window = limiter.hit_now("acct", "tiny", kind)
            assert window.remaining == max(0, stats.remaining), i
            assert window.limit == limit
        else:
            with pytest.raises(RateLimited) as caught:
                limiter.hit_now("acct", "tiny", kind)
            assert int(caught.value.extra["headers"]["Retry-After"]) >= 1
    # another account has a window of its own
    assert limiter.hit_now("other", "tiny", kind).remaining == limit - 1
