"""kill -9 of the front genq at several points of an upstream create call, then a
restart: never a second paid upstream job, and every genq job ends.

- before: the create request is held at the proxy (it never reaches the upstream);
- during: it reached the upstream (the job exists there) but its answer is held;
- after: the job was parked (the upstream id written) and is being tracked.

With `idempotent` (the service honours Idempotency-Key, as genq's faces do) the
restarted front sends the create again with the same key and tracks the one job;
without it the job fails `upstream_unknown`, refunded, and nothing is sent again."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request

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
from tests.integration.gateway_harness import (
    PROVIDERS,
    Proxy,
    scripted_input,
    scripted_upstream,
    upstream_jobs,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = scripted_upstream(tmp_path_factory.mktemp("gwc"))
    try:
        yield srv
    finally:
        srv.stop()


def _first_post() -> Callable[[Request], bool]:
    """True for the first POST only (the create call; the retry after restart passes)."""
    seen = {"n": 0}

    def match(request: Request) -> bool:
        if request.method != "POST":
            return False
        seen["n"] += 1
        return seen["n"] == 1

    return match


class Front:
    """`genq serve` as a subprocess that can be killed and started again."""

    def __init__(self, root: Path, upstreams: dict[str, Any]) -> None:
        self.dir = root / "front"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = genq_env(
            self.dir,
            GENQ_UPSTREAMS=json.dumps(upstreams),
            GENQ_PUBLIC_URL=self.url,
            GENQ_LEASE_S="2",
            GENQ_REAPER_INTERVAL_S="0.5",
            GENQ_UPSTREAM_LEASE_S="2",
            GENQ_UPSTREAM_TICK_S="0.1",
            GENQ_POLL_INTERVAL_S="0.5",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = self.dir / f"serve-{self.runs}.log"
        self.dir.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*GENQ, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=out,
            )
        wait_healthy(self.url, self.proc, log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.dir.glob("serve-*.log")))


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _crash(
    tmp_path: Path,
    scripted: LiveServer,
    provider: str,
    point: str,
    idempotent: bool,
    **extra: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]], int, int, str]:
    """Run one job through a front killed at `point`; (the job, the upstream's jobs,
    balance before, balance after, the front's logs)."""
    up_key = scripted.new_key(f"buyer-{provider}-{point}-{idempotent}", plan="ultimate")
    proxy = Proxy(scripted.url).start()
    if point == "before":
        proxy.hold = _first_post()
    elif point == "during":
        proxy.hold_after = _first_post()
    options: dict[str, Any] = {
        "base_url": f"{proxy.url}/compat/{provider}",
        "api_key": up_key,
        "poll_s": 0.3,
        "idempotent": idempotent,
        **extra,
    }
    front = Front(tmp_path, {provider: options})
    settings = make_settings(front.dir, port=front.port)
    key = create_key(settings, "alice", "pro", 1000)
    try:
        front.start()
        with httpx.Client(
            base_url=front.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            before = api.get("/v1/account").json()["balance"]
            engine, data = scripted_input(provider, "sleep:2")
            r = api.post("/v1/jobs", json={"engine": engine, "input": data})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            if point == "after":
                _wait(
                    lambda: " at " in (api.get(f"/v1/jobs/{job_id}").json()["message"] or ""),
                    "the job was never parked",
                )
            else:
                _wait(lambda: proxy.count("POST", "") >= 1, "the create call never came")
                if point == "during":  # it reached the upstream: the job exists there
                    _wait(lambda: len(upstream_jobs(scripted, up_key)) == 1, "not created")
            front.kill()
            proxy.hold = proxy.hold_after = None
            front.start()
            job = wait_for(api, job_id, timeout=90)
            after = api.get("/v1/account").json()["balance"]
        return job, upstream_jobs(scripted, up_key), before, after, front.logs()
    finally:
        front.stop()
        proxy.stop()


@pytest.mark.parametrize("point", ["before", "during", "after"])
@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "not-idempotent"])
def test_kill_9_during_the_create_call_never_makes_a_second_upstream_job(
    tmp_path: Path, scripted: LiveServer, point: str, idempotent: bool
) -> None:
    job, made, before, after, logs = _crash(tmp_path, scripted, "vivix", point, idempotent)
    assert len(made) <= 1, made
    if idempotent or point == "after":
        assert job["status"] == "succeeded", (job["error"], logs[-3000:])
        assert len(made) == 1
        assert after == before - job["credits"]["used"]
    else:
        # the restarted front cannot tell whether the job was made: it says so, sends
        # nothing again and refunds
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "upstream_unknown", job["error"]
        assert job["id"] in job["error"]["message"]
        assert after == before
        assert len(made) == (1 if point == "during" else 0)


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "vivix"])
def test_kill_9_with_the_answer_lost_every_provider(
    tmp_path: Path, scripted: LiveServer, provider: str
) -> None:
    job, made, _, _, logs = _crash(tmp_path, scripted, provider, "during", True)
    assert job["status"] == "succeeded", (job["error"], logs[-3000:])
    assert len(made) == 1, made


def test_kill_9_with_the_answer_lost_useapi_adopts_the_job_its_push_reports(
    tmp_path: Path, scripted: LiveServer
) -> None:
    """useapi honours no Idempotency-Key, but it pushes every job's result to the
    replyUrl of the create call: the restarted front waits for that push (`adopt_s`)
    and adopts the one job instead of failing `upstream_unknown`."""
    job, made, before, after, logs = _crash(
        tmp_path, scripted, "useapi", "during", False, adopt_s=60
    )
    assert job["status"] == "succeeded", (job["error"], logs[-3000:])
    assert len(made) == 1, made
    assert after == before - job["credits"]["used"]
