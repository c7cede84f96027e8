"""The Vivix Atelier face against a live server: seed 003's generation object in each
state, generate's headers, models and credits, every error, and a polling client."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx

from tests.compat.conftest import (
    FAST,
    PNG_MAGIC,
    check_shape,
    expired_job,
    face,
    job_of,
    new_key,
    poll,
)
from tests.conftest import LiveServer

try:  # the seed's examples use requests; httpx has the same shape for what they do
    import requests  # type: ignore[import-untyped]
except ImportError:
    import httpx as requests

WORDS = {"pending", "processing", "completed", "failed"}
SECONDS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"  # the seed's timestamps
# seed 003's three example responses
SEED_PENDING = {
    "generation_id": "5b91a581-ee19-4f86-9fea-bd29471d69d5",
    "status": "processing",
    "model": "grok-imagine-image-quality",
    "credits_estimate": 211,
    "elapsed_ms": 4200,
    "created_at": "2026-05-10T12:34:56Z",
}
SEED_COMPLETED = {
    "generation_id": "5b91a581-ee19-4f86-9fea-bd29471d69d5",
    "status": "completed",
    "model": "grok-imagine-image-quality",
    "output_url": "https://pub-364da8d08c644542b169fbc7255349e7.r2.dev/5b91a581.jpg",
    "output_urls": ["https://pub-…/5b91a581-ee19-4f86-9fea-bd29471d69d5.jpg"],
    "credits_used": 211,
    "duration_ms": 12420,
    "created_at": "2026-05-10T12:34:56Z",
    "completed_at": "2026-05-10T12:35:08Z",
}
SEED_FAILED = {
    "generation_id": "5b91a581-ee19-4f86-9fea-bd29471d69d5",
    "status": "failed",
    "error": "PROVIDER_ERROR",
    "message": "Underlying model returned an error.",
    "credits_used": 0,
    "created_at": "2026-05-10T12:34:56Z",
    "completed_at": "2026-05-10T12:35:01Z",
}


def read(client: httpx.Client, generation_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/generations/{generation_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def until_done(
    client: httpx.Client, generation_id: str, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return poll(
        lambda: read(client, generation_id),
        lambda b: b["status"] in ("completed", "failed"),
        seen=seen,
    )


def test_image_generation_lifecycle_matches_seed(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix", FAST) as vx:
        before = vx.get("/api/v1/credits").json()["balance"]
        r = vx.post(
            "/api/v1/generate",
            json={
                "model": "grok-imagine-image-quality",
                "prompt": "a red fox at dawn",
                "aspect_ratio": "4:5",
                "resolution": "1k",
                "number_results": 2,
                "seed": 11,
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert set(created) == {
            "generation_id",
            "status",
            "model",
            "credits_estimate",
            "created_at",
        }
        assert created["status"] == "pending" and created["credits_estimate"] == 4
        assert re.match(SECONDS, created["created_at"])
        assert r.headers["x-request-id"]
        assert int(r.headers["x-ratelimit-remaining"]) >= 0
        assert int(r.headers["x-credits-balance"]) == before - 4
        seen: list[dict[str, Any]] = []
        done = until_done(vx, created["generation_id"], seen)
    assert {b["status"] for b in seen} <= WORDS
    for body in seen:
        if body["status"] in ("pending", "processing"):
            assert set(body) == set(SEED_PENDING)
            check_shape(body, SEED_PENDING)
    assert done["status"] == "completed", done
    assert set(done) == set(SEED_COMPLETED)
    check_shape(done, SEED_COMPLETED)
    assert done["credits_used"] == 4 and done["duration_ms"] > 0
    assert re.match(SECONDS, done["completed_at"])
    assert len(done["output_urls"]) == 2 and done["output_url"] == done["output_urls"][0]
    image = httpx.get(done["output_url"])  # public, no auth
    assert image.status_code == 200 and image.content[:8] == PNG_MAGIC
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_of(created['generation_id'])}").json()
    assert (job["input"]["width"], job["input"]["height"]) == (816, 1024)
    assert job["metadata"]["model"] == "grok-imagine-image-quality"


def test_video_model(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix", FAST) as vx:
        r = vx.post(
            "/api/v1/generate",
            json={
                "model": "grok-imagine-video",
                "prompt": "waves",
                "duration": 1,
                "resolution": "480p",
                "aspect_ratio": "9:16",
                "audio": True,
            },
        )
        assert r.status_code == 201, r.text
        done = until_done(vx, r.json()["generation_id"])
    assert done["status"] == "completed" and len(done["output_urls"]) == 1
    assert httpx.get(done["output_url"]).content[4:8] == b"ftyp"
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{job_of(done['generation_id'])}").json()
    assert job["input"]["seconds"] == 1 and job["input"]["width"] == 480
    assert job["metadata"]["audio"] is True


def test_failed_generation_is_refunded(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix") as vx:
        before = vx.get("/api/v1/credits").json()["balance"]
        r = vx.post("/api/v1/generate", json={"model": "boom", "prompt": "x"})
        assert r.status_code == 201, r.text
        failed = until_done(vx, r.json()["generation_id"])
        refused = until_done(
            vx,
            vx.post("/api/v1/generate", json={"model": "refused", "prompt": "x"}).json()[
                "generation_id"
            ],
        )
        after = vx.get("/api/v1/credits").json()["balance"]
    assert set(failed) == set(SEED_FAILED)
    check_shape(failed, SEED_FAILED)
    assert failed["error"] == "PROVIDER_ERROR" and failed["credits_used"] == 0
    assert refused["error"] == "CONTENT_MODERATED"
    assert after == before


def test_models_and_credits(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix") as vx:
        models = {m["id"]: m for m in vx.get("/api/v1/models").json()["models"]}
        credits = vx.get("/api/v1/credits").json()
    assert models["grok-imagine-image-quality"]["type"] == "image"
    assert "number_results" in models["grok-imagine-image-quality"]["parameters"]
    assert models["grok-imagine-video"]["type"] == "video"
    assert "boom" in models  # the operator's route (settings.compat_engines)
    assert credits["tier"] == "pro" and credits["balance"] == 5000
    assert credits["rate_limit"] == {"calls_per_minute": 240, "concurrent_jobs": 5}


def test_errors(server: LiveServer, key: str) -> None:
    with face(server, key, "vivix", FAST) as vx:
        for body in (
            {"model": "grok-imagine-image", "prompt": "x" * 2001},
            {"model": "grok-imagine-image", "prompt": "x", "number_results": 5},
            {"model": "grok-imagine-image", "prompt": "x", "aspect_ratio": "2:1"},
            {"model": "grok-imagine-image", "prompt": "x", "resolution": "8k"},
            {"model": "grok-imagine-video", "prompt": "x", "number_results": 2},
            {
                "model": "grok-imagine-image",
                "prompt": "x",
                "reference_images": ["https://example.com/a.png"],
            },
            {"prompt": "x"},
        ):
            r = vx.post("/api/v1/generate", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"] == "INVALID_REQUEST" and r.json()["message"]
        r = vx.post("/api/v1/generate", json={"model": "nope", "prompt": "x"})
        assert r.status_code == 400 and r.json()["error"] == "UNKNOWN_MODEL"
        r = vx.get("/api/v1/generations/job_01NOSUCHJOB")
        assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND"
        gone = expired_job(server, key, {"compat": "vivix", "model": "grok-imagine-image"})
        r = vx.get(f"/api/v1/generations/{gone}")
        assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND"
        mine = vx.post(
            "/api/v1/generate", json={"model": "grok-imagine-image", "prompt": "mine"}
        ).json()["generation_id"]
    with face(server, new_key(server), "vivix") as other:
        r = other.get(f"/api/v1/generations/{mine}")
        assert r.status_code == 403 and r.json()["error"] == "NOT_YOURS"
        assert set(r.json()) == {"error", "message"}
    for auth in (None, "vvx_live_abc", "gq_wrong"):
        with face(server, auth, "vivix") as anon:
            r = anon.get(f"/api/v1/generations/{mine}")
            assert r.status_code == 401 and r.json()["error"] == "KEY_INVALID"
    with face(server, new_key(server, credits=1), "vivix") as broke:
        r = broke.post(
            "/api/v1/generate",
            json={"model": "grok-imagine-image", "prompt": "x", "number_results": 3},
        )
        assert r.status_code == 402
        assert r.json()["error"] == "INSUFFICIENT_CREDITS"
        assert (r.json()["balance"], r.json()["needed"]) == (1, 6)
    with face(server, new_key(server, plan="tiny"), "vivix", FAST) as tiny:
        ok = tiny.post("/api/v1/generate", json={"model": "grok-imagine-image", "prompt": "x"})
        assert ok.status_code == 201 and ok.headers["x-ratelimit-remaining"] == "0"
        r = tiny.post("/api/v1/generate", json={"model": "grok-imagine-image", "prompt": "x"})
        assert r.status_code == 429 and r.json()["error"] == "RATE_LIMITED"
        assert int(r.headers["retry-after"]) >= 1


def test_polling_client_like_the_seed(server: LiveServer, key: str) -> None:
    """The seed's request (`GET /api/v1/generations/{id}` with a Bearer key), polled at
    the recommended interval (shortened) until the output_url is ready."""
    base = f"{server.url}/compat/vivix"
    headers = {"Authorization": f"Bearer {key}", **FAST}
    created = requests.post(
        f"{base}/api/v1/generate",
        headers=headers,
        json={"model": "grok-imagine-image-quality", "prompt": "a fox"},
    )
    assert created.status_code == 201
    generation_id = created.json()["generation_id"]
    while True:
        response = requests.get(f"{base}/api/v1/generations/{generation_id}", headers=headers)
        response.raise_for_status()
        generation = response.json()
        if generation["status"] in ("completed", "failed"):
            break
        time.sleep(0.3)  # the seed advises 2 s for images, 4 s for video
    assert generation["status"] == "completed"
    output = requests.get(generation["output_url"])  # public R2-style URL: no auth
    assert output.status_code == 200 and output.content[:8] == PNG_MAGIC


UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def test_generation_ids_are_uuids_that_name_the_job(server: LiveServer, key: str) -> None:
    """Seed 003: `id` is a `string (uuid)`. It holds the job's ULID bit for bit: every
    read takes it (any spelling of the UUID, or the job id), and so do references."""
    with face(server, key, "vivix", FAST) as vx:
        r = vx.post("/api/v1/generate", json={"model": "grok-imagine-image", "prompt": "a fox"})
        generation_id = r.json()["generation_id"]
        assert re.match(UUID, generation_id), generation_id
        done = until_done(vx, generation_id)
        assert done["status"] == "completed" and done["generation_id"] == generation_id
        job_id = job_of(generation_id)
        for spelling in (generation_id.upper(), generation_id.replace("-", ""), job_id):
            assert read(vx, spelling)["generation_id"] == generation_id
        with server.client(key) as api:
            job = api.get(f"/v1/jobs/{job_id}").json()
        assert job["id"] == job_id and job["outputs"][0]["url"] == done["output_url"]
        again = vx.post(
            "/api/v1/generate",
            json={
                "model": "grok-imagine-image",
                "prompt": "the same fox",
                "reference_images": [generation_id],
            },
        )
        assert again.status_code == 201, again.text
        for missing in (str(uuid.uuid4()), "not-an-id", "5b91a581"):
            r = vx.get(f"/api/v1/generations/{missing}")
            assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND", missing
            assert missing in r.json()["message"]
