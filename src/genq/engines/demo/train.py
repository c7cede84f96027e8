"""demo/train: a demo engine (it makes a real, usable artifact, but no AI).

It "learns a style": seeded k-means over the pixels of the training images gives a
palette of 6 colours with their weights and the images' mean brightness. The
`weights` output (JSON) is what demo/text2image reads from `ctx.model` when a job
names the trained model in `model_id`.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, FileRef, JobContext
from genq.engines.demo._common import (
    Float,
    Steps,
    delay_field,
    input_of,
    load_rgb,
    open_image,
)
from genq.engines.demo._procedural import luma

CLUSTERS = 6
SAMPLES_PER_IMAGE = 4096


class TrainInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: list[FileRef] = Field(
        min_length=1, max_length=20, description="1 to 20 training pictures (file ids)."
    )
    name: str | None = Field(
        default=None, max_length=100, description="A name to remember the style by."
    )
    steps: int = Field(default=8, ge=1, le=50, description="Training iterations (1-50).")
    delay_s: float = delay_field(4.0)


class Train(EngineBase):
    name = "demo/train"
    task = "train"
    description = "Learns a colour palette from pictures, for demo/text2image (demo, no AI)."
    input_model = TrainInput
    media = ("other", "thumbnail")
    price = 20
    typical_duration_s = 4.5
    concurrency = 1
    timeout_s = 600.0

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, TrainInput)
        steps = Steps(ctx, len(data.images) + data.steps + 1, data.delay_s)
        digest = hashlib.sha256()
        samples: list[Float] = []
        for ref in data.images:
            im = load_rgb(open_image(ctx, ref), ref)
            im.thumbnail((256, 256), Image.Resampling.BOX)
            pixels = np.asarray(im, dtype=np.float64).reshape(-1, 3)
            digest.update(pixels.astype(np.uint8).tobytes())
            rng = np.random.default_rng(len(samples))
            take = min(len(pixels), SAMPLES_PER_IMAGE)
            samples.append(pixels[rng.choice(len(pixels), take, replace=False)])
            steps.step(f"read {ref}")
        pixels = np.concatenate(samples)
        rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "big"))
        centers = _init_centers(pixels, rng)
        for i in range(data.steps):
            centers, shift = _kmeans_step(pixels, centers, rng)
            ctx.logger.info("iteration %d: centres moved %.2f", i + 1, shift)
            steps.step(f"iteration {i + 1} of {data.steps}")
        labels = _nearest(pixels, centers)
        weights = np.bincount(labels, minlength=len(centers)) / len(labels)
        order = np.argsort(-weights, kind="stable")
        palette = [[round(float(c)) for c in centers[j]] for j in order]
        shares = [round(float(weights[j]), 4) for j in order]
        doc = {
            "kind": "genq-demo-palette",
            "version": 1,
            "name": data.name,
            "palette": palette,
            "weights": shares,
            "brightness": round(float(luma(pixels / 255.0).mean()), 4),
            "images": len(data.images),
            "pixels": len(pixels),
            "steps": data.steps,
        }
        blob = json.dumps(doc, indent=2).encode()
        ctx.save_output("weights", blob, "application/json", kind="other", colors=len(palette))
        swatch = _swatch(palette, shares)
        ctx.save_output("thumbnail", swatch, "image/png", kind="thumbnail", width=256, height=64)
        steps.step("saved")


def _nearest(pixels: Float, centers: Float) -> np.ndarray:
    d = ((pixels[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return np.asarray(d.argmin(1))


def _init_centers(pixels: Float, rng: np.random.Generator) -> Float:
    """k-means++: each next centre far from those chosen so far."""
    centers = [pixels[rng.integers(len(pixels))]]
    for _ in range(CLUSTERS - 1):
        d = ((pixels[:, None, :] - np.array(centers)[None]) ** 2).sum(-1).min(1)
        total = d.sum()
        p = d / total if total > 0 else None
        centers.append(pixels[rng.choice(len(pixels), p=p)])
    return np.array(centers)


def _kmeans_step(pixels: Float, centers: Float, rng: np.random.Generator) -> tuple[Float, float]:
    labels = _nearest(pixels, centers)
    new = centers.copy()
    for k in range(len(centers)):
        members = pixels[labels == k]
        # an empty cluster restarts on a random pixel
        new[k] = members.mean(0) if len(members) else pixels[rng.integers(len(pixels))]
    return new, float(np.abs(new - centers).max())


def _swatch(palette: list[list[int]], weights: list[float]) -> bytes:
    im = Image.new("RGB", (256, 64), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    x = 0.0
    for color, w in zip(palette, weights, strict=True):
        width = 256 * w / sum(weights)
        draw.rectangle((round(x), 0, round(x + width), 63), fill=tuple(color))
        x += width
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
