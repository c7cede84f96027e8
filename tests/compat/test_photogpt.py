"""The PhotoGPT face against a live server: seed 002's job payload, images, upscaling,
video, trained models, every error, and the seed's own polling client."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from tests.compat.conftest import (
    FAST,
    PNG_MAGIC,
    SLOW,
    check_shape,
    expired_job,
    face,
    new_key,
    png_bytes,
    poll,
)
from tests.conftest import LiveServer

try:  # the seed's examples use requests; httpx has the same shape for what they do
    import requests  # type: ignore[import-untyped]
except ImportError:
    import httpx as requests

WORDS = {"created", "queued", "running", "success", "failed"}
RUNNING_STATUSES = {"created", "queued", "running"}
HEADERS = {"API-Version": "1", **FAST}
# seed 002's job fields, typed as the seed describes them
SEED_IMAGES_JOB = {
    "jobId": "<JOB_ID>",
    "status": "success",
    "images": [{"id": "<IMAGE_ID>", "url": "https://..."}],
    "videos": [],
    "createdAt": "<timestamp>",
}


def result(client: httpx.Client, path: str) -> Any:
    r = client.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"}
    return body["result"]


def until_done(
    client: httpx.Client, job_id: str, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return poll(
        lambda: result(client, f"/jobs/{job_id}"),
        lambda j: j["status"] not in RUNNING_STATUSES,
        seen=seen,
    )


def test_image_generation_lifecycle_matches_seed(server: LiveServer, key: str) -> None:
    with face(server, key, "photogpt", HEADERS) as pg:
        r = pg.post(
            "/images/generation",
            json={
                "prompt": "a portrait",
                "numImages": 2,
                "aspectRatio": "3:4",
                "preset": "studio",
                "steps": 20,
                "seed": 9,
            },
        )
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"result"} and set(r.json()["result"]) == {"jobId"}
        job_id = r.json()["result"]["jobId"]
        seen: list[dict[str, Any]] = []
        job = until_done(pg, job_id, seen)
    assert {j["status"] for j in seen} <= WORDS
    for j in seen:
        assert set(j) == {"jobId", "status", "images", "videos", "error", "modelId", "createdAt"}
    assert job["status"] == "success" and job["error"] is None and job["modelId"] is None
    check_shape(job, SEED_IMAGES_JOB)
    assert len(job["images"]) == 2
    for image in job["images"]:
        assert httpx.get(image["url"]).content[:8] == PNG_MAGIC
    with server.client(key) as api:
        canonical = api.get(f"/v1/jobs/{job_id}").json()
    assert canonical["engine"] == "demo/text2image"
    assert (canonical["input"]["width"], canonical["input"]["height"]) == (440, 592)
    assert canonical["metadata"] == {
        "compat": "photogpt",
        "endpoint": "images/generation",
        "preset": "studio",
        "steps": 20,
    }


def test_upscale_and_video(server: LiveServer, key: str) -> None:
    with face(server, key, "photogpt", HEADERS) as pg:
        first = pg.post(
            "/images/generation", json={"prompt": "a cat", "width": 101, "height": 77}
        ).json()["result"]["jobId"]
        image = until_done(pg, first)["images"][0]
        up = pg.post("/images/upscaling", json={"imageID": image["id"]})
        assert up.status_code == 200, up.text
        video = pg.post(
            "/videos/generation", json={"modelID": "kling-v2", "prompt": "a cat", "numVideos": 1}
        )
        assert video.status_code == 200, video.text
        upscaled = until_done(pg, up.json()["result"]["jobId"])
        made = until_done(pg, video.json()["result"]["jobId"])
    assert upscaled["status"] == "success" and len(upscaled["images"]) == 1
    with server.client(key) as api:
        src = api.get(f"/v1/jobs/{first}").json()
    assert (src["input"]["width"], src["input"]["height"]) == (104, 80)  # engine's multiple
    big = httpx.get(upscaled["images"][0]["url"])
    assert big.status_code == 200 and big.content[:8] == PNG_MAGIC
    assert made["status"] == "success" and made["images"] == []
    [clip] = made["videos"]
    assert httpx.get(clip["url"]).content[4:8] == b"ftyp"


def test_train_a_model_then_generate_with_it(server: LiveServer, key: str) -> None:
    with face(server, key, "photogpt", HEADERS) as pg:
        r = pg.post(
            "/models", json={"name": "me", "age": 31, "gender": "female", "eyeColor": "green"}
        )
        assert r.status_code == 201, r.text
        model_id = r.json()["result"]["id"]
        assert r.json()["result"]["status"] == "created"
        up = pg.post(
            f"/models/{model_id}/images",
            files=[
                ("images", ("a.png", png_bytes(), "image/png")),
                ("images", ("b.png", png_bytes(), "image/png")),
            ],
        )
        assert up.status_code == 201, up.text
        assert len(up.json()["result"]["images"]) == 2
        early = pg.post("/images/generation", json={"prompt": "me", "modelID": model_id})
        assert early.status_code == 400  # not trained yet
        r = pg.get(f"/models/{model_id}/train")
        assert r.status_code == 200 and r.json() == {"result": "success"}
        model = poll(
            lambda: result(pg, f"/models/{model_id}"), lambda m: m["status"] in ("ready", "failed")
        )
        assert model["status"] == "ready", model
        assert (model["age"], model["gender"], model["eyeColor"]) == (31, "female", "green")
        gen = pg.post("/images/generation", json={"prompt": "me at the beach", "modelID": model_id})
        assert gen.status_code == 200, gen.text
        job = until_done(pg, gen.json()["result"]["jobId"])
    assert job["status"] == "success" and job["modelId"] == model_id and job["images"]


def test_errors(server: LiveServer, key: str) -> None:
    with face(server, key, "photogpt", HEADERS) as pg:
        r = pg.get("/jobs/job_01NOPE")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        gone = expired_job(server, key, {"compat": "photogpt"})
        r = pg.get(f"/jobs/{gone}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = pg.get("/jobs/job_01NOPE", headers={"API-Version": "2"})
        assert r.status_code == 400
        for path, body in (
            ("/images/generation", {}),
            ("/images/generation", {"prompt": "x", "numImages": 9}),
            ("/images/upscaling", {"imageID": "file_01NOSUCHFILE00"}),
            ("/images/upscaling", {"imageID": "https://example.com/a.png"}),
            ("/videos/generation", {"prompt": ""}),
            ("/models", {"age": 3}),
        ):
            r = pg.post(path, json=body)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["code"] == "invalid_request" and r.json()["error"]["message"]
        assert pg.get("/models/model_01NOPE0000000").status_code == 404
        model_id = pg.post("/models", json={"name": "x"}).json()["result"]["id"]
        r = pg.post(f"/models/{model_id}/images", json={"images": []})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        r = pg.post(
            f"/models/{model_id}/images",
            content=b"junk",
            headers={"Content-Type": "multipart/form-data"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
        r = pg.get(f"/models/{model_id}/train")  # no images uploaded
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "images: must have at least 1 item, not 0"
        pg.post(f"/models/{model_id}/images", files={"image": ("a.png", png_bytes(), "image/png")})
        assert pg.get(f"/models/{model_id}/train", headers=SLOW).status_code == 200
        r = pg.get(f"/models/{model_id}/train")
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        with server.client(key) as api:  # free the worker slot the slow training holds
            training = api.get(f"/v1/models/{model_id}").json()["job_id"]
            assert api.post(f"/v1/jobs/{training}/cancel").status_code in (200, 202)
        mine = pg.post("/images/generation", json={"prompt": "x"}).json()["result"]["jobId"]
    with face(server, new_key(server), "photogpt") as other:
        assert other.get(f"/jobs/{mine}").status_code == 404
        assert other.get(f"/models/{model_id}").status_code == 404
    for auth in (None, "gq_wrong"):
        with face(server, auth, "photogpt") as anon:
            r = anon.get(f"/jobs/{mine}")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    with face(server, new_key(server, credits=0), "photogpt") as broke:
        r = broke.post("/images/generation", json={"prompt": "x"})
        assert r.status_code == 402
        assert r.json()["error"]["code"] == "insufficient_credits"
        assert (r.json()["error"]["balance"], r.json()["error"]["needed"]) == (0, 2)
    with face(server, new_key(server, plan="tiny"), "photogpt", HEADERS) as tiny:
        assert tiny.post("/images/generation", json={"prompt": "x"}).status_code == 200
        r = tiny.post("/images/generation", json={"prompt": "x"})
        assert r.status_code == 429 and "retry-after" in r.headers


def test_the_seed_python_example_verbatim(server: LiveServer, key: str) -> None:
    """Seed 002's `wait_for_job` and output loops, as written there."""
    BASE_URL = f"{server.url}/compat/photogpt"
    headers = {"Authorization": f"Bearer {key}", "API-Version": "1", **FAST}
    started = requests.post(
        f"{BASE_URL}/images/generation", headers=headers, json={"prompt": "a fox in the snow"}
    )
    started.raise_for_status()
    job_id = started.json()["result"]["jobId"]

    RUNNING_STATUSES = {"created", "queued", "running"}
    SUCCESS_STATUS = "success"

    def wait_for_job(job_id: str, interval_seconds: float = 5) -> Any:
        while True:
            response = requests.get(f"{BASE_URL}/jobs/{job_id}", headers=headers)
            response.raise_for_status()

            job = response.json()["result"]
            status = job.get("status", "").lower()

            if status not in RUNNING_STATUSES:
                return job

            time.sleep(interval_seconds)

    job = wait_for_job(job_id, interval_seconds=0.3)

    if job.get("status", "").lower() != SUCCESS_STATUS:
        raise RuntimeError(job.get("error") or f"Job failed: {job.get('status')}")

    for image in job.get("images", []):
        print(image["id"], image["url"])
    for video in job.get("videos", []):
        print(video["id"], video["url"])
    assert job["images"] and not job["videos"]


