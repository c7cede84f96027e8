"""Upstream jobs SQL (genq as a gateway): the intent recorded before a create call, the
job parked once the upstream id is known, polls claimed with a lease (so exactly one
process reads a job's upstream status at a time, and another takes over when a process
dies), pushed callbacks, the end of the job, and accounts' own provider keys.

A tracker's writes to a job are fenced on its lease of the job's `upstream_jobs` row
(`TRACKED`), as a worker's are on the job's own lease.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genq.errors import LeaseLost
from genq.ids import utcnow
from genq.lifecycle import Step
from genq.store.db import Cx, Database, autocommit, dt_of, json_of
from genq.store.jobs import insert_output
from genq.store.records import Claim, Job, JobEvent
from genq.store.steps import JOB_COLS, apply

Transitioned = tuple[Job, JobEvent]

INTENT, TRACKING, DONE = "intent", "tracking", "done"
_ACTIVE = "('starting', 'running')"
WORKER_FENCE = (
    f"id = %(job_id)s AND attempt = %(attempt)s AND lease_owner = %(owner)s AND status IN {_ACTIVE}"
)
TRACKED = (
    f"id = %(job_id)s AND status IN {_ACTIVE} AND EXISTS (SELECT 1 FROM upstream_jobs u"
    " WHERE u.job_id = jobs.id AND u.owner = %(owner)s AND u.state <> 'done')"
)
_U_COLS = (
    "job_id, provider, state, upstream_id, byo, owner, polls, failures, pushed, upstream_status,"
    " created_at"
)


@dataclass(frozen=True, slots=True)
class Tracked:
    """A claimed upstream job: its tracking row and its job."""

    job: Job
    provider: str
    state: str
    upstream_id: str | None
    byo: bool
    polls: int
    failures: int
    pushed: Any
    upstream_status: str | None
    intent_at: datetime  # when the create call was about to go out


def _fence(claim: Claim) -> dict[str, Any]:
    return {"job_id": claim.job.id, "attempt": claim.attempt, "owner": claim.owner}


# -- the worker's side: intent and park ---------------------------------------------------


def _intent(cx: Cx, claim: Claim, provider: str, token_hash: str, byo: bool, now: datetime) -> bool:
    """Record that the create call is about to go out (fenced on the worker's lease).
    False when a row was there already: an earlier attempt got this far, so the create
    may have gone out, and the job must be reconciled, not created again."""
    ts = cx.ts(now)
    p = {**_fence(claim), "pr": provider, "th": token_hash, "byo": byo, "now": ts}
    if cx.one("SELECT 1 FROM upstream_jobs WHERE job_id = %(job_id)s", p) is not None:
        return False
    made = cx.one(
        "INSERT INTO upstream_jobs (job_id, provider, state, token_hash, byo, next_poll_at,"
        " created_at, updated_at) SELECT id, %(pr)s, 'intent', %(th)s, %(byo)s, %(now)s,"
        f" %(now)s, %(now)s FROM jobs WHERE {WORKER_FENCE} RETURNING 1",
        p,
    )
    if made is None:
        raise LeaseLost(f"lease on {claim.job.id} attempt {claim.attempt} is gone")
    return True


def _park(
    cx: Cx,
    claim: Claim,
    upstream_id: str | None,
    upstream_status: str | None,
    step: Step,
    next_poll_at: datetime,
    now: datetime,
) -> Transitioned | None:
    """The create call answered (`upstream_id`), or may have gone out (None: the
    tracker reconciles): the row keeps what is known, and the job lets go of the
    worker's lease (its slot) in the same transaction. None if the worker lost the
    lease meanwhile (the upstream id is kept all the same)."""
    ts = cx.ts(now)
    cx.execute(
        "UPDATE upstream_jobs SET state = %(st)s, upstream_id = coalesce(%(u)s, upstream_id),"
        " upstream_status = coalesce(%(us)s, upstream_status), next_poll_at = %(next)s,"
        " updated_at = %(now)s WHERE job_id = %(j)s AND state = 'intent'",
        {
            "st": TRACKING if upstream_id else INTENT,
            "u": upstream_id,
            "us": upstream_status,
            "next": cx.ts(next_poll_at),
            "now": ts,
            "j": claim.job.id,
        },
    )
    rows = apply(cx, step, WORKER_FENCE, _fence(claim), now)
    return rows[0] if rows else None


def _drop_intent(cx: Cx, claim: Claim) -> None:
    """The create call was answered with a refusal: nothing was made upstream."""
    cx.execute(
        "DELETE FROM upstream_jobs WHERE job_id = %(j)s AND state = 'intent'"
        " AND upstream_id IS NULL AND EXISTS (SELECT 1 FROM jobs"
        f" WHERE {WORKER_FENCE})",
        {**_fence(claim), "j": claim.job.id},
    )


# -- the tracker's side ---------------------------------------------------------------------


_DUE = (
    "u.state IN ('intent', 'tracking')"
    # (a job handed back to the queue by a stopping worker mid-create waits for its
    # next claim, which parks it for reconciling)
    f" AND j.status IN {_ACTIVE}"
    " AND (u.leased_until IS NULL OR u.leased_until <= %(now)s)"
    " AND (u.next_poll_at <= %(now)s OR u.pushed IS NOT NULL)"
    # an intent is the worker's while the worker holds the job
    " AND (u.state = 'tracking' OR j.lease_expires_at IS NULL OR j.lease_expires_at < %(now)s)"
)


def _due(cx: Cx, now: datetime, providers: Sequence[str]) -> bool:
    row = cx.one(
        f"SELECT 1 FROM upstream_jobs u JOIN jobs j ON j.id = u.job_id WHERE {_DUE}"
        f" AND u.provider {cx.in_list('pr')} LIMIT 1",
        {"now": cx.ts(now), "pr": cx.array(providers)},
    )
    return row is not None


@autocommit
def _claim(
    cx: Cx, owner: str, providers: Sequence[str], limit: int, now: datetime, until: datetime
) -> list[Tracked]:
    p = {
        "owner": owner,
        "until": cx.ts(until),
        "now": cx.ts(now),
        "n": limit,
        "pr": cx.array(providers),
    }
    # the lease is checked again on the row itself (a row another tracker took after
    # the inner select's snapshot is re-read when locked here, and then not taken)
    rows = cx.all(
        "UPDATE upstream_jobs SET owner = %(owner)s, leased_until = %(until)s"
        f" WHERE job_id IN (SELECT u.job_id FROM upstream_jobs u JOIN jobs j"
        f" ON j.id = u.job_id WHERE {_DUE} AND u.provider {cx.in_list('pr')}"
        " ORDER BY u.next_poll_at LIMIT %(n)s)"
        " AND (leased_until IS NULL OR leased_until <= %(now)s)"
        " AND state IN ('intent', 'tracking')"
        f" RETURNING {_U_COLS}",
        p,
    )
    if not rows:
        return []
    jobs = {
        r[0]: Job.of(r)
        for r in cx.all(
            f"SELECT {JOB_COLS} FROM jobs WHERE id {cx.in_list('ids')}",
            {"ids": cx.array(r[0] for r in rows)},
        )
    }
    out = []
    for job_id, provider, state, uid, byo, _o, polls, failures, pushed, us, at in rows:
        if job_id in jobs:
            out.append(
                Tracked(
                    jobs[job_id],
                    provider,
                    state,
                    uid,
                    bool(byo),
                    int(polls),
                    int(failures),
                    json_of(pushed),
                    us,
                    dt_of(at) or utcnow(),
                )
            )
    return out


def _renew(cx: Cx, owner: str, job_ids: Sequence[str], until: datetime) -> None:
    cx.execute(
        "UPDATE upstream_jobs SET leased_until = %(until)s WHERE owner = %(owner)s"
        f" AND job_id {cx.in_list('ids')} AND state <> 'done'",
        {"until": cx.ts(until), "owner": owner, "ids": cx.array(job_ids)},
    )


def _polled(
    cx: Cx,
    owner: str,
    job_id: str,
    step: Step | None,
    upstream_id: str | None,
    upstream_status: str | None,
    next_poll_at: datetime,
    failures: int,
    counted: bool,
    now: datetime,
    read: Any = None,
    pushes: bool = False,
) -> Transitioned | None:
    """A poll ended without ending the job: its news (`step`), the next poll's time,
    and the lease let go. The pushed body the poll read (`read`) is cleared; where the
    service `pushes`, unless another push replaced it meanwhile: that one is kept, and
    due at once (a service with no status read, such as Cog, would not tell it again)."""
    made = None
    if step is not None:
        rows = apply(cx, step, TRACKED, {"job_id": job_id, "owner": owner}, now)
        if not rows:
            raise LeaseLost(f"tracking lease on {job_id} is gone")
        made = rows[0]
    newer = False
    if pushes:  # (a service that pushes: one more read of the row, by its key)
        lock = " FOR UPDATE" if cx.postgres else ""
        current = cx.one(
            f"SELECT pushed FROM upstream_jobs WHERE job_id = %(j)s AND owner = %(owner)s{lock}",
            {"j": job_id, "owner": owner},
        )
        newer = current is not None and current[0] is not None and json_of(current[0]) != read
    if newer:
        next_poll_at = now
    row = cx.one(
        "UPDATE upstream_jobs SET owner = NULL, leased_until = NULL, next_poll_at = %(next)s,"
        f" failures = %(f)s, polls = polls + %(c)s{'' if newer else ', pushed = NULL'},"
        " state = CASE WHEN CAST(%(u)s AS TEXT) IS NULL THEN state ELSE 'tracking' END,"
        " upstream_id = coalesce(%(u)s, upstream_id),"
        " upstream_status = coalesce(%(us)s, upstream_status), updated_at = %(now)s"
        " WHERE job_id = %(j)s AND owner = %(owner)s AND state <> 'done' RETURNING 1",
        {
            "next": cx.ts(next_poll_at),
            "f": failures,
            "c": 1 if counted else 0,
            "u": upstream_id,
            "us": upstream_status,
            "now": cx.ts(now),
            "j": job_id,
            "owner": owner,
        },
    )
    if row is None:
        raise LeaseLost(f"tracking lease on {job_id} is gone")
    return made


def _ended(
    cx: Cx,
    owner: str,
    job_id: str,
    step: Step,
    outputs: Sequence[Mapping[str, Any]],
    upstream_status: str | None,
    counted: bool,
    now: datetime,
) -> Transitioned:
    """The upstream job ended: its outputs (copied into genq's storage already), the
    job's end (settlement and all) and the tracking row done, in one transaction."""
    ts = cx.ts(now)
    fence = {"job_id": job_id, "owner": owner}
    for out in outputs:
        insert_output(cx, out, TRACKED, fence, ts)
    rows = apply(cx, step, TRACKED, fence, now)
    if not rows:
        raise LeaseLost(f"tracking lease on {job_id} is gone")
    cx.execute(
        "UPDATE upstream_jobs SET state = 'done', owner = NULL, leased_until = NULL,"
        " pushed = NULL, polls = polls + %(c)s,"
        " upstream_status = coalesce(%(us)s, upstream_status), updated_at = %(now)s"
        " WHERE job_id = %(j)s",
        {"c": 1 if counted else 0, "us": upstream_status, "now": ts, "j": job_id},
    )
    return rows[0]


def _logged(
    cx: Cx, owner: str, job_id: str, steps: Sequence[Step], now: datetime
) -> list[Transitioned]:
    """Log lines a tracked job's service reported (Cog's `logs`), fenced on the tracking
    lease."""
    made = []
    for step in steps:
        rows = apply(cx, step, TRACKED, {"job_id": job_id, "owner": owner}, now)
        if not rows:
            raise LeaseLost(f"tracking lease on {job_id} is gone")
        made.append(rows[0])
    return made


def _requeue(cx: Cx, owner: str, job_id: str, step: Step, now: datetime) -> Transitioned:
    """The service lost the job (its Cog server stopped answering): the job goes back to
    the queue (`step`) and its tracking row is dropped, so the next attempt hands it over
    afresh (to another server)."""
    rows = apply(cx, step, TRACKED, {"job_id": job_id, "owner": owner}, now)
    if not rows:
        raise LeaseLost(f"tracking lease on {job_id} is gone")
    cx.execute("DELETE FROM upstream_jobs WHERE job_id = %(j)s", {"j": job_id})
    return rows[0]


@autocommit
def _push(cx: Cx, job_id: str, token_hash: str, body: Any, now: datetime) -> bool:
    row = cx.one(
        "UPDATE upstream_jobs SET pushed = %(b)s, next_poll_at = %(now)s, updated_at = %(now)s"
        " WHERE job_id = %(j)s AND token_hash = %(h)s AND state IN ('intent', 'tracking')"
        " RETURNING 1",
        {"b": cx.json(body), "now": cx.ts(now), "j": job_id, "h": token_hash},
    )
    return row is not None


def _push_unless_final(
    cx: Cx, job_id: str, token_hash: str, body: Any, now: datetime, final: Callable[[Any], bool]
) -> bool:
    """`_push` for a service whose pushes may arrive out of order (Cog's webhooks): a
    kept body that `final` says ends the job is not replaced by a later one."""
    lock = " FOR UPDATE" if cx.postgres else ""
    row = cx.one(
        "SELECT pushed FROM upstream_jobs WHERE job_id = %(j)s AND token_hash = %(h)s"
        f" AND state IN ('intent', 'tracking'){lock}",
        {"j": job_id, "h": token_hash},
    )
    if row is None:
        return False
    if row[0] is not None and final(json_of(row[0])):
        return True  # (the end is kept; this one came late)
    return _push(cx, job_id, token_hash, body, now)


def _token_of(cx: Cx, job_id: str) -> tuple[str, str] | None:
    row = cx.one("SELECT token_hash, state FROM upstream_jobs WHERE job_id = %(j)s", {"j": job_id})
    return (row[0], row[1]) if row else None


def _counts(cx: Cx) -> dict[str, dict[str, int]]:
    # (an intent or tracking row of a job that ended otherwise, e.g. canceled while
    # handed back to the queue, counts as done)
    rows = cx.all(
        "SELECT u.provider, CASE WHEN u.state <> 'done' AND j.status NOT IN"
        f" {_ACTIVE} THEN 'done' ELSE u.state END, count(*), coalesce(sum(u.polls), 0)"
        " FROM upstream_jobs u JOIN jobs j ON j.id = u.job_id GROUP BY 1, 2"
    )
    out: dict[str, dict[str, int]] = {}
    for provider, state, n, polls in rows:
        d = out.setdefault(provider, {"intent": 0, "tracking": 0, "done": 0, "polls": 0})
        d[state] = int(n)
        d["polls"] += int(polls)
    return out


# -- accounts' own keys ----------------------------------------------------------------------


def _put_key(
    cx: Cx, account_id: str, provider: str, ciphertext: str, last4: str, now: datetime
) -> None:
    ts = cx.ts(now)
    cx.execute(
        "INSERT INTO upstream_keys (account_id, provider, ciphertext, last4, created_at,"
        " updated_at) VALUES (%(a)s, %(p)s, %(c)s, %(l)s, %(t)s, %(t)s)"
        " ON CONFLICT (account_id, provider) DO UPDATE SET ciphertext = excluded.ciphertext,"
        " last4 = excluded.last4, updated_at = excluded.updated_at",
        {"a": account_id, "p": provider, "c": ciphertext, "l": last4, "t": ts},
    )


def _get_key(cx: Cx, account_id: str, provider: str) -> tuple[str, str, Any] | None:
    row = cx.one(
        "SELECT ciphertext, last4, updated_at FROM upstream_keys"
        " WHERE account_id = %(a)s AND provider = %(p)s",
        {"a": account_id, "p": provider},
    )
    return (row[0], row[1], row[2]) if row else None


def _delete_key(cx: Cx, account_id: str, provider: str) -> bool:
    row = cx.one(
        "DELETE FROM upstream_keys WHERE account_id = %(a)s AND provider = %(p)s RETURNING 1",
        {"a": account_id, "p": provider},
    )
    return row is not None


class UpstreamStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def intent(
        self, claim: Claim, provider: str, token_hash: str, byo: bool, now: datetime
    ) -> bool:
        return await self.db.write(_intent, claim, provider, token_hash, byo, now)

    async def park(
        self,
        claim: Claim,
        upstream_id: str | None,
        upstream_status: str | None,
        step: Step,
        next_poll_at: datetime,
        now: datetime,
    ) -> Transitioned | None:
        return await self.db.write(
            _park, claim, upstream_id, upstream_status, step, next_poll_at, now
        )

    async def drop_intent(self, claim: Claim) -> None:
        await self.db.write(_drop_intent, claim)

    async def due(self, now: datetime, providers: Sequence[str]) -> bool:
        return await self.db.read(_due, now, list(providers))

    async def claim(
        self, owner: str, providers: Sequence[str], limit: int, now: datetime, until: datetime
    ) -> list[Tracked]:
        return await self.db.write(_claim, owner, list(providers), limit, now, until)

    async def renew(self, owner: str, job_ids: Sequence[str], until: datetime) -> None:
        if job_ids:
            await self.db.write(_renew, owner, list(job_ids), until)

    async def polled(
        self,
        owner: str,
        job_id: str,
        *,
        step: Step | None,
        upstream_id: str | None,
        upstream_status: str | None,
        next_poll_at: datetime,
        failures: int,
        counted: bool,
        now: datetime,
        read: Any = None,
        pushes: bool = False,
    ) -> Transitioned | None:
        return await self.db.write(
            _polled,
            owner,
            job_id,
            step,
            upstream_id,
            upstream_status,
            next_poll_at,
            failures,
            counted,
            now,
            read,
            pushes,
        )

    async def ended(
        self,
        owner: str,
        job_id: str,
        step: Step,
        outputs: Sequence[Mapping[str, Any]],
        upstream_status: str | None,
        counted: bool,
        now: datetime,
    ) -> Transitioned:
        return await self.db.write(
            _ended, owner, job_id, step, list(outputs), upstream_status, counted, now
        )

    async def logged(self, owner: str, job_id: str, steps: Sequence[Step]) -> list[Transitioned]:
        return await self.db.write(_logged, owner, job_id, list(steps), utcnow())

    async def requeue(self, owner: str, job_id: str, step: Step, now: datetime) -> Transitioned:
        return await self.db.write(_requeue, owner, job_id, step, now)

    async def push(
        self,
        job_id: str,
        token_hash: str,
        body: Any,
        now: datetime,
        final: Callable[[Any], bool] | None = None,
    ) -> bool:
        if final is not None:
            return await self.db.write(_push_unless_final, job_id, token_hash, body, now, final)
        return await self.db.write(_push, job_id, token_hash, body, now)

    async def token_of(self, job_id: str) -> tuple[str, str] | None:
        return await self.db.read(_token_of, job_id)

    async def counts(self) -> dict[str, dict[str, int]]:
        return await self.db.read(_counts)

    async def put_key(
        self, account_id: str, provider: str, ciphertext: str, last4: str, now: datetime
    ) -> None:
        await self.db.write(_put_key, account_id, provider, ciphertext, last4, now)

    async def get_key(self, account_id: str, provider: str) -> tuple[str, str, Any] | None:
        return await self.db.read(_get_key, account_id, provider)

    async def delete_key(self, account_id: str, provider: str) -> bool:
        return await self.db.write(_delete_key, account_id, provider)
