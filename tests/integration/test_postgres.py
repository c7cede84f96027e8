"""genq on the real PostgreSQL server (always, whatever GENQ_TEST_DB says): worker
processes and an API-only server on one database, crash recovery, the claim's limits
and locks, the LISTEN/NOTIFY bus (latency, reconnect) and event ids that commit out of
order."""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from genq import lifecycle
from genq.events import Change, EventBus, PgFollower
from genq.ids import new_id
from genq.store import Store
from tests.conftest import (
    GENQ,
    ROOT,
    LiveServer,
    genq_env,
    job_record,
    make_settings,
    pg,
    wait_for,
)

T = TypeVar("T")


def on_store(url: str, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run `fn` on a store of its own (as another process would)."""

    async def main() -> T:
        store = Store(url)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def db_url(data_dir: Path) -> str:
    return pg().for_dir(data_dir)  # dropped after the test


@pytest.fixture
def api_only(data_dir: Path, db_url: str) -> Iterator[LiveServer]:
    # the safety-net poll is slowed right down: changes must come through NOTIFY
    settings = make_settings(data_dir, database_url=db_url, lease_s=2.0, pg_event_poll_s=30.0)
    srv = LiveServer(settings, workers=False).start()
    try:
        yield srv
    finally:
        srv.stop()


def start_worker(data_dir: Path, db_url: str, **extra: str) -> subprocess.Popen[bytes]:
    options = {
        "GENQ_DATABASE_URL": db_url,
        "GENQ_LEASE_S": "2",
        "GENQ_REAPER_INTERVAL_S": "0.5",
        "GENQ_POLL_INTERVAL_S": "5",  # idle workers learn of new jobs by NOTIFY, not polling
        "GENQ_SHUTDOWN_GRACE_S": "1",
    }
    env = genq_env(data_dir, **{**options, **extra})
    with (data_dir / f"worker-{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen([*GENQ, "worker"], env=env, stdout=log, stderr=log)


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(20)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait(10)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_workers_and_api_share_one_database(api_only: LiveServer, db_url: str) -> None:
    data = api_only.settings.data_dir
    workers = [start_worker(data, db_url) for _ in range(2)]
    try:
        with api_only.client(api_only.new_key()) as api:
            ids = [
                api.post(
                    "/v1/jobs", json={"engine": "test/sync-sleep", "input": {"seconds": 0.3}}
                ).json()["id"]
                for _ in range(10)
            ]
            for job_id in ids:
                assert wait_for(api, job_id, timeout=60)["status"] == "succeeded"

        async def check(store: Store) -> list[int]:
            assert await store.ledger.audit() == []
            return [(await store.jobs.get(j)).attempt for j in ids]  # type: ignore[union-attr]

        assert on_store(db_url, check) == [1] * 10
        follower = api_only.genq.follower
        assert isinstance(follower, PgFollower) and follower.notifications > 0
    finally:
        stop_workers(workers)


def test_long_poll_sees_a_worker_process_finish_at_once(api_only: LiveServer, db_url: str) -> None:
    data = api_only.settings.data_dir
    workers = [start_worker(data, db_url)]
    try:
        with api_only.client(api_only.new_key()) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 1.0, "steps": 2}}
            ).json()
            body = wait_for(api, job["id"], until=("running",), timeout=20)
            etag = api.get(f"/v1/jobs/{job['id']}").headers["etag"]
            deadline = time.monotonic() + 30
            while body["status"] != "succeeded":
                assert time.monotonic() < deadline
                r = api.get(
                    f"/v1/jobs/{job['id']}", params={"wait": 20}, headers={"If-None-Match": etag}
                )
                seen_at = datetime.now(UTC)
                if r.status_code == 200:
                    etag, body = r.headers["etag"], r.json()
            # the worker wrote completed_at just before its commit; the API's safety
            # poll runs every 30 s, so only the notification can have woken this poll
            lag = (seen_at - parse_ts(body["completed_at"])).total_seconds()
            print(f"worker commit -> long-poll answer: {lag * 1000:.1f} ms")
            assert lag < 1.5
    finally:
        stop_workers(workers)


def test_killed_worker_job_is_recovered_by_the_other_and_charged_once(
    api_only: LiveServer, db_url: str
) -> None:
    data = api_only.settings.data_dir
    workers = [start_worker(data, db_url) for _ in range(2)]
    try:
        with api_only.client(api_only.new_key()) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 3, "steps": 6}}
            ).json()
            wait_for(api, job["id"], until=("running",), timeout=20)

            async def owner(store: Store) -> str:
                row = await store.jobs.get(job["id"])
                assert row is not None and row.lease_owner is not None
                return row.lease_owner

            pid = int(on_store(db_url, owner).split(":")[1])  # host:pid:token
            [victim] = [w for w in workers if w.pid == pid]
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            body = wait_for(api, job["id"], timeout=40)
            assert body["status"] == "succeeded"
            assert body["credits"]["used"] == body["credits"]["estimate"]

        async def books(store: Store) -> tuple[int, list[str], list[str]]:
            row = await store.jobs.get(job["id"])
            assert row is not None
            entries = await store.ledger.entries(row.account_id)
            kinds = [e.kind for e in entries if e.job_id == job["id"]]
            return row.attempt, kinds, await store.ledger.audit()

        attempt, kinds, problems = on_store(db_url, books)
        assert attempt == 2
        assert kinds == ["hold", "capture", "release"]  # run twice, charged once
        assert problems == []
    finally:
        stop_workers(workers)


# -- the claim ------------------------------------------------------------------------


def test_engine_limit_holds_across_worker_processes(api_only: LiveServer, db_url: str) -> None:
    """test/sleep allows 2 at once; two workers with 4 slots each never run 3."""
    data = api_only.settings.data_dir
    workers = [start_worker(data, db_url, GENQ_WORKER_SLOTS="4") for _ in range(2)]
    try:
        with api_only.client(api_only.new_key()) as api:
            ids = [
                api.post(
                    "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 0.6}}
                ).json()["id"]
                for _ in range(6)
            ]
            bodies = [wait_for(api, j, timeout=60) for j in ids]
        assert [b["status"] for b in bodies] == ["succeeded"] * 6
        # each job runs 0.6 s; the stamps come from different processes' clocks (a few ms
        # apart at most), so a run only counts as overlapping another by more than 50 ms
        slack = timedelta(milliseconds=25)
        edges = sorted(
            [(parse_ts(b["started_at"]) + slack, 1) for b in bodies]
            + [(parse_ts(b["completed_at"]) - slack, -1) for b in bodies]
        )
        running, most = 0, 0
        for _, step in edges:
            running += step
            most = max(most, running)
        assert most == 2
    finally:
        stop_workers(workers)


def test_cancel_of_a_running_job_reaches_its_worker_at_once(
    api_only: LiveServer, db_url: str
) -> None:
    # the worker's heartbeat (every lease_s / 3 = 20 s) would notice too, much later:
    # the cancel reaches it as a change on the bus (NOTIFY)
    data = api_only.settings.data_dir
    workers = [start_worker(data, db_url, GENQ_LEASE_S="60", GENQ_PG_EVENT_POLL_S="30")]
    try:
        with api_only.client(api_only.new_key()) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 30, "steps": 30}}
            ).json()
            wait_for(api, job["id"], until=("running",), timeout=20)
            asked = time.monotonic()
            assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
            body = wait_for(api, job["id"], timeout=15)
            took = time.monotonic() - asked
        assert body["status"] == "canceled"
        print(f"cancel -> canceled through the bus: {took * 1000:.0f} ms")
        assert took < 10  # well before the next heartbeat (20 s)
    finally:
        stop_workers(workers)


def claim_step(owner: str) -> Callable[[datetime], lifecycle.Step]:
    return lambda now: lifecycle.claimed(owner, now + timedelta(seconds=30), now)


async def test_concurrent_claimers_never_exceed_the_limits(db_url: str) -> None:
    """Claimers on separate connections (as separate processes) race; the running counts
    they check stay true: never more than the engine's or the account's limit at once."""
    account_id = await new_account(db_url)
    other_account = await new_account(db_url)
    await add_jobs(db_url, account_id, 20, account_limit=4)
    await add_jobs(db_url, other_account, 20, account_limit=4)
    stores = [Store(db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *[
                s.jobs.claim(f"W{i}", slots=3, limits={"e": 7}, step=claim_step(f"W{i}"))
                for i, s in enumerate(stores * 4)
            ]
        )
        claimed = [c.job for batch in results for c in batch]
        assert len(claimed) == len({j.id for j in claimed}) == 7
        per_account = [sum(j.account_id == a for j in claimed) for a in (account_id, other_account)]
        assert max(per_account) <= 4
        assert await stores[0].jobs.status_counts() == {("queued", "e"): 33, ("running", "e"): 7}
    finally:
        for s in stores:
            await s.close()


async def test_claims_of_other_engines_never_wait_for_each_other(db_url: str) -> None:
    """No lock serializes every claimer: a claimer of engine `a` held up (here: its
    engine's lock taken by an open transaction) does not delay a claim of engine `b`."""
    account_id = await new_account(db_url)
    await add_jobs(db_url, account_id, 1, engine="a")
    await add_jobs(db_url, account_id, 1, engine="b")
    store = Store(db_url)
    try:
        with psycopg.connect(store.db.conninfo) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(7405311, hashtext('a'))")
            started = time.monotonic()
            [got] = await store.jobs.claim("W", slots=1, limits={"b": 1}, step=claim_step("W"))
            took = time.monotonic() - started
            assert got.job.engine == "b" and took < 2
            blocked = asyncio.ensure_future(
                store.jobs.claim("W2", slots=1, limits={"a": 1}, step=claim_step("W2"))
            )
            await asyncio.sleep(0.3)
            assert not blocked.done()  # a's claimer waits for a's lock only
            holder.rollback()
        [late] = await asyncio.wait_for(blocked, 10)
        assert late.job.engine == "a"
    finally:
        await store.close()


# -- the bus on its own ---------------------------------------------------------------

WRITER = """
import asyncio, sys, time
from genq import lifecycle
from genq.store import Store
from tests.conftest import job_record

async def main(url, account_id, n):
    store = Store(url)
    try:
        for _ in range(n):
            job, _ = await store.jobs.create(job_record(account_id), lifecycle.created())
            print(job.id, time.time(), flush=True)  # just after the commit
            await asyncio.sleep(0.02)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


class Bus:
    """A store, a bus and a follower whose own poll never runs unless kicked."""

    def __init__(self, url: str, **options: float) -> None:
        self.store = Store(url)
        self.bus = EventBus()
        self.follower = PgFollower(self.store, self.bus, poll_s=600, **options)
        self.seen: dict[str, float] = {}  # job id -> when its first change was published
        self.bus.subscribe(lambda c: self.seen.setdefault(c.job_id, time.time()))

    async def __aenter__(self) -> Bus:
        await self.follower.start()
        assert self.follower.connected.is_set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.follower.stop()
        await self.store.close()

    async def until_seen(self, job_ids: list[str], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not all(j in self.seen for j in job_ids):
            assert time.monotonic() < deadline, "changes never reached the bus"
            await asyncio.sleep(0.01)


async def new_account(url: str) -> str:
    store = Store(url)
    try:
        return (await store.accounts.create(new_id("acct"), new_id("name"), "pro")).id
    finally:
        await store.close()


async def add_jobs(url: str, account_id: str, n: int, **values: Any) -> list[str]:
    store = Store(url)
    try:
        ids = []
        for _ in range(n):
            job, _ = await store.jobs.create(job_record(account_id, **values), lifecycle.created())
            ids.append(job.id)
        return ids
    finally:
        await store.close()


async def test_notify_latency_from_another_process(db_url: str) -> None:
    """Prints the latency from a commit in a writer process to `publish` here."""
    account_id = await new_account(db_url)
    n = 200
    async with Bus(db_url) as b:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            db_url,
            account_id,
            str(n),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        committed = {
            job_id: float(ts)
            for job_id, ts in (line.split() for line in out.decode().split("\n") if line)
        }
        await b.until_seen(list(committed))
        assert b.follower.notifications >= n
    lags = sorted((b.seen[j] - ts) * 1000 for j, ts in committed.items())
    p95 = lags[int(len(lags) * 0.95)]
    print(
        f"\nNOTIFY commit -> publish in another process over {n} commits:"
        f" median {statistics.median(lags):.2f} ms, p95 {p95:.2f} ms, max {lags[-1]:.2f} ms"
    )


async def test_listener_reconnects_and_catches_up(db_url: str) -> None:
    account_id = await new_account(db_url)
    async with Bus(db_url, min_backoff_s=1.0) as b:
        [first] = await add_jobs(db_url, account_id, 1)
        await b.until_seen([first])
        heard = b.follower.notifications
        with psycopg.connect(b.follower.conninfo, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'genq-listen' AND datname = current_database()"
            ).fetchall()
        assert killed == [(True,)]
        deadline = time.monotonic() + 10
        while b.follower.connected.is_set():
            assert time.monotonic() < deadline, "the listener did not notice"
            await asyncio.sleep(0.01)
        missed = await add_jobs(db_url, account_id, 3)  # while nobody listens
        await b.until_seen(missed, timeout=15)
        assert b.follower.notifications == heard  # caught up by reading the log
        later = await add_jobs(db_url, account_id, 2)  # and listening again
        await b.until_seen(later)
        assert b.follower.notifications == heard + 2


async def test_event_ids_committed_out_of_order_are_not_lost(db_url: str) -> None:
    """An event id is handed out when its transaction inserts it, but transactions commit
    in any order; the log is only read below the oldest running transaction, so a
    reader that has seen id N never sees a smaller id appear after it."""
    account_id = await new_account(db_url)
    a, b = await add_jobs(db_url, account_id, 2)
    store = Store(db_url)
    bus = EventBus()
    follower = PgFollower(store, bus, poll_s=600)
    got: list[Change] = []
    bus.subscribe(lambda c: got.append(c) if c.seq == 2 else None)
    # past the jobs' own first events (a transaction open elsewhere in the cluster, like
    # another test's DROP DATABASE, may hold the watermark back for a moment)
    deadline = time.monotonic() + 30
    while len(await store.jobs.events_since(0, account_id=account_id)) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    follower.last_id = max(e.id for e in await store.jobs.events_since(0, account_id=account_id))
    insert = (
        "INSERT INTO job_events (job_id, account_id, seq, type, data, created_at)"
        " VALUES (%s, %s, 2, 'log', '{}'::jsonb, now()) RETURNING id"
    )
    try:
        with psycopg.connect(store.db.conninfo) as slow, psycopg.connect(store.db.conninfo) as fast:
            slow.execute("SELECT pg_current_xact_id()")  # the older transaction...
            fast_id = fast.execute(insert, (b, account_id)).fetchone()[0]  # type: ignore[index]
            fast.commit()  # ...commits after the younger one
            await follower.poll_once()
            assert got == []  # held back while an older transaction may still insert
            slow_id = slow.execute(insert, (a, account_id)).fetchone()[0]  # type: ignore[index]
            assert slow_id < fast_id
            slow.commit()
        # (any other write transaction open in the cluster holds the watermark back too)
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            await follower.poll_once()
            await asyncio.sleep(0.05)
        assert [(c.job_id, c.seq) for c in got] == [(a, 2), (b, 2)]
        assert [c.event_id for c in got] == [slow_id, fast_id]
        assert follower.last_id == fast_id
        assert await store.jobs.events_since(fast_id, account_id=account_id) == []
    finally:
        await store.close()
