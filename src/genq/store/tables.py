"""The schema: SQLAlchemy Core tables. Alembic migrations must produce exactly this
(tests/integration/test_migrations.py proves it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL answers in the session's time zone: always hand back UTC
        return value.astimezone(UTC)


JSON: sa.types.TypeEngine[Any] = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("plan", sa.String(40), nullable=False, server_default="free"),
    sa.Column("webhook_secret", sa.String(80), nullable=True),
    # credits available, apart from those in `credit_unfolded`
    sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("balance >= 0", name="balance_not_negative"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("engine", sa.String(100), nullable=False),
    sa.Column("task", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("input", JSON, nullable=False),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("webhook", JSON, nullable=True),
    sa.Column("error_code", sa.String(40), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("error_retryable", sa.Boolean(), nullable=True),
    sa.Column("credits_estimate", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("credits_used", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("credits_refunded", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("parent_id", sa.String(40), nullable=True),
    sa.Column("model_id", sa.String(40), nullable=True),
    sa.Column("seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(80), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
    # the most jobs of this account that may run at once (its plan's, at submission)
    sa.Column("account_limit", sa.Integer(), nullable=False, server_default="1000000"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("trace_context", sa.String(64), nullable=True),
    # the claim: oldest queued job of an engine first
    sa.Index("ix_jobs_status_engine_created", "status", "engine", "created_at"),
    # listing an account's jobs newest first, keyset pagination on (created_at, id)
    sa.Index("ix_jobs_account_created", "account_id", "created_at", "id"),
    sa.Index("ix_jobs_lease", "status", "lease_expires_at"),
    sa.Index("ix_jobs_expires", "expires_at"),
    # an account's jobs of one status (running counts of the claim; a filtered list)
    sa.Index("ix_jobs_account_status_created", "account_id", "status", "created_at", "id"),
)

job_outputs = sa.Table(
    "job_outputs",
    metadata,
    sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("bytes", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),  # relative to the storage root; public URL too
    sa.Column("meta", JSON, nullable=False),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("job_id", "seq"),
    sa.Index("ix_job_events_account_id", "account_id", "id"),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("bytes", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=True),
    sa.Column("model_id", sa.String(40), nullable=True, index=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False, index=True
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("engine", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("job_id", sa.String(40), nullable=True),
    sa.Column("artifact", sa.Text(), nullable=True),  # storage path of the trained weights
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# The webhook outbox: one row per (job event, endpoint), written in the same transaction
# as the change it reports; `id` is the Standard Webhooks `webhook-id`, stable across
# retries; `leased_until` is a sender's lease while an attempt is in flight.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "job_id",
        sa.String(40),
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("account_id", sa.String(40), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, delivered, failed, disabled
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("leased_until", UTCDateTime(), nullable=True),  # a sender has it in flight
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.String(40),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
)

# Append-only credits ledger. Per job: one `hold` (the estimate, at submission), then
# one `capture` (what the job cost) and one `release` (the rest), or one `release` of
# everything; the unique (job_id, kind) makes a job that runs twice cost once.
# `grant`/`adjust` rows (no job) add or remove credits by hand.
credit_ledger = sa.Table(
    "credit_ledger",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("job_id", sa.String(40), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),  # credits moved, >= 0
    # the account's balance after a hold, grant or adjust (settlements are folded later)
    sa.Column("balance_after", sa.BigInteger(), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("job_id", "kind"),
    sa.Index("ix_credit_ledger_account_id", "account_id", "id"),
)

# Credits a settlement gave back (a job's released hold), not yet added to
# `accounts.balance`: settling a job appends here instead of rewriting the account's row,
# and a batch fold moves them into the balance (`genq.store.jobs`). An account's
# available credits are its balance plus its rows here.
credit_unfolded = sa.Table(
    "credit_unfolded",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_credit_unfolded_account_id", "account_id"),
)

# Idempotency-Key records, scoped to an account: the first response is kept and
# replayed byte for byte to a retry with the same key and body.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # in_flight, done
    sa.Column("resource_id", sa.String(40), nullable=True),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("headers", JSON, nullable=True),
    sa.Column("body", sa.LargeBinary(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    # the in-flight request's token (fences what it creates) and its renewed lease
    sa.Column("token", sa.String(32), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
)

# Keys the server signs with (named per use, e.g. Masterpiece X upload URLs): made on
# first use by whichever process needs one first, then shared by every process.
server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# genq as a gateway: a job handed to an upstream service is tracked here (one row per
# job, made when the create call is about to go out: the intent), claimed for one poll
# at a time with a lease, so exactly one process polls it
upstream_jobs = sa.Table(
    "upstream_jobs",
    metadata,
    sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("provider", sa.String(40), nullable=False),
    # intent (create call about to go out or out), tracking (upstream id known), done
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("upstream_id", sa.String(200), nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=False),  # sha256 of the callback token
    sa.Column("byo", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("owner", sa.String(80), nullable=True),
    sa.Column("leased_until", UTCDateTime(), nullable=True),
    sa.Column("next_poll_at", UTCDateTime(), nullable=False),
    sa.Column("polls", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("pushed", JSON, nullable=True),  # a callback's body, not yet read
    sa.Column("upstream_status", sa.String(40), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_upstream_jobs_state_next_poll_at", "state", "next_poll_at"),
)

# an account's own key for a provider, encrypted (Fernet, key from the server secret)
upstream_keys = sa.Table(
    "upstream_keys",
    metadata,
    sa.Column("account_id", sa.String(40), sa.ForeignKey("accounts.id"), primary_key=True),
    sa.Column("provider", sa.String(40), primary_key=True),
    sa.Column("ciphertext", sa.Text(), nullable=False),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
