"""one dispatch path: genq's own claim on PostgreSQL, event ids in commit order,
settlements folded into balances in batches

- Procrastinate's objects go (genq no longer uses it) and so does `jobs.dispatch_id`.
- `jobs.account_limit`: the plan's concurrent-jobs limit, stamped on the job at
  submission, so that the claim needs no join with `accounts` (existing unfinished
  jobs get their account's default plan's limit).
- `credit_unfolded`: credits a settlement gave back, folded into `accounts.balance`
  later in batches; `credit_ledger.balance_after` is empty for settlements.
- PostgreSQL: `genq_claim(...)`, the counted claim (per-engine and per-account advisory
  locks in a fixed order, never one lock for all claimers); a trigger on `job_events`
  that gives each event the id `(inserting transaction id << 20) + n`. Ids below the
  oldest running transaction's are final, which is what resuming `/v1/events` relies
  on (no lock held across commits).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import genq.store.tables
from genq.plans import DEFAULT_PLANS

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ENGINE_LOCK, ACCOUNT_LOCK = 7405311, 7405312

CLAIM = f"""
CREATE OR REPLACE FUNCTION genq_claim(
    p_owner text, p_engines text[], p_limits int[], p_slots int, p_scan int,
    p_status text, p_until timestamptz, p_now timestamptz, p_progress float8,
    p_message text)
RETURNS SETOF jobs LANGUAGE plpgsql AS $$
-- Take up to p_slots of the oldest queued jobs of p_engines (limits in p_limits, same
-- order) without exceeding an engine's limit or a job's account_limit, counting the
-- running jobs under advisory locks on those engines and accounts only, taken in a
-- fixed order (engines, then accounts, each sorted), so claimers never deadlock and
-- claimers of other engines and accounts never wait.
DECLARE
    v_engines text[];
    v_accounts text[];
    v_ids text[];
    v_eng text[];
    v_acct text[];
    v_lim int[];
    v_ecount jsonb;
    v_acount jsonb;
    v_chosen text[] := '{{}}';
    v_key text;
    i int;
    ne int;
    na int;
BEGIN
    SELECT array_agg(e ORDER BY e) INTO v_engines FROM unnest(p_engines) AS e
     WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'queued' AND j.engine = e);
    IF v_engines IS NULL THEN
        RETURN;
    END IF;
    FOREACH v_key IN ARRAY v_engines LOOP
        PERFORM pg_advisory_xact_lock({ENGINE_LOCK}, hashtext(v_key));
    END LOOP;
    -- each statement from here sees what earlier lock holders committed (READ COMMITTED)
    SELECT array_agg(c.id ORDER BY c.created_at, c.id),
           array_agg(c.engine ORDER BY c.created_at, c.id),
           array_agg(c.account_id ORDER BY c.created_at, c.id),
           array_agg(c.account_limit ORDER BY c.created_at, c.id)
      INTO v_ids, v_eng, v_acct, v_lim
      FROM (SELECT q.* FROM unnest(v_engines) AS e,
                   LATERAL (SELECT j.id, j.engine, j.account_id, j.account_limit, j.created_at
                              FROM jobs j WHERE j.status = 'queued' AND j.engine = e
                             ORDER BY j.created_at, j.id LIMIT p_scan
                               FOR UPDATE SKIP LOCKED) AS q
             ORDER BY q.created_at, q.id LIMIT p_scan) AS c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT a ORDER BY a) INTO v_accounts FROM unnest(v_acct) AS a;
    FOREACH v_key IN ARRAY v_accounts LOOP
        PERFORM pg_advisory_xact_lock({ACCOUNT_LOCK}, hashtext(v_key));
    END LOOP;
    SELECT coalesce(jsonb_object_agg(s.engine, s.n), '{{}}') INTO v_ecount FROM (
        SELECT j.engine, count(*) AS n FROM jobs j
         WHERE j.status IN ('starting', 'running') AND j.engine = ANY(v_engines)
         GROUP BY j.engine) AS s;
    SELECT coalesce(jsonb_object_agg(s.account_id, s.n), '{{}}') INTO v_acount FROM (
        SELECT j.account_id, count(*) AS n FROM jobs j
         WHERE j.status IN ('starting', 'running') AND j.account_id = ANY(v_accounts)
         GROUP BY j.account_id) AS s;
    FOR i IN 1 .. cardinality(v_ids) LOOP
        EXIT WHEN cardinality(v_chosen) >= p_slots;
        ne := coalesce((v_ecount ->> v_eng[i])::int, 0);
        na := coalesce((v_acount ->> v_acct[i])::int, 0);
        CONTINUE WHEN ne >= p_limits[array_position(p_engines, v_eng[i])] OR na >= v_lim[i];
        v_chosen := v_chosen || v_ids[i];
        v_ecount := v_ecount || jsonb_build_object(v_eng[i], ne + 1);
        v_acount := v_acount || jsonb_build_object(v_acct[i], na + 1);
    END LOOP;
    IF cardinality(v_chosen) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY UPDATE jobs SET status = p_status, attempt = jobs.attempt + 1,
        lease_owner = p_owner, lease_expires_at = p_until,
        started_at = coalesce(jobs.started_at, p_now), progress = p_progress,
        message = p_message, seq = jobs.seq + 1, updated_at = p_now
      WHERE jobs.id = ANY(v_chosen) AND jobs.status = 'queued' RETURNING jobs.*;
