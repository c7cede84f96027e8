"""Executing a `genq.lifecycle.Step` against the job rows a `where` selects: the row
update, its event, and the step's effects (webhook outbox, ledger, model, outputs),
all in the caller's transaction.

SQLite: `UPDATE ... RETURNING` and then one statement per effect, in the writer's
transaction. PostgreSQL: one statement, a chain of data-modifying CTEs hanging off the
update, so a transition is one round trip and atomic on its own. Event ids on
PostgreSQL come from a trigger (migration 0005): the inserting transaction's id
shifted left by 20 bits plus a counter, so that ids below the oldest running
transaction's are final (see `genq.store.jobs.JobStore.events_since`); the trigger also
sends the NOTIFY that other processes listen to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from genq.lifecycle import EventType, LedgerKind, Step, webhook_wants
from genq.store.db import Cx
from genq.store.records import Job, JobEvent

JOB_COLS = Job.select()
UPD_COLS = Job.select("upd")
EVENTS_CHANNEL = "genq_events"
EVENT_ID_SHIFT = 20  # PostgreSQL: event id = (xid << 20) + n


def value(cx: Cx, v: Any) -> Any:
    """A Python value as a statement parameter."""
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, datetime):
        return cx.ts(v)
    if isinstance(v, dict | list):
        return cx.json(v)
    return v


def sets(cx: Cx, values: Mapping[str, Any], params: dict[str, Any]) -> str:
    """`SET` assignments for a step's values (a first start is never overwritten)."""
    parts = []
    for col, v in values.items():
        params[f"v_{col}"] = value(cx, v)
        if col == "started_at":
            parts.append(f'"{col}" = coalesce("{col}", %(v_{col})s)')
        else:
            parts.append(f'"{col}" = %(v_{col})s')
    return ", ".join(parts)


def event_data(step: Step, status: str) -> dict[str, Any]:
    if step.event == EventType.LOG:
        return dict(step.data)
    return {**step.data, "status": status}


def outbox_id(job: Job) -> str:
    """The webhook-id of a job event's delivery: stable, unique per (job, seq)."""
    return f"msg_{job.id.removeprefix('job_')}_{job.seq}"


def apply(
    cx: Cx,
    step: Step,
    where: str,
    params: Mapping[str, Any],
    now: datetime,
    *,
    extra_sets: str = "",
) -> list[tuple[Job, JobEvent]]:
    """Apply `step` to the jobs matching `where`; returns them with their new event."""
    if cx.postgres:
        return _apply_pg(cx, step, where, params, now, extra_sets)
    p: dict[str, Any] = dict(params)
    assignments = sets(cx, step.values, p)
    p["now"] = cx.ts(now)
    head = f"{assignments}, " if assignments else ""
    rows = cx.all(
        f"UPDATE jobs SET {head}{extra_sets}seq = seq + 1, updated_at = %(now)s"
        f" WHERE {where} RETURNING {JOB_COLS}",
        p,
    )
    if not rows:
        return []
    jobs = [Job.of(r) for r in rows]
    return effects_sqlite(cx, step, jobs, now)


def effects_sqlite(
    cx: Cx, step: Step, jobs: Sequence[Job], now: datetime
) -> list[tuple[Job, JobEvent]]:
    """The step's effects for jobs just updated (SQLite)."""
    ts = cx.ts(now)
    if step.clear_outputs:
        cx.execute(
            f"DELETE FROM job_outputs WHERE job_id {cx.in_list('ids')}",
            {"ids": cx.array(j.id for j in jobs)},
        )
    hooked = [j for j in jobs if webhook_wants(j.webhook, step.hook)]
    if hooked:
        insert_outbox(cx, hooked, str(step.hook), ts)
    if step.ledger:
        (job,) = jobs
        write_settlement(cx, job, step.ledger, ts)
    if step.model is not None:
        (job,) = jobs
        cx.execute(
            "UPDATE models SET status = %(status)s, artifact = %(artifact)s,"
            " error = %(error)s, updated_at = %(now)s WHERE id = %(id)s AND job_id = %(job)s",
            {
                "status": "ready" if step.model.artifact else "failed",
                "artifact": step.model.artifact,
                "error": step.model.error,
                "now": ts,
                "id": step.model.model_id,
                "job": job.id,
            },
        )
    return insert_events(cx, [(j, event_data(step, j.status)) for j in jobs], step.event, now)


def insert_outbox(cx: Cx, jobs: Sequence[Job], hook: str, ts: Any) -> None:
    p: dict[str, Any] = {"hook": hook, "now": ts}
    rows = []
    for i, j in enumerate(jobs):
        assert j.webhook is not None
        p[f"i{i}"], p[f"j{i}"], p[f"a{i}"] = outbox_id(j), j.id, j.account_id
        p[f"s{i}"], p[f"u{i}"] = j.seq, j.webhook["url"]
        rows.append(
            f"(%(i{i})s, %(j{i})s, %(a{i})s, %(hook)s, %(s{i})s, %(u{i})s,"
            " 'pending', 0, %(now)s, %(now)s)"
        )
    cx.execute(
        "INSERT INTO webhook_deliveries (id, job_id, account_id, event, seq, url, status,"
        " attempts, next_attempt_at, created_at) VALUES " + ", ".join(rows),
        p,
    )


