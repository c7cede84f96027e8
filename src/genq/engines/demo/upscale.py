"""demo/upscale: a demo engine (it makes real, larger images, but no AI).

A Lanczos resize with Pillow: the horizontal pass on the whole image, then the
vertical pass band by band so progress is real. Each band samples the rows around it,
so the result is byte for byte what a single whole-image resize gives.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import EngineBase, EngineError, FileRef, JobContext
from genq.engines.demo._common import (
    ImageFormat,
    Steps,
    delay_field,
    encode_image,
    input_of,
    open_image,
)

MAX_SIDE = 8192
BANDS = 6


class UpscaleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: FileRef = Field(
        description="The image to enlarge: an uploaded file id or an earlier job's output."
    )
    scale: Literal[2, 4] = Field(default=2, description="Enlargement factor.")
    output_format: ImageFormat = Field(default="png", description="File format of the result.")
    delay_s: float = delay_field(2.0)


class Upscale(EngineBase):
    name = "demo/upscale"
    task = "upscale"
    description = "Lanczos upscaling by 2 or 4 (demo: real images, no AI)."
    input_model = UpscaleInput
    media = ("image",)
    price = 1
    typical_duration_s = 2.5
    concurrency = 4
    timeout_s = 600.0

    def run(self, ctx: JobContext) -> None:
        data = input_of(ctx, UpscaleInput)
        steps = Steps(ctx, BANDS + 3, data.delay_s)
        with open_image(ctx, data.image) as source:
            w, h = source.width * data.scale, source.height * data.scale
            if max(w, h) > MAX_SIDE:
                raise EngineError(
                    f"the result would be {w}x{h}; at most {MAX_SIDE} px on a side",
                    code="invalid_input",
                )
            try:
                source.load()
                keep_alpha = "A" in source.getbands() or "transparency" in source.info
                im = source.convert("RGBA" if keep_alpha else "RGB")
            except (OSError, ValueError, SyntaxError) as exc:
                raise EngineError(
                    f"input {data.image} is not a decodable image", code="invalid_input"
                ) from exc
        steps.step("decoded")
        wide = im.resize((w, im.height), Image.Resampling.LANCZOS)
        steps.step("widened")
        out = Image.new(im.mode, (w, h))
        bands = min(BANDS, im.height)
        edges = [round(i * im.height / bands) for i in range(bands + 1)]
        for i, (top, bottom) in enumerate(pairwise(edges)):
            band = wide.resize(
                (w, (bottom - top) * data.scale), Image.Resampling.LANCZOS, box=(0, top, w, bottom)
            )
            out.paste(band, (0, top * data.scale))
            steps.step(f"band {i + 1} of {bands}")
        for _ in range(BANDS - bands):  # tiny images: keep the step count
            steps.step()
        blob, content_type = encode_image(out, data.output_format)
        ctx.save_output(
            "image_0", blob, content_type, kind="image", width=w, height=h, scale=data.scale
        )
        steps.step("saved")
