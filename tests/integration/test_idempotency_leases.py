"""An Idempotency-Key whose request died with its process is retryable within seconds,
and never at the price of a second job."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from genq import lifecycle
from genq.errors import Conflict
from genq.idempotency import request_hash
from genq.store import Store
from tests.conftest import (
    GENQ,
    LiveServer,
    create_key,
    free_port,
    genq_env,
    job_record,
    make_settings,
    wait_healthy,
)
from tests.integration.test_leases import make_store

A, B, C = "a" * 32, "b" * 32, "c" * 32


async def test_a_request_that_outlived_its_lease_creates_nothing(tmp_path: Path) -> None:
    store, acct = await make_store(tmp_path)
    begin = store.idempotency.begin
    try:
        assert await begin(acct, "k", "h", A, ttl_s=60, lease_s=0.05) is None
        await asyncio.sleep(0.1)  # A stops renewing: its process died, or stalled
        assert await begin(acct, "k", "h", B, ttl_s=60, lease_s=30) is None  # B takes over
        held = await begin(acct, "k", "h", C, ttl_s=60, lease_s=30)
        assert held is not None and held.token == B  # a third waits for B

        # A wakes up and tries to create its job: refused, and nothing of it is kept
        with pytest.raises(Conflict):
            await store.jobs.create(
                job_record(acct, credits_estimate=5), lifecycle.created(), (acct, "k", A)
            )
        await store.idempotency.finish(acct, "k", A, 202, {}, b"from the stalled request")
        await store.idempotency.abort(acct, "k", A)

        job, _ = await store.jobs.create(
            job_record(acct, credits_estimate=5), lifecycle.created(), (acct, "k", B)
        )
        await store.idempotency.finish(acct, "k", B, 202, {}, b"B's answer")
        done = await begin(acct, "k", "h", C, ttl_s=60, lease_s=30)
        assert done is not None and done.state == "done"
        assert (done.resource_id, done.body) == (job.id, b"B's answer")
        assert await store.ledger.balance(acct) == 10_000 - 5  # one hold only
        assert [j.id for j, _ in await store.jobs.page(acct)] == [job.id]
    finally:
        await store.close()


def test_a_key_left_in_flight_by_a_dead_request_is_taken_over(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    srv = LiveServer(settings).start()
    try:
        key = srv.new_key()
        body = orjson.dumps({"engine": "test/sleep", "input": {"steps": 1}})
        with srv.client(key) as api:
            account_id = api.get("/v1/account").json()["id"]

            async def dead_request() -> None:  # begun by a process that then died
                store = Store(settings.db_url)
                try:
                    fingerprint = request_hash("POST", "/v1/jobs", body)
                    await store.idempotency.begin(
                        account_id, "k-1", fingerprint, A, ttl_s=3600, lease_s=1.5
                    )
                finally:
                    await store.close()

            asyncio.run(dead_request())
            headers = {"Idempotency-Key": "k-1", "Content-Type": "application/json"}
            early = api.post("/v1/jobs", content=body, headers=headers)
            assert early.status_code == 409
            assert 1 <= int(early.headers["retry-after"]) <= 2
            assert api.get("/v1/jobs").json()["data"] == []
            time.sleep(1.6)
            first = api.post("/v1/jobs", content=body, headers=headers)
            assert first.status_code == 202, first.text
            again = api.post("/v1/jobs", content=body, headers=headers)
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json()["id"] == first.json()["id"]
            assert [j["id"] for j in api.get("/v1/jobs").json()["data"]] == [first.json()["id"]]
    finally:
        srv.stop()


def test_a_retry_after_the_server_is_killed_gets_the_one_job(tmp_path: Path) -> None:
    """kill -9 of the server while a submission (with `Prefer: wait`) is in flight; the
    job was created but its answer never sent. After a restart, the client's retry
    gets that job within the lease (2 s here), never a second one."""
    data = tmp_path / "data"
    data.mkdir(parents=True)
    port = free_port()
    env = genq_env(data, GENQ_IDEMPOTENCY_LEASE_S="2", GENQ_PORT=str(port))
    key = create_key(make_settings(data, port=port), "alice")
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}

    def serve(n: int) -> subprocess.Popen[bytes]:
        log = data / f"serve-{n}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*GENQ, "serve"], env=env, stdout=out, stderr=out)
        wait_healthy(url, proc, log)
        return proc

    body = {"engine": "test/sleep", "input": {"seconds": 30, "steps": 30}}
    headers = {**auth, "Idempotency-Key": "order-42", "Prefer": "wait=30"}
    server = serve(0)
    try:
        lost: list[BaseException] = []

        def submit() -> None:
            try:
                httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=60)
            except httpx.HTTPError as exc:  # the server is killed under it
                lost.append(exc)

        t = threading.Thread(target=submit)
        t.start()
        deadline = time.monotonic() + 20
        while not httpx.get(f"{url}/v1/jobs", headers=auth).json()["data"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.kill()
        server.wait(10)
        t.join(10)
        assert lost, "the first answer should have been lost with the server"
        server = serve(1)
        deadline = time.monotonic() + 30
        while True:
            retry = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=60)
            if retry.status_code != 409:
                break
            assert time.monotonic() < deadline, "the key stayed in flight"
            time.sleep(float(retry.headers["retry-after"]))
        assert retry.status_code in (200, 202), retry.text
        assert retry.headers["idempotent-replayed"] == "true"
        jobs = httpx.get(f"{url}/v1/jobs", headers=auth).json()["data"]
        assert [j["id"] for j in jobs] == [retry.json()["id"]]
    finally:
        server.kill()
        server.wait(10)
