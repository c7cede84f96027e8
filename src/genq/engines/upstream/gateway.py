"""The gateway: `GENQ_UPSTREAMS` read into providers and their engines, and what every
upstream call shares (the HTTP client, keys, each provider's circuit breaker and rate
limit, and counters for `GET /v1/upstreams`).

    GENQ_UPSTREAMS='{"masterpiecex": {"base_url": "https://api.genai.masterpiecex.com/v2",
                                      "api_key": "...", "poll_s": 10}}'

Per provider: `base_url` (required), `api_key` (the server's key; without one only
accounts that brought their own can use the provider), and optionally `poll_s`
(default: the provider's documented cadence), `markup` (genq credits per provider
credit, default 1), `prices` (`{what: credits}`, overriding), `max_jobs` (jobs in
flight at once), `rate_per_min` (calls per minute, polls included), `idempotent`
(true only when the service honours `Idempotency-Key`, as another genq does: then a
create whose answer was lost is sent again with the same key instead of failing
`upstream_unknown`), `callbacks` (false to poll even where the service can push),
`safety_poll_s` (with callbacks: how often to read the status all the same, default
max(60, 4 x poll_s)), `adopt_s` (with callbacks and not `idempotent`: how long a create
whose answer was lost waits for the service's push to adopt the job it made, default
900), `breaker_failures` / `breaker_cooldown_s`, `max_failures`
(failed polls in a row before a job fails `upstream_unavailable`), `timeout_s` (one
HTTP call), `job_timeout_s`; anything else is the provider module's own (e.g.
useapi's `discord`, `channel`, replicate's `models`).

When the server starts, each provider with a server key may learn what its service
publishes about its engines (`Provider.discover`, e.g. Replicate's input schemas), in
the background and again every `DISCOVER_RETRY_S` while the service does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coredis
import httpx
from cryptography.fernet import Fernet, InvalidToken
from limits import RateLimitItem, RateLimitItemPerMinute, strategies
from limits.aio import strategies as aio_strategies
from limits.aio.storage import Storage as AsyncStorage
from limits.storage import MemoryStorage, storage_from_string
from pydantic import BaseModel

from genq.engines.contract import EngineBase
from genq.engines.upstream import PROVIDERS, provider_class
from genq.engines.upstream.base import (
    RATE_LIMITED,
    UNAUTHORIZED,
    UNAVAILABLE,
    EngineSpec,
    Provider,
    UpstreamError,
    price_of,
)
from genq.engines.upstream.call import HttpCall
from genq.errors import ConfigError
from genq.ids import utcnow
from genq.telemetry import logs

log = logging.getLogger(__name__)


DISCOVER_RETRY_S = 30.0  # an upstream's discovery is tried again this often until it answers


@dataclass
class Upstream:
    """One configured provider and its shared state."""

    provider: Provider
    base_url: str
    api_key: str  # "" when only accounts' own keys are used
    poll_s: float | None
    markup: float
    prices: dict[str, int]
    max_jobs: int
    rate_per_min: int | None
    idempotent: bool
    callbacks: bool
    breaker: Breaker
    max_failures: int
    timeout_s: float
    job_timeout_s: float
    safety_poll_s: float | None = None  # with callbacks: the status read's cadence
    adopt_s: float = 900.0  # with callbacks: how long an unconfirmed create waits for a push
    calls: deque[tuple[float, bool]] = field(default_factory=lambda: deque(maxlen=2000))
    polls: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    @property
    def name(self) -> str:
        return self.provider.name

    def cadence(self, spec: EngineSpec) -> float:
        """The configured or documented polling cadence (and the base of backoffs)."""
        return self.poll_s if self.poll_s is not None else spec.poll_s

    def poll_every(self, spec: EngineSpec) -> float:
        """Seconds between status reads: the configured or documented cadence; where
        the service pushes results, only a rare safety net."""
        base = self.cadence(spec)
        if self.callbacks:
            return self.safety_poll_s if self.safety_poll_s is not None else max(60.0, 4 * base)
        return base

    def record(self, good: bool) -> None:
        self.calls.append((time.monotonic(), good))
        self.breaker.record(good)

    def error_rate(self, span_s: float = 300.0) -> tuple[int, float]:
        since = time.monotonic() - span_s
        recent = [ok for t, ok in self.calls if t >= since]
        if not recent:
            return 0, 0.0
        return len(recent), round(1 - sum(recent) / len(recent), 4)

    def poll_rate(self, span_s: float = 60.0) -> float:
        since = time.monotonic() - span_s
        return round(sum(1 for t in self.polls if t >= since) / span_s, 4)


class Rates:
    """Each provider's calls per minute (`rate_per_min`), counted with `limits`' moving
    window: in this process, or in Redis when `GENQ_REDIS_URL` is set, so that every
    genq process on it shares the provider's one budget."""

    def __init__(self, redis_url: str = "") -> None:
        self._pool = coredis.ConnectionPool.from_url(redis_url) if redis_url else None
        self._items: dict[int, RateLimitItem] = {}
        self._shared: aio_strategies.MovingWindowRateLimiter | None = None
        self._local: strategies.MovingWindowRateLimiter | None = None
        if redis_url:
            options: dict[str, Any] = {"key_prefix": "genq", "connection_pool": self._pool}
            storage = storage_from_string("async+" + redis_url, **options)
            assert isinstance(storage, AsyncStorage)
            self._shared = aio_strategies.MovingWindowRateLimiter(storage)
        else:
            self._local = strategies.MovingWindowRateLimiter(MemoryStorage())

    async def wait_s(self, up: Upstream) -> float:
        """Count one call to `up`: 0 when it fits its rate, else seconds until one
        would (not counted)."""
        if up.rate_per_min is None:
            return 0.0
        item = self._items.get(up.rate_per_min)
        if item is None:
            item = self._items[up.rate_per_min] = RateLimitItemPerMinute(up.rate_per_min)
        if self._local is not None:
            if self._local.hit(item, "upstream", up.name):
                return 0.0
            stats = self._local.get_window_stats(item, "upstream", up.name)
        else:
            assert self._shared is not None
            if await self._shared.hit(item, "upstream", up.name):
                return 0.0
            stats = await self._shared.get_window_stats(item, "upstream", up.name)
        return max(0.05, stats.reset_time - time.time())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()


