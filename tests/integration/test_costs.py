"""What a job costs the database, counted (not timed): a `demo/noop` job submitted over
HTTP and run to the end takes at most 12 SQL statements and 3 write transactions, and
an idle server writes nothing at all. Runs on the database GENQ_TEST_DB names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, make_settings, quiet_settings

MAX_STATEMENTS, MAX_WRITE_TXNS = 12, 3


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose background loops stay out of the way while one job runs."""
    srv = LiveServer(quiet_settings(tmp_path / "data")).start()
    try:
        yield srv
    finally:
        srv.stop()


def run_noop(api: httpx.Client) -> dict[str, object]:
    r = api.post(
        "/v1/jobs",
        json={"engine": "demo/noop", "input": {"delay_s": 0}},
        headers={"Prefer": "wait=10"},
    )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    assert body["status"] == "succeeded"
    return body


def test_a_noop_job_end_to_end_costs_few_statements(quiet_server: LiveServer) -> None:
    stats = quiet_server.genq.store.db.stats
    with quiet_server.client(quiet_server.new_key()) as api:
        run_noop(api)  # the key is verified and cached, engines warm
        time.sleep(0.2)
        costs = []
        for _ in range(5):
            before = stats.snapshot()
            run_noop(api)
            time.sleep(0.05)  # anything the job's end sets off
            after = stats.snapshot()
            costs.append({k: after[k] - before[k] for k in after})
    print("\nper demo/noop job:", costs)
    for cost in costs:
        assert cost["statements"] <= MAX_STATEMENTS, cost
        assert cost["write_txns"] <= MAX_WRITE_TXNS, cost
        assert cost["read_ops"] == 0, cost  # every read of it came from the cache
    # the three transitions happened, each committed (not skipped by a cache)
    assert all(cost["write_ops"] == 3 for cost in costs), costs


def test_an_idle_server_writes_nothing(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        reaper_interval_s=0.05,
        poll_interval_s=0.05,
        sweep_interval_s=0.05,
        event_poll_s=0.02,
        pg_event_poll_s=0.05,
        lease_s=0.3,
    )
    srv = LiveServer(settings).start()
    try:
        with srv.client(srv.new_key()) as api:
            run_noop(api)
        time.sleep(0.5)  # the job's deliveries, folds and the like are done
        stats = srv.genq.store.db.stats
        before = stats.snapshot()
        time.sleep(1.5)  # dozens of rounds of every background loop
        after = stats.snapshot()
    finally:
        srv.stop()
    assert after["write_txns"] == before["write_txns"], (before, after)
    assert after["read_ops"] > before["read_ops"]  # the loops did run: they only read
