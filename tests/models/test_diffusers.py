"""The diffusers engines end to end: tiny random-weight Stable Diffusion pipelines
(built in the session fixture, nothing downloaded) served by a real genq server on the
CPU. What is checked is behaviour, not speed: warm means "not loaded again" (the load
counter in the output's metadata), never a wall-clock comparison."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from PIL import Image

from tests.conftest import LiveServer, wait_for
from tests.models.conftest import _serve, cpu, events, logs


def submit(api: httpx.Client, engine: str, **input: Any) -> str:
    r = api.post("/v1/jobs", json={"engine": engine, "input": input})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def run(api: httpx.Client, engine: str, **input: Any) -> dict[str, Any]:
    job = wait_for(api, submit(api, engine, **input), timeout=120)
    assert job["status"] == "succeeded", job
    return job


def fetch(out: dict[str, Any]) -> bytes:
    data = httpx.get(out["url"]).content
    assert len(data) == out["bytes"]
    return data


def test_text2image_pngs_progress_and_seed(tiny_api: httpx.Client) -> None:
    job = run(
        tiny_api,
        "tiny/text2image",
        prompt="a red fox",
        width=64,
        height=32,
        steps=30,
        seed=7,
        num_images=2,
    )
    outs = job["outputs"]
    assert [o["name"] for o in outs] == ["image_0", "image_1"]
    for i, out in enumerate(outs):
        with Image.open(io.BytesIO(fetch(out))) as im:
            assert im.format == "PNG" and im.size == (64, 32)
        assert out["seed"] == 7 + i and out["steps"] == 30 and out["prompt"] == "a red fox"
        assert out["pipeline"] == "StableDiffusionPipeline" and out["device"] == "cpu"
    assert job["credits"]["used"] == 2
    # progress comes from the pipeline's step callback: "step i/60", i rising
    steps = [
        int(m.group(1))
        for e in events(tiny_api, job["id"])
        if e["event"] == "progress"
        and (m := re.fullmatch(r"step (\d+)/30", e["data"].get("message") or ""))
    ]
    assert steps and steps == sorted(steps) and steps[-1] <= 30
    # the same seed gives the same bytes; WEBP on request
    again = run(
        tiny_api,
        "tiny/text2image",
        prompt="a red fox",
        width=64,
        height=32,
        steps=30,
        seed=7,
        num_images=2,
    )
    assert [o["sha256"] for o in again["outputs"]] == [o["sha256"] for o in outs]
    other = run(
        tiny_api, "tiny/text2image", prompt="a red fox", width=64, height=32, steps=30, seed=8
    )
    assert other["outputs"][0]["sha256"] != outs[0]["sha256"]
    webp = run(tiny_api, "tiny/text2image", prompt="a red fox", seed=7, output_format="webp")
    with Image.open(io.BytesIO(fetch(webp["outputs"][0]))) as im:
        assert im.format == "WEBP" and im.size == (32, 32)


def test_input_schema_bounds(tiny_api: httpx.Client) -> None:
    engine = tiny_api.get("/v1/engines/tiny/text2image").json()
    props = engine["input_schema"]["properties"]
    assert props["width"]["maximum"] == 128 and props["width"]["multipleOf"] == 8
    assert props["steps"]["default"] == 4
    for bad in ({"width": 136}, {"height": 36}, {"steps": 0}, {"num_images": 9}):
        r = tiny_api.post(
            "/v1/jobs", json={"engine": "tiny/text2image", "input": {"prompt": "x", **bad}}
        )
        assert r.status_code == 422, (bad, r.text)
    i2i = tiny_api.get("/v1/engines/tiny/image2image").json()["input_schema"]
    assert "image" in i2i["required"] and i2i["properties"]["strength"]["default"] == 0.6
    inpaint = tiny_api.get("/v1/engines/tiny/inpaint").json()["input_schema"]
    assert {"image", "mask"} <= set(inpaint["required"])


def test_warm_pipeline_is_not_reloaded(tiny_api: httpx.Client) -> None:
    first = run(tiny_api, "warm/text2image", prompt="a cat", seed=1)["outputs"][0]
    second_job = run(tiny_api, "warm/text2image", prompt="a dog", seed=2)
    second = second_job["outputs"][0]
    assert first["warm"] is False and first["pipeline_loads"] == 1 and first["load_s"] > 0
    assert second["warm"] is True and second["pipeline_loads"] == 1 and second["load_s"] == 0
    assert not any(line.startswith("loading") for line in logs(tiny_api, second_job["id"]))


def test_cancel_stops_within_a_step(tiny_api: httpx.Client) -> None:
    job_id = submit(
        tiny_api, "tiny/text2image", prompt="a slow fox", width=64, height=64, steps=5000, seed=1
    )
    deadline = time.monotonic() + 120
    while True:  # until the pipeline is stepping
        job = tiny_api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and (job["message"] or "").startswith("step "):
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    assert tiny_api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = wait_for(tiny_api, job_id, timeout=60)
    assert job["status"] == "canceled", job
    [line] = [m for m in logs(tiny_api, job_id) if m.startswith("canceled")]
    stopped = re.fullmatch(r"canceled: stopped after step (\d+) of 5000", line)
    assert stopped is not None and int(stopped.group(1)) < 5000
    # no step ran after the one that saw the cancel: it is the last progress reported
    last = [e for e in events(tiny_api, job_id) if e["event"] == "progress"]
    if last:
        step = re.fullmatch(r"step (\d+)/5000", last[-1]["data"]["message"])
        assert step is not None and int(step.group(1)) <= int(stopped.group(1))


def test_image2image_and_inpaint(tiny_api: httpx.Client) -> None:
    base = run(tiny_api, "tiny/text2image", prompt="a house", width=48, height=32, seed=3)
    ref = f"{base['id']}/image_0"
    i2i = run(tiny_api, "tiny/image2image", prompt="a green house", image=ref, seed=3)
    out = i2i["outputs"][0]
    assert out["pipeline"] == "StableDiffusionImg2ImgPipeline" and out["warm"] is True
    with Image.open(io.BytesIO(fetch(out))) as im:
        assert im.size == (48, 32)
    mask = Image.new("L", (48, 32), 0)
    mask.paste(255, (8, 8, 40, 24))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    r = tiny_api.post("/v1/files", files={"file": ("mask.png", buf.getvalue(), "image/png")})
    assert r.status_code == 201, r.text
    inpaint = run(tiny_api, "tiny/inpaint", prompt="a door", image=ref, mask=r.json()["id"], seed=3)
    out = inpaint["outputs"][0]
    assert out["pipeline"] == "StableDiffusionInpaintPipeline" and out["pipeline_loads"] >= 1
    with Image.open(io.BytesIO(fetch(out))) as im:
        assert im.size == (48, 32)


def test_lora_trained_then_used(tiny_api: httpx.Client) -> None:
    photo = Image.new("RGB", (40, 40), (200, 30, 30))
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    model = tiny_api.post("/v1/models", json={"name": "me", "engine": "tiny/train-lora"}).json()
    r = tiny_api.post(
        f"/v1/models/{model['id']}/images", files={"file": ("me.png", buf.getvalue(), "image/png")}
    )
    assert r.status_code == 201, r.text
    r = tiny_api.post(
        f"/v1/models/{model['id']}/train",
        json={"input": {"trigger": "sks", "steps": 3, "learning_rate": 0.05, "seed": 0}},
    )
    assert r.status_code == 202, r.text
    train = wait_for(tiny_api, r.json()["id"], timeout=120)
    assert train["status"] == "succeeded", train
    losses = [m for m in logs(tiny_api, train["id"]) if re.fullmatch(r"step \d/3 loss [\d.]+", m)]
    assert len(losses) == 3
    weights = train["outputs"][0]
    assert weights["name"] == "weights" and weights["trigger"] == "sks"
    assert tiny_api.get(f"/v1/models/{model['id']}").json()["status"] == "ready"

    same = {"prompt": "a photo of sks", "seed": 5}
    plain = run(tiny_api, "tiny/text2image", **same)["outputs"][0]
    tuned_job = run(tiny_api, "tiny/text2image", model_id=model["id"], **same)
    tuned = tuned_job["outputs"][0]
    assert tuned["lora"] == "sks" and tuned["sha256"] != plain["sha256"]
    # unloaded after its job: the base model gives the same picture as before
    after = run(tiny_api, "tiny/text2image", **same)["outputs"][0]
    assert after["sha256"] == plain["sha256"]


def test_model_that_does_not_load_fails_its_job(tiny_api: httpx.Client) -> None:
    job = wait_for(tiny_api, submit(tiny_api, "broken/text2image", prompt="x"), timeout=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "model_load_failed"
    assert "no-such-model" in job["error"]["message"]


def test_lru_eviction_under_a_memory_budget(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A budget smaller than one model: loading the other evicts the least recently
    used (the one loaded stays)."""
    config = {"lru/a": cpu(tiny_models["a"]), "lru/b": cpu(tiny_models["b"])}
    server = _serve(tmp_path, config, gpu_memory_gb=1e-6).start()
    try:
        with server.client(server.new_key()) as api:
            a1 = run(api, "lru/a", prompt="x", seed=1)["outputs"][0]
            b_job = run(api, "lru/b", prompt="x", seed=1)
            a2 = run(api, "lru/a", prompt="x", seed=1)["outputs"][0]
            b = b_job["outputs"][0]
            assert a1["pipeline_loads"] == 1 and a1["evicted"] == []
            assert b["pipeline_loads"] == 1 and b["evicted"] == [str(tiny_models["a"])]
            assert a2["warm"] is False and a2["pipeline_loads"] == 2
            assert a2["evicted"] == [str(tiny_models["b"])]
            assert a2["sha256"] == a1["sha256"]  # reloaded, same picture
            assert any(m.startswith("evicted") for m in logs(api, b_job["id"]))
    finally:
        server.stop()