class Breaker:
    """Consecutive failures open it; after `cooldown_s` one call may try (half-open);
    a success closes it."""

    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trying = False
        self.opened = 0  # times it opened (for the status page and tests)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.trying:
            self.trying = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - time.monotonic())

    def record(self, good: bool) -> None:
        self.trying = False
        if good:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        closed = self.opened_at is None
        if self.failures >= self.threshold and (closed or self.state == "half_open"):
            self.opened += closed
            self.opened_at = time.monotonic()


@dataclass(frozen=True, slots=True)
class UpstreamInfo:
    provider: str
    base_url: str
    what: str


class UpstreamEngine(EngineBase):
    """An engine whose jobs run at an upstream service. The worker does not call
    `run`: it hands the job to `genq.engines.upstream.tracker.UpstreamRun`."""

    upstream: UpstreamInfo
    spec: EngineSpec
    # (Cog) the concurrency as it is now, read by the worker before each claim
    live_concurrency: Callable[[], int] | None = None

    def __init__(self, up: Upstream, spec: EngineSpec) -> None:
        self.name = f"{up.name}/{spec.what}"  # type: ignore[misc]
        self.task = spec.task  # type: ignore[misc]
        self.input_model = spec.input_model  # type: ignore[misc]
        self.media = spec.media  # type: ignore[misc]
        self.description = f"{spec.description} (runs at {up.provider.title})"  # type: ignore[misc]
        self.price = up.prices.get(spec.what) or price_of(spec.cost, up.markup, 1)  # type: ignore[misc]
        self.typical_duration_s = spec.typical_duration_s  # type: ignore[misc]
        self.concurrency = up.max_jobs  # type: ignore[misc]
        self.timeout_s = up.job_timeout_s  # type: ignore[misc]
        self.upstream = UpstreamInfo(up.name, up.base_url, spec.what)
        self.spec = spec
        self.live_concurrency = up.provider.live_concurrency(spec.what)

    def estimate(self, data: BaseModel) -> int:
        return self.price

    def run(self, ctx: Any) -> None:
        raise RuntimeError(f"{self.name} runs upstream: the worker parks it, never runs it")


