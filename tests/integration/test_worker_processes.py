"""`genq worker` processes on one database (SQLite file or, with GENQ_TEST_DB=postgres,
PostgreSQL): crash recovery and graceful stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genq.store import Store
from genq.store.records import Job
from tests.conftest import GENQ, LiveServer, db_url_for, genq_env, make_settings, wait_for


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(make_settings(tmp_path / "data", lease_s=2.0), workers=False).start()
    try:
        yield srv
    finally:
        srv.stop()


def start_worker(data_dir: Path) -> subprocess.Popen[bytes]:
    env = genq_env(
        data_dir,
        GENQ_LEASE_S="2",
        GENQ_REAPER_INTERVAL_S="0.5",
        GENQ_POLL_INTERVAL_S="0.2",
        GENQ_SHUTDOWN_GRACE_S="1",
    )
    data_dir.mkdir(parents=True, exist_ok=True)  # (on PostgreSQL nothing made it yet)
    with (data_dir / f"worker-{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen([*GENQ, "worker"], env=env, stdout=log, stderr=log)


def ledger_kinds(data_dir: Path, job_id: str) -> list[str]:
    url = db_url_for(data_dir)

    async def main() -> list[str]:
        store = Store(url)
        try:
            job = await store.jobs.get(job_id)
            assert job is not None
            entries = await store.ledger.entries(job.account_id)
            assert await store.ledger.audit() == []
            return [e.kind for e in entries if e.job_id == job_id]
        finally:
            await store.close()

    return asyncio.run(main())


def stored(data_dir: Path, job_id: str) -> Job:
    """The job's row as the database has it (not any process's cache)."""
    url = db_url_for(data_dir)

    async def main() -> Job:
        store = Store(url)
        try:
            job = await store.jobs.get(job_id)
            assert job is not None
            return job
        finally:
            await store.close()

    return asyncio.run(main())


def attempts(data_dir: Path, job_id: str) -> int:
    return stored(data_dir, job_id).attempt


def test_killed_worker_job_is_rerun_by_another(api_only: LiveServer) -> None:
    data = api_only.settings.data_dir
    with api_only.client(api_only.new_key()) as api:
        first = start_worker(data)
        try:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 3, "steps": 6}}
            ).json()
            wait_for(api, job["id"], until=("running",), timeout=20)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_at = time.monotonic()
            second = start_worker(data)
            try:
                body = wait_for(api, job["id"], timeout=30)
                assert body["status"] == "succeeded"
                assert attempts(data, job["id"]) == 2
                # re-queued within lease (2 s) + reaper interval, then run again (~3 s)
                assert time.monotonic() - killed_at < 15
                assert body["credits"]["used"] == body["credits"]["estimate"]
                # run twice, charged once
                assert ledger_kinds(data, job["id"]) == ["hold", "capture", "release"]
            finally:
                second.terminate()
                second.wait(20)
        finally:
            if first.poll() is None:
                first.kill()


def test_sigterm_requeues_unfinished_work(api_only: LiveServer) -> None:
    data = api_only.settings.data_dir
    with api_only.client(api_only.new_key()) as api:
        worker = start_worker(data)
        job = api.post(
            "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 30, "steps": 30}}
        ).json()
        wait_for(api, job["id"], until=("running",), timeout=20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        # Re-queued and committed before the worker exited ...
        row = stored(data, job["id"])
        assert (row.status, row.lease_owner) == ("queued", None)
        assert row.message is not None and "shut down" in row.message
        # ... and the API process hears of it by notification (milliseconds, not at once).
        body = wait_for(api, job["id"], until=("queued",), timeout=10)
        assert "shut down" in body["message"]


def test_two_workers_share_the_queue(api_only: LiveServer) -> None:
    data = api_only.settings.data_dir
    with api_only.client(api_only.new_key()) as api:
        workers = [start_worker(data) for _ in range(2)]
        try:
            ids = [
                api.post(
                    "/v1/jobs", json={"engine": "test/sync-sleep", "input": {"seconds": 0.2}}
                ).json()["id"]
                for _ in range(12)
            ]
            for job_id in ids:
                assert wait_for(api, job_id, timeout=60)["status"] == "succeeded"
            assert all(attempts(data, j) == 1 for j in ids)
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(20)


def test_api_wakes_waiters_for_other_process_changes(api_only: LiveServer) -> None:
    """The API learns of a worker process's changes through the event tailer."""
    data = api_only.settings.data_dir
    with api_only.client(api_only.new_key()) as api:
        worker = start_worker(data)
        try:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 0.5, "steps": 1}}
            ).json()
            etag = api.get(f"/v1/jobs/{job['id']}").headers["etag"]
            deadline = time.monotonic() + 30
            while True:
                r = api.get(
                    f"/v1/jobs/{job['id']}", params={"wait": 10}, headers={"If-None-Match": etag}
                )
                if r.status_code == 200:
                    etag = r.headers["etag"]
                    if r.json()["status"] == "succeeded":
                        break
                assert time.monotonic() < deadline
        finally:
            worker.terminate()
            worker.wait(20)
