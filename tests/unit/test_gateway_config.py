"""The gateway's pure parts: GENQ_UPSTREAMS parsing, engines and prices, the breaker,
backoff, rate counting and callback tokens."""

from __future__ import annotations

import time

import pytest

from genq.engines.registry import describe
from genq.engines.upstream.base import price_of
from genq.engines.upstream.gateway import Breaker, Gateway, UpstreamEngine
from genq.engines.upstream.tracker import backoff
from genq.errors import ConfigError

BASE = {"base_url": "https://upstream.example/v2", "api_key": "sk_live_secret_1234"}


def test_each_configured_provider_registers_its_engines() -> None:
    gw = Gateway({p: dict(BASE) for p in ("masterpiecex", "useapi", "photogpt", "vivix")})
    names = set(gw.engines)
    for expected in (
        "masterpiecex/text-to-3d",
        "masterpiecex/image-to-3d",
        "useapi/pixverse-video",
        "photogpt/image",
        "photogpt/video",
        "photogpt/train",
        "vivix/grok-imagine-image",
    ):
        assert expected in names
    for engine in gw.engines.values():
        assert isinstance(engine, UpstreamEngine)
        shown = describe(engine)
        assert shown["upstream"] == {
            "provider": engine.upstream.provider,
            "base_url": BASE["base_url"],
        }
        assert "sk_live_secret_1234" not in str(shown)
        assert shown["input_schema"]["type"] == "object" and shown["input_schema"]["properties"]
        assert engine.price >= 1


def test_prices_follow_markup_and_overrides() -> None:
    plain = Gateway({"masterpiecex": dict(BASE)}).engines["masterpiecex/text-to-3d"].price
    doubled = Gateway({"masterpiecex": {**BASE, "markup": 2}}).engines["masterpiecex/text-to-3d"]
    fixed = Gateway({"masterpiecex": {**BASE, "prices": {"text-to-3d": 7}}})
    assert doubled.price == 2 * plain
    assert fixed.engines["masterpiecex/text-to-3d"].price == 7
    assert price_of(None, 3.0, 5) == 5
    assert price_of(0.2, 1.0, 5) == 1
    assert price_of(10, 1.25, 5) == 13


def test_max_jobs_is_the_engines_concurrency() -> None:
    gw = Gateway({"vivix": {**BASE, "max_jobs": 3}, "useapi": dict(BASE)})
    assert gw.engines["vivix/grok-imagine-image"].concurrency == 3
    assert gw.engines["useapi/pixverse-video"].concurrency == 10  # useapi's maxJobs top


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"nope": BASE}, "unknown provider 'nope'"),
        ({"vivix": {"api_key": "x"}}, "base_url"),
        ({"vivix": {"base_url": "ftp://x"}}, "base_url"),
        ({"vivix": {**BASE, "poll_s": 0}}, "poll_s"),
        ({"vivix": {**BASE, "max_jobs": 0}}, "max_jobs"),
        ({"vivix": {**BASE, "markup": "lots"}}, "GENQ_UPSTREAMS.vivix"),
        ({"vivix": "https://x"}, "expected an object"),
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(
    config: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        Gateway(config)


def test_the_breaker_opens_after_consecutive_failures_and_half_opens() -> None:
    b = Breaker(failures=3, cooldown_s=0.2)
    for _ in range(2):
        b.record(False)
    b.record(True)  # a success in between: the count starts again
    assert b.state == "closed"
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert b.state == "open" and not b.allow() and b.opened == 1
    time.sleep(0.25)
    assert b.state == "half_open"
    assert b.allow()  # one trial call
    assert not b.allow()  # and only one
    b.record(False)  # it failed: open again
    assert b.state == "open" and b.opened == 1
    time.sleep(0.25)
    assert b.allow()
    b.record(True)
    assert b.state == "closed" and b.failures == 0


def test_backoff_grows_and_never_comes_before_retry_after() -> None:
    delays = [backoff(5.0, n, None) for n in range(1, 6)]
    assert all(
        0.8 * 5 * 2**n <= d <= 1.2 * 5 * 2**n for n, d in zip(range(1, 6), delays, strict=True)
    )
    assert backoff(5.0, 30, None) <= 300 * 1.2
    for _ in range(50):
        assert backoff(0.3, 1, 7.0) >= 7.0


async def test_rate_limit_is_counted_per_minute() -> None:
    gw = Gateway({"vivix": {**BASE, "rate_per_min": 3}, "photogpt": dict(BASE)})
    up = gw.upstreams["vivix"]
    assert [await gw.rates.wait_s(up) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert 59 < await gw.rates.wait_s(up) <= 60
    # a provider without a documented limit is not counted
    assert {await gw.rates.wait_s(gw.upstreams["photogpt"]) for _ in range(500)} == {0.0}


def test_callback_tokens_are_per_job_stable_and_secret_bound() -> None:
    a, b = Gateway({}), Gateway({})
    a.set_secret(b"one secret")
    b.set_secret(b"another secret")
    assert a.callback_token("job_1") == a.callback_token("job_1")
    assert a.callback_token("job_1") != a.callback_token("job_2")
    assert a.callback_token("job_1") != b.callback_token("job_1")
    assert len(a.callback_token("job_1")) >= 40


def test_stored_keys_are_encrypted_and_bound_to_the_secret() -> None:
    a, b = Gateway({}), Gateway({})
    a.set_secret(b"one secret")
    b.set_secret(b"another secret")
    sealed = a.encrypt("sk_live_secret_1234")
    assert "sk_live" not in sealed and "1234" not in sealed
    assert a.decrypt(sealed) == "sk_live_secret_1234"
    with pytest.raises(Exception, match="cannot be read"):
        b.decrypt(sealed)
