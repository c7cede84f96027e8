"""Leases and fencing in the store: a worker that lost its lease can write nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from genq.errors import LeaseLost
from genq.ids import new_id, utcnow
from genq.migrate import upgrade_async
from genq.store import Store
from tests.conftest import db_url_for


async def make_store(tmp_path: Path) -> tuple[Store, str]:
    url = db_url_for(tmp_path)
    await upgrade_async(url)
    store = Store(url)
    acct = await store.accounts.create(new_id("acct"), "a", "free")
    await store.ledger.grant(acct.id, 10_000)
    return store, acct.id


async def add_job(store: Store, account_id: str, engine: str = "e") -> str:
    job = await store.jobs.create(
        {
            "id": new_id("job"),
            "account_id": account_id,
            "engine": engine,
            "task": "noop",
            "input": {},
            "metadata": {},
            "credits_estimate": 5,
            "expires_at": utcnow() + timedelta(days=1),
        }
    )
    return job.id


async def test_zombie_worker_cannot_write_after_reap(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        job_id = await add_job(store, acct)
        [zombie] = await store.jobs.claim("A", slots=1, limits={"e": 1}, lease_s=0.05)
        await store.jobs.mark_running(zombie)
        await asyncio.sleep(0.1)
        [reaped] = await store.jobs.reap(max_attempts=3)
        assert reaped.id == job_id and reaped.status == "queued"
        [fresh] = await store.jobs.claim("B", slots=1, limits={"e": 1}, lease_s=30)
        assert fresh.attempt == 2
        with pytest.raises(LeaseLost):
            await store.jobs.progress(zombie, 50, "late")
        with pytest.raises(LeaseLost):
            await store.jobs.add_output(
                zombie,
                {
                    "name": "x",
                    "kind": "other",
                    "content_type": "text/plain",
                    "bytes": 1,
                    "sha256": "0",
                    "path": "a/b/c",
                    "meta": {},
                },
            )
        with pytest.raises(LeaseLost):
            await store.jobs.finish(zombie, "succeeded", credits_used=5)
        held, _ = await store.jobs.heartbeat("A", [zombie], 30)
        assert held == set()
        done = await store.jobs.finish(fresh, "succeeded", credits_used=5)
        assert done.status == "succeeded" and done.credits_used == 5
        events = await store.jobs.events_after(job_id, 0)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        statuses = [e.data["status"] for e in events if e.type in ("status", "completed")]
        assert statuses == ["queued", "starting", "running", "queued", "starting", "succeeded"]
    finally:
        await store.close()


async def test_reaper_fails_after_max_attempts(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    try:
        job_id = await add_job(store, acct)
        for _ in range(2):
            await store.jobs.claim("A", slots=1, limits={"e": 1}, lease_s=0.01)
            await asyncio.sleep(0.03)
            await store.jobs.reap(max_attempts=2)
        job = await store.jobs.get(job_id)
        assert job is not None and job.status == "failed"
        assert job.error_code == "worker_lost" and job.credits_refunded == 5
    finally:
        await store.close()


async def test_claim_is_atomic_across_concurrent_claimers(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    other = Store(store.db.url)  # a second pool: as another process would
    try:
        ids = {await add_job(store, acct) for _ in range(30)}
        results = await asyncio.gather(
            *[
                s.jobs.claim(f"W{i}", slots=4, limits={"e": 100}, lease_s=30)
                for i, s in enumerate([store, other] * 6)
            ]
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
        first = await store.jobs.claim("W", slots=10, limits={"a": 2, "b": 1}, lease_s=30)
        assert [c.job.id for c in first] == a[:2] + b[:1]
        assert await store.jobs.claim("W", slots=10, limits={"a": 2, "b": 1}, lease_s=30) == []
    finally:
        await store.close()
