"""upstream jobs and keys

`upstream_jobs`: the tracking row of a job handed to an upstream service (intent,
upstream id, callback token hash, poll lease and schedule). `upstream_keys`: an
account's own provider keys, encrypted.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import genq.store.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = genq.store.tables.UTCDateTime(timezone=True)
    op.create_table(
        "upstream_jobs",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("upstream_id", sa.String(length=200), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("byo", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=True),
        sa.Column("leased_until", ts, nullable=True),
        sa.Column("next_poll_at", ts, nullable=False),
        sa.Column("polls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pushed", genq.store.tables.JSON, nullable=True),
        sa.Column("upstream_status", sa.String(length=40), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_upstream_jobs_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_upstream_jobs")),
    )
    op.create_index(
        "ix_upstream_jobs_state_next_poll_at", "upstream_jobs", ["state", "next_poll_at"]
    )
    op.create_table(
        "upstream_keys",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_upstream_keys_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "provider", name=op.f("pk_upstream_keys")),
    )


def downgrade() -> None:
    op.drop_table("upstream_keys")
    op.drop_index("ix_upstream_jobs_state_next_poll_at", table_name="upstream_jobs")
    op.drop_table("upstream_jobs")
