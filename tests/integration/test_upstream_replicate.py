"""The replicate provider against a second genq acting as Replicate (its
`/compat/replicate` face, real HTTP on loopback): input schemas discovered from the
service, a job end to end (the result pushed back by Replicate's webhook, the output
copied into the front's storage), validation against the discovered schema, cancel,
and a kill -9 of the tracking `genq serve` followed by `genq run` from the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from genq.engines.upstream.call import HttpCall
from genq.engines.upstream.gateway import Gateway
from genq.engines.upstream.replicate import Replicate
from tests.compat.conftest import PNG_MAGIC
from tests.conftest import GENQ, LiveServer, create_key, free_port, make_settings, wait_for
from tests.integration.gateway_harness import (
    front_server,
    upstream_config,
    upstream_jobs,
    upstream_server,
)
from tests.integration.test_gateway_crash import Front

pytestmark = pytest.mark.timeout(180)
MODELS = ["demo/text2image", "test/sleep"]
ENGINE = "replicate/demo/text2image"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    srv, key = upstream_server(tmp_path_factory.mktemp("rep-up"))
    try:
        yield srv, key
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def front(
    upstream: tuple[LiveServer, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    up, key = upstream
    config = upstream_config("replicate", up.url, key, models=MODELS)
    srv = front_server(tmp_path_factory.mktemp("rep-front"), config)
    try:
        yield srv
    finally:
        srv.stop()


def discovered(api: httpx.Client, engine: str = ENGINE) -> dict[str, Any]:
    """The engine as the front shows it, once its schema was read from the upstream."""
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = api.get(f"/v1/engines/{engine}").json()
        if "properties" in body["input_schema"]:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_a_job_runs_at_replicate_end_to_end(
    front: LiveServer, upstream: tuple[LiveServer, str]
) -> None:
    up, up_key = upstream
    key = front.new_key("alice-e2e")
    with front.client(key) as api, up.client(up_key) as up_api:
        engine = discovered(api)
        assert engine["upstream"]["provider"] == "replicate"
        theirs = up_api.get("/v1/engines/demo/text2image").json()["input_schema"]
        assert engine["input_schema"]["properties"] == theirs["properties"]
        bad = api.post("/v1/jobs", json={"engine": ENGINE, "input": {"prompt": 5}})
        assert bad.status_code == 422 and "prompt" in bad.text
        before = len(upstream_jobs(up, up_key))

        r = api.post(
            "/v1/jobs",
            json={"engine": ENGINE, "input": {"prompt": "a red fox", "width": 64, "delay_s": 0}},
        )
        assert r.status_code == 202, r.text
        job = wait_for(api, r.json()["id"])
        assert job["status"] == "succeeded", job["error"]
        (out,) = job["outputs"]
        assert out["kind"] == "image" and out["url"].startswith(front.url)
        assert httpx.get(out["url"]).content.startswith(PNG_MAGIC)

        made = upstream_jobs(up, up_key)
        assert len(made) == before + 1  # the bad input never reached Replicate
        theirs_job = made[0]
        assert theirs_job["metadata"]["model"] == "demo/text2image"
        assert theirs_job["metadata"]["compat"] == "replicate"
        # Replicate's webhook carried the result back to the front's callback URL
        pushes = up_api.get(f"/v1/jobs/{theirs_job['id']}/deliveries").json()["data"]
        assert [p["event"] for p in pushes] == ["completed"]
        assert "/v1/upstreams/callbacks/" in pushes[0]["url"]


def test_cancel_reaches_replicate(front: LiveServer, upstream: tuple[LiveServer, str]) -> None:
    up, up_key = upstream
    key = front.new_key("alice-cancel")
    with front.client(key) as api:
        discovered(api, "replicate/test/sleep")
        r = api.post("/v1/jobs", json={"engine": "replicate/test/sleep", "input": {"seconds": 30}})
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while not any(j["status"] == "running" for j in upstream_jobs(up, up_key)):
            assert time.monotonic() < deadline, "the upstream job never ran"
            time.sleep(0.1)
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        assert wait_for(api, job_id)["status"] == "canceled"
    deadline = time.monotonic() + 30
    while any(
        j["engine"] == "test/sleep" and j["status"] == "running" for j in upstream_jobs(up, up_key)
    ):
        assert time.monotonic() < deadline, "the upstream job was not canceled"
        time.sleep(0.1)
    sleeps = [j for j in upstream_jobs(up, up_key) if j["engine"] == "test/sleep"]
    assert sleeps and sleeps[0]["status"] == "canceled"


def test_kill_9_while_tracking_then_genq_run(
    tmp_path: Path, upstream: tuple[LiveServer, str]
) -> None:
    up, _ = upstream
    up_key = up.new_key("buyer-crash", plan="ultimate")
    options = {
        "base_url": f"{up.url}/compat/replicate",
        "api_key": up_key,
        "poll_s": 0.3,
        "safety_poll_s": 1,
        "models": MODELS,
    }
    front = Front(tmp_path, {"replicate": options})
    key = create_key(make_settings(front.dir, port=front.port), "alice", "pro", 1000)
    try:
        front.start()
        with httpx.Client(
            base_url=front.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            discovered(api)
            r = api.post(
                "/v1/jobs",
                json={"engine": ENGINE, "input": {"prompt": "a fox", "width": 64, "delay_s": 2}},
            )
            job_id = r.json()["id"]
            deadline = time.monotonic() + 30
            while " at " not in (api.get(f"/v1/jobs/{job_id}").json()["message"] or ""):
                assert time.monotonic() < deadline, "the job was never parked"
                time.sleep(0.05)
            front.kill()
            front.start()
            job = wait_for(api, job_id, timeout=60)
            assert job["status"] == "succeeded", (job["error"], front.logs()[-3000:])
            assert len(upstream_jobs(up, up_key)) == 1  # tracked again, never made twice

        # the done-when check: `genq run` of the upstream engine through the CLI
        env = {**os.environ, "GENQ_BASE_URL": front.url, "GENQ_API_KEY": key}
        cli = subprocess.run(
            [
                *GENQ,
                "run",
                ENGINE,
                "-i",
                "prompt=a red fox",
                "-i",
                "width=64",
                "-i",
                "delay_s=0",
                "--out",
                str(tmp_path / "out"),
                "--json",
            ],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr.decode()[-2000:]
        ran = json.loads(cli.stdout)
        assert ran["status"] == "succeeded" and ran["engine"] == ENGINE
        files = list((tmp_path / "out").rglob("*.png"))
        assert files and files[0].read_bytes().startswith(PNG_MAGIC)
        assert len(upstream_jobs(up, up_key)) == 2
    finally:
        front.stop()


def test_discovery_when_the_service_is_down_then_up(upstream: tuple[LiveServer, str]) -> None:
    """Down at startup: the engine exists and takes any object; once read, the
    service's schema validates."""
    up, up_key = upstream
    gateway = Gateway(
        {
            "replicate": {
                "base_url": f"http://127.0.0.1:{free_port()}",
                "api_key": "k",
                "models": MODELS,
            }
        }
    )
    engine = gateway.engines[ENGINE]
    assert engine.input_model.model_json_schema()["additionalProperties"] is True
    engine.input_model.model_validate({"prompt": 5, "anything": True})
    provider = gateway.upstreams["replicate"].provider
    assert isinstance(provider, Replicate)

    async def main() -> tuple[int, int]:
        async with httpx.AsyncClient() as http:
            down = HttpCall(provider, http, gateway.upstreams["replicate"].base_url, "k")
            missing_down = await provider.discover(down)
            call = HttpCall(provider, http, f"{up.url}/compat/replicate", up_key)
            return missing_down, await provider.discover(call)

    assert asyncio.run(main()) == (2, 0)
    assert engine.input_model.model_json_schema()["required"] == ["prompt"]
    assert engine.input_model.model_validate({"prompt": "a fox"}).model_dump() == {
        "prompt": "a fox"
    }
    with pytest.raises(ValidationError):
        engine.input_model.model_validate({"prompt": 5})
    assert provider.models["demo/text2image"].version is not None
