"""Job SQL: creation, reads, the claim, fenced worker writes, cancel, the reaper and
retention. Each public method runs one operation (one thread hop, one transaction; on
PostgreSQL a transition is one statement); what a transition does comes from
`genq.lifecycle` as a `Step` (or a function of the job giving one), and is executed by
`genq.store.steps`.

Every change to a job bumps its `seq` and appends one row to `job_events` in the same
transaction, so the event log is exactly the history of the row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from genq.errors import Busy, Conflict, InsufficientCredits, LeaseLost, NotFound
from genq.ids import utcnow
from genq.lifecycle import (
    ACTIVE,
    ENDED,
    NON_TERMINAL,
    CancelOutcome,
    EventType,
    LedgerKind,
    Status,
    Step,
)
from genq.store.db import Cx, Database, autocommit, dt_of, json_of
from genq.store.files import update_model
from genq.store.idempotency import owns
from genq.store.records import Claim, Job, JobEvent, JobOutput
from genq.store.steps import (
    EVENT_ID_SHIFT,
    JOB_COLS,
    UPD_COLS,
    apply,
    effects_pg,
    effects_sqlite,
    insert_events,
    notify_cte,
    rows_pg,
    sets,
    value,
)

Transitioned = tuple[Job, JobEvent]
StepFor = Callable[[Job], Step]

_ACTIVE_SQL = "('starting', 'running')"
FENCE = (
    "id = %(job_id)s AND attempt = %(attempt)s AND lease_owner = %(owner)s"
    f" AND status IN {_ACTIVE_SQL}"
)
EVENT_COLS = JobEvent.select()
# PostgreSQL: ids of events whose transaction ended (see `events_since`)
_WATERMARK = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {EVENT_ID_SHIFT})"
SUBMIT_LOCK = 7405314  # PostgreSQL: capped submits of one account, one at a time


@dataclass(frozen=True, slots=True)
class Cap:
    """A condition on a submission: refuse it (`Busy`, with the ids in `running`) while
    the account has `limit` unfinished jobs, counting only those whose metadata has
    `tag` = (key, value) when given (a plain key: letters, digits, `_`)."""

    limit: int
    tag: tuple[str, str] | None = None


def _fence(claim: Claim) -> dict[str, Any]:
    return {"job_id": claim.job.id, "attempt": claim.attempt, "owner": claim.owner}


def _outputs_sql(cx: Cx, alias: str = "j") -> str:
    """A job's outputs as one JSON array (a column of the job's own row)."""
    if cx.postgres:
        return (
            "(SELECT coalesce(jsonb_agg(jsonb_build_array(o.name, o.kind, o.content_type,"
            " o.bytes, o.sha256, o.path, o.meta, o.position) ORDER BY o.position), '[]')"
            f" FROM job_outputs o WHERE o.job_id = {alias}.id)"
        )
    return (
        "(SELECT json_group_array(json_array(o.name, o.kind, o.content_type, o.bytes,"
        " o.sha256, o.path, json(o.meta), o.position))"
        f" FROM job_outputs o WHERE o.job_id = {alias}.id)"
    )


def _outputs_of(job_id: str, value: Any) -> list[JobOutput]:
    items = json_of(value) or []
    outs = [
        JobOutput(job_id, n, k, ct, int(b), sha, path, json_of(meta) or {}, int(pos), None)
        for n, k, ct, b, sha, path, meta, pos in items
    ]
    outs.sort(key=lambda o: o.position)
    return outs


# -- creation ------------------------------------------------------------------------------


def _fold_account(cx: Cx, account_id: str) -> int | None:
    """Fold the account's unfolded credits into its balance; the balance (None: no
    such account)."""
    if cx.postgres:
        return cx.scalar(  # type: ignore[no-any-return]
            "WITH d AS (DELETE FROM credit_unfolded WHERE account_id = %(a)s RETURNING amount)"
            " UPDATE accounts SET balance = balance + (SELECT coalesce(sum(amount), 0) FROM d)"
            " WHERE id = %(a)s RETURNING balance",
            {"a": account_id},
        )
    back = cx.scalar(
        "SELECT coalesce(sum(amount), 0) FROM credit_unfolded WHERE account_id = %(a)s",
        {"a": account_id},
    )
    if back:
        cx.execute("DELETE FROM credit_unfolded WHERE account_id = %(a)s", {"a": account_id})
    return cx.scalar(  # type: ignore[no-any-return]
        "UPDATE accounts SET balance = balance + %(n)s WHERE id = %(a)s RETURNING balance",
        {"a": account_id, "n": back},
    )


def _insufficient(balance: int | None, account_id: str, needed: int) -> Exception:
    if balance is None:
        return NotFound(f"no account {account_id!r}")
    return InsufficientCredits(
        f"this needs {needed} credits; the balance is {balance}", balance=balance, needed=needed
    )


_HOLD = (
    "UPDATE accounts SET balance = balance - %(n)s"
    " WHERE id = %(a)s AND balance >= %(n)s RETURNING balance"
)
_OWNED = (
    "idempotency_keys WHERE account_id = %(ia)s AND key = %(ik)s AND token = %(it)s"
    " AND state = 'in_flight' AND resource_id IS NULL"
)


def _superseded(key: str) -> Conflict:
    return Conflict(
        f"this request held Idempotency-Key {key!r} past its lease and a retry took it over;"
        " nothing was created"
    )


@autocommit
def _create(cx: Cx, job: Job, step: Step, idempotency: tuple[str, str, str] | None) -> Transitioned:
    """With `idempotency` (account id, key, token), the job is created only while that
    request still holds the key (and the key is linked to the job in the same
    transaction)."""
    now = job.created_at
    p: dict[str, Any] = {"n": job.credits_estimate, "a": job.account_id}
    cols = Job.COLUMNS
    for c in cols:
        p[f"c_{c}"] = value(cx, getattr(job, c))
    placeholders = ", ".join(f"%(c_{c})s" for c in cols)
    names = ", ".join(f'"{c}"' for c in cols)
    data = {**step.data, "status": job.status}
    if cx.postgres:
        p.update(id=job.id, now=now, d=cx.json(data), t=step.event.value)
        idem, hold = "", _HOLD
        if idempotency is not None:
            p["ia"], p["ik"], p["it"] = idempotency
            hold = _HOLD.replace(" RETURNING", f" AND EXISTS (SELECT 1 FROM {_OWNED}) RETURNING")
            idem = (
                "idem AS (UPDATE idempotency_keys SET resource_id = %(id)s WHERE account_id ="
                " %(ia)s AND key = %(ik)s AND token = %(it)s AND EXISTS (SELECT 1 FROM hold)), "
            )
        sql = (
            f"WITH hold AS ({hold}),"
            f" ins AS (INSERT INTO jobs ({names}) SELECT {placeholders} FROM hold"
            " RETURNING id, account_id, engine, status, seq),"
            " led AS (INSERT INTO credit_ledger (account_id, job_id, kind, amount,"
            " balance_after, created_at) SELECT %(a)s, %(id)s, 'hold', %(n)s, hold.balance,"
            f" %(now)s FROM hold), {idem}"
            "ev AS (INSERT INTO job_events (job_id, account_id, seq, type, data, created_at)"
            " SELECT ins.id, ins.account_id, ins.seq, %(t)s, %(d)s, %(now)s FROM ins"
            " RETURNING id AS event_id, job_id, seq, type, data, created_at),"
            f" {notify_cte('ins', 'false')}"
            " SELECT (SELECT balance FROM hold), (SELECT event_id FROM ev),"
            " (SELECT count(*) FROM nt)"
        )
        for attempt in (1, 2):
            balance, event_id, _ = cx.one(sql, p)
            if balance is not None:
                return job, JobEvent(event_id, job.id, job.account_id, 1, step.event, data, now)
            if idempotency is not None and not owns(cx, *idempotency):
                raise _superseded(idempotency[1])
            folded = _fold_account(cx, job.account_id)
            if attempt == 2 or folded is None or folded < job.credits_estimate:
                raise _insufficient(folded, job.account_id, job.credits_estimate)
        raise AssertionError("unreachable")
    if idempotency is not None and not owns(cx, *idempotency):
        raise _superseded(idempotency[1])
    balance = cx.scalar(_HOLD, p)
    if balance is None:
        folded = _fold_account(cx, job.account_id)
        if folded is None or folded < job.credits_estimate:
            raise _insufficient(folded, job.account_id, job.credits_estimate)
        balance = cx.scalar(_HOLD, p)
    cx.execute(f"INSERT INTO jobs ({names}) VALUES ({placeholders})", p)
    cx.execute(
        "INSERT INTO credit_ledger (account_id, job_id, kind, amount, balance_after, created_at)"
        " VALUES (%(a)s, %(id)s, %(k)s, %(n)s, %(b)s, %(now)s)",
        {
            "a": job.account_id,
            "id": job.id,
            "k": LedgerKind.HOLD.value,
            "n": job.credits_estimate,
            "b": balance,
            "now": cx.ts(now),
        },
    )
    if idempotency is not None:
        cx.execute(
            "UPDATE idempotency_keys SET resource_id = %(id)s"
            " WHERE account_id = %(ia)s AND key = %(ik)s AND token = %(it)s",
            {"id": job.id, "ia": idempotency[0], "ik": idempotency[1], "it": idempotency[2]},
        )
    [done] = insert_events(cx, [(job, data)], step.event, now)
    return done


def _create_training(
    cx: Cx, job: Job, step: Step, idempotency: tuple[str, str, str] | None, model_id: str
) -> Transitioned:
    """`_create` of a training job and its model marked `training` by it, in one
    transaction: two trains of one model cannot both start (nor both pay), and the job
    cannot end before its model knows of it."""
    marked = update_model(
        cx,
        model_id,
        ("created", "ready", "failed"),
        {"status": "training", "job_id": job.id, "error": None},
        job.created_at,
    )
    if marked is None:
        raise Conflict(f"model {model_id} is already training")
    return _create(cx, job, step, idempotency)


def _unfinished(cx: Cx, account_id: str, tag: tuple[str, str] | None) -> list[str]:
    """The ids of the account's unfinished jobs (with metadata `tag`), newest first."""
    p: dict[str, Any] = {"a": account_id}
    where = ""
    if tag is not None:
        if cx.postgres:
            where = " AND metadata ->> %(k)s = %(v)s"
            p.update(k=tag[0], v=tag[1])
        else:
            where = " AND json_extract(metadata, %(k)s) = %(v)s"
            p.update(k=f"$.{tag[0]}", v=tag[1])  # a plain key
    rows = cx.all(
        "SELECT id FROM jobs WHERE account_id = %(a)s"
        f" AND status IN ('queued', 'starting', 'running'){where}"
        " ORDER BY created_at DESC, id DESC",
        p,
    )
    return [r[0] for r in rows]


