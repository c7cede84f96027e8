"""The photogpt and vivix provider modules against genq's own compat faces of those
services (a live genq server on loopback playing the upstream, its demo engines making
real PNG and MP4 files): create, status until terminal, outputs that download, input
validation, training a PhotoGPT model and using it, and every error mapping."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import BaseModel, ValidationError

from genq.engines.contract import TASKS
from genq.engines.upstream import provider_class
from genq.engines.upstream.base import (
    INSUFFICIENT,
    NOT_FOUND,
    RATE_LIMITED,
    REJECTED,
    UNAUTHORIZED,
    UNAVAILABLE,
    Provider,
    Snapshot,
    UpstreamError,
)
from genq.engines.upstream.call import HttpCall
from genq.engines.upstream.photogpt import FACE_UPLOAD, PhotoGPT
from genq.engines.upstream.vivix import DEFAULT_MODELS, Vivix
from tests.conftest import LiveServer, make_settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT_S = 90.0
# one generation a minute: the second create in a minute is refused with 429
TINY_PLAN = {
    "generation_per_min": 1,
    "status_per_min": 1000,
    "concurrent_jobs": 2,
    "retention_days": 1,
    "monthly_credits": 1000,
}
# operator routes of the faces to engines that fail (tests/scenario_engines.py)
FAILING = {"photogpt:videos/boom": "test/boom", "vivix:model:refused": "test/moderated"}
UNKNOWN_JOB = "job_01ARZ3NDEKTSV4RRFFQ69G5FAV"  # well formed, never made
UNKNOWN_MODEL = "model_01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A genq server playing PhotoGPT and Vivix Atelier (its compat faces)."""
    settings = make_settings(
        tmp_path_factory.mktemp("upstream") / "up",
        plans={"tiny": TINY_PLAN},
        compat_engines=FAILING,
    )
    srv = LiveServer(settings).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def key(upstream: LiveServer) -> str:
    """A key of a fresh pro account at the upstream (no shared limits or jobs)."""
    return upstream.new_key(f"acct-{uuid.uuid4().hex[:10]}", plan="pro")


@pytest.fixture
def keys(upstream: LiveServer) -> dict[str, str]:
    """Keys of other fresh accounts: `poor` (free, no credits), `tiny` (one generation
    a minute) and `other` (pro). Made here: making a key runs its own event loop."""
    tag = uuid.uuid4().hex[:8]
    return {
        "poor": upstream.new_key(f"poor-{tag}", plan="free", credits=0),
        "tiny": upstream.new_key(f"tiny-{tag}", plan="tiny"),
        "other": upstream.new_key(f"other-{tag}", plan="pro"),
    }


def base(upstream: LiveServer, face: str) -> str:
    return f"{upstream.url}/compat/{face}"


def call_of(
    provider: Provider,
    client: httpx.AsyncClient,
    url: str,
    key: str,
    *,
    files: dict[str, Path] | None = None,
    artifact: Path | None = None,
) -> HttpCall:
    def input_path(ref: str) -> Path:
        assert files is not None and ref in files, ref
        return files[ref]

    return HttpCall(provider, client, url, key, input_path=input_path, model_artifact=artifact)


async def until_terminal(
    provider: Provider, call: HttpCall, what: str, upstream_id: str, seen: list[Snapshot]
) -> Snapshot:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        snap = await provider.status(call, what, upstream_id)
        seen.append(snap)
        if snap.terminal:
            return snap
        assert time.monotonic() < deadline, f"{what} {upstream_id} still {snap} after 90 s"
        await asyncio.sleep(0.3)


