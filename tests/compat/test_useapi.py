"""The useapi.net PixVerse face against a live server: seed 001's job model and
errors, every verb, replyUrl, maxJobs, and a client shaped like the seed's."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx

from tests.compat.conftest import (
    FAST,
    SLOW,
    Receiver,
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

WORDS = {"created", "started", "moderated", "progress", "completed", "failed", "cancelled"}
RUNNING = {"created", "started", "progress"}
# seed 001's example response, as the seed gives it
SEED_COMPLETED = json.loads("""{ "jobid": "<jobid>", "verb": "pixverse-create_single",
 "status": "completed", "created": "2023-09-09T02:04:49.667Z",
 "updated": "2023-09-09T02:19:20.256Z",
 "prompt": "Sun breaking through clouds over the beautiful view of San Francisco",
 "buttons": [ "U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "ReDo"],
 "discord": "<ABC…secured…xyz>", "server": "<Discord server id>",
 "channel": "<Discord channel id>", "maxJobs": 10, "messageId": "<Discord message id>",
 "content": "<@Discord user id> (prompt: Sun breaking through clouds ...) Author: ...)",
 "timestamp": "2023-09-09T02:05:24.991000+00:00",
 "attachments": [ { "url": "<generated video url>", "proxy_url": "<generated proxy video url>",
   "width": 768, "height": 768, "content_type": "<generated video type>",
   "id": "<Discord attachment id>", "filename": "<generated video filename>",
   "size": 7204115 } ], "code": 200 }""")
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def job(client: httpx.Client, jobid: str) -> dict[str, Any]:
    r = client.get("/v1/pixverse/jobs/", params={"jobid": jobid})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def until_done(
    client: httpx.Client, jobid: str, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return poll(lambda: job(client, jobid), lambda b: b["status"] not in RUNNING, seen=seen)


def test_create_single_lifecycle_matches_seed(server: LiveServer, key: str) -> None:
    prompt = "Sun breaking through clouds over the beautiful view of San Francisco"
    with face(server, key, "useapi", FAST) as ua:
        r = ua.post(
            "/v1/pixverse/create_single",
            json={
                "prompt": prompt,
                "style": "Realistic",
                "aspect_ratio": "16:9",
                "seed_value": 42,
                "discord": "ABCsecretxyz",
                "server": "123",
                "channel": "456",
                "maxJobs": 10,
            },
        )
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["status"] == "created" and created["code"] == 200
        assert created["verb"] == "pixverse-create_single"
        seen: list[dict[str, Any]] = []
        done = until_done(ua, created["jobid"], seen)
    assert done["status"] == "completed", done
    assert {b["status"] for b in seen} <= WORDS
    check_shape(done, SEED_COMPLETED)
    assert done["discord"] == "ABC…xyz"  # secured, as the seed shows it
    assert done["seed_value"] == 42 and done["style"] == "Realistic"
    assert "style: Realistic aspect-ratio: 16:9" in done["content"]
    for name in ("created", "updated"):
        assert re.match(ISO_MS, done[name]), done[name]
    [video] = done["attachments"]
    assert video["content_type"] == "video/mp4" and video["filename"].endswith(".mp4")
    data = httpx.get(video["url"]).content  # public, no auth
    assert len(data) == video["size"] and data[4:8] == b"ftyp"
    assert (video["width"], video["height"]) == (336, 192)
    with server.client(key) as api:
        canonical = api.get(f"/v1/jobs/{created['jobid']}").json()
    assert canonical["engine"] == "demo/text2video"
    assert canonical["metadata"]["verb"] == "pixverse-create_single"
    assert canonical["metadata"]["discord"] == "ABC…xyz"  # the token is never stored


def test_create_animate_meme_face_and_buttons(server: LiveServer, key: str) -> None:
    with face(server, key, "useapi", FAST) as ua:
        made = ua.post(
            "/v1/pixverse/create",
            json={"prompt": "a cat", "style": "Anime", "aspect_ratio": "9:16"},
        )
        assert made.status_code == 200 and made.json()["verb"] == "pixverse-create"
        animate = ua.post(
            "/v1/pixverse/animate",
            data={"prompt": "waves", "motion": "7", "hd_quality": "No"},
            files={"image": ("sea.png", png_bytes(), "image/png")},
        )
        assert animate.status_code == 200, animate.text
        a = animate.json()
        assert a["verb"] == "pixverse-animate" and a["motion"] == 7
        assert a["image"] == {"size": len(png_bytes()), "type": "image/png"}
        meme = ua.post(
            "/v1/pixverse/meme_face",
            files={"face": ("me.png", png_bytes(), "image/png")},
            data={"prompt": "dancing", "aspect_ratio": "1:1"},
        )
        assert meme.status_code == 200, meme.text
        assert meme.json()["face"]["type"] == "image/png"
        parent = until_done(ua, made.json()["jobid"])
        for b in (a, meme.json()):
            assert until_done(ua, b["jobid"])["status"] == "completed"
        assert parent["status"] == "completed"
        up = ua.post("/v1/pixverse/button", json={"jobid": parent["jobid"], "button": "U1"})
        vary = ua.post(
            "/v1/pixverse/button",
            json={"jobid": parent["jobid"], "button": "V2", "prompt": "a black cat"},
        )
        assert up.status_code == 200 and vary.status_code == 200, up.text
        up_done = until_done(ua, up.json()["jobid"])
        vary_done = until_done(ua, vary.json()["jobid"])
    assert up_done["parentJobId"] == parent["jobid"] and up_done["verb"] == "pixverse-button"
    assert up_done["button"] == "U1" and up_done["buttons"] == []
    [small], [big] = parent["attachments"], up_done["attachments"]
    assert (big["width"], big["height"]) == (2 * small["width"], 2 * small["height"])
    assert vary_done["prompt"] == "a black cat" and vary_done["buttons"]
    assert vary_done["seed_value"] != parent.get("seed_value")


def test_reply_url_gets_the_job_model(server: LiveServer, key: str, receiver: Receiver) -> None:
    with face(server, key, "useapi", FAST) as ua:
        r = ua.post(
            "/v1/pixverse/create_single",
            json={
                "prompt": "rain",
                "style": "3D Animation",
                "replyUrl": receiver.url,
                "replyRef": "order-17",
            },
        )
        assert r.status_code == 200, r.text
        [posted] = receiver.wait(1)
        final = job(ua, r.json()["jobid"])
    assert posted["jobid"] == r.json()["jobid"] and posted["status"] == "completed"
    assert posted["replyRef"] == "order-17" and posted["attachments"]
    assert posted == final
    assert "webhook-signature" in receiver.headers[0]  # genq's sender signs it


def test_max_jobs_caps_unfinished_jobs_on_this_face(server: LiveServer, key: str) -> None:
    body = {"prompt": "slow", "style": "Realistic", "maxJobs": 2}
    with face(server, key, "useapi", SLOW) as ua:
        first = ua.post("/v1/pixverse/create_single", json=body)
        second = ua.post("/v1/pixverse/create_single", json=body)
        assert first.status_code == 200 and second.status_code == 200
        third = ua.post("/v1/pixverse/create_single", json=body)
        assert third.status_code == 429, third.text
        assert third.json()["code"] == 429
        assert third.json()["error"] == "Account is busy executing 2 jobs"
        assert sorted(third.json()["runningJobs"]) == sorted(
            [first.json()["jobid"], second.json()["jobid"]]
        )
        assert int(third.headers["retry-after"]) > 0
        higher = ua.post("/v1/pixverse/create_single", json={**body, "maxJobs": 3})
        assert higher.status_code == 200
    with server.client(key) as api:
        for r in (first, second, higher):
            api.post(f"/v1/jobs/{r.json()['jobid']}/cancel")
    with face(server, key, "useapi") as ua:
        cancelled = poll(
            lambda: job(ua, first.json()["jobid"]), lambda b: b["status"] not in RUNNING
        )
    assert cancelled["status"] == "cancelled" and cancelled["error"]


def test_errors_exactly_as_the_seed(server: LiveServer, key: str) -> None:
    with face(server, key, "useapi") as ua:
        r = ua.get("/v1/pixverse/jobs/")
        assert (r.status_code, r.json()) == (
            400,
            {"error": "Query param jobid not provided", "code": 400},
        )
        r = ua.get("/v1/pixverse/jobs/", params={"jobid": "job_01NOPE"})
        assert (r.status_code, r.json()) == (
            404,
            {"error": "Unable to locate job job_01NOPE", "code": 404},
        )
        gone = expired_job(server, key, {"compat": "useapi", "verb": "pixverse-create"})
        r = ua.get("/v1/pixverse/jobs/", params={"jobid": gone})
        assert (r.status_code, r.json()) == (410, {"error": "Job has expired", "code": 410})
        r = ua.post("/v1/pixverse/create_single", json={"prompt": "no style"})
        assert r.status_code == 400 and r.json()["code"] == 400 and "style" in r.json()["error"]
        r = ua.post("/v1/pixverse/create_single", json={"prompt": "x" * 513, "style": "Anime"})
        assert r.status_code == 400
        r = ua.post("/v1/pixverse/animate", json={"image": "https://example.com/cat.png"})
        assert r.status_code == 400 and "not fetched" in r.json()["error"]
        r = ua.post(
            "/v1/pixverse/animate",
            content=b"--x\r\nbroken",
            headers={"Content-Type": "multipart/form-data"},  # no boundary
        )
        assert r.status_code == 400 and r.json()["code"] == 400, r.text
        r = ua.post("/v1/pixverse/animate", json={"image": "file_01NOSUCHFILE0000"})
        assert r.status_code == 400 and "no such file" in r.json()["error"]
        r = ua.post(
            "/v1/pixverse/create_single",
            json={"prompt": "x", "style": "Anime", "replyUrl": "ftp://example.com/x"},
        )
        assert r.status_code == 400
        r = ua.post("/v1/pixverse/button", json={"jobid": "job_01NOPE", "button": "U1"})
        assert r.json() == {"error": "Unable to locate job job_01NOPE", "code": 404}
        slow = ua.post(
            "/v1/pixverse/create_single", json={"prompt": "x", "style": "Anime"}, headers=SLOW
        ).json()["jobid"]
        r = ua.post("/v1/pixverse/button", json={"jobid": slow, "button": "U1"})
        assert r.status_code == 400 and "completed" in r.json()["error"]
    with face(server, new_key(server), "useapi") as other:
        r = other.get("/v1/pixverse/jobs/", params={"jobid": slow})
        assert r.json() == {"error": f"Unable to locate job {slow}", "code": 404}
    with server.client(key) as api:
        api.post(f"/v1/jobs/{slow}/cancel")
    for auth in (None, "gq_wrong"):
        with face(server, auth, "useapi") as anon:
            r = anon.get("/v1/pixverse/jobs/", params={"jobid": slow})
            assert (r.status_code, r.json()) == (401, {"error": "Unauthorized", "code": 401})
    with face(server, new_key(server, credits=0), "useapi") as broke:
        r = broke.post("/v1/pixverse/create_single", json={"prompt": "x", "style": "Anime"})
        assert (r.status_code, r.json()) == (
            402,
            {"error": "Account has no subscription or subscription expired", "code": 402},
        )
    with face(server, new_key(server, plan="tiny"), "useapi", FAST) as tiny:
        ok = tiny.post("/v1/pixverse/create", json={"prompt": "x", "style": "Anime"})
        assert ok.status_code == 200
        r = tiny.post("/v1/pixverse/create", json={"prompt": "x", "style": "Anime"})
        assert r.status_code == 429 and r.json()["code"] == 429 and "retry-after" in r.headers


def test_moderated_when_the_engine_refuses(server: LiveServer, key: str) -> None:
    with server.client(key) as api:
        refused = api.post(
            "/v1/jobs",
            json={"engine": "test/moderated", "input": {}, "metadata": {"compat": "useapi"}},
        ).json()
    with face(server, key, "useapi") as ua:
        done = until_done(ua, refused["id"])
    assert done["status"] == "moderated" and done["errorDetails"] == "moderated"
    assert "moderation" in done["error"]


def test_client_shaped_like_the_seed_example(server: LiveServer, key: str) -> None:
    """Seed 001's Python example, in a loop that waits while created/started/progress."""
    token = key
    base = f"{server.url}/compat/useapi"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        **FAST,
    }
    created = requests.post(
        f"{base}/v1/pixverse/create_single",
        headers=headers,
        json={"prompt": "a red fox", "style": "Realistic"},
    ).json()
    jobid = created["jobid"]
    apiUrl = f"{base}/v1/pixverse/jobs/?jobid={jobid}"
    while True:
        response = requests.get(apiUrl, headers=headers)
        print(response, response.json())
        result = response.json()
        if result["status"] not in ("created", "started", "progress"):
            break
        time.sleep(0.5)
    assert result["status"] == "completed" and result["code"] == 200
    video = requests.get(result["attachments"][0]["url"])
    assert video.status_code == 200 and len(video.content) == result["attachments"][0]["size"]


