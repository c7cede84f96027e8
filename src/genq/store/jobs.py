"""Job SQL: creation, reads, the claim, fenced worker writes, cancel and the reaper.

Every change to a job bumps its `seq` and appends one row to `job_events` in the
same transaction, so the event log is exactly the history of the row. On PostgreSQL
the same transaction also sends a small `NOTIFY genq_events` per event, delivered to
listeners on commit (`genq.pgbus`); the rows stay the source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genq.errors import LeaseLost
from genq.ids import new_id, utcnow
from genq.store import ledger
from genq.store import tables as t
from genq.store.db import Database
from genq.store.dispatch import Tokens
from genq.store.idempotency import link
from genq.store.records import (
    ACTIVE,
    CANCELED,
    EXPIRED,
    FAILED,
    QUEUED,
    RUNNING,
    STARTING,
    SUCCEEDED,
    Claim,
    Job,
    JobEvent,
    JobOutput,
)

J = t.jobs.c

EVENTS_CHANNEL = "genq_events"
# pg_advisory_xact_lock key of the claim: one claimer at a time on PostgreSQL
CLAIM_LOCK = 7_405_311
# ... and of the event log's commit order (see `_log_events`)
EVENTS_LOCK = 7_405_313
_NOTIFY = sa.text(f"SELECT pg_notify('{EVENTS_CHANNEL}', p) FROM unnest(CAST(:ps AS text[])) AS p")


def notify_payload(job_id: str, seq: int, account_id: str, type: str, status: str) -> str:
    """`<job_id>:<seq>:<account_id>:<type>:<status>` (ids and names hold no colon)."""
    return f"{job_id}:{seq}:{account_id}:{type}:{status}"


async def _log_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Append rows to `job_events`.

    On PostgreSQL the rows are written last in the transaction, under an advisory lock
    held through the commit (`_write_events`), so event ids are handed out in commit
    order: a reader that has seen id N will never see a smaller id appear later, which
    is what resuming `/v1/events` after an id relies on. The lock is held only for that
    last insert and the commit; the holder never waits on anything else.
    """
    if conn.dialect.name != "postgresql":
        await conn.execute(sa.insert(t.job_events), _event_rows(rows))  # SQLite: in order
        return
    Database.before_commit(conn, "job_events", _write_events).extend(rows)


def _event_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's columns (`status` rides along for the notification)."""
    return [{k: v for k, v in r.items() if k != "status"} for r in rows]


async def _write_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(EVENTS_LOCK)))
    await conn.execute(sa.insert(t.job_events), _event_rows(rows))
    # delivered to LISTENers when (and only if) this transaction commits
    payloads = [
        notify_payload(r["job_id"], r["seq"], r["account_id"], r["type"], r["status"]) for r in rows
    ]
    await conn.execute(_NOTIFY, {"ps": payloads})


async def _bump(
    conn: AsyncConnection,
    where: sa.ColumnElement[bool],
    values: Mapping[str, Any],
    event: str,
    data: dict[str, Any],
) -> list[Job]:
    """Update matching jobs, bump their seq and log one event each; returns them."""
    now = utcnow()
    stmt = (
        sa.update(t.jobs)
        .where(where)
        .values(**values, seq=J.seq + 1, updated_at=now)
        .returning(*t.jobs.c)
    )
    rows = [Job.from_row(r) for r in (await conn.execute(stmt)).all()]
    if rows:
        outbox = []
        for job in rows:
            hook = webhook_event(event, job.status)
            if job.webhook and hook is not None and hook in job.webhook["events"]:
                outbox.append(outbox_row(job, hook, now))
        if outbox:
            await conn.execute(sa.insert(t.webhook_deliveries), outbox)
        if event == "completed":
            for job in rows:
                await ledger.settle(conn, job)
                if job.task == "train" and job.model_id:
                    await _settle_model(conn, job, now)
        await _log_events(
            conn,
            [
                {
                    "job_id": job.id,
                    "account_id": job.account_id,
                    "seq": job.seq,
                    "type": event,
                    "data": {**data, "status": job.status} if event != "log" else data,
                    "created_at": now,
                    "status": job.status,
                }
                for job in rows
            ],
        )
    return rows


