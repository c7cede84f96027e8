"""The README's multi-host layout on one machine, always on the real PostgreSQL: two
`genq serve --no-workers` API replicas and two `genq worker --engines ...` processes
on one database and one shared data dir. A mixed workload is submitted through both
replicas while a client watches the account's event stream on replica 1; one worker
is killed with SIGKILL in the middle. Every job must end `succeeded`, be charged once,
and its completion must reach the watcher on replica 1 promptly."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from genq.settings import Settings
from genq.store import Store
from tests.conftest import GENQ, create_key, free_port, genq_env, pg, wait_for, wait_healthy
from tests.integration.test_postgres import on_store, parse_ts, stop_workers

ENGINES = "demo/text2image,demo/text2video,test/sleep"
WORKLOAD: list[tuple[str, dict[str, Any]]] = [
    ("test/sleep", {"seconds": 2.0, "steps": 4}),
    ("demo/text2image", {"prompt": "a red fox", "width": 128, "height": 128}),
    ("test/sleep", {"seconds": 1.0, "steps": 2}),
    ("demo/text2video", {"prompt": "waves", "seconds": 1, "width": 128, "height": 96}),
    ("test/sleep", {"seconds": 2.0, "steps": 4}),
    ("demo/text2image", {"prompt": "a blue bird", "width": 128, "height": 128}),
    ("test/sleep", {"seconds": 1.0, "steps": 2}),
    ("demo/text2image", {"prompt": "a green frog", "width": 64, "height": 64}),
]


class Procs:
    def __init__(self, data_dir: Path, db_url: str) -> None:
        self.data_dir, self.db_url = data_dir, db_url
        self.all: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        return genq_env(
            self.data_dir,
            GENQ_DATABASE_URL=self.db_url,
            GENQ_LEASE_S="3",
            GENQ_REAPER_INTERVAL_S="0.5",
            GENQ_SHUTDOWN_GRACE_S="2",
            GENQ_KEY_CACHE_S="0",
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with (self.data_dir / f"{args[0]}-{len(self.all)}.log").open("wb") as log:
            proc = subprocess.Popen([*GENQ, *args], env=self.env(), stdout=log, stderr=log)
        self.all.append(proc)
        return proc

    def replica(self) -> str:
        port = free_port()
        proc = self.start("serve", "--no-workers", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, self.data_dir / f"serve-{len(self.all) - 1}.log")
        return url


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    data = tmp_path / "shared"
    data.mkdir()
    p = Procs(data, pg().for_dir(data))
    try:
        yield p
    finally:
        stop_workers(p.all)


class Watcher(threading.Thread):
    """Reads the account's event stream; notes when each job's `completed` arrived."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.completed: dict[str, datetime] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as exc:  # the servers stop at the end of the test
            if not self.stop.is_set():
                self.error = exc

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.stream(
            "GET", f"{self.url}/v1/events", headers=headers, timeout=httpx.Timeout(5, read=60)
        ) as r:
            r.raise_for_status()
            self.ready.set()
            event = ""
            for line in r.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "completed":
                    job = json.loads(line.split(":", 1)[1])
                    self.completed.setdefault(job.get("id") or job["job_id"], datetime.now(UTC))


@pytest.mark.timeout(240)
def test_two_replicas_two_workers_one_killed(procs: Procs) -> None:
    settings = Settings(data_dir=procs.data_dir, database_url=procs.db_url)
    key = create_key(settings, "multi", "ultimate")
    r1, r2 = procs.replica(), procs.replica()
    workers = [procs.start("worker", "--engines", ENGINES, "--slots", "3") for _ in range(2)]
    watcher = Watcher(r1, key)
    watcher.start()
    assert watcher.ready.wait(20)
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=r1, headers=headers, timeout=30) as a1,
        httpx.Client(base_url=r2, headers=headers, timeout=30) as a2,
    ):
        ids = []
        for i, (engine, inp) in enumerate(WORKLOAD):
            api = (a1, a2)[i % 2]
            r = api.post("/v1/jobs", json={"engine": engine, "input": inp})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        # kill the worker running the first long job, mid-job
        wait_for(a2, ids[0], until=("running",), timeout=60)

        async def owner(store: Store) -> str:
            job = await store.jobs.get(ids[0])
            assert job is not None and job.lease_owner is not None
            return job.lease_owner

        pid = int(on_store(procs.db_url, owner).split(":")[1])
        [victim] = [w for w in workers if w.pid == pid]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        bodies = [wait_for(a2, j, timeout=120) for j in ids]
        outputs = a1.get(f"/v1/jobs/{ids[1]}").json()["outputs"]
        image = a1.get(outputs[0]["url"])  # written by a worker, served by a replica
    assert [b["status"] for b in bodies] == ["succeeded"] * len(ids)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

    async def books(store: Store) -> tuple[int, list[str]]:
        job = await store.jobs.get(ids[0])
        assert job is not None
        return job.attempt, await store.ledger.audit()

    attempt, problems = on_store(procs.db_url, books)
    assert attempt == 2  # the killed run, then the other worker's
    assert problems == []
    assert all(b["credits"]["used"] <= b["credits"]["estimate"] for b in bodies)

    deadline = time.monotonic() + 10
    while len(watcher.completed) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop.set()
    assert watcher.error is None
    assert set(ids) <= set(watcher.completed)
    lags = sorted(
        (watcher.completed[b["id"]] - parse_ts(b["completed_at"])).total_seconds() * 1000
        for b in bodies
    )
    print(
        f"\nworker commit -> event on replica 1: median {statistics.median(lags):.1f} ms,"
        f" max {lags[-1]:.1f} ms over {len(lags)} jobs"
    )
    assert lags[-1] < 2000