def test_max_jobs_holds_when_creates_race(server: LiveServer, key: str) -> None:
    """Ten creates at once with `maxJobs: 1`: the cap is checked as the job is created,
    so exactly one passes (on SQLite and PostgreSQL alike). Jobs of other faces and of
    /v1 do not count."""
    with server.client(key) as api:
        other = api.post("/v1/jobs", json={"engine": "test/sleep", "input": {"seconds": 20}})
        assert other.status_code == 202
    body = {"prompt": "race", "style": "Anime", "maxJobs": 1}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=f"{server.url}/compat/useapi",
            headers={"Authorization": f"Bearer {key}", **SLOW},
            timeout=30,
        ) as ua:
            return await asyncio.gather(
                *(ua.post("/v1/pixverse/create", json=body) for _ in range(10))
            )

    answers = asyncio.run(race())
    passed = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert len(passed) == 1, [r.text for r in answers]
    winner = passed[0].json()["jobid"]
    for r in refused:
        assert r.status_code == 429 and r.json()["error"] == "Account is busy executing 1 jobs"
        assert r.json()["runningJobs"] == [winner]
    with server.client(key) as api:
        ids = [j["id"] for j in api.get("/v1/jobs").json()["data"]]
        assert sorted(ids) == sorted([winner, other.json()["id"]])
        for job_id in ids:
            api.post(f"/v1/jobs/{job_id}/cancel")
