"""A submission's cap on unfinished jobs (`genq.store.jobs.Cap`, useapi's `maxJobs`)
is checked in the creating transaction: racing creates, from one process or two on
the same database, never pass it together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from genq import lifecycle
from genq.errors import Busy
from genq.store import Store
from genq.store.jobs import Cap
from tests.conftest import job_record
from tests.integration.test_leases import add_job, make_store


async def test_racing_capped_creates_from_two_processes(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    other = Store(store.db.url)  # another process's store on the same database
    refused: list[list[str]] = []

    async def create(s: Store, cap: Cap) -> str | None:
        record = job_record(acct, metadata={"compat": "useapi"}, credits_estimate=1)
        try:
            job, _ = await s.jobs.create(record, lifecycle.created(), cap=cap)
        except Busy as exc:
            refused.append(sorted(exc.extra["running"]))
            return None
        return job.id

    try:
        await add_job(store, acct, metadata={"compat": "vivix"})  # another tag: not counted
        cap = Cap(2, ("compat", "useapi"))
        made = [
            r
            for r in await asyncio.gather(*(create((store, other)[i % 2], cap) for i in range(20)))
            if r is not None
        ]
        assert len(made) == 2
        assert refused == [sorted(made)] * 18
        # without a tag every unfinished job counts (3 of them now)
        assert await create(store, Cap(4)) is not None
        assert await create(other, Cap(4)) is None and len(refused[-1]) == 4
        assert await store.ledger.balance(acct) == 10_000 - 5 - 3  # no hold of a refused one
    finally:
        await other.close()
        await store.close()
