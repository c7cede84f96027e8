"""Input that must not hurt the server: refused before anything is stored (422 naming
the field, alike on SQLite and PostgreSQL), and whatever was stored always renders."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from genq.migrate import sync_url
from genq.runtime import MAX_LOG_LINES
from tests.conftest import LiveServer, make_settings, wait_for


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def problem(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    return body


def nothing_stored(api: httpx.Client, balance: int) -> None:
    assert api.get("/v1/jobs").json()["data"] == []
    assert api.get("/v1/account").json()["balance"] == balance


def test_deeply_nested_or_large_metadata_is_refused_before_anything_is_stored(
    api: httpx.Client,
) -> None:
    balance = api.get("/v1/account").json()["balance"]
    for metadata, kind in [
        (nested(300), "too_deep"),
        (nested(9), "too_deep"),
        ({"big": "x" * 20_000}, "too_large"),
    ]:
        body = problem(
            api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}, "metadata": metadata})
        )
        assert body["code"] == "invalid_input"
        [error] = body["errors"]
        assert error["field"].startswith("metadata") and error["type"] == kind
    nothing_stored(api, balance)
    # within the limits it is stored and read back as sent
    ok = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}, "metadata": nested(8)})
    assert ok.status_code == 202, ok.text
    assert api.get(f"/v1/jobs/{ok.json()['id']}").json()["metadata"] == nested(8)


def test_nul_characters_are_refused_with_the_field_named(
    server: LiveServer, api: httpx.Client
) -> None:
    balance = api.get("/v1/account").json()["balance"]
    cases = [
        ({"engine": "test/sleep", "input": {"text": "a\x00b"}}, "input.text"),
        ({"engine": "test/sleep", "input": {}, "metadata": {"k": "a\x00b"}}, "metadata.k"),
        ({"engine": "test/sleep", "input": {}, "metadata": {"k\x00": 1}}, "metadata.k\x00"),
        ({"engine": "test/sleep", "input": {}, "metadata": {"l": [1, "\x00"]}}, "metadata.l[1]"),
    ]
    for body, field in cases:
        err = problem(api.post("/v1/jobs", json=body))
        assert err["code"] == "invalid_input"
        assert [e["field"] for e in err["errors"]] == [field]
        assert err["errors"][0]["type"] == "nul_character"
    nothing_stored(api, balance)

    err = problem(api.post("/v1/models", json={"name": "my\x00model"}))
    assert err["errors"][0]["field"] == "name"
    assert api.get("/v1/models").json()["data"] == []

    uploads = server.settings.data_dir / "uploads"
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    err = problem(
        api.post(
            "/v1/files",
            files={"file": ("a.png", b"\x89PNG...", "image/png")},
            data={"purpose": "x\x00"},
        )
    )
    assert err["errors"][0]["field"] == "purpose"
    after = sorted(uploads.rglob("*")) if uploads.exists() else []
    assert after == before  # no orphan file, no empty directory


def test_a_failed_upload_leaves_no_file_behind(server: LiveServer, api: httpx.Client) -> None:
    uploads = server.settings.data_dir / "uploads"
    limit = server.settings.max_upload_bytes
    r = api.post("/v1/files", files={"file": ("big.bin", b"\x00" * (limit + 1), "x/y")})
    assert problem(r, 413)["code"] == "too_large"
    assert not uploads.exists() or list(uploads.rglob("*")) == []
    ok = api.post("/v1/files", files={"file": ("small.bin", b"\x00" * 10, "x/y")})
    assert ok.status_code == 201 and ok.json()["bytes"] == 10
    assert len([p for p in uploads.rglob("*") if p.is_file()]) == 1


def test_a_row_stored_before_the_checks_still_renders(tmp_path: Path) -> None:
    """Rows written by an older genq may hold what the checks now refuse (metadata 300
    levels deep, past what orjson writes): every read of them still answers."""
    settings = make_settings(tmp_path / "data")
    srv = LiveServer(settings).start()
    try:
        key = srv.new_key()
        with srv.client(key) as api:
            job = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}}).json()
            wait_for(api, job["id"])
    finally:
        srv.stop()
    deep = nested(300)
    engine = create_engine(sync_url(settings.db_url))
    try:
        with engine.begin() as conn:
            cast = "CAST(:m AS jsonb)" if engine.dialect.name == "postgresql" else ":m"
            conn.execute(
                text(f"UPDATE jobs SET metadata = {cast} WHERE id = :id"),
                {"m": json.dumps(deep), "id": job["id"]},
            )
    finally:
        engine.dispose()
    srv = LiveServer(make_settings(tmp_path / "data", port=settings.port)).start()
    try:
        with srv.client(key) as api:
            one = api.get(f"/v1/jobs/{job['id']}")
            assert one.status_code == 200 and one.json()["metadata"] == deep
            page = api.get("/v1/jobs")
            assert page.status_code == 200 and page.json()["data"][0]["metadata"] == deep
            with api.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
                frames = [line for line in stream.iter_lines() if line.startswith("event:")]
            assert frames[-1] == "event: completed"
            with api.stream("GET", "/v1/events", params={"after": 0}) as stream:
                for line in stream.iter_lines():
                    if line == "event: completed":
                        break
    finally:
        srv.stop()


def test_engine_text_with_nul_is_kept_and_a_log_flood_is_bounded(api: httpx.Client) -> None:
    lines = MAX_LOG_LINES + 50
    job = api.post("/v1/jobs", json={"engine": "test/chatter", "input": {"lines": lines}}).json()
    done = wait_for(api, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    with api.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
    logs = [e for e in events if e.get("type") == "log"]
    assert len(logs) == MAX_LOG_LINES + 1
    assert logs[0]["message"] == "line 0\ufffd"
    assert logs[-1]["level"] == "warning" and logs[-1]["message"].startswith("50 more log lines")
    assert "half\ufffdway" in [e.get("message") for e in events if e.get("type") == "progress"] + [
        done["message"]
    ]

    failed = api.post("/v1/jobs", json={"engine": "test/chatter", "input": {"fail": True}})
    body = wait_for(api, failed.json()["id"])
    assert body["status"] == "failed"
    assert body["error"]["message"] == "RuntimeError: bad\ufffdnews"


def test_two_concurrent_trains_of_one_model_start_one_job(
    server: LiveServer, api: httpx.Client
) -> None:
    model = api.post("/v1/models", json={"name": "palette"}).json()
    image = api.post("/v1/files", files={"file": ("a.png", png(), "image/png")}).json()
    balance = api.get("/v1/account").json()["balance"]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=dict(api.headers)) as c:
            return await asyncio.gather(
                *[
                    c.post(
                        f"/v1/models/{model['id']}/train",
                        json={"input": {"images": [image["id"]], "delay_s": 0}},
                    )
                    for _ in range(6)
                ]
            )

    answers = asyncio.run(race())
    assert sorted(r.status_code for r in answers) == [202] + [409] * 5, [r.text for r in answers]
    [job] = [r.json() for r in answers if r.status_code == 202]
    jobs = api.get("/v1/jobs").json()["data"]
    assert [j["id"] for j in jobs] == [job["id"]]
    assert api.get("/v1/account").json()["balance"] == balance - job["credits"]["estimate"]
    wait_for(api, job["id"])
    assert api.get(f"/v1/models/{model['id']}").json()["status"] == "ready"


def png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(make_settings(tmp_path / "data"), workers=False).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_claim_whose_inputs_cannot_be_resolved_fails_only_that_job(
    api_only: LiveServer,
) -> None:
    """One claim takes three jobs; resolving the second one's inputs raises. That job
    fails at once with the reason; the others run on their first attempt (before, the
    jobs after it in the batch were left running without heartbeats until reaped)."""
    with api_only.client(api_only.new_key()) as api:
        ids = [
            api.post("/v1/jobs", json={"engine": "test/sync-sleep", "input": {"steps": 1}}).json()[
                "id"
            ]
            for _ in range(3)
        ]
        genq = api_only.genq
        real = genq.jobs.resolver

        async def resolver(job: Any) -> Any:
            if job.id == ids[1]:
                raise OSError("the input volume is gone")
            return await real(job)

        async def start() -> None:
            worker = genq.make_worker(slots=4)
            worker.resolver = resolver
            genq.worker = worker
            await worker.start()

        asyncio.run_coroutine_threadsafe(start(), genq.loop).result(10)
        first, second, third = (wait_for(api, i, timeout=20) for i in ids)
        assert second["status"] == "failed"
        assert second["error"]["code"] == "engine_error"
        assert "the input volume is gone" in second["error"]["message"]
        assert first["status"] == third["status"] == "succeeded"
        # all three came from one claim, and each ran once
        assert first["started_at"] == second["started_at"] == third["started_at"]
        for job_id in ids:
            with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                data = [json.loads(x[5:]) for x in stream.iter_lines() if x.startswith("data:")]
            starts = [d for d in data if d.get("type") == "status" and d["status"] == "running"]
            assert len(starts) == 1, job_id
