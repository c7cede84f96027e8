"""leases for webhook deliveries and idempotency keys

- `webhook_deliveries.leased_until`: a sender's claim on a delivery while it is being
  sent (before, `next_attempt_at` doubled as the lease). A job's later deliveries are
  not claimed while an earlier one is in flight, and a sender renews a delivery's lease
  right before sending it, so a slow receiver never gets one delivery twice or a job's
  deliveries out of order.
- `idempotency_keys.token` and `.lease_expires_at`: the request that holds a key in
  flight renews a short lease while it runs; a key whose request died with its process
  is free again once that lease lapses (seconds, not minutes), and the creating
  transaction is fenced on the token, so a request that outlived its lease creates
  nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import genq.store.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("leased_until", genq.store.tables.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column(
                "lease_expires_at", genq.store.tables.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("token")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("leased_until")
