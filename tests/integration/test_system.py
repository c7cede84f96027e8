"""/readyz and /metrics as an operator exposes them: readiness tells nothing about the
database's address or users, a scrape costs the database nothing and agrees with it,
and `GENQ_METRICS_TOKEN` keeps /metrics to whoever has the token."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, quiet_settings, wait_for


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[LiveServer]:
    """Background loops slowed down, so what a scrape costs is all there is to count."""
    settings = quiet_settings(
        tmp_path / "data",
        poll_interval_s=0.2,
        plans={"pro": {"concurrent_jobs": 1}},
        metrics_token="s3cret-metrics",
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_readiness_failure_names_no_host_and_is_logged(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    leak = (
        'connection to server at "db.internal" (10.1.2.3), port 5432 failed:'
        ' FATAL: password authentication failed for user "genq_admin"'
    )

    async def down() -> None:
        raise OSError(leak)

    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"
    monkeypatch.setattr(server.genq.store, "ping", down)
    caplog.set_level(logging.WARNING, logger="genq")
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "detail": "the database does not answer"}
    for secret in ("db.internal", "10.1.2.3", "genq_admin"):
        assert secret not in r.text
    logged = [rec for rec in caplog.records if rec.name == "genq.api.routes.system"]
    assert logged and logged[0].exc_info and leak in str(logged[0].exc_info[1])


def scrape(srv: LiveServer, token: str | None = "s3cret-metrics") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{srv.url}/metrics", headers=headers)


def gauge(text: str) -> dict[tuple[str, str], int]:
    """`genq_jobs` samples, by (status, engine), zeros left out."""
    found = {}
    for labels, n in re.findall(r"^genq_jobs\{([^}]*)\} (\S+)$", text, re.M):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if float(n):
            found[label["status"], label["engine"]] = int(float(n))
    return found


def test_metrics_want_the_token_when_one_is_set(quiet: LiveServer) -> None:
    for token in (None, "wrong", "s3cret-metrics-and-more"):
        r = scrape(quiet, token)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "genq_jobs" not in r.text
    ok = scrape(quiet)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")


def test_a_scrape_reads_nothing_and_agrees_with_the_database(quiet: LiveServer) -> None:
    stats = quiet.genq.store.db.stats
    with quiet.client(quiet.new_key("alice")) as api:
        # one runs (the plan allows one at a time), the rest wait queued
        ids = [
            api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 30}}).json()[
                "id"
            ]
            for _ in range(4)
        ]
        wait_for(api, ids[0], until=("running",))
        stored = asyncio.run(counts(quiet))
        assert stored == {("running", "test/sleep"): 1, ("queued", "test/sleep"): 3}
        before = stats.snapshot()
        for _ in range(20):
            text = scrape(quiet).text
        after = stats.snapshot()
        # (the running job writes its progress meanwhile; reads are all a scrape could do)
        assert after["read_ops"] == before["read_ops"], (before, after)
        assert gauge(text) == stored
        for job_id in ids:
            api.post(f"/v1/jobs/{job_id}/cancel")
        for job_id in ids:
            wait_for(api, job_id)
    assert gauge(scrape(quiet).text) == {}


async def counts(srv: LiveServer) -> dict[tuple[str, str], int]:
    from genq.store import Store

    store = Store(srv.settings.db_url)
    try:
        return await store.jobs.status_counts()
    finally:
        await store.close()
