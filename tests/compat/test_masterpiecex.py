"""The Masterpiece X face against a live server: seed 000's contract, the lifecycle
through the face alone, assets, every error, and a client shaped like the seed's."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
from pydantic import SecretStr

from genq.core import Genq
from genq.settings import Settings
from tests.compat.conftest import (
    FAST,
    PNG_MAGIC,
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

WORDS = {"pending", "dispatching", "processing", "complete", "failed"}
# seed 000's example response (URLs and numbers as the seed gives them)
SEED_COMPLETE = {
    "outputs": {
        "fbx": "https://.../exports/output.fbx",
        "glb": "https://.../exports/output.glb",
        "thumbnail": "https://.../exports/output.png",
        "usdz": "https://.../exports/output.usdz",
    },
    "outputUrl": "https://.../exports/output.glb",
    "processingTime_s": 270.495,
    "progress": 70.495,
    "requestId": "xxxxxxxxxx",
    "status": "complete",
}
ONLY_WHEN_COMPLETE = {"processingTime_s", "outputUrl", "outputs"}


def until_done(
    mpx: httpx.Client, request_id: str, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        r = mpx.get(f"/status/{request_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    return poll(read, lambda b: b["status"] in ("complete", "failed"), seen=seen)


def test_text_to_3d_lifecycle_matches_seed(server: LiveServer, key: str) -> None:
    with face(server, key, "masterpiecex", FAST) as mpx:
        r = mpx.post("/functions/general", json={"prompt": "a small red fox", "seed": 3})
        assert r.status_code == 200, r.text
        created = r.json()
        assert set(created) == {"requestId", "status", "balance"}
        assert created["status"] == "pending" and isinstance(created["balance"], int)
        seen: list[dict[str, Any]] = []
        done = until_done(mpx, created["requestId"], seen)
    assert done["status"] == "complete", done
    for body in seen:
        assert body["status"] in WORDS
        if body["status"] != "complete":  # in progress: only status and progress
            assert set(body) == {"requestId", "status", "progress"}, body
            assert not ONLY_WHEN_COMPLETE & set(body)
    check_shape(done, SEED_COMPLETE)
    assert done["progress"] == 100.0 and done["processingTime_s"] > 0
    assert done["outputUrl"] == done["outputs"]["glb"]
    glb = httpx.get(done["outputs"]["glb"])  # public URLs, no auth
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    assert httpx.get(done["outputs"]["thumbnail"]).content[:8] == PNG_MAGIC
    for name in ("fbx", "usdz"):
        assert httpx.get(done["outputs"][name]).content
    with server.client(key) as api:  # the same id on the canonical API
        job = api.get(f"/v1/jobs/{created['requestId']}").json()
    assert job["engine"] == "demo/text-to-3d"
    assert job["metadata"] == {"compat": "masterpiecex", "function": "functions/general"}
    assert job["input"]["seed"] == 3


def test_text2image_outputs_are_a_list_of_urls(server: LiveServer, key: str) -> None:
    with face(server, key, "masterpiecex", FAST) as mpx:
        r = mpx.post(
            "/components/text2image",
            json={
                "prompt": "a lighthouse",
                "aspect_ratio": "16:9",
                "num_images": 2,
                "output_format": "jpg",
                "num_steps": 4,
                "seed": 1,
            },
        )
        assert r.status_code == 200, r.text
        done = until_done(mpx, r.json()["requestId"])
    assert done["status"] == "complete"
    assert isinstance(done["outputs"], list) and len(done["outputs"]) == 2
    assert done["outputUrl"] == done["outputs"][0]
    image = httpx.get(done["outputs"][1])
    assert image.headers["content-type"] == "image/jpeg"
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{done['requestId']}").json()
    assert (job["input"]["width"], job["input"]["height"]) == (680, 384)  # 16:9, 0.26 MP


def test_asset_upload_then_image_to_3d(server: LiveServer, key: str) -> None:
    with face(server, key, "masterpiecex", FAST) as mpx:
        asset = mpx.post(
            "/assets/create", json={"name": "fox.png", "type": "image/png", "description": "a fox"}
        ).json()
        assert set(asset) == {"assetId", "requestId", "assetUrl", "balance"}
        # the upload URL is a capability: no auth header, as with a presigned URL
        up = httpx.put(
            asset["assetUrl"], content=png_bytes(), headers={"Content-Type": "image/png"}
        )
        assert up.status_code == 200, up.text
        assert up.json()["requestId"] == asset["requestId"]
        again = httpx.put(asset["assetUrl"], content=png_bytes())
        assert again.status_code == 409 and again.json()["error"] == "conflict"
        forged = httpx.put(asset["assetUrl"].replace("signature=", "signature=0"), content=b"x")
        assert forged.status_code == 401
        r = mpx.post(
            "/functions/imageto3d",
            json={"image_request_id": asset["requestId"], "texture_size": 256, "seed": 2},
        )
        assert r.status_code == 200, r.text
        done = until_done(mpx, r.json()["requestId"])
    assert done["status"] == "complete", done
    check_shape(done, SEED_COMPLETE)
    with server.client(key) as api:
        job = api.get(f"/v1/jobs/{done['requestId']}").json()
    assert job["input"]["image"] == asset["requestId"] and job["input"]["texture_size"] == 256


def test_image_to_3d_from_a_text2image_request(server: LiveServer, key: str) -> None:
    with face(server, key, "masterpiecex", FAST) as mpx:
        image = until_done(
            mpx, mpx.post("/components/text2image", json={"prompt": "a vase"}).json()["requestId"]
        )
        by_id = mpx.post("/functions/imageto3d", json={"image_request_id": image["requestId"]})
        by_url = mpx.post("/functions/imageto3d", json={"image_url": image["outputUrl"]})
        assert by_id.status_code == 200 and by_url.status_code == 200
    with server.client(key) as api:
        for r in (by_id, by_url):
            job = api.get(f"/v1/jobs/{r.json()['requestId']}").json()
            assert job["input"]["image"] == f"{image['requestId']}/image_0"


def test_errors(server: LiveServer, key: str) -> None:
    with face(server, key, "masterpiecex") as mpx:
        for body, field in (
            ({}, "prompt"),
            ({"prompt": ""}, "prompt"),
            ({"prompt": "x", "texture_size": 300}, "texture_size"),
        ):
            r = mpx.post("/functions/general", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "bad_request" and field in r.json()["message"]
        r = mpx.post(
            "/functions/general", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        r = mpx.post("/components/text2image", json={"prompt": "x", "megapixels": 3})
        assert r.status_code == 400
        r = mpx.post("/functions/imageto3d", json={"image_url": "https://example.com/a.png"})
        assert r.status_code == 400 and "not fetched" in r.json()["message"]
        r = mpx.post("/functions/imageto3d", json={})
        assert r.status_code == 400
        r = mpx.post("/functions/imageto3d", json={"image_request_id": "file_01NOSUCHFILE0"})
        assert r.status_code == 400
        r = mpx.get("/status/job_01NOSUCHJOB00000000000000")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        gone = expired_job(server, key, {"compat": "masterpiecex"})
        r = mpx.get(f"/status/{gone}")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        mine = mpx.post("/functions/general", json={"prompt": "mine"}).json()["requestId"]
    with face(server, new_key(server), "masterpiecex") as other:
        assert other.get(f"/status/{mine}").status_code == 404  # another account's
    for auth in (None, "gq_not_a_key"):
        with face(server, auth, "masterpiecex") as anon:
            r = anon.get(f"/status/{mine}")
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            assert anon.post("/functions/general", json={"prompt": "x"}).status_code == 401
    with face(server, new_key(server, credits=0), "masterpiecex") as broke:
        r = broke.post("/functions/general", json={"prompt": "x"})
        assert r.status_code == 402
        assert r.json() == {
            "error": "insufficient_credits",
            "message": r.json()["message"],
            "balance": 0,
            "needed": 10,
        }
    with face(server, new_key(server, plan="tiny"), "masterpiecex", FAST) as tiny:
        assert tiny.post("/functions/general", json={"prompt": "x"}).status_code == 200
        r = tiny.post("/functions/general", json={"prompt": "x"})
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1


def test_failed_request_is_failed_without_outputs(server: LiveServer, key: str) -> None:
    with server.client(key) as api:
        job = api.post("/v1/jobs", json={"engine": "test/boom", "input": {}}).json()
    with face(server, key, "masterpiecex") as mpx:
        done = until_done(mpx, job["id"])
    assert done["status"] == "failed"
    assert set(done) == {"requestId", "status", "progress"}


def test_client_shaped_like_the_seed_example(server: LiveServer, key: str) -> None:
    """Seed 000's client: `client.status.retrieve(request_id)` and its attributes
    (the SDK maps `outputUrl` to `output_url` and so on), polled every few seconds."""
    base_url = f"{server.url}/compat/masterpiecex"
    headers = {"Authorization": f"Bearer {key}", **FAST}

    class Outputs:
        def __init__(self, data: dict[str, str]) -> None:
            self.fbx, self.glb = data["fbx"], data["glb"]
            self.usdz, self.thumbnail = data["usdz"], data["thumbnail"]

    class StatusResponseObject:
        def __init__(self, data: dict[str, Any]) -> None:
            self.request_id, self.status = data["requestId"], data["status"]
            self.progress = data["progress"]
            self.outputs = Outputs(data["outputs"]) if "outputs" in data else None
            self.output_url = data.get("outputUrl")
            self.processing_time_s = data.get("processingTime_s")

    def retrieve(request_id: str) -> StatusResponseObject:
        response = requests.get(f"{base_url}/status/{request_id}", headers=headers)
        response.raise_for_status()
        return StatusResponseObject(response.json())

    created = requests.post(
        f"{base_url}/functions/general", headers=headers, json={"prompt": "a teapot"}
    ).json()
    request_id = created["requestId"]
    response = retrieve(request_id)
    while response.status not in ("complete", "failed"):
        time.sleep(0.5)
        response = retrieve(request_id)
    assert response.status == "complete"
    assert response.outputs is not None
    print(response.outputs.fbx)  # url of fbx version of the generated model
    print(response.outputs.glb)
    print(response.outputs.usdz)
    print(response.outputs.thumbnail)
    print(response.output_url)  # typically the url of the glb version of the model
    print(response.processing_time_s)
    print(response.progress)
    print(response.request_id)
    assert response.output_url == response.outputs.glb
    assert requests.get(response.outputs.usdz).status_code == 200


def test_a_base_url_that_keeps_the_version_segment(server: LiveServer, key: str) -> None:
    """A client whose base URL ends in the service's `/v2` works unchanged: every route
    (creates, the hot-path status read, assets and the upload URL) and its errors."""
    with (
        face(server, key, "masterpiecex/v2", FAST) as v2,
        face(server, key, "masterpiecex") as plain,
    ):
        r = v2.post("/functions/general", json={"prompt": "a teapot"})
        assert r.status_code == 200, r.text
        request_id = r.json()["requestId"]
        done = until_done(v2, request_id)
        assert done["status"] == "complete" and set(done["outputs"]) >= {"glb", "fbx"}
        assert plain.get(f"/status/{request_id}").json() == done
        asset = v2.post("/assets/create", json={"name": "a.png", "type": "image/png"}).json()
        path = asset["assetUrl"].replace("/compat/masterpiecex/", "/compat/masterpiecex/v2/")
        up = httpx.put(path, content=png_bytes())
        assert up.status_code == 200 and up.json()["assetId"] == asset["assetId"], up.text
        r = v2.post("/components/text2image", json={"prompt": "x", "num_images": 9})
        assert r.status_code == 400 and r.json()["error"] == "bad_request"
        r = v2.get("/status/job_01NOSUCHJOB")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = v2.get("/v2/status/nope")
        assert r.status_code == 404 and r.json()["error"] == "not_found"


def _sign(key: bytes, account: str, asset_id: str, name: str, ctype: str, expires: str) -> str:
    msg = "\n".join(("masterpiecex-asset", account, asset_id, name, ctype, expires))
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def test_upload_urls_are_signed_by_a_server_key(server: LiveServer, key: str) -> None:
    """Whoever can verify the account's webhooks (it knows their secret) cannot forge an
    upload URL; the server's key is in the database, so another process on it (or
    this one after a restart) verifies the URLs this one made."""
    with face(server, key, "masterpiecex") as mpx:
        asset = mpx.post("/assets/create", json={"name": "a.png", "type": "image/png"}).json()
    with server.client(key) as api:
        webhook_secret = api.get("/v1/account/webhook-secret").json()["secret"]
    url = httpx.URL(asset["assetUrl"])
    q = dict(url.params)
    args = (q["account"], asset["assetId"], q["name"], q["type"], q["expires"])
    forged = _sign(webhook_secret.encode(), *args)
    assert forged != q["signature"]
    r = httpx.put(url.copy_merge_params({"signature": forged}), content=png_bytes())
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = httpx.put(url.copy_merge_params({"signature": "é"}), content=png_bytes())
    assert r.status_code == 401

    async def elsewhere(settings: Settings) -> bytes:
        other = Genq(settings)  # another process's service layer on the same database
        try:
            return await other.secret("masterpiecex-asset-url")
        finally:
            await other.store.close()

    shared = asyncio.run(elsewhere(server.settings))
    assert _sign(shared, *args) == q["signature"]
    configured = server.settings.model_copy(update={"secret_key": SecretStr("k" * 32)})
    assert asyncio.run(elsewhere(configured)) not in (shared, b"k" * 32)  # derived per use
    up = httpx.put(asset["assetUrl"], content=png_bytes())
    assert up.status_code == 200, up.text