async def _settle_model(conn: AsyncConnection, job: Job, now: datetime) -> None:
    """A training job ended: its model becomes ready with the `weights` output (or the
    first one), or failed; in the job's own transaction."""
    M, out = t.models.c, t.job_outputs.c
    artifact = None
    if job.status == SUCCEEDED:
        artifact = (
            await conn.execute(
                sa.select(out.path)
                .where(out.job_id == job.id)
                .order_by((out.name != "weights"), out.position)
                .limit(1)
            )
        ).scalar()
    values: dict[str, Any] = {"updated_at": now}
    if artifact is not None:
        values.update(status="ready", artifact=artifact, error=None)
    else:
        values.update(status="failed", error=job.error_message or f"training {job.status}")
    await conn.execute(
        sa.update(t.models).where(M.id == job.model_id, M.job_id == job.id).values(**values)
    )


def webhook_event(event: str, status: str) -> str | None:
    """The webhook event (started, progress, output, completed) a job event makes."""
    if event == "status":
        return "started" if status == RUNNING else None
    return event if event in ("progress", "output", "completed") else None


def outbox_row(job: Job, event: str, now: datetime) -> dict[str, Any]:
    assert job.webhook is not None
    return {
        "id": new_id("msg"),
        "job_id": job.id,
        "account_id": job.account_id,
        "event": event,
        "seq": job.seq,
        "url": job.webhook["url"],
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _fence(claim: Claim) -> sa.ColumnElement[bool]:
    return sa.and_(
        J.id == claim.job.id,
        J.attempt == claim.attempt,
        J.lease_owner == claim.owner,
        J.status.in_(ACTIVE),
    )


class JobStore:
    def __init__(self, db: Database, tokens: Tokens | None = None) -> None:
        self.db = db
        self.tokens = tokens  # Procrastinate dispatch (genq.store.dispatch), else None

    async def _bump(
        self,
        conn: AsyncConnection,
        where: sa.ColumnElement[bool],
        values: Mapping[str, Any],
        event: str,
        data: dict[str, Any],
    ) -> list[Job]:
        """`_bump`, plus Procrastinate's side of the change in the same transaction: a
        token for each job that became queued, an abort for each running attempt asked
        to cancel, one spare token less for each queued job canceled."""
        rows = await _bump(conn, where, values, event, data)
        if self.tokens is None or not rows:
            return rows
        status = values.get("status")
        if status == QUEUED:
            await self.tokens.defer(conn, [j.engine for j in rows])
        elif status == CANCELED:
            await self.tokens.drop(conn, [j.engine for j in rows if j.started_at is None])
        elif data.get("cancel_requested"):
            await self.tokens.abort(conn, [j.dispatch_id for j in rows if j.dispatch_id])
        return rows

    # -- creation and reads ----------------------------------------------------------

    async def create(
        self, values: dict[str, Any], idempotency: tuple[str, str] | None = None
    ) -> Job:
        now = utcnow()
        row = {
            "status": QUEUED,
            "progress": 0.0,
            "seq": 1,
            "attempt": 0,
            "created_at": now,
            "updated_at": now,
            **values,
        }
        async with self.db.write() as conn:
            await conn.execute(sa.insert(t.jobs).values(**row))
            if self.tokens is not None:  # the token commits (or not) with the job
                await self.tokens.defer(conn, [row["engine"]])
            await ledger.hold(conn, row["account_id"], row["id"], row.get("credits_estimate", 0))
            if idempotency is not None:
                await link(conn, *idempotency, row["id"])
            await _log_events(
                conn,
                [
                    {
                        "job_id": row["id"],
                        "account_id": row["account_id"],
                        "seq": 1,
                        "type": "status",
                        "data": {"status": QUEUED},
                        "created_at": now,
                        "status": QUEUED,
                    }
                ],
            )
            job = (await conn.execute(sa.select(t.jobs).where(J.id == row["id"]))).one()
        return Job.from_row(job)

    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.jobs).where(J.id == job_id))).first()
        return Job.from_row(row) if row else None

    async def get_with_outputs(self, job_id: str) -> tuple[Job, list[JobOutput]] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.jobs).where(J.id == job_id))).first()
            if row is None:
                return None
            outs = await conn.execute(
                sa.select(t.job_outputs)
                .where(t.job_outputs.c.job_id == job_id)
                .order_by(t.job_outputs.c.position)
            )
            return Job.from_row(row), [JobOutput.from_row(o) for o in outs.all()]

    async def outputs_for(self, job_ids: Sequence[str]) -> dict[str, list[JobOutput]]:
        result: dict[str, list[JobOutput]] = {job_id: [] for job_id in job_ids}
        if not job_ids:
            return result
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(t.job_outputs)
                .where(t.job_outputs.c.job_id.in_(job_ids))
                .order_by(t.job_outputs.c.job_id, t.job_outputs.c.position)
            )
            for r in rows.all():
                out = JobOutput.from_row(r)
                result[out.job_id].append(out)
        return result

    async def output(self, job_id: str, name: str) -> JobOutput | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(t.job_outputs).where(
                        t.job_outputs.c.job_id == job_id, t.job_outputs.c.name == name
                    )
                )
            ).first()
        return JobOutput.from_row(row) if row else None

    async def page(
        self,
        account_id: str,
        *,
        status: Sequence[str] = (),
        engine: str | None = None,
        limit: int = 20,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        """Newest first; `before` is the keyset cursor (created_at, id) of the last row seen."""
        stmt = sa.select(t.jobs).where(J.account_id == account_id)
        if status:
            stmt = stmt.where(J.status.in_(status))
        if engine:
            stmt = stmt.where(J.engine == engine)
        if before is not None:
            stmt = stmt.where(sa.tuple_(J.created_at, J.id) < sa.tuple_(*before))
        stmt = stmt.order_by(J.created_at.desc(), J.id.desc()).limit(limit)
        async with self.db.read() as conn:
            return [Job.from_row(r) for r in (await conn.execute(stmt)).all()]

    async def queue_position(self, job: Job) -> int:
        """0-based count of queued jobs of the same engine ahead of this one."""
        stmt = sa.select(sa.func.count()).where(
            J.status == QUEUED,
            J.engine == job.engine,
            sa.tuple_(J.created_at, J.id) < sa.tuple_(job.created_at, job.id),
        )
        async with self.db.read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def recent_durations(self, engine: str, limit: int = 20) -> list[float]:
        stmt = (
            sa.select(J.started_at, J.completed_at)
            .where(J.engine == engine, J.status == "succeeded", J.started_at.is_not(None))
            .order_by(J.completed_at.desc())
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(done - start).total_seconds() for start, done in rows if done and start]

    async def status_counts(self) -> dict[tuple[str, str], int]:
        """Non-terminal jobs by (status, engine)."""
        stmt = (
            sa.select(J.status, J.engine, sa.func.count())
            .where(J.status.in_((QUEUED, *ACTIVE)))
            .group_by(J.status, J.engine)
        )
        async with self.db.read() as conn:
            return {(s, e): int(n) for s, e, n in (await conn.execute(stmt)).all()}

    # -- the claim -------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        *,
        slots: int,
        limits: Mapping[str, int],
        lease_s: float,
        account_limits: Mapping[str, int] | None = None,
        dispatch_id: int | None = None,
    ) -> list[Claim]:
        """Atomically take up to `slots` of the oldest queued jobs of the engines in
        `limits`, never letting more than `limits[engine]` of an engine, nor more than
        `account_limits[plan]` of one account, run at once across all workers. Jobs over
        an account's limit stay queued (they are not rejected). `dispatch_id`: the
        Procrastinate token taking the job (then `slots` is 1)."""
        if slots <= 0 or not limits:
            return []
        account_limits = account_limits or {}
        now = utcnow()
        A = t.accounts.c
        async with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                # One claimer at a time, so the running counts below stay true: only a
                # claim raises them, and (READ COMMITTED) every statement after the lock
                # sees what the previous claimer committed.
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLAIM_LOCK)))
            candidates = (
                await conn.execute(
                    sa.select(J.id, J.engine, J.account_id, A.plan)
                    .join(t.accounts, A.id == J.account_id)
                    .where(J.status == QUEUED, J.engine.in_(list(limits)))
                    .order_by(J.created_at, J.id)
                    .limit(max(200, slots * 20))
                )
            ).all()
            if not candidates:
                return []
            by_engine = await self._active_counts(conn, J.engine, {c.engine for c in candidates})
            by_account = await self._active_counts(
                conn, J.account_id, {c.account_id for c in candidates}
            )
            chosen: list[str] = []
            for c in candidates:
                if len(chosen) >= slots:
                    break
                if by_engine.get(c.engine, 0) >= limits[c.engine]:
                    continue
                if by_account.get(c.account_id, 0) >= account_limits.get(c.plan, 1 << 30):
                    continue
                chosen.append(c.id)
                by_engine[c.engine] = by_engine.get(c.engine, 0) + 1
                by_account[c.account_id] = by_account.get(c.account_id, 0) + 1
            if not chosen:
                return []
            jobs = await self._bump(
                conn,
                sa.and_(J.id.in_(chosen), J.status == QUEUED),
                {
                    "status": STARTING,
                    "attempt": J.attempt + 1,
                    "lease_owner": owner,
                    "lease_expires_at": now + timedelta(seconds=lease_s),
                    "started_at": sa.func.coalesce(J.started_at, now),
                    "progress": 0.0,
                    "message": None,
                    "dispatch_id": dispatch_id,
                },
                "status",
                {"owner": owner},
            )
            rerun = [j.id for j in jobs if j.attempt > 1]
            if rerun:  # outputs of an earlier, lost attempt are void
                await conn.execute(
                    sa.delete(t.job_outputs).where(t.job_outputs.c.job_id.in_(rerun))
                )
        order = {job_id: i for i, job_id in enumerate(chosen)}
        jobs.sort(key=lambda j: order[j.id])
        return [Claim(job=j, owner=owner, attempt=j.attempt) for j in jobs]

    @staticmethod
    async def _active_counts(
        conn: AsyncConnection, column: sa.ColumnElement[str], keys: set[str]
    ) -> dict[str, int]:
        rows = await conn.execute(
            sa.select(column, sa.func.count())
            .where(J.status.in_(ACTIVE), column.in_(list(keys)))
            .group_by(column)
        )
        return {k: int(n) for k, n in rows.all()}

    async def has_queued(self, engine: str) -> bool:
        async with self.db.read() as conn:
            row = await conn.execute(
                sa.select(J.id).where(J.status == QUEUED, J.engine == engine).limit(1)
            )
            return row.first() is not None

    async def top_up_tokens(self) -> int:
        """Procrastinate: defer a token for each queued job that lacks one (a safety net;
        the job transactions keep them in step)."""
        if self.tokens is None:
            return 0
        async with self.db.write() as conn:
            return await self.tokens.top_up(conn)

    async def waiting_tokens(self) -> dict[str, int]:
        """Procrastinate tokens not yet taken, by engine ({} without Procrastinate)."""
        if self.tokens is None:
            return {}
        async with self.db.read() as conn:
            return await self.tokens.waiting(conn)

    async def account_counts(self, account_id: str) -> dict[str, int]:
        """The account's non-terminal jobs by status."""
        stmt = (
            sa.select(J.status, sa.func.count())
            .where(J.account_id == account_id, J.status.in_((QUEUED, *ACTIVE)))
            .group_by(J.status)
        )
        async with self.db.read() as conn:
            return {s: int(n) for s, n in (await conn.execute(stmt)).all()}

    async def active_count(self, account_id: str) -> int:
        async with self.db.read() as conn:
            value = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        J.account_id == account_id, J.status.in_(ACTIVE)
                    )
                )
            ).scalar_one()
        return int(value)

    # -- fenced worker writes --------------------------------------------------------

    async def _fenced(
        self, claim: Claim, values: Mapping[str, Any], event: str, data: dict[str, Any]
    ) -> Job:
        async with self.db.write() as conn:
            rows = await self._bump(conn, _fence(claim), values, event, data)
        if not rows:
            raise LeaseLost(f"lease on {claim.job.id} attempt {claim.attempt} is gone")
        return rows[0]

    async def mark_running(self, claim: Claim, message: str | None = None) -> Job:
        return await self._fenced(claim, {"status": RUNNING, "message": message}, "status", {})

    async def progress(self, claim: Claim, pct: float, message: str | None) -> Job:
        values: dict[str, Any] = {"progress": pct}
        if message is not None:
            values["message"] = message
        return await self._fenced(claim, values, "progress", {"progress": pct, "message": message})

    async def log(self, claim: Claim, level: str, message: str) -> Job:
        return await self._fenced(claim, {}, "log", {"level": level, "message": message})

    async def add_output(self, claim: Claim, output: dict[str, Any]) -> Job:
        async with self.db.write() as conn:
            rows = await self._bump(
                conn,
                _fence(claim),
                {},
                "output",
                {k: output[k] for k in ("name", "kind", "content_type", "bytes")},
            )
            if not rows:
                raise LeaseLost(f"lease on {claim.job.id} attempt {claim.attempt} is gone")
            position = (
                await conn.execute(
                    sa.select(sa.func.count()).where(t.job_outputs.c.job_id == claim.job.id)
                )
            ).scalar_one()
            await conn.execute(
                sa.insert(t.job_outputs).values(
                    job_id=claim.job.id, position=position, created_at=utcnow(), **output
                )
            )
        return rows[0]

    async def finish(
        self,
        claim: Claim,
        status: str,
        *,
        error: tuple[str, str, bool] | None = None,
        credits_used: int = 0,
        message: str | None = None,
    ) -> Job:
        """End a claimed job (succeeded, failed or canceled), fenced on its lease."""
        values: dict[str, Any] = {
            "status": status,
            "completed_at": utcnow(),
            "lease_owner": None,
            "lease_expires_at": None,
            "credits_used": credits_used,
            "credits_refunded": 0 if status == "succeeded" else J.credits_estimate,
            "message": message,
        }
        if status == "succeeded":
            values["progress"] = 100.0
        if error:
            values.update(error_code=error[0], error_message=error[1], error_retryable=error[2])
        data: dict[str, Any] = {}
        if error:
            data["error"] = {"code": error[0], "message": error[1], "retryable": error[2]}
        return await self._fenced(claim, values, "completed", data)

    async def release(self, claim: Claim, message: str) -> Job | None:
        """Give a claimed job back to the queue (graceful shutdown)."""
        async with self.db.write() as conn:
            rows = await self._bump(
                conn,
                _fence(claim),
                {
                    "status": QUEUED,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "progress": 0.0,
                    "message": message,
                },
                "status",
                {"message": message},
            )
        return rows[0] if rows else None

    async def heartbeat(
        self, owner: str, claims: Iterable[Claim], lease_s: float
    ) -> tuple[set[str], set[str]]:
        """Renew leases; returns (job ids still held, held job ids asked to cancel)."""
        by_id = {c.job.id: c for c in claims}
        if not by_id:
            return set(), set()
        held: set[str] = set()
        cancel: set[str] = set()
        expires = utcnow() + timedelta(seconds=lease_s)
        async with self.db.write() as conn:
            for c in by_id.values():
                row = (
                    await conn.execute(
                        sa.update(t.jobs)
                        .where(_fence(c))
                        .values(lease_expires_at=expires)
                        .returning(J.id, J.cancel_requested_at)
                    )
                ).first()
                if row is not None:
                    held.add(row.id)
                    if row.cancel_requested_at is not None:
                        cancel.add(row.id)
        return held, cancel

    # -- cancel and the reaper -------------------------------------------------------

    async def cancel(self, job_id: str) -> tuple[str, Job | None]:
        """Cancel: ("canceled", job) if it was queued, ("requested", job) if it is running,
        ("terminal", job) if it had already ended, ("missing", None)."""
        now = utcnow()
        async with self.db.write() as conn:
            rows = await self._bump(
                conn,
                sa.and_(J.id == job_id, J.status == QUEUED),
                {
                    "status": CANCELED,
                    "completed_at": now,
                    "credits_refunded": J.credits_estimate,
                    "error_code": "canceled",
                    "error_message": "canceled before it started",
                    "error_retryable": False,
                    "message": "canceled before it started",
                },
                "completed",
                {
                    "error": {
                        "code": "canceled",
                        "message": "canceled before it started",
                        "retryable": False,
                    }
                },
            )
            if rows:
                return "canceled", rows[0]
            rows = await self._bump(
                conn,
                sa.and_(J.id == job_id, J.status.in_(ACTIVE), J.cancel_requested_at.is_(None)),
                {"cancel_requested_at": now, "message": "cancel requested"},
                "status",
                {"cancel_requested": True, "message": "cancel requested"},
            )
            if rows:
                return "requested", rows[0]
            row = (await conn.execute(sa.select(t.jobs).where(J.id == job_id))).first()
        if row is None:
            return "missing", None
        job = Job.from_row(row)
        return ("requested" if job.status in ACTIVE else "terminal"), job

    async def reap(self, max_attempts: int) -> list[Job]:
        """Jobs whose lease lapsed: re-queued (attempts left), else failed `worker_lost`;
        canceled if a cancel was pending."""
        now = utcnow()
        lapsed = sa.and_(J.status.in_(ACTIVE), J.lease_expires_at < now)
        changed: list[Job] = []
        async with self.db.write() as conn:
            changed += await self._bump(
                conn,
                sa.and_(lapsed, J.cancel_requested_at.is_not(None)),
                {
                    "status": CANCELED,
                    "completed_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "credits_refunded": J.credits_estimate,
                    "error_code": "canceled",
                    "error_message": "canceled while its worker was lost",
                    "error_retryable": False,
                },
                "completed",
                {"error": {"code": "canceled", "message": "canceled", "retryable": False}},
            )
            changed += await self._bump(
                conn,
                sa.and_(lapsed, J.attempt < max_attempts),
                {
                    "status": QUEUED,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "progress": 0.0,
                    "message": "re-queued: its worker stopped answering",
                },
                "status",
                {"message": "re-queued: its worker stopped answering"},
            )
            msg = f"worker lost {max_attempts} times"
            changed += await self._bump(
                conn,
                lapsed,
                {
                    "status": FAILED,
                    "completed_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                    "credits_refunded": J.credits_estimate,
                    "error_code": "worker_lost",
                    "error_message": msg,
                    "error_retryable": True,
                    "message": msg,
                },
                "completed",
                {"error": {"code": "worker_lost", "message": msg, "retryable": True}},
            )
        return changed

    # -- retention ----------------------------------------------------------------------

    async def expire(self, *, job_id: str | None = None, limit: int = 500) -> list[Job]:
        """Mark ended jobs expired (one job, or up to `limit` past their `expires_at`) and
        drop their output records; the caller deletes the files."""
        ended = J.status.in_((SUCCEEDED, FAILED, CANCELED))
        if job_id is not None:
            where = sa.and_(J.id == job_id, ended)
        else:
            due = (
                sa.select(J.id)
                .where(ended, J.expires_at < utcnow())
                .order_by(J.expires_at)
                .limit(limit)
            )
            where = J.id.in_(due.scalar_subquery())
        async with self.db.write() as conn:
            rows = await self._bump(
                conn,
                where,
                {"status": EXPIRED, "message": "expired"},
                "status",
                {"message": "expired: outputs deleted"},
            )
            if rows:
                await conn.execute(
                    sa.delete(t.job_outputs).where(t.job_outputs.c.job_id.in_([j.id for j in rows]))
                )
        return rows

    # -- the event log ---------------------------------------------------------------

    async def events_after(self, job_id: str, seq: int, limit: int = 500) -> list[JobEvent]:
        E = t.job_events.c
        stmt = (
            sa.select(t.job_events)
            .where(E.job_id == job_id, E.seq > seq)
            .order_by(E.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [JobEvent.from_row(r) for r in (await conn.execute(stmt)).all()]

    async def events_since(
        self, event_id: int, *, account_id: str | None = None, limit: int = 1000
    ) -> list[JobEvent]:
        E = t.job_events.c
        stmt = sa.select(t.job_events).where(E.id > event_id)
        if account_id is not None:
            stmt = stmt.where(E.account_id == account_id)
        stmt = stmt.order_by(E.id).limit(limit)
        async with self.db.read() as conn:
            return [JobEvent.from_row(r) for r in (await conn.execute(stmt)).all()]

    async def events_by_ids(self, ids: Sequence[int]) -> list[JobEvent]:
        """The events among `ids` that exist (committed), in id order."""
        if not ids:
            return []
        E = t.job_events.c
        stmt = sa.select(t.job_events).where(E.id.in_(list(ids))).order_by(E.id)
        async with self.db.read() as conn:
            return [JobEvent.from_row(r) for r in (await conn.execute(stmt)).all()]

    async def last_event_id(self) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(t.job_events.c.id)))).scalar()
        return int(value or 0)
