"""A provider's calls per minute, shared through Redis by every genq process on it."""

from __future__ import annotations

import coredis

from genq.engines.upstream.gateway import Gateway

REDIS = "redis://127.0.0.1:6379/15"
RATE = 25


async def _forget_earlier_runs() -> None:
    client = coredis.Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter(match="genq*upstream*vivix*")]
    if keys:
        await client.delete(keys)


async def test_two_processes_share_one_providers_budget_through_redis() -> None:
    await _forget_earlier_runs()
    config = {"vivix": {"base_url": "https://vivix.example", "api_key": "k", "rate_per_min": RATE}}
    a, b = Gateway(config, redis_url=REDIS), Gateway(config, redis_url=REDIS)
    try:
        ups = [(a, a.upstreams["vivix"]), (b, b.upstreams["vivix"])]
        waits = [await gw.rates.wait_s(up) for i in range(RATE) for gw, up in [ups[i % 2]]]
        assert set(waits) == {0.0}
        # the budget is spent, whichever process asks next
        for gw, up in ups:
            assert 0 < await gw.rates.wait_s(up) <= 60
    finally:
        await a.close()
        await b.close()
        await _forget_earlier_runs()