def write_settlement(cx: Cx, job: Job, ledger: Sequence[tuple[LedgerKind, int]], ts: Any) -> None:
    """Ledger rows of an ended job, and what it gives back, not yet folded into the
    account's balance (SQLite)."""
    p: dict[str, Any] = {"a": job.account_id, "j": job.id, "now": ts}
    rows = []
    for i, (kind, amount) in enumerate(ledger):
        p[f"k{i}"], p[f"n{i}"] = kind.value, amount
        rows.append(f"(%(a)s, %(j)s, %(k{i})s, %(n{i})s, %(now)s)")
    cx.execute(
        "INSERT INTO credit_ledger (account_id, job_id, kind, amount, created_at) VALUES "
        + ", ".join(rows),
        p,
    )
    back = sum(n for k, n in ledger if k == LedgerKind.RELEASE)
    if back:
        cx.execute(
            "INSERT INTO credit_unfolded (account_id, amount, created_at)"
            " VALUES (%(a)s, %(n)s, %(now)s)",
            {"a": job.account_id, "n": back, "now": ts},
        )


def insert_events(
    cx: Cx, items: Sequence[tuple[Job, dict[str, Any]]], type: EventType, now: datetime
) -> list[tuple[Job, JobEvent]]:
    """One event per (job, data) (SQLite: ids in commit order)."""
    p: dict[str, Any] = {"t": type.value, "now": cx.ts(now)}
    rows = []
    for i, (job, data) in enumerate(items):
        p[f"j{i}"], p[f"a{i}"], p[f"s{i}"] = job.id, job.account_id, job.seq
        p[f"d{i}"] = cx.json(data)
        rows.append(f"(%(j{i})s, %(a{i})s, %(s{i})s, %(t)s, %(d{i})s, %(now)s)")
    ids = cx.all(
        "INSERT INTO job_events (job_id, account_id, seq, type, data, created_at) VALUES "
        + ", ".join(rows)
        + " RETURNING id",
        p,
    )
    out = []
    for (job, data), (event_id,) in zip(items, ids, strict=True):
        out.append((job, JobEvent(event_id, job.id, job.account_id, job.seq, type, data, now)))
        cx.last_event_id = max(cx.last_event_id, event_id)
    return out


# -- PostgreSQL: one statement per step ----------------------------------------------------


def effects_pg(step: Step, p: dict[str, Any], cx: Cx, now: datetime, *, claim: bool = False) -> str:
    """The CTEs of a step's effects on `upd` (the updated rows), and their params."""
    ctes = []
    p["t"] = step.event.value
    p["d"] = cx.json(dict(step.data))
    p["now"] = now
    data = (
        "%(d)s::jsonb"
        if step.event == EventType.LOG
        else ("%(d)s::jsonb || jsonb_build_object('status', upd.status)")
    )
    ctes.append(
        "ev AS (INSERT INTO job_events (job_id, account_id, seq, type, data, created_at)"
        f" SELECT upd.id, upd.account_id, upd.seq, %(t)s, {data}, %(now)s"
        " FROM upd ORDER BY upd.created_at, upd.id"
        " RETURNING id AS event_id, job_id, seq, type, data, created_at)"
    )
    hooked = "false"
    if step.hook is not None:
        hooked = "EXISTS (SELECT 1 FROM hook WHERE hook.job_id = upd.id)"
        p["hook"] = step.hook.value
        ctes.append(
            "hook AS (INSERT INTO webhook_deliveries (id, job_id, account_id, event, seq, url,"
            " status, attempts, next_attempt_at, created_at)"
            " SELECT 'msg_' || substr(upd.id, 5) || '_' || upd.seq, upd.id, upd.account_id,"
            " %(hook)s::text, upd.seq, upd.webhook->>'url', 'pending', 0, %(now)s, %(now)s FROM upd"
            " WHERE upd.webhook IS NOT NULL AND (upd.webhook->'events') ? %(hook)s::text"
            " RETURNING job_id)"
        )
    if step.ledger:
        values = []
        for i, (kind, amount) in enumerate(step.ledger):
            p[f"k{i}"], p[f"n{i}"] = kind.value, amount
            values.append(f"(%(k{i})s, %(n{i})s::bigint)")
        ctes.append(
            "led AS (INSERT INTO credit_ledger (account_id, job_id, kind, amount, created_at)"
            " SELECT upd.account_id, upd.id, v.kind, v.amount, %(now)s FROM upd,"
            f" (VALUES {', '.join(values)}) AS v(kind, amount))"
        )
        back = sum(n for k, n in step.ledger if k == LedgerKind.RELEASE)
        if back:
            p["back"] = back
            ctes.append(
                "unf AS (INSERT INTO credit_unfolded (account_id, amount, created_at)"
                " SELECT upd.account_id, %(back)s, %(now)s FROM upd)"
            )
    if step.model is not None:
        p["m_status"] = "ready" if step.model.artifact else "failed"
        p["m_artifact"], p["m_error"], p["m_id"] = (
            step.model.artifact,
            step.model.error,
            step.model.model_id,
        )
        ctes.append(
            "mdl AS (UPDATE models SET status = %(m_status)s, artifact = %(m_artifact)s,"
            " error = %(m_error)s, updated_at = %(now)s FROM upd"
            " WHERE models.id = %(m_id)s AND models.job_id = upd.id)"
        )
    if step.clear_outputs:
        ctes.append("gone AS (DELETE FROM job_outputs USING upd WHERE job_outputs.job_id = upd.id)")
    if step.event in (EventType.OUTPUT, EventType.COMPLETED):
        outputs: str | None = OUTPUTS_JSON.format(rows="upd")
    elif step.clear_outputs or claim:
        outputs = "'[]'::jsonb"
    else:
        outputs = None  # unchanged
    ctes.append(notify_cte("upd", hooked, row=True, outputs=outputs))
    return ", ".join(ctes)