def _create_capped(
    cx: Cx,
    job: Job,
    step: Step,
    idempotency: tuple[str, str, str] | None,
    trains: str | None,
    cap: Cap,
) -> Transitioned:
    """`_create` (or `_create_training`) unless `cap` refuses it, counted in the same
    transaction: SQLite's single writer runs one at a time; on PostgreSQL a lock per
    account orders the capped submits of that account, so two cannot both pass."""
    if cx.postgres:
        cx.execute(
            "SELECT pg_advisory_xact_lock(%(k)s, hashtext(%(a)s))",
            {"k": SUBMIT_LOCK, "a": job.account_id},
        )
    running = _unfinished(cx, job.account_id, cap.tag)
    if len(running) >= cap.limit:
        raise Busy(f"the account has {len(running)} unfinished jobs", running=running)
    if trains is not None:
        return _create_training(cx, job, step, idempotency, trains)
    return _create(cx, job, step, idempotency)


# -- reads ---------------------------------------------------------------------------------


def _get(cx: Cx, job_id: str) -> Job | None:
    row = cx.one(f"SELECT {JOB_COLS} FROM jobs WHERE id = %(id)s", {"id": job_id})
    return Job.of(row) if row else None


def _get_with_outputs(cx: Cx, job_id: str) -> tuple[Job, list[JobOutput]] | None:
    row = cx.one(
        f"SELECT {Job.select('j')}, {_outputs_sql(cx)} FROM jobs j WHERE j.id = %(id)s",
        {"id": job_id},
    )
    if row is None:
        return None
    return Job.of(row[:-1]), _outputs_of(job_id, row[-1])


