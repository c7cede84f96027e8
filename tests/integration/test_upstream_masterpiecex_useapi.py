"""The masterpiecex and useapi provider modules against a live genq playing the
upstream (its compat faces run the demo engines): real HTTP on loopback through the
gateway's own `HttpCall`, real output files, the asset upload, the replyUrl push and
the error bodies of both services."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from genq import lifecycle
from genq.engines.contract import TASKS
from genq.engines.upstream import provider_class
from genq.engines.upstream.base import (
    FAILED,
    INSUFFICIENT,
    NOT_FOUND,
    RATE_LIMITED,
    UNAUTHORIZED,
    Provider,
    Remote,
    Snapshot,
    UpstreamError,
)
from genq.engines.upstream.call import HttpCall
from genq.engines.upstream.masterpiecex import (
    ImageTo3DInput,
    MasterpieceX,
    Text2ImageInput,
    TextTo3DInput,
)
from genq.engines.upstream.useapi import PixVerseVideoInput, UseapiPixVerse
from genq.ids import utcnow
from genq.store import Store
from tests.conftest import LiveServer, job_record, make_settings

TIMEOUT_S = 60.0
MPX = "/compat/masterpiecex"
USEAPI = "/compat/useapi"
FILE_REF = "file_0123456789abcdefGHIJ"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One genq playing both upstreams (webhooks may go to loopback receivers)."""
    settings = make_settings(
        tmp_path_factory.mktemp("upstream") / "up",
        webhook_allow_private=True,
        webhook_retry_schedule_s=[0.2, 0.2],
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


async def new_key(srv: LiveServer, **kwargs: Any) -> str:
    """A key of a fresh account (made on a thread: `create_key` runs its own loop)."""
    return await asyncio.to_thread(srv.new_key, f"acct-{uuid.uuid4().hex[:12]}", **kwargs)


def call_for(
    provider: Provider,
    client: httpx.AsyncClient,
    srv: LiveServer,
    face: str,
    key: str,
    inputs: dict[str, Path] | None = None,
) -> HttpCall:
    files = inputs or {}

    def input_path(ref: str) -> Path:
        if ref not in files:
            raise UpstreamError("invalid_input", f"{ref}: no such input")
        return files[ref]

    return HttpCall(provider, client, srv.url + face, key, input_path=input_path, timeout_s=30)


async def until_terminal(
    provider: Provider, call: HttpCall, what: str, upstream_id: str
) -> tuple[Snapshot, list[Snapshot]]:
    """Poll `status` until a terminal snapshot (every snapshot seen, too)."""
    seen: list[Snapshot] = []
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        snap = await provider.status(call, what, upstream_id)
        seen.append(snap)
        if snap.terminal:
            return snap, seen
        assert time.monotonic() < deadline, f"{upstream_id} still {snap} after {TIMEOUT_S}s"
        await asyncio.sleep(0.2)


async def download(client: httpx.AsyncClient, srv: LiveServer, key: str, url: str) -> bytes:
    """An output's bytes (with the key when it is this server's URL)."""
    headers = {"Authorization": f"Bearer {key}"} if url.startswith(srv.url) else {}
    r = await client.get(url, headers=headers, timeout=30)
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    assert r.content
    return r.content


def png_file(tmp_path: Path, name: str = "input") -> Path:
    """A small PNG without an extension in its name (as genq's file store keeps them)."""
    img = Image.new("RGB", (64, 48))
    for x in range(64):
        for y in range(48):
            img.putpixel((x, y), (x * 4, y * 5, 128))
    path = tmp_path / name
    img.save(path, format="PNG")
    return path


def in_progress(seen: list[Snapshot]) -> list[Snapshot]:
    return [s for s in seen if not s.terminal]


# -- Masterpiece X ----------------------------------------------------------------------


def test_masterpiecex_engines_and_input_models() -> None:
    assert provider_class("masterpiecex") is MasterpieceX
    mpx = MasterpieceX({})
    specs = {e.what: e for e in mpx.engines()}
    assert set(specs) == {"text-to-3d", "image-to-3d", "text2image"}
    for spec in specs.values():
        assert spec.task in TASKS
        assert spec.poll_s >= 10  # Masterpiece X asks for 10 s between polls
        assert spec.cost is not None and spec.cost > 0
        schema = spec.input_model.model_json_schema()
        assert schema.get("additionalProperties") is False
        assert all(p.get("description") for p in schema["properties"].values()), schema
    assert set(specs["text-to-3d"].media) == {"model", "thumbnail"}
    assert specs["text2image"].media == ("image",)
    assert not mpx.cancellable and not mpx.callbacks

    i23 = ImageTo3DInput.model_json_schema()["properties"]
    assert set(i23) == {"image", "image_url", "seed", "texture_size"}
    assert i23["image"]["anyOf"][0]["format"] == "genq-file"
    t2i = Text2ImageInput.model_json_schema()["properties"]
    assert set(t2i) == {
        "prompt",
        "aspect_ratio",
        "lora_id",
        "megapixels",
        "num_images",
        "num_steps",
        "output_format",
        "seed",
    }
    assert t2i["num_images"]["maximum"] == 4
    assert t2i["output_format"]["enum"] == ["png", "jpg", "webp"]

    bad: list[tuple[type[Any], dict[str, Any]]] = [
        (TextTo3DInput, {}),
        (TextTo3DInput, {"prompt": ""}),
        (TextTo3DInput, {"prompt": "x" * 2001}),
        (TextTo3DInput, {"prompt": "a fox", "seed": 1}),  # not a field of functions/general
        (ImageTo3DInput, {}),  # neither image
        (ImageTo3DInput, {"image": FILE_REF, "image_url": "https://example.com/a.png"}),
        (ImageTo3DInput, {"image": "not-a-file-ref"}),
        (ImageTo3DInput, {"image_url": "ftp://example.com/a.png"}),
        (ImageTo3DInput, {"image": FILE_REF, "texture_size": 300}),
        (Text2ImageInput, {"prompt": "a cat", "num_images": 5}),
        (Text2ImageInput, {"prompt": "a cat", "megapixels": 3}),
        (Text2ImageInput, {"prompt": "a cat", "aspect_ratio": "5:4"}),
        (Text2ImageInput, {"prompt": "a cat", "output_format": "gif"}),
        (Text2ImageInput, {"prompt": "a cat", "lora_id": "somebody_else"}),
    ]
    for model, data in bad:
        with pytest.raises(ValidationError):
            model.model_validate(data)
    assert ImageTo3DInput(image=FILE_REF, texture_size=1024).texture_size == 1024
    assert Text2ImageInput(prompt="a cat", num_images=4, megapixels=2).num_images == 4


async def test_masterpiecex_text_to_3d_lifecycle(up: LiveServer) -> None:
    key = await new_key(up)
    mpx = MasterpieceX({})
    async with httpx.AsyncClient() as client:
        call = call_for(mpx, client, up, MPX, key)
        data = TextTo3DInput(prompt="a small wooden torus")
        created = await mpx.create(
            call,
            "text-to-3d",
            data,
            reference="job_test",
            callback_url=None,
            idempotency_key="mpx-lifecycle-1",
        )
        assert created.upstream_id
        assert created.snapshot is not None and created.snapshot.state == "queued"
        # the same Idempotency-Key names the same request (the face keeps it)
        again = await mpx.create(
            call,
            "text-to-3d",
            data,
            reference="job_test",
            callback_url=None,
            idempotency_key="mpx-lifecycle-1",
        )
        assert again.upstream_id == created.upstream_id

        final, seen = await until_terminal(mpx, call, "text-to-3d", created.upstream_id)
        assert final.state == "succeeded", final
        assert final.progress == 100.0
        running = in_progress(seen)
        assert running and all(s.state in ("queued", "running") for s in running)
        assert any(isinstance(s.progress, float) for s in running), running
        assert all(s.progress is None or 0 <= s.progress <= 100 for s in seen)

        outputs = {o.name: o for o in final.outputs}
        assert set(outputs) == {"glb", "usdz", "fbx", "thumbnail"}
        assert all(isinstance(o, Remote) for o in final.outputs)
        assert outputs["glb"].content_type == "model/gltf-binary"
        assert outputs["usdz"].content_type == "model/vnd.usdz+zip"
        assert outputs["fbx"].content_type == "application/vnd.autodesk.fbx"
        assert outputs["thumbnail"].content_type == "image/png"
        assert [outputs[n].kind for n in ("glb", "usdz", "fbx", "thumbnail")] == [
            "model",
            "model",
            "model",
            "thumbnail",
        ]
        glb = await download(client, up, key, outputs["glb"].url)
        assert glb[:4] == b"glTF"
        usdz = await download(client, up, key, outputs["usdz"].url)
        assert usdz[:4] == b"PK\x03\x04"
        fbx = await download(client, up, key, outputs["fbx"].url)
        assert fbx.startswith(b"Kaydara FBX Binary") or b"FBX" in fbx[:200]
        thumb = await download(client, up, key, outputs["thumbnail"].url)
        assert thumb[:8] == b"\x89PNG\r\n\x1a\n"
        assert call.requests >= 3


async def test_masterpiecex_image_to_3d_uploads_the_input_file(
    up: LiveServer, tmp_path: Path
) -> None:
    key = await new_key(up)
    mpx = MasterpieceX({})
    image = png_file(tmp_path)
    async with httpx.AsyncClient() as client:
        call = call_for(mpx, client, up, MPX, key, {FILE_REF: image})
        created = await mpx.create(
            call,
            "image-to-3d",
            ImageTo3DInput(image=FILE_REF, texture_size=256, seed=7),
            reference="job_image",
            callback_url=None,
            idempotency_key=None,
        )
        # assets/create, the PUT to assetUrl, then functions/imageto3d
        assert call.requests == 3
        final, _ = await until_terminal(mpx, call, "image-to-3d", created.upstream_id)
        assert final.state == "succeeded", final
        outputs = {o.name: o for o in final.outputs}
        assert {"glb", "thumbnail"} <= set(outputs)
        glb = await download(client, up, key, outputs["glb"].url)
        assert glb[:4] == b"glTF"

        # the engine got the uploaded bytes: the job's input is the asset, as sent
        auth = {"Authorization": f"Bearer {key}"}
        r = await client.get(f"{up.url}/v1/jobs/{created.upstream_id}", headers=auth)
        asset = r.json()["input"]["image"]
        assert asset.startswith("file_") and asset != FILE_REF
        stored = await client.get(f"{up.url}/v1/files/{asset}/content", headers=auth)
        assert stored.status_code == 200 and stored.content == image.read_bytes()

        # a remote image_url the face does not fetch: refused as the service would
        with pytest.raises(UpstreamError) as refused:
            await mpx.create(
                call,
                "image-to-3d",
                ImageTo3DInput(image_url="https://example.com/not-here.png"),
                reference="job_image2",
                callback_url=None,
                idempotency_key=None,
            )
        assert refused.value.code == "upstream_rejected" and refused.value.status == 400
        assert refused.value.message


async def test_masterpiecex_text2image_lists_images(up: LiveServer) -> None:
    key = await new_key(up)
    mpx = MasterpieceX({})
    async with httpx.AsyncClient() as client:
        call = call_for(mpx, client, up, MPX, key)
        created = await mpx.create(
            call,
            "text2image",
            Text2ImageInput(prompt="a plush robot", num_images=2, aspect_ratio="1:1"),
            reference="job_t2i",
            callback_url=None,
            idempotency_key=None,
        )
        final, _ = await until_terminal(mpx, call, "text2image", created.upstream_id)
        assert final.state == "succeeded", final
        assert [o.name for o in final.outputs] == ["image_1", "image_2"]
        for o in final.outputs:
            assert o.kind == "image"
            body = await download(client, up, key, o.url)
            assert body[:8] == b"\x89PNG\r\n\x1a\n"


async def test_masterpiecex_errors_and_check(up: LiveServer) -> None:
    key = await new_key(up)
    mpx = MasterpieceX({})
    async with httpx.AsyncClient() as client:
        call = call_for(mpx, client, up, MPX, key)
        summary = await mpx.check(call)
        assert summary.startswith("Masterpiece X") and key not in summary

        with pytest.raises(UpstreamError) as unknown:
            await mpx.status(call, "text-to-3d", "job_00000000000000000000000000")
        assert unknown.value.code == NOT_FOUND and unknown.value.status == 404

        bad = call_for(mpx, client, up, MPX, "gq_not_a_real_key_" + uuid.uuid4().hex)
        with pytest.raises(UpstreamError) as denied:
            await mpx.create(
                bad,
                "text-to-3d",
                TextTo3DInput(prompt="a fox"),
                reference="job_x",
                callback_url=None,
                idempotency_key=None,
            )
        assert denied.value.code == UNAUTHORIZED and denied.value.status == 401
        with pytest.raises(UpstreamError) as denied_check:
            await mpx.check(bad)
        assert denied_check.value.code == UNAUTHORIZED

        poor = call_for(mpx, client, up, MPX, await new_key(up, plan="free", credits=0))
        with pytest.raises(UpstreamError) as broke:
            await mpx.create(
                poor,
                "text-to-3d",
                TextTo3DInput(prompt="a fox"),
                reference="job_y",
                callback_url=None,
                idempotency_key=None,
            )
        assert broke.value.code == INSUFFICIENT and broke.value.status == 402
        assert "balance" in broke.value.message and not broke.value.transient


def test_masterpiecex_error_bodies_and_status_words() -> None:
    """Bodies the face does not produce on demand: 429 with Retry-After, 5xx, failed."""
    mpx = MasterpieceX({})
    limited = mpx.error_of(
        httpx.Response(
            429,
            headers={"Retry-After": "12"},
            json={"error": "rate_limited", "message": "slow down"},
        )
    )
    assert (limited.code, limited.retry_after, limited.message) == (RATE_LIMITED, 12.0, "slow down")
    assert limited.transient
    down = mpx.error_of(httpx.Response(503, text="<html>bad gateway</html>"))
    assert down.code == "upstream_unavailable" and down.transient
    failed = mpx.snapshot({"requestId": "r", "status": "failed", "progress": 40})
    assert failed.state == "failed" and failed.error_code == FAILED and failed.error_message
    assert mpx.snapshot({"status": "dispatching", "progress": 0}).state == "queued"
    assert mpx.snapshot({"status": "processing", "progress": 42.5}).progress == 42.5
    # complete with only outputUrl (a GLB): still one usable output
    only = mpx.snapshot({"status": "complete", "outputUrl": "https://x.test/exports/output.glb"})
    assert only.state == "succeeded" and only.outputs[0].name == "glb"


# -- useapi.net PixVerse ------------------------------------------------------------------


class Receiver:
    """A loopback HTTP receiver of replyUrl posts."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.got.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/reply/tok123"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    async def wait(self, timeout: float = TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while not self.got:
            assert time.monotonic() < deadline, "nothing was pushed to replyUrl"
            await asyncio.sleep(0.1)
        return self.got[0]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def test_useapi_engine_and_input_model() -> None:
    assert provider_class("useapi") is UseapiPixVerse
    prov = UseapiPixVerse({})
    assert prov.callbacks and not prov.cancellable
    assert prov.default_max_jobs == 10
    (spec,) = prov.engines()
    assert (spec.what, spec.task, spec.media) == ("pixverse-video", "text2video", ("video",))
    assert 15 <= spec.poll_s <= 60
    schema = PixVerseVideoInput.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "prompt",
        "style",
        "negative_prompt",
        "aspect_ratio",
        "character",
        "seed_value",
    }
    assert set(schema["required"]) == {"prompt", "style"}
    assert schema["properties"]["prompt"]["maxLength"] == 512
    assert schema["properties"]["style"]["enum"] == ["Realistic", "Anime", "3D Animation"]
    assert schema["properties"]["seed_value"]["anyOf"][0]["maximum"] == 2147483647
    for data in (
        {"prompt": "a city"},  # style is required
        {"prompt": "a city", "style": "Watercolor"},
        {"prompt": "x" * 513, "style": "Anime"},
        {"prompt": "a city", "style": "Anime", "aspect_ratio": "21:9"},
        {"prompt": "a city", "style": "Anime", "character": "mario"},
        {"prompt": "a city", "style": "Anime", "seed_value": -1},
        {"prompt": "a city", "style": "Anime", "maxJobs": 3},  # the gateway's, not the input's
    ):
        with pytest.raises(ValidationError):
            PixVerseVideoInput.model_validate(data)
    ok = PixVerseVideoInput(prompt="a city", style="Anime", character="klee", seed_value=5)
    assert ok.character == "klee"
    assert UseapiPixVerse({"max_jobs": 3}).max_jobs() == 3
    assert UseapiPixVerse({"max_jobs": 99}).max_jobs() == 10


async def test_useapi_lifecycle_by_polling(up: LiveServer) -> None:
    key = await new_key(up)
    prov = UseapiPixVerse({"max_jobs": 4})
    async with httpx.AsyncClient() as client:
        call = call_for(prov, client, up, USEAPI, key)
        created = await prov.create(
            call,
            "pixverse-video",
            PixVerseVideoInput(prompt="waves at dusk", style="Realistic", aspect_ratio="16:9"),
            reference="job_video1",
            callback_url=None,
            idempotency_key=None,
        )
        assert created.upstream_id
        assert created.snapshot is not None and created.snapshot.state == "queued"
        final, seen = await until_terminal(prov, call, "pixverse-video", created.upstream_id)
        assert final.state == "succeeded", final
        assert any(isinstance(s.progress, float) and s.progress > 0 for s in seen), seen
        assert [o.name for o in final.outputs] == ["video"]
        (video,) = final.outputs
        assert video.kind == "video" and video.content_type == "video/mp4"
        assert video.meta["width"] > 0 and video.meta["height"] > 0
        assert video.meta["width"] > video.meta["height"]  # 16:9
        body = await download(client, up, key, video.url)
        assert body[4:8] == b"ftyp"
        assert len(body) == video.meta["size"]

        # what was sent: the job model echoes maxJobs and replyRef
        r = await client.get(
            f"{up.url}{USEAPI}/v1/pixverse/jobs/",
            params={"jobid": created.upstream_id},
            headers={"Authorization": f"Bearer {key}"},
        )
        job = r.json()
        assert job["maxJobs"] == 4 and job["replyRef"] == "job_video1"
        assert "replyUrl" not in job


async def test_useapi_reply_url_push(up: LiveServer) -> None:
    key = await new_key(up)
    prov = UseapiPixVerse({})
    rx = Receiver()
    try:
        async with httpx.AsyncClient() as client:
            call = call_for(prov, client, up, USEAPI, key)
            created = await prov.create(
                call,
                "pixverse-video",
                PixVerseVideoInput(prompt="a paper boat", style="Anime", character="klee"),
                reference="job_pushed",
                callback_url=rx.url,
                idempotency_key=None,
            )
            pushed = await rx.wait()
            assert isinstance(pushed, dict)
            assert pushed["jobid"] == created.upstream_id
            assert pushed["replyRef"] == "job_pushed" and pushed["replyUrl"] == rx.url
            snap = prov.parse_callback("pixverse-video", pushed)
            assert snap is not None and snap.state == "succeeded", pushed
            (video,) = snap.outputs
            body = await download(client, up, key, video.url)
            assert body[4:8] == b"ftyp"
            # the push and a poll agree
            polled = await prov.status(call, "pixverse-video", created.upstream_id)
            assert polled.state == "succeeded" and polled.outputs == snap.outputs
    finally:
        rx.close()
    assert prov.parse_callback("pixverse-video", "not a job") is None
    assert prov.parse_callback("pixverse-video", {"jobid": "j", "status": "bogus"}) is None
    assert prov.parse_callback("pixverse-video", {"error": "Job has expired", "code": 410}) is None


async def expired_job(srv: LiveServer, key: str) -> str:
    """A job of the key's account that has expired (as the retention sweeper leaves it)."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{srv.url}/v1/account", headers={"Authorization": f"Bearer {key}"})
    owner = str(r.json()["id"])
    store = Store(srv.settings.db_url)
    try:
        now = utcnow()
        job, _ = await store.jobs.create(
            job_record(
                owner,
                engine="demo/noop",
                metadata={"compat": "useapi"},
                status="expired",
                expires_at=now,
                completed_at=now,
            ),
            lifecycle.created(),
        )
        return job.id
    finally:
        await store.close()


async def test_useapi_errors_and_check(up: LiveServer) -> None:
    key = await new_key(up)
    prov = UseapiPixVerse({})
    async with httpx.AsyncClient() as client:
        call = call_for(prov, client, up, USEAPI, key)
        summary = await prov.check(call)
        assert summary.startswith("useapi.net") and key not in summary

        with pytest.raises(UpstreamError) as unknown:
            await prov.status(call, "pixverse-video", "job_00000000000000000000000000")
        assert unknown.value.code == NOT_FOUND and unknown.value.status == 404
        assert "Unable to locate job" in unknown.value.message

        gone = await expired_job(up, key)
        with pytest.raises(UpstreamError) as expired:
            await prov.status(call, "pixverse-video", gone)
        assert expired.value.code == NOT_FOUND and expired.value.status == 410
        assert expired.value.message == "Job has expired"

        bad = call_for(prov, client, up, USEAPI, "gq_not_a_real_key_" + uuid.uuid4().hex)
        with pytest.raises(UpstreamError) as denied:
            await prov.check(bad)
        assert denied.value.code == UNAUTHORIZED and denied.value.message == "Unauthorized"
        data = PixVerseVideoInput(prompt="a kite", style="3D Animation")
        with pytest.raises(UpstreamError) as denied_create:
            await prov.create(
                bad,
                "pixverse-video",
                data,
                reference="job_z",
                callback_url=None,
                idempotency_key=None,
            )
        assert denied_create.value.code == UNAUTHORIZED

        poor = call_for(prov, client, up, USEAPI, await new_key(up, plan="free", credits=0))
        with pytest.raises(UpstreamError) as broke:
            await prov.create(
                poor,
                "pixverse-video",
                data,
                reference="job_p",
                callback_url=None,
                idempotency_key=None,
            )
        assert broke.value.code == INSUFFICIENT and broke.value.status == 402
        assert "subscription" in broke.value.message


async def test_useapi_max_jobs_busy_is_rate_limited(up: LiveServer) -> None:
    """maxJobs reaches the service: over it, 429 with Retry-After (a transient error)."""
    key = await new_key(up)
    prov = UseapiPixVerse({"max_jobs": 1})
    data = PixVerseVideoInput(prompt="rain on a window", style="Realistic")
    async with httpx.AsyncClient() as client:
        call = call_for(prov, client, up, USEAPI, key)
        first = await prov.create(
            call, "pixverse-video", data, reference="job_a", callback_url=None, idempotency_key=None
        )
        with pytest.raises(UpstreamError) as busy:
            await prov.create(
                call,
                "pixverse-video",
                data,
                reference="job_b",
                callback_url=None,
                idempotency_key=None,
            )
        assert busy.value.code == RATE_LIMITED and busy.value.transient
        assert busy.value.status == 429 and busy.value.retry_after is not None
        assert "busy" in busy.value.message
        final, _ = await until_terminal(prov, call, "pixverse-video", first.upstream_id)
        assert final.state == "succeeded"


def test_useapi_job_models_as_snapshots() -> None:
    """Status words the demo engines do not reach (moderated, cancelled, failed)."""
    prov = UseapiPixVerse({})
    moderated = prov.snapshot({"jobid": "j", "status": "moderated", "error": "nsfw"})
    assert moderated is not None and moderated.state == "failed"
    assert moderated.error_code == "upstream_rejected" and "nsfw" in (moderated.error_message or "")
    failed = prov.snapshot({"jobid": "j", "status": "failed", "errorDetails": "bot error"})
    assert failed is not None and failed.error_code == FAILED
    assert failed.error_message == "bot error"
    cancelled = prov.snapshot({"jobid": "j", "status": "cancelled"})
    assert cancelled is not None and cancelled.state == "canceled"
    started = prov.snapshot(
        {"jobid": "j", "status": "progress", "content": "<@1> (prompt: x style: Anime) 45%"}
    )
    assert started is not None and started.state == "running" and started.progress == 45.0
    empty = prov.snapshot({"jobid": "j", "status": "completed", "attachments": []})
    assert empty is not None and empty.state == "failed"
    expired = prov.error_of(httpx.Response(410, json={"error": "Job has expired", "code": 410}))
    assert expired.code == NOT_FOUND


async def test_wire_requests_as_the_real_services_take_them(tmp_path: Path) -> None:
    """What goes on the wire, seen by a stand-in for the real hosts: Masterpiece X gets
    the SDK's camelCase names beside the parameter-table ones, the presigned upload URL
    gets the bytes and no credentials; useapi gets maxJobs, replyUrl/replyRef and the
    Discord options."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/v2/assets/create":
            return httpx.Response(
                200,
                json={
                    "requestId": "asset123",
                    "assetUrl": "https://bucket.example/upload/asset123?sig=abc",
                    "balance": 100,
                },
            )
        if request.url.host == "bucket.example":
            return httpx.Response(200)
        if path.startswith("/v2/"):
            return httpx.Response(200, json={"requestId": "req1", "status": "pending"})
        return httpx.Response(200, json={"jobid": "job-u1", "status": "created", "code": 200})

    image = png_file(tmp_path)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        mpx = MasterpieceX({})
        call = HttpCall(
            mpx,
            client,
            "https://api.mpx.example/v2",
            "secret-mpx",
            input_path=lambda ref: image,
        )
        created = await mpx.create(
            call,
            "image-to-3d",
            ImageTo3DInput(image=FILE_REF, texture_size=512),
            reference="job_wire",
            callback_url=None,
            idempotency_key="idem-1",
        )
        assert created.upstream_id == "req1"
        asset, put, make = seen
        assert json.loads(asset.content) == {
            "name": "input.png",
            "type": "image/png",
            "description": "genq input of job_wire",
        }
        assert asset.headers["authorization"] == "Bearer secret-mpx"
        assert put.method == "PUT" and put.url.host == "bucket.example"
        assert "authorization" not in put.headers
        assert put.headers["content-type"] == "image/png" and put.content == image.read_bytes()
        assert make.url.path == "/v2/functions/imageto3d"
        assert make.headers["idempotency-key"] == "idem-1"
        assert json.loads(make.content) == {
            "image_request_id": "asset123",
            "imageRequestId": "asset123",
            "texture_size": 512,
            "textureSize": 512,
        }

        seen.clear()
        await mpx.create(
            call,
            "text2image",
            Text2ImageInput(prompt="a cat", num_images=2, output_format="webp"),
            reference="job_wire2",
            callback_url=None,
            idempotency_key=None,
        )
        sent = json.loads(seen[0].content)
        assert sent["numImages"] == sent["num_images"] == 2
        assert sent["outputFormat"] == sent["output_format"] == "webp"
        assert "idempotency-key" not in seen[0].headers

        seen.clear()
        prov = UseapiPixVerse({"max_jobs": 2, "discord": "tok", "server": "1", "channel": "2"})
        ucall = HttpCall(prov, client, "https://api.useapi.example", "secret-u")
        await prov.create(
            ucall,
            "pixverse-video",
            PixVerseVideoInput(prompt="a kite", style="Anime", seed_value=9),
            reference="job_wire3",
            callback_url="https://genq.example/hooks/useapi/tok",
            idempotency_key=None,
        )
        (req,) = seen
        assert req.url.path == "/v1/pixverse/create_single"
        assert json.loads(req.content) == {
            "prompt": "a kite",
            "style": "Anime",
            "seed_value": 9,
            "maxJobs": 2,
            "discord": "tok",
            "server": "1",
            "channel": "2",
            "replyUrl": "https://genq.example/hooks/useapi/tok",
            "replyRef": "job_wire3",
        }