END $$;
"""

EVENT_TRIGGER = """
CREATE OR REPLACE FUNCTION genq_job_event_id() RETURNS trigger LANGUAGE plpgsql AS $$
-- The event's id: (this transaction's id << 20) + its n-th event in the transaction.
DECLARE
    n bigint := coalesce(nullif(current_setting('genq.event_n', true), ''), '0')::bigint + 1;
BEGIN
    IF n >= 1048576 THEN
        RAISE EXCEPTION 'more than 1048575 job events in one transaction';
    END IF;
    PERFORM set_config('genq.event_n', n::text, true);
    NEW.id := (pg_current_xact_id()::text::bigint << 20) + n;
    RETURN NEW;
END $$;
CREATE TRIGGER genq_job_event_id BEFORE INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION genq_job_event_id();
"""


def _drop_procrastinate(bind: sa.Connection) -> None:
    """Every object an earlier genq installed from Procrastinate (tables, types,
    functions; triggers and indexes go with their tables)."""
    for kind, catalog, column, extra in (
        ("TABLE", "pg_tables", "tablename", "schemaname = current_schema()"),
        ("TYPE", "pg_type", "typname", "typnamespace = current_schema()::regnamespace"),
    ):
        names = bind.execute(
            sa.text(f"SELECT {column} FROM {catalog} WHERE {column} LIKE :p AND {extra}"),
            {"p": "procrastinate\\_%"},
        ).scalars()
        for name in list(names):
            bind.exec_driver_sql(f'DROP {kind} IF EXISTS "{name}" CASCADE')
    functions = bind.execute(
        sa.text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.proname LIKE :p AND p.pronamespace = current_schema()::regnamespace"
        ),
        {"p": "procrastinate\\_%"},
    ).scalars()
    for signature in list(functions):
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature} CASCADE")


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        _drop_procrastinate(bind)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("dispatch_id")
        batch_op.add_column(
            sa.Column("account_limit", sa.Integer(), server_default="1000000", nullable=False)
        )
        # a filtered list of an account's jobs walks only that status (SQLite picked
        # the account's whole history otherwise)
        batch_op.drop_index("ix_jobs_account_status")
        batch_op.create_index(
            "ix_jobs_account_status_created",
            ["account_id", "status", "created_at", "id"],
            unique=False,
        )
    cases = " ".join(f"WHEN '{p.name}' THEN {p.concurrent_jobs}" for p in DEFAULT_PLANS.values())
    op.execute(
        "UPDATE jobs SET account_limit = CASE (SELECT a.plan FROM accounts a"
        f" WHERE a.id = jobs.account_id) {cases} ELSE 1000000 END"
        " WHERE status IN ('queued', 'starting', 'running')"
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.alter_column("balance_after", existing_type=sa.BigInteger(), nullable=True)
    op.create_table(
        "credit_unfolded",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", genq.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_credit_unfolded_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_unfolded")),
    )
    with op.batch_alter_table("credit_unfolded", schema=None) as batch_op:
        batch_op.create_index("ix_credit_unfolded_account_id", ["account_id"], unique=False)
    if postgres:
        op.execute("ALTER TABLE job_events ALTER COLUMN id DROP DEFAULT")
        op.execute(EVENT_TRIGGER)
        op.execute(CLAIM)


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute(
            "DROP FUNCTION IF EXISTS genq_claim(text, text[], int[], int, int, text,"
            " timestamptz, timestamptz, float8, text)"
        )
        op.execute("DROP TRIGGER IF EXISTS genq_job_event_id ON job_events")
        op.execute("DROP FUNCTION IF EXISTS genq_job_event_id()")
        op.execute(
            "SELECT setval(pg_get_serial_sequence('job_events', 'id'),"
            " greatest((SELECT max(id) FROM job_events), 1))"
        )
        op.execute(
            "ALTER TABLE job_events ALTER COLUMN id"
            " SET DEFAULT nextval(pg_get_serial_sequence('job_events', 'id'))"
        )
    op.execute(
        "UPDATE accounts SET balance = balance + coalesce((SELECT sum(u.amount)"
        " FROM credit_unfolded u WHERE u.account_id = accounts.id), 0)"
    )
    with op.batch_alter_table("credit_unfolded", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_unfolded_account_id")
    op.drop_table("credit_unfolded")
    op.execute("UPDATE credit_ledger SET balance_after = 0 WHERE balance_after IS NULL")
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.alter_column("balance_after", existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_account_status_created")
        batch_op.create_index("ix_jobs_account_status", ["account_id", "status"], unique=False)
        batch_op.drop_column("account_limit")
        batch_op.add_column(sa.Column("dispatch_id", sa.BigInteger(), nullable=True))
