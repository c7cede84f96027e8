"""`Genq`: the assembled service layer (store, storage, engines, bus, services, worker)
that the API, the CLI and the tests drive. Built from `Settings`; nothing at import."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Mapping

from genq.accounts import AccountService
from genq.engines.contract import Engine
from genq.engines.diffusers import engines as diffusers_engines
from genq.engines.registry import load_engines
from genq.engines.upstream.cog import with_cog
from genq.engines.upstream.gateway import Gateway
from genq.engines.upstream.tracker import Tracker
from genq.events import EventBus, PgFollower, SqliteFollower
from genq.files import FileService
from genq.idempotency import Idempotency
from genq.ids import token, utcnow
from genq.jobs import JobService, Sweeper
from genq.migrate import upgrade_async
from genq.models import ModelService
from genq.ratelimits import Holds, RateLimiter
from genq.settings import Settings
from genq.storage import storage_for
from genq.store import Store
from genq.telemetry import tracing
from genq.telemetry.metrics import Metrics
from genq.webhooks import WebhookSender
from genq.worker import Worker

log = logging.getLogger(__name__)


class Genq:
    def __init__(self, settings: Settings, *, engines: Mapping[str, Engine] | None = None) -> None:
        self.settings = settings
        tracing.setup()  # once per process, if OTEL_EXPORTER_OTLP_ENDPOINT asks for it
        self._secrets: dict[str, bytes] = {}
        self.engines = dict(engines) if engines is not None else load_engines(settings.engines)
        # upstream providers (GENQ_UPSTREAMS) add their engines
        # (Cog servers, GENQ_COG, are one more upstream: genq.engines.upstream.cog)
        upstreams = with_cog(settings.upstreams, settings.cog)
        self.gateway = Gateway(upstreams, redis_url=settings.redis_url)
        self.gateway.account_key = self._account_key
        self.engines.update(self.gateway.engines)
        # models on this host's GPUs/CPU (GENQ_DIFFUSERS; torch is imported only by a job)
        self.engines.update(
            diffusers_engines(
                settings.diffusers, memory_gb=settings.gpu_memory_gb, hf_offline=settings.hf_offline
            )
        )
        self.tracker: Tracker | None = None
        self.store = Store(
            settings.db_url, pool_size=settings.db_pool_size, readers=settings.db_readers
        )
        self.storage = storage_for(
            settings.storage_url, settings.data_dir, settings.s3_endpoint_url
        )
        self.bus = EventBus()
        self.metrics = Metrics(settings.metrics_query_s)
        self.follower: SqliteFollower | PgFollower
        if self.store.db.is_postgres:
            self.follower = PgFollower(self.store, self.bus, poll_s=settings.pg_event_poll_s)
        else:
            self.follower = SqliteFollower(self.store, self.bus, settings.event_poll_s)
        self.plans = settings.plan_table
        self.limiter = RateLimiter(self.plans, settings.redis_url)
        self.holds = Holds(self.plans)
        self.accounts = AccountService(self.store, self.plans, cache_s=settings.key_cache_s)
        self.jobs = JobService(
            store=self.store,
            storage=self.storage,
            engines=self.engines,
            bus=self.bus,
            settings=settings,
        )
        self.files = FileService(
            store=self.store, storage=self.storage, max_bytes=settings.max_upload_bytes
        )
        self.models = ModelService(store=self.store, jobs=self.jobs)
        self.idempotency = Idempotency(
            self.store, settings.idempotency_ttl_s, settings.idempotency_lease_s
        )
        self.sweeper = Sweeper(self.jobs, settings.sweep_interval_s)
        self.worker: Worker | None = None
        self.serves_reads = True  # `genq worker` sets False: no HTTP reads in that process
        self.webhooks = WebhookSender(
            store=self.store,
            jobs=self.jobs,
            bus=self.bus,
            allow_private=settings.webhook_allow_private,
            schedule=settings.webhook_retry_schedule_s,
            timeout_s=settings.webhook_timeout_s,
        )
        tracing.instrument_core(self)
        self.metrics.bind(self)

    def make_worker(
        self, engine_names: list[str] | None = None, slots: int | None = None
    ) -> Worker:
        engines = {n: e for n, e in self.engines.items() if not engine_names or n in engine_names}
        return Worker(
            store=self.store,
            storage=self.storage,
            engines=engines,
            bus=self.bus,
            board=self.jobs.board,
            publish=self.jobs.publish,
            settings=self.settings,
            resolver=self.jobs.resolver,
            slots=slots,
            gateway=self.gateway,
            callback_url=self.callback_url,
        )

    def callback_url(self, job_id: str, token: str) -> str:
        """Where an upstream service pushes a job's result (useapi's replyUrl)."""
        return f"{self.settings.base_url}/v1/upstreams/callbacks/{job_id}/{token}"

    async def _account_key(self, account_id: str, provider: str) -> str | None:
        stored = await self.store.upstream.get_key(account_id, provider)
        return self.gateway.decrypt(stored[0]) if stored else None

    async def start(
        self,
        *,
        workers: bool = True,
        migrate: bool = True,
        engine_names: list[str] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()  # the loop it runs on (for other threads)
        if migrate:
            await upgrade_async(self.settings.db_url)
        if isinstance(self.follower, PgFollower):
            # rows in notifications are for the body cache of a process that serves reads
            self.follower.rows = self.serves_reads
        await self.follower.start()
        await self.jobs.start()
        await self.webhooks.start()
        await self.sweeper.start()
        await self.metrics.start()
        if self.gateway:
            self.gateway.set_secret(await self.secret("upstream-keys"))
            self.gateway.start_discovery()
        if workers:
            self.worker = self.make_worker(engine_names)
            await self.worker.start()
            if self.gateway:
                self.tracker = Tracker(
                    gateway=self.gateway,
                    store=self.store,
                    storage=self.storage,
                    publish=self.jobs.publish,
                    resolver=self.jobs.resolver,
                    owner=self.worker.owner,
                    callback_url=self.callback_url,
                    lease_s=self.settings.upstream_lease_s,
                    tick_s=self.settings.upstream_tick_s,
                    concurrency=self.settings.upstream_concurrency,
                )
                await self.tracker.start()

    async def secret(self, name: str) -> bytes:
        """The server's signing key for `name` (one per use, never an account's secret):
        derived from `settings.secret_key` (`GENQ_SECRET_KEY`) when set, else made on
        first use and kept in the database, so every process on it (and every restart)
        signs and verifies alike. Cached in the process."""
        found = self._secrets.get(name)
        if found is None:
            master = self.settings.secret_key.get_secret_value()
            if master:
                found = hmac.new(master.encode(), name.encode(), hashlib.sha256).digest()
            else:
                stored = await self.store.secrets.get_or_create(name, token(32), utcnow())
                found = stored.encode()
            self._secrets[name] = found
        return found

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.store.ping()

    async def stop(self) -> None:
        if self.tracker is not None:
            await self.tracker.stop()
            self.tracker = None
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        await self.sweeper.stop()
        await self.metrics.stop()
        await self.webhooks.stop()
        await self.follower.stop()
        await self.store.close()
        await self.gateway.close()
        self.limiter.close()
        if tracing.ON:  # an export is a blocking POST
            await asyncio.to_thread(tracing.flush)
