"""procrastinate dispatch: the token of a running attempt, and Procrastinate's schema

On PostgreSQL this installs Procrastinate's own schema (tables, types, functions and
triggers prefixed `procrastinate_`) from the pinned procrastinate release, so one
`genq db upgrade` prepares both. A later Procrastinate upgrade that changes its schema
gets a genq migration that applies Procrastinate's migration scripts for it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from genq.store.dispatch import drop_schema, install_schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatch_id", sa.BigInteger(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        install_schema(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        drop_schema(bind)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("dispatch_id")
