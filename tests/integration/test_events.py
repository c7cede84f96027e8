"""Server-Sent Events: order, resume with Last-Event-ID, account stream, restarts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, make_settings, wait_for


def sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE body into {id, event, data} dicts (comments skipped)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                event[name] = value


def collect(
    api: httpx.Client, path: str, headers: dict[str, str] | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with api.stream("GET", path, headers=headers or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for ev in sse(r):
            out.append(ev)
            if limit is not None and len(out) >= limit:
                break
    return out


def test_job_stream_in_order_and_closes(api: httpx.Client) -> None:
    job = api.post(
        "/v1/jobs", json={"engine": "test/sync-sleep", "input": {"seconds": 0.6, "steps": 3}}
    ).json()
    events = collect(api, f"/v1/jobs/{job['id']}/events")
    ids = [int(e["id"]) for e in events]
    assert ids == list(range(1, len(ids) + 1))
    types = [e["event"] for e in events]
    assert types[0] == "status" and types[-1] == "completed"
    assert {"progress", "output", "log"} <= set(types)
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[:2] == ["queued", "running"]  # a claim starts the job at once
    final = events[-1]["data"]
    assert final["object"] == "job" and final["status"] == "succeeded"
    assert final["outputs"][0]["name"] == "text"


def test_resume_after_disconnect_misses_nothing(api: httpx.Client) -> None:
    job = api.post(
        "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 1.5, "steps": 6}}
    ).json()
    first = collect(api, f"/v1/jobs/{job['id']}/events", limit=3)
    rest = collect(api, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": first[-1]["id"]})
    ids = [int(e["id"]) for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1]["event"] == "completed"
    # ?after= works the same, and replaying a finished job gives the same history
    again = collect(api, f"/v1/jobs/{job['id']}/events?after=0")
    assert [e["id"] for e in again] == [e["id"] for e in first + rest]


def test_account_stream_sees_every_job(api: httpx.Client) -> None:
    got: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:
        with api.stream("GET", "/v1/events") as r:
            ready.set()
            for ev in sse(r):
                got.append(ev)
                if sum(e["event"] == "completed" for e in got) == 2:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    ready.wait(10)
    time.sleep(0.2)
    ids = [
        api.post("/v1/jobs", json={"engine": "test/sleep", "input": {}}).json()["id"]
        for _ in range(2)
    ]
    t.join(20)
    assert not t.is_alive()
    assert {e["data"].get("job_id") or e["data"].get("id") for e in got} == set(ids)
    gids = [int(e["id"]) for e in got]
    assert gids == sorted(gids)


def test_events_are_private_and_resume_across_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    srv = LiveServer(settings).start()
    key = srv.new_key("alice")
    try:
        with srv.client(key) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 0.3}}
            ).json()
            seen = collect(api, f"/v1/jobs/{job['id']}/events", limit=2)
            wait_for(api, job["id"])
            with srv.client(srv.new_key("mallory")) as other:
                r = other.get(f"/v1/jobs/{job['id']}/events")
                assert r.status_code == 404
    finally:
        srv.stop()
    srv = LiveServer(settings).start()  # same data dir and port, a new process state
    try:
        with srv.client(key) as api:
            rest = collect(
                api, f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": seen[-1]["id"]}
            )
            ids = [int(e["id"]) for e in seen + rest]
            assert ids == list(range(1, len(ids) + 1))
            assert rest[-1]["event"] == "completed"
    finally:
        srv.stop()


def test_idle_streams_get_keep_alives_and_a_leaving_client_is_let_go(tmp_path: Path) -> None:
    srv = LiveServer(make_settings(tmp_path / "data", sse_keepalive_s=0.2)).start()
    try:
        with srv.client(srv.new_key()) as api:
            job = api.post(
                "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 30, "steps": 30}}
            ).json()
            wait_for(api, job["id"], until=("running",))
            comments = 0
            deadline = time.monotonic() + 5
            with api.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
                for line in r.iter_lines():
                    comments += line == ": keep-alive"
                    if comments >= 3 or time.monotonic() > deadline:
                        break
            assert comments >= 3
            feeds = srv.genq_app.state.feeds
            deadline = time.monotonic() + 5
            while len(feeds) and time.monotonic() < deadline:  # the stream's client left
                time.sleep(0.05)
            assert len(feeds) == 0
            api.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        srv.stop()