def _output(cx: Cx, job_id: str, name: str) -> JobOutput | None:
    row = cx.one(
        f"SELECT {JobOutput.select()} FROM job_outputs WHERE job_id = %(j)s AND name = %(n)s",
        {"j": job_id, "n": name},
    )
    return JobOutput.of(row) if row else None


def _page(
    cx: Cx,
    account_id: str,
    status: Sequence[str],
    engine: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[tuple[Job, list[JobOutput]]]:
    where = ["j.account_id = %(a)s"]
    p: dict[str, Any] = {"a": account_id, "limit": limit}
    if len(status) == 1:  # (an index walks just that status)
        where.append("j.status = %(st)s")
        p["st"] = str(status[0])
    elif status:
        where.append(f"j.status {cx.in_list('st')}")
        p["st"] = cx.array(str(s) for s in status)
    if engine:
        where.append("j.engine = %(e)s")
        p["e"] = engine
    if before is not None:
        where.append("(j.created_at, j.id) < (%(bt)s, %(bi)s)")
        p["bt"], p["bi"] = cx.ts(before[0]), before[1]
    rows = cx.all(
        f"SELECT {Job.select('j')}, {_outputs_sql(cx)} FROM jobs j WHERE {' AND '.join(where)}"
        " ORDER BY j.created_at DESC, j.id DESC LIMIT %(limit)s",
        p,
    )
    return [(Job.of(r[:-1]), _outputs_of(r[0], r[-1])) for r in rows]


# -- the claim -----------------------------------------------------------------------------


def _claim_sqlite(
    cx: Cx, owner: str, slots: int, limits: Mapping[str, int], step: Step, scan: int, now: datetime
) -> list[Transitioned]:
    engines = sorted(limits)
    p: dict[str, Any] = {"scan": scan}
    per_engine = []
    for i, e in enumerate(engines):
        p[f"e{i}"] = e
        per_engine.append(
            "SELECT * FROM (SELECT id, engine, account_id, account_limit, created_at FROM jobs"
            f" WHERE status = 'queued' AND engine = %(e{i})s ORDER BY created_at, id"
            " LIMIT %(scan)s)"
        )
    rows = cx.all(
        f"WITH cand AS (SELECT * FROM ({' UNION ALL '.join(per_engine)})"
        " ORDER BY created_at, id LIMIT %(scan)s),"
        " er AS (SELECT engine AS k, count(*) AS n FROM jobs"
        f" WHERE status IN {_ACTIVE_SQL} AND engine IN (SELECT engine FROM cand) GROUP BY engine),"
        " ar AS (SELECT account_id AS k, count(*) AS n FROM jobs"
        f" WHERE status IN {_ACTIVE_SQL} AND account_id IN (SELECT account_id FROM cand)"
        " GROUP BY account_id)"
        " SELECT c.id, c.engine, c.account_id, c.account_limit, coalesce(er.n, 0),"
        " coalesce(ar.n, 0) FROM cand c LEFT JOIN er ON er.k = c.engine"
        " LEFT JOIN ar ON ar.k = c.account_id ORDER BY c.created_at, c.id",
        p,
    )
    running_e: dict[str, int] = {}
    running_a: dict[str, int] = {}
    chosen: list[str] = []
    for job_id, engine, account_id, account_limit, n_engine, n_account in rows:
        if len(chosen) >= slots:
            break
        ne = running_e.setdefault(engine, n_engine)
        na = running_a.setdefault(account_id, n_account)
        if ne >= limits[engine] or na >= account_limit:
            continue
        chosen.append(job_id)
        running_e[engine], running_a[account_id] = ne + 1, na + 1
    if not chosen:
        return []
    q: dict[str, Any] = {"ids": cx.array(chosen)}
    assignments = sets(cx, step.values, q)
    q["now"] = cx.ts(now)
    updated = cx.all(
        f"UPDATE jobs SET {assignments}, attempt = attempt + 1, seq = seq + 1,"
        f" updated_at = %(now)s WHERE id {cx.in_list('ids')} AND status = 'queued'"
        f" RETURNING {JOB_COLS}",
        q,
    )
    order = {job_id: i for i, job_id in enumerate(chosen)}
    jobs = sorted((Job.of(r) for r in updated), key=lambda j: order[j.id])
    rerun = [j.id for j in jobs if j.attempt > 1]
    if rerun:  # outputs of an earlier, lost attempt are void
        cx.execute(
            f"DELETE FROM job_outputs WHERE job_id {cx.in_list('ids')}", {"ids": cx.array(rerun)}
        )
    return effects_sqlite(cx, step, jobs, now)


def _claim_pg(
    cx: Cx, owner: str, slots: int, limits: Mapping[str, int], step: Step, scan: int, now: datetime
) -> list[Transitioned]:
    engines = sorted(limits)
    v = step.values
    p: dict[str, Any] = {
        "owner": owner,
        "engines": engines,
        "limits": [limits[e] for e in engines],
        "slots": slots,
        "scan": scan,
        "status": value(cx, v["status"]),
        "until": v["lease_expires_at"],
        "progress": v["progress"],
        "message": v["message"],
    }
    sql = (
        "WITH upd AS (SELECT * FROM genq_claim(%(owner)s::text, %(engines)s::text[],"
        " %(limits)s::int[], %(slots)s::int, %(scan)s::int, %(status)s::text,"
        " %(until)s::timestamptz, %(now)s::timestamptz, %(progress)s::float8,"
        " %(message)s::text)),"
        " old AS (DELETE FROM job_outputs USING upd WHERE job_outputs.job_id = upd.id"
        f" AND upd.attempt > 1), {effects_pg(step, p, cx, now, claim=True)}"
        f" SELECT {UPD_COLS}, ev.event_id FROM upd JOIN ev ON ev.job_id = upd.id"
        " CROSS JOIN (SELECT count(*) FROM nt) AS sent ORDER BY ev.event_id"
    )
    return rows_pg(cx.all(sql, p), step, now)


@autocommit
def _claim(
    cx: Cx,
    owner: str,
    slots: int,
    limits: Mapping[str, int],
    step_at: Callable[[datetime], Step],
    scan: int,
) -> list[Transitioned]:
    # the claim's time is taken here, when it runs (a claim queued behind others, or
    # waiting for a lock, must not start its jobs before the slots it counts were freed)
    now = utcnow()
    step = step_at(now)
    if cx.postgres:
        return _claim_pg(cx, owner, slots, limits, step, scan, now)
    return _claim_sqlite(cx, owner, slots, limits, step, scan, now)


def _probe(cx: Cx, engines: Sequence[str]) -> list[str]:
    """The engines among `engines` with queued jobs."""
    found = []
    for e in engines:
        row = cx.one(
            "SELECT 1 FROM jobs WHERE status = 'queued' AND engine = %(e)s LIMIT 1", {"e": e}
        )
        if row is not None:
            found.append(e)
    return found


# -- fenced worker writes ------------------------------------------------------------------


@autocommit
def _fenced(cx: Cx, claim: Claim, step: Step, now: datetime) -> Transitioned:
    rows = apply(cx, step, FENCE, _fence(claim), now)
    if not rows:
        raise LeaseLost(f"lease on {claim.job.id} attempt {claim.attempt} is gone")
    return rows[0]


def _record(
    cx: Cx, claim: Claim, items: Sequence[tuple[Step, Mapping[str, Any] | None]], now: datetime
) -> list[Transitioned]:
    """Several records of one running job (progress, outputs, log lines) in order."""
    out = []
    ts = cx.ts(now)
    for step, output in items:
        if output is not None:  # first (the step's notification lists it), fenced too
            insert_output(cx, output, FENCE, _fence(claim), ts)
        rows = apply(cx, step, FENCE, _fence(claim), now)
        if not rows:  # (the output goes with the rolled-back transaction)
            raise LeaseLost(f"lease on {claim.job.id} attempt {claim.attempt} is gone")
        out.append(rows[0])
    return out


def insert_output(
    cx: Cx, output: Mapping[str, Any], where: str, params: Mapping[str, Any], ts: Any
) -> None:
    """One output row (`JobOutput.ROW_FIELDS`) of the job that `where` selects (a
    writer's fence: no row is written when the fence does not hold)."""
    p = {f: value(cx, output[f]) for f in JobOutput.ROW_FIELDS}
    p.update(params, created_at=ts)
    cx.execute(
        "INSERT INTO job_outputs (job_id, name, kind, content_type, bytes, sha256, path,"
        " meta, position, created_at) SELECT id, %(name)s, %(kind)s, %(content_type)s,"
        " %(bytes)s, %(sha256)s, %(path)s, %(meta)s, %(position)s, %(created_at)s"
        f" FROM jobs WHERE {where}",
        p,
    )


@autocommit
def _heartbeat(
    cx: Cx, owner: str, attempts: Mapping[str, int], until: datetime
) -> list[tuple[str, int, Any]]:
    return cx.all(
        "UPDATE jobs SET lease_expires_at = %(until)s WHERE lease_owner = %(owner)s"
        f" AND id {cx.in_list('ids')} AND status IN {_ACTIVE_SQL}"
        " RETURNING id, attempt, cancel_requested_at",
        {"until": cx.ts(until), "owner": owner, "ids": cx.array(attempts)},
    )


# -- cancel, the reaper, retention ---------------------------------------------------------


@autocommit
def _cancel(
    cx: Cx, job_id: str, queued: StepFor, requested: Step, now: datetime
) -> tuple[CancelOutcome, Transitioned | None, Job | None]:
    job = _get(cx, job_id)
    if job is None:
        return CancelOutcome.MISSING, None, None
    if job.status == Status.QUEUED:
        rows = apply(cx, queued(job), "id = %(id)s AND status = 'queued'", {"id": job_id}, now)
        if rows:
            return CancelOutcome.CANCELED, rows[0], rows[0][0]
        job = _get(cx, job_id) or job
    if job.status in ACTIVE:
        rows = apply(
            cx,
            requested,
            f"id = %(id)s AND status IN {_ACTIVE_SQL} AND cancel_requested_at IS NULL",
            {"id": job_id},
            now,
        )
        if rows:
            # a job parked at an upstream service: its tracker looks at it now
            cx.execute(
                "UPDATE upstream_jobs SET next_poll_at = %(now)s WHERE job_id = %(id)s"
                " AND state IN ('intent', 'tracking')",
                {"id": job_id, "now": cx.ts(now)},
            )
            return CancelOutcome.REQUESTED, rows[0], rows[0][0]
        job = _get(cx, job_id) or job
    if job.status in ACTIVE:
        return CancelOutcome.REQUESTED, None, job
    return CancelOutcome.ENDED, None, job


@autocommit
def _reap(cx: Cx, step_for: StepFor, now: datetime, limit: int) -> list[Transitioned]:
    lapsed = cx.all(
        f"SELECT {JOB_COLS} FROM jobs WHERE status IN {_ACTIVE_SQL}"
        f" AND lease_expires_at < %(now)s AND {_NOT_UPSTREAM}"
        " ORDER BY lease_expires_at LIMIT %(limit)s",
        {"now": cx.ts(now), "limit": limit},
    )
    out = []
    for row in lapsed:
        job = Job.of(row)
        fence = {"job_id": job.id, "attempt": job.attempt, "owner": job.lease_owner}
        # fenced on the attempt: a worker that renewed meanwhile keeps its job
        where = FENCE + " AND lease_expires_at < %(now_)s"
        out += apply(cx, step_for(job), where, {**fence, "now_": cx.ts(now)}, now)
    return out


@autocommit
def _release(cx: Cx, claim: Claim, step: Step, now: datetime) -> Transitioned | None:
    rows = apply(cx, step, FENCE, _fence(claim), now)
    return rows[0] if rows else None


def _expire(
    cx: Cx, step: Step, job_id: str | None, limit: int, now: datetime
) -> list[Transitioned]:
    ended = "status IN ('succeeded', 'failed', 'canceled')"
    if job_id is not None:
        return apply(cx, step, f"id = %(id)s AND {ended}", {"id": job_id}, now)
    if cx.postgres:
        where = (
            f"id IN (SELECT id FROM jobs WHERE {ended} AND expires_at < %(due)s"
            " ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        )
    else:
        where = (
            f"id IN (SELECT id FROM jobs WHERE {ended} AND expires_at < %(due)s"
            " ORDER BY expires_at LIMIT %(limit)s)"
        )
    return apply(cx, step, where, {"due": cx.ts(now), "limit": limit}, now)


_expire_one = autocommit(_expire)


# is there anything to do? (a read before a write)
# a job with an upstream row is never re-queued (its create call may have gone out):
# the gateway's tracker takes it over instead (genq.store.upstream)
_NOT_UPSTREAM = "NOT EXISTS (SELECT 1 FROM upstream_jobs u WHERE u.job_id = jobs.id)"
_LAPSED = (
    f"SELECT 1 FROM jobs WHERE status IN {_ACTIVE_SQL} AND lease_expires_at < %(now)s"
    f" AND {_NOT_UPSTREAM} LIMIT 1"
)
_EXPIRED = (
    "SELECT 1 FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled')"
    " AND expires_at < %(now)s LIMIT 1"
)
_UNFOLDED = "SELECT 1 FROM credit_unfolded WHERE created_at < %(now)s LIMIT 1"


def _due(cx: Cx, sql: str, now: datetime) -> bool:
    return cx.one(sql, {"now": cx.ts(now)}) is not None


# -- the event log -------------------------------------------------------------------------


def _events_after(cx: Cx, job_id: str, seq: int, limit: int) -> list[JobEvent]:
    rows = cx.all(
        f"SELECT {EVENT_COLS} FROM job_events WHERE job_id = %(j)s AND seq > %(s)s"
        " ORDER BY seq LIMIT %(limit)s",
        {"j": job_id, "s": seq, "limit": limit},
    )
    return [JobEvent.of(r) for r in rows]


def _events_since(cx: Cx, event_id: int, account_id: str | None, limit: int) -> list[JobEvent]:
    where = ["id > %(id)s"]
    p: dict[str, Any] = {"id": event_id, "limit": limit}
    if account_id is not None:
        where.append("account_id = %(a)s")
        p["a"] = account_id
    if cx.postgres:
        where.append(f"id < {_WATERMARK}")
    rows = cx.all(
        f"SELECT {EVENT_COLS} FROM job_events WHERE {' AND '.join(where)}"
        " ORDER BY id LIMIT %(limit)s",
        p,
    )
    return [JobEvent.of(r) for r in rows]


def _last_event_id(cx: Cx) -> int:
    if cx.postgres:
        return int(cx.scalar(f"SELECT {_WATERMARK} - 1"))
    return int(cx.scalar("SELECT coalesce(max(id), 0) FROM job_events"))


def _changes_since(cx: Cx, event_id: int, limit: int) -> list[tuple[JobEvent, str, bool]]:
    """Events after `event_id` (PostgreSQL: below the watermark) with their job's engine
    and whether a webhook delivery was written with them."""
    where = "e.id > %(id)s" + (f" AND e.id < {_WATERMARK}" if cx.postgres else "")
    rows = cx.all(
        f"SELECT {JobEvent.select('e')}, j.engine, EXISTS (SELECT 1 FROM webhook_deliveries w"
        " WHERE w.job_id = e.job_id AND w.seq = e.seq) FROM job_events e"
        f" JOIN jobs j ON j.id = e.job_id WHERE {where} ORDER BY e.id LIMIT %(limit)s",
        {"id": event_id, "limit": limit},
    )
    return [(JobEvent.of(r[:-2]), r[-2], bool(r[-1])) for r in rows]


def foreign_reader(cx: Cx, after_id: int) -> tuple[int, list[tuple[JobEvent, str, bool]]]:
    """SQLite's writer: events other processes committed after `after_id`, in order."""
    found: list[tuple[JobEvent, str, bool]] = []
    while True:
        batch = _changes_since(cx, after_id, 5000)
        found += batch
        if len(batch) < 5000:
            return (found[-1][0].id if found else after_id), found
        after_id = batch[-1][0].id


def _nonterminal(cx: Cx) -> list[tuple[str, str, str, str]]:
    return cx.all(
        "SELECT id, engine, account_id, status FROM jobs"
        " WHERE status IN ('queued', 'starting', 'running')"
    )


def _account_counts(cx: Cx, account_id: str) -> dict[str, int]:
    rows = cx.all(
        "SELECT status, count(*) FROM jobs WHERE account_id = %(a)s"
        " AND status IN ('queued', 'starting', 'running') GROUP BY status",
        {"a": account_id},
    )
    return {s: int(n) for s, n in rows}


def _status_counts(cx: Cx) -> dict[tuple[str, str], int]:
    rows = cx.all(
        "SELECT status, engine, count(*) FROM jobs"
        " WHERE status IN ('queued', 'starting', 'running') GROUP BY status, engine"
    )
    return {(s, e): int(n) for s, e, n in rows}


def _held_credits(cx: Cx) -> dict[str, int]:
    rows = cx.all(
        "SELECT engine, coalesce(sum(credits_estimate), 0) FROM jobs"
        " WHERE status IN ('queued', 'starting', 'running') GROUP BY engine"
    )
    return {e: int(n) for e, n in rows}


def _recent_durations(cx: Cx, engine: str, limit: int) -> list[float]:
    rows = cx.all(
        "SELECT started_at, completed_at FROM jobs WHERE status = 'succeeded'"
        " AND engine = %(e)s AND started_at IS NOT NULL"
        " ORDER BY created_at DESC LIMIT %(limit)s",  # ix_jobs_status_engine_created
        {"e": engine, "limit": limit},
    )
    out = []
    for start, done in rows:
        s, d = dt_of(start), dt_of(done)
        if s and d:
            out.append((d - s).total_seconds())
    return out


@autocommit
def _fold_all(cx: Cx) -> int:
    """Fold every account's unfolded credits into its balance; how many rows."""
    if cx.postgres:
        return int(
            cx.scalar(
                "WITH d AS (DELETE FROM credit_unfolded RETURNING account_id, amount),"
                " s AS (SELECT account_id, sum(amount) AS amount, count(*) AS n FROM d"
                " GROUP BY account_id),"
                " u AS (UPDATE accounts SET balance = accounts.balance + s.amount FROM s"
                " WHERE accounts.id = s.account_id)"
                " SELECT coalesce(sum(n), 0) FROM s"
            )
        )
    top = cx.scalar("SELECT max(id) FROM credit_unfolded")
    if top is None:
        return 0
    rows = cx.all(
        "SELECT account_id, sum(amount), count(*) FROM credit_unfolded WHERE id <= %(top)s"
        " GROUP BY account_id",
        {"top": top},
    )
    for account_id, amount, _ in rows:
        cx.execute(
            "UPDATE accounts SET balance = balance + %(n)s WHERE id = %(a)s",
            {"n": amount, "a": account_id},
        )
    cx.execute("DELETE FROM credit_unfolded WHERE id <= %(top)s", {"top": top})
    return sum(int(n) for _, _, n in rows)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- creation and reads ----------------------------------------------------------------

    async def create(
        self,
        job: Job,
        step: Step,
        idempotency: tuple[str, str, str] | None = None,
        *,
        trains: str | None = None,
        cap: Cap | None = None,
    ) -> Transitioned:
        """Insert a job, hold its estimate and log its first event (402 if the account
        cannot pay, with its folded balance). With `trains`, the job trains that model:
        the model is marked `training` by it in the same transaction (409 if it already
        is). With `cap`, only while the account's unfinished jobs are fewer (`Busy`)."""
        if cap is not None:
            return await self.db.write(_create_capped, job, step, idempotency, trains, cap)
        if trains is not None:
            return await self.db.write(_create_training, job, step, idempotency, trains)
        return await self.db.write(_create, job, step, idempotency)

    async def get(self, job_id: str) -> Job | None:
        return await self.db.read(_get, job_id)

    async def get_with_outputs(self, job_id: str) -> tuple[Job, list[JobOutput]] | None:
        return await self.db.read(_get_with_outputs, job_id)

    async def output(self, job_id: str, name: str) -> JobOutput | None:
        return await self.db.read(_output, job_id, name)

    async def page(
        self,
        account_id: str,
        *,
        status: Sequence[str] = (),
        engine: str | None = None,
        limit: int = 20,
        before: tuple[datetime, str] | None = None,
    ) -> list[tuple[Job, list[JobOutput]]]:
        """Newest first, each with its outputs; `before` is the keyset cursor (created_at,
        id) of the last row seen."""
        return await self.db.read(_page, account_id, status, engine, limit, before)

    async def nonterminal(self) -> list[tuple[str, str, str, str]]:
        """(id, engine, account id, status) of every queued or running job."""
        return await self.db.read(_nonterminal)

    async def recent_durations(self, engine: str, limit: int = 20) -> list[float]:
        return await self.db.read(_recent_durations, engine, limit)

    async def status_counts(self) -> dict[tuple[str, str], int]:
        """Non-terminal jobs by (status, engine)."""
        return await self.db.read(_status_counts)

    async def held_credits(self) -> dict[str, int]:
        """Credits held for unfinished jobs (their estimates), by engine."""
        return await self.db.read(_held_credits)

    async def account_counts(self, account_id: str) -> dict[str, int]:
        """The account's non-terminal jobs by status."""
        return await self.db.read(_account_counts, account_id)

    # -- the claim -------------------------------------------------------------------------

    async def claim(
        self, owner: str, *, slots: int, limits: Mapping[str, int], step: Callable[[datetime], Step]
    ) -> list[Claim]:
        """Atomically take up to `slots` of the oldest queued jobs of the engines in
        `limits` (oldest first), never letting more than `limits[engine]` of an engine,
        nor more than a job's `account_limit` of its account, run at once across all
        workers (jobs over a limit stay queued), and apply `step(now)` to them, `now`
        being the time the claim runs."""
        claims = await self.claim_events(owner, slots=slots, limits=limits, step=step)
        return [Claim(job=j, owner=owner, attempt=j.attempt) for j, _ in claims]

    async def claim_events(
        self, owner: str, *, slots: int, limits: Mapping[str, int], step: Callable[[datetime], Step]
    ) -> list[Transitioned]:
        if slots <= 0 or not limits:
            return []
        scan = min(256, max(32, slots * 4))
        return await self.db.write(_claim, owner, slots, dict(limits), step, scan)

    async def probe(self, engines: Iterable[str]) -> list[str]:
        """The engines (of `engines`) that have queued jobs: a read, not a claim."""
        return await self.db.read(_probe, list(engines))

    # -- fenced worker writes --------------------------------------------------------------

    async def fenced(self, claim: Claim, step: Step) -> Transitioned:
        """Apply `step` to a claimed job, fenced on its lease (LeaseLost if gone)."""
        return await self.db.write(_fenced, claim, step, utcnow())

    async def record(
        self, claim: Claim, items: Sequence[tuple[Step, Mapping[str, Any] | None]]
    ) -> list[Transitioned]:
        """Progress, outputs (the step and the output row) and log lines of a claimed
        job, in order, in one transaction (LeaseLost if the lease is gone)."""
        return await self.db.write(_record, claim, list(items), utcnow())

    async def release(self, claim: Claim, step: Step) -> Transitioned | None:
        return await self.db.write(_release, claim, step, utcnow())

    async def heartbeat(
        self, owner: str, claims: Iterable[Claim], lease_s: float
    ) -> tuple[set[str], set[str]]:
        """Renew the leases of all of a worker's jobs in one statement; returns (job ids
        still held, held job ids asked to cancel)."""
        attempts = {c.job.id: c.attempt for c in claims}
        if not attempts:
            return set(), set()
        until = utcnow() + timedelta(seconds=lease_s)
        rows = await self.db.write(_heartbeat, owner, attempts, until)
        held = {job_id for job_id, attempt, _ in rows if attempts.get(job_id) == attempt}
        cancel = {job_id for job_id, _, requested in rows if requested and job_id in held}
        return held, cancel

    # -- cancel, the reaper, retention -----------------------------------------------------

    async def cancel(
        self, job_id: str, *, queued: StepFor, requested: Step
    ) -> tuple[CancelOutcome, Transitioned | None, Job | None]:
        """Cancel a queued job (`queued(job)`), or ask a running one to stop (`requested`,
        once); returns the outcome, the transition made (if any) and the job."""
        return await self.db.write(_cancel, job_id, queued, requested, utcnow())

    async def reap(self, step_for: StepFor, limit: int = 500) -> list[Transitioned]:
        """Jobs whose lease lapsed, each given `step_for(job)` (fenced on its attempt).
        A read first: nothing is written unless some lease lapsed."""
        now = utcnow()
        if not await self.db.read(_due, _LAPSED, now):
            return []
        return await self.db.write(_reap, step_for, now, limit)

    async def expire(
        self, step: Step, *, job_id: str | None = None, limit: int = 500
    ) -> list[Transitioned]:
        """Mark ended jobs expired (one job, or up to `limit` past their `expires_at`) and
        drop their output records; the caller deletes the files."""
        now = utcnow()
        if job_id is None and not await self.db.read(_due, _EXPIRED, now):
            return []
        return await self.db.write(_expire_one, step, job_id, limit, now)

    async def fold_credits(self) -> int:
        """Fold settled credits into account balances (housekeeping; reads add the
        unfolded rest themselves)."""
        if not await self.db.read(_due, _UNFOLDED, utcnow()):
            return 0
        return await self.db.write(_fold_all)

    # -- the event log ---------------------------------------------------------------------

    async def events_after(self, job_id: str, seq: int, limit: int = 500) -> list[JobEvent]:
        return await self.db.read(_events_after, job_id, seq, limit)

    async def events_since(
        self, event_id: int, *, account_id: str | None = None, limit: int = 1000
    ) -> list[JobEvent]:
        """Events after `event_id`, in id order. On PostgreSQL only events of transactions
        older than every running one: ids are handed out as `xid << 20 | n`, so once this
        returned id N no event with an id below N can still appear."""
        return await self.db.read(_events_since, event_id, account_id, limit)

    async def last_event_id(self) -> int:
        return await self.db.read(_last_event_id)

    async def changes_since(
        self, event_id: int, limit: int = 1000
    ) -> list[tuple[JobEvent, str, bool]]:
        """Like `events_since` (all accounts), each with its job's engine and whether a
        webhook delivery was written with it."""
        return await self.db.read(_changes_since, event_id, limit)

    foreign_reader = staticmethod(foreign_reader)


__all__ = [
    "ENDED",
    "NON_TERMINAL",
    "EventType",
    "JobStore",
    "Transitioned",
    "foreign_reader",
]
