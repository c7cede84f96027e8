"""Credits SQL: holds, captures and releases written inside the job transactions, and
grants. The balance only changes by a conditional update beside its ledger row."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genq.errors import InsufficientCredits, NotFound
from genq.ids import utcnow
from genq.store import tables as t
from genq.store.db import Database
from genq.store.records import SUCCEEDED, Job, LedgerEntry

A, L = t.accounts.c, t.credit_ledger.c


async def _move(
    conn: AsyncConnection,
    account_id: str,
    delta: int,
    job_id: str | None,
    kind: str,
    amount: int,
    note: str | None = None,
) -> int:
    stmt = sa.update(t.accounts).where(A.id == account_id)
    if delta < 0:
        stmt = stmt.where(A.balance >= -delta)
    row = (await conn.execute(stmt.values(balance=A.balance + delta).returning(A.balance))).first()
    if row is None:
        balance = (await conn.execute(sa.select(A.balance).where(A.id == account_id))).scalar()
        if balance is None:
            raise NotFound(f"no account {account_id!r}")
        raise InsufficientCredits(
            f"this needs {-delta} credits; the balance is {balance}",
            balance=int(balance),
            needed=-delta,
        )
    await conn.execute(
        sa.insert(t.credit_ledger).values(
            account_id=account_id,
            job_id=job_id,
            kind=kind,
            amount=amount,
            balance_after=int(row.balance),
            note=note,
            created_at=utcnow(),
        )
    )
    return int(row.balance)


async def hold(conn: AsyncConnection, account_id: str, job_id: str, amount: int) -> int:
    """Reserve a job's estimate; raises InsufficientCredits (rolling the job back)."""
    return await _move(conn, account_id, -amount, job_id, "hold", amount)


async def settle(conn: AsyncConnection, job: Job) -> None:
    """A job ended: capture what it cost, release the rest of its hold."""
    if job.status == SUCCEEDED:
        used = min(job.credits_used, job.credits_estimate)
        await _move(conn, job.account_id, 0, job.id, "capture", used)
        rest = job.credits_estimate - used
    else:
        rest = job.credits_estimate
    await _move(conn, job.account_id, rest, job.id, "release", rest)


class LedgerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def balance(self, account_id: str) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(A.balance).where(A.id == account_id))).scalar()
        if value is None:
            raise NotFound(f"no account {account_id!r}")
        return int(value)

    async def grant(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add (or with a negative amount, remove) credits by hand; returns the balance."""
        async with self.db.write() as conn:
            kind = "grant" if amount >= 0 else "adjust"
            return await _move(conn, account_id, amount, None, kind, abs(amount), note)

    async def entries(self, account_id: str, limit: int = 1000) -> list[LedgerEntry]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.credit_ledger)
                    .where(L.account_id == account_id)
                    .order_by(L.id)
                    .limit(limit)
                )
            ).all()
        return [LedgerEntry.from_row(r) for r in rows]

    async def audit(self) -> list[str]:
        """Problems found: a finished job whose hold != capture + release, an active job
        without a hold, or an account whose balance is not its ledger's sum."""
        J = t.jobs.c
        problems: list[str] = []
        per_job = (
            sa.select(
                L.job_id,
                sa.func.sum(sa.case((L.kind == "hold", L.amount), else_=0)).label("held"),
                sa.func.sum(sa.case((L.kind != "hold", L.amount), else_=0)).label("settled"),
                sa.func.count().label("rows"),
            )
            .where(L.job_id.is_not(None))
            .group_by(L.job_id)
            .subquery()
        )
        stmt = sa.select(J.id, J.status, per_job.c.held, per_job.c.settled).join_from(
            t.jobs, per_job, per_job.c.job_id == J.id, isouter=True
        )
        moves = (
            sa.select(
                L.account_id,
                sa.func.sum(
                    sa.case(
                        (L.kind == "hold", -L.amount),
                        (L.kind.in_(("release", "grant")), L.amount),
                        (L.kind == "adjust", -L.amount),
                        else_=0,
                    )
                ).label("net"),
            )
            .group_by(L.account_id)
            .subquery()
        )
        balances = sa.select(A.id, A.balance, moves.c.net).join_from(
            t.accounts, moves, moves.c.account_id == A.id, isouter=True
        )
        async with self.db.read() as conn:
            for job_id, status, held, settled in (await conn.execute(stmt)).all():
                if held is None:
                    problems.append(f"job {job_id} ({status}) has no hold")
                elif status in ("succeeded", "failed", "canceled", "expired"):
                    if held != settled:
                        problems.append(f"job {job_id}: held {held}, settled {settled}")
                elif settled:
                    problems.append(f"job {job_id} is {status} but already settled")
            for account_id, balance, net in (await conn.execute(balances)).all():
                if int(balance) != int(net or 0):
                    problems.append(f"account {account_id}: balance {balance}, ledger {net or 0}")
        return problems
