"""Every demo engine through the real server, to files that decode."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
import imageio_ffmpeg
import trimesh
from PIL import Image
from pxr import Usd, UsdGeom

from tests.conftest import wait_for


def run(api: httpx.Client, engine: str, **input: object) -> dict[str, object]:
    r = api.post("/v1/jobs", json={"engine": engine, "input": {"delay_s": 0, **input}})
    assert r.status_code == 202, r.text
    job = wait_for(api, r.json()["id"], timeout=60)
    assert job["status"] == "succeeded", job
    return job


def fetch(job: dict[str, object], name: str) -> bytes:
    [out] = [o for o in job["outputs"] if o["name"] == name]  # type: ignore[union-attr]
    data = httpx.get(out["url"]).content
    assert len(data) == out["bytes"]
    return data


def test_text2image_and_upscale(api: httpx.Client) -> None:
    job = run(
        api,
        "demo/text2image",
        prompt="a red fox",
        width=256,
        height=128,
        num_images=2,
        seed=7,
        output_format="webp",
    )
    assert [o["name"] for o in job["outputs"]] == ["image_0", "image_1"]  # type: ignore[index]
    assert job["credits"]["used"] == 4  # type: ignore[index]
    with Image.open(io.BytesIO(fetch(job, "image_0"))) as img:
        assert img.format == "WEBP" and img.size == (256, 128)
    again = run(
        api,
        "demo/text2image",
        prompt="a red fox",
        width=256,
        height=128,
        seed=7,
        output_format="webp",
    )
    assert fetch(again, "image_0") == fetch(job, "image_0")
    up = run(api, "demo/upscale", image=f"{job['id']}/image_1", scale=2)
    with Image.open(io.BytesIO(fetch(up, "image_0"))) as img:
        assert img.size == (512, 256)


def test_text2video_is_h264_with_thumbnail(api: httpx.Client, tmp_path: Path) -> None:
    job = run(api, "demo/text2video", prompt="waves", seconds=1, fps=12, width=160, height=96)
    path = tmp_path / "v.mp4"
    path.write_bytes(fetch(job, "video"))
    frames, _secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert frames == 12
    with Image.open(io.BytesIO(fetch(job, "thumbnail"))) as img:
        assert img.size == (160, 96)


def test_text_and_image_to_3d(api: httpx.Client, tmp_path: Path) -> None:
    job = run(api, "demo/text-to-3d", prompt="a torus", texture_size=256)
    mesh = trimesh.load(io.BytesIO(fetch(job, "glb")), file_type="glb", force="mesh")
    assert len(mesh.vertices) > 100
    usdz = tmp_path / "m.usdz"
    usdz.write_bytes(fetch(job, "usdz"))
    assert zipfile.is_zipfile(usdz)
    stage = Usd.Stage.Open(str(usdz))
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert meshes and len(UsdGeom.Mesh(meshes[0]).GetPointsAttr().Get()) > 100
    fbx = fetch(job, "fbx")
    assert fbx.startswith(b"Kaydara FBX Binary") or b"FBXHeaderExtension" in fbx
    with Image.open(io.BytesIO(fetch(job, "thumbnail"))) as img:
        assert img.format == "PNG"
    image = api.post(
        "/v1/files", files={"file": ("in.png", fetch(job, "thumbnail"), "image/png")}
    ).json()
    relief = run(api, "demo/image-to-3d", image=image["id"], texture_size=256)
    assert {o["name"] for o in relief["outputs"]} == {"glb", "usdz", "fbx", "thumbnail"}  # type: ignore[union-attr]


def test_train_a_model_and_paint_with_it(api: httpx.Client) -> None:
    red = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(red, "PNG")
    model = api.post("/v1/models", json={"name": "reds"}).json()
    assert model["status"] == "created"
    up = api.post(
        f"/v1/models/{model['id']}/images", files={"file": ("red.png", red.getvalue(), "image/png")}
    )
    assert up.status_code == 201
    early = api.post(
        "/v1/jobs",
        json={"engine": "demo/text2image", "input": {"prompt": "x", "model_id": model["id"]}},
    )
    assert early.status_code == 422 and "not ready" in early.json()["detail"]
    train = api.post(f"/v1/models/{model['id']}/train", json={"input": {"delay_s": 0}})
    assert train.status_code == 202
    assert api.get(f"/v1/models/{model['id']}").json()["status"] == "training"
    done = wait_for(api, train.json()["id"])
    assert done["status"] == "succeeded" and done["model_id"] == model["id"]
    ready = api.get(f"/v1/models/{model['id']}").json()
    assert ready["status"] == "ready"
    weights = json.loads(httpx.get(ready["weights_url"]).content)
    assert weights["kind"] == "genq-demo-palette"
    painted = run(
        api, "demo/text2image", prompt="a lake", model_id=model["id"], width=64, height=64
    )
    assert painted["model_id"] == model["id"]
    with Image.open(io.BytesIO(fetch(painted, "image_0"))) as img:
        r, g, b = img.convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
        assert r > g and r > b  # the trained reds dominate
    assert [m["id"] for m in api.get("/v1/models").json()["data"]] == [model["id"]]


def test_noop_fail_flag(api: httpx.Client) -> None:
    r = api.post("/v1/jobs", json={"engine": "demo/noop", "input": {"fail": True}})
    job = wait_for(api, r.json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "engine_error"
