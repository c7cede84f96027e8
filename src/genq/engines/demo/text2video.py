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

from genq.engines.contract import EngineBase, EngineError, JobContext, OutputKind
from genq.engines.demo._common import (
    Float,
    Seed,
    Steps,
    delay_field,
    gradient_lut,
    input_of,
    prompt_palette,
    seed_from,
    to_uint8,
)

Side = Annotated[int, Field(ge=64, le=1280, multiple_of=16)]
CHUNKS = 8


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
    media: tuple[OutputKind, ...] = ("video", "thumbnail")
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
    """Sum-of-sines plasma; every time factor is a whole number, so t=0 and t=1 match."""

    def __init__(self, w: int, h: int, seed: int, palette: Float) -> None:
        rng = np.random.default_rng(seed)
        aspect = w / h
        self.y, self.x = np.mgrid[0 : 1 : h * 1j, 0 : aspect : w * 1j]
        self.aspect = aspect
        self.freq = rng.uniform(2.0, 7.0, 4)
        self.phase = rng.uniform(0, 2 * np.pi, 4)
        self.speed = rng.integers(1, 3, 4) * rng.choice([-1, 1], 4)
        self.angle = rng.uniform(0, np.pi)
        self.lut = gradient_lut(np.concatenate([palette[[4, 3, 0, 1, 2]], palette[[1, 0]]]))
        self.orb = palette[2]
        self.orbit = (rng.uniform(0.18, 0.32), rng.uniform(0, 2 * np.pi), int(rng.choice([-1, 1])))

    def frame(self, t: float) -> NDArray[np.uint8]:
        x, y, f, p, s = self.x, self.y, self.freq, self.phase, self.speed
        tau = 2 * np.pi * t
        u = x * np.cos(self.angle) + y * np.sin(self.angle)
        cx, cy = self.aspect / 2 + 0.3 * np.sin(tau), 0.5 + 0.2 * np.cos(tau)
        v = (
            np.sin(f[0] * x + p[0] + s[0] * tau)
            + np.sin(f[1] * y + p[1] + s[1] * tau)
            + np.sin(f[2] * u + p[2] + s[2] * tau)
            + np.sin(f[3] * 2 * np.hypot(x - cx, y - cy) + p[3] + s[3] * tau)
        )
        idx = np.clip(((v + 4) / 8 * 255).astype(int), 0, 255)
        rgb = self.lut[idx]
        radius, start, direction = self.orbit
        ox = self.aspect / 2 + radius * 1.6 * np.cos(start + direction * tau)
        oy = 0.5 + radius * np.sin(start + direction * tau)
        d = np.hypot(x - ox, y - oy)
        glow = np.clip(1.2 - d / 0.06, 0, 1) + np.exp(-((d / 0.16) ** 2)) * 0.5
        rgb = rgb * (1 - np.clip(glow, 0, 1)[..., None]) + self.orb * np.clip(glow, 0, 1)[..., None]
        return to_uint8(rgb)