def test_failed_job_carries_its_error(server: LiveServer, key: str) -> None:
    with server.client(key) as api:
        boom = api.post("/v1/jobs", json={"engine": "test/boom", "input": {}}).json()
    with face(server, key, "photogpt") as pg:
        job = until_done(pg, boom["id"])
    assert job["status"] == "failed" and "exploded" in job["error"]
    assert job["images"] == [] and job["videos"] == []


INTERNAL = ("body.", "input.", "model_id", "pattern", "^", "{", "Input should")


def test_a_refused_request_names_photogpt_parameters(server: LiveServer, key: str) -> None:
    """Whichever check refuses a request (the face's or the engine's), the 400 names
    PhotoGPT's parameter and says what is wrong in words: no genq field paths (`body.`,
    `input.model_id`), no patterns."""
    cases = [
        ("/images/generation", {"prompt": "x", "numImages": 9}, "numImages", "at most|less"),
        ("/images/generation", {"prompt": "x", "modelID": "abc"}, "modelID", "model"),
        ("/images/generation", {"prompt": "x", "modelID": "model_01NOPE0000000"}, "modelID", ""),
        ("/images/generation", {"prompt": "x", "aspectRatio": "1:99"}, "aspectRatio", ""),
        ("/images/generation", {"prompt": "x", "seed": -1}, "seed", "greater"),
        ("/images/generation", {}, "prompt", "required"),
        ("/images/upscaling", {"imageID": "file_01NOSUCHFILE00"}, "imageID", "no such"),
        ("/images/upscaling", {"imageID": "x", "scale": 3}, "scale", "2 or 4"),
        ("/videos/generation", {"prompt": "x", "numVideos": 0}, "numVideos", ""),
        ("/models", {"name": "x", "age": [1]}, "age", "integer or a valid string"),
    ]
    with face(server, key, "photogpt", HEADERS) as pg:
        for path, body, param, words in cases:
            r = pg.post(path, json=body)
            assert r.status_code == 400, (body, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_request"
            assert error["message"].startswith(f"{param}: "), (body, error)
            assert re.search(words, error["message"]), (body, error)
            assert [d["field"] for d in error["details"]] == [param], (body, error)
            for said in [error["message"], *(d["message"] for d in error["details"])]:
                for internal in INTERNAL:
                    assert internal not in said, (body, said)
        extra = {"X-Genq-Input": '{"nope": 1}'}
        r = pg.post("/images/generation", json={"prompt": "x"}, headers=extra)
        assert r.status_code == 400
        assert r.json()["error"]["details"][0]["field"] == "X-Genq-Input.nope"