def test_one_job_per_device_per_worker(tiny_api: httpx.Client) -> None:
    """Two engines on one device (the CPU): the worker claims the second job only when
    the first has finished."""
    one = submit(tiny_api, "tiny/text2image", prompt="one", width=64, height=64, steps=40, seed=1)
    two = submit(tiny_api, "warm/text2image", prompt="two", width=64, height=64, steps=40, seed=1)
    a, b = wait_for(tiny_api, one, timeout=120), wait_for(tiny_api, two, timeout=120)
    assert a["status"] == b["status"] == "succeeded"
    first, second = sorted((a, b), key=lambda j: j["started_at"])
    assert second["started_at"] >= first["completed_at"]


def test_upscale_4x(tiny_api: httpx.Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (16, 24), (20, 120, 200)).save(buf, format="PNG")
    upload = tiny_api.post("/v1/files", files={"file": ("small.png", buf.getvalue(), "image/png")})
    assert upload.status_code == 201, upload.text
    job = run(tiny_api, "tiny/upscale", image=upload.json()["id"], steps=3, seed=1)
    out = job["outputs"][0]
    assert out["pipeline"] == "StableDiffusionUpscalePipeline" and out["noise_level"] == 20
    with Image.open(io.BytesIO(fetch(out))) as im:
        assert im.format == "PNG" and im.size == (64, 96)