def parse(config: dict[str, Any]) -> dict[str, Upstream]:
    out: dict[str, Upstream] = {}
    for name, raw in config.items():
        if name not in PROVIDERS:
            raise ConfigError(
                f"GENQ_UPSTREAMS: unknown provider {name!r} (known: {', '.join(sorted(PROVIDERS))})"
            )
        if not isinstance(raw, dict):
            raise ConfigError(f"GENQ_UPSTREAMS.{name}: expected an object")
        base_url = str(raw.get("base_url") or "").rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"GENQ_UPSTREAMS.{name}.base_url: an http(s) URL is required")
        cls = provider_class(name)
        # the module gets every option but the key (its own, and the shared ones it may
        # read, like max_jobs)
        options = {k: v for k, v in raw.items() if k != "api_key"}
        provider = cls(options)
        try:
            prices = {str(k): int(v) for k, v in (raw.get("prices") or {}).items()}
            up = Upstream(
                provider=provider,
                base_url=base_url,
                api_key=str(raw.get("api_key") or ""),
                poll_s=float(raw["poll_s"]) if raw.get("poll_s") is not None else None,
                markup=float(raw.get("markup", 1.0)),
                prices=prices,
                max_jobs=int(
                    raw["max_jobs"] if raw.get("max_jobs") is not None else cls.default_max_jobs
                ),
                rate_per_min=(
                    int(raw["rate_per_min"])
                    if raw.get("rate_per_min") is not None
                    else cls.default_rate_per_min
                ),
                idempotent=bool(raw.get("idempotent", False)),
                callbacks=bool(raw.get("callbacks", cls.callbacks)) and cls.callbacks,
                breaker=Breaker(
                    int(raw.get("breaker_failures", 5)), float(raw.get("breaker_cooldown_s", 30))
                ),
                max_failures=int(raw.get("max_failures", 10)),
                timeout_s=float(raw.get("timeout_s", 60)),
                job_timeout_s=float(raw.get("job_timeout_s", 6 * 3600)),
                adopt_s=float(raw.get("adopt_s", 900)),
                safety_poll_s=(
                    float(raw["safety_poll_s"]) if raw.get("safety_poll_s") is not None else None
                ),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"GENQ_UPSTREAMS.{name}: {exc}") from exc
        if up.poll_s is not None and up.poll_s <= 0:
            raise ConfigError(f"GENQ_UPSTREAMS.{name}.poll_s must be positive")
        if up.max_jobs < 1:
            raise ConfigError(f"GENQ_UPSTREAMS.{name}.max_jobs must be at least 1")
        out[name] = up
    return out


KeyLookup = Callable[[str, str], Awaitable[str | None]]  # (account id, provider) -> key