async def download(call: HttpCall, url: str, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if call.same_origin(url) else {}
    r = await call.client.get(url, headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:200]
    return r


def png_file(path: Path, color: tuple[int, int, int]) -> Path:
    im = Image.new("RGB", (48, 40), color)
    for x in range(0, 48, 6):
        for y in range(0, 40, 5):
            im.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    im.save(path, format="PNG")
    return path


async def raises(code: str, coro: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as info:
        await coro
    assert info.value.code == code, (info.value.code, info.value.message)
    return info.value


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    props: dict[str, Any] = model.model_json_schema()["properties"]
    return props


# -- PhotoGPT --------------------------------------------------------------------------


def photogpt(**options: Any) -> PhotoGPT:
    provider = provider_class("photogpt")(options)
    assert isinstance(provider, PhotoGPT)
    return provider


def test_photogpt_engines_and_input_models() -> None:
    provider = photogpt()
    specs = {e.what: e for e in provider.engines()}
    assert set(specs) == {"image", "upscale", "video", "train"}
    assert all(e.task in TASKS for e in specs.values())
    assert specs["train"].task == "train" and specs["train"].poll_s == 300
    assert specs["image"].poll_s == specs["video"].poll_s == 5
    assert specs["image"].media == ("image",) and specs["video"].media == ("video",)
    assert provider.auth_headers("k") == {"Authorization": "Bearer k", "API-Version": "1"}

    image = specs["image"].input_model
    props = schema_of(image)
    for name in (
        "prompt",
        "model_id",
        "base_model",
        "preset",
        "input_image_id",
        "width",
        "height",
        "aspect_ratio",
        "num_images",
        "steps",
        "seed",
    ):
        assert name in props and props[name].get("description"), name
    assert props["num_images"]["maximum"] == 4
    assert image.model_json_schema()["required"] == ["prompt"]
    valid = image.model_validate({"prompt": "p", "model_id": UNKNOWN_MODEL})
    assert valid.model_dump()["model_id"] == UNKNOWN_MODEL
    bad: dict[str, Any]
    for bad in (
        {},
        {"prompt": ""},
        {"prompt": "p", "num_images": 5},
        {"prompt": "p", "model_id": "not-a-model"},
        {"prompt": "p", "model_id": UNKNOWN_MODEL, "base_model": "gpt-image-2"},
        {"prompt": "p", "aspect_ratio": "1:1", "width": 512},
        {"prompt": "p", "aspect_ratio": "wide"},
        {"prompt": "p", "numImages": 2},  # PhotoGPT's spelling is not the input's
        {"prompt": "p", "seed": -1},
    ):
        with pytest.raises(ValidationError):
            image.model_validate(bad)

    train = specs["train"].input_model
    assert set(schema_of(train)) == {"images", "name", "age", "gender", "ethnicity", "eye_color"}
    assert schema_of(train)["images"]["maxItems"] == 20
    train.model_validate({"images": ["file_0123456789ab"], "gender": "Female", "age": 30})
    for bad in (
        {"images": []},
        {"images": ["/etc/passwd"]},
        {"images": ["file_0123456789ab"], "gender": "other"},
        {"images": ["file_0123456789ab"], "age": 0},
    ):
        with pytest.raises(ValidationError):
            train.model_validate(bad)

    video = specs["video"].input_model
    with pytest.raises(ValidationError):  # no video model configured: it must be named
        video.model_validate({"prompt": "p"})
    with pytest.raises(ValidationError):
        video.model_validate({"model": "m", "prompt": "p", "num_videos": 9})
    defaulted = photogpt(video_model="kling-2").engines()[2].input_model
    assert defaulted.model_validate({"prompt": "p"}).model_dump()["model"] == "kling-2"


async def test_photogpt_image_lifecycle(upstream: LiveServer, key: str) -> None:
    provider = photogpt()
    data = provider.engines()[0].input_model.model_validate(
        {"prompt": "a portrait in a garden", "num_images": 2, "aspect_ratio": "3:4", "seed": 7}
    )
    async with httpx.AsyncClient() as client:
        call = call_of(provider, client, base(upstream, "photogpt"), key)
        created = await provider.create(
            call, "image", data, reference="job_x", callback_url=None, idempotency_key="pg-img-1"
        )
        assert created.upstream_id.startswith("job_")
        assert created.snapshot is not None and created.snapshot.state == "queued"
        # the same Idempotency-Key makes nothing more (the face honours it)
        again = await provider.create(
            call, "image", data, reference="job_x", callback_url=None, idempotency_key="pg-img-1"
        )
        assert again.upstream_id == created.upstream_id

        seen: list[Snapshot] = []
        snap = await until_terminal(provider, call, "image", created.upstream_id, seen)
        assert {s.state for s in seen} <= {"queued", "running", "succeeded"}
        assert snap.state == "succeeded", snap
        assert [o.name for o in snap.outputs] == ["image_1", "image_2"]
        for out in snap.outputs:
            assert out.kind == "image"
            assert out.meta["photogpt_id"].startswith(created.upstream_id + "/")
            r = await download(call, out.url, key)
            assert r.content.startswith(PNG_MAGIC)
            assert r.headers["content-type"].startswith("image/png")
            w, h = Image.open(io.BytesIO(r.content)).size
            assert w < h  # 3:4

        # an image of that job upscaled, named by its PhotoGPT image id
        up = provider.engines()[1].input_model.model_validate(
            {"image_id": snap.outputs[0].meta["photogpt_id"]}
        )
        created = await provider.create(
            call, "upscale", up, reference="job_y", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(provider, call, "upscale", created.upstream_id, [])
        assert snap.state == "succeeded", snap
        r = await download(call, snap.outputs[0].url, key)
        big = Image.open(io.BytesIO(r.content)).size
        assert big[0] > w and big[1] > h


async def test_photogpt_video(upstream: LiveServer, key: str) -> None:
    provider = photogpt()
    data = provider.engines()[2].input_model.model_validate(
        {"model": "kling-v2", "prompt": "waves at dusk", "num_videos": 1}
    )
    async with httpx.AsyncClient() as client:
        call = call_of(provider, client, base(upstream, "photogpt"), key)
        created = await provider.create(
            call, "video", data, reference="job_v", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(provider, call, "video", created.upstream_id, [])
        assert snap.state == "succeeded", snap
        assert [(o.name, o.kind) for o in snap.outputs] == [("video_1", "video")]
        r = await download(call, snap.outputs[0].url, key)
        assert r.content[4:8] == b"ftyp"  # an MP4
        assert r.headers["content-type"].startswith("video/mp4")


async def test_photogpt_train_then_generate_with_the_model(
    upstream: LiveServer, key: str, tmp_path: Path
) -> None:
    provider = photogpt()
    specs = {e.what: e for e in provider.engines()}
    files = {
        "file_trainpicture01": png_file(tmp_path / "a.png", (200, 40, 40)),
        "file_trainpicture02": png_file(tmp_path / "b.png", (40, 160, 60)),
        "file_trainpicture03": png_file(tmp_path / "c.png", (30, 30, 200)),
    }
    data = specs["train"].input_model.model_validate(
        {"images": list(files), "name": "Ada", "age": 31, "gender": "Female", "eye_color": "brown"}
    )
    async with httpx.AsyncClient() as client:
        url = base(upstream, "photogpt")
        call = call_of(provider, client, url, key, files=files)
        created = await provider.create(
            call, "train", data, reference="job_train", callback_url=None, idempotency_key="t-1"
        )
        assert created.upstream_id.startswith("model:model_")
        # the model, its status (the answer might have been a replay), /images/upload
        # (404 here: tried once), 3 pictures to the face's route, train
        assert call.requests == 7
        # the create retried with its key (its answer lost): the same model, which is
        # training already, is neither fed nor started again
        sent = call.requests
        again = await provider.create(
            call, "train", data, reference="job_train", callback_url=None, idempotency_key="t-1"
        )
        assert again.upstream_id == created.upstream_id and again.snapshot is None
        assert call.requests - sent == 2
        assert provider._upload == FACE_UPLOAD  # the face has no /images/upload
        model_id = created.upstream_id.removeprefix("model:")
        headers = {"Authorization": f"Bearer {key}", "API-Version": "1"}
        r = await client.get(f"{url}/models/{model_id}", headers=headers)
        assert r.json()["result"]["name"] == "Ada" and r.json()["result"]["eyeColor"] == "brown"

        seen: list[Snapshot] = []
        snap = await until_terminal(provider, call, "train", created.upstream_id, seen)
        assert {s.state for s in seen} <= {"queued", "running", "succeeded"}
        assert snap.state == "succeeded", snap
        assert snap.artifact == {"provider": "photogpt", "model_id": model_id, "name": "Ada"}

        # the gateway keeps the artifact as the genq model's weights; a job naming
        # that genq model reaches PhotoGPT with the PhotoGPT model id
        weights = tmp_path / "weights.json"
        weights.write_text(json.dumps(snap.artifact))
        image = specs["image"].input_model.model_validate(
            {"prompt": "Ada at the beach", "model_id": "model_0123456789abcdef", "seed": 1}
        )
        call = call_of(provider, client, url, key, artifact=weights)
        created = await provider.create(
            call, "image", image, reference="job_img", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(provider, call, "image", created.upstream_id, [])
        assert snap.state == "succeeded", snap
        r = await client.get(f"{url}/jobs/{created.upstream_id}", headers=headers)
        assert r.json()["result"]["modelId"] == model_id
        assert (await download(call, snap.outputs[0].url, key)).content.startswith(PNG_MAGIC)

        # an artifact that is not a PhotoGPT model is refused before any call
        other = tmp_path / "other.json"
        other.write_text(json.dumps({"kind": "genq-demo-palette"}))
        call = call_of(provider, client, url, key, artifact=other)
        sent = call.requests
        await raises(
            "invalid_input",
            provider.create(
                call, "image", image, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert call.requests == sent


async def test_photogpt_errors(upstream: LiveServer, key: str, keys: dict[str, str]) -> None:
    provider = photogpt()
    image = provider.engines()[0].input_model
    data = image.model_validate({"prompt": "p"})
    url = base(upstream, "photogpt")
    async with httpx.AsyncClient() as client:
        bad_key = "gq_" + "x" * 40
        call = call_of(provider, client, url, bad_key)
        err = await raises(
            UNAUTHORIZED,
            provider.create(
                call, "image", data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 401 and bad_key not in err.message
        await raises(UNAUTHORIZED, provider.check(call))

        call = call_of(provider, client, url, key)
        assert "accepted" in await provider.check(call)
        err = await raises(NOT_FOUND, provider.status(call, "image", UNKNOWN_JOB))
        assert err.status == 404
        await raises(NOT_FOUND, provider.status(call, "train", f"model:{UNKNOWN_MODEL}"))

        # a public model id genq's face does not serve: 400, PhotoGPT's message kept
        named = image.model_validate({"prompt": "p", "base_model": "gpt-image-2"})
        err = await raises(
            REJECTED,
            provider.create(
                call, "image", named, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 400 and "modelID" in err.message

        call = call_of(provider, client, url, keys["poor"])
        err = await raises(
            INSUFFICIENT,
            provider.create(
                call, "image", data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 402 and not err.transient

        call = call_of(provider, client, url, keys["tiny"])
        await provider.create(
            call, "image", data, reference="j", callback_url=None, idempotency_key=None
        )
        err = await raises(
            RATE_LIMITED,
            provider.create(
                call, "image", data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 429 and err.transient
        assert err.retry_after is not None and err.retry_after > 0


async def test_failed_upstream_jobs(upstream: LiveServer, key: str) -> None:
    """A job that fails upstream ends failed with the service's own words."""
    async with httpx.AsyncClient() as client:
        pg = photogpt()
        call = call_of(pg, client, base(upstream, "photogpt"), key)
        data = pg.engines()[2].input_model.model_validate({"model": "boom", "prompt": "p"})
        created = await pg.create(
            call, "video", data, reference="j", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(pg, call, "video", created.upstream_id, [])
        assert snap.state == "failed" and snap.message == "failed" and not snap.outputs
        assert snap.error_message and "exploded" in snap.error_message
        assert snap.error_code is None  # the gateway's default: upstream_failed

        vx = vivix(models=[{"name": "refused", "kind": "image"}])
        call = call_of(vx, client, base(upstream, "vivix"), key)
        data = spec_input(vx, "refused").model_validate({"prompt": "p"})
        created = await vx.create(
            call, "refused", data, reference="j", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(vx, call, "refused", created.upstream_id, [])
        assert snap.state == "failed" and snap.message == "failed" and not snap.outputs
        assert snap.error_message == ("CONTENT_MODERATED: prompt refused by the moderation filter")


def test_photogpt_error_bodies_of_the_real_service() -> None:
    provider = photogpt()
    request = httpx.Request("GET", "https://developer.photogptai.com/api/jobs/x")

    def answer(status: int, body: Any, **headers: str) -> UpstreamError:
        return provider.error_of(
            httpx.Response(status, json=body, headers=headers, request=request)
        )

    nok = {"err": "not_found", "message": "job not found", "result": None, "status": "NOK"}
    err = answer(404, nok)
    assert err.code == NOT_FOUND and "job not found" in err.message
    err = answer(400, {"err": "bad_request", "message": "prompt is required", "status": "NOK"})
    assert err.code == REJECTED and "prompt is required" in err.message
    assert answer(401, {"err": "unauthorized", "message": "", "status": "NOK"}).code == UNAUTHORIZED
    err = answer(429, {"err": "rate_limited", "message": "slow down"}, **{"Retry-After": "7"})
    assert err.code == RATE_LIMITED and err.retry_after == 7
    assert answer(502, {"message": "bad gateway"}).code == UNAVAILABLE
    assert answer(409, {"error": {"code": "conflict"}}, **{"Retry-After": "1"}).code == UNAVAILABLE


# -- Vivix Atelier ---------------------------------------------------------------------


def vivix(**options: Any) -> Vivix:
    provider = provider_class("vivix")(options)
    assert isinstance(provider, Vivix)
    return provider


def spec_input(provider: Vivix, what: str) -> type[BaseModel]:
    return next(e.input_model for e in provider.engines() if e.what == what)


def test_vivix_engines_and_input_models() -> None:
    provider = vivix()
    specs = {e.what: e for e in provider.engines()}
    assert set(specs) == {m.name for m in DEFAULT_MODELS}
    assert {"grok-imagine-image-quality", "grok-imagine-image", "grok-imagine-video"} <= set(specs)
    assert Vivix.default_rate_per_min == 240 and Vivix.default_max_jobs == 5
    image, video = specs["grok-imagine-image-quality"], specs["grok-imagine-video"]
    assert (image.task, image.media, image.poll_s, image.cost) == (
        "text2image",
        ("image",),
        2.0,
        211,
    )
    assert (video.task, video.media, video.poll_s) == ("text2video", ("video",), 4.0)

    props = schema_of(image.input_model)
    assert set(props) == {
        "prompt",
        "negative_prompt",
        "aspect_ratio",
        "resolution",
        "reference_images",
        "seed",
        "number_results",
    }
    assert props["prompt"]["maxLength"] == 2000
    assert props["negative_prompt"]["anyOf"][0]["maxLength"] == 500
    assert props["number_results"]["maximum"] == 4
    assert props["reference_images"]["anyOf"][0]["maxItems"] == 3
    assert set(props["aspect_ratio"]["anyOf"][0]["enum"]) == {
        "1:1",
        "4:5",
        "9:16",
        "16:9",
    }
    vprops = schema_of(video.input_model)
    assert {"duration", "audio"} <= set(vprops) and "number_results" not in vprops

    ok = {"prompt": "p"}
    for bad in (
        {},
        {"prompt": "x" * 2001},
        {"prompt": "p", "negative_prompt": "x" * 501},
        {"prompt": "p", "aspect_ratio": "2:3"},
        {"prompt": "p", "resolution": "720p"},  # a video resolution
        {"prompt": "p", "number_results": 5},
        {"prompt": "p", "reference_images": ["https://a.example/1.png"] * 4},
        {"prompt": "p", "reference_images": ["file_0123456789ab"]},  # URLs only
        {"prompt": "p", "duration": 5},  # not on an image model
        {"prompt": "p", "model": "grok-imagine-image"},
    ):
        with pytest.raises(ValidationError):
            image.input_model.model_validate(bad)
    image.input_model.model_validate({**ok, "resolution": "4K", "number_results": 4})
    for bad in (
        {"prompt": "p", "duration": 11},
        {"prompt": "p", "number_results": 2},
        {"prompt": "p", "resolution": "1K"},
    ):
        with pytest.raises(ValidationError):
            video.input_model.model_validate(bad)
    video.input_model.model_validate({**ok, "duration": 10, "audio": True, "resolution": "720p"})

    configured = vivix(
        models=[
            "seedance-video-pro",
            {"name": "flux-x", "kind": "image", "resolutions": ["1K"], "cost": 40},
            {"name": "veo-3", "kind": "video", "durations": [4, 8], "audio": False},
        ]
    )
    specs = {e.what: e for e in configured.engines()}
    assert set(specs) == {"seedance-video-pro", "flux-x", "veo-3"}
    assert specs["seedance-video-pro"].media == ("video",)
    assert specs["flux-x"].cost == 40
    with pytest.raises(ValidationError):
        specs["flux-x"].input_model.model_validate({"prompt": "p", "resolution": "2K"})
    assert schema_of(specs["veo-3"].input_model)["duration"]["anyOf"][0]["maximum"] == 8
    assert "audio" not in schema_of(specs["veo-3"].input_model)
    with pytest.raises(ValueError):
        vivix(models=[{"name": "x", "kind": "audio"}])


async def test_vivix_image_model_lifecycle(upstream: LiveServer, key: str) -> None:
    provider = vivix()
    what = "grok-imagine-image-quality"
    data = spec_input(provider, what).model_validate(
        {
            "prompt": "a misty forest at dawn",
            "aspect_ratio": "16:9",
            "resolution": "1K",
            "number_results": 2,
            "seed": 11,
        }
    )
    async with httpx.AsyncClient() as client:
        call = call_of(provider, client, base(upstream, "vivix"), key)
        created = await provider.create(
            call, what, data, reference="job_a", callback_url=None, idempotency_key="vx-1"
        )
        uuid.UUID(created.upstream_id)  # Vivix ids are UUIDs
        assert created.snapshot == Snapshot(state="queued", message="pending")
        again = await provider.create(
            call, what, data, reference="job_a", callback_url=None, idempotency_key="vx-1"
        )
        assert again.upstream_id == created.upstream_id

        seen: list[Snapshot] = []
        snap = await until_terminal(provider, call, what, created.upstream_id, seen)
        assert {s.message for s in seen} <= {"pending", "processing", "completed"}
        assert snap.state == "succeeded", snap
        assert [(o.name, o.kind) for o in snap.outputs] == [
            ("image_1", "image"),
            ("image_2", "image"),
        ]
        for out in snap.outputs:
            r = await download(call, out.url, key)
            assert r.content.startswith(PNG_MAGIC)
            assert out.content_type in (None, r.headers["content-type"].split(";")[0])
            assert Image.open(io.BytesIO(r.content)).size == (1024, 576)  # 1K at 16:9

        # an output URL of that generation as a reference image of the next one
        ref = spec_input(provider, "grok-imagine-image").model_validate(
            {"prompt": "the same forest at night", "reference_images": [snap.outputs[0].url]}
        )
        created = await provider.create(
            call,
            "grok-imagine-image",
            ref,
            reference="job_b",
            callback_url=None,
            idempotency_key=None,
        )
        snap = await until_terminal(provider, call, "grok-imagine-image", created.upstream_id, [])
        assert snap.state == "succeeded" and len(snap.outputs) == 1


async def test_vivix_video_model(upstream: LiveServer, key: str) -> None:
    provider = vivix()
    what = "grok-imagine-video"
    data = spec_input(provider, what).model_validate(
        {"prompt": "neon street in the rain", "duration": 2, "audio": False, "aspect_ratio": "16:9"}
    )
    async with httpx.AsyncClient() as client:
        call = call_of(provider, client, base(upstream, "vivix"), key)
        created = await provider.create(
            call, what, data, reference="job_v", callback_url=None, idempotency_key=None
        )
        snap = await until_terminal(provider, call, what, created.upstream_id, [])
        assert snap.state == "succeeded", snap
        assert [(o.name, o.kind) for o in snap.outputs] == [("video_1", "video")]
        r = await download(call, snap.outputs[0].url, key)
        assert r.content[4:8] == b"ftyp"
        assert r.headers["content-type"].startswith("video/mp4")


async def test_vivix_errors(upstream: LiveServer, key: str, keys: dict[str, str]) -> None:
    provider = vivix()
    what = "grok-imagine-image"
    data = spec_input(provider, what).model_validate({"prompt": "p"})
    url = base(upstream, "vivix")
    async with httpx.AsyncClient() as client:
        bad_key = "vvx_live_" + "y" * 32
        call = call_of(provider, client, url, bad_key)
        err = await raises(
            UNAUTHORIZED,
            provider.create(
                call, what, data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 401 and "KEY_INVALID" in err.message and bad_key not in err.message
        await raises(UNAUTHORIZED, provider.check(call))

        call = call_of(provider, client, url, key)
        summary = await provider.check(call)
        assert "balance" in summary and "tier pro" in summary
        err = await raises(NOT_FOUND, provider.status(call, what, str(uuid.uuid4())))
        assert err.status == 404 and "NOT_FOUND" in err.message

        # another account's generation: 403 NOT_YOURS, which this key cannot follow
        created = await provider.create(
            call, what, data, reference="j", callback_url=None, idempotency_key=None
        )
        theirs = call_of(provider, client, url, keys["other"])
        err = await raises(NOT_FOUND, provider.status(theirs, what, created.upstream_id))
        assert err.status == 403 and "NOT_YOURS" in err.message

        # a model the service does not have: 400, its message kept
        unknown = vivix(models=["no-such-model"])
        err = await raises(
            REJECTED,
            unknown.create(
                call_of(unknown, client, url, key),
                "no-such-model",
                spec_input(unknown, "no-such-model").model_validate({"prompt": "p"}),
                reference="j",
                callback_url=None,
                idempotency_key=None,
            ),
        )
        assert err.status == 400 and "UNKNOWN_MODEL" in err.message

        call = call_of(provider, client, url, keys["poor"])
        err = await raises(
            INSUFFICIENT,
            provider.create(
                call, what, data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 402 and "balance 0" in err.message

        call = call_of(provider, client, url, keys["tiny"])
        await provider.create(
            call, what, data, reference="j", callback_url=None, idempotency_key=None
        )
        err = await raises(
            RATE_LIMITED,
            provider.create(
                call, what, data, reference="j", callback_url=None, idempotency_key=None
            ),
        )
        assert err.status == 429 and err.transient and (err.retry_after or 0) > 0


def test_vivix_error_bodies_of_the_real_service() -> None:
    provider = vivix()
    request = httpx.Request("POST", "https://vivix-atelier.vercel.app/api/v1/generate")

    def answer(status: int, body: Any, **headers: str) -> UpstreamError:
        return provider.error_of(
            httpx.Response(status, json=body, headers=headers, request=request)
        )

    err = answer(429, {"error": "CONCURRENCY_LIMIT", "message": "Too many in-flight jobs."})
    assert err.code == RATE_LIMITED and err.transient and "CONCURRENCY_LIMIT" in err.message
    err = answer(429, {"error": "RATE_LIMITED", "message": "240/min"}, **{"Retry-After": "12"})
    assert err.code == RATE_LIMITED and err.retry_after == 12
    err = answer(503, {"error": "PROVIDER_DOWN", "message": "outage"})
    assert err.code == UNAVAILABLE and err.transient and err.retry_after == 60
    err = answer(
        402, {"error": "INSUFFICIENT_CREDITS", "message": "m", "balance": 3, "needed": 211}
    )
    assert err.code == INSUFFICIENT and "needed 211" in err.message
    assert answer(403, {"error": "TIER_LOCKED", "message": "Pro only"}).code == UNAUTHORIZED
    assert answer(403, {"error": "MODEL_NOT_ALLOWED", "message": "ask sales"}).code == REJECTED
    assert answer(401, {"error": "KEY_REVOKED", "message": "revoked"}).code == UNAUTHORIZED
    err = answer(400, {"error": "INVALID_REQUEST", "message": "prompt: too long"})
    assert err.code == REJECTED and "prompt: too long" in err.message
    assert answer(500, {"error": "INTERNAL_ERROR", "message": "oops"}).code == UNAVAILABLE