def test_text2video_mp4_and_thumbnail(tiny_api: httpx.Client) -> None:
    job = run(tiny_api, "tiny/text2video", prompt="a river", width=32, height=48, fps=4, seed=2)
    video, thumb = job["outputs"]
    assert video["name"] == "video" and video["content_type"] == "video/mp4"
    assert video["frames"] == 4 and video["duration_s"] == 1.0
    data = fetch(video)
    import imageio_ffmpeg

    with TemporaryDirectory() as tmp:
        file = Path(tmp) / "v.mp4"
        file.write_bytes(data)
        reader = imageio_ffmpeg.read_frames(str(file))
        meta = next(reader)
        frames = list(reader)
    assert meta["codec"] == "h264" and tuple(meta["size"]) == (32, 48) and len(frames) == 4
    with Image.open(io.BytesIO(fetch(thumb))) as im:
        assert im.format == "PNG" and im.size == (32, 48)


def test_cancel_an_older_pipeline(tiny_api: httpx.Client) -> None:
    """TextToVideoSDPipeline has only the step callback (no interrupt flag): the
    callback raises at the first step after the cancel."""
    job_id = submit(tiny_api, "tiny/text2video", prompt="slow", steps=1000, seed=1)
    deadline = time.monotonic() + 120
    while True:
        job = tiny_api.get(f"/v1/jobs/{job_id}").json()
        if (job["message"] or "").startswith("step "):
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    tiny_api.post(f"/v1/jobs/{job_id}/cancel")
    job = wait_for(tiny_api, job_id, timeout=60)
    assert job["status"] == "canceled" and job["outputs"] == []
    assert any(
        re.fullmatch(r"canceled: stopped after step \d+ of 1000", m) for m in logs(tiny_api, job_id)
    )


def test_photogpt_personal_model_trains_a_lora(tiny_server: LiveServer) -> None:
    """With the face routed to the diffusers engines (GENQ_COMPAT_ENGINES), PhotoGPT's
    model training makes a LoRA and its image generation uses it."""
    key = tiny_server.new_key(credits=10_000)
    headers = {"API-Version": "1", "Authorization": f"Bearer {key}"}
    with httpx.Client(
        base_url=f"{tiny_server.url}/compat/photogpt", headers=headers, timeout=30
    ) as pg:
        model_id = pg.post("/models", json={"name": "me"}).json()["result"]["id"]
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (10, 200, 60)).save(buf, format="PNG")
        up = pg.post(f"/models/{model_id}/images", files={"image": ("a.png", buf.getvalue())})
        assert up.status_code == 201, up.text
        assert pg.get(f"/models/{model_id}/train").status_code == 200
        deadline = time.monotonic() + 120
        while (model := pg.get(f"/models/{model_id}").json()["result"])["status"] not in (
            "ready",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert model["status"] == "ready", model
        body = {"prompt": "a photo of sks", "modelID": model_id, "width": 32, "height": 32}
        gen = pg.post("/images/generation", json=body)
        assert gen.status_code == 200, gen.text
        job_id = gen.json()["result"]["jobId"]
    with tiny_server.client(key) as api:
        job = wait_for(api, job_id, timeout=120)
        assert job["status"] == "succeeded", job
        assert job["engine"] == "tiny/text2image" and job["outputs"][0]["lora"] == "sks"
        assert api.get(f"/v1/models/{model_id}").json()["engine"] == "tiny/train-lora"
