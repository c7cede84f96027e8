"""The runway provider against a second genq server's Runway face (`/compat/runway`,
real HTTP on loopback): images and videos end to end through a front genq (input files
sent as data URIs, outputs copied into the front's storage), failures and moderation,
cancel reaching the upstream task, every error mapping, and one kill -9 of the tracking
`genq serve` with the job still ending once, paid once."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import runwayml
from PIL import Image
from pydantic import ValidationError
from runwayml import RunwayML
from ulid import ULID

from genq.engines.upstream.base import (
    INSUFFICIENT,
    NOT_FOUND,
    RATE_LIMITED,
    UNAUTHORIZED,
    UpstreamError,
)
from genq.engines.upstream.call import HttpCall
from genq.engines.upstream.runway import Runway
from tests.conftest import LiveServer, create_key, make_settings, wait_for
from tests.integration.gateway_engines import ROUTES
from tests.integration.gateway_harness import (
    BIG,
    front_server,
    scripted_upstream,
    upstream_config,
    upstream_jobs,
)
from tests.integration.test_gateway_crash import Front

pytestmark = pytest.mark.timeout(180)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "generation_per_min": 1,
    "status_per_min": 1000,
    "concurrent_jobs": 2,
    "retention_days": 1,
    "monthly_credits": 1000,
}
# the upstream's Runway face: two real demo models, and operator routes to test engines
UP_ROUTES = {
    **ROUTES,
    "runway:model:scripted": "gw/scripted",
    "runway:model:boom": "test/boom",
    "runway:model:refused": "test/moderated",
    "runway:model:upscale": "demo/upscale",  # an engine that takes the image
}
MODELS: list[Any] = [
    "gen4_turbo",
    "gen4_image",
    {"name": "scripted", "kind": "image", "cost": 1},
    {"name": "boom", "kind": "image"},
    {"name": "refused", "kind": "image"},
]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = scripted_upstream(
        tmp_path_factory.mktemp("rwup"), compat_engines=UP_ROUTES, plans={**BIG, "tiny": TINY}
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def up_key(upstream: LiveServer) -> str:
    return upstream.new_key("runway-buyer", plan="ultimate")


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, upstream: LiveServer, up_key: str
) -> Iterator[LiveServer]:
    config = upstream_config("runway", upstream.url, up_key, models=MODELS)
    srv = front_server(tmp_path_factory.mktemp("rwfront"), config)
    try:
        yield srv
    finally:
        srv.stop()


def parked(api: httpx.Client, job_id: str, timeout: float = 30) -> None:
    """Wait until the front has handed the job to Runway (its message says where)."""
    deadline = time.monotonic() + timeout
    while " at Runway" not in (api.get(f"/v1/jobs/{job_id}").json()["message"] or ""):
        assert time.monotonic() < deadline, "the job was never parked"
        time.sleep(0.05)


def png(color: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 40), color).save(buf, format="PNG")
    return buf.getvalue()


def test_images_and_videos_end_to_end(front: LiveServer, upstream: LiveServer, up_key: str) -> None:
    key = front.new_key(f"a-{uuid.uuid4().hex[:8]}")
    with front.client(key) as api:
        r = api.post("/v1/files", files={"file": ("first.png", png(), "image/png")})
        assert r.status_code in (200, 201), r.text
        file_id = r.json()["id"]
        engine = api.get("/v1/engines/runway/gen4_turbo").json()
        assert engine["upstream"]["provider"] == "runway"
        assert engine["task"] == "image2video"
        jobs = {
            "video": (
                "runway/gen4_turbo",
                {"image": file_id, "prompt": "it moves", "ratio": "1280:720", "duration": 2},
            ),
            "image": (
                "runway/gen4_image",
                {
                    "prompt": "a red fox",
                    "ratio": "1280:720",
                    "reference_images": [file_id],
                    "seed": 3,
                },
            ),
            "boom": ("runway/boom", {"prompt": "x"}),
            "refused": ("runway/refused", {"prompt": "x"}),
        }
        ids = {}
        for name, (eng, data) in jobs.items():
            r = api.post("/v1/jobs", json={"engine": eng, "input": data})
            assert r.status_code == 202, r.text
            ids[name] = r.json()["id"]
        # a bad input is refused by the engine's schema before anything is sent
        r = api.post("/v1/jobs", json={"engine": "runway/gen4_turbo", "input": {"prompt": "x"}})
        assert r.status_code == 422, r.text
        done = {name: wait_for(api, job_id, timeout=90) for name, job_id in ids.items()}
    video, image = done["video"], done["image"]
    assert video["status"] == "succeeded", video["error"]
    assert [o["name"] for o in video["outputs"]] == ["video"]
    assert video["outputs"][0]["url"].startswith(front.url)  # copied, not linked
    assert b"ftyp" in httpx.get(video["outputs"][0]["url"]).content[:16]
    assert image["status"] == "succeeded", image["error"]
    blob = httpx.get(image["outputs"][0]["url"]).content
    assert blob.startswith(PNG_MAGIC)
    w, h = Image.open(io.BytesIO(blob)).size
    assert abs(w / h - 16 / 9) < 0.05
    assert done["boom"]["status"] == "failed"
    assert done["boom"]["error"]["code"] == "upstream_failed"
    assert "exploded" in done["boom"]["error"]["message"]
    assert done["refused"]["status"] == "failed"
    assert done["refused"]["error"]["code"] == "moderated"
    assert "SAFETY" in done["refused"]["error"]["message"]
    # what the upstream made: the Runway face's jobs, the video's first frame sent inline
    made = {j["metadata"].get("model"): j for j in upstream_jobs(upstream, up_key)}
    assert made["gen4_turbo"]["metadata"]["compat"] == "runway"
    assert made["gen4_turbo"]["input"]["seconds"] == 2
    assert made["gen4_image"]["input"]["seed"] == 3
    with upstream.client(up_key) as up:  # the data URIs became input files upstream
        for model in ("gen4_turbo", "gen4_image"):
            [sent] = made[model]["metadata"]["images"]
            record = up.get(f"/v1/files/{sent}").json()
            assert record["bytes"] == len(png()), record


def test_the_face_gives_an_engine_that_takes_images_the_data_uri_it_got(
    upstream: LiveServer, up_key: str
) -> None:
    """Through the runwayml SDK: a data URI reaches an engine that uses it (demo/upscale
    doubles it), and a remote URL, which genq does not fetch, is refused for it."""
    blob = png()
    uri = f"data:image/png;base64,{base64.b64encode(blob).decode()}"
    fast = {"X-Genq-Input": '{"delay_s": 0}'}
    with RunwayML(api_key=up_key, base_url=f"{upstream.url}/compat/runway") as client:
        task = client.image_to_video.create(
            model="upscale", prompt_image=uri, ratio="1280:720", extra_headers=fast
        )
        with pytest.raises(runwayml.BadRequestError) as remote:
            client.image_to_video.create(
                model="upscale", prompt_image="https://example.com/fox.png", ratio="1280:720"
            )
        assert "not fetched" in str(remote.value.body)
    job_id = f"job_{ULID.from_bytes(uuid.UUID(task.id).bytes)}"
    with upstream.client(up_key) as up:
        job = wait_for(up, job_id, timeout=60)
        assert job["status"] == "succeeded", job["error"]
        [sent] = job["metadata"]["images"]
        assert job["input"]["image"] == sent
        assert up.get(f"/v1/files/{sent}").json()["bytes"] == len(blob)
    out = httpx.get(job["outputs"][0]["url"]).content
    assert Image.open(io.BytesIO(out)).size == (128, 80)


def test_cancel_reaches_the_upstream_task(
    front: LiveServer, upstream: LiveServer, up_key: str
) -> None:
    key = front.new_key(f"c-{uuid.uuid4().hex[:8]}")
    with front.client(key) as api:
        before = api.get("/v1/account").json()["balance"]
        r = api.post(
            "/v1/jobs", json={"engine": "runway/scripted", "input": {"prompt": "sleep:60"}}
        )
        job_id = r.json()["id"]
        parked(api, job_id)
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        job = wait_for(api, job_id, timeout=60)
        assert job["status"] == "canceled"
        assert api.get("/v1/account").json()["balance"] == before
    prompts = {j["input"].get("prompt"): j for j in upstream_jobs(upstream, up_key)}
    with upstream.client(up_key) as up:
        there = wait_for(up, prompts["sleep:60"]["id"], timeout=30)
    assert there["status"] == "canceled"


def test_error_mappings_and_check(upstream: LiveServer, up_key: str) -> None:
    base = f"{upstream.url}/compat/runway"
    poor = upstream.new_key(f"poor-{uuid.uuid4().hex[:8]}", plan="free", credits=0)
    tiny = upstream.new_key(f"tiny-{uuid.uuid4().hex[:8]}", plan="tiny")
    provider = Runway({"models": MODELS})
    image = provider._inputs["gen4_image"]
    with pytest.raises(ValidationError):
        image.model_validate({"prompt": "x", "ratio": "1:1"})  # not a Runway ratio
    with pytest.raises(ValidationError):  # Gen-4 Image Turbo needs a reference image
        Runway({})._inputs["gen4_image_turbo"].model_validate({"prompt": "x"})
    with pytest.raises(ValidationError):
        provider._inputs["gen4_turbo"].model_validate({"image_url": "http://insecure/x.png"})

    async def main() -> None:
        async with httpx.AsyncClient(timeout=30) as client:

            def call(key: str) -> HttpCall:
                return HttpCall(provider, client, base, key)

            data = image.model_validate({"prompt": "a fox"})
            kw: dict[str, Any] = {
                "reference": "job_x",
                "callback_url": None,
                "idempotency_key": None,
            }
            summary = await provider.check(call(up_key))
            assert summary.startswith("Runway: ") and "credits" in summary
            for key, code in ((f"{up_key}x", UNAUTHORIZED), (poor, INSUFFICIENT)):
                with pytest.raises(UpstreamError) as info:
                    await provider.create(call(key), "gen4_image", data, **kw)
                assert info.value.code == code, info.value.message
            await provider.create(call(tiny), "scripted", data, **kw)
            with pytest.raises(UpstreamError) as limited:
                await provider.create(call(tiny), "scripted", data, **kw)
            assert limited.value.code == RATE_LIMITED and limited.value.retry_after
            with pytest.raises(UpstreamError) as missing:
                await provider.status(call(up_key), "gen4_image", str(uuid.uuid4()))
            assert missing.value.code == NOT_FOUND

    asyncio.run(main())


def test_kill_9_while_tracking_then_the_job_ends_once(tmp_path: Path, upstream: LiveServer) -> None:
    up_key = upstream.new_key(f"crash-{uuid.uuid4().hex[:8]}", plan="ultimate")
    options = {
        "base_url": f"{upstream.url}/compat/runway",
        "api_key": up_key,
        "poll_s": 0.3,
        "idempotent": True,
        "models": MODELS,
    }
    front = Front(tmp_path, {"runway": options})
    key = create_key(make_settings(front.dir, port=front.port), "alice", "pro", 1000)
    try:
        front.start()
        with httpx.Client(
            base_url=front.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as api:
            before = api.get("/v1/account").json()["balance"]
            r = api.post(
                "/v1/jobs", json={"engine": "runway/scripted", "input": {"prompt": "sleep:2"}}
            )
            job_id = r.json()["id"]
            parked(api, job_id)
            front.kill()
            front.start()
            job = wait_for(api, job_id, timeout=90)
            after = api.get("/v1/account").json()["balance"]
        assert job["status"] == "succeeded", (job["error"], front.logs()[-3000:])
        assert len(upstream_jobs(upstream, up_key)) == 1
        assert after == before - job["credits"]["used"]
        assert httpx.get(job["outputs"][0]["url"]).content.startswith(PNG_MAGIC)
    finally:
        front.stop()
