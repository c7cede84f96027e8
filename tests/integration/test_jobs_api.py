"""The canonical job API against a real server and real SQLite."""

from __future__ import annotations

import time

import httpx

from tests.conftest import LiveServer, wait_for


def submit(api: httpx.Client, engine: str, **input: object) -> dict[str, object]:
    r = api.post("/v1/jobs", json={"engine": engine, "input": input})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    return r.json()  # type: ignore[no-any-return]


def test_lifecycle_progress_and_outputs(api: httpx.Client) -> None:
    job = submit(api, "test/sync-sleep", seconds=0.8, steps=4, text="fox")
    assert job["status"] == "queued"
    assert job["object"] == "job"
    assert job["credits"] == {"estimate": 3, "used": 0, "refunded": 0}
    seen_progress = set()
    deadline = time.monotonic() + 20
    while True:
        body = api.get(f"/v1/jobs/{job['id']}").json()
        if body["status"] == "running":
            seen_progress.add(body["progress"])
        if body["status"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert body["status"] == "succeeded"
    assert body["progress"] == 100.0
    assert len(seen_progress) >= 2, seen_progress
    assert body["processing_time_s"] > 0.5
    assert body["credits"] == {"estimate": 3, "used": 3, "refunded": 0}
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    [out] = body["outputs"]
    assert out["name"] == "text" and out["bytes"] == 3
    data = httpx.get(out["url"])  # public: no auth
    assert data.status_code == 200 and data.content == b"fox"


def test_hot_path_etag_and_retry_after(api: httpx.Client) -> None:
    job = submit(api, "test/sleep", seconds=1.0)
    r = api.get(f"/v1/jobs/{job['id']}")
    assert "retry-after" in r.headers
    etag = r.headers["etag"]
    r2 = api.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": etag})
    assert r2.status_code in (200, 304)
    done = wait_for(api, job["id"])
    assert done["status"] == "succeeded"
    final = api.get(f"/v1/jobs/{job['id']}")
    assert "retry-after" not in final.headers
    again = api.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": final.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_long_poll_returns_on_change_not_timeout(api: httpx.Client) -> None:
    job = submit(api, "test/sleep", seconds=0.6, steps=1)
    first = api.get(f"/v1/jobs/{job['id']}")
    t0 = time.monotonic()
    r = api.get(
        f"/v1/jobs/{job['id']}",
        params={"wait": 20},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert time.monotonic() - t0 < 10
    assert r.status_code == 200
    assert r.headers["etag"] != first.headers["etag"]


def test_engine_failure_is_a_failed_job_not_a_500(api: httpx.Client) -> None:
    job = submit(api, "test/boom")
    body = wait_for(api, job["id"])
    assert body["status"] == "failed"
    assert body["error"]["code"] == "engine_error"
    assert "exploded" in body["error"]["message"]
    assert body["credits"]["refunded"] == body["credits"]["estimate"]
    moderated = wait_for(api, submit(api, "test/moderated")["id"])
    assert moderated["error"]["code"] == "moderated"
    # the server keeps serving
    assert wait_for(api, submit(api, "test/sleep")["id"])["status"] == "succeeded"


def test_timeout_fails_with_timeout_code(api: httpx.Client) -> None:
    body = wait_for(api, submit(api, "test/stubborn", seconds=3)["id"])
    assert body["status"] == "failed"
    assert body["error"]["code"] == "timeout"
    assert body["error"]["retryable"] is True


def test_cancel_queued_and_running(server: LiveServer, api: httpx.Client) -> None:
    # fill test/sleep's two lanes, so the third waits in the queue
    running = [submit(api, "test/sleep", seconds=30, steps=30) for _ in range(2)]
    queued = submit(api, "test/sleep", seconds=30)
    for job in running:
        wait_for(api, job["id"], until=("running",))
    body = api.get(f"/v1/jobs/{queued['id']}").json()
    assert body["status"] == "queued" and body["queue_position"] == 0
    r = api.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel"] == "canceled"
    assert r.json()["status"] == "canceled"
    t0 = time.monotonic()
    r = api.post(f"/v1/jobs/{running[0]['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel"] == "cancel_requested"
    body = wait_for(api, running[0]["id"])
    assert body["status"] == "canceled" and body["error"]["code"] == "canceled"
    assert body["credits"]["used"] == 0
    assert time.monotonic() - t0 < 3
    again = api.post(f"/v1/jobs/{running[0]['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "conflict" and again.json()["job_status"] == "canceled"
    api.post(f"/v1/jobs/{running[1]['id']}/cancel")


def test_per_engine_concurrency_is_respected(api: httpx.Client) -> None:
    jobs = [submit(api, "test/sleep", seconds=0.6, steps=2) for _ in range(5)]
    peak = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = api.get("/v1/jobs", params={"engine": "test/sleep", "limit": 100}).json()
        statuses = [j["status"] for j in listing["data"]]
        peak = max(peak, sum(s in ("starting", "running") for s in statuses))
        if all(s == "succeeded" for s in statuses):
            break
        time.sleep(0.03)
    assert all(wait_for(api, j["id"])["status"] == "succeeded" for j in jobs)
    assert peak == 2  # test/sleep's concurrency


def test_list_pagination_and_filters(api: httpx.Client) -> None:
    ids = [submit(api, "test/sleep")["id"] for _ in range(5)]
    for job_id in ids:
        wait_for(api, job_id)
    seen: list[str] = []
    params: dict[str, object] = {"limit": 2}
    while True:
        page = api.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        params["after"] = page["next_cursor"]
    assert seen == list(reversed(ids))
    assert api.get("/v1/jobs", params={"status": "failed"}).json()["data"] == []
    bad = api.get("/v1/jobs", params={"status": "bogus"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


def test_bad_input_gets_problem_json(server: LiveServer, api: httpx.Client) -> None:
    def check(r: httpx.Response, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == code and r.json()["status"] == status

    check(api.post("/v1/jobs", json={"engine": "nope", "input": {}}), 404, "engine_not_found")
    r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": "x"}})
    check(r, 422, "invalid_input")
    assert r.json()["errors"][0]["field"] == "input.seconds"
    check(
        api.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_input",
    )
    check(
        api.post("/v1/jobs", content=b"engine=x", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    check(api.post("/v1/jobs", json={"engine": "test/sleep", "surprise": 1}), 422, "invalid_input")
    big = {"engine": "test/sleep", "input": {"text": "x" * (2 << 20)}}
    check(api.post("/v1/jobs", json=big), 413, "too_large")
    check(api.get("/v1/jobs/job_nope"), 404, "not_found")
    check(httpx.get(f"{server.url}/v1/jobs"), 401, "unauthorized")
    check(
        httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer gq_wrong"}),
        401,
        "unauthorized",
    )
    check(api.get("/files/a/b/c"), 404, "not_found")
    check(api.get("/files/../../etc/passwd"), 404, "not_found")


def test_accounts_are_isolated(server: LiveServer, api: httpx.Client, tmp_path: object) -> None:
    mine = wait_for(api, submit(api, "test/sleep")["id"])
    upload = api.post("/v1/files", files={"file": ("a.bin", b"secret bytes")}).json()
    with server.client(server.new_key("mallory")) as other:
        r = other.get(f"/v1/jobs/{mine['id']}")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        missing = other.get("/v1/jobs/job_01M0000000000000000000000")
        assert r.json()["detail"].replace(mine["id"], "X") == missing.json()["detail"].replace(
            "job_01M0000000000000000000000", "X"
        )
        assert other.post(f"/v1/jobs/{mine['id']}/cancel").status_code == 404
        assert other.get(f"/v1/files/{upload['id']}").status_code == 404
        assert other.get(f"/v1/files/{upload['id']}/content").status_code == 404
        assert other.get("/v1/jobs").json()["data"] == []
        # someone else's file cannot be used as an input
        r = other.post("/v1/jobs", json={"engine": "test/copy", "input": {"source": upload["id"]}})
        assert r.status_code == 422 and "no such file" in r.json()["detail"]
        r = other.post(
            "/v1/jobs", json={"engine": "test/copy", "input": {"source": f"{mine['id']}/text"}}
        )
        assert r.status_code == 422


def test_upload_and_use_as_input(api: httpx.Client) -> None:
    r = api.post("/v1/files", files={"file": ("../../evil name.bin", b"\x00\x01payload")})
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["filename"] == "evil_name.bin" and f["bytes"] == 9
    assert api.get(f"/v1/files/{f['id']}").json() == f
    assert api.get(f"/v1/files/{f['id']}/content").content == b"\x00\x01payload"
    job = wait_for(
        api,
        api.post("/v1/jobs", json={"engine": "test/copy", "input": {"source": f["id"]}}).json()[
            "id"
        ],
    )
    assert job["status"] == "succeeded", job
    assert httpx.get(job["outputs"][0]["url"]).content == b"\x00\x01payload"
    # an earlier job's output works as an input too
    chained = api.post(
        "/v1/jobs", json={"engine": "test/copy", "input": {"source": f"{job['id']}/copy"}}
    )
    assert wait_for(api, chained.json()["id"])["status"] == "succeeded"


def test_prefer_wait_holds_until_done(api: httpx.Client) -> None:
    r = api.post(
        "/v1/jobs",
        json={"engine": "test/sleep", "input": {"seconds": 0.3}},
        headers={"Prefer": "wait=10"},
    )
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded"


def test_engines_and_account(api: httpx.Client) -> None:
    engines = api.get("/v1/engines").json()["data"]
    names = {e["name"] for e in engines}
    assert {"test/sleep", "test/boom"} <= names
    one = api.get("/v1/engines/test/sleep").json()
    assert one["input_schema"]["properties"]["seconds"]["maximum"] == 120
    assert one["price"] == 3
    assert api.get("/v1/engines/nope/nope").json()["code"] == "engine_not_found"
    acct = api.get("/v1/account").json()
    assert acct["name"] == "alice" and acct["key"]["prefix"].startswith("gq_")


def test_health_ready_metrics_openapi(server: LiveServer, api: httpx.Client) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"
    wait_for(api, submit(api, "test/sleep")["id"])
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'genq_jobs_finished_total{status="succeeded"}' in metrics
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/jobs/{job_id}" in spec["paths"]