OUTPUTS_JSON = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_array(o.name, o.kind, o.content_type, o.bytes,"
    " o.sha256, o.path, o.meta, o.position) ORDER BY o.position), '[]') FROM job_outputs o"
    " WHERE o.job_id = {rows}.id)"
)


def notify_cte(rows: str, hooked: str, *, row: bool = False, outputs: str | None = None) -> str:
    """`nt`: NOTIFY genq_events with each new event (`ev`) of the jobs in `rows`, with
    the job's engine, whether a webhook delivery was written and which process wrote it
    (`origin`: its connections' application_name); delivered on commit. With `row`,
    also the job's row after the change and `outputs` (an SQL expression, when the
    change touched them), so another process can write its cache through without a
    read. NOTIFY takes 8000 bytes at most: past that the row stays out, then the data
    (readers fetch what is missing)."""
    head = (
        "'id', ev.event_id, 'job_id', ev.job_id, 'account_id',"
        f" {rows}.account_id, 'engine', {rows}.engine, 'webhook', {hooked}, 'seq', ev.seq,"
        f" 'type', ev.type, 'status', {rows}.status, 'created_at', ev.created_at,"
        " 'origin', current_setting('application_name')"
    )
    mid = f"json_build_object({head}, 'data', ev.data)::text"
    short = f"json_build_object({head})::text"
    if row:
        extra = f", 'job', to_jsonb({rows})"
        if outputs is not None:
            extra += f", 'outputs', {outputs}"
        full = f"json_build_object({head}, 'data', ev.data{extra})::text"
        pick = (
            "CASE WHEN octet_length(x.full) <= 7900 THEN x.full"
            " WHEN octet_length(x.mid) <= 7900 THEN x.mid ELSE x.short END"
        )
        cols = f"{full} AS full, {mid} AS mid, {short} AS short"
    else:
        pick = "CASE WHEN octet_length(x.mid) <= 7900 THEN x.mid ELSE x.short END"
        cols = f"{mid} AS mid, {short} AS short"
    return (
        f"nt AS (SELECT pg_notify('{EVENTS_CHANNEL}', {pick}) FROM (SELECT {cols}"
        f" FROM ev JOIN {rows} ON {rows}.id = ev.job_id ORDER BY ev.event_id) AS x)"
    )


def _apply_pg(
    cx: Cx,
    step: Step,
    where: str,
    params: Mapping[str, Any],
    now: datetime,
    extra_sets: str,
) -> list[tuple[Job, JobEvent]]:
    p: dict[str, Any] = dict(params)
    assignments = sets(cx, step.values, p)
    head = f"{assignments}, " if assignments else ""
    sql = (
        f"WITH upd AS (UPDATE jobs SET {head}{extra_sets}seq = seq + 1, updated_at = %(now)s"
        f" WHERE {where} RETURNING {JOB_COLS}), {effects_pg(step, p, cx, now)}"
        f" SELECT {UPD_COLS}, ev.event_id FROM upd JOIN ev ON ev.job_id = upd.id"
        " CROSS JOIN (SELECT count(*) FROM nt) AS sent ORDER BY ev.event_id"
    )
    return rows_pg(cx.all(sql, p), step, now)


def rows_pg(rows: list[Any], step: Step, now: datetime) -> list[tuple[Job, JobEvent]]:
    out = []
    for row in rows:
        job = Job.of(row[:-1])
        data = event_data(step, job.status)
        out.append((job, JobEvent(row[-1], job.id, job.account_id, job.seq, step.event, data, now)))
    return out
