"""Accounts and money: credits, refunds, rate limits, idempotency, retention."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from genq.store import Store
from tests.conftest import LiveServer, make_settings, wait_for


def audit(server: LiveServer) -> list[str]:
    async def main() -> list[str]:
        store = Store(server.settings.db_url)
        try:
            return await store.ledger.audit()
        finally:
            await store.close()

    return asyncio.run(main())


def test_fifty_racing_submissions_with_credit_for_five(server: LiveServer) -> None:
    key = server.new_key("poor", plan="ultimate", credits=15)  # test/sleep costs 3
    barrier = threading.Barrier(50)

    def submit(_: int) -> int:
        with server.client(key) as api:
            barrier.wait(10)
            r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}})
            if r.status_code == 402:
                body = r.json()
                assert body["code"] == "insufficient_credits"
                assert body["needed"] == 3 and 0 <= body["balance"] < 3
            return r.status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(submit, range(50)))
    assert codes.count(202) == 5 and codes.count(402) == 45
    with server.client(key) as api:
        assert api.get("/v1/account").json()["balance"] == 0
        for job in api.get("/v1/jobs", params={"limit": 100}).json()["data"]:
            wait_for(api, job["id"])
        assert api.get("/v1/account").json()["balance"] == 0  # all succeeded: all captured
    assert audit(server) == []


def test_refunds_on_failure_and_cancel(server: LiveServer) -> None:
    key = server.new_key("refunds", credits=100)
    with server.client(key) as api:
        failed = wait_for(api, api.post("/v1/jobs", json={"engine": "test/boom"}).json()["id"])
        assert failed["credits"] == {"estimate": 1, "used": 0, "refunded": 1}
        job = api.post(
            "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 20, "steps": 20}}
        ).json()
        assert api.get("/v1/account").json()["balance"] == 100 - 3
        wait_for(api, job["id"], until=("running",))
        api.post(f"/v1/jobs/{job['id']}/cancel")
        canceled = wait_for(api, job["id"])
        assert canceled["status"] == "canceled"
        assert canceled["credits"]["refunded"] == 3
        ok = wait_for(api, api.post("/v1/jobs", json={"engine": "test/sleep"}).json()["id"])
        assert ok["credits"]["used"] == 3
        assert api.get("/v1/account").json()["balance"] == 97
    assert audit(server) == []


def test_idempotency_replay_mismatch_and_in_flight(server: LiveServer, api: httpx.Client) -> None:
    body = {"engine": "test/sleep", "input": {"text": "once"}}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.content == first.content  # byte for byte
    assert again.headers["idempotent-replayed"] == "true"
    assert api.get("/v1/jobs", params={"limit": 100}).json()["data"].__len__() == 1
    other = api.post(
        "/v1/jobs", json={**body, "input": {"text": "twice"}}, headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # the same key is a different key for another account
    with server.client(server.new_key("bob")) as bob:
        mine = bob.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
        assert mine.status_code == 202 and mine.json()["id"] != first.json()["id"]
    # a twin racing in flight gets 409: hold the first request with Prefer: wait
    slow = {"engine": "test/sleep", "input": {"seconds": 2, "steps": 2}}
    results: list[httpx.Response] = []
    t = threading.Thread(
        target=lambda: results.append(
            api.post("/v1/jobs", json=slow, headers={"Idempotency-Key": "k2", "Prefer": "wait=10"})
        )
    )
    t.start()
    time.sleep(0.5)
    twin = api.post("/v1/jobs", json=slow, headers={"Idempotency-Key": "k2"})
    t.join(20)
    assert twin.status_code == 409 and twin.json()["code"] == "conflict"
    assert results[0].status_code == 200
    # a failed request frees its key: the retry runs
    bad = api.post("/v1/jobs", json={"engine": "nope"}, headers={"Idempotency-Key": "k3"})
    assert bad.status_code == 404
    good = api.post("/v1/jobs", json={"engine": "nope"}, headers={"Idempotency-Key": "k3"})
    assert good.status_code == 404


def test_rate_limit_admits_exactly_the_plan(tmp_path: Path) -> None:
    # an API replica with no workers: only the admission is under test
    server = LiveServer(make_settings(tmp_path / "data"), workers=False).start()
    key = server.new_key("busy", plan="pro", credits=10_000)  # pro: 240 generations/min
    codes: list[int] = []
    with server.client(key) as api:
        for _ in range(300):
            r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}})
            codes.append(r.status_code)
            assert "ratelimit" in r.headers and "ratelimit-policy" in r.headers
            assert r.headers["ratelimit-policy"] == '"generate";q=240;w=60'
            if r.status_code == 429:
                assert r.json()["code"] == "rate_limited"
                assert int(r.headers["retry-after"]) >= 1
        assert codes.count(202) == 240 and codes.count(429) == 60
        # status reads have their own window
        s = api.get("/v1/account")
        assert s.status_code == 200 and s.headers["ratelimit-policy"].startswith('"status"')
        assert s.json()["usage"]["generation_remaining"] == 0
    server.stop()


def test_two_servers_sharing_redis_share_the_count(tmp_path: Path) -> None:
    redis_url = "redis://127.0.0.1:6379/15"
    data = tmp_path / "data"
    plans = {
        "tiny": {
            "generation_per_min": 30,
            "status_per_min": 1000,
            "concurrent_jobs": 5,
            "retention_days": 1,
            "monthly_credits": 100000,
        }
    }
    a = LiveServer(make_settings(data, redis_url=redis_url, plans=plans)).start()
    b = LiveServer(make_settings(data, redis_url=redis_url, plans=plans)).start()
    try:
        key = a.new_key(f"shared-{uuid.uuid4().hex[:8]}", plan="tiny")
        admitted = 0
        with a.client(key) as ca, b.client(key) as cb:
            for i in range(50):
                r = (ca if i % 2 else cb).post("/v1/jobs", json={"engine": "test/sleep"})
                admitted += r.status_code == 202
        assert admitted == 30
    finally:
        b.stop()
        a.stop()


def test_account_concurrency_keeps_jobs_queued(server: LiveServer) -> None:
    key = server.new_key("one-at-a-time", plan="free", credits=1000)  # free: 1 at a time
    with server.client(key) as api:
        ids = [
            api.post(
                "/v1/jobs", json={"engine": "test/sync-sleep", "input": {"seconds": 1, "steps": 2}}
            ).json()["id"]
            for _ in range(3)
        ]
        wait_for(api, ids[0], until=("running",))
        second = api.get(f"/v1/jobs/{ids[1]}").json()
        assert second["status"] == "queued"
        assert second["message"].startswith("throttled")
        peak = 0
        while True:
            jobs = api.get("/v1/jobs").json()["data"]
            peak = max(peak, sum(j["status"] in ("starting", "running") for j in jobs))
            if all(j["status"] == "succeeded" for j in jobs):
                break
            time.sleep(0.05)
        assert peak == 1


def test_delete_and_retention_expire_jobs(tmp_path: Path) -> None:
    plans = {
        "brief": {
            "generation_per_min": 100,
            "status_per_min": 1000,
            "concurrent_jobs": 5,
            "retention_days": 2 / 86400,
            "monthly_credits": 1000,
        }
    }
    srv = LiveServer(make_settings(tmp_path / "data", plans=plans, sweep_interval_s=0.5)).start()
    try:
        with srv.client(srv.new_key("brief", plan="brief")) as api:
            job = wait_for(api, api.post("/v1/jobs", json={"engine": "test/sleep"}).json()["id"])
            url = job["outputs"][0]["url"]
            assert httpx.get(url).status_code == 200
            deadline = time.monotonic() + 15
            while api.get(f"/v1/jobs/{job['id']}").status_code != 410:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            gone = api.get(f"/v1/jobs/{job['id']}")
            assert gone.json()["code"] == "expired"
            assert httpx.get(url).status_code == 404
        with srv.client(srv.new_key("keeper", plan="pro")) as api:
            job = wait_for(api, api.post("/v1/jobs", json={"engine": "test/sleep"}).json()["id"])
            running = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 5}}
            ).json()
            assert api.delete(f"/v1/jobs/{running['id']}").status_code == 409
            assert api.delete(f"/v1/jobs/{job['id']}").status_code == 204
            assert api.get(f"/v1/jobs/{job['id']}").status_code == 410
            assert httpx.get(job["outputs"][0]["url"]).status_code == 404
            api.post(f"/v1/jobs/{running['id']}/cancel")
    finally:
        srv.stop()
    assert audit(srv) == []


@pytest.mark.parametrize(
    "path", ["/v1/jobs/{id}", "/v1/jobs/{id}/events", "/v1/jobs/{id}/deliveries"]
)
def test_cross_account_probes_look_missing(
    server: LiveServer, api: httpx.Client, path: str
) -> None:
    job = wait_for(api, api.post("/v1/jobs", json={"engine": "test/sleep"}).json()["id"])
    with server.client(server.new_key("eve")) as eve:
        theirs = eve.get(path.format(id=job["id"]))
        missing = eve.get(path.format(id="job_01M8000000000000000000000"))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["code"] == missing.json()["code"] == "not_found"
        assert eve.delete(f"/v1/jobs/{job['id']}").status_code == 404
