"""procrastinate dispatch (removed in 0005): the token of a running attempt

Earlier releases installed Procrastinate's schema here on PostgreSQL; genq no longer
depends on Procrastinate (0005 removes its objects from databases that have them), so
this revision only adds the column it added.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatch_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("dispatch_id")
