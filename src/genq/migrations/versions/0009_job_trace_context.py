"""job trace context

`jobs.trace_context`: the W3C `traceparent` of the request that submitted the job,
so the worker that runs it (maybe on another host) continues that trace. Written
only while tracing is on (see genq.telemetry.tracing); null otherwise.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: ALTER TABLE ADD COLUMN, no table rewrite on either database
    op.add_column("jobs", sa.Column("trace_context", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # (SQLite: batch mode copies the table)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("trace_context")
