"""The gateway's behaviour against a scripted upstream (each provider's face in front of
an engine the prompt drives): progress, failures and refunds, cancel, retries and
backoff behind a faulty proxy, the breaker, watchers, parked jobs, keys of one's own."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, make_settings, wait_for
from tests.integration.gateway_harness import (
    BIG,
    PROVIDERS,
    Fault,
    Proxy,
    front_server,
    scripted_input,
    scripted_upstream,
    upstream_config,
    upstream_jobs,
)

pytestmark = pytest.mark.timeout(240)
# providers whose status reports progress (Masterpiece X `progress`, useapi `content`)
REPORTS_PROGRESS = ("masterpiecex", "useapi")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = scripted_upstream(tmp_path_factory.mktemp("gwb"))
    try:
        yield srv
    finally:
        srv.stop()


def _front(root: Path, provider: str, base: str, key: str, **options: Any) -> LiveServer:
    overrides = options.pop("front", {})
    return front_server(root, upstream_config(provider, base, key, **options), **overrides)


def wait_parked(api: Any, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the job was handed over (its message says where it waits or runs)."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        if " at " in (job["message"] or ""):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _submit(api: Any, provider: str, prompt: str) -> str:
    engine, data = scripted_input(provider, prompt)
    r = api.post("/v1/jobs", json={"engine": engine, "input": data})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


@dataclass
class Gateway:
    """One front driving all four providers of the scripted upstream at once, each
    through a proxy of its own, with an upstream key and a front key per provider."""

    front: LiveServer
    proxies: dict[str, Proxy]
    up_keys: dict[str, str]
    keys: dict[str, str]

    def api(self, provider: str) -> httpx.Client:
        return self.front.client(self.keys[provider])


@contextmanager
def gateway(
    root: Path,
    scripted: LiveServer,
    name: str,
    *,
    front: dict[str, Any] | None = None,
    **options: Any,
) -> Iterator[Gateway]:
    proxies: dict[str, Proxy] = {}
    server = None
    try:
        config: dict[str, dict[str, Any]] = {}
        up_keys = {}
        for p in PROVIDERS:
            proxies[p] = Proxy(scripted.url).start()
            up_keys[p] = scripted.new_key(f"buyer-{name}-{p}", plan="ultimate")
            config.update(upstream_config(p, proxies[p].url, up_keys[p], **options))
        server = front_server(root, config, **(front or {}))
        keys = {p: server.new_key(f"{name}-{p}", plan="pro", credits=1000) for p in PROVIDERS}
        yield Gateway(server, proxies, up_keys, keys)
    finally:
        if server is not None:
            server.stop()
        for proxy in proxies.values():
            proxy.stop()


def each_provider(check: Callable[[str], None]) -> None:
    """`check(provider)` for the four providers at once (a thread each); a failure is
    re-raised naming its provider."""
    failures: dict[str, BaseException] = {}

    def run(provider: str) -> None:
        try:
            check(provider)
        except BaseException as exc:
            failures[provider] = exc

    threads = [threading.Thread(target=run, args=(p,)) for p in PROVIDERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        provider, exc = sorted(failures.items())[0]
        raise AssertionError(f"{provider}: {exc!r} (failed: {sorted(failures)})") from exc


def test_progress_and_status_follow_the_upstream(tmp_path: Path, scripted: LiveServer) -> None:
    # (useapi pushes only the end: polled here, to see its progress)
    with gateway(tmp_path, scripted, "progress", callbacks=False) as gw:

        def check(provider: str) -> None:
            with gw.api(provider) as api:
                job_id = _submit(api, provider, "sleep:4 steps:8")
                seen: set[tuple[str, float]] = set()
                messages: set[str] = set()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    job = api.get(f"/v1/jobs/{job_id}").json()
                    seen.add((job["status"], job["progress"]))
                    messages.add(job["message"] or "")
                    if job["status"] in ("succeeded", "failed"):
                        break
                    time.sleep(0.1)
                assert job["status"] == "succeeded", job
                assert {s for s, _ in seen} & {"starting", "running"}, seen
                assert any(" at " in m for m in messages), messages  # "running at Vivix..."
                if provider in REPORTS_PROGRESS:
                    assert any(0 < p < 100 for s, p in seen if s == "running"), seen

        each_provider(check)


def test_an_upstream_failure_fails_the_job_and_refunds_it(
    tmp_path: Path, scripted: LiveServer
) -> None:
    with gateway(tmp_path, scripted, "fail") as gw:

        def check(provider: str) -> None:
            with gw.api(provider) as api:
                before = api.get("/v1/account").json()["balance"]
                job = wait_for(api, _submit(api, provider, "sleep:0.5 fail"), timeout=60)
                assert job["status"] == "failed", job
                assert job["error"]["code"].startswith("upstream_"), job["error"]
                assert job["credits"]["used"] == 0
                assert job["credits"]["refunded"] == job["credits"]["estimate"] > 0
                assert api.get("/v1/account").json()["balance"] == before

        each_provider(check)


def test_cancel_stops_tracking_and_refunds(tmp_path: Path, scripted: LiveServer) -> None:
    with gateway(tmp_path, scripted, "cancel") as gw:

        def check(provider: str) -> None:
            proxy = gw.proxies[provider]
            with gw.api(provider) as api:
                before = api.get("/v1/account").json()["balance"]
                job_id = _submit(api, provider, "sleep:20 steps:20")
                wait_parked(api, job_id)
                r = api.post(f"/v1/jobs/{job_id}/cancel")
                assert r.status_code in (200, 202), r.text
                job = wait_for(api, job_id, timeout=30)
                assert job["status"] == "canceled", job
                # none of the four can cancel upstream: the job says so
                message = job["message"]
                assert "cannot" in message or "no way" in message, message
                assert job["credits"]["refunded"] == job["credits"]["estimate"]
                assert api.get("/v1/account").json()["balance"] == before
                polls = len(proxy.log)
                time.sleep(1.5)  # poll_s is 0.3: tracking would have polled again
                assert len(proxy.log) == polls, proxy.log[polls:]

        each_provider(check)


def test_429_and_500_are_retried_with_backoff(tmp_path: Path, scripted: LiveServer) -> None:
    with gateway(tmp_path, scripted, "retry", breaker_failures=50, callbacks=False) as gw:
        for proxy in gw.proxies.values():
            # the create call: a 500, then a 429 with Retry-After: 1; then status reads:
            # two 429s with Retry-After: 1 and two 500s
            proxy.faults = [
                Fault(500, 1, match=("POST", "")),
                Fault(429, 1, retry_after=1, match=("POST", "")),
                Fault(429, 2, retry_after=1, match=("GET", "")),
                Fault(500, 2, match=("GET", "")),
            ]

        def check(provider: str) -> None:
            proxy = gw.proxies[provider]
            with gw.api(provider) as api:
                job = wait_for(api, _submit(api, provider, "sleep:1"), timeout=90)
                assert job["status"] == "succeeded", job
            assert [f.times for f in proxy.faults] == [0, 0, 0, 0]
            # exactly one upstream job was made, although the create call was tried thrice
            assert len(upstream_jobs(scripted, gw.up_keys[provider])) == 1
            # Retry-After was honoured: after each 429 nothing was sent for a second
            stamps = proxy.stamps
            for i, (_, _, status, t) in enumerate(stamps[:-1]):
                if status == 429:
                    assert stamps[i + 1][3] - t >= 0.9, stamps

        each_provider(check)


def _upstreams(front: LiveServer, admin_key: str) -> dict[str, Any]:
    with front.client(admin_key) as c:
        r = c.get("/v1/upstreams")
        assert r.status_code == 200, r.text
        return {u["provider"]: u for u in r.json()["data"]}


def test_breaker_opens_when_the_upstream_is_down_and_recovers(
    tmp_path: Path, scripted: LiveServer
) -> None:
    with gateway(
        tmp_path,
        scripted,
        "down",
        breaker_failures=3,
        breaker_cooldown_s=1.5,
        max_failures=1000,
        callbacks=False,  # (useapi: polled, so that its failures are seen)
        front={"admin_accounts": ["ops"]},
    ) as gw:
        admin = gw.front.new_key("ops")
        with gw.front.client(admin) as c:
            assert c.get("/v1/upstreams").status_code == 200
        with gw.front.client(gw.front.new_key("mallory")) as c:
            assert c.get("/v1/upstreams").status_code == 403

        def check(provider: str) -> None:
            proxy = gw.proxies[provider]
            with gw.api(provider) as api:
                job_id = _submit(api, provider, "sleep:3")
                wait_parked(api, job_id)
                proxy.down = True
                deadline = time.monotonic() + 30
                while _upstreams(gw.front, admin)[provider]["state"] == "closed":
                    assert time.monotonic() < deadline, "the breaker never opened"
                    time.sleep(0.1)
                state = _upstreams(gw.front, admin)[provider]
                assert state["breaker"]["opened"] >= 1
                assert state["recent_error_rate"] > 0
                # while it is open a new job fails fast, refunded
                fast = wait_for(api, _submit(api, provider, "sleep:1"), timeout=30)
                assert fast["status"] == "failed", fast
                assert fast["error"]["code"] == "upstream_unavailable", fast["error"]
                assert fast["credits"]["refunded"] == fast["credits"]["estimate"]
                proxy.down = False
                job = wait_for(api, job_id, timeout=60)
                assert job["status"] == "succeeded", (job["error"], job["message"])
                assert _upstreams(gw.front, admin)[provider]["state"] == "closed"

        each_provider(check)


def _watch(front: LiveServer, key: str, job_id: str, stop: threading.Event) -> None:
    with front.client(key) as c:
        while not stop.is_set():
            job = c.get(f"/v1/jobs/{job_id}", params={"wait": 1}).json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                return


def test_watchers_cause_no_upstream_polls(tmp_path: Path, scripted: LiveServer) -> None:
    with gateway(tmp_path, scripted, "watch", poll_s=0.5) as gw:

        def check(provider: str) -> None:
            proxy, key = gw.proxies[provider], gw.keys[provider]
            counts = {}
            with gw.api(provider) as api:
                for watchers in (1, 20):
                    before = len(proxy.log)
                    job_id = _submit(api, provider, "sleep:3")
                    stop = threading.Event()
                    threads = [
                        threading.Thread(target=_watch, args=(gw.front, key, job_id, stop))
                        for _ in range(watchers)
                    ]
                    for t in threads:
                        t.start()
                    job = wait_for(api, job_id, timeout=60)
                    stop.set()
                    for t in threads:
                        t.join(timeout=10)
                    assert job["status"] == "succeeded"
                    counts[watchers] = sum(1 for m, _, _ in proxy.log[before:] if m == "GET")
            # ~3 s at one poll per 0.5 s (+-10% jitter): the same whether 1 or 20
            # clients watch (useapi: none, its result is pushed)
            assert counts[20] <= counts[1] + 2, counts
            assert counts[20] <= 3 / 0.45 + 6, counts

        each_provider(check)


def test_fifty_jobs_in_flight_on_two_worker_slots(tmp_path: Path, scripted: LiveServer) -> None:
    provider = "vivix"
    up_key = scripted.new_key("buyer-fifty", plan="ultimate")
    front = _front(
        tmp_path,
        provider,
        scripted.url,
        up_key,
        poll_s=1.0,
        rate_per_min=100000,
        max_jobs=100,
        front={"worker_slots": 2, "plans": BIG},
    )
    try:
        with front.client(front.new_key("alice", plan="ultimate")) as api:
            ids = [_submit(api, provider, "sleep:8") for _ in range(50)]
            peak, most_slots = 0, 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                jobs = [api.get(f"/v1/jobs/{i}").json() for i in ids]
                active = sum(1 for j in jobs if j["status"] in ("starting", "running"))
                peak = max(peak, active)
                assert front.genq.worker is not None
                most_slots = max(most_slots, len(front.genq.worker.runs))
                if peak >= 45 or all(j["status"] == "succeeded" for j in jobs):
                    break
                time.sleep(0.2)
            assert peak >= 45, peak  # in flight at once, on 2 slots
            assert most_slots <= 2
            for i in ids:
                assert wait_for(api, i, timeout=90)["status"] == "succeeded"
        assert len(upstream_jobs(scripted, up_key)) == 50
    finally:
        front.stop()


def test_jobs_over_the_providers_max_jobs_wait_queued_and_say_why(
    tmp_path: Path, scripted: LiveServer
) -> None:
    up_key = scripted.new_key("buyer-max-jobs", plan="ultimate")
    front = _front(tmp_path, "vivix", scripted.url, up_key, max_jobs=2)
    try:
        with front.client(front.new_key("alice", plan="ultimate")) as api:
            ids = [_submit(api, "vivix", "sleep:2") for _ in range(4)]
            waiting = None
            deadline = time.monotonic() + 30
            while waiting is None and time.monotonic() < deadline:
                jobs = [api.get(f"/v1/jobs/{i}").json() for i in ids]
                active = [j for j in jobs if j["status"] in ("starting", "running")]
                assert len(active) <= 2, active
                queued = [j for j in jobs if j["status"] == "queued"]
                if len(active) == 2 and queued:
                    waiting = queued[0]["message"]
                time.sleep(0.05)
            assert waiting is not None and "allows 2 jobs in flight" in waiting, waiting
            for i in ids:
                assert wait_for(api, i, timeout=60)["status"] == "succeeded"
    finally:
        front.stop()


def _raw_database_text(front: LiveServer) -> bytes:
    """Everything the front's database holds, as bytes: the SQLite files, or on
    PostgreSQL every row of every table as text."""
    settings = front.settings
    if settings.db_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in settings.data_dir.glob("genq.db*"))
    import psycopg

    url = settings.db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        return b"".join(
            str(conn.execute(f'SELECT * FROM "{t}"').fetchall()).encode() for t in tables
        )


def test_an_account_brings_its_own_key_encrypted_at_rest(
    tmp_path: Path, scripted: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    server_key = scripted.new_key("buyer-server-key", plan="ultimate")
    own_key = scripted.new_key("buyer-own-key", plan="ultimate")
    front = _front(tmp_path, "vivix", scripted.url, server_key)
    try:
        with front.client(front.new_key("alice")) as api:
            assert api.get("/v1/account/upstreams/vivix").status_code == 404
            assert api.get("/v1/account/upstreams/nope").status_code == 404
            bad = api.put("/v1/account/upstreams/vivix", json={"api_key": "a b c d"})
            assert bad.status_code == 422
            r = api.put("/v1/account/upstreams/vivix", json={"api_key": own_key})
            assert r.status_code == 200, r.text
            assert r.json()["last4"] == own_key[-4:]
            shown = api.get("/v1/account/upstreams/vivix")
            assert shown.json()["last4"] == own_key[-4:]
            assert own_key not in shown.text
            # the account's jobs use its own key: the job is the own key's account's
            job = wait_for(api, _submit(api, "vivix", "sleep:0.2"), timeout=60)
            assert job["status"] == "succeeded", job
            assert len(upstream_jobs(scripted, own_key)) == 1
            assert len(upstream_jobs(scripted, server_key)) == 0
            # another account on the front uses the server's
            with front.client(front.new_key("bob")) as other:
                assert other.get("/v1/account/upstreams/vivix").status_code == 404
                done = wait_for(other, _submit(other, "vivix", "sleep:0.2"), timeout=60)
                assert done["status"] == "succeeded"
            assert len(upstream_jobs(scripted, server_key)) == 1
            # never in the database, never in the logs
            raw = _raw_database_text(front)
            assert own_key.encode() not in raw
            assert own_key[4:-4].encode() not in raw
            assert own_key not in caplog.text
            # forgotten: the server's key again
            assert api.delete("/v1/account/upstreams/vivix").status_code == 204
            assert api.delete("/v1/account/upstreams/vivix").status_code == 404
            job = wait_for(api, _submit(api, "vivix", "sleep:0.2"), timeout=60)
            assert job["status"] == "succeeded"
            assert len(upstream_jobs(scripted, server_key)) == 2
    finally:
        front.stop()


def test_a_pushed_callback_ends_the_job_without_polls(tmp_path: Path, scripted: LiveServer) -> None:
    up_key = scripted.new_key("buyer-callback", plan="ultimate")
    proxy = Proxy(scripted.url).start()
    front = _front(tmp_path, "useapi", proxy.url, up_key, poll_s=0.3)
    try:
        with front.client(front.new_key("alice")) as api:
            job = wait_for(api, _submit(api, "useapi", "sleep:2"), timeout=60)
            assert job["status"] == "succeeded", job
            assert job["outputs"]
        status_reads = [p for m, p, _ in proxy.log if m == "GET" and "/jobs" in p]
        assert status_reads == [], proxy.log  # the result came by replyUrl
        # the callback URL checks its token: a wrong one is refused and changes nothing
        with httpx.Client(base_url=front.url) as anon:
            r = anon.post(f"/v1/upstreams/callbacks/{job['id']}/not-the-token", json={})
            assert r.status_code == 404
            assert r.headers["content-type"].startswith("application/problem+json")
    finally:
        front.stop()
        proxy.stop()


def test_two_processes_share_the_tracking_and_read_each_job_once(
    tmp_path: Path, scripted: LiveServer
) -> None:
    """Two genq processes on one database both track: each status read of a job is
    made by one of them (at the cadence), never by both."""
    up_key = scripted.new_key("buyer-two-fronts", plan="ultimate")
    proxy = Proxy(scripted.url).start()
    config = upstream_config("vivix", proxy.url, up_key, poll_s=0.5)
    first = front_server(tmp_path, config, plans=BIG)
    second = LiveServer(
        make_settings(
            tmp_path / "front",
            upstreams=config,
            upstream_tick_s=0.1,
            upstream_lease_s=3,
            plans=BIG,
            database_url=first.settings.database_url,
        )
    ).start()
    try:
        with first.client(first.new_key("alice", plan="ultimate")) as api:
            ids = [_submit(api, "vivix", "sleep:3") for _ in range(12)]
            for job_id in ids:
                assert wait_for(api, job_id, timeout=60)["status"] == "succeeded"
        trackers = [s.genq.tracker for s in (first, second)]
        assert all(t is not None and t.polls > 0 for t in trackers), "one process did all"
        reads = Counter(
            p.rsplit("/", 1)[-1] for m, p, _ in proxy.log if m == "GET" and "/generations/" in p
        )
        assert len(reads) == 12
        # ~3 s at one read per 0.5 s (+-10%): twice that if both processes read each job
        assert max(reads.values()) <= 3 / 0.45 + 3, reads
    finally:
        second.stop()
        first.stop()
        proxy.stop()


def test_a_create_answered_2xx_without_an_id_is_never_sent_again(
    tmp_path: Path, scripted: LiveServer
) -> None:
    """A 2xx answer to the create call means the service took the request, whatever
    its body says: an answer genq cannot read is not retried (that could pay twice);
    the job is reconciled (here: not idempotent, so `upstream_unknown`, refunded)."""
    up_key = scripted.new_key("buyer-unreadable", plan="ultimate")
    proxy = Proxy(scripted.url).start()
    proxy.faults = [Fault(201, 1, match=("POST", ""))]  # 201 '{"error": "injected"}'
    front = _front(tmp_path, "vivix", proxy.url, up_key)
    try:
        with front.client(front.new_key("alice", credits=1000)) as api:
            before = api.get("/v1/account").json()["balance"]
            job = wait_for(api, _submit(api, "vivix", "sleep:0.2"), timeout=60)
            assert job["status"] == "failed", job
            assert job["error"]["code"] == "upstream_unknown", job["error"]
            assert api.get("/v1/account").json()["balance"] == before
        assert proxy.count("POST", "") == 1, proxy.log
    finally:
        front.stop()
        proxy.stop()
