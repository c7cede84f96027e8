"""What an account can hold open is bounded (its plan's `open_streams`: event streams
and long-polls at once), and a stopping server lets go of what is held: streams close
cleanly and long-polls answer at once, with no error logged."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    GENQ,
    LiveServer,
    create_key,
    free_port,
    genq_env,
    make_settings,
    wait_for,
    wait_healthy,
)

OPEN = 3


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[LiveServer]:
    plans = {"pro": {"open_streams": OPEN}}
    srv = LiveServer(make_settings(tmp_path / "data", plans=plans)).start()
    try:
        yield srv
    finally:
        srv.stop()


def long_job(api: httpx.Client) -> str:
    """A job that runs for a minute and, once it has reported its one progress step,
    changes no more (so a long-poll of it waits)."""
    r = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 60, "steps": 1}})
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    deadline = time.monotonic() + 30
    while api.get(f"/v1/jobs/{job_id}").json()["message"] != "step 1 of 1":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job_id


def refused(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "too_many_streams"
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1


def test_streams_and_long_polls_are_bounded_per_account(bounded: LiveServer) -> None:
    alice = bounded.client(bounded.new_key("alice"))
    bob = bounded.client(bounded.new_key("bob"))
    pool = ThreadPoolExecutor(4)
    with alice, bob, ExitStack() as held:
        job = long_job(alice)
        # two event streams (job, account) and one long-poll: the plan's three
        for path in (f"/v1/jobs/{job}/events", "/v1/events"):
            r = held.enter_context(alice.stream("GET", path))
            assert r.status_code == 200
        poll = pool.submit(alice.get, f"/v1/jobs/{job}", params={"wait": 30})
        deadline = time.monotonic() + 10
        while sum(bounded.genq.holds.open.values()) != OPEN:
            assert time.monotonic() < deadline and not poll.done()
            time.sleep(0.02)
        # a fourth of any kind is refused, with nothing else changed
        with alice.stream("GET", f"/v1/jobs/{job}/events") as r:
            r.read()
            refused(r)
        with alice.stream("GET", "/v1/events") as r:
            r.read()
            refused(r)
        refused(alice.get(f"/v1/jobs/{job}", params={"wait": 5}))
        assert alice.get(f"/v1/jobs/{job}").status_code == 200  # a plain read is not held
        # a create's `Prefer: wait` is not a reason to refuse a job: it is not applied
        made = alice.post(
            "/v1/jobs",
            json={"engine": "demo/noop", "input": {}},
            headers={"Prefer": "wait=5"},
        )
        assert made.status_code == 202 and "preference-applied" not in made.headers
        # another account is not affected
        with bob.stream("GET", "/v1/events") as r:
            assert r.status_code == 200
        # a stream given back is a place free again
        held.close()
        alice.post(f"/v1/jobs/{job}/cancel")
        assert poll.result(timeout=30).status_code == 200
        with alice.stream("GET", "/v1/events") as r:
            assert r.status_code == 200
    pool.shutdown()
    deadline = time.monotonic() + 10
    while bounded.genq.holds.open:  # every hold given back
        assert time.monotonic() < deadline, bounded.genq.holds.open
        time.sleep(0.02)


def test_sigterm_closes_streams_and_answers_long_polls_at_once(tmp_path: Path) -> None:
    """`genq serve` with two event streams and a long-poll open: SIGTERM ends each at
    once and cleanly (the streams' ends, the poll's answer) and logs no error. Before,
    the server waited out uvicorn's graceful timeout (25 s) and then cancelled the
    streams with an ERROR traceback."""
    data = tmp_path / "data"
    data.mkdir(parents=True)
    port = free_port()
    key = create_key(make_settings(data, port=port), "alice")
    env = genq_env(data, GENQ_PORT=str(port), GENQ_SHUTDOWN_GRACE_S="1")
    log = data / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*GENQ, "serve"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=90)
    try:
        wait_healthy(url, proc, log)
        job = long_job(api)
        got: dict[str, tuple[int, bytes]] = {}
        opened = threading.Barrier(3)

        def stream(path: str) -> None:
            with api.stream("GET", path) as r:
                chunks = r.iter_raw()
                first = next(chunks)
                opened.wait(10)
                got[path] = (r.status_code, first + b"".join(chunks))  # to its end

        paths = (f"/v1/jobs/{job}/events", "/v1/events")
        threads = [threading.Thread(target=stream, args=(p,)) for p in paths]
        polled: list[httpx.Response] = []
        threads.append(
            threading.Thread(
                target=lambda: polled.append(api.get(f"/v1/jobs/{job}", params={"wait": 60}))
            )
        )
        for t in threads:
            t.start()
        opened.wait(10)
        time.sleep(0.5)  # the long-poll is waiting too
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=20)
            assert not t.is_alive(), log.read_text()
        answered = time.monotonic() - start
        # uvicorn re-raises the signal it handled once it has shut down
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
        stopped = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        api.close()
    assert answered < 5 and stopped < 15, (answered, stopped)  # no graceful timeout
    for path in paths:
        status, body = got[path]
        assert status == 200 and body.startswith(b"retry: 2000"), (path, body)
    assert job.encode() in got[paths[0]][1]  # the job stream had replayed its events
    assert polled[0].status_code == 200
    assert polled[0].json()["status"] in ("queued", "running")
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text


def test_back_pressure_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Jobs waiting on their account's and engine's concurrency limits are normal: no
    warning, no traceback (before, on PostgreSQL, each refused claim logged one)."""
    caplog.set_level(logging.DEBUG, logger="genq")
    srv = LiveServer(make_settings(tmp_path / "data", worker_slots=4)).start()
    try:
        with srv.client(srv.new_key("alice", plan="free", credits=10_000)) as api:
            ids = [
                api.post(
                    "/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 0.02}}
                ).json()["id"]
                for _ in range(12)
            ]
            for job_id in ids:
                assert wait_for(api, job_id)["status"] == "succeeded"
    finally:
        srv.stop()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
