"""demo/text2video: a demo engine (it makes real videos, but no AI).

Frames are a moving plasma of sine waves mapped through a palette from the prompt,
with a glowing orb circling over it; the motion loops seamlessly. They are encoded
as H.264 (yuv420p, faststart) MP4 by the ffmpeg that imageio-ffmpeg bundles.
"""

from __future__ import annotations

import io
from typing import Annotated

import imageio_ffmpeg
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, EngineError, JobContext
from genq.engines.demo._common import (
    Float,
    Seed,
    Steps,
    delay_field,
    input_of,
    seed_from,
    to_uint8,
)
from genq.engines.demo._procedural import gradient_lut, prompt_palette

Side = Annotated[int, Field(ge=64, le=1280, multiple_of=16)]
CHUNKS = 8
F32 = np.float32


class Text2VideoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000, description="What the video is about.")
    seconds: float = Field(default=2.0, ge=1, le=10, description="Length in seconds (1-10).")
    fps: int = Field(default=12, ge=8, le=30, description="Frames per second (8-30).")
    width: Side = Field(default=320, description="Width in pixels (64-1280, multiple of 16).")
    height: Side = Field(default=192, description="Height in pixels (64-1280, multiple of 16).")
    seed: Seed = None
    delay_s: float = delay_field(4.0)


class Text2Video(EngineBase):
    name = "demo/text2video"
    task = "text2video"
    description = "Looping procedural H.264 videos from a prompt (demo: real video, no AI)."
    input_model = Text2VideoInput
    media = ("video", "thumbnail")
    price = 5
    typical_duration_s = 5.0
    concurrency = 2
    timeout_s = 600.0

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, Text2VideoInput)
        seed = data.seed if data.seed is not None else seed_from(data.prompt)
        frames = max(1, round(data.seconds * data.fps))
        scene = _Plasma(data.width, data.height, seed, prompt_palette(data.prompt))
        path = ctx.workdir / "video.mp4"
        chunks = min(CHUNKS, frames)
        steps = Steps(ctx, chunks + 1, data.delay_s)
        writer = imageio_ffmpeg.write_frames(
            str(path),
            (data.width, data.height),
            fps=data.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
        )
        thumb: NDArray[np.uint8] | None = None
        try:
            writer.send(None)
            done = 0
            for c in range(chunks):
                end = round((c + 1) * frames / chunks)
                for i in range(done, end):
                    frame = scene.frame(i / frames)
                    if i == frames // 2:
                        thumb = frame
                    writer.send(np.ascontiguousarray(frame))
                done = end
                steps.step(f"frames {end} of {frames}")
        except (OSError, RuntimeError) as exc:
            raise EngineError(f"video encoding failed: {exc}", retryable=True) from exc
        finally:
            writer.close()
        assert thumb is not None
        meta = {"width": data.width, "height": data.height, "fps": data.fps, "frames": frames}
        duration = round(frames / data.fps, 3)
        ctx.save_output("video", path, "video/mp4", kind="video", duration_s=duration, **meta)
        buf = io.BytesIO()
        Image.fromarray(thumb).save(buf, format="PNG")
        ctx.save_output(
            "thumbnail", buf.getvalue(), "image/png", kind="thumbnail",
            width=data.width, height=data.height,
        )  # fmt: skip
        steps.step("saved")


class _Plasma:
    """Sum-of-sines plasma; every time factor is a whole number, so t=0 and t=1 match.
    Three waves are plane waves: sin(a + s*tau) = sin(a)cos(s*tau) + cos(a)sin(s*tau),
    so their sines are computed once and each frame only mixes them."""

    def __init__(self, w: int, h: int, seed: int, palette: Float) -> None:
        rng = np.random.default_rng(seed)
        self.w, self.h, self.aspect = w, h, w / h
        self.y = np.linspace(0, 1, h, dtype=F32)[:, None]
        self.x = np.linspace(0, self.aspect, w, dtype=F32)[None, :]
        freq = rng.uniform(2.0, 7.0, 4)
        phase = rng.uniform(0, 2 * np.pi, 4)
        self.speed = rng.integers(1, 3, 4) * rng.choice([-1, 1], 4)
        angle = rng.uniform(0, np.pi)
        planes = [
            freq[0] * self.x + phase[0] + 0 * self.y,
            freq[1] * self.y + phase[1] + 0 * self.x,
            freq[2] * (self.x * np.cos(angle) + self.y * np.sin(angle)) + phase[2],
        ]
        self.sin = [np.sin(a).astype(F32) for a in planes]
        self.cos = [np.cos(a).astype(F32) for a in planes]
        self.ring = (freq[3] * 2, phase[3])
        ramp = np.concatenate([palette[[4, 3, 0, 1, 2]], palette[[1, 0]]])
        self.lut = to_uint8(gradient_lut(ramp))
        self.orb = np.asarray(palette[2], F32) * 255
        self.orbit = (rng.uniform(0.18, 0.32), rng.uniform(0, 2 * np.pi), int(rng.choice([-1, 1])))

    def frame(self, t: float) -> NDArray[np.uint8]:
        tau = 2 * np.pi * t
        v = np.zeros((self.h, self.w), F32)
        for k in range(3):
            v += self.sin[k] * F32(np.cos(self.speed[k] * tau))
            v += self.cos[k] * F32(np.sin(self.speed[k] * tau))
        cx, cy = self.aspect / 2 + 0.3 * np.sin(tau), 0.5 + 0.2 * np.cos(tau)
        ring = np.hypot(self.x - F32(cx), self.y - F32(cy))
        ring *= F32(self.ring[0])
        ring += F32(self.ring[1] + self.speed[3] * tau)
        v += np.sin(ring)
        idx = np.clip((v + 4) * (255 / 8), 0, 255).astype(np.uint8)
        rgb: NDArray[np.uint8] = self.lut[idx]
        # the orb: a disc with a soft glow, drawn only in the box where it shows
        radius, start, direction = self.orbit
        ox = self.aspect / 2 + radius * 1.6 * np.cos(start + direction * tau)
        oy = 0.5 + radius * np.sin(start + direction * tau)
        reach = 0.45  # the glow is below 1/255 past this distance
        scale = self.h - 1
        x0, x1 = (max(0, int((ox - reach) * scale)), min(self.w, int((ox + reach) * scale) + 1))
        y0, y1 = (max(0, int((oy - reach) * scale)), min(self.h, int((oy + reach) * scale) + 1))
        if x0 < x1 and y0 < y1:
            d = np.hypot(self.x[:, x0:x1] - F32(ox), self.y[y0:y1] - F32(oy))
            glow = np.clip(np.clip(1.2 - d / 0.06, 0, 1) + np.exp(-((d / 0.16) ** 2)) * 0.5, 0, 1)
            box = rgb[y0:y1, x0:x1].astype(F32)
            box += (self.orb - box) * glow[..., None]
            rgb[y0:y1, x0:x1] = np.rint(box).astype(np.uint8)
        return rgb