class Gateway:
    """The configured upstreams, their engines, and how a job's calls are made."""

    def __init__(self, config: dict[str, Any], *, redis_url: str = "") -> None:
        self.upstreams = parse(config)
        self.rates = Rates(redis_url if self.upstreams else "")
        self.engines: dict[str, UpstreamEngine] = {}
        for up in self.upstreams.values():
            for spec in up.provider.engines():
                engine = UpstreamEngine(up, spec)
                self.engines[engine.name] = engine
        self._client: httpx.AsyncClient | None = None
        self._fernet: Fernet | None = None
        self._callbacks = b""
        self.account_key: KeyLookup | None = None  # set by Genq (decrypting stored keys)
        self._discovery: asyncio.Task[None] | None = None
        self.discover_retry_s = DISCOVER_RETRY_S
        # told of each call: (provider, HTTP status or None, seconds) (genq.telemetry.metrics)
        self.observe: Callable[[str, int | None, float], None] | None = None
        # (Cog) a pushed end is not replaced by a push that arrives after it
        ordered = [up.provider for up in self.upstreams.values() if up.provider.ordered_pushes]
        self.final_push: Callable[[Any], bool] | None = None
        if ordered:
            self.final_push = lambda body: any(p.final_push(body) for p in ordered)

    def __bool__(self) -> bool:
        return bool(self.upstreams)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=True,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        return self._client

    def start_discovery(self) -> None:
        """Let each provider learn what its service publishes about its engines
        (`Provider.discover`, e.g. Replicate's input schemas), in the background: an
        upstream that is down does not hold the server up, and is asked again every
        `discover_retry_s` until it has answered for every engine."""
        if self.upstreams and self._discovery is None:
            self._discovery = asyncio.create_task(self._discover(), name="genq-upstream-discovery")

    async def _discover(self) -> None:
        pending = {n: up for n, up in self.upstreams.items() if up.api_key}
        while pending:
            for name, up in list(pending.items()):
                try:
                    missing = await up.provider.discover(self.call(up, up.api_key))
                except UpstreamError as exc:
                    log.warning("%s: discovery failed: %s", up.provider.title, exc.message)
                    continue
                except Exception:
                    log.exception("%s: discovery crashed", up.provider.title)
                    pending.pop(name)
                    continue
                if missing == 0:
                    pending.pop(name)
            if pending:
                await asyncio.sleep(self.discover_retry_s)

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
            self._discovery = None
        for up in self.upstreams.values():
            await up.provider.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.rates.close()

    # -- keys -----------------------------------------------------------------------------

    def set_secret(self, secret: bytes) -> None:
        """The server secret that encrypts accounts' keys at rest and makes the
        callback tokens."""
        digest = hashlib.sha256(b"genq upstream keys\x00" + secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._callbacks = hashlib.sha256(b"genq upstream callbacks\x00" + secret).digest()

    def callback_token(self, job_id: str) -> str:
        """The job's callback token: unguessable without the server secret, and the
        same in every process and after a restart (a create sent again after a crash
        must be the same request, callback URL included)."""
        assert self._callbacks, "set_secret first"
        mac = hmac.new(self._callbacks, job_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def encrypt(self, api_key: str) -> str:
        assert self._fernet is not None, "set_secret first"
        return self._fernet.encrypt(api_key.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        assert self._fernet is not None, "set_secret first"
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise UpstreamError(
                UNAUTHORIZED,
                "the account's stored key cannot be read with this server's secret key"
                " (GENQ_SECRET_KEY changed?): store it again",
            ) from exc

    async def key_for(self, up: Upstream, account_id: str) -> tuple[str, bool]:
        """The key a job of `account_id` uses at `up`: the account's own, else the
        server's; (key, is the account's own)."""
        if self.account_key is not None:
            own = await self.account_key(account_id, up.name)
            if own:
                logs.know_secrets(own)  # the log redacts it, whatever quotes it
                return own, True
        if up.api_key:
            return up.api_key, False
        raise UpstreamError(
            UNAUTHORIZED,
            f"no {up.provider.title} key: the server has none configured and the account"
            f" has not stored one (PUT /v1/account/upstreams/{up.name})",
        )

    # -- calls ----------------------------------------------------------------------------

    def call(
        self,
        up: Upstream,
        api_key: str,
        *,
        input_path: Callable[[str], Path] | None = None,
        model_artifact: Path | None = None,
        poll: bool = False,
    ) -> HttpCall:
        async def gate() -> None:
            if not up.breaker.allow():
                raise UpstreamError(
                    UNAVAILABLE,
                    f"{up.provider.title} is failing: calls are paused for"
                    f" {up.breaker.retry_in():.0f} s (circuit open)",
                    retry_after=up.breaker.retry_in(),
                )
            wait = await self.rates.wait_s(up)
            if wait > 0:
                raise UpstreamError(
                    RATE_LIMITED,
                    f"over the {up.rate_per_min} calls a minute {up.provider.title} allows",
                    retry_after=wait,
                )
            if poll:
                up.polls.append(time.monotonic())

        kwargs: dict[str, Any] = {}
        if input_path is not None:
            kwargs["input_path"] = input_path
        return HttpCall(
            up.provider,
            self.client,
            up.base_url,
            api_key,
            model_artifact=model_artifact,
            gate=gate,
            outcome=up.record,
            timeout_s=up.timeout_s,
            observe=functools.partial(self.observe, up.name) if self.observe else None,
            **kwargs,
        )

    def describe(self, up: Upstream, counts: dict[str, int] | None = None) -> dict[str, Any]:
        calls, error_rate = up.error_rate()
        n = counts or {}
        return {
            "provider": up.name,
            "title": up.provider.title,
            "base_url": up.base_url,
            "engines": sorted(n for n, e in self.engines.items() if e.upstream.provider == up.name),
            "state": up.breaker.state,
            "breaker": {
                "consecutive_failures": up.breaker.failures,
                "opened": up.breaker.opened,
                "retry_in_s": round(up.breaker.retry_in(), 1),
            },
            "in_flight": n.get("tracking", 0) + n.get("intent", 0),
            "tracked_total": sum(n.get(k, 0) for k in ("intent", "tracking", "done")),
            "status_polls": n.get("polls", 0),
            "recent_calls": calls,
            "recent_error_rate": error_rate,
            "poll_rate_per_s": up.poll_rate(),
            "callbacks": up.callbacks,
            "idempotent": up.idempotent,
            "max_jobs": up.max_jobs,
            "rate_per_min": up.rate_per_min,
            "server_key": bool(up.api_key),
            "checked_at": utcnow().isoformat(),
        }
