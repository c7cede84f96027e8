"""demo/text2image: a demo engine (it makes real pictures, but no AI).

Each picture is a procedural landscape (sky gradient, clouds, a sun, layered ridges,
film grain) drawn with numpy. The seed picks the shapes; the colours come from the
prompt's hash and colour words, or from a palette learned by demo/train (`model_id`).
Same prompt, seed and size give byte-identical pixels.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, JobContext, ModelRef
from genq.engines.demo._common import (
    Float,
    ImageFormat,
    Seed,
    Steps,
    delay_field,
    encode_image,
    input_of,
    seed_from,
    to_uint8,
)
from genq.engines.demo._procedural import fbm, luma, prompt_palette, read_palette

F32 = np.float32
Side = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


class Text2ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000, description="What to picture.")
    negative_prompt: str | None = Field(
        default=None, max_length=2000, description="What to avoid; it shifts the colours."
    )
    width: Side = Field(default=512, description="Width in pixels (64-2048, multiple of 8).")
    height: Side = Field(default=512, description="Height in pixels (64-2048, multiple of 8).")
    num_images: int = Field(default=1, ge=1, le=4, description="How many pictures (1-4).")
    seed: Seed = None
    output_format: ImageFormat = Field(default="png", description="File format of the images.")
    model_id: ModelRef | None = Field(
        default=None, description="A palette trained with demo/train to colour the pictures."
    )
    delay_s: float = delay_field(3.0)


class Text2Image(EngineBase):
    name = "demo/text2image"
    task = "text2image"
    description = "Procedural landscapes from a prompt (demo: real images, no AI)."
    input_model = Text2ImageInput
    media = ("image",)
    price = 2
    typical_duration_s = 3.5
    concurrency = 4
    timeout_s = 600.0

    def estimate(self, data: BaseModel) -> int:
        """Two credits per image."""
        n = data.num_images if isinstance(data, Text2ImageInput) else 1
        return self.price * n

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, Text2ImageInput)
        seed = data.seed if data.seed is not None else seed_from(data.prompt)
        if data.model_id and ctx.model is None:
            ctx.logger.warning(
                "model %s has no artifact; using the prompt's colours", data.model_id
            )
        if ctx.model is not None:
            colors, _, brightness = read_palette(ctx.model)
            palette, target = _roles(colors).astype(F32), brightness
        else:
            palette, target = prompt_palette(data.prompt, data.negative_prompt).astype(F32), None
        steps = Steps(ctx, data.num_images * len(_STAGES) + 1, data.delay_s)
        images = []
        for i in range(data.num_images):
            rng = np.random.default_rng(seed + i)
            img = np.zeros((data.height, data.width, 3), F32)
            for stage in _STAGES:
                stage(rng, img, palette)
                steps.step(f"image {i + 1} of {data.num_images}, {stage.__name__[1:]}")
            if target is not None:  # nudge the mean brightness toward the trained one
                img *= np.clip(target / max(float(luma(img).mean()), 1e-3), 0.75, 1.33)
            images.append(Image.fromarray(to_uint8(img)))
        for i, im in enumerate(images):
            blob, content_type = encode_image(im, data.output_format)
            meta = {"width": im.width, "height": im.height, "seed": seed + i}
            ctx.save_output(f"image_{i}", blob, content_type, kind="image", **meta)
        steps.step("saved")


def _roles(colors: Float) -> Float:
    """Map a trained palette onto the five roles, brightest colours to the sky."""
    order = np.argsort(-luma(colors), kind="stable")
    c = colors[order]
    pick = np.linspace(0, len(c) - 1, 5).round().astype(int)
    sun, horizon, top, far, near = c[pick]
    return np.array([top, horizon, sun, far, near])


def _sky(rng: np.random.Generator, img: Float, pal: Float) -> None:
    h, w, _ = img.shape
    y = (np.linspace(0, 1, h, dtype=F32) ** 1.4)[:, None]
    img[:] = pal[0]
    img += (pal[1] - pal[0]) * y[..., None]
    clouds = fbm(rng, h, w, base=2, octaves=5, aspect=w / h).astype(F32)
    cover = np.clip((clouds - (0.45 + 0.2 * rng.random())) * 3, 0, 1) * (0.55 * (1 - y))
    img += (pal[1] - img) * cover[..., None]


def _sun(rng: np.random.Generator, img: Float, pal: Float) -> None:
    h, w, _ = img.shape
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.12, 0.45) * h
    r = rng.uniform(0.05, 0.11) * min(h, w)
    d = np.hypot(np.arange(w, dtype=F32)[None, :] - cx, np.arange(h, dtype=F32)[:, None] - cy)
    alpha = np.maximum(np.clip(r + 1 - d, 0, 1), np.exp(-((d / (r * 3.5)) ** 2)) * 0.6)
    img += (pal[2] - img) * alpha[..., None]


def _ridges(rng: np.random.Generator, img: Float, pal: Float) -> None:
    """3-5 ridges, far to near; each pixel takes the colour of the nearest one over it."""
    h, w, _ = img.shape
    layers = int(rng.integers(3, 6))
    lines = np.empty((layers, w), F32)
    colors = np.empty((layers, 3), F32)
    for k in range(layers):
        t = k / (layers - 1)
        amp = h * (0.22 - 0.1 * t) * rng.uniform(0.6, 1.2)
        lines[k] = h * (0.5 + 0.38 * t) - amp * (fbm(rng, 1, w, base=2 + k, octaves=5)[0] - 0.3)
        color = pal[3] + (pal[4] - pal[3]) * t
        colors[k] = color + (pal[1] - color) * (0.45 * (1 - t))  # haze on far layers
    rows = np.arange(h, dtype=F32)[:, None]
    front = np.full((h, w), -1, np.int8)
    for k in range(layers):
        front[rows >= lines[k]] = k
    ys, xs = np.nonzero(front >= 0)
    k_at = front[ys, xs]
    shade = np.clip(0.88 + 0.12 * (ys - lines[k_at, xs]) / h, 0.7, 1.1)  # light at the crest
    img[ys, xs] = colors[k_at] * shade[:, None]


def _grain(rng: np.random.Generator, img: Float, pal: Float) -> None:
    img += (rng.standard_normal(img.shape[:2], dtype=F32) * 0.012)[..., None]


_STAGES = (_sky, _sun, _ridges, _grain)
