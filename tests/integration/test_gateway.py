"""genq as a gateway, end to end: a front genq drives each upstream service (played by
a second genq's compat face) through `GENQ_UPSTREAMS`; see `gateway_harness`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import genq
from tests.conftest import LiveServer, wait_for
from tests.integration.gateway_harness import (
    CASES,
    PROVIDERS,
    Proxy,
    front_server,
    upstream_config,
    upstream_server,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    srv, key = upstream_server(tmp_path_factory.mktemp("gw"))
    try:
        yield srv, key
    finally:
        srv.stop()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_job_runs_upstream_and_its_outputs_are_served_by_genq(
    tmp_path: Path, upstream: tuple[LiveServer, str], provider: str
) -> None:
    up, up_key = upstream
    engine, data, kinds = CASES[provider]
    front = front_server(tmp_path, upstream_config(provider, up.url, up_key))
    try:
        key = front.new_key("alice", plan="pro")
        with front.client(key) as api:
            described = api.get(f"/v1/engines/{engine}").json()
            assert described["upstream"] == {
                "provider": provider,
                "base_url": f"{up.url}/compat/{provider}",
            }
            assert up_key not in str(described)
            assert described["input_schema"]["properties"]["prompt"]
            r = api.post("/v1/jobs", json={"engine": engine, "input": data})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            job = wait_for(api, job_id, timeout=120)
            assert job["status"] == "succeeded", job
            assert job["outputs"], job
            assert {o["kind"] for o in job["outputs"]} & kinds
            for out in job["outputs"]:
                assert out["url"].startswith(front.url), out
                assert out["upstream_url"].startswith(up.url), out  # where it came from
                got = api.get(out["url"])
                assert got.status_code == 200
                assert len(got.content) == out["bytes"] > 0
            # the job paid its price; nothing was refunded
            assert job["credits"]["used"] == job["credits"]["estimate"] > 0
        # the SDK sees it like any other job, its engine naming the provider
        with genq.Client(front.url, key) as sdk:
            [listed] = [e for e in sdk.engines.list() if e.name == engine]
            assert listed.upstream is not None and listed.upstream.provider == provider
            assert sdk.engines.retrieve(engine).upstream == listed.upstream
            assert sdk.jobs.retrieve(job_id).status == "succeeded"
    finally:
        front.stop()


def test_proxy_counts(tmp_path: Path, upstream: tuple[LiveServer, str]) -> None:
    up, _ = upstream
    proxy = Proxy(up.url).start()
    try:
        assert httpx.get(f"{proxy.url}/healthz").status_code == 200
        assert proxy.count("GET", "/healthz") == 1
    finally:
        proxy.stop()
