"""Leases and fencing in the store: a worker that lost its lease can write nothing; the
claim is atomic and counts the limits."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from genq import lifecycle
from genq.errors import LeaseLost
from genq.ids import new_id, utcnow
from genq.lifecycle import Status
from genq.migrate import upgrade_async
from genq.store import Store
from genq.store.records import Claim, Job
from tests.conftest import db_url_for, job_record


async def make_store(tmp_path: Path) -> tuple[Store, str]:
    url = db_url_for(tmp_path)
    await upgrade_async(url)
    store = Store(url)
    acct = await store.accounts.create(new_id("acct"), "a", "free")
    await store.ledger.grant(acct.id, 10_000)
    return store, acct.id


async def add_job(store: Store, account_id: str, engine: str = "e", **values: object) -> str:
    job, _ = await store.jobs.create(
        job_record(account_id, engine=engine, credits_estimate=5, **values), lifecycle.created()
    )
    return job.id


async def claim(
    store: Store, owner: str, limits: dict[str, int], slots: int = 1, lease_s: float = 30
) -> list[Claim]:
    def step(now: datetime) -> lifecycle.Step:
        return lifecycle.claimed(owner, now + timedelta(seconds=lease_s), now)

    return await store.jobs.claim(owner, slots=slots, limits=limits, step=step)


async def reap(store: Store, max_attempts: int = 3) -> list[Job]:
    now = utcnow()
    made = await store.jobs.reap(
        lambda job: lifecycle.reaped(job, max_attempts=max_attempts, now=now)
    )
    return [job for job, _ in made]


def finish(claim: Claim, status: Status = Status.SUCCEEDED) -> lifecycle.Step:
    return lifecycle.finished(status, estimate=5, used=5, now=utcnow())


OUTPUT = {
    "name": "x",
    "kind": "other",
    "content_type": "text/plain",
    "bytes": 1,
    "sha256": "0",
    "path": "a/b/c",
    "meta": {},
    "position": 0,
}


async def test_zombie_worker_cannot_write_after_reap(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        job_id = await add_job(store, acct)
        [zombie] = await claim(store, "A", {"e": 1}, lease_s=0.05)
        await asyncio.sleep(0.1)
        [reaped] = await reap(store)
        assert reaped.id == job_id and reaped.status == "queued"
        [fresh] = await claim(store, "B", {"e": 1})
        assert fresh.attempt == 2
        with pytest.raises(LeaseLost):
            await store.jobs.record(zombie, [(lifecycle.progressed(50, "late"), None)])
        with pytest.raises(LeaseLost):
            await store.jobs.record(zombie, [(lifecycle.output_added(OUTPUT), OUTPUT)])
        with pytest.raises(LeaseLost):
            await store.jobs.fenced(zombie, finish(zombie))
        held, _ = await store.jobs.heartbeat("A", [zombie], 30)
        assert held == set()
        done, _ = await store.jobs.fenced(fresh, finish(fresh))
        assert done.status == "succeeded" and done.credits_used == 5
        assert await store.jobs.output(job_id, "x") is None  # the zombie's output was refused
        events = await store.jobs.events_after(job_id, 0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        statuses = [e.data["status"] for e in events if e.type in ("status", "completed")]
        assert statuses == ["queued", "running", "queued", "running", "succeeded"]
        assert await store.ledger.audit() == []
    finally:
        await store.close()


async def test_reaper_fails_after_max_attempts(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        job_id = await add_job(store, acct)
        for _ in range(2):
            await claim(store, "A", {"e": 1}, lease_s=0.01)
            await asyncio.sleep(0.03)
            await reap(store, max_attempts=2)
        job = await store.jobs.get(job_id)
        assert job is not None and job.status == "failed"
        assert job.error_code == "worker_lost" and job.credits_refunded == 5
        assert await store.ledger.balance(acct) == 10_000
        assert await store.ledger.audit() == []
    finally:
        await store.close()


async def test_a_worker_that_renewed_keeps_its_job(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        await add_job(store, acct)
        [held] = await claim(store, "A", {"e": 1}, lease_s=0.05)
        await asyncio.sleep(0.1)
        assert (await store.jobs.heartbeat("A", [held], 30))[0] == {held.job.id}
        assert await reap(store) == []
        done, _ = await store.jobs.fenced(held, finish(held))
        assert done.status == "succeeded"
    finally:
        await store.close()


async def test_claim_is_atomic_across_concurrent_claimers(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    other = Store(store.db.url)  # a second store: as another process would
    try:
        ids = {await add_job(store, acct) for _ in range(30)}
        results = await asyncio.gather(
            *[claim(s, f"W{i}", {"e": 100}, slots=4) for i, s in enumerate([store, other] * 6)]
        )
        claimed = [c.job.id for batch in results for c in batch]
        assert len(claimed) == len(set(claimed)) == 30
        assert set(claimed) == ids
    finally:
        await other.close()
        await store.close()


async def test_claim_respects_engine_limit_and_oldest_first(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        a = [await add_job(store, acct, "a") for _ in range(3)]
        b = [await add_job(store, acct, "b") for _ in range(3)]
        first = await claim(store, "W", {"a": 2, "b": 1}, slots=10)
        assert [c.job.id for c in first] == a[:2] + b[:1]
        assert await claim(store, "W", {"a": 2, "b": 1}, slots=10) == []
    finally:
        await store.close()


async def test_claim_respects_the_account_limit(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        capped = [await add_job(store, acct, "a", account_limit=2) for _ in range(3)]
        first = await claim(store, "W", {"a": 10, "b": 10}, slots=10)
        assert [c.job.id for c in first] == capped[:2]
        # a job of another engine, same account: still at its limit
        await add_job(store, acct, "b", account_limit=2)
        assert await claim(store, "W2", {"a": 10, "b": 10}, slots=10) == []
        await store.jobs.fenced(first[0], finish(first[0]))
        [nxt] = await claim(store, "W2", {"a": 10, "b": 10}, slots=10)
        assert nxt.job.id == capped[2]  # the oldest waiting one
    finally:
        await store.close()


async def test_claim_writes_nothing_when_nothing_is_queued(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        assert await store.jobs.probe(["e"]) == []
        await add_job(store, acct, "e")
        assert await store.jobs.probe(["e", "other"]) == ["e"]
    finally:
        await store.close()
