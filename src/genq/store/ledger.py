"""Credits SQL outside the job transitions: balances, grants, the ledger and its audit.

An account's available credits are `accounts.balance` plus its `credit_unfolded` rows
(what settled jobs gave back and a fold has not yet added to the balance). Holds
(at submission), grants and adjustments change the balance at once; captures and
releases only append to the ledger and to `credit_unfolded` (`genq.store.steps`).
"""

from __future__ import annotations

from datetime import datetime

from genq.errors import InsufficientCredits, NotFound
from genq.ids import utcnow
from genq.lifecycle import TERMINAL, LedgerKind
from genq.store.db import Cx, Database, autocommit
from genq.store.records import LedgerEntry

_AVAILABLE = (
    "SELECT a.balance + coalesce((SELECT sum(u.amount) FROM credit_unfolded u"
    " WHERE u.account_id = a.id), 0) FROM accounts a WHERE a.id = %(a)s"
)


def _balance(cx: Cx, account_id: str) -> int:
    value = cx.scalar(_AVAILABLE, {"a": account_id})
    if value is None:
        raise NotFound(f"no account {account_id!r}")
    return int(value)


@autocommit
def _grant(cx: Cx, account_id: str, amount: int, note: str | None, now: datetime) -> int:
    p = {"a": account_id, "n": amount}
    cond = (
        ""
        if amount >= 0
        else " AND balance + coalesce((SELECT sum(u.amount) FROM"
        " credit_unfolded u WHERE u.account_id = accounts.id), 0) >= -%(n)s"
    )
    balance = cx.scalar(
        f"UPDATE accounts SET balance = balance + %(n)s WHERE id = %(a)s{cond} RETURNING balance",
        p,
    )
    if balance is None:
        available = cx.scalar(_AVAILABLE, {"a": account_id})
        if available is None:
            raise NotFound(f"no account {account_id!r}")
        raise InsufficientCredits(
            f"this needs {-amount} credits; the balance is {available}",
            balance=int(available),
            needed=-amount,
        )
    kind = LedgerKind.GRANT if amount >= 0 else LedgerKind.ADJUST
    cx.execute(
        "INSERT INTO credit_ledger (account_id, job_id, kind, amount, balance_after, note,"
        " created_at) VALUES (%(a)s, NULL, %(k)s, %(n)s, %(b)s, %(note)s, %(t)s)",
        {
            "a": account_id,
            "k": kind.value,
            "n": abs(amount),
            "b": balance,
            "note": note,
            "t": cx.ts(now),
        },
    )
    return int(balance) + int(
        cx.scalar(
            "SELECT coalesce(sum(amount), 0) FROM credit_unfolded WHERE account_id = %(a)s",
            {"a": account_id},
        )
    )


def _entries(cx: Cx, account_id: str, limit: int) -> list[LedgerEntry]:
    rows = cx.all(
        f"SELECT {LedgerEntry.select()} FROM credit_ledger WHERE account_id = %(a)s"
        " ORDER BY id LIMIT %(n)s",
        {"a": account_id, "n": limit},
    )
    return [LedgerEntry.of(r) for r in rows]


def _audit(cx: Cx) -> list[str]:
    problems: list[str] = []
    per_job = cx.all(
        "SELECT j.id, j.status, l.held, l.settled FROM jobs j LEFT JOIN ("
        " SELECT job_id, sum(CASE WHEN kind = 'hold' THEN amount ELSE 0 END) AS held,"
        " sum(CASE WHEN kind <> 'hold' THEN amount ELSE 0 END) AS settled"
        " FROM credit_ledger WHERE job_id IS NOT NULL GROUP BY job_id) l ON l.job_id = j.id"
    )
    terminal = {str(s) for s in TERMINAL}
    for job_id, status, held, settled in per_job:
        if held is None:
            problems.append(f"job {job_id} ({status}) has no hold")
        elif status in terminal:
            if held != settled:
                problems.append(f"job {job_id}: held {held}, settled {settled}")
        elif settled:
            problems.append(f"job {job_id} is {status} but already settled")
    balances = cx.all(
        "SELECT a.id, a.balance + coalesce((SELECT sum(u.amount) FROM credit_unfolded u"
        " WHERE u.account_id = a.id), 0), (SELECT sum(CASE WHEN l.kind = 'hold' THEN -l.amount"
        " WHEN l.kind IN ('release', 'grant') THEN l.amount WHEN l.kind = 'adjust'"
        " THEN -l.amount ELSE 0 END) FROM credit_ledger l WHERE l.account_id = a.id)"
        " FROM accounts a"
    )
    for account_id, balance, net in balances:
        if int(balance) != int(net or 0):
            problems.append(f"account {account_id}: balance {balance}, ledger {net or 0}")
    return problems


class LedgerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def balance(self, account_id: str) -> int:
        """Credits available to the account now."""
        return await self.db.read(_balance, account_id)

    async def grant(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add (or with a negative amount, remove) credits by hand; returns the balance."""
        return await self.db.write(_grant, account_id, amount, note, utcnow())

    async def entries(self, account_id: str, limit: int = 1000) -> list[LedgerEntry]:
        return await self.db.read(_entries, account_id, limit)

    async def audit(self) -> list[str]:
        """Problems found: a finished job whose hold != capture + release, an active job
        without a hold, or an account whose credits are not its ledger's sum."""
        return await self.db.read(_audit)
