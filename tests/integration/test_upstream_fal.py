"""The `fal/<app>` engines against a second genq acting as fal (its `/compat/fal` face,
over TLS as fal's queue is: the front's HTTP client trusts the throwaway CA through
`SSL_CERT_FILE`): results pushed by `fal_webhook` callbacks and copied into the
front's storage, failures and cancels carried across, and a kill -9 of the tracking
`genq serve` while the upstream request runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from genq.engines.upstream.fal import Fal, outputs_of, queue_path
from tests.conftest import LiveServer, Tls, create_key, make_settings, wait_for
from tests.integration.gateway_engines import ROUTES
from tests.integration.gateway_harness import front_server, scripted_upstream, upstream_jobs
from tests.integration.test_gateway_crash import Front, _wait

pytestmark = pytest.mark.timeout(180)
IMAGE_APP = "fal-ai/flux/dev"
VIDEO_APP = "acme/clip-video"  # an app only the configuration names


@pytest.fixture(scope="module")
def fal_up(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[LiveServer]:
    """A genq acting as fal: its fal apps run the scripted engine, over TLS."""
    routes = {
        **ROUTES,
        f"fal:app:{IMAGE_APP}": "gw/scripted",
        f"fal:app:{VIDEO_APP}": "gw/scripted",
    }
    srv = scripted_upstream(tmp_path_factory.mktemp("falup"), compat_engines=routes, **tls.serve)
    srv.ca_file = tls.ca_file
    try:
        yield srv
    finally:
        srv.stop()


def options(up: LiveServer, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": f"{up.url}/compat/fal",
        "api_key": key,
        "poll_s": 0.3,
        "apps": [IMAGE_APP, {"app": VIDEO_APP, "kind": "image", "cost": 2}],
        **extra,
    }


def test_provider_reads_fal_shapes() -> None:
    fal = Fal({"apps": ["fal-ai/kling-video/v1/standard/text-to-video"]})
    (spec,) = fal.engines()
    assert spec.task == "text2video" and spec.media == ("video",)
    assert queue_path("fal-ai/flux/dev", "r1") == "fal-ai/flux/requests/r1"
    assert queue_path("workflows/me/flow/x", "r1") == "workflows/me/flow/requests/r1"
    found = outputs_of({"video": {"url": "https://cdn/x.mp4"}, "seed": 1})
    assert [(o.name, o.kind, o.content_type) for o in found] == [("video", "video", "video/mp4")]
    with pytest.raises(ValueError, match="not an app id"):
        Fal({"apps": ["flux"]})


def test_fal_engines_end_to_end(
    tmp_path: Path, fal_up: LiveServer, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls.ca_file)
    up_key = fal_up.new_key("fal-buyer-e2e", plan="ultimate")
    front = front_server(tmp_path, {"fal": options(fal_up, up_key)})
    try:
        key = front.new_key("alice")
        with front.client(key) as api:
            engines = {e["name"]: e for e in api.get("/v1/engines").json()["data"]}
            assert {f"fal/{IMAGE_APP}", f"fal/{VIDEO_APP}"} <= set(engines)
            made = {
                what: api.post(
                    "/v1/jobs", json={"engine": f"fal/{app}", "input": {"prompt": prompt}}
                ).json()["id"]
                for what, app, prompt in (
                    ("ok", IMAGE_APP, "steps:2"),
                    ("ok2", VIDEO_APP, "steps:1"),
                    ("fail", IMAGE_APP, "fail"),
                    ("cancel", IMAGE_APP, "sleep:30"),
                )
            }
            _wait(  # parked ("queued at fal ..."): the upstream request exists
                lambda: " at " in (api.get(f"/v1/jobs/{made['cancel']}").json()["message"] or ""),
                "the slow job never went out",
            )
            assert api.post(f"/v1/jobs/{made['cancel']}/cancel").status_code in (200, 202)
            done = {what: wait_for(api, job_id, timeout=60) for what, job_id in made.items()}
            for what in ("ok", "ok2"):
                job = done[what]
                assert job["status"] == "succeeded", job
                out = job["outputs"][0]
                assert out["kind"] == "image" and out["url"].startswith(front.url + "/files/")
                assert api.get(out["url"]).content.startswith(b"\x89PNG")
            assert done["fail"]["status"] == "failed"
            assert "failed as asked" in done["fail"]["error"]["message"]
            assert done["cancel"]["status"] == "canceled", done["cancel"]
        ups = {j["metadata"].get("app"): j for j in upstream_jobs(fal_up, up_key)}
        assert len(upstream_jobs(fal_up, up_key)) == 4
        assert ups[VIDEO_APP]["status"] == "succeeded"
        _wait(
            lambda: any(j["status"] == "canceled" for j in upstream_jobs(fal_up, up_key)),
            "the upstream request was never canceled",
        )
    finally:
        front.stop()


def test_kill_9_while_tracking_a_fal_request(tmp_path: Path, fal_up: LiveServer, tls: Tls) -> None:
    up_key = fal_up.new_key("fal-buyer-crash", plan="ultimate")
    front = Front(tmp_path, {"fal": options(fal_up, up_key, idempotent=True, safety_poll_s=1)})
    front.env["SSL_CERT_FILE"] = tls.ca_file
    key = create_key(make_settings(front.dir, port=front.port), "alice", "pro", 1000)
    try:
        front.start()
        with httpx.Client(
            base_url=front.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            before = api.get("/v1/account").json()["balance"]
            r = api.post(
                "/v1/jobs", json={"engine": f"fal/{IMAGE_APP}", "input": {"prompt": "sleep:3"}}
            )
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            _wait(
                lambda: " at " in (api.get(f"/v1/jobs/{job_id}").json()["message"] or ""),
                "the job was never parked",
            )
            front.kill()
            front.start()
            job = wait_for(api, job_id, timeout=90)
            after = api.get("/v1/account").json()["balance"]
        assert job["status"] == "succeeded", (job["error"], front.logs()[-3000:])
        assert api is not None and after == before - job["credits"]["used"]
        made = upstream_jobs(fal_up, up_key)
        assert len(made) == 1 and made[0]["status"] == "succeeded", json.dumps(made)[:2000]
    finally:
        front.stop()
