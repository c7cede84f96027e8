"""Alembic environment: runs genq's migrations on the URL genq passes in."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url

from genq.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # processes starting together (a server and its workers) migrate one at a
            # time; the next one then finds the schema at head (DDL is transactional)
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7405312)"))
        context.run_migrations()


def _main() -> None:
    url = make_url(config.get_main_option("sqlalchemy.url") or "")
    options = (
        {"isolation_level": "READ COMMITTED"} if url.get_backend_name() == "postgresql" else {}
    )
    engine = create_engine(url, **options)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    _main()
