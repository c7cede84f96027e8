"""The dashboard shows an upstream job like any other, its provider named on the job
page (a front genq drives a second genq's Vivix face)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, wait_for
from tests.e2e.conftest import sign_in
from tests.integration.gateway_harness import (
    front_server,
    scripted_input,
    scripted_upstream,
    upstream_config,
)


def _in_thread(fn: Any, *args: Any) -> Any:
    # (servers and keys call asyncio.run: not where Playwright keeps its loop)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """The front; its upstream is a scripted genq."""
    up = _in_thread(scripted_upstream, tmp_path)
    up_key = _in_thread(up.new_key, "buyer", "ultimate")
    front = _in_thread(front_server, tmp_path, upstream_config("vivix", up.url, up_key))
    try:
        yield front
    finally:
        front.stop()
        up.stop()


def test_an_upstream_job_names_its_provider(page: Any, server: LiveServer, key: str) -> None:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        engine, data = scripted_input("vivix", "sleep:0.5 a red fox")
        job_id = api.post("/v1/jobs", json={"engine": engine, "input": data}).json()["id"]
        assert wait_for(api, job_id, timeout=60)["status"] == "succeeded"
    sign_in(page, server, key)
    page.locator(f'tr[data-job="{job_id}"]').wait_for()
    page.goto(f"{server.url}/ui/#/jobs/{job_id}")
    runs_at = page.locator("dt", has_text="Runs at").locator("xpath=following-sibling::dd[1]")
    runs_at.wait_for()
    assert runs_at.inner_text().startswith("vivix (http://127.0.0.1:")
    page.locator(".badge[data-status=succeeded]").first.wait_for()
    page.locator("img").first.wait_for()  # its output, served by the front
