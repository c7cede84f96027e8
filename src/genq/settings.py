"""All of genq's configuration in one object: environment `GENQ_*`, then defaults.

Nothing reads the environment at import: build a `Settings()` (or pass values) in
`create_app`, the CLI or a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from genq.plans import Plan, merge


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENQ_", extra="ignore")

    data_dir: Path = Field(Path(".genq"), description="SQLite file, outputs and uploads live here")
    database_url: str = Field("", description="SQLAlchemy URL; default SQLite in data_dir")
    db_pool_size: int = Field(
        10, ge=1, description="PostgreSQL: connections (and threads) each process keeps"
    )
    db_readers: int = Field(4, ge=1, description="SQLite: read connections (one writer besides)")
    pg_event_poll_s: float = Field(
        2.0, gt=0, description="PostgreSQL: the event log's safety-net poll (LISTEN does the rest)"
    )
    public_url: str = Field("", description="Base URL used in links; default http(s)://HOST:PORT")
    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: str = Field(
        "", description="Serve HTTPS with this PEM certificate (chain) file; with ssl_keyfile"
    )
    ssl_keyfile: str = Field("", description="The private key (PEM) of ssl_certfile")
    engines: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="extra engines: comma-separated `module:attr` import paths",
    )
    worker_slots: int = Field(4, ge=1, description="jobs one worker process runs at once")
    lease_s: float = Field(30.0, gt=0, description="a claim's lease; renewed every lease_s/3")
    reaper_interval_s: float = Field(5.0, gt=0)
    max_attempts: int = Field(3, ge=1, description="runs of a job before worker_lost fails it")
    poll_interval_s: float = Field(
        1.0, gt=0, description="how often an idle worker looks for work from other processes"
    )
    event_poll_s: float = Field(
        0.05,
        gt=0,
        description="SQLite: how often an idle process looks for other processes' commits",
    )
    job_cache_bytes: int = Field(
        64 << 20, ge=0, description="memory for serialized job bodies (the status cache)"
    )
    cancel_grace_s: float = Field(10.0, ge=0, description="how long a canceled engine may run on")
    shutdown_grace_s: float = Field(20.0, ge=0, description="SIGTERM: finish in-flight jobs")
    sse_keepalive_s: float = Field(15.0, gt=0, description="comment line on idle SSE streams")
    max_json_bytes: int = Field(1 << 20, description="largest JSON request body")
    max_upload_bytes: int = Field(64 << 20, description="largest uploaded file")
    metrics_token: str | None = Field(
        None, description="when set, /metrics wants `Authorization: Bearer <token>`"
    )
    body_grace_s: float = Field(
        10.0,
        gt=0,
        description="seconds a request body may take before it must keep up 16 KiB/s (else 408)",
    )
    sweep_interval_s: float = Field(60.0, gt=0, description="how often expired jobs are swept")
    key_cache_s: float = Field(30.0, ge=0, description="how long a verified API key is trusted")
    webhook_allow_private: bool = Field(
        False, description="let webhooks reach private addresses (development only)"
    )
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0],
        description="delays between webhook attempts (jittered +-20%), comma-separated",
    )
    webhook_timeout_s: float = Field(
        15.0, gt=0, description="how long one webhook attempt may take before it fails"
    )
    plans: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="JSON: plan overrides and additions (genq.plans)"
    )
    idempotency_ttl_s: float = Field(86400.0, gt=0, description="Idempotency-Key lifetime")
    idempotency_lease_s: float = Field(
        10.0,
        gt=0,
        description="how soon a key whose request died with its process can be retried",
    )
    compat_engines: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: compat face routes to engines, e.g. {"vivix:model:NAME": "demo/x"}',
    )
    upstreams: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: upstream providers genq drives, e.g. {"vivix": {"base_url": ...,'
        ' "api_key": ...}} (see genq.engines.upstream.gateway)',
    )
    upstream_lease_s: float = Field(
        60.0, gt=0, description="a poll's lease on an upstream job (another process takes over)"
    )
    upstream_tick_s: float = Field(
        1.0, gt=0, description="how often the tracker looks for upstream jobs due a poll"
    )
    upstream_concurrency: int = Field(
        64, ge=1, description="upstream status reads (and output copies) one process runs at once"
    )
    admin_accounts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="names of accounts whose keys are admin keys (GET /v1/upstreams)",
    )
    redis_url: str = Field("", description="redis://... shares rate-limit counts across servers")
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="signs the URLs the server hands out (Masterpiece X uploads); default: a"
        " key generated once and kept in the database",
    )
    log_level: str = "info"
    access_log: bool = Field(
        False, description="genq serve: log every request (uvicorn's access log; costly)"
    )
    # -- logs: format, job context, redaction (genq.telemetry.logs) --
    log_format: Annotated[Literal["plain", "json"], BeforeValidator(str.lower)] = Field(
        "plain",
        description="plain (a terminal) or json (one object per line, for a log collector)",
    )
    # -- issue 15: diffusers engines (genq.engines.diffusers) --
    diffusers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: diffusers engines, e.g. {"sd/text2image": {"task": "text2image",'
        ' "model": "<hub id or dir>", "dtype": "float16", "device": "cuda"}}'
        " (see genq.engines.diffusers)",
    )
    gpu_memory_gb: float | None = Field(
        None,
        gt=0,
        description="memory the loaded pipelines of one worker may use (GB): CUDA memory on a"
        " GPU, process RSS on the CPU; past it the least recently used is unloaded",
    )
    hf_offline: bool = Field(
        False, description="load models only from the local Hugging Face cache (HF_HUB_OFFLINE)"
    )
    # -- object storage (issue 16: storage) --
    storage_url: str = Field(
        "",
        description="where outputs and uploads go: file:///path or s3://bucket/prefix;"
        " default: the data dir",
    )
    s3_endpoint_url: str = Field(
        "", description="an S3-compatible endpoint (MinIO, SeaweedFS, R2); default: AWS"
    )
    storage_url_ttl_s: int = Field(
        3600, ge=1, description="how long a presigned download URL (the 307's target) is valid"
    )
    storage_proxy: bool = Field(
        False, description="with s3://, stream downloads through genq instead of redirecting"
    )
    # -- tracing (genq.telemetry.tracing): on when OTEL_EXPORTER_OTLP_ENDPOINT is set --
    trace_reads: bool = Field(
        False,
        description="with tracing on, server spans for the polled status reads too (GET"
        " /v1/jobs/{id}, its event stream, the compat faces' status reads); off, they"
        " stay out of traces and cost nothing",
    )
    trace_db: bool = Field(
        True,
        description="with tracing on, a span per store operation (db.read, db.write) in"
        " traced requests and jobs",
    )
    # -- metrics (Prometheus; genq.telemetry.metrics) --
    metrics_http: bool = Field(
        True, description="measure every HTTP request (genq_http_request_duration_seconds)"
    )
    metrics_query_s: float = Field(
        15.0,
        gt=0,
        description="how often the numbers memory does not hold (credits held) are read"
        " from the database for /metrics (in the background while somebody scrapes,"
        " never per scrape)",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="genq worker: serve /metrics on this port (the API serves its own)",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="genq worker: the address --metrics-port listens on"
    )

    # -- Cog models as engines (issue 15, genq.engines.upstream.cog) --
    cog: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='JSON: Cog servers as engines, e.g. {"acme/echo": {"url": "http://127.0.0.1:5000"}}'
        ' or {"acme/sd": {"urls": [...]}} for a fleet (see genq.engines.upstream.cog)',
    )

    @field_validator("engines", "webhook_retry_schedule_s", "admin_accounts", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together: give both or neither")
        return self

    @property
    def plan_table(self) -> dict[str, Plan]:
        return merge(self.plans)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'genq.db'}"

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
